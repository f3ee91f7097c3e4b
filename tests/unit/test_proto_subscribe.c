/* SUBSCRIBE, UNSUBSCRIBE, SUBACK, UNSUBACK: filter list rules, subscription options per version,
 * shared subscriptions, reason codes. Test-only; single-threaded. */
#include "test_proto_helpers.h"

/* SUBSCRIBE (v3 layout) with one filter "a/b" and options byte `opt`. */
static int sub_opt(uint8_t version, uint8_t opt)
{
	if (version == RMQ_V5) {
		const uint8_t b[] = {0x82, 0x09, 0, 1, 0, 0, 3, 'a', '/', 'b', opt};
		return dec_srv(version, b, sizeof b);
	}
	const uint8_t b[] = {0x82, 0x08, 0, 1, 0, 3, 'a', '/', 'b', opt};
	return dec_srv(version, b, sizeof b);
}

Test(proto_subscribe, options_byte)
{
	for (uint8_t v = RMQ_V31; v <= RMQ_V5; v++) {
		for (unsigned opt = 0; opt < 256; opt++) {
			int want;
			if (opt & (v == RMQ_V5 ? 0xC0 : 0xFC))
				want = RMQ_E_SUB_OPTIONS;
			else if ((opt & 3) == 3)
				want = RMQ_E_BAD_QOS;
			else if (((opt >> 4) & 3) == 3)
				want = RMQ_E_SUB_OPTIONS;
			else
				want = RMQ_OK;
			cr_assert_eq(sub_opt(v, (uint8_t)opt), want, "v%u options 0x%02x", v, opt);
		}
	}
}

Test(proto_subscribe, shared_no_local)
{
	static const uint8_t b[] = {0x82, 0x10, 0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x04};
	cr_assert_eq(dec_srv(RMQ_V5, b, sizeof b), RMQ_E_SHARED_NO_LOCAL, "[MQTT-3.8.3-4]");
	static const uint8_t ok[] = {0x82, 0x10, 0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x01};
	cr_assert_eq(dec_srv(RMQ_V5, ok, sizeof ok), RMQ_OK);
}

Test(proto_subscribe, list_rules)
{
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x02, 0, 1)), RMQ_E_NO_TOPICS, "[MQTT-3.8.3-3]");
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0x82, 0x03, 0, 1, 0)), RMQ_E_NO_TOPICS);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xA2, 0x02, 0, 1)), RMQ_E_NO_TOPICS, "[MQTT-3.10.3-2]");
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x06, 0, 0, 0, 1, 'a', 0)), RMQ_E_PACKET_ID_ZERO);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xA2, 0x05, 0, 0, 0, 1, 'a')), RMQ_E_PACKET_ID_ZERO);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x05, 0, 1, 0, 1, 'a')), RMQ_E_TRUNCATED, "options missing");
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x06, 0, 1, 0, 2, 'a', 'b')), RMQ_E_TRUNCATED);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x06, 0, 1, 0, 2, 'a', 0)), RMQ_E_UTF8);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x06, 0, 1, 0, 1, '#', 0)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x07, 0, 1, 0, 2, 'a', '#', 0)), RMQ_E_TOPIC_FILTER);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x05, 0, 1, 0, 0, 0)), RMQ_E_TOPIC_FILTER, "empty filter");
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x06, 0, 1, 0, 1, 0xFE, 0)), RMQ_E_UTF8);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xA2, 0x06, 0, 1, 0, 2, '+', '+')), RMQ_E_TOPIC_FILTER);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xA2, 0x06, 0, 1, 0, 2, 0xC0, 0x80)), RMQ_E_UTF8);
	/* second entry bad: the whole packet is refused */
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x82, 0x0A, 0, 1, 0, 1, 'a', 0, 0, 1, 'b', 3)), RMQ_E_BAD_QOS);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_TOPIC_FILTER), RMQ_RC_TOPIC_FILTER_INVALID);
}

Test(proto_subscribe, v5_properties)
{
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0x82, 0x09, 0, 1, 2, 0x0B, 0x05, 0, 1, 'a', 0)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0x82, 0x09, 0, 1, 2, 0x0B, 0x00, 0, 1, 'a', 0)), RMQ_E_SUB_ID_ZERO);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xA2, 0x08, 0, 1, 2, 0x0B, 0x05, 0, 1, 'a')), RMQ_E_PROP_NOT_ALLOWED,
		     "UNSUBSCRIBE takes only user properties");
}

Test(proto_subscribe, builder_and_iterator_limits)
{
	struct rmq_subscribe s = {0};
	uint8_t small[4];
	size_t used = 0;
	cr_assert_eq(rmq_sub_add(&s, small, sizeof small, &used, S("abc"), 0), RMQ_E_BUF_TOO_SMALL);
	cr_assert_eq(s.count, 0);
	cr_assert_eq(rmq_sub_add(&s, small, sizeof small, &used, S("a"), 1), RMQ_OK);
	cr_assert_eq(used, 4);
	uint32_t pos = 0;
	struct rmq_sub_entry e;
	cr_assert(rmq_sub_next(&s, &pos, &e));
	cr_assert_eq(e.options, 1);
	cr_assert_not(rmq_sub_next(&s, &pos, &e));
	/* a list cut short is not read past its end */
	s.list.len = 3;
	pos = 0;
	cr_assert_not(rmq_sub_next(&s, &pos, &e));
}

Test(proto_suback, decode_rules)
{
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x90, 0x03, 0, 1, 0x80)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x90, 0x03, 0, 1, 0x03)), RMQ_E_REASON_CODE);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x90, 0x03, 0, 1, 0x8F)), RMQ_E_REASON_CODE, "v5-only code");
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0x90, 0x04, 0, 1, 0, 0x8F)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0x90, 0x04, 0, 1, 0, 0x11)), RMQ_E_REASON_CODE);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x90, 0x02, 0, 1)), RMQ_E_NO_TOPICS);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x90, 0x03, 0, 0, 0)), RMQ_E_PACKET_ID_ZERO);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0xB0, 0x02, 0, 1)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0xB0, 0x03, 0, 1, 0)), RMQ_E_TRAILING, "3.1.1 UNSUBACK has no list");
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0xB0, 0x04, 0, 1, 0, 0x11)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0xB0, 0x04, 0, 1, 0, 0x01)), RMQ_E_REASON_CODE);
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0xB0, 0x03, 0, 1, 0)), RMQ_E_NO_TOPICS);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x90, 0x03, 0, 1, 0x00)), RMQ_E_BAD_PACKET_TYPE);
}

Test(proto_suback, encode_rules)
{
	uint8_t b[16];
	const uint8_t codes[] = {0x8F};
	struct rmq_packet p = {.type = RMQ_SUBACK, .u.suback = {.packet_id = 1, .count = 1, .reasons = codes}};
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V311, &p), RMQ_E_REASON_CODE);
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), 6);
	p.u.suback.count = 0;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), RMQ_E_NO_TOPICS);
	p.u.suback.packet_id = 0;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), RMQ_E_PACKET_ID_ZERO);
	struct rmq_packet s = {.type = RMQ_SUBSCRIBE, .u.subscribe = {.packet_id = 1}};
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V311, &s), RMQ_E_NO_TOPICS);
}
