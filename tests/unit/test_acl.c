/* Unit tests for core/security/acl.c: each rule type, deny precedence, %u/%c patterns, wildcards and '$' topics,
 * users without rules, subscribe decisions (full, filtered, denied) and parse errors with line numbers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "security/acl.h"

#define R RMQ_ACL_READ
#define W RMQ_ACL_WRITE
#define ANON NULL

static struct rmq_acl *parse(const char *text)
{
	struct rmq_acl *acl = NULL;
	char err[256] = "";
	int rc = rmq_acl_parse(text, strlen(text), "acl", &acl, err, sizeof(err));
	cr_assert_eq(rc, 0, "parse failed: %s", err);
	return acl;
}

static struct rmq_acl_who who(const char *cid, const char *user)
{
	return (struct rmq_acl_who){ (const uint8_t *)cid, strlen(cid), (const uint8_t *)user, user ? strlen(user) : 0 };
}

static int chk(const struct rmq_acl *acl, const char *cid, const char *user, const char *topic, int access)
{
	struct rmq_acl_who w = who(cid, user);
	return rmq_acl_check(acl, &w, (const uint8_t *)topic, strlen(topic), access);
}

static int sub(const struct rmq_acl *acl, const char *cid, const char *user, const char *filter)
{
	struct rmq_acl_who w = who(cid, user);
	return rmq_acl_check_subscribe(acl, &w, (const uint8_t *)filter, strlen(filter));
}

static const char *show(const char *user)
{
	return user ? user : "(anonymous)";
}

#define ALLOW(acl, cid, user, topic, acc) \
	cr_assert_eq(chk(acl, cid, user, topic, acc), 0, "%s/%s %s %d should be allowed", cid, show(user), topic, acc)
#define DENY(acl, cid, user, topic, acc) \
	cr_assert_eq(chk(acl, cid, user, topic, acc), -EACCES, "%s/%s %s %d should be denied", cid, show(user), topic, acc)

Test(acl, access_words)
{
	struct rmq_acl *acl = parse("user u\n"
				    "topic read r/#\n"
				    "topic write w/#\n"
				    "topic readwrite rw/#\n"
				    "topic both/#\n"
				    "topic deny rw/secret\n");
	ALLOW(acl, "c", "u", "r/x", R);
	DENY(acl, "c", "u", "r/x", W);
	ALLOW(acl, "c", "u", "w/x", W);
	DENY(acl, "c", "u", "w/x", R);
	ALLOW(acl, "c", "u", "rw/x", R);
	ALLOW(acl, "c", "u", "rw/x", W);
	ALLOW(acl, "c", "u", "both/x/y", R);
	ALLOW(acl, "c", "u", "both", W); /* '#' includes the parent level */
	DENY(acl, "c", "u", "rw/secret", R);
	DENY(acl, "c", "u", "rw/secret", W);
	DENY(acl, "c", "u", "other", R);
	DENY(acl, "c", "u", "r/x", 0);
	DENY(acl, "c", "u", "r/x", R | W);
	rmq_acl_free(acl);
}

Test(acl, deny_wins_wherever_it_is_written)
{
	/* deny after the allow in the file, and in a second section for the same user */
	struct rmq_acl *acl = parse("user a\ntopic readwrite fleet/#\nuser b\ntopic fleet/#\n"
				    "user a\ntopic deny fleet/+/debug\n");
	ALLOW(acl, "c", "a", "fleet/v1/state", W);
	DENY(acl, "c", "a", "fleet/v1/debug", W);
	DENY(acl, "c", "a", "fleet/v1/debug", R);
	ALLOW(acl, "c", "b", "fleet/v1/debug", W);
	size_t users, topics, patterns;
	rmq_acl_counts(acl, &users, &topics, &patterns);
	cr_assert_eq(users, 2);
	cr_assert_eq(topics, 3);
	cr_assert_eq(patterns, 0);
	rmq_acl_free(acl);
}

Test(acl, anonymous_section_only_for_clients_without_username)
{
	struct rmq_acl *acl = parse("# public status\ntopic read status/#\n\nuser ops\ntopic readwrite #\n");
	ALLOW(acl, "c", ANON, "status/up", R);
	DENY(acl, "c", ANON, "status/up", W);
	DENY(acl, "c", ANON, "cmd", R);
	/* a user not in the file does not inherit the anonymous rules */
	DENY(acl, "c", "stranger", "status/up", R);
	/* an empty username is a username, not anonymity */
	DENY(acl, "c", "", "status/up", R);
	ALLOW(acl, "c", "ops", "cmd/x", W);
	rmq_acl_free(acl);
}

Test(acl, user_without_rules_is_denied_everything)
{
	struct rmq_acl *acl = parse("user empty\nuser full\ntopic #\n");
	DENY(acl, "c", "empty", "a", R);
	DENY(acl, "c", "empty", "a", W);
	DENY(acl, "c", "nobody", "a", R);
	ALLOW(acl, "c", "full", "a", R);
	rmq_acl_free(acl);
	acl = parse("");
	DENY(acl, "c", ANON, "a", R);
	DENY(acl, "c", "u", "a", W);
	rmq_acl_free(acl);
}

Test(acl, pattern_user_confines_a_car_to_its_own_topics)
{
	struct rmq_acl *acl = parse("pattern readwrite cars/%u/#\npattern read cmd/%c\n");
	ALLOW(acl, "id-1", "V1", "cars/V1/telemetry", W);
	ALLOW(acl, "id-1", "V1", "cars/V1", W);
	DENY(acl, "id-1", "V1", "cars/V2/telemetry", W);
	DENY(acl, "id-1", "V1", "cars/V2/telemetry", R);
	DENY(acl, "id-1", "V1", "cars/V1x/telemetry", W);
	DENY(acl, "id-1", "V1", "cars", W);
	ALLOW(acl, "id-1", "V1", "cmd/id-1", R);
	DENY(acl, "id-1", "V1", "cmd/id-1", W);
	DENY(acl, "id-1", "V1", "cmd/id-2", R);
	/* %u rules are skipped without a username; %c rules still apply */
	DENY(acl, "id-1", ANON, "cars/%u/x", W);
	ALLOW(acl, "id-1", ANON, "cmd/id-1", R);
	rmq_acl_free(acl);
}

Test(acl, wildcard_ids_denied_when_patterns_exist)
{
	struct rmq_acl *acl = parse("user admin+\ntopic readwrite own/#\n"
				    "pattern readwrite cars/%u/#\npattern readwrite dev/%c/#\n");
	DENY(acl, "c", "+", "cars/V1/x", W);
	DENY(acl, "c", "#", "cars/anything", W);
	DENY(acl, "c", "V+", "cars/V+/x", W);
	DENY(acl, "#", "V1", "cars/V1/x", W);
	DENY(acl, "a/+", ANON, "dev/a/b/x", W);
	ALLOW(acl, "c", "V1", "cars/V1/x", W);
	/* own topic rules are checked before the wildcard guard, as in mosquitto */
	ALLOW(acl, "c", "admin+", "own/x", W);
	DENY(acl, "c", "admin+", "cars/admin+/x", W);
	rmq_acl_free(acl);
}

Test(acl, pattern_deny_and_order_against_topic_rules)
{
	struct rmq_acl *acl = parse("user fleet\ntopic read cars/#\n"
				    "pattern readwrite cars/%u/#\npattern deny cars/%u/keys/#\n");
	/* the user's own allow is checked before any pattern: it wins over a pattern deny */
	ALLOW(acl, "c", "fleet", "cars/fleet/keys/1", R);
	/* write is not granted by the topic rule; the pattern deny comes before the pattern allow */
	DENY(acl, "c", "fleet", "cars/fleet/keys/1", W);
	ALLOW(acl, "c", "fleet", "cars/fleet/pos", W);
	ALLOW(acl, "c", "V9", "cars/V9/pos", W);
	DENY(acl, "c", "V9", "cars/V9/keys/k", R);
	rmq_acl_free(acl);
}

Test(acl, wildcards_levels_and_dollar_topics)
{
	struct rmq_acl *acl = parse("topic read a/+/c\ntopic read x/#\ntopic read #\ntopic read $SYS/broker/+\n"
				    "topic write /lead\ntopic write e//f\n");
	ALLOW(acl, "c", ANON, "a/b/c", R);
	ALLOW(acl, "c", ANON, "a//c", R);
	ALLOW(acl, "c", ANON, "anything/at/all", R); /* via '#' */
	DENY(acl, "c", ANON, "$SYS/x", R);            /* '#' never matches '$' topics */
	ALLOW(acl, "c", ANON, "$SYS/broker/uptime", R);
	DENY(acl, "c", ANON, "$SYS/broker/a/b", R);
	ALLOW(acl, "c", ANON, "/lead", W);
	DENY(acl, "c", ANON, "lead", W);
	ALLOW(acl, "c", ANON, "e//f", W);
	DENY(acl, "c", ANON, "e/f", W);
	rmq_acl_free(acl);
	acl = parse("topic read +/x\n");
	DENY(acl, "c", ANON, "$aws/x", R);
	ALLOW(acl, "c", ANON, "aws/x", R);
	DENY(acl, "c", ANON, "aws/x/y", R);
	rmq_acl_free(acl);
}

Test(acl, blanks_in_filters_and_user_names)
{
	struct rmq_acl *acl = parse("  user   Fleet Ops  \r\n\ttopic  read   site A/#  \r\n  # indented comment\n");
	ALLOW(acl, "c", "Fleet Ops", "site A/x", R);
	DENY(acl, "c", "Fleet", "site A/x", R);
	DENY(acl, "c", "Fleet Ops", "site/x", R);
	rmq_acl_free(acl);
}

Test(acl, subscribe_full_filtered_denied)
{
	struct rmq_acl *acl = parse("user u\ntopic read cars/#\ntopic deny cars/+/keys\ntopic read pub/+/state\n"
				    "topic write up/#\n"
				    "pattern read cmd/%u/#\n");
	cr_assert_eq(sub(acl, "c", "u", "cars/v1/pos"), 0);
	cr_assert_eq(sub(acl, "c", "u", "cars/+/pos"), 0);
	cr_assert_eq(sub(acl, "c", "u", "cars/v1/#"), RMQ_ACL_FILTERED, "overlaps cars/v1/keys");
	cr_assert_eq(sub(acl, "c", "u", "cars/#"), RMQ_ACL_FILTERED);
	cr_assert_eq(sub(acl, "c", "u", "cars/v1/keys"), -EACCES);
	cr_assert_eq(sub(acl, "c", "u", "cars/+/keys"), -EACCES);
	cr_assert_eq(sub(acl, "c", "u", "pub/a/state"), 0);
	cr_assert_eq(sub(acl, "c", "u", "pub/#"), RMQ_ACL_FILTERED);
	cr_assert_eq(sub(acl, "c", "u", "pub/+/other"), -EACCES);
	cr_assert_eq(sub(acl, "c", "u", "up/#"), -EACCES, "write access does not allow reading");
	cr_assert_eq(sub(acl, "c", "u", "cmd/u/#"), 0);
	cr_assert_eq(sub(acl, "c", "u", "cmd/#"), RMQ_ACL_FILTERED);
	cr_assert_eq(sub(acl, "c", "u", "cmd/other/#"), -EACCES);
	cr_assert_eq(sub(acl, "c", "u", "#"), RMQ_ACL_FILTERED);
	cr_assert_eq(sub(acl, "c", "u", "+"), RMQ_ACL_FILTERED, "the topic 'cars' is readable through cars/#");
	cr_assert_eq(sub(acl, "c", "u", "$SYS/#"), -EACCES);
	/* shared subscriptions are judged by their filter */
	cr_assert_eq(sub(acl, "c", "u", "$share/g/cars/v1/pos"), 0);
	cr_assert_eq(sub(acl, "c", "u", "$share/g/cars/v1/keys"), -EACCES);
	cr_assert_eq(sub(acl, "c", "u", "$share/g"), -EACCES);
	cr_assert_eq(sub(acl, "c", "other", "cars/v1/pos"), -EACCES);
	rmq_acl_free(acl);
}

Test(acl, subscribe_hash_rule_and_parent_level)
{
	struct rmq_acl *acl = parse("topic read a/#\ntopic read $SYS/#\n");
	cr_assert_eq(sub(acl, "c", ANON, "a"), 0);
	cr_assert_eq(sub(acl, "c", ANON, "a/#"), 0);
	cr_assert_eq(sub(acl, "c", ANON, "a/+/+"), 0);
	cr_assert_eq(sub(acl, "c", ANON, "+/x"), RMQ_ACL_FILTERED);
	cr_assert_eq(sub(acl, "c", ANON, "#"), RMQ_ACL_FILTERED);
	cr_assert_eq(sub(acl, "c", ANON, "b/#"), -EACCES);
	cr_assert_eq(sub(acl, "c", ANON, "$SYS/broker/#"), 0);
	rmq_acl_free(acl);
}

Test(acl, null_acl_allows)
{
	struct rmq_acl_who w = who("c", NULL);
	cr_assert_eq(rmq_acl_check(NULL, &w, (const uint8_t *)"a", 1, W), 0);
	cr_assert_eq(rmq_acl_check_subscribe(NULL, &w, (const uint8_t *)"#", 1), 0);
}

Test(acl, long_substitution_uses_heap)
{
	char user[2000], topic[2100], text[64];
	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	snprintf(topic, sizeof(topic), "cars/%s/x", user);
	snprintf(text, sizeof(text), "pattern write cars/%%u/#\n");
	struct rmq_acl *acl = parse(text);
	ALLOW(acl, "c", user, topic, W);
	topic[6] = 'v';
	DENY(acl, "c", user, topic, W);
	rmq_acl_free(acl);
}

static void bad(const char *text, const char *needle)
{
	struct rmq_acl *acl = (struct rmq_acl *)1;
	char err[256] = "";
	int rc = rmq_acl_parse(text, strlen(text), "acl.conf", &acl, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "'%s' parsed (rc %d)", text, rc);
	cr_assert_null(acl);
	cr_assert(strstr(err, needle), "reason '%s' lacks '%s'", err, needle);
}

Test(acl, errors_name_the_line)
{
	bad("topic read a\ntopc read b\n", "acl.conf:2: unknown keyword 'topc'");
	bad("user\n", "acl.conf:1: 'user' needs a user name");
	bad("user   \n", "acl.conf:1: 'user' needs a user name");
	bad("\n\ntopic\n", "acl.conf:3: 'topic' needs a topic filter");
	bad("pattern \n", "acl.conf:1: 'pattern' needs a topic filter");
	bad("topic rw a/b\n", "acl.conf:1: unknown access 'rw'");
	bad("topic read a/#/b\n", "acl.conf:1: invalid topic filter 'a/#/b'");
	bad("topic read a/b+\n", "invalid topic filter");
	bad("topic read a#\n", "invalid topic filter");
	bad("# ok\nuser x\npattern deny cars/%u+/x\n", "acl.conf:3: invalid topic filter");
	char nul[] = "topic read a\0b\n";
	struct rmq_acl *acl = NULL;
	char err[128];
	cr_assert_eq(rmq_acl_parse(nul, sizeof(nul) - 1, "n", &acl, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "n:1: NUL"), "%s", err);
}

Test(acl, load_from_file)
{
	char path[] = "/tmp/rmq-acl-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	const char *text = "user car\ntopic write up/#\n# end without newline\npattern read down/%c";
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct rmq_acl *acl = NULL;
	char err[256] = "";
	cr_assert_eq(rmq_acl_load(path, &acl, err, sizeof(err)), 0, "%s", err);
	ALLOW(acl, "k1", "car", "up/x", W);
	ALLOW(acl, "k1", "car", "down/k1", R);
	DENY(acl, "k1", "car", "down/k2", R);
	rmq_acl_free(acl);
	unlink(path);
	cr_assert_eq(rmq_acl_load(path, &acl, err, sizeof(err)), -ENOENT);
	cr_assert_null(acl);
	cr_assert(strstr(err, path), "%s", err);
}

Test(acl, random_text_never_crashes)
{
	/* Deterministic xorshift over an alphabet of the file's own tokens, so a failure reproduces. */
	static const char *const tok[] = { "user", "topic", "pattern", "read", "write", "readwrite", "deny", "#",
					   "+", "/", "%c", "%u", " ", "\t", "\n", "a", "$SYS", "\r\n", "\0", "x#" };
	uint64_t s = 0x2545F4914F6CDD1Dull;
	char text[512];
	for (int round = 0; round < 5000; round++) {
		size_t n = 0;
		while (n < sizeof(text) - 16) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			if (s % 61 == 0)
				break;
			const char *t = tok[s % (sizeof(tok) / sizeof(*tok))];
			size_t tl = t[0] ? strlen(t) : 1;
			memcpy(text + n, t, tl);
			n += tl;
		}
		struct rmq_acl *acl = NULL;
		char err[128] = "";
		int rc = rmq_acl_parse(text, n, "fuzz", &acl, err, sizeof(err));
		cr_assert(rc == 0 || (rc == -EINVAL && strncmp(err, "fuzz:", 5) == 0 && !acl), "rc %d err '%s'", rc, err);
		if (!acl)
			continue;
		const char *topics[] = { "a", "a/b", "$SYS/x", "/", "a//b" };
		for (size_t i = 0; i < sizeof(topics) / sizeof(*topics); i++) {
			int r = chk(acl, "c+", round & 1 ? "u#" : NULL, topics[i], R);
			cr_assert(r == 0 || r == -EACCES);
			r = sub(acl, "cid", "a", topics[i]);
			cr_assert(r == 0 || r == RMQ_ACL_FILTERED || r == -EACCES);
		}
		rmq_acl_free(acl);
	}
}
