/* The fuzz seed corpus (tests/fuzz/corpus) stays valid: every seed frames and decodes cleanly in the
 * version and direction its name says. Test-only; single-threaded. */
#include <dirent.h>
#include <libgen.h>
#include <stdio.h>

#include "test_proto_helpers.h"

static uint8_t version_of(const char *name)
{
	if (strstr(name, "_v5"))
		return RMQ_V5;
	if (strstr(name, "_v311"))
		return RMQ_V311;
	return strstr(name, "_v31") ? RMQ_V31 : RMQ_V311;
}

static uint8_t role_of(const char *name)
{
	bool to_client = strncmp(name, "connack", 7) == 0 || strncmp(name, "suback", 6) == 0 ||
			 strncmp(name, "unsuback", 8) == 0 || strstr(name, "_to_client");
	return to_client ? RMQ_ROLE_CLIENT : RMQ_ROLE_SERVER;
}

Test(proto_corpus, seeds_decode)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s", __FILE__);
	snprintf(dir + strlen(dirname(dir)), sizeof dir - strlen(dir), "/../fuzz/corpus");
	char names[64][256];
	int seeds = 0;
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "open %s", dir);
	for (struct dirent *e; (e = readdir(d)) && seeds < 64;)
		if (e->d_name[0] != '.')
			snprintf(names[seeds++], sizeof names[0], "%s", e->d_name);
	closedir(d);
	cr_assert_geq(seeds, 12);
	for (int i = 0; i < seeds; i++) {
		const char *name = names[i];
		char path[1024];
		uint8_t buf[1024];
		snprintf(path, sizeof path, "%s/%s", dir, name);
		FILE *f = fopen(path, "rb");
		cr_assert_not_null(f, "%s", path);
		size_t n = fread(buf, 1, sizeof buf, f);
		fclose(f);
		size_t off = 0;
		while (off < n) {
			size_t total = 0;
			struct rmq_packet p;
			cr_assert_eq(rmq_proto_frame(buf + off, n - off, 0, &total), RMQ_OK, "%s", name);
			int rc = dec(version_of(name), role_of(name), buf + off, total, &p);
			cr_assert_eq(rc, RMQ_OK, "%s at %zu: %s", name, off, rmq_proto_err_str(rc));
			off += total;
		}
	}
}
