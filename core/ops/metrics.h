/* Per-core metric snapshots and the Prometheus /metrics server. rmq_metrics_publish: the reactor thread of the
 * core it is given; rmq_metrics_start/stop: main thread; the server thread only reads the snapshots. */
#ifndef RMQ_CORE_METRICS_H
#define RMQ_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/counters.h"

struct core;
struct broker;
struct rmq_metrics_srv;

/* Reactor thread of c: copies c's counters (and its bridge's) into c->snap. Cheap: called once per tick (100 ms),
 * and only from the tick, so RMQ_M_LOOP_TICKS counts the loop iterations that reached their timer. */
void rmq_metrics_publish(struct core *c);

/* Writes the Prometheus text exposition (format 0.0.4) of every core's snapshot to f. Any thread. */
void rmq_metrics_render(const struct broker *b, FILE *f);

/* Main thread, after the cores exist: binds b->cfg.metrics (port 0 picks one; the chosen port is written
 * back) and starts the server thread. 0, or -errno with err filled. A no-op when --metrics is not set. */
int rmq_metrics_start(struct broker *b, char *err, size_t errlen);

/* The status page served at / (ops/status.html, embedded at build time by tools/embed.cmake). */
extern const char rmq_status_page[];
extern const size_t rmq_status_page_len;

/* Main thread: stops and joins the server thread, closes its socket. Safe when never started. */
void rmq_metrics_stop(struct broker *b);

#endif
