/* Metric snapshots of each core and their Prometheus text rendering. rmq_metrics_publish runs on the reactor
 * thread of its core; rmq_metrics_render on the metrics server thread (it only loads the snapshots). */
#include "ops/metrics.h"

#include <string.h>

#include "core.h"

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
	struct kspool_stats ks;
	kspool_stats(c, &ks);
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
	put(c, RMQ_M_CONNS, c->nconns);
	put(c, RMQ_M_ACCEPTED, s->accepted);
	put(c, RMQ_M_REFUSED_MAX, s->refused_max_conn);
	put(c, RMQ_M_REFUSED_LOGIN, s->login_refused);
	put(c, RMQ_M_REFUSED_PROXY, s->proxy_refused);
	put(c, RMQ_M_CLOSED, s->closed);
	put(c, RMQ_M_KEEPALIVE, s->keepalive_timeout);
	put(c, RMQ_M_MSGS_IN, s->msgs_in);
	put(c, RMQ_M_MSGS_OUT, s->msgs_out);
	put(c, RMQ_M_BYTES_IN, s->bytes_in);
	put(c, RMQ_M_BYTES_OUT, s->bytes_out);
	put(c, RMQ_M_DROP_QUEUE, s->queue_overflow);
	put(c, RMQ_M_DROP_SLOW, s->slow_consumer);
	put(c, RMQ_M_DROP_ACL_PUB, s->acl_denied_pub);
	put(c, RMQ_M_DROP_ACL_SUB, s->acl_denied_sub);
	put(c, RMQ_M_DROP_XQ, s->xq_drop);
	put(c, RMQ_M_DROP_TOO_LARGE, s->too_large_out);
	put(c, RMQ_M_DROP_MALFORMED, s->malformed);
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
	put(c, RMQ_M_REJ_CONTROL_RATE, s->rej_control_rate);
	put(c, RMQ_M_REJ_TOPIC_LEVELS, s->rej_topic_levels);
	put(c, RMQ_M_REJ_SUBSCRIPTIONS, s->rej_subscriptions);
	put(c, RMQ_M_REJ_USER_PROPS, s->rej_user_props);
	put(c, RMQ_M_REJ_SLOW_PACKET, s->rej_slow_packet);
	put(c, RMQ_M_REJ_HANDSHAKE, s->rej_handshake);
	put(c, RMQ_M_REJ_WRONG_ACK, s->rej_wrong_ack);
	put(c, RMQ_M_TOO_LARGE_TRIMMED, s->too_large_trimmed);
	put(c, RMQ_M_TOO_LARGE_CTL, s->too_large_ctl);
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
	/* The bridge exposes no librdkafka queue length to the core: handed over minus finished. `failed`
	 * also counts routes that never reached librdkafka, so this can read low, never high. */
	uint64_t done = bs.delivered + bs.failed;
	put(c, RMQ_M_K_DEPTH, bs.produced > done ? bs.produced - done : 0);
}

struct family {
	enum rmq_metric m;
	const char *name;     /* families sharing a name are adjacent: HELP/TYPE printed once */
	const char *type;
	const char *label;    /* extra label (reason="..."), or NULL */
	const char *help;
};

static const struct family families[] = {
	{RMQ_M_CONNS, "ringmq_connections", "gauge", NULL, "Open client connections"},
	{RMQ_M_ACCEPTED, "ringmq_connections_accepted_total", "counter", NULL, "TCP connections accepted"},
	{RMQ_M_REFUSED_MAX, "ringmq_connections_refused_total", "counter", "reason=\"max_connections\"",
	 "Connections refused, by reason"},
	{RMQ_M_REFUSED_LOGIN, "ringmq_connections_refused_total", "counter", "reason=\"login\"", NULL},
	{RMQ_M_REFUSED_PROXY, "ringmq_connections_refused_total", "counter", "reason=\"proxy_header\"", NULL},
	{RMQ_M_CLOSED, "ringmq_connections_closed_total", "counter", NULL, "Client connections closed"},
	{RMQ_M_KEEPALIVE, "ringmq_keepalive_timeouts_total", "counter", NULL,
	 "Connections closed for a keep-alive or CONNECT timeout"},
	{RMQ_M_MSGS_IN, "ringmq_messages_in_total", "counter", NULL, "PUBLISH packets received from clients"},
	{RMQ_M_MSGS_OUT, "ringmq_messages_out_total", "counter", NULL, "PUBLISH packets sent to clients"},
	{RMQ_M_BYTES_IN, "ringmq_bytes_in_total", "counter", NULL, "Bytes received from clients"},
	{RMQ_M_BYTES_OUT, "ringmq_bytes_out_total", "counter", NULL, "Bytes sent to clients"},
	{RMQ_M_DROP_QUEUE, "ringmq_drops_total", "counter", "reason=\"queue_overflow\"",
	 "Messages dropped or clients cut off, by reason"},
	{RMQ_M_DROP_SLOW, "ringmq_drops_total", "counter", "reason=\"slow_consumer\"", NULL},
	{RMQ_M_DROP_ACL_PUB, "ringmq_drops_total", "counter", "reason=\"acl_publish\"", NULL},
	{RMQ_M_DROP_ACL_SUB, "ringmq_drops_total", "counter", "reason=\"acl_subscribe\"", NULL},
	{RMQ_M_DROP_XQ, "ringmq_drops_total", "counter", "reason=\"cross_core_queue\"", NULL},
	{RMQ_M_DROP_TOO_LARGE, "ringmq_drops_total", "counter", "reason=\"too_large\"", NULL},
	{RMQ_M_DROP_MALFORMED, "ringmq_drops_total", "counter", "reason=\"malformed\"", NULL},
	{RMQ_M_DROP_KAFKA_QOS0, "ringmq_drops_total", "counter", "reason=\"kafka_qos0_overflow\"", NULL},
	{RMQ_M_K_PUBLISHED, "ringmq_kafka_published_total", "counter", NULL,
	 "MQTT messages that matched at least one Kafka route"},
	{RMQ_M_K_PRODUCED, "ringmq_kafka_produced_total", "counter", NULL, "Kafka records handed to the producer"},
	{RMQ_M_K_DELIVERED, "ringmq_kafka_delivered_total", "counter", NULL, "Kafka records acknowledged by Kafka"},
	{RMQ_M_K_FAILED, "ringmq_kafka_failed_total", "counter", NULL, "Kafka records that failed"},
	{RMQ_M_K_REFUSED, "ringmq_kafka_queue_full_total", "counter", NULL,
	 "Publishes refused because the producer queue was full"},
	{RMQ_M_K_ERRORS, "ringmq_kafka_errors_total", "counter", NULL, "librdkafka error events"},
	{RMQ_M_K_DEPTH, "ringmq_kafka_queue_depth", "gauge", NULL,
	 "Kafka records handed to the producer and not yet delivered or failed"},
	{RMQ_M_SP_BACKLOG_BYTES, "ringmq_kafka_spool_backlog_bytes", "gauge", NULL,
	 "Spooled bytes not yet in Kafka (--spool; bounded by --spool-max-bytes)"},
	{RMQ_M_SP_BACKLOG_RECORDS, "ringmq_kafka_spool_backlog_records", "gauge", NULL,
	 "Spooled Kafka messages not yet in Kafka: the replay backlog"},
	{RMQ_M_SP_DISK_BYTES, "ringmq_kafka_spool_disk_bytes", "gauge", NULL, "Bytes in the spool's segment files"},
	{RMQ_M_SP_SPOOLED, "ringmq_kafka_spool_spooled_total", "counter", NULL, "Publishes written to the spool"},
	{RMQ_M_SP_REPLAYED, "ringmq_kafka_spool_replayed_total", "counter", NULL,
	 "Spooled messages replayed into Kafka and acknowledged"},
	{RMQ_M_SP_REFUSED_FULL, "ringmq_kafka_spool_refused_total", "counter", NULL,
	 "Publishes refused because the spool was full (the car was paused)"},
	{RMQ_M_SP_DROPPED, "ringmq_kafka_spool_dropped_total", "counter", NULL,
	 "Spooled messages Kafka refused for good (too large, not authorized)"},
	{RMQ_M_SP_RECLAIMED, "ringmq_kafka_spool_reclaimed_total", "counter", NULL,
	 "Messages taken back from the producer queue into the spool when Kafka went down"},
	{RMQ_M_SP_THROTTLED, "ringmq_kafka_spool_throttled_total", "counter", NULL,
	 "Publishes held back while the spool drains into Kafka (new records at half the replay rate)"},
	{RMQ_M_SP_FSYNCS, "ringmq_kafka_spool_fsyncs_total", "counter", NULL, "fdatasync calls of the spool"},
	{RMQ_M_SP_FSYNC_P99, "ringmq_kafka_spool_commit_microseconds", "gauge", "quantile=\"0.99\"",
	 "Spool write + fdatasync latency (p99: upper edge of its power-of-two microsecond bucket)"},
	{RMQ_M_SP_FSYNC_MAX, "ringmq_kafka_spool_commit_microseconds", "gauge", "quantile=\"1\"", NULL},
	{RMQ_M_WAL_BYTES, "ringmq_state_log_bytes_total", "counter", NULL,
	 "Record bytes appended to the state log (--data-dir)"},
	{RMQ_M_WAL_RECORDS, "ringmq_state_log_records_total", "counter", NULL, "Records appended to the state log"},
	{RMQ_M_WAL_FSYNCS, "ringmq_state_log_fsyncs_total", "counter", NULL, "fdatasync calls of the state log"},
	{RMQ_M_WAL_COMMIT_P99, "ringmq_state_log_commit_microseconds", "gauge", "quantile=\"0.99\"",
	 "State log write+fdatasync latency since start (p99: upper edge of its power-of-two bucket)"},
	{RMQ_M_WAL_COMMIT_MAX, "ringmq_state_log_commit_microseconds", "gauge", "quantile=\"1\"", NULL},
	{RMQ_M_WAL_BACKLOG, "ringmq_state_log_backlog_records", "gauge", NULL,
	 "State log records appended and not yet durable"},
	{RMQ_M_WAL_DISK, "ringmq_state_log_disk_bytes", "gauge", NULL, "Bytes in the state log's segment files"},
	{RMQ_M_REJ_CONTROL_RATE, "ringmq_rejected_total", "counter", "reason=\"control_rate\"",
	 "Packets, subscriptions or connections refused by a hardening limit, by reason"},
	{RMQ_M_REJ_TOPIC_LEVELS, "ringmq_rejected_total", "counter", "reason=\"topic_levels\"", NULL},
	{RMQ_M_REJ_SUBSCRIPTIONS, "ringmq_rejected_total", "counter", "reason=\"max_subscriptions\"", NULL},
	{RMQ_M_REJ_USER_PROPS, "ringmq_rejected_total", "counter", "reason=\"user_properties\"", NULL},
	{RMQ_M_REJ_SLOW_PACKET, "ringmq_rejected_total", "counter", "reason=\"packet_timeout\"", NULL},
	{RMQ_M_REJ_HANDSHAKE, "ringmq_rejected_total", "counter", "reason=\"handshake\"", NULL},
	{RMQ_M_REJ_WRONG_ACK, "ringmq_rejected_total", "counter", "reason=\"wrong_ack\"", NULL},
	{RMQ_M_TOO_LARGE_TRIMMED, "ringmq_packets_too_large_total", "counter", "action=\"trimmed\"",
	 "Packets over the client's Maximum Packet Size: sent without reason string and user properties, or "
	 "not sent (PUBLISH is counted in ringmq_drops_total{reason=\"too_large\"})"},
	{RMQ_M_TOO_LARGE_CTL, "ringmq_packets_too_large_total", "counter", "action=\"dropped\"", NULL},
};

void rmq_metrics_render(const struct broker *b, FILE *f)
{
	fprintf(f, "# HELP ringmq_cores Reactor threads\n# TYPE ringmq_cores gauge\nringmq_cores %d\n", b->ncores);
	const char *prev = "";
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		const struct family *fm = &families[i];
		if (strcmp(prev, fm->name)) {
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fm->name, fm->help, fm->name, fm->type);
			prev = fm->name;
		}
		for (int k = 0; k < b->ncores; k++) {
			uint64_t v = atomic_load_explicit(&b->cores[k].snap.v[fm->m], memory_order_relaxed);
			fprintf(f, "%s{core=\"%d\"%s%s} %llu\n", fm->name, k, fm->label ? "," : "",
				fm->label ? fm->label : "", (unsigned long long)v);
		}
	}
	rmq_bridge_cluster_metrics(b->bridge, f);  /* node-wide figures of --cluster-topic, if on */
}
