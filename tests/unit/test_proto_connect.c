/* CONNECT and CONNACK: protocol name/level, connect flags, client id rules per version, will, and the
 * exact error for each rule. Test-only; single-threaded. */
#include "test_proto_helpers.h"

/* CONNECT with the given level/name, flags and payload; returns decode result, packet in *out. */
static int connect_raw(const char *proto, uint8_t level, uint8_t flags, const uint8_t *payload, size_t plen,
		       struct rmq_packet *out)
{
	uint8_t b[256];
	size_t n = 0, nl = strlen(proto);
	b[n++] = 0x10;
	b[n++] = 0; /* remaining length, patched below */
	b[n++] = 0;
	b[n++] = (uint8_t)nl;
	memcpy(b + n, proto, nl);
	n += nl;
	b[n++] = level;
	b[n++] = flags;
	b[n++] = 0;
	b[n++] = 30;
	if (level == RMQ_V5)
		b[n++] = 0; /* no properties */
	memcpy(b + n, payload, plen);
	n += plen;
	b[1] = (uint8_t)(n - 2);
	return dec(0, RMQ_ROLE_SERVER, b, n, out);
}

#define CONNECT(proto, level, flags, ...) connect_raw(proto, level, flags, BYTES(__VA_ARGS__), &pk)

Test(proto_connect, protocol_name_and_level)
{
	struct rmq_packet pk;
	cr_assert_eq(CONNECT("MQTT", 4, 0x02, 0, 1, 'c'), RMQ_OK);
	cr_assert_eq(pk.u.connect.version, RMQ_V311);
	cr_assert_eq(CONNECT("MQTT", 5, 0x02, 0, 1, 'c'), RMQ_OK);
	cr_assert_eq(CONNECT("MQIsdp", 3, 0x02, 0, 1, 'c'), RMQ_OK);
	cr_assert_eq(pk.u.connect.version, RMQ_V31);
	cr_assert_eq(CONNECT("MQTX", 4, 0x02, 0, 1, 'c'), RMQ_E_PROTOCOL_NAME);
	cr_assert_eq(CONNECT("mqtt", 4, 0x02, 0, 1, 'c'), RMQ_E_PROTOCOL_NAME);
	cr_assert_eq(CONNECT("MQIsdpX", 3, 0x02, 0, 1, 'c'), RMQ_E_PROTOCOL_NAME);
	cr_assert_eq(CONNECT("MQTT", 3, 0x02, 0, 1, 'c'), RMQ_E_PROTOCOL_VERSION);
	cr_assert_eq(CONNECT("MQTT", 6, 0x02, 0, 1, 'c'), RMQ_E_PROTOCOL_VERSION);
	cr_assert_eq(CONNECT("MQTT", 0x84, 0x02, 0, 1, 'c'), RMQ_E_PROTOCOL_VERSION);
	cr_assert_eq(CONNECT("MQIsdp", 4, 0x02, 0, 1, 'c'), RMQ_E_PROTOCOL_VERSION);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_PROTOCOL_VERSION), RMQ_RC_UNSUPPORTED_VERSION);
}

Test(proto_connect, flags)
{
	struct rmq_packet pk;
	cr_assert_eq(CONNECT("MQTT", 4, 0x03, 0, 1, 'c'), RMQ_E_CONNECT_FLAGS, "reserved bit [MQTT-3.1.2-3]");
	cr_assert_eq(CONNECT("MQTT", 4, 0x0A, 0, 1, 'c'), RMQ_E_CONNECT_FLAGS, "will QoS without will");
	cr_assert_eq(CONNECT("MQTT", 4, 0x22, 0, 1, 'c'), RMQ_E_CONNECT_FLAGS, "will retain without will");
	cr_assert_eq(CONNECT("MQTT", 4, 0x1E, 0, 1, 'c', 0, 1, 't', 0, 0), RMQ_E_BAD_QOS, "will QoS 3");
	cr_assert_eq(CONNECT("MQTT", 4, 0x42, 0, 1, 'c', 0, 1, 'p'), RMQ_E_PASSWORD_NO_USER);
	cr_assert_eq(CONNECT("MQIsdp", 3, 0x42, 0, 1, 'c', 0, 1, 'p'), RMQ_E_PASSWORD_NO_USER);
	cr_assert_eq(CONNECT("MQTT", 5, 0x42, 0, 1, 'c', 0, 1, 'p'), RMQ_OK, "5.0 allows password alone");
	cr_assert(pk.u.connect.has_password && !pk.u.connect.has_username);
	cr_assert_eq(CONNECT("MQTT", 4, 0xF6, 0, 1, 'c', 0, 1, 't', 0, 1, 'm', 0, 1, 'u', 0, 1, 'p'), RMQ_OK);
	cr_assert_eq(pk.u.connect.will_qos, 2);
	cr_assert(pk.u.connect.will_retain && pk.u.connect.will && pk.u.connect.clean_start);
}

Test(proto_connect, client_id_rules)
{
	struct rmq_packet pk;
	/* 3.1: 1..23 bytes */
	cr_assert_eq(CONNECT("MQIsdp", 3, 0x02, 0, 0), RMQ_E_CLIENT_ID);
	uint8_t id[2 + 24];
	id[0] = 0;
	memset(id + 2, 'x', 24);
	id[1] = 23;
	cr_assert_eq(connect_raw("MQIsdp", 3, 0x02, id, 2 + 23, &pk), RMQ_OK);
	id[1] = 24;
	cr_assert_eq(connect_raw("MQIsdp", 3, 0x02, id, 2 + 24, &pk), RMQ_E_CLIENT_ID);
	cr_assert_eq(connect_raw("MQTT", 4, 0x02, id, 2 + 24, &pk), RMQ_OK, "3.1.1 has no 23-byte cap");
	/* 3.1.1: empty id needs clean session [MQTT-3.1.3-8]; the version is known for the CONNACK */
	cr_assert_eq(CONNECT("MQTT", 4, 0x02, 0, 0), RMQ_OK);
	cr_assert_eq(CONNECT("MQTT", 4, 0x00, 0, 0), RMQ_E_CLIENT_ID);
	cr_assert_eq(pk.u.connect.version, RMQ_V311);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_CLIENT_ID), RMQ_RC_CLIENT_ID_INVALID);
	/* 5.0: the server assigns one */
	cr_assert_eq(CONNECT("MQTT", 5, 0x00, 0, 0), RMQ_OK);
	cr_assert_eq(CONNECT("MQTT", 4, 0x02, 0, 2, 0xC3, 0x28), RMQ_E_UTF8);
	cr_assert_eq(CONNECT("MQTT", 4, 0x02, 0, 1, 0x00), RMQ_E_UTF8);
}

Test(proto_connect, will_username_password_fields)
{
	struct rmq_packet pk;
	cr_assert_eq(CONNECT("MQTT", 4, 0x06, 0, 1, 'c', 0, 3, 'a', '/', '#', 0, 0), RMQ_E_TOPIC_NAME);
	cr_assert_eq(CONNECT("MQTT", 4, 0x06, 0, 1, 'c', 0, 0, 0, 0), RMQ_E_TOPIC_NAME);
	cr_assert_eq(CONNECT("MQTT", 4, 0x06, 0, 1, 'c', 0, 1, 0xFF, 0, 0), RMQ_E_UTF8);
	cr_assert_eq(CONNECT("MQTT", 4, 0x06, 0, 1, 'c', 0, 1, 't'), RMQ_E_TRUNCATED, "will payload missing");
	cr_assert_eq(CONNECT("MQTT", 4, 0x82, 0, 1, 'c', 0, 1, 0xED), RMQ_E_UTF8, "username ill-formed");
	cr_assert_eq(CONNECT("MQTT", 4, 0xC2, 0, 1, 'c', 0, 1, 'u', 0, 2, 0xFF, 0x00), RMQ_OK,
		     "password is binary");
	cr_assert_eq(CONNECT("MQTT", 4, 0xC2, 0, 1, 'c', 0, 1, 'u'), RMQ_E_TRUNCATED, "password missing");
	cr_assert_eq(CONNECT("MQTT", 4, 0x02, 0, 1, 'c', 0), RMQ_E_TRAILING);
	/* v5 will properties: a will-only property outside the will is refused, inside accepted */
	uint8_t b[] = {0x10, 0, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 0, 0, 0, 1, 'c', 5, 0x18, 0, 0, 0, 9,
		       0, 1, 't', 0, 0};
	b[1] = sizeof b - 2;
	cr_assert_eq(dec(0, RMQ_ROLE_SERVER, b, sizeof b, &pk), RMQ_OK);
	cr_assert_eq(pk.u.connect.will_props.will_delay, 9);
	cr_assert_eq(pk.u.connect.props.present, 0);
	b[17] = 0x11; /* session expiry in the will properties */
	cr_assert_eq(dec(0, RMQ_ROLE_SERVER, b, sizeof b, &pk), RMQ_E_PROP_NOT_ALLOWED);
	/* CONNECT is never sent to a client */
	b[17] = 0x18;
	cr_assert_eq(dec(RMQ_V5, RMQ_ROLE_CLIENT, b, sizeof b, &pk), RMQ_E_BAD_PACKET_TYPE);
}

Test(proto_connack, decode_rules)
{
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x20, 0x02, 0x01, 0x00)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x20, 0x02, 0x02, 0x00)), RMQ_E_CONNACK_FLAGS, "[MQTT-3.2.2-1]");
	cr_assert_eq(dec_cli(RMQ_V31, BYTES(0x20, 0x02, 0x02, 0x00)), RMQ_OK, "3.1: first byte unused");
	for (unsigned rc = 0; rc < 256; rc++) {
		struct rmq_packet pk;
		cr_assert_eq(dec(RMQ_V311, RMQ_ROLE_CLIENT, (const uint8_t[]){0x20, 0x02, 0x00, (uint8_t)rc}, 4, &pk),
			     rc <= 5 ? RMQ_OK : RMQ_E_REASON_CODE, "3.1.1 return code %u", rc);
	}
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0x20, 0x03, 0x00, 0x87, 0x00)), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0x20, 0x03, 0x00, 0x10, 0x00)), RMQ_E_REASON_CODE);
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0x20, 0x02, 0x00, 0x00)), RMQ_E_TRUNCATED, "v5 property length required");
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x20, 0x03, 0x00, 0x00, 0x00)), RMQ_E_TRAILING);
	cr_assert_eq(dec_cli(RMQ_V311, BYTES(0x20, 0x01, 0x00)), RMQ_E_TRUNCATED);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x20, 0x02, 0x00, 0x00)), RMQ_E_BAD_PACKET_TYPE);
}

Test(proto_connack, encode_v3_return_codes)
{
	uint8_t b[8];
	struct rmq_packet p = {.type = RMQ_CONNACK, .u.connack = {.session_present = true, .reason = 5}};
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V311, &p), 4);
	cr_assert_eq(memcmp(b, (uint8_t[]){0x20, 0x02, 0x01, 0x05}, 4), 0);
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V31, &p), 4);
	cr_assert_eq(b[2], 0, "3.1 has no session present flag");
	p.u.connack.reason = 6;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V311, &p), RMQ_E_REASON_CODE);
	p.u.connack.reason = RMQ_RC_BANNED;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), 5);
}
