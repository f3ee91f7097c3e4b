/* PUBACK, PUBREC, PUBREL, PUBCOMP: packet id, and in v5 an optional reason code and properties
 * (short forms: remaining length 2 = success, 3 = reason only). Pure, callable from any thread. */
#include "internal.h"

int rmq_proto_ack_decode(struct rd *r, unsigned type, uint8_t version, struct rmq_ack *a)
{
	int rc;
	a->reason = 0;
	rmq_proto_props_clear(&a->props);
	if ((rc = rd_packet_id(r, &a->packet_id)) < 0)
		return rc;
	if (version == RMQ_V5)
		return rmq_proto_reason_tail_decode(r, type, RMQ_ROLE_SERVER, &a->reason, &a->props);
	return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
}

int rmq_proto_ack_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_ack *a)
{
	if (a->packet_id == 0)
		return RMQ_E_PACKET_ID_ZERO;
	wr_u16(w, a->packet_id);
	return version == RMQ_V5 ? rmq_proto_reason_tail_encode(w, type, a->reason, &a->props) : RMQ_OK;
}
