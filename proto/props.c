/* MQTT 5 properties: the table of identifiers (type, packets allowed in, struct field), decode with
 * duplicate and range checks, encode, and user property iteration. Pure, callable from any thread. */
#include <stddef.h>

#include "internal.h"

enum ptype { T_BYTE = 1, T_U16, T_U32, T_VARINT, T_UTF8, T_BIN, T_PAIR };

#define IN(t) (1u << (t))
#define WILL IN(PROPS_WILL)
#define ACKS (IN(RMQ_PUBACK) | IN(RMQ_PUBREC) | IN(RMQ_PUBREL) | IN(RMQ_PUBCOMP))
#define ALL_PACKETS (0xFFFEu & ~(IN(RMQ_PINGREQ) | IN(RMQ_PINGRESP)))
#define OFF(f) offsetof(struct rmq_props, f)
#define NPROPS (RMQ_PROP_SHARED_AVAILABLE + 1)

struct pdef {
	uint8_t type;
	uint16_t where; /* IN(packet type) bits, WILL for will properties */
	uint16_t off;   /* field in struct rmq_props */
};

/* MQTT 5 section 2.2.2.2, table 2-4. */
static const struct pdef defs[NPROPS] = {
	[RMQ_PROP_PAYLOAD_FORMAT] = {T_BYTE, IN(RMQ_PUBLISH) | WILL, OFF(payload_format)},
	[RMQ_PROP_MESSAGE_EXPIRY] = {T_U32, IN(RMQ_PUBLISH) | WILL, OFF(message_expiry)},
	[RMQ_PROP_CONTENT_TYPE] = {T_UTF8, IN(RMQ_PUBLISH) | WILL, OFF(content_type)},
	[RMQ_PROP_RESPONSE_TOPIC] = {T_UTF8, IN(RMQ_PUBLISH) | WILL, OFF(response_topic)},
	[RMQ_PROP_CORRELATION_DATA] = {T_BIN, IN(RMQ_PUBLISH) | WILL, OFF(correlation_data)},
	[RMQ_PROP_SUB_ID] = {T_VARINT, IN(RMQ_PUBLISH) | IN(RMQ_SUBSCRIBE), 0},
	[RMQ_PROP_SESSION_EXPIRY] = {T_U32, IN(RMQ_CONNECT) | IN(RMQ_CONNACK) | IN(RMQ_DISCONNECT),
				     OFF(session_expiry)},
	[RMQ_PROP_ASSIGNED_CLIENT_ID] = {T_UTF8, IN(RMQ_CONNACK), OFF(assigned_client_id)},
	[RMQ_PROP_SERVER_KEEP_ALIVE] = {T_U16, IN(RMQ_CONNACK), OFF(server_keep_alive)},
	[RMQ_PROP_AUTH_METHOD] = {T_UTF8, IN(RMQ_CONNECT) | IN(RMQ_CONNACK) | IN(RMQ_AUTH), OFF(auth_method)},
	[RMQ_PROP_AUTH_DATA] = {T_BIN, IN(RMQ_CONNECT) | IN(RMQ_CONNACK) | IN(RMQ_AUTH), OFF(auth_data)},
	[RMQ_PROP_REQUEST_PROBLEM_INFO] = {T_BYTE, IN(RMQ_CONNECT), OFF(request_problem_info)},
	[RMQ_PROP_WILL_DELAY] = {T_U32, WILL, OFF(will_delay)},
	[RMQ_PROP_REQUEST_RESPONSE_INFO] = {T_BYTE, IN(RMQ_CONNECT), OFF(request_response_info)},
	[RMQ_PROP_RESPONSE_INFO] = {T_UTF8, IN(RMQ_CONNACK), OFF(response_info)},
	[RMQ_PROP_SERVER_REFERENCE] = {T_UTF8, IN(RMQ_CONNACK) | IN(RMQ_DISCONNECT), OFF(server_reference)},
	[RMQ_PROP_REASON_STRING] = {T_UTF8, IN(RMQ_CONNACK) | ACKS | IN(RMQ_SUBACK) | IN(RMQ_UNSUBACK) |
					    IN(RMQ_DISCONNECT) | IN(RMQ_AUTH), OFF(reason_string)},
	[RMQ_PROP_RECEIVE_MAX] = {T_U16, IN(RMQ_CONNECT) | IN(RMQ_CONNACK), OFF(receive_max)},
	[RMQ_PROP_TOPIC_ALIAS_MAX] = {T_U16, IN(RMQ_CONNECT) | IN(RMQ_CONNACK), OFF(topic_alias_max)},
	[RMQ_PROP_TOPIC_ALIAS] = {T_U16, IN(RMQ_PUBLISH), OFF(topic_alias)},
	[RMQ_PROP_MAX_QOS] = {T_BYTE, IN(RMQ_CONNACK), OFF(max_qos)},
	[RMQ_PROP_RETAIN_AVAILABLE] = {T_BYTE, IN(RMQ_CONNACK), OFF(retain_available)},
	[RMQ_PROP_USER] = {T_PAIR, ALL_PACKETS | WILL, 0},
	[RMQ_PROP_MAX_PACKET_SIZE] = {T_U32, IN(RMQ_CONNECT) | IN(RMQ_CONNACK), OFF(max_packet_size)},
	[RMQ_PROP_WILDCARD_AVAILABLE] = {T_BYTE, IN(RMQ_CONNACK), OFF(wildcard_available)},
	[RMQ_PROP_SUB_ID_AVAILABLE] = {T_BYTE, IN(RMQ_CONNACK), OFF(sub_id_available)},
	[RMQ_PROP_SHARED_AVAILABLE] = {T_BYTE, IN(RMQ_CONNACK), OFF(shared_available)},
};

static inline void *field(struct rmq_props *p, const struct pdef *d)
{
	return (char *)p + d->off;
}

static inline const void *cfield(const struct rmq_props *p, const struct pdef *d)
{
	return (const char *)p + d->off;
}

/* Range rules of the fixed-size properties. */
static int check_value(uint8_t id, uint32_t v)
{
	switch (id) {
	case RMQ_PROP_RECEIVE_MAX:      /* [MQTT-3.1.2.11.3] 0 is a Protocol Error */
	case RMQ_PROP_MAX_PACKET_SIZE:  /* [MQTT-3.1.2.11.4] 0 is a Protocol Error */
		return v == 0 ? RMQ_E_PROP_VALUE : RMQ_OK;
	case RMQ_PROP_TOPIC_ALIAS:
		return v == 0 ? RMQ_E_TOPIC_ALIAS_ZERO : RMQ_OK;
	case RMQ_PROP_SUB_ID:           /* [MQTT-3.8.2.1.2] 1..268435455 */
		return v == 0 ? RMQ_E_SUB_ID_ZERO : RMQ_OK;
	default:
		return RMQ_OK;
	}
}

static int read_value(struct rd *r, uint8_t id, const struct pdef *d, struct rmq_props *out)
{
	int rc;
	uint8_t b;
	uint16_t h;
	uint32_t v;
	struct rmq_str k, s;
	switch (d->type) {
	case T_BYTE: /* every byte property is 0 or 1 (max QoS included) [MQTT-3.2.2-9] */
		if ((rc = rd_u8(r, &b)) < 0)
			return rc;
		*(uint8_t *)field(out, d) = b;
		return b > 1 ? RMQ_E_PROP_VALUE : RMQ_OK;
	case T_U16:
		if ((rc = rd_u16(r, &h)) < 0)
			return rc;
		*(uint16_t *)field(out, d) = h;
		return check_value(id, h);
	case T_U32:
		if ((rc = rd_u32(r, &v)) < 0)
			return rc;
		*(uint32_t *)field(out, d) = v;
		return check_value(id, v);
	case T_VARINT: /* only the subscription identifier */
		if ((rc = rd_varint(r, &v)) < 0)
			return rc;
		if (out->sub_id_count >= RMQ_MAX_SUB_IDS)
			return RMQ_E_TOO_MANY_SUB_IDS;
		out->sub_ids[out->sub_id_count++] = v;
		return check_value(id, v);
	case T_UTF8:
		if ((rc = rd_utf8(r, &s)) < 0)
			return rc;
		*(struct rmq_str *)field(out, d) = s;
		/* [MQTT-3.3.2-14] the Response Topic is a topic name: no wildcards */
		if (id == RMQ_PROP_RESPONSE_TOPIC)
			return rmq_proto_topic_name_validate(s.p, s.len);
		return RMQ_OK;
	case T_BIN:
		if ((rc = rd_bin(r, &s)) < 0)
			return rc;
		*(struct rmq_str *)field(out, d) = s;
		return RMQ_OK;
	default: /* T_PAIR: user property, kept in wire form */
		if ((rc = rd_utf8(r, &k)) < 0 || (rc = rd_utf8(r, &s)) < 0)
			return rc;
		if (out->user_count == UINT16_MAX)
			return RMQ_E_TOO_MANY_USER_PROPS;
		out->user_count++;
		return RMQ_OK;
	}
}

/* Only the user property and, in a PUBLISH, the subscription identifier may repeat [MQTT-2.2.2]. */
static inline bool may_repeat(uint8_t id, unsigned where)
{
	return id == RMQ_PROP_USER || (id == RMQ_PROP_SUB_ID && where == RMQ_PUBLISH);
}

static int allowed(uint8_t id, unsigned where, uint8_t role)
{
	if (!(defs[id].where & IN(where)))
		return RMQ_E_PROP_NOT_ALLOWED;
	/* [MQTT-3.3.4-6] a client's PUBLISH carries no Subscription Identifier */
	if (id == RMQ_PROP_SUB_ID && where == RMQ_PUBLISH && role == RMQ_ROLE_SERVER)
		return RMQ_E_PROP_NOT_ALLOWED;
	/* [MQTT-3.14.2-2] the server never sends Session Expiry Interval in DISCONNECT */
	if (id == RMQ_PROP_SESSION_EXPIRY && where == RMQ_DISCONNECT && role == RMQ_ROLE_CLIENT)
		return RMQ_E_PROP_NOT_ALLOWED;
	return RMQ_OK;
}

int rmq_proto_props_decode(struct rd *r, unsigned where, uint8_t role, struct rmq_props *out)
{
	uint32_t plen;
	rmq_proto_props_clear(out);
	int rc = rd_varint(r, &plen);
	if (rc < 0)
		return rc;
	if (plen > rd_left(r))
		return RMQ_E_PROP_LEN;
	struct rd pr = {r->p, r->p + plen};
	r->p += plen;
	const uint8_t *user_start = NULL, *user_end = NULL;
	while (pr.p < pr.end) {
		const uint8_t *entry = pr.p;
		uint8_t id = *pr.p++;
		if (id >= NPROPS || !defs[id].type)
			return RMQ_E_BAD_PROP;
		if ((rc = allowed(id, where, role)) < 0)
			return rc;
		if ((out->present & RMQ_PBIT(id)) && !may_repeat(id, where))
			return RMQ_E_DUP_PROP;
		out->present |= RMQ_PBIT(id);
		rc = read_value(&pr, id, &defs[id], out);
		if (rc < 0)
			return rc == RMQ_E_TRUNCATED ? RMQ_E_PROP_LEN : rc;
		if (id == RMQ_PROP_USER) {
			if (!user_start)
				user_start = entry;
			user_end = pr.p;
		}
	}
	if (user_start) {
		out->user.p = user_start;
		out->user.len = (uint32_t)(user_end - user_start);
	}
	if ((out->present & RMQ_PBIT(RMQ_PROP_AUTH_DATA)) && !(out->present & RMQ_PBIT(RMQ_PROP_AUTH_METHOD)))
		return RMQ_E_AUTH_DATA_NO_METHOD; /* [MQTT-3.1.2.11.10] [MQTT-3.2.2.3.18] */
	return RMQ_OK;
}

void rmq_proto_props_clear(struct rmq_props *p)
{
	static const struct rmq_str none;
	memset(p, 0, offsetof(struct rmq_props, content_type)); /* present and the fixed-size values */
	p->content_type = p->response_topic = p->correlation_data = p->assigned_client_id = none;
	p->auth_method = p->auth_data = p->response_info = p->server_reference = p->reason_string = none;
	p->user = none;
	p->user_count = 0;
	p->sub_id_count = 0;
}

bool rmq_proto_props_empty(const struct rmq_props *p)
{
	uint64_t fixed = p->present & ~(RMQ_PBIT(RMQ_PROP_USER) | RMQ_PBIT(RMQ_PROP_SUB_ID));
	return !fixed && !p->user_count && !p->sub_id_count;
}

static int write_value(struct wr *w, const struct pdef *d, const struct rmq_props *p)
{
	switch (d->type) {
	case T_BYTE:
		wr_u8(w, *(const uint8_t *)cfield(p, d));
		return RMQ_OK;
	case T_U16:
		wr_u16(w, *(const uint16_t *)cfield(p, d));
		return RMQ_OK;
	case T_U32:
		wr_u32(w, *(const uint32_t *)cfield(p, d));
		return RMQ_OK;
	default: /* T_UTF8, T_BIN */
		return wr_bin(w, *(const struct rmq_str *)cfield(p, d));
	}
}

static int write_sub_ids(struct wr *w, unsigned where, const struct rmq_props *p)
{
	if (!p->sub_id_count)
		return RMQ_OK;
	if (!(defs[RMQ_PROP_SUB_ID].where & IN(where)))
		return RMQ_E_PROP_NOT_ALLOWED;
	if (p->sub_id_count > RMQ_MAX_SUB_IDS)
		return RMQ_E_TOO_MANY_SUB_IDS;
	if (p->sub_id_count > 1 && where != RMQ_PUBLISH)
		return RMQ_E_DUP_PROP;
	for (unsigned i = 0; i < p->sub_id_count; i++) {
		if (p->sub_ids[i] == 0)
			return RMQ_E_SUB_ID_ZERO;
		if (p->sub_ids[i] > RMQ_MAX_REMAINING_LEN)
			return RMQ_E_PROP_VALUE;
		wr_u8(w, RMQ_PROP_SUB_ID);
		wr_varint(w, p->sub_ids[i]);
	}
	return RMQ_OK;
}

static int write_users(struct wr *w, unsigned where, const struct rmq_props *p)
{
	if (!p->user_count)
		return RMQ_OK;
	if (!(defs[RMQ_PROP_USER].where & IN(where)))
		return RMQ_E_PROP_NOT_ALLOWED;
	uint32_t pos = 0;
	struct rmq_str k, v;
	for (unsigned i = 0; i < p->user_count; i++) {
		if (!rmq_props_user_next(p, &pos, &k, &v))
			return RMQ_E_PROP_LEN; /* user_count says more than `user` holds */
		wr_u8(w, RMQ_PROP_USER);
		wr_bin(w, k);
		wr_bin(w, v);
	}
	return RMQ_OK;
}

static int props_body(struct wr *w, unsigned where, const struct rmq_props *p)
{
	uint64_t bits = p->present & ~(RMQ_PBIT(RMQ_PROP_USER) | RMQ_PBIT(RMQ_PROP_SUB_ID));
	int rc;
	while (bits) {
		unsigned id = (unsigned)__builtin_ctzll(bits);
		bits &= bits - 1;
		if (id >= NPROPS || !defs[id].type)
			return RMQ_E_BAD_PROP;
		if (!(defs[id].where & IN(where)))
			return RMQ_E_PROP_NOT_ALLOWED;
		wr_u8(w, (uint8_t)id);
		if ((rc = write_value(w, &defs[id], p)) < 0)
			return rc;
	}
	if ((rc = write_sub_ids(w, where, p)) < 0)
		return rc;
	return write_users(w, where, p);
}

int rmq_proto_props_encode(struct wr *w, unsigned where, const struct rmq_props *p)
{
	if (w->p && w->next_plen < w->nplen) { /* length learnt by the counting pass */
		wr_varint(w, w->plen[w->next_plen++]);
		return props_body(w, where, p);
	}
	struct wr count = {.p = NULL};
	int rc = props_body(&count, where, p);
	if (rc < 0)
		return rc;
	if (count.n > RMQ_MAX_REMAINING_LEN)
		return RMQ_E_TOO_LARGE;
	wr_varint(w, (uint32_t)count.n);
	if (w->p)
		return props_body(w, where, p);
	if (w->nplen < WR_MAX_PROP_BLOCKS)
		w->plen[w->nplen++] = (uint32_t)count.n;
	w->n += count.n;
	return RMQ_OK;
}

/* Steps over one property value of type `type`; false if it runs past the end. */
static bool skip_value(struct rd *r, uint8_t type)
{
	uint32_t v;
	struct rmq_str s;
	static const uint8_t fixed_size[] = {[T_BYTE] = 1, [T_U16] = 2, [T_U32] = 4};
	switch (type) {
	case T_BYTE:
	case T_U16:
	case T_U32:
		if (rd_left(r) < fixed_size[type])
			return false;
		r->p += fixed_size[type];
		return true;
	case T_VARINT:
		return rd_varint(r, &v) == RMQ_OK;
	case T_UTF8:
	case T_BIN:
		return rd_bin(r, &s) == RMQ_OK;
	case T_PAIR:
		return rd_bin(r, &s) == RMQ_OK && rd_bin(r, &s) == RMQ_OK;
	default:
		return false;
	}
}

bool rmq_props_user_next(const struct rmq_props *props, uint32_t *pos, struct rmq_str *key,
			 struct rmq_str *value)
{
	if (!props->user_count || *pos >= props->user.len)
		return false;
	struct rd r = {props->user.p + *pos, props->user.p + props->user.len};
	while (r.p < r.end) {
		uint8_t id = *r.p++;
		if (id == RMQ_PROP_USER) {
			if (rd_bin(&r, key) < 0 || rd_bin(&r, value) < 0)
				return false;
			*pos = (uint32_t)(r.p - props->user.p);
			return true;
		}
		if (id >= NPROPS || !skip_value(&r, defs[id].type))
			return false;
	}
	return false;
}

int rmq_props_user_add(struct rmq_props *props, uint8_t *buf, size_t cap, size_t *used,
		       struct rmq_str key, struct rmq_str value)
{
	if (key.len > RMQ_MAX_STR || value.len > RMQ_MAX_STR)
		return RMQ_E_FIELD_TOO_LONG;
	if (props->user_count == UINT16_MAX)
		return RMQ_E_TOO_MANY_USER_PROPS;
	size_t need = 1 + 2 + (size_t)key.len + 2 + value.len;
	if (*used > cap || cap - *used < need || *used + need > UINT32_MAX)
		return RMQ_E_BUF_TOO_SMALL;
	struct wr w = {.p = buf, .n = *used};
	wr_u8(&w, RMQ_PROP_USER);
	wr_bin(&w, key);
	wr_bin(&w, value);
	*used = w.n;
	props->user.p = buf;
	props->user.len = (uint32_t)w.n;
	props->user_count++;
	props->present |= RMQ_PBIT(RMQ_PROP_USER);
	return RMQ_OK;
}

const struct rmq_props *rmq_proto_props_of(const struct rmq_packet *p)
{
	switch (p->type) {
	case RMQ_CONNECT:
		return &p->u.connect.props;
	case RMQ_CONNACK:
		return &p->u.connack.props;
	case RMQ_PUBLISH:
		return &p->u.publish.props;
	case RMQ_PUBACK:
	case RMQ_PUBREC:
	case RMQ_PUBREL:
	case RMQ_PUBCOMP:
		return &p->u.ack.props;
	case RMQ_SUBSCRIBE:
	case RMQ_UNSUBSCRIBE:
		return &p->u.subscribe.props;
	case RMQ_SUBACK:
	case RMQ_UNSUBACK:
		return &p->u.suback.props;
	case RMQ_DISCONNECT:
	case RMQ_AUTH:
		return &p->u.disconnect.props;
	default:
		return NULL;
	}
}
