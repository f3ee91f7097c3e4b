/* Unit tests for core/security/security.c: loading with the allow-anonymous default, CONNECT decisions (anonymous,
 * password, mTLS identity, rate limit, will ACL) and the reason codes per protocol version. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "security/security.h"

/* alice/secret, from mosquitto_passwd 2.0.11 */
#define ALICE_7 "alice:$7$101$BY3o6G50I/+LMubz$ynf2swgqcG1zfiqejR1D4+ylwsRz05if2dCgoqG1BSMIQGMxm1lzMxU3w/4aGHxVAD+hwFF3Utqlv9VeSit85A==\n"

static char pwfile[64], aclfile[64];

static void write_tmp(char *path, const char *text)
{
	strcpy(path, "/tmp/rmq-sec-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void setup(void)
{
	write_tmp(pwfile, ALICE_7);
	write_tmp(aclfile, "pattern write cars/%u/#\npattern write dev/%c/#\ntopic write public/#\n");
}

static void teardown(void)
{
	unlink(pwfile);
	unlink(aclfile);
}

TestSuite(security, .init = setup, .fini = teardown);

static struct rmq_str str(const char *s)
{
	return (struct rmq_str){ (const uint8_t *)s, s ? (uint32_t)strlen(s) : 0 };
}

static struct rmq_connect conn(const char *id, const char *user, const char *pass)
{
	struct rmq_connect ck;
	memset(&ck, 0, sizeof(ck));
	ck.version = RMQ_V311;
	ck.client_id = str(id);
	ck.has_username = user != NULL;
	ck.username = str(user);
	ck.has_password = pass != NULL;
	ck.password = str(pass);
	return ck;
}

static enum rmq_security_verdict decide(const struct rmq_security *s, struct rmq_auth_ratelimit *rl,
					const struct rmq_connect *ck, const char *cert, const struct sockaddr *peer)
{
	struct rmq_security_login in = { .ck = ck, .peer = peer, .cert_name = cert, .now_ms = 1000 };
	return rmq_security_connect(s, rl, &in);
}

Test(security, anonymous_default_follows_configuration)
{
	struct rmq_security s;
	char err[256];
	struct rmq_connect anon = conn("c", NULL, NULL), named = conn("c", "bob", "x");
	cr_assert_eq(rmq_security_load(&s, NULL, NULL, -1, false, err, sizeof(err)), 0, "%s", err);
	cr_assert(s.allow_anonymous, "nothing configured: open, as before");
	cr_assert_eq(decide(&s, NULL, &anon, NULL, NULL), RMQ_SEC_OK);
	cr_assert_eq(decide(&s, NULL, &named, NULL, NULL), RMQ_SEC_OK);
	rmq_security_free(&s);
	cr_assert_eq(rmq_security_load(&s, pwfile, NULL, -1, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(s.allow_anonymous, "a password file closes anonymous access by default");
	cr_assert_eq(decide(&s, NULL, &anon, NULL, NULL), RMQ_SEC_NOT_AUTHORIZED);
	rmq_security_free(&s);
	cr_assert_eq(rmq_security_load(&s, NULL, NULL, -1, true, err, sizeof(err)), 0);
	cr_assert_not(s.allow_anonymous, "required client certificates close it too");
	cr_assert_eq(decide(&s, NULL, &anon, NULL, NULL), RMQ_SEC_NOT_AUTHORIZED);
	cr_assert_eq(decide(&s, NULL, &named, NULL, NULL), RMQ_SEC_NOT_AUTHORIZED, "no file to check a password against");
	cr_assert_eq(decide(&s, NULL, &anon, "car-42", NULL), RMQ_SEC_OK);
	rmq_security_free(&s);
	cr_assert_eq(rmq_security_load(&s, pwfile, NULL, 1, false, err, sizeof(err)), 0);
	cr_assert(s.allow_anonymous, "explicit --allow-anonymous wins");
	cr_assert_eq(decide(&s, NULL, &anon, NULL, NULL), RMQ_SEC_OK);
	cr_assert_eq(decide(&s, NULL, &named, NULL, NULL), RMQ_SEC_BAD_LOGIN, "a username is still checked");
	rmq_security_free(&s);
}

Test(security, passwords_and_identity)
{
	struct rmq_security s;
	char err[256];
	cr_assert_eq(rmq_security_load(&s, pwfile, aclfile, -1, false, err, sizeof(err)), 0, "%s", err);
	struct rmq_connect ok = conn("c1", "alice", "secret"), bad = conn("c1", "alice", "Secret"),
			   unknown = conn("c1", "mallory", "secret"), nopass = conn("c1", "alice", NULL),
			   passonly = conn("c1", NULL, "secret");
	cr_assert_eq(decide(&s, NULL, &ok, NULL, NULL), RMQ_SEC_OK);
	cr_assert_eq(decide(&s, NULL, &bad, NULL, NULL), RMQ_SEC_BAD_LOGIN);
	cr_assert_eq(decide(&s, NULL, &unknown, NULL, NULL), RMQ_SEC_BAD_LOGIN);
	cr_assert_eq(decide(&s, NULL, &nopass, NULL, NULL), RMQ_SEC_BAD_LOGIN);
	cr_assert_eq(decide(&s, NULL, &passonly, NULL, NULL), RMQ_SEC_BAD_LOGIN);
	/* a verified certificate is the identity, whatever was typed */
	cr_assert_eq(decide(&s, NULL, &bad, "car-42", NULL), RMQ_SEC_OK);
	struct rmq_security_login in = { .ck = &bad, .cert_name = "car-42" };
	size_t n;
	const uint8_t *u = rmq_security_username(&in, &n);
	cr_assert_eq(n, 6);
	cr_assert_eq(memcmp(u, "car-42", 6), 0);
	in.cert_name = NULL;
	u = rmq_security_username(&in, &n);
	cr_assert_eq(n, 5);
	cr_assert_eq(memcmp(u, "alice", 5), 0);
	in.ck = &passonly;
	cr_assert_null(rmq_security_username(&in, &n));
	cr_assert_eq(n, 0);
	rmq_security_free(&s);
}

Test(security, failed_logins_rate_limited_per_address)
{
	struct rmq_security s;
	char err[256];
	cr_assert_eq(rmq_security_load(&s, pwfile, NULL, -1, false, err, sizeof(err)), 0);
	struct rmq_auth_ratelimit *rl = rmq_auth_ratelimit_new(64, 2, 1);
	struct sockaddr_in a = { .sin_family = AF_INET }, b = { .sin_family = AF_INET };
	inet_pton(AF_INET, "192.0.2.10", &a.sin_addr);
	inet_pton(AF_INET, "192.0.2.11", &b.sin_addr);
	struct rmq_connect ok = conn("c", "alice", "secret"), bad = conn("c", "alice", "guess");
	cr_assert_eq(decide(&s, rl, &bad, NULL, (struct sockaddr *)&a), RMQ_SEC_BAD_LOGIN);
	cr_assert_eq(decide(&s, rl, &bad, NULL, (struct sockaddr *)&a), RMQ_SEC_BAD_LOGIN);
	cr_assert_eq(decide(&s, rl, &bad, NULL, (struct sockaddr *)&a), RMQ_SEC_RATE_LIMITED);
	cr_assert_eq(decide(&s, rl, &ok, NULL, (struct sockaddr *)&a), RMQ_SEC_RATE_LIMITED,
		     "even the right password waits once the address is limited");
	cr_assert_eq(decide(&s, rl, &ok, NULL, (struct sockaddr *)&b), RMQ_SEC_OK);
	/* successes take no tokens */
	for (int i = 0; i < 10; i++)
		cr_assert_eq(decide(&s, rl, &ok, NULL, (struct sockaddr *)&b), RMQ_SEC_OK);
	struct rmq_auth_ratelimit_stats st;
	rmq_auth_ratelimit_stats(rl, &st);
	cr_assert_eq(st.failures, 2);
	cr_assert_eq(st.refused, 2);
	rmq_auth_ratelimit_free(rl);
	rmq_security_free(&s);
}

Test(security, will_topic_must_be_writable)
{
	struct rmq_security s;
	char err[256];
	cr_assert_eq(rmq_security_load(&s, pwfile, aclfile, -1, false, err, sizeof(err)), 0);
	struct rmq_connect ck = conn("c1", "alice", "secret");
	ck.will = true;
	ck.will_topic = str("cars/alice/status");
	cr_assert_eq(decide(&s, NULL, &ck, NULL, NULL), RMQ_SEC_OK);
	ck.will_topic = str("cars/bob/status");
	cr_assert_eq(decide(&s, NULL, &ck, NULL, NULL), RMQ_SEC_NOT_AUTHORIZED);
	ck.will_topic = str("dev/c1/gone");
	cr_assert_eq(decide(&s, NULL, &ck, NULL, NULL), RMQ_SEC_OK);
	ck.will_topic = str("cars/car-42/status");
	cr_assert_eq(decide(&s, NULL, &ck, "car-42", NULL), RMQ_SEC_OK, "the certificate name is the %%u");
	rmq_security_free(&s);
}

Test(security, load_errors_keep_nothing)
{
	struct rmq_security s;
	char err[256] = "";
	cr_assert_eq(rmq_security_load(&s, "/nonexistent/pw", aclfile, -1, false, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "/nonexistent/pw"), "%s", err);
	cr_assert_null(s.auth);
	cr_assert_null(s.acl);
	char badacl[64];
	write_tmp(badacl, "topic read ok\ntopic bogus x y\n");
	cr_assert_eq(rmq_security_load(&s, pwfile, badacl, -1, false, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, ":2: unknown access 'bogus'"), "%s", err);
	cr_assert_null(s.auth, "the password db loaded before the bad ACL must be freed");
	unlink(badacl);
}

Test(security, reason_codes)
{
	cr_assert_eq(rmq_security_connack_code(RMQ_SEC_OK, RMQ_V5), 0);
	cr_assert_eq(rmq_security_connack_code(RMQ_SEC_BAD_LOGIN, RMQ_V5), 0x86);
	cr_assert_eq(rmq_security_connack_code(RMQ_SEC_NOT_AUTHORIZED, RMQ_V5), 0x87);
	cr_assert_eq(rmq_security_connack_code(RMQ_SEC_RATE_LIMITED, RMQ_V5), 0x9F);
	cr_assert_eq(rmq_security_connack_code(RMQ_SEC_BAD_LOGIN, RMQ_V311), 0x05);
	cr_assert_eq(rmq_security_connack_code(RMQ_SEC_NOT_AUTHORIZED, RMQ_V31), 0x05);
	cr_assert_eq(rmq_security_connack_code(RMQ_SEC_RATE_LIMITED, RMQ_V311), 0x05);
	cr_assert_eq(rmq_security_publish_denied_code(RMQ_V5), 0x87);
	cr_assert_eq(rmq_security_publish_denied_code(RMQ_V311), 0);
	cr_assert_eq(rmq_security_subscribe_denied_code(RMQ_V5), 0x87);
	cr_assert_eq(rmq_security_subscribe_denied_code(RMQ_V311), 0x80);
}

Test(security, options)
{
	struct rmq_security_cfg cfg;
	char err[256] = "";
	rmq_security_cfg_init(&cfg);
	cr_assert_eq(cfg.allow_anonymous, -1);
	cr_assert_eq(rmq_security_option(&cfg, "listen", "1.2.3.4:1", err, sizeof(err)), -ENOENT);
	cr_assert_eq(rmq_security_option(&cfg, "password-file", pwfile, err, sizeof(err)), 0);
	cr_assert_eq(rmq_security_option(&cfg, "acl-file", aclfile, err, sizeof(err)), 0);
	cr_assert_eq(rmq_security_option(&cfg, "allow-anonymous", "false", err, sizeof(err)), 0);
	cr_assert_eq(cfg.allow_anonymous, 0);
	cr_assert_eq(rmq_security_option(&cfg, "allow-anonymous", "true", err, sizeof(err)), 0);
	cr_assert_eq(cfg.allow_anonymous, 1);
	cr_assert_eq(rmq_security_option(&cfg, "allow-anonymous", "maybe", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "want true or false"), "%s", err);
	cr_assert_eq(rmq_security_option(&cfg, "allow-anonymous", NULL, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_security_option(&cfg, "acl-file", "", err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_security_option(&cfg, "password-file", NULL, err, sizeof(err)), -EINVAL);
	char longpath[RMQ_SECURITY_PATH_MAX + 8];
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	cr_assert_eq(rmq_security_option(&cfg, "acl-file", longpath, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(cfg.acl_file, aclfile, "a refused value must not replace the old one");
	struct rmq_security s;
	cr_assert_eq(rmq_security_load_cfg(&s, &cfg, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(s.auth);
	cr_assert_not_null(s.acl);
	cr_assert(s.allow_anonymous);
	rmq_security_free(&s);
	rmq_security_cfg_init(&cfg);
	cr_assert_eq(rmq_security_load_cfg(&s, &cfg, false, err, sizeof(err)), 0);
	cr_assert_null(s.auth);
	cr_assert_null(s.acl);
	rmq_security_free(&s);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	rmq_security_usage(f);
	fclose(f);
	cr_assert(strstr(buf, "--password-file") && strstr(buf, "--acl-file") && strstr(buf, "--allow-anonymous"));
	free(buf);
}

Test(security, rate_limit_options)
{
	struct rmq_security_cfg cfg;
	char err[256] = "";
	rmq_security_cfg_init(&cfg);
	struct rmq_auth_ratelimit *rl = NULL;
	cr_assert_eq(rmq_security_ratelimit_new(&cfg, &rl), 0);
	cr_assert_not_null(rl, "on by default");
	rmq_auth_ratelimit_free(rl);
	cr_assert_eq(rmq_security_option(&cfg, "auth-fail-burst", "0", err, sizeof(err)), 0);
	cr_assert_eq(rmq_security_ratelimit_new(&cfg, &rl), 0);
	cr_assert_null(rl, "burst 0 turns it off");
	cr_assert_eq(rmq_security_option(&cfg, "auth-fail-burst", "2", err, sizeof(err)), 0);
	cr_assert_eq(rmq_security_option(&cfg, "auth-fail-per-minute", "60", err, sizeof(err)), 0);
	cr_assert_eq(rmq_security_ratelimit_new(&cfg, &rl), 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	rmq_auth_ratelimit_fail(rl, (struct sockaddr *)&a, 0);
	rmq_auth_ratelimit_fail(rl, (struct sockaddr *)&a, 0);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, (struct sockaddr *)&a, 0), -EAGAIN);
	cr_assert_eq(rmq_auth_ratelimit_allow(rl, (struct sockaddr *)&a, 1000), 0, "60 per minute: one per second");
	rmq_auth_ratelimit_free(rl);
	const char *bad[][2] = { { "auth-fail-burst", "-1" }, { "auth-fail-burst", "100001" }, { "auth-fail-burst", "5x" },
				 { "auth-fail-burst", "" }, { "auth-fail-per-minute", "0" }, { "auth-fail-per-minute", NULL } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		cr_assert_eq(rmq_security_option(&cfg, bad[i][0], bad[i][1], err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_assert(strstr(err, bad[i][0]), "%s", err);
	}
	cr_assert_eq(cfg.fail_burst, 2, "refused values change nothing");
	cr_assert_eq(cfg.fail_per_minute, 60);
}

Test(security, reload_swaps_and_retires)
{
	struct rmq_security_cfg cfg;
	char err[256] = "";
	rmq_security_cfg_init(&cfg);
	cr_assert_eq(rmq_security_option(&cfg, "password-file", pwfile, err, sizeof(err)), 0);
	cr_assert_eq(rmq_security_option(&cfg, "acl-file", aclfile, err, sizeof(err)), 0);
	struct rmq_security s;
	cr_assert_eq(rmq_security_load_cfg(&s, &cfg, false, err, sizeof(err)), 0, "%s", err);
	struct rmq_connect bob = conn("c", "bob", "bobpw");
	cr_assert_eq(decide(&s, NULL, &bob, NULL, NULL), RMQ_SEC_BAD_LOGIN);
	/* add bob (as ringmq-passwd would) and reload */
	char enc[RMQ_AUTH_ENCODED_MAX], text[512];
	cr_assert_eq(rmq_auth_encode((const uint8_t *)"bobpw", 5, enc, sizeof(enc)), 0);
	snprintf(text, sizeof(text), ALICE_7 "bob:%s\n", enc);
	FILE *f = fopen(pwfile, "w");
	fputs(text, f);
	fclose(f);
	struct rmq_auth *old_auth = s.auth;
	cr_assert_eq(rmq_security_reload(&s, &cfg, 1000, err, sizeof(err)), 0, "%s", err);
	cr_assert_neq(s.auth, old_auth);
	cr_assert_eq(s.nretired, 1);
	cr_assert_eq(s.retired[0].auth, old_auth, "the old db waits out its grace period");
	cr_assert_eq(decide(&s, NULL, &bob, NULL, NULL), RMQ_SEC_OK);
	/* a broken ACL file: nothing changes */
	f = fopen(aclfile, "w");
	fputs("topic read ok\nbogus line\n", f);
	fclose(f);
	struct rmq_auth *cur_auth = s.auth;
	struct rmq_acl *cur_acl = s.acl;
	cr_assert_eq(rmq_security_reload(&s, &cfg, 2000, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, ":2: unknown keyword 'bogus'"), "%s", err);
	cr_assert_eq(s.auth, cur_auth);
	cr_assert_eq(s.acl, cur_acl);
	cr_assert_eq(s.nretired, 1);
	/* bounded: reloads faster than the grace period run out of retire slots */
	f = fopen(aclfile, "w");
	fputs("topic read ok\n", f);
	fclose(f);
	for (int i = 1; i < RMQ_SECURITY_RETIRED_MAX; i++)
		cr_assert_eq(rmq_security_reload(&s, &cfg, 3000, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(s.nretired, RMQ_SECURITY_RETIRED_MAX);
	cr_assert_eq(rmq_security_reload(&s, &cfg, 4000, err, sizeof(err)), -EBUSY);
	/* after the grace period the retired ones are freed and reloading works again */
	cr_assert_eq(rmq_security_reload(&s, &cfg, 3000 + RMQ_SECURITY_GRACE_MS, err, sizeof(err)), 0);
	cr_assert_eq(s.nretired, 1, "only the one just replaced is kept");
	rmq_security_free(&s); /* ASan's leak check covers the retired databases */
}
