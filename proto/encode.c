/* Encode dispatch: fixed header (type, flags, remaining length) around each packet's body; the body is
 * produced twice by the same function, once counting and once writing. Pure, callable from any thread. */
#include "internal.h"

#define FLAGS_0010 0x2

static int encode_body(struct wr *w, uint8_t version, const struct rmq_packet *p)
{
	switch (p->type) {
	case RMQ_PUBLISH:
		return publish_encode(w, version, &p->u.publish);
	case RMQ_CONNECT:
		return connect_encode(w, version, &p->u.connect);
	case RMQ_CONNACK:
		return connack_encode(w, version, &p->u.connack);
	case RMQ_PUBACK:
	case RMQ_PUBREC:
	case RMQ_PUBREL:
	case RMQ_PUBCOMP:
		return ack_encode(w, p->type, version, &p->u.ack);
	case RMQ_SUBSCRIBE:
	case RMQ_UNSUBSCRIBE:
		return subscribe_encode(w, p->type, version, &p->u.subscribe);
	case RMQ_SUBACK:
	case RMQ_UNSUBACK:
		return suback_encode(w, p->type, version, &p->u.suback);
	case RMQ_DISCONNECT:
	case RMQ_AUTH:
		return disconnect_encode(w, p->type, version, &p->u.disconnect);
	case RMQ_PINGREQ:
	case RMQ_PINGRESP:
		return RMQ_OK;
	default:
		return RMQ_E_BAD_PACKET_TYPE;
	}
}

static uint8_t fixed_flags(const struct rmq_packet *p)
{
	switch (p->type) {
	case RMQ_PUBLISH:
		return publish_flags(&p->u.publish);
	case RMQ_PUBREL:
	case RMQ_SUBSCRIBE:
	case RMQ_UNSUBSCRIBE:
		return FLAGS_0010;
	default:
		return 0;
	}
}

/* Length of the body (after the fixed header), or a negative error. */
static ssize_t body_len(uint8_t version, const struct rmq_packet *p)
{
	if (version < RMQ_V31 || version > RMQ_V5)
		return RMQ_E_PROTOCOL_VERSION;
	if (p->type == RMQ_AUTH && version != RMQ_V5)
		return RMQ_E_BAD_PACKET_TYPE;
	struct wr count = {NULL, 0};
	int rc = encode_body(&count, version, p);
	if (rc < 0)
		return rc;
	if (count.n > RMQ_MAX_REMAINING_LEN)
		return RMQ_E_TOO_LARGE;
	return (ssize_t)count.n;
}

ssize_t rmq_proto_encoded_len(uint8_t version, const struct rmq_packet *p)
{
	ssize_t body = body_len(version, p);
	if (body < 0)
		return body;
	return 1 + rmq_proto_varint_len((uint32_t)body) + body;
}

ssize_t rmq_proto_encode(uint8_t *buf, size_t cap, uint8_t version, const struct rmq_packet *p)
{
	ssize_t body = body_len(version, p);
	if (body < 0)
		return body;
	size_t hdr = 1 + (size_t)rmq_proto_varint_len((uint32_t)body);
	if (hdr + (size_t)body > cap)
		return RMQ_E_BUF_TOO_SMALL;
	buf[0] = (uint8_t)(p->type << 4 | fixed_flags(p));
	rmq_proto_varint_encode(buf + 1, (uint32_t)body);
	struct wr w = {buf + hdr, 0};
	int rc = encode_body(&w, version, p);
	if (rc < 0)
		return rc;
	return (ssize_t)(hdr + w.n);
}
