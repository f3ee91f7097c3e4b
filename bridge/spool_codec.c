/* The bridge's own encoding of a rendered message's Kafka headers and timestamp, as the core's spool stores it
 * (opaque to the spool). Pure functions; any thread. */
#include <errno.h>
#include <string.h>

#include "bridge_internal.h"

/* Layout, little-endian: u8 version, u8 flags (HB_HEADERS: the route sends headers), i64 timestamp (ms, the
 * broker's receive time, so a replay keeps the time the car's message arrived), then per header: u16 name
 * length, name, u32 value length (HB_NULL: null value), value. The version byte lets a newer ringmq refuse a
 * spool it cannot read instead of producing garbage. */
#define HB_VERSION 1u
#define HB_HEADERS 1u
#define HB_FIXED 10u
#define HB_NULL 0xffffffffu

int rmq_bridge_hblob_begin(struct rmq_bbuf *b, int64_t ts, bool headers)
{
	uint8_t h[HB_FIXED] = {HB_VERSION, headers ? HB_HEADERS : 0};
	memcpy(h + 2, &ts, 8);
	b->len = 0;
	return rmq_bridge_buf_put(b, h, sizeof(h));
}

int rmq_bridge_hblob_add(struct rmq_bbuf *b, const void *name, size_t namelen, const void *v, size_t vlen)
{
	if (namelen > UINT16_MAX || (v && vlen >= HB_NULL))
		return -EINVAL;
	uint16_t n16 = (uint16_t)namelen;
	uint32_t v32 = v ? (uint32_t)vlen : HB_NULL;
	if (rmq_bridge_buf_put(b, &n16, 2) || rmq_bridge_buf_put(b, name, namelen) || rmq_bridge_buf_put(b, &v32, 4) ||
	    (v && rmq_bridge_buf_put(b, v, vlen)))
		return -ENOMEM;
	return 0;
}

int rmq_bridge_hblob_open(const uint8_t *p, size_t len, int64_t *ts, bool *headers, size_t *pos)
{
	if (len < HB_FIXED || p[0] != HB_VERSION || (p[1] & ~HB_HEADERS))
		return -EINVAL;
	memcpy(ts, p + 2, 8);
	*headers = p[1] & HB_HEADERS;
	*pos = HB_FIXED;
	return 0;
}

int rmq_bridge_hblob_next(const uint8_t *p, size_t len, size_t *pos, struct rmq_bridge_hdr *out)
{
	size_t at = *pos;
	if (at == len)
		return 0;
	uint16_t n16;
	uint32_t v32;
	if (len - at < 2)
		return -EINVAL;
	memcpy(&n16, p + at, 2);
	at += 2;
	if (len - at < (size_t)n16 + 4)
		return -EINVAL;
	out->name = (const char *)p + at;
	out->namelen = n16;
	at += n16;
	memcpy(&v32, p + at, 4);
	at += 4;
	if (v32 == HB_NULL) {
		out->value = NULL;
		out->vlen = 0;
	} else {
		if (len - at < v32)
			return -EINVAL;
		out->value = p + at;
		out->vlen = v32;
		at += v32;
	}
	*pos = at;
	return 1;
}
