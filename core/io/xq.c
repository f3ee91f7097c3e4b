/* Cross-core queues: a bounded single-producer/single-consumer ring per ordered pair of cores, and the
 * per-core wake flag that says when the sender must ring the receiver's doorbell. */
#include "io/xq.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

int rmq_xq_init(struct rmq_xq *q, uint32_t capacity)
{
	if (capacity == 0 || capacity > (1u << 30))
		return -EINVAL;
	uint32_t cap = 1;
	while (cap < capacity)
		cap <<= 1;
	q->ring = calloc(cap, sizeof(*q->ring));
	if (q->ring == NULL)
		return -ENOMEM;
	q->mask = cap - 1;
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	q->cached_head = q->cached_tail = 0;
	q->full_count = 0;
	return 0;
}

void rmq_xq_destroy(struct rmq_xq *q)
{
	free(q->ring);
	q->ring = NULL;
}

uint32_t rmq_xq_space(struct rmq_xq *q)
{
	uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	q->cached_head = atomic_load_explicit(&q->head, memory_order_acquire);
	return q->mask + 1 - (tail - q->cached_head);
}

uint32_t rmq_xq_push(struct rmq_xq *q, const struct rmq_xq_entry *e, uint32_t n)
{
	uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint32_t cap = q->mask + 1;
	uint32_t free_slots = cap - (tail - q->cached_head);
	if (free_slots < n)
		free_slots = rmq_xq_space(q);
	if (n > free_slots) {
		n = free_slots;
		q->full_count++;
	}
	assert(tail - q->cached_head + n <= cap);  /* never past the consumer */
	for (uint32_t i = 0; i < n; i++)
		q->ring[(tail + i) & q->mask] = e[i];
	atomic_store_explicit(&q->tail, tail + n, memory_order_release);
	return n;
}

uint32_t rmq_xq_pop(struct rmq_xq *q, struct rmq_xq_entry *out, uint32_t max)
{
	uint32_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint32_t avail = q->cached_tail - head;
	if (avail < max) {
		q->cached_tail = atomic_load_explicit(&q->tail, memory_order_acquire);
		avail = q->cached_tail - head;
	}
	assert(avail <= q->mask + 1);  /* never past the producer */
	if (avail > max)
		avail = max;
	for (uint32_t i = 0; i < avail; i++)
		out[i] = q->ring[(head + i) & q->mask];
	atomic_store_explicit(&q->head, head + avail, memory_order_release);
	return avail;
}

bool rmq_xq_empty(struct rmq_xq *q)
{
	uint32_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
	q->cached_tail = atomic_load_explicit(&q->tail, memory_order_acquire);
	return q->cached_tail == head;
}

void rmq_xq_wake_arm(struct rmq_xq_wake *w)
{
	atomic_store_explicit(&w->sleeping, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

void rmq_xq_wake_disarm(struct rmq_xq_wake *w)
{
	atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
}

bool rmq_xq_wake_needed(struct rmq_xq_wake *w)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&w->sleeping, memory_order_relaxed) == 0)
		return false;
	return atomic_exchange_explicit(&w->sleeping, 0, memory_order_acq_rel) == 1;
}
