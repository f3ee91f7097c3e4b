/* Ordered acknowledgement window (ring buffer indexed by sequence number).
 * Owned by the connection's reactor thread. */
#include "index/ackwin.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

void rmq_ackwin_init(struct rmq_ackwin *w, uint32_t cap)
{
	assert(cap >= 1 && cap <= RMQ_ACKWIN_CAP_MAX);
	w->ents = NULL;
	w->cap = cap;
	w->head = w->count = 0;
	w->head_seq = 0;
}

void rmq_ackwin_free(struct rmq_ackwin *w)
{
	free(w->ents);
	w->ents = NULL;
	w->count = 0;
}

int rmq_ackwin_push(struct rmq_ackwin *w, uint16_t packet_id, uint8_t type, bool done, uint8_t reason,
		    uint32_t *seq)
{
	return rmq_ackwin_push_n(w, packet_id, type, done ? 0 : 1, reason, seq);
}

int rmq_ackwin_push_n(struct rmq_ackwin *w, uint16_t packet_id, uint8_t type, uint16_t pending, uint8_t reason,
		      uint32_t *seq)
{
	if (w->count >= w->cap)
		return -ENOSPC;
	if (!w->ents) {
		/* Lazily: most connections never wait on Kafka, and idle ones must stay small. */
		w->ents = calloc(w->cap, sizeof(*w->ents));
		if (!w->ents)
			return -ENOMEM;
	}
	assert(w->head < w->cap);
	uint32_t idx = (w->head + w->count) % w->cap;
	w->ents[idx] = (struct rmq_ack_ent){packet_id, pending, type, reason, RMQ_ACKWIN_NO_STAMP};
	if (seq)
		*seq = rmq_ackwin_next_seq(w);
	w->count++;
	return 0;
}

int rmq_ackwin_complete(struct rmq_ackwin *w, uint32_t seq, uint8_t reason)
{
	uint32_t off = (seq - w->head_seq) & RMQ_ACKWIN_SEQ_MASK;
	if (off >= w->count)
		return -ENOENT;
	assert(w->ents);
	struct rmq_ack_ent *e = &w->ents[(w->head + off) % w->cap];
	if (!e->pending)
		return -ENOENT;
	e->pending--;
	if (!e->reason)
		e->reason = reason;
	return 0;
}

/* From "the ack went out at once" to "Kafka or the disk took seconds": an operator's alert sits at 100 ms-1 s. */
const uint32_t rmq_ackwin_bucket_ms[RMQ_ACKWIN_BUCKETS] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};

void rmq_ackwin_observe(uint64_t hist[RMQ_ACKWIN_BUCKETS + 1], uint64_t *sum_ms, uint32_t ms)
{
	unsigned i = 0;
	while (i < RMQ_ACKWIN_BUCKETS && ms > rmq_ackwin_bucket_ms[i])
		i++;
	hist[i]++;
	*sum_ms += ms;
}

void rmq_ackwin_stamp_last(struct rmq_ackwin *w, uint32_t now_ms)
{
	if (w->count)
		w->ents[(w->head + w->count - 1) % w->cap].stamp_ms = now_ms;
}

bool rmq_ackwin_pop(struct rmq_ackwin *w, struct rmq_ack_ent *out)
{
	if (!w->count || w->ents[w->head].pending)
		return false;
	assert(w->count <= w->cap && w->head < w->cap);
	*out = w->ents[w->head];
	w->head = (w->head + 1) % w->cap;
	w->head_seq = (w->head_seq + 1) & RMQ_ACKWIN_SEQ_MASK;
	w->count--;
	return true;
}
