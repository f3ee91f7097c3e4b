/* Unit tests for core/security/auth.c: mosquitto password files (real mosquitto_passwd output, $6$ and $7$),
 * malformed files with line numbers, encode/verify, and the failed-login rate limiter. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "security/auth.h"

#define S(x) (const uint8_t *)(x), strlen(x)

/* Produced by Debian's mosquitto_passwd 2.0.11 (`-b` and `-H sha512 -b`): alice/secret, bob/hunter2. */
#define ALICE_7 "alice:$7$101$BY3o6G50I/+LMubz$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A=="
#define BOB_6 "bob:$6$Orv2DKOo9m/JxTKu$pxRhngyJSly3QHxUKJ64r93nXL8XL3UqHVm9EuQeIuFiWBUu54pbRNJGl015hlepVwlCwifgT9hbng8eDGL/nQ=="

static char dir[64];

static void mkdir_tmp(void)
{
	strcpy(dir, "/tmp/rmq-auth-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct rmq_auth *load_ok(const char *text)
{
	struct rmq_auth *db = NULL;
	char err[256] = "";
	int rc = rmq_auth_load(write_file("pw", text), &db, err, sizeof(err));
	cr_assert_eq(rc, 0, "load failed: %d %s", rc, err);
	cr_assert_not_null(db);
	return db;
}

/* Expects the load to fail with -EINVAL and `needle` in the reason. */
static void load_bad(const char *text, const char *needle)
{
	struct rmq_auth *db = (struct rmq_auth *)1;
	char err[256] = "";
	int rc = rmq_auth_load(write_file("bad", text), &db, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "'%s' loaded (rc %d)", text, rc);
	cr_assert_null(db);
	cr_assert(strstr(err, needle), "reason '%s' lacks '%s' for '%s'", err, needle, text);
}

TestSuite(auth, .init = mkdir_tmp, .fini = rm_tmp);

Test(auth, mosquitto_vectors_both_hash_types)
{
	struct rmq_auth *db = load_ok(ALICE_7 "\n" BOB_6 "\n");
	cr_assert_eq(rmq_auth_count(db), 2);
	cr_assert_eq(rmq_auth_check(db, S("alice"), S("secret")), 0);
	cr_assert_eq(rmq_auth_check(db, S("bob"), S("hunter2")), 0);
	/* wrong password, password of the other user, prefix and extension of the right one */
	cr_assert_eq(rmq_auth_check(db, S("alice"), S("hunter2")), -EACCES);
	cr_assert_eq(rmq_auth_check(db, S("alice"), S("secre")), -EACCES);
	cr_assert_eq(rmq_auth_check(db, S("alice"), S("secret2")), -EACCES);
	cr_assert_eq(rmq_auth_check(db, S("bob"), S("Hunter2")), -EACCES);
	cr_assert_eq(rmq_auth_check(db, S("alice"), NULL, 0), -EACCES);
	/* unknown users, user names differing by case or a prefix */
	cr_assert_eq(rmq_auth_check(db, S("mallory"), S("secret")), -EACCES);
	cr_assert_eq(rmq_auth_check(db, S("Alice"), S("secret")), -EACCES);
	cr_assert_eq(rmq_auth_check(db, S("alic"), S("secret")), -EACCES);
	cr_assert_eq(rmq_auth_check(db, NULL, 0, S("secret")), -EACCES);
	cr_assert_eq(rmq_auth_check(NULL, S("alice"), S("secret")), -EACCES);
	rmq_auth_free(db);
}

Test(auth, file_from_real_mosquitto_passwd)
{
	char cmd[512];
	const char *pw = write_file("mq", "");
	snprintf(cmd, sizeof(cmd),
		 "mosquitto_passwd -b %s car-1 'p w:1' && mosquitto_passwd -b %s car-2 x && "
		 "mosquitto_passwd -H sha512 -b %s old-car legacy && mosquitto_passwd -D %s car-2", pw, pw, pw, pw);
	cr_assert_eq(system(cmd), 0, "mosquitto_passwd failed");
	struct rmq_auth *db = NULL;
	char err[256];
	cr_assert_eq(rmq_auth_load(pw, &db, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rmq_auth_count(db), 2);
	cr_assert_eq(rmq_auth_check(db, S("car-1"), S("p w:1")), 0);
	cr_assert_eq(rmq_auth_check(db, S("old-car"), S("legacy")), 0);
	cr_assert_eq(rmq_auth_check(db, S("car-2"), S("x")), -EACCES, "deleted user still accepted");
	cr_assert_eq(rmq_auth_check(db, S("car-1"), S("p w:2")), -EACCES);
	rmq_auth_free(db);
}

Test(auth, comments_blanks_crlf_and_binary_passwords)
{
	char line[512];
	char enc[RMQ_AUTH_ENCODED_MAX];
	const uint8_t bin[] = { 'a', 0, 0xff, '\n', ':' };
	cr_assert_eq(rmq_auth_encode(bin, sizeof(bin), enc, sizeof(enc)), 0);
	snprintf(line, sizeof(line), "# fleet users\n\n  \t\n  " ALICE_7 "  \r\n\tdev  :  %s\r\n", enc);
	struct rmq_auth *db = load_ok(line);
	cr_assert_eq(rmq_auth_count(db), 2);
	cr_assert_eq(rmq_auth_check(db, S("alice"), S("secret")), 0);
	cr_assert_eq(rmq_auth_check(db, S("dev"), bin, sizeof(bin)), 0);
	cr_assert_eq(rmq_auth_check(db, S("dev"), bin, 1), -EACCES, "NUL must not end the password");
	rmq_auth_free(db);
	db = load_ok("# only comments\n");
	cr_assert_eq(rmq_auth_count(db), 0);
	cr_assert_eq(rmq_auth_check(db, S(""), S("")), -EACCES);
	rmq_auth_free(db);
}

Test(auth, malformed_lines_named_with_line_number)
{
	load_bad("alice\n", "bad:1: no ':'");
	load_bad("# c\n" ALICE_7 "\nbob:plaintext\n", "bad:3: unknown hash type");
	load_bad("a:$5$abc$def\n", "unknown hash type");
	load_bad(":$6$Orv2DKOo9m/JxTKu$pxRh\n", "empty or over-long user");
	load_bad("a:$7$0$BY3o6G50I/+LMubz$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A==\n",
		 "iteration");
	load_bad("a:$7$99999999999999999999$BY3o6G50I/+LMubz$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A==\n",
		 "iteration");
	load_bad("a:$7$x$BY3o6G50I/+LMubz$ynf2\n", "iteration");
	load_bad("a:$7$101$BY3o6G50I/+LMub$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A==\n",
		 "bad salt");
	load_bad("a:$7$101$BY3o6G50I/+LMu!z$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A==\n",
		 "bad salt");
	load_bad("a:$7$101$BY3o6G50I/+LMubz$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85\n",
		 "bad hash");
	load_bad("a:$7$101$BY3o6G50I/+LMubz$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A==$x\n",
		 "bad hash");
	load_bad("a:$6$Orv2DKOo9m/JxTKu\n", "bad salt");
	load_bad(ALICE_7 "\n" BOB_6 "\n" ALICE_7 "\n", "'alice' appears more than once");
}

Test(auth, load_errors_from_the_file_system)
{
	struct rmq_auth *db = (struct rmq_auth *)1;
	char err[256] = "";
	char path[128];
	snprintf(path, sizeof(path), "%s/missing", dir);
	cr_assert_eq(rmq_auth_load(path, &db, err, sizeof(err)), -ENOENT);
	cr_assert_null(db);
	cr_assert(strstr(err, "missing"), "%s", err);
	cr_assert_eq(rmq_auth_load(dir, &db, NULL, 0), -EIO, "a directory must not load as empty");
}

Test(auth, overlong_line_refused)
{
	size_t n = 3 * RMQ_AUTH_MAX_FIELD;
	char *big = malloc(n + 2);
	memset(big, 'u', n);
	big[n] = '\n';
	big[n + 1] = '\0';
	load_bad(big, "longer than");
	free(big);
}

Test(auth, encode_and_verify)
{
	char a[RMQ_AUTH_ENCODED_MAX], b[RMQ_AUTH_ENCODED_MAX];
	cr_assert_eq(rmq_auth_encode(S("pw"), a, sizeof(a)), 0);
	cr_assert_eq(rmq_auth_encode(S("pw"), b, sizeof(b)), 0);
	cr_assert_eq(strncmp(a, "$7$101$", 7), 0, "%s", a);
	cr_assert_eq(strlen(a), 7 + 16 + 1 + 88, "%s", a);
	cr_assert_str_neq(a, b, "salt must be random");
	cr_assert_eq(rmq_auth_verify_encoded(a, S("pw")), 0);
	cr_assert_eq(rmq_auth_verify_encoded(b, S("pw")), 0);
	cr_assert_eq(rmq_auth_verify_encoded(a, S("pW")), -EACCES);
	cr_assert_eq(rmq_auth_verify_encoded(a, S("")), -EACCES);
	cr_assert_eq(rmq_auth_verify_encoded("$7$101$short$x", S("pw")), -EINVAL);
	cr_assert_eq(rmq_auth_verify_encoded("", S("pw")), -EINVAL);
	cr_assert_eq(rmq_auth_encode(S("pw"), a, 32), -ENOSPC);
	/* the mosquitto vector through the same path */
	cr_assert_eq(rmq_auth_verify_encoded(strchr(ALICE_7, ':') + 1, S("secret")), 0);
	cr_assert_eq(rmq_auth_verify_encoded(strchr(BOB_6, ':') + 1, S("hunter2")), 0);
}

/* ---- rate limiter ---- */

static struct sockaddr_in v4(const char *ip)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(1234) };
	cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
	cr_assert_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return a;
}

#define SA(x) ((const struct sockaddr *)&(x))

Test(auth_ratelimit, burst_then_refill)
{
	struct rmq_auth_ratelimit *rl = rmq_auth_ratelimit_new(64, 3, 60); /* 3 back to back, then 1/s */
	struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
	uint64_t t = 1000000;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), t), 0, "try %d", i);
		rmq_auth_ratelimit_fail(rl, SA(a), t);
	}
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), t), -EAGAIN);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), t + 999), -EAGAIN);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(b), t), 0, "another address must not be limited");
	/* one token back after one second, and it is gone after one more failure */
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), t + 1000), 0);
	rmq_auth_ratelimit_fail(rl, SA(a), t + 1000);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), t + 1000), -EAGAIN);
	/* a clock going backwards never adds tokens */
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), t), -EAGAIN);
	/* a long pause refills up to the burst, not beyond */
	uint64_t later = t + 3600 * 1000;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), later), 0);
		rmq_auth_ratelimit_fail(rl, SA(a), later);
	}
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(a), later), -EAGAIN);
	struct rmq_auth_ratelimit_stats st;
	rmq_auth_ratelimit_stats(rl, &st);
	cr_assert_eq(st.failures, 7);
	cr_assert_eq(st.refused, 5);
	cr_assert_eq(st.evictions, 0);
	rmq_auth_ratelimit_free(rl);
}

Test(auth_ratelimit, ipv6_keyed_by_prefix_v4_mapped_by_address)
{
	struct rmq_auth_ratelimit *rl = rmq_auth_ratelimit_new(64, 1, 1);
	struct sockaddr_in6 h1 = v6("2001:db8:1:2::1"), h2 = v6("2001:db8:1:2:ffff::9"), other = v6("2001:db8:1:3::1");
	struct sockaddr_in6 m1 = v6("::ffff:192.0.2.1"), m2 = v6("::ffff:192.0.2.2");
	rmq_auth_ratelimit_fail(rl, SA(h1), 0);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(h2), 0), -EAGAIN, "same /64 must share a bucket");
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(other), 0), 0);
	rmq_auth_ratelimit_fail(rl, SA(m1), 0);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(m1), 0), -EAGAIN);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(m2), 0), 0, "v4-mapped must not collapse to one /64");
	/* the v4-mapped form and the plain IPv4 form are one address */
	struct sockaddr_in p1 = v4("192.0.2.1");
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(p1), 0), -EAGAIN);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	rmq_auth_ratelimit_fail(rl, SA(un), 0);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(un), 0), 0);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, NULL, 0), 0);
	rmq_auth_ratelimit_free(rl);
}

Test(auth_ratelimit, table_full_evicts_least_suspicious)
{
	struct rmq_auth_ratelimit *rl = rmq_auth_ratelimit_new(16, 5, 1);
	struct sockaddr_in attacker = v4("198.51.100.7");
	for (int i = 0; i < 5; i++)
		rmq_auth_ratelimit_fail(rl, SA(attacker), 0);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(attacker), 0), -EAGAIN);
	/* 200 other addresses fail once each: far more than the table holds */
	char ip[32];
	for (int i = 0; i < 200; i++) {
		snprintf(ip, sizeof(ip), "203.0.113.%d", i);
		struct sockaddr_in a = v4(ip);
		rmq_auth_ratelimit_fail(rl, SA(a), 0);
	}
	struct rmq_auth_ratelimit_stats st;
	rmq_auth_ratelimit_stats(rl, &st);
	cr_assert_gt(st.evictions, 0);
	/* the attacker has fewer tokens than anyone else, so it is evicted last: still blocked */
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, SA(attacker), 0), -EAGAIN);
	rmq_auth_ratelimit_free(rl);
}

Test(auth_ratelimit, bad_arguments)
{
	cr_assert_null(rmq_auth_ratelimit_new(0, 1, 1));
	cr_assert_null(rmq_auth_ratelimit_new(16, 0, 1));
	cr_assert_null(rmq_auth_ratelimit_new(16, 1, 0));
	cr_assert_null(rmq_auth_ratelimit_new((1u << 20) + 1, 1, 1));
}

Test(auth, random_lines_never_crash)
{
	static const char *const tok[] = { "alice", ":", "$", "7", "6", "101", "BY3o6G50I/+LMubz",
					   "ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A==",
					   "=", "\n", " ", "#", "\r", "0", "99999999999" };
	uint64_t s = 0x9E3779B97F4A7C15ull;
	char text[1024];
	for (int round = 0; round < 2000; round++) {
		size_t n = 0;
		while (n < sizeof(text) - 128) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			if (s % 41 == 0)
				break;
			const char *t = tok[s % (sizeof(tok) / sizeof(*tok))];
			memcpy(text + n, t, strlen(t));
			n += strlen(t);
		}
		text[n] = '\0';
		struct rmq_auth *db = NULL;
		char err[256] = "";
		int rc = rmq_auth_load(write_file("fuzz", text), &db, err, sizeof(err));
		cr_assert(rc == 0 || (rc == -EINVAL && strstr(err, "fuzz") && !db), "rc %d '%s'", rc, err);
		if (db)
			cr_assert_eq(rmq_auth_check(db, S("alice"), S("wrong")), -EACCES);
		rmq_auth_free(db);
	}
}
