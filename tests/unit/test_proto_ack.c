/* PUBACK/PUBREC/PUBREL/PUBCOMP, DISCONNECT, AUTH, PINGREQ/PINGRESP: lengths, v5 short forms, reason
 * codes per type. Test-only; single-threaded. */
#include "test_proto_helpers.h"

static const uint8_t ack_types[] = {RMQ_PUBACK, RMQ_PUBREC, RMQ_PUBREL, RMQ_PUBCOMP};

static uint8_t hdr(uint8_t type)
{
	return (uint8_t)(type << 4 | (type == RMQ_PUBREL ? 2 : 0));
}

Test(proto_ack, lengths_per_version)
{
	for (size_t t = 0; t < 4; t++) {
		uint8_t h = hdr(ack_types[t]);
		for (uint8_t v = RMQ_V31; v <= RMQ_V5; v++) {
			struct rmq_packet pk;
			cr_assert_eq(dec(v, RMQ_ROLE_SERVER, (const uint8_t[]){h, 2, 0, 9}, 4, &pk), RMQ_OK);
			cr_assert_eq(pk.u.ack.packet_id, 9);
			cr_assert_eq(pk.u.ack.reason, 0);
			cr_assert_eq(dec(v, RMQ_ROLE_SERVER, (const uint8_t[]){h, 2, 0, 0}, 4, &pk),
				     RMQ_E_PACKET_ID_ZERO);
			cr_assert_eq(dec(v, RMQ_ROLE_SERVER, (const uint8_t[]){h, 1, 0}, 3, &pk), RMQ_E_TRUNCATED);
			int three = dec(v, RMQ_ROLE_SERVER, (const uint8_t[]){h, 3, 0, 9, 0}, 5, &pk);
			cr_assert_eq(three, v == RMQ_V5 ? RMQ_OK : RMQ_E_TRAILING, "v%u type %u", v, ack_types[t]);
		}
		/* v5: reason + property length + reason string */
		struct rmq_packet pk;
		uint8_t full[] = {h, 8, 0, 9, 0, 4, 0x1F, 0, 1, 'x'};
		cr_assert_eq(dec(RMQ_V5, RMQ_ROLE_CLIENT, full, sizeof full, &pk), RMQ_OK);
		cr_assert(str_eq(pk.u.ack.props.reason_string, S("x")));
		cr_assert_eq(dec(RMQ_V5, RMQ_ROLE_CLIENT, (const uint8_t[]){h, 5, 0, 9, 0, 0, 0}, 7, &pk),
			     RMQ_E_TRAILING);
	}
}

Test(proto_ack, reason_codes_per_type)
{
	const uint8_t pub[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
	const uint8_t rel[] = {0x00, 0x92};
	for (size_t t = 0; t < 4; t++) {
		const uint8_t *set = ack_types[t] <= RMQ_PUBREC ? pub : rel;
		size_t n = ack_types[t] <= RMQ_PUBREC ? sizeof pub : sizeof rel;
		for (unsigned rc = 0; rc < 256; rc++) {
			struct rmq_packet pk;
			int got = dec(RMQ_V5, RMQ_ROLE_SERVER, (const uint8_t[]){hdr(ack_types[t]), 3, 0, 1, (uint8_t)rc}, 5, &pk);
			bool ok = memchr(set, (int)rc, n) != NULL;
			cr_assert_eq(got, ok ? RMQ_OK : RMQ_E_REASON_CODE, "type %u reason 0x%02x", ack_types[t], rc);
			if (ok)
				cr_assert_eq(pk.u.ack.reason, rc);
		}
	}
}

Test(proto_ack, encode_short_forms)
{
	uint8_t b[32];
	struct rmq_packet p = {.type = RMQ_PUBREL, .u.ack = {.packet_id = 0x0102}};
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), 4);
	cr_assert_eq(memcmp(b, (uint8_t[]){0x62, 0x02, 0x01, 0x02}, 4), 0);
	p.u.ack.reason = RMQ_RC_PACKET_ID_NOT_FOUND;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), 5);
	cr_assert_eq(memcmp(b, (uint8_t[]){0x62, 0x03, 0x01, 0x02, 0x92}, 5), 0);
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V311, &p), 4, "3.1.1: reason not on the wire");
	p.u.ack.reason = RMQ_RC_NOT_AUTHORIZED;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), RMQ_E_REASON_CODE, "0x87 not valid for PUBREL");
	p.u.ack.reason = 0;
	p.u.ack.packet_id = 0;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), RMQ_E_PACKET_ID_ZERO);
}

Test(proto_disconnect, forms_and_rules)
{
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xE0, 0x00)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xE0, 0x01, 0x00)), RMQ_E_TRAILING);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0xE0, 0x00)), RMQ_E_BAD_PACKET_TYPE, "servers send no 3.1.1 DISCONNECT");
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0xE0, 0x00)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xE0, 0x01, 0x04)), RMQ_OK, "reason only");
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xE0, 0x01, 0x01)), RMQ_E_REASON_CODE);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xE0, 0x02, 0x8B, 0x00)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xE0, 0x03, 0x00, 0x00, 0x00)), RMQ_E_TRAILING);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xE0, 0x03, 0x00, 0x02, 0x1F)), RMQ_E_PROP_LEN);
	uint8_t b[8];
	struct rmq_packet p = {.type = RMQ_DISCONNECT};
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), 2);
	p.u.disconnect.reason = RMQ_RC_SESSION_TAKEN_OVER;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), 3);
	cr_assert_eq(b[2], 0x8E);
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V311, &p), 2);
	p.u.disconnect.reason = RMQ_RC_CONTINUE_AUTH;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), RMQ_E_REASON_CODE);
}

Test(proto_auth, v5_only_and_reason_codes)
{
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xF0, 0x00)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0xF0, 0x02, 0x18, 0x00)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xF0, 0x02, 0x19, 0x00)), RMQ_OK);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xF0, 0x02, 0x87, 0x00)), RMQ_E_REASON_CODE);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xF0, 0x00)), RMQ_E_BAD_PACKET_TYPE);
	cr_assert_eq(dec_srv(RMQ_V31, BYTES(0xF0, 0x00)), RMQ_E_BAD_PACKET_TYPE);
	uint8_t b[8];
	struct rmq_packet p = {.type = RMQ_AUTH};
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V311, &p), RMQ_E_BAD_PACKET_TYPE);
	cr_assert_eq(rmq_proto_encoded_len(RMQ_V311, &p), RMQ_E_BAD_PACKET_TYPE);
}

Test(proto_ping, direction_and_length)
{
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xC0, 0x00)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0xD0, 0x00)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0xC0, 0x00)), RMQ_E_BAD_PACKET_TYPE);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0xD0, 0x00)), RMQ_E_BAD_PACKET_TYPE);
	cr_assert_eq(dec_srv(RMQ_V5, BYTES(0xC0, 0x01, 0x00)), RMQ_E_TRAILING);
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0xD0, 0x01, 0x00)), RMQ_E_TRAILING);
}
