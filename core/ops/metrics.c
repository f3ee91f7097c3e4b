/* Metric snapshots of each core and their Prometheus text rendering. rmq_metrics_publish runs on the reactor
 * thread of its core; rmq_metrics_render on the metrics server thread (it only loads the snapshots). */

#include <string.h>

#include "index/trie.h"
#include "io/reactor.h"
#include "ringmq/bridge.h"
#include "store/kafka_spool.h"
#include "store/persist.h"

/* Why snapshots rather than atomic counters on the hot path: the reactors bump plain uint64_t fields
 * (struct counters) on every packet; making each an atomic RMW would cost the message path for a scrape
 * every 15 s. Instead each core copies its figures once per tick into its own snapshot with relaxed
 * stores, and the scraper reads them with relaxed loads: no locks, no cross-core writes, no torn values,
 * and a scrape is at most one tick behind. */

static void put(struct core *c, enum rmq_metric m, uint64_t v)
{
	atomic_store_explicit(&c->snap.v[m], v, memory_order_relaxed);
}

static void spool_publish(struct core *c)
{
	struct rmq_kspool_stats ks;
	rmq_kspool_stats(c, &ks);
	put(c, RMQ_M_SP_BACKLOG_BYTES, ks.backlog_bytes);
	put(c, RMQ_M_SP_BACKLOG_RECORDS, ks.backlog_records);
	put(c, RMQ_M_SP_DISK_BYTES, ks.disk_bytes);
	put(c, RMQ_M_SP_SPOOLED, ks.c.spooled);
	put(c, RMQ_M_SP_REPLAYED, ks.c.replayed);
	put(c, RMQ_M_SP_REFUSED_FULL, ks.c.refused);
	put(c, RMQ_M_SP_DROPPED, ks.c.dropped);
	put(c, RMQ_M_SP_RECLAIMED, ks.c.reclaimed);
	put(c, RMQ_M_SP_THROTTLED, ks.c.throttled);
	put(c, RMQ_M_SP_FSYNCS, ks.fsyncs);
	put(c, RMQ_M_SP_FSYNC_P99, ks.commit_p99_us);
	put(c, RMQ_M_SP_FSYNC_MAX, ks.commit_max_us);
}

void rmq_metrics_publish(struct core *c)
{
	const struct counters *s = &c->st;
#define RMQ_X_PUT(field, ...) put(c, RMQ_M_##field, s->field);
	RMQ_COUNTERS(RMQ_X_PUT)
#undef RMQ_X_PUT
	put(c, RMQ_M_LOOP_TICKS, atomic_load_explicit(&c->snap.v[RMQ_M_LOOP_TICKS], memory_order_relaxed) + 1);
	for (int i = 0; i <= RMQ_ACKWIN_BUCKETS; i++)
		put(c, RMQ_M_ACK_HIST + i, s->ack_hist[i]);
	put(c, RMQ_M_ACK_SUM_MS, s->ack_sum_ms);
	put(c, RMQ_M_CONNS, c->nconns);
	put(c, RMQ_M_SESSIONS, c->sessions.n);
	put(c, RMQ_M_SUBS, c->subs ? rmq_trie_count(c->subs) : 0);
	if (c->persist) {
		struct rmq_wal_stats ws;
		rmq_persist_stats(c, &ws);
		put(c, RMQ_M_WAL_BYTES, ws.append_bytes);
		put(c, RMQ_M_WAL_RECORDS, ws.appends);
		put(c, RMQ_M_WAL_FSYNCS, ws.fsyncs);
		put(c, RMQ_M_WAL_COMMIT_P99, ws.commit_p99_us);
		put(c, RMQ_M_WAL_COMMIT_MAX, ws.commit_max_us);
		put(c, RMQ_M_WAL_BACKLOG, ws.unsynced_records);
		put(c, RMQ_M_WAL_DISK, ws.disk_bytes);
	}
	if (!c->bc)
		return;
	if (c->kspool)
		spool_publish(c);
	struct rmq_bridge_stats bs;
	rmq_bridge_core_stats(c->bc, &bs);
	put(c, RMQ_M_DROP_KAFKA_QOS0, bs.dropped_qos0);
	put(c, RMQ_M_K_PUBLISHED, bs.published);
	put(c, RMQ_M_K_PRODUCED, bs.produced);
	put(c, RMQ_M_K_DELIVERED, bs.delivered);
	put(c, RMQ_M_K_FAILED, bs.failed);
	put(c, RMQ_M_K_REFUSED, bs.refused);
	put(c, RMQ_M_K_ERRORS, bs.kafka_errors);
	put(c, RMQ_M_K_DOWN, rmq_bridge_core_kafka_down(c->bc));
	put(c, RMQ_M_K_REFUSED_UNKNOWN, bs.refused_unknown_topic);
	put(c, RMQ_M_K_REFUSED_DENIED, bs.refused_denied);
	put(c, RMQ_M_K_REFUSED_LARGE, bs.refused_too_large);
	struct rmq_bridge_cstats cs;
	rmq_bridge_core_cstats(c->bc, &cs);
	put(c, RMQ_M_KC_RECORDS, cs.records);
	put(c, RMQ_M_KC_OUTSTANDING, cs.records > cs.finished ? cs.records - cs.finished : 0);
	put(c, RMQ_M_KC_LAG, cs.lag);
	put(c, RMQ_M_K_CONSUME_MISSING, cs.topic_missing);
	put(c, RMQ_M_K_CONSUME_DENIED, cs.topic_denied);
	/* The bridge exposes no librdkafka queue length to the core: handed over minus finished. `failed`
	 * also counts routes that never reached librdkafka, so this can read low, never high. */
	uint64_t done = bs.delivered + bs.failed;
	put(c, RMQ_M_K_DEPTH, bs.produced > done ? bs.produced - done : 0);
}

struct family {
	const char *name;     /* rows sharing a name are rendered together, HELP/TYPE once (its first row's) */
	const char *type;
	const char *reason;   /* counters: the value of the reason label, or NULL */
	const char *label;    /* gauges: an extra label as written (quantile="0.99"), or NULL */
	const char *help;
};

/* Indexed by enum rmq_metric, from the lists in io/counters.h. */
static const struct family families[RMQ_M__COUNT] = {
#define RMQ_X_COUNTER_ROW(field, name, reason, sys, help) \
	[RMQ_M_##field] = {name, "counter", reason, NULL, help},
#define RMQ_X_GAUGE_ROW(id, name, type, label, sys, help) [RMQ_M_##id] = {name, type, NULL, label, help},
	RMQ_COUNTERS(RMQ_X_COUNTER_ROW) RMQ_GAUGES(RMQ_X_GAUGE_ROW)
#undef RMQ_X_COUNTER_ROW
#undef RMQ_X_GAUGE_ROW
};

static bool rendered_before(size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (!strcmp(families[j].name, families[i].name))
			return true;
	return false;
}

static uint64_t snap(const struct broker *b, int core, int m)
{
	return atomic_load_explicit(&b->cores[core].snap.v[m], memory_order_relaxed);
}

/* A Prometheus histogram: cumulative buckets, _sum and _count, per core. */
static void render_ack_histogram(const struct broker *b, FILE *f)
{
	fputs("# HELP ringmq_puback_latency_seconds PUBLISH received to its PUBACK/PUBREC sent (QoS 1/2; waits for Kafka "
	      "or the disk)\n# TYPE ringmq_puback_latency_seconds histogram\n", f);
	for (int k = 0; k < b->ncores; k++) {
		uint64_t cum = 0;
		for (int i = 0; i <= RMQ_ACKWIN_BUCKETS; i++) {
			cum += snap(b, k, RMQ_M_ACK_HIST + i);
			if (i < RMQ_ACKWIN_BUCKETS)
				fprintf(f, "ringmq_puback_latency_seconds_bucket{core=\"%d\",le=\"%g\"} %llu\n", k,
					rmq_ackwin_bucket_ms[i] / 1000.0, (unsigned long long)cum);
			else
				fprintf(f, "ringmq_puback_latency_seconds_bucket{core=\"%d\",le=\"+Inf\"} %llu\n", k,
					(unsigned long long)cum);
		}
		fprintf(f, "ringmq_puback_latency_seconds_sum{core=\"%d\"} %g\n", k, snap(b, k, RMQ_M_ACK_SUM_MS) / 1000.0);
		fprintf(f, "ringmq_puback_latency_seconds_count{core=\"%d\"} %llu\n", k, (unsigned long long)cum);
	}
}

void rmq_metrics_render(const struct broker *b, FILE *f)
{
	fprintf(f, "# HELP ringmq_cores Reactor threads\n# TYPE ringmq_cores gauge\nringmq_cores %d\n", b->ncores);
	/* The exposition format wants a family's samples together, wherever its rows stand in the lists. */
	for (size_t i = 0; i < RMQ_M__COUNT; i++) {
		if (rendered_before(i))
			continue;
		const struct family *head = &families[i];
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", head->name, head->help, head->name, head->type);
		for (size_t j = i; j < RMQ_M__COUNT; j++) {
			const struct family *fm = &families[j];
			if (strcmp(fm->name, head->name))
				continue;
			for (int k = 0; k < b->ncores; k++) {
				uint64_t v = atomic_load_explicit(&b->cores[k].snap.v[j], memory_order_relaxed);
				if (fm->reason)
					fprintf(f, "%s{core=\"%d\",reason=\"%s\"} %llu\n", fm->name, k, fm->reason,
						(unsigned long long)v);
				else
					fprintf(f, "%s{core=\"%d\"%s%s} %llu\n", fm->name, k, fm->label ? "," : "",
						fm->label ? fm->label : "", (unsigned long long)v);
			}
		}
	}
	render_ack_histogram(b, f);
	rmq_bridge_cluster_metrics(b->bridge, f);  /* node-wide figures of --cluster-topic, if on */
}
