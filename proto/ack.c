/* PUBACK, PUBREC, PUBREL, PUBCOMP: packet id, and in v5 an optional reason code and properties
 * (short forms: remaining length 2 = success, 3 = reason only). Pure, callable from any thread. */
#include "internal.h"

int ack_decode(struct rd *r, unsigned type, uint8_t version, struct rmq_ack *a)
{
	int rc;
	memset(a, 0, sizeof *a);
	if ((rc = rd_u16(r, &a->packet_id)) < 0)
		return rc;
	if (a->packet_id == 0)
		return RMQ_E_PACKET_ID_ZERO; /* [MQTT-2.2.1-3] */
	if (version == RMQ_V5 && rd_left(r)) {
		rd_u8(r, &a->reason);
		if (!reason_valid(type, version, a->reason))
			return RMQ_E_REASON_CODE;
		/* [MQTT-3.4.2.2] remaining length < 4: no property length, no properties */
		if (rd_left(r) && (rc = props_decode(r, type, RMQ_ROLE_SERVER, &a->props)) < 0)
			return rc;
	}
	return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
}

int ack_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_ack *a)
{
	if (a->packet_id == 0)
		return RMQ_E_PACKET_ID_ZERO;
	wr_u16(w, a->packet_id);
	if (version != RMQ_V5)
		return RMQ_OK;
	bool no_props = props_empty(&a->props);
	if (a->reason == RMQ_RC_SUCCESS && no_props)
		return RMQ_OK;
	if (!reason_valid(type, version, a->reason))
		return RMQ_E_REASON_CODE;
	wr_u8(w, a->reason);
	return no_props ? RMQ_OK : props_encode(w, type, &a->props);
}
