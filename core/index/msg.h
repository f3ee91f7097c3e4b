/* Immutable reference-counted application message: one allocation holding topic, payload and v5
 * properties. Created by the publishing core; shared read-only with other cores (atomic refcount). */
#ifndef RMQ_CORE_MSG_H
#define RMQ_CORE_MSG_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringmq/proto.h"

/* One shared-subscription group matched by a message, and the core whose member gets it. */
struct share_pick {
	uint64_t key;
	uint16_t core;
};

struct rmq_msg {
	_Atomic uint32_t refs;
	uint16_t origin_core;
	uint64_t stamp;              /* broker-wide order of retained sets (last writer wins everywhere) */
	const void *origin_session;  /* for No Local: compared only on the origin core */
	bool from_cluster;           /* came from another node through Kafka (--cluster-topic): never sent back out */
	uint64_t expire_at_ms;       /* v5 Message Expiry, on the reactors' monotonic clock; 0 = never */
	struct share_pick *picks;    /* shared subscriptions: the core chosen per group (shared_sub.c) */
	uint16_t npicks;
	bool share_only;             /* a leaving member's message handed to another core's member only */
	uint64_t durable_ck;         /* --data-dir: origin's ack cookie, set before a push with xq arg 1 (persist.c) */
	/* Kafka -> MQTT (kafka_in.c): called with on_free_ud by whichever core drops the last ref, just before
	 * the free: every session that matched has had the message, so its Kafka offset may be committed. */
	void (*on_free)(void *ud);
	void *on_free_ud;
	struct rmq_publish pub;      /* qos/retain as published; views point into data[] */
	uint8_t data[];
};

/* Copies topic, payload and every property view of `pub` into one allocation (refs = 1). The topic
 * alias and subscription ids are dropped: they are per-hop. Returns NULL on ENOMEM. */
struct rmq_msg *rmq_msg_new(const struct rmq_publish *pub);

static inline struct rmq_msg *rmq_msg_ref(struct rmq_msg *m)
{
	uint32_t before = atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	assert(before > 0);  /* only a holder of a reference may make another */
	(void)before;
	return m;
}

static inline void rmq_msg_refs_add(struct rmq_msg *m, uint32_t n)
{
	uint32_t before = atomic_fetch_add_explicit(&m->refs, n, memory_order_relaxed);
	assert(before > 0);
	(void)before;
}

void rmq_msg_unref(struct rmq_msg *m);

#endif
