/* Codec internals shared by the proto/ sources: bounded reader, counting writer, per-module entry points.
 * Private to proto/; pure functions, callable from any thread. */
#ifndef RMQ_PROTO_INTERNAL_H
#define RMQ_PROTO_INTERNAL_H

#include <string.h>

#include "ringmq/proto.h"

#define RMQ_MAX_STR 65535u   /* 2-byte length prefix */

/* ---- reader: every read is bounds-checked against `end` ---------------------------------------- */
struct rd {
	const uint8_t *p, *end;
};

static inline size_t rd_left(const struct rd *r)
{
	return (size_t)(r->end - r->p);
}

static inline int rd_u8(struct rd *r, uint8_t *v)
{
	if (r->p >= r->end)
		return RMQ_E_TRUNCATED;
	*v = *r->p++;
	return RMQ_OK;
}

static inline int rd_u16(struct rd *r, uint16_t *v)
{
	if (rd_left(r) < 2)
		return RMQ_E_TRUNCATED;
	*v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	return RMQ_OK;
}

static inline int rd_u32(struct rd *r, uint32_t *v)
{
	if (rd_left(r) < 4)
		return RMQ_E_TRUNCATED;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	return RMQ_OK;
}

static inline int rd_varint(struct rd *r, uint32_t *v)
{
	int n = rmq_proto_varint_decode(r->p, rd_left(r), v);
	if (n == RMQ_E_INCOMPLETE)
		return RMQ_E_TRUNCATED;
	if (n < 0)
		return n;
	r->p += n;
	return RMQ_OK;
}

/* Two-byte length then that many bytes (MQTT "Binary Data"). */
static inline int rd_bin(struct rd *r, struct rmq_str *s)
{
	uint16_t n;
	if (rd_u16(r, &n) < 0 || rd_left(r) < n)
		return RMQ_E_TRUNCATED;
	s->p = r->p;
	s->len = n;
	r->p += n;
	return RMQ_OK;
}

/* Packet Identifier: non-zero wherever present [MQTT-2.2.1-3]. */
static inline int rd_packet_id(struct rd *r, uint16_t *id)
{
	int rc = rd_u16(r, id);
	if (rc < 0)
		return rc;
	return *id ? RMQ_OK : RMQ_E_PACKET_ID_ZERO;
}

/* ---- 8 bytes at a time (SWAR), for the UTF-8 and topic fast paths -------------------------------- */
#define SWAR_ONES 0x0101010101010101ull
#define SWAR_HIGHS 0x8080808080808080ull

static inline uint64_t load64(const uint8_t *s)
{
	uint64_t w;
	memcpy(&w, s, sizeof w);
	return w;
}

/* Nonzero when some byte of w is zero (exact as a yes/no). */
static inline uint64_t has_zero(uint64_t w)
{
	return (w - SWAR_ONES) & ~w & SWAR_HIGHS;
}

/* True when all 8 bytes are in 0x01..0x7F: the common case of topics and client ids. */
static inline bool ascii8_nonzero(uint64_t w)
{
	return ((w | has_zero(w)) & SWAR_HIGHS) == 0;
}

bool rmq_utf8_valid_inline(const uint8_t *s, size_t len);
bool rmq_utf8_valid_payload(const uint8_t *s, size_t len); /* RFC 3629: U+0000 allowed */

/* "UTF-8 Encoded String": binary data that must be valid UTF-8 [MQTT-1.5.4-1/2]. */
static inline int rd_utf8(struct rd *r, struct rmq_str *s)
{
	int rc = rd_bin(r, s);
	if (rc < 0)
		return rc;
	return rmq_utf8_valid_inline(s->p, s->len) ? RMQ_OK : RMQ_E_UTF8;
}

/* ---- writer: with p == NULL it only counts, so one function yields both length and bytes --------
 * The counting pass records each property block's length (a CONNECT has two) so the writing pass
 * does not walk the properties a second time to learn it. */
#define WR_MAX_PROP_BLOCKS 2
struct wr {
	uint8_t *p;
	size_t n;
	uint32_t plen[WR_MAX_PROP_BLOCKS];
	uint8_t nplen, next_plen;
};

static inline void wr_u8(struct wr *w, uint8_t v)
{
	if (w->p)
		w->p[w->n] = v;
	w->n++;
}

static inline void wr_u16(struct wr *w, uint16_t v)
{
	if (w->p) {
		w->p[w->n] = (uint8_t)(v >> 8);
		w->p[w->n + 1] = (uint8_t)v;
	}
	w->n += 2;
}

static inline void wr_u32(struct wr *w, uint32_t v)
{
	if (w->p) {
		w->p[w->n] = (uint8_t)(v >> 24);
		w->p[w->n + 1] = (uint8_t)(v >> 16);
		w->p[w->n + 2] = (uint8_t)(v >> 8);
		w->p[w->n + 3] = (uint8_t)v;
	}
	w->n += 4;
}

static inline void wr_varint(struct wr *w, uint32_t v)
{
	if (w->p)
		w->n += (size_t)rmq_proto_varint_encode(w->p + w->n, v);
	else
		w->n += (size_t)rmq_proto_varint_len(v);
}

static inline void wr_raw(struct wr *w, const uint8_t *s, size_t len)
{
	if (w->p && len)
		memcpy(w->p + w->n, s, len);
	w->n += len;
}

/* Two-byte length then the bytes; RMQ_E_FIELD_TOO_LONG past 65535. */
static inline int wr_bin(struct wr *w, struct rmq_str s)
{
	if (s.len > RMQ_MAX_STR)
		return RMQ_E_FIELD_TOO_LONG;
	wr_u16(w, (uint16_t)s.len);
	wr_raw(w, s.p, s.len);
	return RMQ_OK;
}

/* ---- properties (props.c) ------------------------------------------------------------------------
 * `where` is the packet type (enum rmq_ptype) or PROPS_WILL for CONNECT's will properties. */
#define PROPS_WILL 0
int rmq_proto_props_decode(struct rd *r, unsigned where, uint8_t role, struct rmq_props *out);
int rmq_proto_props_encode(struct wr *w, unsigned where, const struct rmq_props *p);
bool rmq_proto_props_empty(const struct rmq_props *p);
/* Zeroes every field of *p but sub_ids[] (meaningful only below sub_id_count). Field by field on
 * purpose: a 272-byte memset compiles to `rep stos`, a third of a small PUBLISH's decode time. */
void rmq_proto_props_clear(struct rmq_props *p);

/* ---- reason codes (reason.c) ------------------------------------------------------------------- */
bool rmq_proto_reason_valid(unsigned ptype, uint8_t version, uint8_t code);
/* The v5 tail shared by the acks, DISCONNECT and AUTH: a reason code then properties, each omitted
 * when the rest is absent (success, no properties). Decode reads to the end of r. */
int rmq_proto_reason_tail_decode(struct rd *r, unsigned type, uint8_t role, uint8_t *reason, struct rmq_props *props);
int rmq_proto_reason_tail_encode(struct wr *w, unsigned type, uint8_t reason, const struct rmq_props *props);

/* ---- topics (topic.c): structure only, the UTF-8 has been validated ----------------------------- */
int rmq_proto_topic_filter_check_utf8ok(const uint8_t *s, size_t len);
#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7u
/* $share/{ShareName}/{filter} [MQTT-4.8.2]; inline because SUBSCRIBE asks it per filter. */
static inline bool topic_is_shared(const uint8_t *s, size_t len)
{
	return len >= SHARE_PREFIX_LEN && s[0] == '$' && memcmp(s, SHARE_PREFIX, SHARE_PREFIX_LEN) == 0;
}
/* UTF-8 validation and topic name rules in one pass, for the PUBLISH hot path. */
int rmq_proto_topic_name_validate(const uint8_t *s, size_t len);

/* ---- per-packet decoders and encoders (one file per packet family) --------------------------------
 * Decoders get a reader over the variable header + payload; encoders write the body only. */
int rmq_proto_connect_decode(struct rd *r, struct rmq_connect *c);
int rmq_proto_connack_decode(struct rd *r, uint8_t version, struct rmq_connack *c);
int rmq_proto_publish_decode(struct rd *r, uint8_t flags, uint8_t version, uint8_t role, struct rmq_publish *p);
int rmq_proto_ack_decode(struct rd *r, unsigned type, uint8_t version, struct rmq_ack *a);
int rmq_proto_subscribe_decode(struct rd *r, unsigned type, uint8_t version, struct rmq_subscribe *s);
int rmq_proto_suback_decode(struct rd *r, unsigned type, uint8_t version, struct rmq_suback *s);
int rmq_proto_disconnect_decode(struct rd *r, unsigned type, uint8_t version, uint8_t role, struct rmq_disconnect *d);

int rmq_proto_connect_encode(struct wr *w, uint8_t version, const struct rmq_connect *c);
int rmq_proto_connack_encode(struct wr *w, uint8_t version, const struct rmq_connack *c);
int rmq_proto_publish_encode(struct wr *w, uint8_t version, const struct rmq_publish *p);
uint8_t rmq_proto_publish_flags(const struct rmq_publish *p); /* DUP, QoS, RETAIN bits of the fixed header */
int rmq_proto_ack_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_ack *a);
int rmq_proto_subscribe_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_subscribe *s);
int rmq_proto_suback_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_suback *s);
int rmq_proto_disconnect_encode(struct wr *w, unsigned type, uint8_t version, const struct rmq_disconnect *d);

#endif
