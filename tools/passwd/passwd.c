/* ringmq-passwd: adds, updates and deletes users in a mosquitto-format password file, writing $7$
 * (PBKDF2-SHA512) entries; the file is replaced atomically with mode 0600. Single-threaded CLI. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "security/auth.h"

/* Same bound the broker's loader enforces for the password (MQTT binary data is at most 65535 bytes). */
#define MAX_PASSWORD RMQ_AUTH_MAX_FIELD

static void usage(void)
{
	fprintf(stderr,
		"usage: ringmq-passwd [-c] FILE USER            prompt for the password (twice)\n"
		"       ringmq-passwd [-c] -b FILE USER PASSWORD  batch mode (password on the command line)\n"
		"       ringmq-passwd -D FILE USER                delete USER\n"
		"  -c  create FILE (overwriting it) instead of updating it\n"
		"Entries are written as $7$ (PBKDF2-SHA512, 101 iterations), readable by mosquitto 2.x.\n");
}

static int valid_user(const char *u)
{
	size_t n = strlen(u);
	if (n == 0 || n > RMQ_AUTH_MAX_FIELD || strpbrk(u, ":\r\n")) {
		fprintf(stderr, "ringmq-passwd: invalid user name '%s' (empty, too long, or contains ':' or a "
				"newline)\n", u);
		return 0;
	}
	if (u[0] == '#' || u[0] == ' ' || u[0] == '\t' || u[n - 1] == ' ' || u[n - 1] == '\t') {
		fprintf(stderr, "ringmq-passwd: user name may not start with '#' or begin/end with blanks\n");
		return 0;
	}
	return 1;
}

/* Reads one line from the terminal (echo off) or, when stdin is not a terminal, from stdin. */
static int read_secret(const char *prompt, char *buf, size_t cap)
{
	bool tty = isatty(STDIN_FILENO);
	struct termios old, quiet;
	if (tty) {
		fputs(prompt, stderr);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) < 0)
			return -errno;
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
			return -errno;
	}
	char *r = fgets(buf, (int)cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (!r)
		return -EIO;
	size_t n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (n == cap - 1)
		return -E2BIG;
	if (n && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return 0;
}

static int prompt_password(char *pw, size_t cap)
{
	char again[MAX_PASSWORD + 2];
	if (read_secret("Password: ", pw, cap) < 0 || read_secret("Reenter password: ", again, sizeof(again)) < 0) {
		fprintf(stderr, "ringmq-passwd: could not read the password\n");
		return -1;
	}
	int same = strcmp(pw, again) == 0;
	OPENSSL_cleanse(again, sizeof(again));
	if (!same) {
		fprintf(stderr, "ringmq-passwd: passwords do not match\n");
		return -1;
	}
	return 0;
}

/* Is `line` an entry for `user` (same rule as the loader: blanks around the name are ignored)? */
static bool line_is_user(const char *line, const char *user)
{
	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '#')
		return false;
	const char *colon = strchr(line, ':');
	if (!colon)
		return false;
	const char *end = colon;
	while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return (size_t)(end - line) == strlen(user) && memcmp(line, user, strlen(user)) == 0;
}

/* Copies `in` (may be NULL) to `out`, dropping or replacing `user`'s line; appends when not found and
 * `entry` is set. Returns 1 if the user was found, 0 if not, -1 on error. */
static int rewrite(FILE *in, FILE *out, const char *user, const char *entry)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int found = 0;
	while (in && (n = getline(&line, &cap, in)) >= 0) {
		if (line_is_user(line, user)) {
			if (entry && !found && fprintf(out, "%s:%s\n", user, entry) < 0)
				goto fail;
			found = 1;
			continue;
		}
		if (fwrite(line, 1, (size_t)n, out) != (size_t)n)
			goto fail;
		if (n && line[n - 1] != '\n' && fputc('\n', out) == EOF)
			goto fail;
	}
	if (in && ferror(in))
		goto fail;
	if (entry && !found && fprintf(out, "%s:%s\n", user, entry) < 0)
		goto fail;
	free(line);
	return found;
fail:
	free(line);
	return -1;
}

/* The broker usually runs as its own user and reads the file on SIGHUP; when root edits it, the new file
 * must stay owned by that user or the reload fails. Not possible (EPERM) unless we are root: then the
 * file simply belongs to whoever ran us, as before. */
static void keep_owner(FILE *old, int fd)
{
	struct stat st;
	if (old && fstat(fileno(old), &st) == 0 && fchown(fd, st.st_uid, st.st_gid) != 0 && errno != EPERM)
		fprintf(stderr, "ringmq-passwd: warning: could not keep the file's owner: %s\n", strerror(errno));
}

/* Writes the new file next to `path` and renames it over, so a reader (the broker on SIGHUP) sees the
 * old file or the new one, never half of one. */
static int replace_file(const char *path, bool create, const char *user, const char *entry)
{
	FILE *in = NULL;
	if (!create) {
		in = fopen(path, "re");
		if (!in) {
			fprintf(stderr, "ringmq-passwd: %s: %s%s\n", path, strerror(errno),
				errno == ENOENT ? " (use -c to create it)" : "");
			return -1;
		}
	}
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 8);
	if (!tmp) {
		if (in)
			fclose(in);
		return -1;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".XXXXXX", 8);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		fprintf(stderr, "ringmq-passwd: cannot create a temporary file next to %s: %s\n", path,
			strerror(errno));
		free(tmp);
		if (in)
			fclose(in);
		return -1;
	}
	FILE *out = fdopen(fd, "w");
	int found = out && fchmod(fd, 0600) == 0 ? rewrite(in, out, user, entry) : -1;
	keep_owner(in, fd);
	if (in)
		fclose(in);
	int rc = found < 0 ? -1 : 0;
	if (found < 0)
		fprintf(stderr, "ringmq-passwd: writing %s failed\n", path);
	if (rc == 0 && !entry && !found) {
		fprintf(stderr, "ringmq-passwd: user '%s' not found in %s\n", user, path);
		rc = -1;
	}
	if (out) {
		if (fflush(out) != 0 || fsync(fd) != 0)
			rc = -1;
		if (fclose(out) != 0)
			rc = -1;
	} else {
		close(fd);
	}
	if (rc == 0 && rename(tmp, path) != 0) {
		fprintf(stderr, "ringmq-passwd: rename to %s: %s\n", path, strerror(errno));
		rc = -1;
	}
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

int main(int argc, char **argv)
{
	bool batch = false, del = false, create = false;
	int opt;
	while ((opt = getopt(argc, argv, "bcDh")) != -1) {
		switch (opt) {
		case 'b': batch = true; break;
		case 'c': create = true; break;
		case 'D': del = true; break;
		default: usage(); return opt == 'h' ? 0 : 2;
		}
	}
	int want = batch ? 3 : 2;
	if (argc - optind != want || (del && (batch || create))) {
		usage();
		return 2;
	}
	const char *path = argv[optind], *user = argv[optind + 1];
	if (!valid_user(user))
		return 2;
	if (del)
		return replace_file(path, false, user, NULL) == 0 ? 0 : 1;

	static char pw[MAX_PASSWORD + 2];
	if (batch) {
		if (strlen(argv[optind + 2]) > MAX_PASSWORD) {
			fprintf(stderr, "ringmq-passwd: password longer than %d bytes\n", MAX_PASSWORD);
			return 2;
		}
		strcpy(pw, argv[optind + 2]);
	} else if (prompt_password(pw, sizeof(pw)) < 0) {
		return 1;
	}
	char entry[RMQ_AUTH_ENCODED_MAX];
	int rc = rmq_auth_encode((const uint8_t *)pw, strlen(pw), entry, sizeof(entry));
	OPENSSL_cleanse(pw, sizeof(pw));
	if (rc < 0) {
		fprintf(stderr, "ringmq-passwd: hashing failed: %s\n", strerror(-rc));
		return 1;
	}
	return replace_file(path, create, user, entry) == 0 ? 0 : 1;
}
