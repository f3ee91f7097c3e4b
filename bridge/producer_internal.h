/* The producer's shared state: pendings, producers, the per-core bridge struct and the bridge itself, for the
 * files that make up the MQTT -> Kafka path (producer.c, producer_spool.c, bridge.c). Same threading as bridge.h. */
#ifndef RINGMQ_BRIDGE_PRODUCER_INTERNAL_H
#define RINGMQ_BRIDGE_PRODUCER_INTERNAL_H

#include <stdatomic.h>

#include <librdkafka/rdkafka.h>

#include "bridge_internal.h"

/* librdkafka hands a message's opaque (its pending) from the producing core to the core serving the delivery
 * reports through its own locked queues. It is not instrumented, so under ThreadSanitizer (make tsan) that order is
 * declared here; other builds compile nothing. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HANDOFF_RELEASE(p) __tsan_release(p)
#define HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#else
#define HANDOFF_RELEASE(p) ((void)(p))
#define HANDOFF_ACQUIRE(p) ((void)(p))

#endif

#define POOL_CHUNK 256               /* pendings allocated at once; the pool only grows */
#define WRITABLE_NUM 3               /* writable again below 3/4 of the queue: hysteresis, so a paused */
#define WRITABLE_DEN 4               /* connection is not resumed for one message only */
#define MAX_HEADERS_FIXED 4          /* mqtt.topic, mqtt.client_id, mqtt.qos, content-type */
#define ERROR_LOG_MS 10000           /* one Kafka error line per producer per 10 s during an outage */
/* Route index of a cluster unit (cluster.c): negative like every topic-named message, and apart from other uses. */
#define CLUSTER_ROUTE(unit) (-16 - (unit))
#define CLUSTER_UNIT(route) ((route) <= -16 ? -16 - (route) : 0)

struct pending {
	struct pending *next;        /* pool free list, ready list, or another core's inbox */
	uint64_t cookie;
	atomic_int remaining;
	atomic_int err;              /* first failure, negative errno; 0 = none */
	int core;                    /* the core that completes it */
	bool replay;                 /* a spool replay: completed through the core's replay function */
	uint64_t order;              /* publish order on its core: reclaimed messages are spooled in it */
};

struct chunk {
	struct chunk *next;
	struct pending p[POOL_CHUNK];
};

/* A route librdkafka refused mid-publish, with its rendered message copied. */
struct deferred {
	struct deferred *next;
	struct pending *pd;          /* NULL with ack-after broker */
	int route;
	char *topic;
	void *key, *val;
	size_t keylen, vallen;
	rd_kafka_headers_t *hdrs;
	int64_t ts;
};

struct producer {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt[RMQ_BRIDGE_MAX_ROUTES]; /* fixed-topic routes */
	struct rmq_bridge *b;
	struct rmq_bridge_core *server;              /* the core that serves its delivery reports */
	int max_msgs;                                /* queue.buffering.max.messages */
	int64_t last_log_ms;                         /* on_error() rate limit (serving core only) */
	long suppressed;
	int index;                                   /* in b->prods */
	atomic_bool down;                            /* all brokers down (error cb) until a delivery succeeds */
};

struct rmq_bridge_core {
	/* Touched by other cores: only the inbox (atomic) and the eventfd (write). */
	_Atomic(struct pending *) inbox;
	int efd;
	/* Owned by this core. */
	int id;
	struct rmq_bridge *b;
	struct producer *prod;       /* the producer this core publishes on */
	struct producer *serves;     /* the producer whose reports this core serves, or NULL */
	struct pending *free, *ready, **ready_tail;
	struct chunk *chunks;
	struct deferred *defer, **defer_tail;
	struct rmq_bbuf topic, key, val, hblob;
	rmq_bridge_done_fn replay_fn;  /* --spool: completions of rmq_bridge_produce_rendered() */
	void *replay_ud;
	uint64_t next_order;
	bool reclaiming;               /* inside rmq_bridge_core_reclaim: purged messages are kept, not failed */
	struct reclaimed *rcl;         /* ... here */
	size_t nrcl, caprcl;
	struct pending **spilled;      /* reclaimed into the spool, waiting for its durability (FIFO ring) */
	size_t sp_head, sp_n, sp_cap;
	struct rmq_bridge_stats st;
};

struct rmq_bridge {
	struct rmq_bridge_route routes[RMQ_BRIDGE_MAX_ROUTES];
	int nroutes;
	bool match_all, ack_broker, qos0_drop, core_aligned;
	atomic_bool stopping;        /* set by stop(): delivery reports no longer touch pendings */
	int ncores, nprod;
	struct rmq_bridge_core *cores;
	struct producer *prods;
	struct rmq_bridge_mock mock; /* host == NULL when kafka-brokers was given */
	struct rmq_bridge_consumers *cons; /* Kafka -> MQTT (consumer.c); NULL without consume routes */
	struct rmq_cluster *cluster; /* cross-node delivery (cluster.c); NULL without --cluster-topic */
	char *bootstraps;
	struct rmq_kfault_log faults;  /* Kafka refusals already logged (any core) */
};


/* A route's message rendered into the core's buffers (rmq_prod_render), ready for librdkafka or the spool. */
struct rendered {
	const char *topic;           /* NUL-terminated, or NULL for a fixed route (cached topic handle) */
	const void *key, *val;
	size_t keylen, vallen;
	rd_kafka_headers_t *hdrs;
	int64_t ts;
};

/* One Kafka header of a message (rmq_prod_headers_each): librdkafka's headers or the spool's blob. */
typedef int (*header_fn)(void *ud, const char *name, size_t namelen, const void *v, size_t vlen);

/* ---- producer.c: the publishing core's side; each takes the core running now ------------------------------- */

/* Negative errno of a librdkafka error; its MQTT 5 reason for a failed publish (0x97, 0x87, 0x90, 0x80). */
int rmq_prod_kafka_errno(rd_kafka_resp_err_t e);
uint8_t rmq_prod_reason_of(int err);
/* A route Kafka refused for good: counted by class, logged once per (cause, topic). */
void rmq_prod_kafka_refused(struct rmq_bridge_core *bc, rd_kafka_resp_err_t e, const char *topic);
/* The core's pending pool: get (NULL when out of memory) and put back. */
struct pending *rmq_prod_pending_get(struct rmq_bridge_core *bc);
void rmq_prod_pending_put(struct rmq_bridge_core *bc, struct pending *pd);
/* Drops one unit of pd (first error kept); the last completes it on its own core. `self`: the core running now. */
void rmq_prod_resolve(struct rmq_bridge_core *self, struct pending *pd, int err);
/* Wakes the reactor that polls eventfd efd. */
void rmq_prod_wake(int efd);
/* librdkafka callbacks, installed on every producer: delivery reports and error events. */
void rmq_prod_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
void rmq_prod_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);
/* The Kafka headers of m, user properties then MQTT metadata, one add() each: the direct path and the spool
 * carry exactly the same. */
int rmq_prod_headers_each(const struct rmq_bridge_msg *m, header_fn add, void *ud);
/* Renders route r of m into bc's buffers: 0, -EINVAL (rendered topic not a Kafka name) or -ENOMEM. */
int rmq_prod_render(struct rmq_bridge_core *bc, const struct rmq_bridge_route *r, const struct rmq_bridge_msg *m,
		    int64_t ts, bool rd_headers, struct rendered *out);
/* Hands one rendered message to librdkafka (copied). On failure the caller still owns x->hdrs. */
rd_kafka_resp_err_t rmq_prod_produce(struct producer *p, int route, const struct rendered *x, struct pending *pd);
/* Routes of topic t, in configuration order (first match only unless route-match all); their count. */
int rmq_prod_match(const struct rmq_bridge *b, struct rmq_str t, int *out);
/* The deferred FIFO: produced in order until librdkafka is full again; one entry freed. */
void rmq_prod_drain_deferred(struct rmq_bridge_core *bc);
void rmq_prod_deferred_free(struct deferred *d);
/* malloc'd copy of n bytes, or NULL. */
void *rmq_prod_dup_mem(const void *p, size_t n);

/* ---- producer_spool.c: what the spool takes back ---------------------------------------------------------- */

/* A purged message's delivery report inside rmq_bridge_core_reclaim: keeps a copy. 0, or < 0 (then it fails as
 * any purged message does). */
int rmq_prod_reclaim_keep(struct rmq_bridge_core *bc, const rd_kafka_message_t *m);

#endif
