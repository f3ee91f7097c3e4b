/* PUBLISH: fixed-header flags, topic name (or v5 topic alias), packet id, properties, payload.
 * The broker's hot path; pure functions, callable from any thread. */
#include "internal.h"

#define PF_RETAIN 0x01
#define PF_QOS_SHIFT 1
#define PF_DUP 0x08

int rmq_proto_publish_decode(struct rd *r, uint8_t flags, uint8_t version, uint8_t role, struct rmq_publish *p)
{
	int rc;
	p->qos = (flags >> PF_QOS_SHIFT) & 3;
	p->dup = flags & PF_DUP;
	p->retain = flags & PF_RETAIN;
	p->packet_id = 0;
	if (p->qos == 3)
		return RMQ_E_BAD_QOS; /* [MQTT-3.3.1-4] */
	if (p->qos == 0 && p->dup)
		return RMQ_E_QOS0_DUP; /* [MQTT-3.3.1-2] */
	if ((rc = rd_bin(r, &p->topic)) < 0)
		return rc;
	if (p->qos && (rc = rd_packet_id(r, &p->packet_id)) < 0)
		return rc;
	if (version == RMQ_V5) {
		if ((rc = rmq_proto_props_decode(r, RMQ_PUBLISH, role, &p->props)) < 0)
			return rc;
	} else {
		rmq_proto_props_clear(&p->props);
	}
	if (p->topic.len == 0) {
		if (version != RMQ_V5)
			return RMQ_E_TOPIC_NAME; /* [MQTT-4.7.3-1] */
		if (!(p->props.present & RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS)))
			return RMQ_E_TOPIC_EMPTY; /* [MQTT-3.3.2-1] */
	} else if ((rc = rmq_proto_topic_name_validate(p->topic.p, p->topic.len)) < 0) {
		return rc;
	}
	p->payload.p = r->p;
	p->payload.len = (uint32_t)rd_left(r);
	return RMQ_OK;
}

int rmq_proto_publish_encode(struct wr *w, uint8_t version, const struct rmq_publish *p)
{
	int rc;
	if (p->qos > 2)
		return RMQ_E_BAD_QOS;
	if (p->qos == 0 && p->dup)
		return RMQ_E_QOS0_DUP;
	if (p->qos && p->packet_id == 0)
		return RMQ_E_PACKET_ID_ZERO;
	if ((rc = wr_bin(w, p->topic)) < 0)
		return rc;
	if (p->qos)
		wr_u16(w, p->packet_id);
	if (version == RMQ_V5 && (rc = rmq_proto_props_encode(w, RMQ_PUBLISH, &p->props)) < 0)
		return rc;
	wr_raw(w, p->payload.p, p->payload.len);
	return RMQ_OK;
}

uint8_t rmq_proto_publish_flags(const struct rmq_publish *p)
{
	return (uint8_t)((p->dup ? PF_DUP : 0) | (p->qos & 3) << PF_QOS_SHIFT | (p->retain ? PF_RETAIN : 0));
}

int rmq_proto_check_payload_format(const struct rmq_publish *p)
{
	if (!(p->props.present & RMQ_PBIT(RMQ_PROP_PAYLOAD_FORMAT)) || p->props.payload_format != 1)
		return RMQ_OK;
	/* [MQTT-3.3.2-4] format indicator 1: the payload is UTF-8 */
	return rmq_utf8_valid_payload(p->payload.p, p->payload.len) ? RMQ_OK : RMQ_E_PAYLOAD_FORMAT;
}
