/* Framing and decode dispatch: fixed header, per-type flag rules, which role may receive which type.
 * Pure functions, callable from any thread. */
#include "internal.h"

#define BIT(t) (1u << (t))
#define FLAGS_0010 0x2
#define V31_DUP 0x8  /* MQTT 3.1 let PUBREL/SUBSCRIBE/UNSUBSCRIBE carry DUP on retransmission */
#define FIXED_HEADER_MIN 2

static const uint16_t server_receives = BIT(RMQ_CONNECT) | BIT(RMQ_PUBLISH) | BIT(RMQ_PUBACK) | BIT(RMQ_PUBREC) |
	BIT(RMQ_PUBREL) | BIT(RMQ_PUBCOMP) | BIT(RMQ_SUBSCRIBE) | BIT(RMQ_UNSUBSCRIBE) | BIT(RMQ_PINGREQ) |
	BIT(RMQ_DISCONNECT) | BIT(RMQ_AUTH);
static const uint16_t client_receives = BIT(RMQ_CONNACK) | BIT(RMQ_PUBLISH) | BIT(RMQ_PUBACK) |
	BIT(RMQ_PUBREC) | BIT(RMQ_PUBREL) | BIT(RMQ_PUBCOMP) | BIT(RMQ_SUBACK) | BIT(RMQ_UNSUBACK) |
	BIT(RMQ_PINGRESP) | BIT(RMQ_DISCONNECT) | BIT(RMQ_AUTH);

int rmq_proto_frame(const uint8_t *buf, size_t len, uint32_t max_packet_size, size_t *total)
{
	uint32_t rem;
	if (len < FIXED_HEADER_MIN)
		return RMQ_E_INCOMPLETE;
	int n = rmq_proto_varint_decode(buf + 1, len - 1, &rem);
	if (n < 0)
		return n;
	size_t t = 1 + (size_t)n + rem;
	if (max_packet_size && t > max_packet_size)
		return RMQ_E_TOO_LARGE; /* [MQTT-3.1.2-24] beyond the Maximum Packet Size we announced */
	*total = t;
	return RMQ_OK;
}

static bool type_allowed(unsigned type, uint8_t role, uint8_t version)
{
	uint16_t mask = role == RMQ_ROLE_CLIENT ? client_receives : server_receives;
	if (!(mask & BIT(type)))
		return false;
	if (version != RMQ_V5) {
		if (type == RMQ_AUTH)
			return false; /* type 15 is reserved before 5.0 */
		if (type == RMQ_DISCONNECT && role == RMQ_ROLE_CLIENT)
			return false; /* only clients send DISCONNECT before 5.0 */
	}
	return true;
}

/* [MQTT-2.1.3-1] reserved flag bits: 0b0010 for PUBREL, SUBSCRIBE, UNSUBSCRIBE, 0 otherwise. */
static bool flags_valid(unsigned type, uint8_t version, uint8_t flags)
{
	if (type == RMQ_PUBLISH)
		return true; /* checked by rmq_proto_publish_decode */
	if (type == RMQ_PUBREL || type == RMQ_SUBSCRIBE || type == RMQ_UNSUBSCRIBE)
		return flags == FLAGS_0010 || (version == RMQ_V31 && flags == (FLAGS_0010 | V31_DUP));
	return flags == 0;
}

static int decode_body(struct rd *r, unsigned type, uint8_t flags, uint8_t version, uint8_t role,
		       struct rmq_packet *out)
{
	switch (type) {
	case RMQ_PUBLISH:
		return rmq_proto_publish_decode(r, flags, version, role, &out->u.publish);
	case RMQ_CONNECT:
		return rmq_proto_connect_decode(r, &out->u.connect);
	case RMQ_CONNACK:
		return rmq_proto_connack_decode(r, version, &out->u.connack);
	case RMQ_PUBACK:
	case RMQ_PUBREC:
	case RMQ_PUBREL:
	case RMQ_PUBCOMP:
		return rmq_proto_ack_decode(r, type, version, &out->u.ack);
	case RMQ_SUBSCRIBE:
	case RMQ_UNSUBSCRIBE:
		return rmq_proto_subscribe_decode(r, type, version, &out->u.subscribe);
	case RMQ_SUBACK:
	case RMQ_UNSUBACK:
		return rmq_proto_suback_decode(r, type, version, &out->u.suback);
	case RMQ_DISCONNECT:
	case RMQ_AUTH:
		return rmq_proto_disconnect_decode(r, type, version, role, &out->u.disconnect);
	default: /* PINGREQ, PINGRESP */
		return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
	}
}

int rmq_proto_decode(const uint8_t *buf, size_t len, const struct rmq_decode_ctx *ctx, struct rmq_packet *out)
{
	uint32_t rem;
	if (len < FIXED_HEADER_MIN)
		return RMQ_E_TRUNCATED;
	int n = rmq_proto_varint_decode(buf + 1, len - 1, &rem);
	if (n == RMQ_E_INCOMPLETE)
		return RMQ_E_TRUNCATED;
	if (n < 0)
		return n;
	size_t total = 1 + (size_t)n + rem;
	if (len < total)
		return RMQ_E_TRUNCATED;
	if (len > total)
		return RMQ_E_TRAILING;
	unsigned type = buf[0] >> 4;
	uint8_t flags = buf[0] & 0x0F;
	out->type = (uint8_t)type;
	out->flags = flags;
	uint8_t version = ctx->version;
	if (type == RMQ_CONNECT)
		version = RMQ_V5; /* read from the packet; any valid value passes the checks below */
	else if (version < RMQ_V31 || version > RMQ_V5)
		return RMQ_E_PROTOCOL_VERSION;
	if (type == 0 || !type_allowed(type, ctx->role, version))
		return RMQ_E_BAD_PACKET_TYPE;
	if (!flags_valid(type, version, flags))
		return RMQ_E_BAD_FLAGS;
	struct rd r = {buf + 1 + n, buf + total};
	return decode_body(&r, type, flags, version, ctx->role, out);
}
