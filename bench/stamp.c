/* ringmq-bench payload stamping and per-publisher sequence tracking (loss, duplicates, out of order).
 * Pure data structures; each tracker is used only by the worker thread owning its subscriber. */
#include "stamp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bound on distinct publishers one subscriber tracks (16 M slots, ~1 GiB): past it, refuse, don't grow. */
#define MAX_PUBLISHERS (1u << 24)

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

void rmq_bench_stamp_write(uint8_t *buf, const struct rmq_stamp *s)
{
	put32(buf, RMQ_STAMP_MAGIC);
	put32(buf + 4, s->run_id);
	put64(buf + 8, s->send_ns);
	put32(buf + 16, s->pub_id);
	put32(buf + 20, s->seq);
}

bool rmq_bench_stamp_read(const uint8_t *buf, size_t len, struct rmq_stamp *out)
{
	if (len < RMQ_STAMP_LEN || get32(buf) != RMQ_STAMP_MAGIC)
		return false;
	out->run_id = get32(buf + 4);
	out->send_ns = get64(buf + 8);
	out->pub_id = get32(buf + 16);
	out->seq = get32(buf + 20);
	return true;
}

void rmq_bench_seq_init(struct rmq_seq_tracker *t, bool from_first)
{
	t->slots = NULL;
	t->cap = 0;
	t->used = 0;
	t->from_first = from_first;
}

void rmq_bench_seq_free(struct rmq_seq_tracker *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = 0;
	t->used = 0;
}

static uint32_t slot_of(uint32_t key, uint32_t cap)
{
	return (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* Returns the slot holding `key`, or the empty slot where it goes. cap is a power of two, never full. */
static struct rmq_seq_state *probe(struct rmq_seq_state *slots, uint32_t cap, uint32_t key)
{
	uint32_t i = slot_of(key, cap);
	while (slots[i].key && slots[i].key != key)
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

static int grow(struct rmq_seq_tracker *t)
{
	if (t->cap >= MAX_PUBLISHERS)
		return -ENOMEM;
	uint32_t cap = t->cap ? t->cap * 2 : 4;
	struct rmq_seq_state *n = calloc(cap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->cap; i++)
		if (t->slots[i].key)
			*probe(n, cap, t->slots[i].key) = t->slots[i];
	free(t->slots);
	t->slots = n;
	t->cap = cap;
	return 0;
}

static const struct rmq_seq_state *find(const struct rmq_seq_tracker *t, uint32_t pub_id)
{
	if (!t->cap)
		return NULL;
	const struct rmq_seq_state *s = probe(t->slots, t->cap, pub_id + 1);
	return s->key ? s : NULL;
}

static bool bit_get(const struct rmq_seq_state *s, uint32_t back)
{
	return (s->window[back / 64] >> (back % 64)) & 1u;
}

static void bit_set(struct rmq_seq_state *s, uint32_t back)
{
	s->window[back / 64] |= 1ull << (back % 64);
}

/* Slides the window forward by n sequences (bit 0 is always the newest, next-1). */
static void shift_window(struct rmq_seq_state *s, uint32_t n)
{
	const uint32_t words = RMQ_SEQ_WINDOW / 64;
	if (n >= RMQ_SEQ_WINDOW) {
		memset(s->window, 0, sizeof(s->window));
		return;
	}
	uint32_t ws = n / 64, bs = n % 64;
	for (int i = (int)words - 1; i >= 0; i--) {
		uint64_t v = 0;
		int src = i - (int)ws;
		if (src >= 0) {
			v = s->window[src] << bs;
			if (bs && src > 0)
				v |= s->window[src - 1] >> (64 - bs);
		}
		s->window[i] = v;
	}
}

int rmq_bench_seq_record(struct rmq_seq_tracker *t, uint32_t pub_id, uint32_t seq)
{
	if (pub_id == UINT32_MAX)
		return -ERANGE;
	uint32_t key = pub_id + 1;
	struct rmq_seq_state *s = t->cap ? probe(t->slots, t->cap, key) : NULL;
	if (!s || !s->key) {
		/* Keep the load factor under 3/4 so probes stay short. */
		if ((t->used + 1) * 4 > t->cap * 3) {
			int rc = grow(t);
			if (rc)
				return rc;
		}
		s = probe(t->slots, t->cap, key);
		s->key = key;
		t->used++;
		s->base = t->from_first ? seq : 0;
		s->next = s->base;
	}
	if (seq >= s->next) {
		uint32_t skip = seq - s->next;
		shift_window(s, skip + 1);
		bit_set(s, 0);
		s->next = seq + 1;
		s->unique++;
		return skip ? RMQ_SEQ_GAP : RMQ_SEQ_IN_ORDER;
	}
	uint32_t back = s->next - 1 - seq;
	if (seq < s->base || back >= RMQ_SEQ_WINDOW || bit_get(s, back)) {
		s->dup++;
		return RMQ_SEQ_DUP;
	}
	bit_set(s, back);
	s->unique++;
	s->ooo++;
	return RMQ_SEQ_LATE;
}

void rmq_bench_seq_totals(const struct rmq_seq_tracker *t, struct rmq_seq_totals *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < t->cap; i++) {
		const struct rmq_seq_state *s = &t->slots[i];
		if (!s->key)
			continue;
		out->publishers++;
		out->unique += s->unique;
		out->dup += s->dup;
		out->ooo += s->ooo;
		uint64_t span = (uint64_t)(s->next - s->base);
		if (span > s->unique)
			out->gaps += span - s->unique;
	}
}

uint64_t rmq_bench_seq_unique(const struct rmq_seq_tracker *t, uint32_t pub_id)
{
	const struct rmq_seq_state *s = pub_id == UINT32_MAX ? NULL : find(t, pub_id);
	return s ? s->unique : 0;
}
