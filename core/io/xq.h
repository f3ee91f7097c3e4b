/* Cross-core queues: a bounded single-producer/single-consumer ring per ordered pair of cores, and the
 * per-core wake flag that says when the sender must ring the receiver's doorbell. Producer side called only
 * by the sending core's thread, consumer side only by the receiving core's thread. */
#ifndef RMQ_XQ_H
#define RMQ_XQ_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RMQ_CACHELINE 64

struct rmq_xq_entry {
	uint32_t kind;   /* what ptr is: a message, a handoff, a route update ... (core's enum) */
	uint32_t arg;
	void *ptr;
};

/* Head and tail live on separate cache lines, each side caches the other's index so that a push or pop
 * touches the shared line only when its cached view runs out. */
struct rmq_xq {
	alignas(RMQ_CACHELINE) _Atomic uint32_t head;  /* written by the consumer */
	uint32_t cached_tail;                          /* consumer-private */
	alignas(RMQ_CACHELINE) _Atomic uint32_t tail;  /* written by the producer */
	uint32_t cached_head;                          /* producer-private */
	alignas(RMQ_CACHELINE) uint32_t mask;
	struct rmq_xq_entry *ring;
	uint64_t full_count;                           /* producer-private: pushes refused whole or in part */
};

/* capacity is rounded up to a power of two. Returns 0 or -ENOMEM / -EINVAL. */
int rmq_xq_init(struct rmq_xq *q, uint32_t capacity);
void rmq_xq_destroy(struct rmq_xq *q);

/* Producer: copies up to n entries in; returns how many fit (fewer when full; counted in full_count). */
uint32_t rmq_xq_push(struct rmq_xq *q, const struct rmq_xq_entry *e, uint32_t n);
/* Consumer: copies out up to max entries; returns how many. */
uint32_t rmq_xq_pop(struct rmq_xq *q, struct rmq_xq_entry *out, uint32_t max);
/* Consumer: true when nothing is waiting (reads the producer's index). */
bool rmq_xq_empty(struct rmq_xq *q);
/* Producer: free slots now. */
uint32_t rmq_xq_space(struct rmq_xq *q);

/* One per receiving core. The receiver, before blocking: rmq_xq_wake_arm(), then re-check every inbound
 * queue (rmq_xq_empty); if one is non-empty, rmq_xq_wake_disarm() and serve it instead of blocking.
 * A sender, after pushing: if rmq_xq_wake_needed() returns true, ring the receiver's doorbell once. The
 * seq_cst fences on both sides make sure that one of the two sees the other's write: no lost wake-up, and
 * a busy receiver costs senders no doorbell at all. */
struct rmq_xq_wake {
	alignas(RMQ_CACHELINE) _Atomic uint32_t sleeping;
};

void rmq_xq_wake_arm(struct rmq_xq_wake *w);
void rmq_xq_wake_disarm(struct rmq_xq_wake *w);
bool rmq_xq_wake_needed(struct rmq_xq_wake *w);

#endif
