/* `ringmq --version`: the build's version and git revision, the libraries it runs with and the io_uring
 * features the start-up probe finds on this kernel. Main thread, before anything starts. */
#include "ops/version.h"

#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <sys/utsname.h>

#include "io/reactor.h"
#include "io/uring_compat.h"
#include "ringmq_build.h"   /* generated at build time by tools/build-info.cmake */

const char *rmq_version_string(void)
{
	return RMQ_BUILD_VERSION;
}

static void print_uring(FILE *out, struct broker *b)
{
	char err[512] = "";
	if (rmq_probe(b, err, sizeof(err))) {
		fprintf(out, "io_uring: not usable here: %s\n", err);
		return;
	}
	static const struct { unsigned flag; const char *name; } flags[] = {
		{IORING_SETUP_SINGLE_ISSUER, "single-issuer"}, {IORING_SETUP_DEFER_TASKRUN, "defer-taskrun"},
		{IORING_SETUP_COOP_TASKRUN, "coop-taskrun"},   {IORING_SETUP_SUBMIT_ALL, "submit-all"},
	};
	/* The probe refuses to start without these three, so reaching here means they work. */
	fputs("io_uring: multishot-recv provided-buffer-rings", out);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (b->ring_flags & flags[i].flag)
			fprintf(out, " %s", flags[i].name);
	fprintf(out, " %s\n", b->use_msg_ring ? "msg-ring" : "eventfd-doorbells");
}

void rmq_version_print(FILE *out, struct broker *b)
{
	struct utsname u;
	fprintf(out, "ringmq %s (git %s, %s build)\n", RMQ_BUILD_VERSION, RMQ_BUILD_GIT, RMQ_BUILD_TYPE);
	fprintf(out, "liburing %s (at build), librdkafka %s, %s\n", RMQ_BUILD_URING, rd_kafka_version_str(),
		OpenSSL_version(OPENSSL_VERSION));
	if (uname(&u) == 0)
		fprintf(out, "kernel: %s %s\n", u.sysname, u.release);
	print_uring(out, b);
}
