/* Topic names and filters [MQTT-4.7]: wildcard placement, $ topics, shared subscriptions [MQTT-4.8.2],
 * empty levels, length and level limits. Test-only; single-threaded. */
#include "test_proto_helpers.h"

static int name(const char *s)
{
	return rmq_proto_topic_name_check((const uint8_t *)s, strlen(s));
}

static int filter(const char *s)
{
	return rmq_proto_topic_filter_check((const uint8_t *)s, strlen(s));
}

Test(proto_topic, names)
{
	const char *good[] = {"a", "/", "//", "a/b/c", "/leading", "trailing/", "$SYS/broker", "sport/tennis/player1",
			      "caf\xC3\xA9/\xF0\x9F\x9A\x97", "with space", "a-very-long-level-name-beyond-eight-bytes/x"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		cr_assert_eq(name(good[i]), RMQ_OK, "%s", good[i]);
	const char *wild[] = {"+", "#", "a/+", "a/#", "a+b", "sport/tennis#", "abcdefgh+", "abcdefghijklmno#"};
	for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++)
		cr_assert_eq(name(wild[i]), RMQ_E_TOPIC_NAME, "%s", wild[i]);
	cr_assert_eq(name(""), RMQ_E_TOPIC_NAME, "[MQTT-4.7.3-1]");
	cr_assert_eq(rmq_proto_topic_name_check((const uint8_t *)"a\0b", 3), RMQ_E_UTF8);
	cr_assert_eq(rmq_proto_topic_name_check((const uint8_t *)"abcdefghij\0", 11), RMQ_E_UTF8);
	cr_assert_eq(name("a/\xED\xA0\x80"), RMQ_E_UTF8);
	cr_assert_eq(name("\xC3\xA9/+"), RMQ_E_TOPIC_NAME, "wildcard after non-ASCII");
}

Test(proto_topic, filters)
{
	const char *good[] = {"#", "+", "+/+", "/+", "+/", "a/#", "a/+/c", "sport/tennis/+", "sport/+/player1",
			      "+/tennis/#", "/", "$SYS/#", "$share/g/a/b", "$share/g/#", "$share/g/+/x",
			      "$share/g//", "$sharex/+", "$share"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		cr_assert_eq(filter(good[i]), RMQ_OK, "%s", good[i]);
	const char *bad[] = {"", "a#", "#/a", "a/#/b", "a/b#", "##", "a+", "+a", "a/+b", "a/b+/c", "++",
			     "$share/", "$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/#/a",
			     "$share/g/a#", "\xC0\x80"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(filter(bad[i]), RMQ_E_TOPIC_FILTER, "%s", bad[i]);
	cr_assert_eq(rmq_proto_topic_filter_check((const uint8_t *)"a/\0", 3), RMQ_E_TOPIC_FILTER);
}

Test(proto_topic, level_limit)
{
	char s[2 * RMQ_MAX_TOPIC_LEVELS + 2];
	/* RMQ_MAX_TOPIC_LEVELS levels: "a/a/.../a" */
	size_t n = 0;
	for (unsigned i = 0; i < RMQ_MAX_TOPIC_LEVELS; i++) {
		s[n++] = 'a';
		s[n++] = '/';
	}
	s[n - 1] = '\0';
	cr_assert_eq(name(s), RMQ_OK);
	cr_assert_eq(filter(s), RMQ_OK);
	s[n - 1] = '/';
	s[n] = '\0'; /* one more, empty, level */
	cr_assert_eq(name(s), RMQ_E_TOPIC_NAME);
	cr_assert_eq(filter(s), RMQ_E_TOPIC_FILTER);
}

Test(proto_topic, length_limit)
{
	static uint8_t s[RMQ_MAX_TOPIC_LEN + 1];
	memset(s, 'a', sizeof s);
	cr_assert_eq(rmq_proto_topic_name_check(s, RMQ_MAX_TOPIC_LEN), RMQ_OK);
	cr_assert_eq(rmq_proto_topic_name_check(s, RMQ_MAX_TOPIC_LEN + 1), RMQ_E_TOPIC_NAME);
	cr_assert_eq(rmq_proto_topic_filter_check(s, RMQ_MAX_TOPIC_LEN), RMQ_OK);
	cr_assert_eq(rmq_proto_topic_filter_check(s, RMQ_MAX_TOPIC_LEN + 1), RMQ_E_TOPIC_FILTER);
}

Test(proto_topic, wildcard_at_every_offset_of_a_long_name)
{
	char s[33];
	const char wild[] = {'+', '#'};
	for (size_t w = 0; w < 2; w++) {
		for (size_t i = 0; i < 32; i++) {
			memset(s, 'x', 32);
			s[32] = '\0';
			s[i] = wild[w];
			cr_assert_eq(name(s), RMQ_E_TOPIC_NAME, "%s", s);
		}
	}
}
