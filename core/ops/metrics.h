/* Per-core metric snapshots and the Prometheus /metrics server. rmq_metrics_publish: the reactor thread of the
 * core it is given; rmq_metrics_start/stop: main thread; the server thread only reads the snapshots. */
#ifndef RMQ_CORE_METRICS_H
#define RMQ_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* One slot per exported per-core figure (the table in metrics.c gives each its name, type and labels). */
enum rmq_metric {
	RMQ_M_CONNS = 0,
	RMQ_M_ACCEPTED,
	RMQ_M_REFUSED_MAX,
	RMQ_M_REFUSED_LOGIN,
	RMQ_M_REFUSED_PROXY,
	RMQ_M_CLOSED,
	RMQ_M_KEEPALIVE,
	RMQ_M_MSGS_IN,
	RMQ_M_MSGS_OUT,
	RMQ_M_BYTES_IN,
	RMQ_M_BYTES_OUT,
	RMQ_M_DROP_QUEUE,
	RMQ_M_DROP_SLOW,
	RMQ_M_DROP_ACL_PUB,
	RMQ_M_DROP_ACL_SUB,
	RMQ_M_DROP_XQ,
	RMQ_M_DROP_TOO_LARGE,
	RMQ_M_DROP_MALFORMED,
	RMQ_M_DROP_KAFKA_QOS0,
	RMQ_M_K_PUBLISHED,
	RMQ_M_K_PRODUCED,
	RMQ_M_K_DELIVERED,
	RMQ_M_K_FAILED,
	RMQ_M_K_REFUSED,
	RMQ_M_K_ERRORS,
	RMQ_M_K_DEPTH,
	RMQ_M_SP_BACKLOG_BYTES,   /* --spool (kafka_spool.c) */
	RMQ_M_SP_BACKLOG_RECORDS,
	RMQ_M_SP_DISK_BYTES,
	RMQ_M_SP_SPOOLED,
	RMQ_M_SP_REPLAYED,
	RMQ_M_SP_REFUSED_FULL,
	RMQ_M_SP_DROPPED,
	RMQ_M_SP_RECLAIMED,
	RMQ_M_SP_THROTTLED,
	RMQ_M_SP_FSYNCS,
	RMQ_M_SP_FSYNC_P99,
	RMQ_M_SP_FSYNC_MAX,
	RMQ_M_WAL_BYTES,
	RMQ_M_WAL_RECORDS,
	RMQ_M_WAL_FSYNCS,
	RMQ_M_WAL_COMMIT_P99,
	RMQ_M_WAL_COMMIT_MAX,
	RMQ_M_WAL_BACKLOG,
	RMQ_M_WAL_DISK,
	RMQ_M_REJ_CONTROL_RATE,   /* hardening limits (limits.c) */
	RMQ_M_REJ_TOPIC_LEVELS,
	RMQ_M_REJ_SUBSCRIPTIONS,
	RMQ_M_REJ_USER_PROPS,
	RMQ_M_REJ_SLOW_PACKET,
	RMQ_M_REJ_HANDSHAKE,
	RMQ_M_REJ_WRONG_ACK,      /* protocol errors (publish.c) */
	RMQ_M_TOO_LARGE_TRIMMED,  /* over the client's Maximum Packet Size (conn.c) */
	RMQ_M_TOO_LARGE_CTL,
	RMQ_M__COUNT
};

/* A core's counters as of its last tick. Written only by that core (relaxed stores), read by the metrics
 * thread (relaxed loads): each value is a whole 64-bit word, the set is at most one tick (100 ms) old. */
struct rmq_metrics_snap {
	_Atomic uint64_t v[RMQ_M__COUNT];
};

struct core;
struct broker;
struct rmq_metrics_srv;

/* Reactor thread of c: copies c's counters (and its bridge's) into c->snap. Cheap: called once per tick. */
void rmq_metrics_publish(struct core *c);

/* Writes the Prometheus text exposition (format 0.0.4) of every core's snapshot to f. Any thread. */
void rmq_metrics_render(const struct broker *b, FILE *f);

/* Main thread, after the cores exist: binds b->cfg.metrics (port 0 picks one; the chosen port is written
 * back) and starts the server thread. 0, or -errno with err filled. A no-op when --metrics is not set. */
int rmq_metrics_start(struct broker *b, char *err, size_t errlen);

/* Main thread: stops and joins the server thread, closes its socket. Safe when never started. */
void rmq_metrics_stop(struct broker *b);

#endif
