/* DISCONNECT and AUTH: v5 reason code and properties, both omitted when success with no properties
 * (remaining length 0); 3.1/3.1.1 DISCONNECT is empty. Pure, callable from any thread. */
#include "internal.h"

int rmq_proto_disconnect_decode(struct rd *r, unsigned type, uint8_t version, uint8_t role, struct rmq_disconnect *d)
{
	if (version == RMQ_V5)
		return rmq_proto_reason_tail_decode(r, type, role, &d->reason, &d->props);
	d->reason = 0;
	rmq_proto_props_clear(&d->props);
	return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
}

int rmq_proto_disconnect_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_disconnect *d)
{
	return version == RMQ_V5 ? rmq_proto_reason_tail_encode(w, type, d->reason, &d->props) : RMQ_OK;
}
