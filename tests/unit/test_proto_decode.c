/* Decode dispatch across all types and versions: reserved fixed-header flags, packet types per
 * direction, truncation at every byte, encoder output buffers of every size. Test-only. */
#include "test_proto_helpers.h"

static uint8_t lists[2][64];
static const uint8_t suback_codes[] = {0x00, 0x01};
static const uint8_t unsuback_codes[] = {0x00, 0x11};

/* A representative packet of `type` for `version`, with properties in v5 where the type takes them. */
static struct rmq_packet sample(uint8_t type, uint8_t version)
{
	struct rmq_packet p = {.type = type};
	bool v5 = version == RMQ_V5;
	switch (type) {
	case RMQ_CONNECT:
		p.u.connect = (struct rmq_connect){.clean_start = true, .will = true, .will_qos = 2,
						   .has_username = true, .has_password = true, .keep_alive = 5,
						   .client_id = S("cid"), .will_topic = S("w/t"), .will_payload = S("bye"),
						   .username = S("user"), .password = S("pw")};
		if (v5) {
			p.u.connect.props.present = RMQ_PBIT(RMQ_PROP_MAX_PACKET_SIZE);
			p.u.connect.props.max_packet_size = 1000;
			p.u.connect.will_props.present = RMQ_PBIT(RMQ_PROP_CONTENT_TYPE);
			p.u.connect.will_props.content_type = S("text");
		}
		break;
	case RMQ_CONNACK:
		p.u.connack.reason = 0;
		if (v5) {
			p.u.connack.props.present = RMQ_PBIT(RMQ_PROP_SERVER_KEEP_ALIVE);
			p.u.connack.props.server_keep_alive = 30;
		}
		break;
	case RMQ_PUBLISH:
		p.u.publish = (struct rmq_publish){.qos = 1, .packet_id = 3, .topic = S("t/1"), .payload = S("")};
		if (v5) {
			p.u.publish.props.present = RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY);
			p.u.publish.props.message_expiry = 60;
		}
		break;
	case RMQ_PUBACK: case RMQ_PUBREC: case RMQ_PUBREL: case RMQ_PUBCOMP:
		p.u.ack.packet_id = 4;
		if (v5) {
			p.u.ack.props.present = RMQ_PBIT(RMQ_PROP_REASON_STRING);
			p.u.ack.props.reason_string = S("r");
		}
		break;
	case RMQ_SUBSCRIBE: case RMQ_UNSUBSCRIBE: {
		bool unsub = type == RMQ_UNSUBSCRIBE;
		size_t used = 0;
		p.u.subscribe.is_unsubscribe = unsub;
		p.u.subscribe.packet_id = 5;
		cr_assert_eq(rmq_sub_add(&p.u.subscribe, lists[unsub], sizeof lists[0], &used, S("a/+"), 1), RMQ_OK);
		if (v5 && !unsub) {
			p.u.subscribe.props.sub_id_count = 1;
			p.u.subscribe.props.sub_ids[0] = 300;
		}
		break;
	}
	case RMQ_SUBACK:
		p.u.suback = (struct rmq_suback){.packet_id = 6, .count = 2, .reasons = suback_codes};
		break;
	case RMQ_UNSUBACK:
		p.u.suback = (struct rmq_suback){.packet_id = 6, .count = 2, .reasons = unsuback_codes};
		break;
	case RMQ_DISCONNECT: case RMQ_AUTH:
		if (v5) {
			p.u.disconnect.reason = type == RMQ_AUTH ? RMQ_RC_CONTINUE_AUTH : RMQ_RC_SERVER_BUSY;
			p.u.disconnect.props.present = RMQ_PBIT(RMQ_PROP_REASON_STRING);
			p.u.disconnect.props.reason_string = S("busy");
		}
		break;
	default:
		break;
	}
	return p;
}

static uint8_t receiver(uint8_t type)
{
	switch (type) {
	case RMQ_CONNACK: case RMQ_SUBACK: case RMQ_UNSUBACK: case RMQ_PINGRESP:
		return RMQ_ROLE_CLIENT;
	default:
		return RMQ_ROLE_SERVER;
	}
}

/* Calls fn with the encoding of every sample packet: each type, each version it exists in. */
typedef void (*sample_fn)(uint8_t v, uint8_t t, const struct rmq_packet *in, const uint8_t *wire, size_t n);

static void for_each_sample(sample_fn fn)
{
	static uint8_t wire[512];
	for (uint8_t v = RMQ_V31; v <= RMQ_V5; v++) {
		for (uint8_t t = RMQ_CONNECT; t <= RMQ_AUTH; t++) {
			if (t == RMQ_AUTH && v != RMQ_V5)
				continue;
			struct rmq_packet in = sample(t, v);
			ssize_t n = rmq_proto_encode(wire, sizeof wire, v, &in);
			cr_assert_gt(n, 0, "v%u type %u: %zd", v, t, n);
			fn(v, t, &in, wire, (size_t)n);
		}
	}
}

static void roundtrip_sample(uint8_t v, uint8_t t, const struct rmq_packet *in, const uint8_t *wire, size_t n)
{
	uint8_t buf[512], again[512];
	struct rmq_packet out;
	cr_assert_eq(roundtrip(v, receiver(t), in, &out, buf, sizeof buf), n);
	/* re-encoding what was decoded gives the same bytes */
	cr_assert_eq(rmq_proto_encode(again, sizeof again, v, &out), (ssize_t)n, "v%u type %u", v, t);
	cr_assert_eq(memcmp(again, wire, n), 0, "v%u type %u", v, t);
}

Test(proto_decode, every_type_every_version_roundtrips)
{
	for_each_sample(roundtrip_sample);
}

static void flags_sample(uint8_t v, uint8_t t, const struct rmq_packet *in, const uint8_t *wire, size_t n)
{
	(void)in;
	if (t == RMQ_PUBLISH)
		return; /* its flags are DUP/QoS/RETAIN: test_proto_publish.c */
	uint8_t buf[512];
	memcpy(buf, wire, n);
	uint8_t good = wire[0] & 0x0F;
	for (unsigned f = 0; f < 16; f++) {
		buf[0] = (uint8_t)(t << 4 | f);
		struct rmq_packet out;
		int rc = dec(v, receiver(t), buf, n, &out);
		/* MQTT 3.1 allowed DUP on PUBREL/SUBSCRIBE/UNSUBSCRIBE retransmissions */
		bool ok = f == good || (v == RMQ_V31 && good == 2 && f == 0xA);
		cr_assert_eq(rc, ok ? RMQ_OK : RMQ_E_BAD_FLAGS, "v%u type %u flags 0x%x: %d", v, t, f, rc);
	}
}

Test(proto_decode, reserved_flags_every_type)
{
	for_each_sample(flags_sample);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_BAD_FLAGS), RMQ_RC_MALFORMED);
}

static void direction_sample(uint8_t v, uint8_t t, const struct rmq_packet *in, const uint8_t *wire, size_t n)
{
	(void)in;
	struct rmq_packet out;
	bool to_server = t != RMQ_CONNACK && t != RMQ_SUBACK && t != RMQ_UNSUBACK && t != RMQ_PINGRESP;
	bool to_client = t != RMQ_CONNECT && t != RMQ_SUBSCRIBE && t != RMQ_UNSUBSCRIBE && t != RMQ_PINGREQ &&
			 (t != RMQ_DISCONNECT || v == RMQ_V5);
	int rs = dec(v, RMQ_ROLE_SERVER, wire, n, &out);
	int rc = dec(v, RMQ_ROLE_CLIENT, wire, n, &out);
	cr_assert_eq(rs == RMQ_E_BAD_PACKET_TYPE, !to_server, "v%u type %u to server: %d", v, t, rs);
	cr_assert_eq(rc == RMQ_E_BAD_PACKET_TYPE, !to_client, "v%u type %u to client: %d", v, t, rc);
}

Test(proto_decode, packet_types_per_direction)
{
	for_each_sample(direction_sample);
	cr_assert_eq(dec_srv(RMQ_V311, BYTES(0x00, 0x00)), RMQ_E_BAD_PACKET_TYPE, "type 0 is reserved");
	cr_assert_eq(dec_cli(RMQ_V5, BYTES(0x00, 0x00)), RMQ_E_BAD_PACKET_TYPE);
}

Test(proto_decode, session_version_must_be_known)
{
	cr_assert_eq(dec_srv(0, BYTES(0xC0, 0x00)), RMQ_E_PROTOCOL_VERSION);
	cr_assert_eq(dec_srv(6, BYTES(0xC0, 0x00)), RMQ_E_PROTOCOL_VERSION);
	struct rmq_packet p = {.type = RMQ_PINGREQ};
	uint8_t b[4];
	cr_assert_eq(rmq_proto_encode(b, sizeof b, 2, &p), RMQ_E_PROTOCOL_VERSION);
	p.type = 0;
	cr_assert_eq(rmq_proto_encode(b, sizeof b, RMQ_V5, &p), RMQ_E_BAD_PACKET_TYPE);
}

/* Cutting the buffer anywhere: framing asks for more, decode says truncated. */
static void cut_buffer_sample(uint8_t v, uint8_t t, const struct rmq_packet *in, const uint8_t *wire, size_t n)
{
	(void)in;
	struct rmq_packet out;
	for (size_t cut = 0; cut < n; cut++) {
		size_t total = 0;
		int fr = rmq_proto_frame(wire, cut, 0, &total);
		cr_assert(fr == RMQ_E_INCOMPLETE || (fr == RMQ_OK && total > cut));
		cr_assert_eq(dec(v, receiver(t), wire, cut, &out), RMQ_E_TRUNCATED, "v%u type %u cut %zu", v, t, cut);
	}
}

Test(proto_decode, truncated_buffer_at_every_byte)
{
	for_each_sample(cut_buffer_sample);
}

/* Shortening the packet and its remaining length together, so that a field is cut short inside
 * a consistent frame. Packets whose every byte is mandatory must then fail, with a Malformed
 * Packet or Protocol Error reason and never a crash or an over-read (ASan watches). */
static void cut_fields_sample(uint8_t v, uint8_t t, const struct rmq_packet *in, const uint8_t *wire, size_t n)
{
	(void)in;
	/* v5 acks, DISCONNECT and AUTH have valid short forms; PINGs have no body */
	if (t == RMQ_PINGREQ || t == RMQ_PINGRESP || t == RMQ_DISCONNECT || t == RMQ_AUTH ||
	    (v == RMQ_V5 && t >= RMQ_PUBACK && t <= RMQ_PUBCOMP))
		return;
	uint8_t cutbuf[512];
	const size_t hdr = 2;
	cr_assert_lt(n - hdr, 128, "one-byte remaining length");
	for (size_t body = 0; body < n - hdr; body++) {
		struct rmq_packet out;
		cutbuf[0] = wire[0];
		cutbuf[1] = (uint8_t)body;
		memcpy(cutbuf + hdr, wire + hdr, body);
		int rc = dec(v, receiver(t), cutbuf, hdr + body, &out);
		/* a SUBACK cut after its first reason code is a valid one-code SUBACK */
		if ((t == RMQ_SUBACK || (t == RMQ_UNSUBACK && v == RMQ_V5)) && body == n - hdr - 1) {
			cr_assert_eq(rc, RMQ_OK);
			cr_assert_eq(out.u.suback.count, 1);
			continue;
		}
		uint8_t reason = rmq_proto_err_reason(rc);
		cr_assert(rc < 0 && rc != RMQ_E_INCOMPLETE, "v%u type %u body %zu: %d", v, t, body, rc);
		cr_assert(reason == RMQ_RC_MALFORMED || reason == RMQ_RC_PROTOCOL_ERROR, "v%u type %u body %zu: %d %s",
			  v, t, body, rc, rmq_proto_err_str(rc));
	}
}

Test(proto_decode, truncated_fields_at_every_byte)
{
	for_each_sample(cut_fields_sample);
}

static void small_buffer_sample(uint8_t v, uint8_t t, const struct rmq_packet *in, const uint8_t *wire, size_t n)
{
	(void)t;
	(void)wire;
	uint8_t buf[512];
	cr_assert_eq(rmq_proto_encoded_len(v, in), (ssize_t)n);
	for (size_t cap = 0; cap < n; cap++) {
		memset(buf, 0xAA, sizeof buf);
		cr_assert_eq(rmq_proto_encode(buf, cap, v, in), RMQ_E_BUF_TOO_SMALL);
		for (size_t i = cap; i < sizeof buf; i++)
			cr_assert_eq(buf[i], 0xAA, "wrote past cap %zu", cap);
	}
	cr_assert_eq(rmq_proto_encode(buf, n, v, in), (ssize_t)n);
}

Test(proto_encode, buffer_too_small_at_every_size)
{
	for_each_sample(small_buffer_sample);
}

Test(proto_encode, field_and_packet_limits)
{
	static uint8_t big[70000];
	uint8_t out[128];
	struct rmq_packet p = {.type = RMQ_PUBLISH, .u.publish = {.topic = {big, 65536}}};
	cr_assert_eq(rmq_proto_encoded_len(RMQ_V311, &p), RMQ_E_FIELD_TOO_LONG);
	p.u.publish.topic = S("t");
	p.u.publish.payload = (struct rmq_str){big, RMQ_MAX_REMAINING_LEN};
	cr_assert_eq(rmq_proto_encoded_len(RMQ_V311, &p), RMQ_E_TOO_LARGE);
	p.u.publish.payload = (struct rmq_str){big, RMQ_MAX_REMAINING_LEN - 3};
	cr_assert_eq(rmq_proto_encoded_len(RMQ_V311, &p), 5 + (ssize_t)RMQ_MAX_REMAINING_LEN);
	p.u.publish.payload = S("");
	p.u.publish.qos = 3;
	cr_assert_eq(rmq_proto_encode(out, sizeof out, RMQ_V311, &p), RMQ_E_BAD_QOS);
	p.u.publish.qos = 0;
	p.u.publish.dup = true;
	cr_assert_eq(rmq_proto_encode(out, sizeof out, RMQ_V311, &p), RMQ_E_QOS0_DUP);
	p.u.publish.qos = 1;
	cr_assert_eq(rmq_proto_encode(out, sizeof out, RMQ_V311, &p), RMQ_E_PACKET_ID_ZERO);
	struct rmq_packet c = {.type = RMQ_CONNECT, .u.connect = {.client_id = S("c"), .will_qos = 1}};
	cr_assert_eq(rmq_proto_encode(out, sizeof out, RMQ_V311, &c), RMQ_E_CONNECT_FLAGS);
	c.u.connect.will = true;
	c.u.connect.will_qos = 3;
	cr_assert_eq(rmq_proto_encode(out, sizeof out, RMQ_V311, &c), RMQ_E_BAD_QOS);
	c.u.connect.will = false;
	c.u.connect.will_qos = 0;
	c.u.connect.has_password = true;
	cr_assert_eq(rmq_proto_encode(out, sizeof out, RMQ_V311, &c), RMQ_E_PASSWORD_NO_USER);
	cr_assert_gt(rmq_proto_encode(out, sizeof out, RMQ_V5, &c), 0);
}
