/* Every per-core figure ringmq exports, listed once: the event counters every room bumps (struct counters, in struct
 * core), the figures read from elsewhere at each tick, and their snapshot. /metrics, $SYS and the structs are
 * generated from these lists (ops renders them). Counters: the owning core's thread; the snapshot: any thread. */
#ifndef RMQ_CORE_IO_COUNTERS_H
#define RMQ_CORE_IO_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "index/ackwin.h"

/* Event counters, bumped by the owning reactor as plain uint64_t fields (c->st.FIELD++):
 *   X(FIELD, PROMETHEUS_NAME, REASON_LABEL or NULL, SYS_TOPIC or NULL, HELP)
 * Rows sharing a Prometheus name form one family split by reason; HELP is taken from its first row. */
#define RMQ_COUNTERS(X)                                                                                        \
	X(accepted, "ringmq_connections_accepted_total", NULL, NULL, "TCP connections accepted")                  \
	X(refused_max_conn, "ringmq_connections_refused_total", "max_connections", NULL,                          \
	  "Connections refused, by reason")                                                                        \
	X(login_refused, "ringmq_connections_refused_total", "login", NULL, NULL)                                 \
	X(proxy_refused, "ringmq_connections_refused_total", "proxy_header", NULL, NULL)                          \
	X(closed, "ringmq_connections_closed_total", NULL, NULL, "Client connections closed")                     \
	X(keepalive_timeout, "ringmq_keepalive_timeouts_total", NULL, NULL,                                       \
	  "Connections closed for a keep-alive or CONNECT timeout")                                                \
	X(takeovers, "ringmq_session_takeovers_total", NULL, NULL,                                                \
	  "Connections taken over by a new CONNECT with the same client id")                                      \
	X(handoffs_out, "ringmq_handoffs_sent_total", NULL, NULL,                                                  \
	  "CONNECTs handed to the core that owns the client id")                                                   \
	X(handoffs_in, "ringmq_handoffs_received_total", NULL, NULL, "CONNECTs received from another core")       \
	X(msgs_in, "ringmq_messages_in_total", NULL, "messages/received", "PUBLISH packets received from clients") \
	X(msgs_out, "ringmq_messages_out_total", NULL, "messages/sent", "PUBLISH packets sent to clients")         \
	X(bytes_in, "ringmq_bytes_in_total", NULL, "bytes/received", "Bytes received from clients")               \
	X(bytes_out, "ringmq_bytes_out_total", NULL, "bytes/sent", "Bytes sent to clients")                       \
	X(queue_overflow, "ringmq_drops_total", "queue_overflow", "messages/dropped/queue_full",                   \
	  "Messages dropped or clients cut off, by reason")                                                        \
	X(slow_consumer, "ringmq_drops_total", "slow_consumer", "clients/disconnected/slow_consumer", NULL)       \
	X(acl_denied_pub, "ringmq_drops_total", "acl_publish", "messages/dropped/not_authorized", NULL)           \
	X(acl_denied_sub, "ringmq_drops_total", "acl_subscribe", NULL, NULL)                                      \
	X(xq_drop, "ringmq_drops_total", "cross_core_queue", "messages/dropped/cross_core_full", NULL)            \
	X(too_large_out, "ringmq_drops_total", "too_large", "messages/dropped/too_large", NULL)                   \
	X(malformed, "ringmq_drops_total", "malformed", NULL, NULL)                                               \
	X(expired, "ringmq_drops_total", "expired", "messages/dropped/expired", NULL)                             \
	X(payload_format_invalid, "ringmq_drops_total", "payload_format", "messages/dropped/payload_format", NULL) \
	X(shared_lost, "ringmq_drops_total", "shared_no_member", NULL, NULL)                                      \
	X(shared_handed_over, "ringmq_shared_handed_over_total", NULL, NULL,                                      \
	  "Messages of a departed $share member handed to another member of its group")                           \
	X(sessions_expired, "ringmq_sessions_expired_total", NULL, "clients/expired",                             \
	  "Offline sessions removed at their Session Expiry Interval")                                             \
	X(wills_delayed, "ringmq_wills_delayed_total", NULL, NULL, "Wills held for their v5 Will Delay Interval")   \
	X(enobufs, "ringmq_io_events_total", "recv_no_buffers", NULL,                                             \
	  "Reactor events worth watching: receive buffer ring empty, completion queue overflow, cross-core queue " \
	  "full (retried), Kafka producer queue full, failed Kafka hand-overs")                                    \
	X(cq_overflow, "ringmq_io_events_total", "cq_overflow", NULL, NULL)                                       \
	X(xq_full, "ringmq_io_events_total", "cross_core_queue_full", NULL, NULL)                                 \
	X(bridge_enobufs, "ringmq_io_events_total", "kafka_queue_full", NULL, NULL)                               \
	X(bridge_fail, "ringmq_io_events_total", "kafka_handover_failed", NULL, NULL)                             \
	X(rej_control_rate, "ringmq_rejected_total", "control_rate", "rejected/control_rate",                     \
	  "Packets, subscriptions or connections refused by a hardening limit, by reason")                         \
	X(rej_topic_levels, "ringmq_rejected_total", "topic_levels", "rejected/topic_levels", NULL)               \
	X(rej_subscriptions, "ringmq_rejected_total", "max_subscriptions", "rejected/max_subscriptions", NULL)    \
	X(rej_user_props, "ringmq_rejected_total", "user_properties", "rejected/user_properties", NULL)           \
	X(rej_slow_packet, "ringmq_rejected_total", "packet_timeout", "rejected/packet_timeout", NULL)            \
	X(rej_handshake, "ringmq_rejected_total", "handshake", "rejected/handshake", NULL)                       \
	X(rej_wrong_ack, "ringmq_rejected_total", "wrong_ack", "rejected/wrong_ack", NULL)                       \
	X(too_large_trimmed, "ringmq_packets_too_large_total", "trimmed", "packets/too_large/trimmed",          \
	  "Packets over the client's Maximum Packet Size: sent without reason string and user properties "        \
	  "(trimmed), or not sent (dropped; a PUBLISH is counted in ringmq_drops_total{reason=\"too_large\"})")  \
	X(too_large_ctl, "ringmq_packets_too_large_total", "dropped", "packets/too_large/dropped", NULL)

/* Figures read at each tick from the core's state, its bridge, spool and state log (ops/metrics.c fills them):
 *   X(ID, PROMETHEUS_NAME, TYPE, LABEL or NULL, SYS_TOPIC or NULL, HELP) */
#define RMQ_GAUGES(X)                                                                                          \
	X(CONNS, "ringmq_connections", "gauge", NULL, "clients/connected", "Open client connections")             \
	X(SESSIONS, "ringmq_sessions", "gauge", NULL, "clients/total", "Sessions held (connected and offline)")    \
	X(SUBS, "ringmq_subscriptions", "gauge", NULL, "subscriptions/count", "Topic filters subscribed on this core") \
	X(DROP_KAFKA_QOS0, "ringmq_drops_total", "counter", "reason=\"kafka_qos0_overflow\"", NULL, NULL)           \
	X(K_PUBLISHED, "ringmq_kafka_published_total", "counter", NULL, NULL,                                     \
	  "MQTT messages that matched at least one Kafka route")                                                   \
	X(K_PRODUCED, "ringmq_kafka_produced_total", "counter", NULL, NULL, "Kafka records handed to the producer") \
	X(K_DELIVERED, "ringmq_kafka_delivered_total", "counter", NULL, NULL, "Kafka records acknowledged by Kafka") \
	X(K_FAILED, "ringmq_kafka_failed_total", "counter", NULL, NULL, "Kafka records that failed")              \
	X(K_REFUSED, "ringmq_kafka_queue_full_total", "counter", NULL, NULL,                                      \
	  "Publishes refused because the producer queue was full")                                                 \
	X(K_ERRORS, "ringmq_kafka_errors_total", "counter", NULL, NULL, "librdkafka error events")                \
	X(K_REFUSED_UNKNOWN, "ringmq_kafka_refused_total", "counter", "reason=\"unknown_topic\"", NULL,           \
	  "Kafka records Kafka refused for good, by reason (also in ringmq_kafka_failed_total)")                   \
	X(K_REFUSED_DENIED, "ringmq_kafka_refused_total", "counter", "reason=\"not_authorized\"", NULL, NULL)      \
	X(K_REFUSED_LARGE, "ringmq_kafka_refused_total", "counter", "reason=\"too_large\"", NULL, NULL)            \
	X(K_CONSUME_MISSING, "ringmq_kafka_consume_errors_total", "counter", "reason=\"unknown_topic\"", NULL,     \
	  "Kafka -> MQTT consumer errors, by reason: a consumed topic deleted or not authorized")                  \
	X(K_CONSUME_DENIED, "ringmq_kafka_consume_errors_total", "counter", "reason=\"not_authorized\"", NULL, NULL) \
	X(K_DEPTH, "ringmq_kafka_queue_depth", "gauge", NULL, NULL,                                               \
	  "Kafka records handed to the producer and not yet delivered or failed")                                  \
	X(SP_BACKLOG_BYTES, "ringmq_kafka_spool_backlog_bytes", "gauge", NULL, "kafka/spool/bytes",               \
	  "Spooled bytes not yet in Kafka (--spool; bounded by --spool-max-bytes)")                                \
	X(SP_BACKLOG_RECORDS, "ringmq_kafka_spool_backlog_records", "gauge", NULL, "kafka/spool/records",         \
	  "Spooled Kafka messages not yet in Kafka: the replay backlog")                                           \
	X(SP_DISK_BYTES, "ringmq_kafka_spool_disk_bytes", "gauge", NULL, NULL, "Bytes in the spool's segment files") \
	X(SP_SPOOLED, "ringmq_kafka_spool_spooled_total", "counter", NULL, NULL, "Publishes written to the spool") \
	X(SP_REPLAYED, "ringmq_kafka_spool_replayed_total", "counter", NULL, "kafka/spool/replayed",              \
	  "Spooled messages replayed into Kafka and acknowledged")                                                 \
	X(SP_REFUSED_FULL, "ringmq_kafka_spool_refused_total", "counter", NULL, "kafka/spool/refused",            \
	  "Publishes refused because the spool was full (the car was paused)")                                     \
	X(SP_DROPPED, "ringmq_kafka_spool_dropped_total", "counter", NULL, NULL,                                  \
	  "Spooled messages Kafka refused for good (too large, not authorized)")                                   \
	X(SP_RECLAIMED, "ringmq_kafka_spool_reclaimed_total", "counter", NULL, NULL,                              \
	  "Messages taken back from the producer queue into the spool when Kafka went down")                       \
	X(SP_THROTTLED, "ringmq_kafka_spool_throttled_total", "counter", NULL, NULL,                              \
	  "Publishes held back while the spool drains into Kafka (new records at half the replay rate)")           \
	X(SP_FSYNCS, "ringmq_kafka_spool_fsyncs_total", "counter", NULL, NULL, "fdatasync calls of the spool")    \
	X(SP_FSYNC_P99, "ringmq_kafka_spool_commit_microseconds", "gauge", "quantile=\"0.99\"", NULL,             \
	  "Spool write + fdatasync latency (p99: upper edge of its power-of-two microsecond bucket)")               \
	X(SP_FSYNC_MAX, "ringmq_kafka_spool_commit_microseconds", "gauge", "quantile=\"1\"", NULL, NULL)          \
	X(WAL_BYTES, "ringmq_state_log_bytes_total", "counter", NULL, "store/bytes",                              \
	  "Record bytes appended to the state log (--data-dir)")                                                   \
	X(WAL_RECORDS, "ringmq_state_log_records_total", "counter", NULL, "store/records",                        \
	  "Records appended to the state log")                                                                     \
	X(WAL_FSYNCS, "ringmq_state_log_fsyncs_total", "counter", NULL, NULL, "fdatasync calls of the state log") \
	X(WAL_COMMIT_P99, "ringmq_state_log_commit_microseconds", "gauge", "quantile=\"0.99\"", NULL,             \
	  "State log write+fdatasync latency since start (p99: upper edge of its power-of-two bucket)")            \
	X(WAL_COMMIT_MAX, "ringmq_state_log_commit_microseconds", "gauge", "quantile=\"1\"", NULL, NULL)          \
	X(WAL_BACKLOG, "ringmq_state_log_backlog_records", "gauge", NULL, "store/backlog",                        \
	  "State log records appended and not yet durable")                                                        \
	X(WAL_DISK, "ringmq_state_log_disk_bytes", "gauge", NULL, NULL, "Bytes in the state log's segment files") \
	X(LOOP_TICKS, "ringmq_core_loop_ticks_total", "counter", NULL, NULL,                                      \
	  "Timer ticks (10 per second) the core's event loop ran: flat means the core is stalled")                \
	X(K_DOWN, "ringmq_kafka_down", "gauge", NULL, NULL,                                                       \
	  "1 while librdkafka reports every broker of the core's producer down")                                  \
	X(KC_RECORDS, "ringmq_kafka_consumed_total", "counter", NULL, NULL, "Kafka records consumed (--consume)")  \
	X(KC_OUTSTANDING, "ringmq_kafka_consume_outstanding", "gauge", NULL, NULL,                                \
	  "Kafka records consumed and not yet finished (waiting for subscribers' PUBACKs; offsets uncommitted)")  \
	X(KC_LAG, "ringmq_kafka_consumer_lag_records", "gauge", NULL, NULL,                                      \
	  "Records in Kafka past this core's consumer position on its partitions (--consume; each second)")

/* The reactor's event counters: plain fields, written only by the owning core. */
struct counters {
#define RMQ_X_FIELD(field, ...) uint64_t field;
	RMQ_COUNTERS(RMQ_X_FIELD)
#undef RMQ_X_FIELD
	uint64_t ack_hist[RMQ_ACKWIN_BUCKETS + 1], ack_sum_ms;  /* PUBACK/PUBREC latency (index/ackwin.c) */
};

/* One snapshot slot per exported figure: the counters first, then the gauges. */
enum rmq_metric {
#define RMQ_X_COUNTER_ID(field, ...) RMQ_M_##field,
#define RMQ_X_GAUGE_ID(id, ...) RMQ_M_##id,
	RMQ_COUNTERS(RMQ_X_COUNTER_ID) RMQ_GAUGES(RMQ_X_GAUGE_ID)
#undef RMQ_X_COUNTER_ID
#undef RMQ_X_GAUGE_ID
	RMQ_M__COUNT
};

/* Snapshot slots past the listed figures: the PUBACK/PUBREC latency histogram (buckets, not cumulative, then the
 * sum in ms), rendered as one Prometheus histogram by ops/metrics.c. */
#define RMQ_M_ACK_HIST RMQ_M__COUNT
#define RMQ_M_ACK_SUM_MS (RMQ_M_ACK_HIST + RMQ_ACKWIN_BUCKETS + 1)
#define RMQ_M_SLOTS (RMQ_M_ACK_SUM_MS + 1)

/* A core's counters as of its last tick. Written only by that core (relaxed stores), read by the metrics
 * thread (relaxed loads): each value is a whole 64-bit word, the set is at most one tick (100 ms) old. */
struct rmq_metrics_snap {
	_Atomic uint64_t v[RMQ_M_SLOTS];
};

#endif
