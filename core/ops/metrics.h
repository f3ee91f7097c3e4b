/* Per-core metric snapshots and the Prometheus /metrics server. rmq_metrics_publish: the reactor thread of the
 * core it is given; rmq_metrics_start/stop: main thread; the server thread only reads the snapshots. */
#ifndef RMQ_CORE_METRICS_H
#define RMQ_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ops/counters.h"

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
