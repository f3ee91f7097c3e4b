/* SUBSCRIBE, UNSUBSCRIBE (filter lists kept in wire form), SUBACK, UNSUBACK, and the list iterator
 * and builder. Pure functions, callable from any thread. */
#include "internal.h"

#define V3_SUBOPT_RESERVED 0xFC   /* 3.1.1: bits 7-2 reserved [MQTT-3.8.3-4 in 3.1.1] */
#define V5_SUBOPT_RESERVED 0xC0   /* 5.0: bits 7-6 reserved [MQTT-3.8.3-5] */
#define RH_RESERVED 3

static int check_options(uint8_t version, uint8_t opt, bool shared)
{
	if (opt & (version == RMQ_V5 ? V5_SUBOPT_RESERVED : V3_SUBOPT_RESERVED))
		return RMQ_E_SUB_OPTIONS;
	if (RMQ_SUBOPT_QOS(opt) == 3)
		return RMQ_E_BAD_QOS;
	if (version == RMQ_V5) {
		if (RMQ_SUBOPT_RH(opt) == RH_RESERVED)
			return RMQ_E_SUB_OPTIONS;
		if (shared && (opt & RMQ_SUBOPT_NO_LOCAL))
			return RMQ_E_SHARED_NO_LOCAL; /* [MQTT-3.8.3-4] */
	}
	return RMQ_OK;
}

/* One list entry: filter (UTF-8, then filter rules), plus the options byte for SUBSCRIBE. */
static int read_entry(struct rd *r, uint8_t version, bool unsub)
{
	struct rmq_str f;
	uint8_t opt;
	int rc;
	if ((rc = rd_utf8(r, &f)) < 0 || (rc = rmq_proto_topic_filter_check_utf8ok(f.p, f.len)) < 0)
		return rc;
	if (unsub)
		return RMQ_OK;
	if ((rc = rd_u8(r, &opt)) < 0)
		return rc;
	return check_options(version, opt, topic_is_shared(f.p, f.len));
}

int rmq_proto_subscribe_decode(struct rd *r, unsigned type, uint8_t version, struct rmq_subscribe *s)
{
	int rc;
	s->is_unsubscribe = type == RMQ_UNSUBSCRIBE;
	s->count = 0;
	rmq_proto_props_clear(&s->props);
	if ((rc = rd_packet_id(r, &s->packet_id)) < 0)
		return rc;
	if (version == RMQ_V5 && (rc = rmq_proto_props_decode(r, type, RMQ_ROLE_SERVER, &s->props)) < 0)
		return rc;
	s->list.p = r->p;
	s->list.len = (uint32_t)rd_left(r);
	while (rd_left(r)) {
		if ((rc = read_entry(r, version, s->is_unsubscribe)) < 0)
			return rc;
		if (s->count == UINT16_MAX)
			return RMQ_E_TOO_MANY_FILTERS;
		s->count++;
	}
	return s->count ? RMQ_OK : RMQ_E_NO_TOPICS; /* [MQTT-3.8.3-3] [MQTT-3.10.3-2] */
}

int rmq_proto_subscribe_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_subscribe *s)
{
	int rc;
	if (s->packet_id == 0)
		return RMQ_E_PACKET_ID_ZERO;
	if (s->count == 0 || s->list.len == 0)
		return RMQ_E_NO_TOPICS;
	wr_u16(w, s->packet_id);
	if (version == RMQ_V5 && (rc = rmq_proto_props_encode(w, type, &s->props)) < 0)
		return rc;
	wr_raw(w, s->list.p, s->list.len);
	return RMQ_OK;
}

bool rmq_sub_next(const struct rmq_subscribe *s, uint32_t *pos, struct rmq_sub_entry *out)
{
	if (*pos >= s->list.len)
		return false;
	struct rd r = {s->list.p + *pos, s->list.p + s->list.len};
	out->options = 0;
	if (rd_bin(&r, &out->filter) < 0 || (!s->is_unsubscribe && rd_u8(&r, &out->options) < 0))
		return false;
	*pos = (uint32_t)(r.p - s->list.p);
	return true;
}

int rmq_sub_add(struct rmq_subscribe *s, uint8_t *buf, size_t cap, size_t *used, struct rmq_str filter,
		uint8_t options)
{
	if (filter.len > RMQ_MAX_STR)
		return RMQ_E_FIELD_TOO_LONG;
	if (s->count == UINT16_MAX)
		return RMQ_E_TOO_MANY_FILTERS;
	size_t need = 2 + (size_t)filter.len + (s->is_unsubscribe ? 0 : 1);
	if (*used > cap || cap - *used < need || *used + need > UINT32_MAX)
		return RMQ_E_BUF_TOO_SMALL;
	struct wr w = {.p = buf, .n = *used};
	wr_bin(&w, filter);
	if (!s->is_unsubscribe)
		wr_u8(&w, options);
	*used = w.n;
	s->list.p = buf;
	s->list.len = (uint32_t)w.n;
	s->count++;
	return RMQ_OK;
}

int rmq_proto_suback_decode(struct rd *r, unsigned type, uint8_t version, struct rmq_suback *s)
{
	int rc;
	s->count = 0;
	s->reasons = NULL;
	rmq_proto_props_clear(&s->props);
	if ((rc = rd_packet_id(r, &s->packet_id)) < 0)
		return rc;
	if (version == RMQ_V5 && (rc = rmq_proto_props_decode(r, type, RMQ_ROLE_CLIENT, &s->props)) < 0)
		return rc;
	if (type == RMQ_UNSUBACK && version != RMQ_V5)
		return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK; /* 3.1.1 UNSUBACK: packet id only */
	size_t n = rd_left(r);
	if (n == 0)
		return RMQ_E_NO_TOPICS; /* one reason code per filter, and a filter list is never empty */
	if (n > UINT16_MAX)
		return RMQ_E_TOO_MANY_FILTERS;
	s->reasons = r->p;
	s->count = (uint16_t)n;
	for (size_t i = 0; i < n; i++)
		if (!rmq_proto_reason_valid(type, version, s->reasons[i]))
			return RMQ_E_REASON_CODE;
	r->p += n;
	return RMQ_OK;
}

int rmq_proto_suback_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_suback *s)
{
	int rc;
	if (s->packet_id == 0)
		return RMQ_E_PACKET_ID_ZERO;
	wr_u16(w, s->packet_id);
	if (version == RMQ_V5 && (rc = rmq_proto_props_encode(w, type, &s->props)) < 0)
		return rc;
	if (type == RMQ_UNSUBACK && version != RMQ_V5)
		return RMQ_OK;
	if (s->count == 0)
		return RMQ_E_NO_TOPICS;
	for (unsigned i = 0; i < s->count; i++)
		if (!rmq_proto_reason_valid(type, version, s->reasons[i]))
			return RMQ_E_REASON_CODE;
	wr_raw(w, s->reasons, s->count);
	return RMQ_OK;
}
