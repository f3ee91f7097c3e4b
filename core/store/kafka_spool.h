/* The core's side of the Kafka spool (--spool): producer or disk for each QoS 1/2 publish on a Kafka route, the
 * PUBACK once durable, replay into Kafka, metrics, drain at stop. Reactor thread of the core it is given. */
#ifndef RMQ_CORE_STORE_KAFKA_SPOOL_H
#define RMQ_CORE_STORE_KAFKA_SPOOL_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct core;
struct rmq_bridge_msg;

/* kafka_spool.c: the Kafka spool (--spool) of this core. */
struct kspool;
struct kspool_counters {
	uint64_t spooled;        /* publishes written to the spool */
	uint64_t took_over;      /* times the spool took over from the producer (queue full / all brokers down) */
	uint64_t refused;        /* publishes refused: spool full (or its disk behind): the car was paused */
	uint64_t throttled;      /* publishes refused while the spool drains (Kafka up): the car was paused */
	uint64_t replayed;       /* spooled messages Kafka acknowledged */
	uint64_t replay_retries; /* transient replay failures (then replayed again) */
	uint64_t dropped;        /* spooled messages Kafka refused for good (counted, logged) */
	uint64_t append_failed;  /* spool writes that failed (the car got an error) */
	uint64_t reclaimed;      /* messages taken back from librdkafka into the spool when Kafka went down */
};
struct rmq_kspool_stats {
	struct kspool_counters c;
	uint64_t backlog_records, backlog_bytes, disk_bytes, inflight, refused_full;
	uint64_t fsyncs, commit_p99_us, commit_max_us;
};
int rmq_kspool_open(struct core *c);              /* start-up, before accepting: 0 or -errno (fatal) */
/* A QoS 1/2 publish on this core with --spool: as rmq_bridge_publish (> 0: one completion for cookie later,
 * through rmq_publish_bridge_done), but to the spool when it holds anything or Kafka is down or the producer is full.
 * -ENOBUFS: the spool is full too (pause the connection). */
int rmq_kspool_publish(struct core *c, const struct rmq_bridge_msg *bm, uint64_t cookie);
void rmq_kspool_pump(struct core *c);             /* each loop iteration: replay, the log's ring work */
void rmq_kspool_on_cqe(struct core *c, struct io_uring_cqe *cqe);   /* OP_SPOOL */
bool rmq_kspool_writable(struct core *c);         /* paused publishers may resume */
void rmq_kspool_stats(struct core *c, struct rmq_kspool_stats *out);   /* zeros when off */
void rmq_kspool_close(struct core *c, bool drain);  /* drain: write what is staged (SIGTERM); NULL-safe */

#endif
