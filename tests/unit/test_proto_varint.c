/* Variable byte integer and framing: boundaries, 4-byte maximum, minimal encoding, incomplete input,
 * maximum packet size. Test-only; single-threaded. */
#include "test_proto_helpers.h"

Test(proto_varint, boundaries_roundtrip)
{
	const uint32_t vals[] = {0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455};
	const int lens[] = {1, 1, 1, 2, 2, 3, 3, 4, 4};
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		uint8_t b[4];
		uint32_t v = 0xFFFFFFFF;
		cr_assert_eq(rmq_proto_varint_len(vals[i]), lens[i]);
		cr_assert_eq(rmq_proto_varint_encode(b, vals[i]), lens[i]);
		cr_assert_eq(rmq_proto_varint_decode(b, 4, &v), lens[i]);
		cr_assert_eq(v, vals[i]);
		for (int cut = 0; cut < lens[i]; cut++)
			cr_assert_eq(rmq_proto_varint_decode(b, (size_t)cut, &v), RMQ_E_INCOMPLETE);
	}
	uint8_t b[4];
	cr_assert_eq(rmq_proto_varint_encode(b, RMQ_MAX_REMAINING_LEN + 1), RMQ_E_VARINT);
}

Test(proto_varint, spec_examples)
{
	uint32_t v;
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0xC1, 0x02), &v), 2); /* MQTT 5 1.5.5 example: 321 */
	cr_assert_eq(v, 321);
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0xFF, 0xFF, 0xFF, 0x7F), &v), 4);
	cr_assert_eq(v, 268435455);
}

Test(proto_varint, five_bytes_rejected)
{
	uint32_t v;
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0x80, 0x80, 0x80, 0x80, 0x01), &v), RMQ_E_VARINT);
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0xFF, 0xFF, 0xFF, 0xFF), &v), RMQ_E_VARINT);
}

Test(proto_varint, non_minimal_rejected)
{
	uint32_t v;
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0x80, 0x00), &v), RMQ_E_VARINT_NONMINIMAL);
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0x85, 0x00), &v), RMQ_E_VARINT_NONMINIMAL);
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0xFF, 0x80, 0x00), &v), RMQ_E_VARINT_NONMINIMAL);
	cr_assert_eq(rmq_proto_varint_decode(BYTES(0x80, 0x80, 0x80, 0x00), &v), RMQ_E_VARINT_NONMINIMAL);
}

Test(proto_frame, incomplete_and_complete)
{
	size_t total = 0;
	cr_assert_eq(rmq_proto_frame(NULL, 0, 0, &total), RMQ_E_INCOMPLETE);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30), 0, &total), RMQ_E_INCOMPLETE);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 0x80), 0, &total), RMQ_E_INCOMPLETE);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 0x80, 0x01), 0, &total), RMQ_OK);
	cr_assert_eq(total, 3 + 128);
	cr_assert_eq(rmq_proto_frame(BYTES(0xC0, 0x00, 0xC0), 0, &total), RMQ_OK, "only the first packet");
	cr_assert_eq(total, 2);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 0, &total), RMQ_OK);
	cr_assert_eq(total, 5 + 268435455u);
}

Test(proto_frame, malformed_lengths)
{
	size_t total = 0;
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), 0, &total), RMQ_E_VARINT);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0xFF), 0, &total), RMQ_E_VARINT);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 0x80, 0x00), 0, &total), RMQ_E_VARINT_NONMINIMAL);
}

Test(proto_frame, max_packet_size)
{
	size_t total = 0;
	/* total = 2 + 100 */
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 100), 102, &total), RMQ_OK);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 100), 101, &total), RMQ_E_TOO_LARGE);
	cr_assert_eq(rmq_proto_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 1u << 20, &total), RMQ_E_TOO_LARGE);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_TOO_LARGE), RMQ_RC_PACKET_TOO_LARGE);
}

Test(proto_frame, decode_requires_exact_length)
{
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xC0, 0x00)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xC0, 0x00, 0x00)), RMQ_E_TRAILING);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xC0)), RMQ_E_TRUNCATED);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xC0, 0x01)), RMQ_E_TRUNCATED);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xC0, 0x80, 0x00)), RMQ_E_VARINT_NONMINIMAL);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xC0, 0x80, 0x80, 0x80, 0x80, 0x01)), RMQ_E_VARINT);
}
