/* Which reason / return codes each packet type may carry, per version (MQTT 5 table 2-6, 3.1.1 3.2.2.3).
 * Pure functions, callable from any thread. */
#include "internal.h"

struct code_set {
	const uint8_t *codes;
	size_t n;
};

#define SET(...) {(const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})}

static const struct code_set v5_sets[RMQ_AUTH + 1] = {
	[RMQ_CONNACK] = SET(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
			    0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F),
	[RMQ_PUBACK] = SET(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
	[RMQ_PUBREC] = SET(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
	[RMQ_PUBREL] = SET(0x00, 0x92),
	[RMQ_PUBCOMP] = SET(0x00, 0x92),
	[RMQ_SUBACK] = SET(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2),
	[RMQ_UNSUBACK] = SET(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91),
	[RMQ_DISCONNECT] = SET(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
			       0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F,
			       0xA0, 0xA1, 0xA2),
	[RMQ_AUTH] = SET(0x00, 0x18, 0x19),
};

static const struct code_set v3_sets[RMQ_AUTH + 1] = {
	[RMQ_CONNACK] = SET(RMQ_V3_ACCEPTED, RMQ_V3_BAD_VERSION, RMQ_V3_ID_REJECTED, RMQ_V3_SERVER_UNAVAILABLE,
			    RMQ_V3_BAD_USER_PASS, RMQ_V3_NOT_AUTHORIZED),
	[RMQ_SUBACK] = SET(0x00, 0x01, 0x02, 0x80), /* 0x80 failure: 3.1.1 [MQTT-3.9.3] */
};

bool rmq_proto_reason_valid(unsigned ptype, uint8_t version, uint8_t code)
{
	if (ptype > RMQ_AUTH)
		return false;
	const struct code_set *set = version == RMQ_V5 ? &v5_sets[ptype] : &v3_sets[ptype];
	if (!set->n)
		return code == 0; /* no reason code on the wire for this type/version */
	return memchr(set->codes, code, set->n) != NULL;
}

int rmq_proto_reason_tail_decode(struct rd *r, unsigned type, uint8_t role, uint8_t *reason, struct rmq_props *props)
{
	int rc;
	*reason = RMQ_RC_SUCCESS;
	rmq_proto_props_clear(props);
	if (!rd_left(r))
		return RMQ_OK;
	if ((rc = rd_u8(r, reason)) < 0)
		return rc;
	if (!rmq_proto_reason_valid(type, RMQ_V5, *reason))
		return RMQ_E_REASON_CODE;
	/* [MQTT-3.4.2.2] [MQTT-3.14.2.2]: no property length when nothing follows the reason */
	if (rd_left(r) && (rc = rmq_proto_props_decode(r, type, role, props)) < 0)
		return rc;
	return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
}

int rmq_proto_reason_tail_encode(struct wr *w, unsigned type, uint8_t reason, const struct rmq_props *props)
{
	bool no_props = rmq_proto_props_empty(props);
	if (reason == RMQ_RC_SUCCESS && no_props)
		return RMQ_OK;
	if (!rmq_proto_reason_valid(type, RMQ_V5, reason))
		return RMQ_E_REASON_CODE;
	wr_u8(w, reason);
	return no_props ? RMQ_OK : rmq_proto_props_encode(w, type, props);
}
