/* PUBLISH: flag rules (QoS 3, DUP on QoS 0), packet id 0, topic rules per version, topic alias,
 * payload. Test-only; single-threaded. */
#include "test_proto_helpers.h"

Test(proto_publish, qos_and_dup_rules)
{
	for (uint8_t v = RMQ_V31; v <= RMQ_V5; v++) {
		uint8_t b[] = {0x30, 0x05, 0, 1, 't', 0, 1};
		for (unsigned f = 0; f < 16; f++) {
			unsigned qos = (f >> 1) & 3;
			bool dup = f & 8;
			b[0] = (uint8_t)(0x30 | f);
			size_t n = qos ? 7 : 5;
			b[1] = (uint8_t)(n - 2);
			int want = qos == 3 ? RMQ_E_BAD_QOS : (qos == 0 && dup) ? RMQ_E_QOS0_DUP : RMQ_OK;
			if (v == RMQ_V5 && want == RMQ_OK)
				continue; /* v5 needs a property length; covered below */
			cr_assert_eq(dec_srv(v, b, n), want, "v%u flags 0x%x", v, f);
		}
	}
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0x3B, 0x06, 0, 1, 't', 0, 1, 0)), RMQ_OK);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_BAD_QOS), RMQ_RC_MALFORMED);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_QOS0_DUP), RMQ_RC_PROTOCOL_ERROR);
}

Test(proto_publish, packet_id_zero)
{
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x32, 0x05, 0, 1, 't', 0, 0)), RMQ_E_PACKET_ID_ZERO);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x34, 0x05, 0, 1, 't', 0, 0)), RMQ_E_PACKET_ID_ZERO);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0x32, 0x06, 0, 1, 't', 0, 0, 0)), RMQ_E_PACKET_ID_ZERO);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x32, 0x04, 0, 1, 't', 0)), RMQ_E_TRUNCATED);
	struct rmq_packet pk;
	cr_assert_eq(dec(RMQ_V311, RMQ_ROLE_SERVER, BYTES(0x30, 0x05, 0, 1, 't', 0, 0), &pk), RMQ_OK,
		     "QoS 0: no packet id, the bytes are payload");
	cr_assert_eq(pk.u.publish.payload.len, 2);
	cr_assert_eq(pk.u.publish.packet_id, 0);
}

Test(proto_publish, topic_rules)
{
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x30, 0x03, 0, 1, '+')), RMQ_E_TOPIC_NAME);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x30, 0x05, 0, 3, 'a', '/', '#')), RMQ_E_TOPIC_NAME);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x30, 0x02, 0, 0)), RMQ_E_TOPIC_NAME, "[MQTT-4.7.3-1]");
	cr_assert_eq(dec_srv(RMQ_V31, BYTES(0x30, 0x02, 0, 0)), RMQ_E_TOPIC_NAME);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0x30, 0x03, 0, 0, 0)), RMQ_E_TOPIC_EMPTY, "[MQTT-3.3.2-1]");
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_TOPIC_EMPTY), RMQ_RC_PROTOCOL_ERROR);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0x30, 0x06, 0, 0, 3, 0x23, 0, 1)), RMQ_OK, "alias instead of topic");
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x30, 0x03, 0, 1, 0)), RMQ_E_UTF8);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x30, 0x04, 0, 2, 0xED, 0xA0)), RMQ_E_UTF8);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x30, 0x04, 0, 3, 'a')), RMQ_E_TRUNCATED, "topic past the packet");
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_TOPIC_NAME), RMQ_RC_TOPIC_NAME_INVALID);
}

Test(proto_publish, payload_views_and_empty_payload)
{
	struct rmq_packet pk;
	static const uint8_t b[] = {0x31, 0x08, 0, 3, 'a', '/', 'b', 0xFF, 0x00, 0x01};
	cr_assert_eq(dec(RMQ_V311, RMQ_ROLE_SERVER, b, sizeof b, &pk), RMQ_OK);
	cr_assert(pk.u.publish.retain);
	cr_assert_eq(pk.u.publish.topic.p, b + 4, "zero-copy: views into the buffer");
	cr_assert_eq(pk.u.publish.payload.p, b + 7);
	cr_assert_eq(pk.u.publish.payload.len, 3);
	static const uint8_t e[] = {0x30, 0x04, 0, 2, 'a', 'b'};
	cr_assert_eq(dec(RMQ_V311, RMQ_ROLE_SERVER, e, sizeof e, &pk), RMQ_OK);
	cr_assert_eq(pk.u.publish.payload.len, 0);
}

Test(proto_publish, large_payload_roundtrip)
{
	static uint8_t payload[200000], out[200100];
	for (size_t i = 0; i < sizeof payload; i++)
		payload[i] = (uint8_t)(i * 7);
	struct rmq_packet in = {.type = RMQ_PUBLISH}, pk;
	in.u.publish = (struct rmq_publish){.qos = 2, .packet_id = 65535, .topic = S("big"),
					    .payload = {payload, sizeof payload}};
	size_t n = roundtrip(RMQ_V5, RMQ_ROLE_SERVER, &in, &pk, out, sizeof out);
	cr_assert_eq(n, 1 + 3 + 5 + 2 + 1 + sizeof payload, "3-byte remaining length");
	cr_assert_eq(pk.u.publish.payload.len, sizeof payload);
	cr_assert_eq(memcmp(pk.u.publish.payload.p, payload, sizeof payload), 0);
}
