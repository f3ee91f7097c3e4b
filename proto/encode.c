/* Encode dispatch: fixed header (type, flags, remaining length) around each packet's body; the body is
 * produced twice by the same function, once counting and once writing. Pure, callable from any thread. */
#include "internal.h"

#define FLAGS_0010 0x2

static int encode_body(struct wr *w, uint8_t version, const struct rmq_packet *p)
{
	switch (p->type) {
	case RMQ_PUBLISH:
		return rmq_proto_publish_encode(w, version, &p->u.publish);
	case RMQ_CONNECT:
		return rmq_proto_connect_encode(w, version, &p->u.connect);
	case RMQ_CONNACK:
		return rmq_proto_connack_encode(w, version, &p->u.connack);
	case RMQ_PUBACK:
	case RMQ_PUBREC:
	case RMQ_PUBREL:
	case RMQ_PUBCOMP:
		return rmq_proto_ack_encode(w, p->type, version, &p->u.ack);
	case RMQ_SUBSCRIBE:
	case RMQ_UNSUBSCRIBE:
		return rmq_proto_subscribe_encode(w, p->type, version, &p->u.subscribe);
	case RMQ_SUBACK:
	case RMQ_UNSUBACK:
		return rmq_proto_suback_encode(w, p->type, version, &p->u.suback);
	case RMQ_DISCONNECT:
	case RMQ_AUTH:
		return rmq_proto_disconnect_encode(w, p->type, version, &p->u.disconnect);
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
		return rmq_proto_publish_flags(&p->u.publish);
	case RMQ_PUBREL:
	case RMQ_SUBSCRIBE:
	case RMQ_UNSUBSCRIBE:
		return FLAGS_0010;
	default:
		return 0;
	}
}

/* Counting pass: length of the body (after the fixed header) in count->n, or a negative error. */
static int count_body(uint8_t version, const struct rmq_packet *p, struct wr *count)
{
	if (version < RMQ_V31 || version > RMQ_V5)
		return RMQ_E_PROTOCOL_VERSION;
	if (p->type == RMQ_AUTH && version != RMQ_V5)
		return RMQ_E_BAD_PACKET_TYPE;
	int rc = encode_body(count, version, p);
	if (rc < 0)
		return rc;
	return count->n > RMQ_MAX_REMAINING_LEN ? RMQ_E_TOO_LARGE : RMQ_OK;
}

static ssize_t body_len(uint8_t version, const struct rmq_packet *p)
{
	struct wr count = {.p = NULL};
	int rc = count_body(version, p, &count);
	return rc < 0 ? rc : (ssize_t)count.n;
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
	struct wr w = {.p = NULL};
	int rc = count_body(version, p, &w);
	if (rc < 0)
		return rc;
	uint32_t body = (uint32_t)w.n;
	size_t hdr = 1 + (size_t)rmq_proto_varint_len(body);
	if (hdr + body > cap)
		return RMQ_E_BUF_TOO_SMALL;
	buf[0] = (uint8_t)(p->type << 4 | fixed_flags(p));
	rmq_proto_varint_encode(buf + 1, body);
	/* the writing pass reuses the property lengths the counting pass recorded in w */
	w.p = buf + hdr;
	w.n = 0;
	w.next_plen = 0;
	rc = encode_body(&w, version, p);
	if (rc < 0)
		return rc;
	return (ssize_t)(hdr + w.n);
}
