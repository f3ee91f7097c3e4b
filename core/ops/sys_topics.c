/* $SYS/broker/... topics: every core snapshots its own counters once a second; core 0 sums the snapshots
 * and publishes them (retained, QoS 0) every --sys-interval seconds. Reactor threads (each its own core). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/sys_topics.h"
#include "index/msg.h"
#include "index/retain.h"
#include "io/reactor.h"
#include "mqtt/mqtt.h"

/* Every core publishes its snapshot each 100 ms tick; a second covers a core that started late. */
#define SYS_FIRST_DELAY_MS 1200u

/* $SYS topic of each exported figure that has one (io/counters.h), indexed by enum rmq_metric. */
static const char *const sys_names[RMQ_M__COUNT] = {
#define RMQ_X_COUNTER_SYS(field, name, reason, sys, help) [RMQ_M_##field] = sys,
#define RMQ_X_GAUGE_SYS(id, name, type, label, sys, help) [RMQ_M_##id] = sys,
	RMQ_COUNTERS(RMQ_X_COUNTER_SYS) RMQ_GAUGES(RMQ_X_GAUGE_SYS)
#undef RMQ_X_COUNTER_SYS
#undef RMQ_X_GAUGE_SYS
};

/* Figures also published per core (load and traffic), and those with a .../per_second rate. */
static const enum rmq_metric per_core[] = {RMQ_M_CONNS, RMQ_M_SESSIONS, RMQ_M_msgs_in, RMQ_M_msgs_out,
					   RMQ_M_bytes_in, RMQ_M_bytes_out};
static const enum rmq_metric rates[] = {RMQ_M_msgs_in, RMQ_M_msgs_out, RMQ_M_bytes_in, RMQ_M_bytes_out};
_Static_assert(sizeof(rates) / sizeof(rates[0]) == sizeof(((struct rmq_sys *)0)->prev) / sizeof(uint64_t),
	       "one previous total per rated figure");

static void put(struct core *c, const char *topic, const char *payload)
{
	struct rmq_publish p;
	memset(&p, 0, sizeof(p));
	p.retain = true;
	p.topic = (struct rmq_str){(const uint8_t *)topic, (uint32_t)strlen(topic)};
	p.payload = (struct rmq_str){(const uint8_t *)payload, (uint32_t)strlen(payload)};
	struct rmq_msg *m = rmq_msg_new(&p);
	if (!m)
		return;
	rmq_publish_from_core(c, m, NULL);
	rmq_msg_unref(m);
}

static void putu(struct core *c, const char *topic, uint64_t v)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	put(c, topic, buf);
}

static uint64_t snap_of(const struct core *k, enum rmq_metric m)
{
	return atomic_load_explicit(&k->snap.v[m], memory_order_relaxed);
}

/* Core 0: the totals of every core's last snapshot (ops/metrics.c, each tick), and the per-core figures. */
static void publish_all(struct core *c, uint32_t interval_s)
{
	struct broker *b = c->b;
	uint64_t tot[RMQ_M__COUNT] = {0};
	char topic[96];
	for (int k = 0; k < b->ncores; k++) {
		for (int i = 0; i < RMQ_M__COUNT; i++)
			tot[i] += snap_of(&b->cores[k], (enum rmq_metric)i);
		for (size_t i = 0; i < sizeof(per_core) / sizeof(per_core[0]); i++) {
			snprintf(topic, sizeof(topic), "$SYS/broker/core/%d/%s", k, sys_names[per_core[i]]);
			putu(c, topic, snap_of(&b->cores[k], per_core[i]));
		}
	}
	put(c, "$SYS/broker/version", "ringmq " RMQ_SYS_VERSION);
	putu(c, "$SYS/broker/uptime", (c->now_ms - c->sys->start_ms) / 1000u);
	putu(c, "$SYS/broker/retained messages/count", c->retained ? rmq_retain_count(c->retained) : 0);
	putu(c, "$SYS/broker/cores", (uint64_t)b->ncores);
	for (int i = 0; i < RMQ_M__COUNT; i++) {
		if (!sys_names[i])
			continue;
		snprintf(topic, sizeof(topic), "$SYS/broker/%s", sys_names[i]);
		putu(c, topic, tot[i]);
	}
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		enum rmq_metric i = rates[r];
		uint64_t d = tot[i] >= c->sys->prev[r] ? tot[i] - c->sys->prev[r] : 0;
		snprintf(topic, sizeof(topic), "$SYS/broker/%s/per_second", sys_names[i]);
		putu(c, topic, d / interval_s);
		c->sys->prev[r] = tot[i];
	}
}

void rmq_sys_tick(struct core *c)
{
	uint32_t interval = c->b->cfg.sys_interval;
	struct rmq_sys *sys = c->sys;
	if (!interval || c->stopping || c->id != 0 || !sys)
		return;
	if (!sys->start_ms) {
		sys->start_ms = c->now_ms ? c->now_ms : 1;
		/* The first publish once every core has had a few ticks to publish its snapshot. */
		sys->next_pub_ms = c->now_ms + SYS_FIRST_DELAY_MS;
	}
	if (c->now_ms >= sys->next_pub_ms) {
		publish_all(c, interval);
		sys->next_pub_ms = c->now_ms + (uint64_t)interval * 1000u;
	}
}

int rmq_sys_new(struct core *c)
{
	c->sys = calloc(1, sizeof(*c->sys));
	return c->sys ? 0 : -ENOMEM;
}

void rmq_sys_free(struct core *c)
{
	free(c->sys);
	c->sys = NULL;
}
