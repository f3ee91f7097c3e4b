/* DISCONNECT and AUTH: v5 reason code and properties, both omitted when success with no properties
 * (remaining length 0); 3.1/3.1.1 DISCONNECT is empty. Pure, callable from any thread. */
#include "internal.h"

int disconnect_decode(struct rd *r, unsigned type, uint8_t version, uint8_t role, struct rmq_disconnect *d)
{
	int rc;
	memset(d, 0, sizeof *d);
	if (version == RMQ_V5 && rd_left(r)) {
		rd_u8(r, &d->reason);
		if (!reason_valid(type, version, d->reason))
			return RMQ_E_REASON_CODE;
		/* [MQTT-3.14.2.2.1] remaining length < 2: property length 0 */
		if (rd_left(r) && (rc = props_decode(r, type, role, &d->props)) < 0)
			return rc;
	}
	return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
}

int disconnect_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_disconnect *d)
{
	if (version != RMQ_V5)
		return RMQ_OK;
	bool no_props = props_empty(&d->props);
	if (d->reason == RMQ_RC_SUCCESS && no_props)
		return RMQ_OK;
	if (!reason_valid(type, version, d->reason))
		return RMQ_E_REASON_CODE;
	wr_u8(w, d->reason);
	return no_props ? RMQ_OK : props_encode(w, type, &d->props);
}
