/* ringmq Kafka bridge: the contract between a reactor core and its Kafka producer / consumer.
 * rmq_bridge_* (global) is called from main before and after the reactors run; rmq_bridge_core_* only
 * from the owning reactor thread. */
#ifndef RINGMQ_BRIDGE_H
#define RINGMQ_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ringmq/proto.h"

struct rmq_bridge;        /* process-wide: config, routes, embedded mock cluster */
struct rmq_bridge_core;   /* one per reactor core: its producer, delivery reports */

/* Bridge configuration, filled by rmq_bridge_option() while main parses flags and the config file. */
struct rmq_bridge_cfg;
struct rmq_bridge_cfg *rmq_bridge_cfg_new(void);
void rmq_bridge_cfg_free(struct rmq_bridge_cfg *cfg);

/* Applies one option (`name` without leading dashes, e.g. "route", "kafka-brokers", "X").
 * Returns 0, -ENOENT if `name` is not a bridge option (main then reports it unknown), or -EINVAL
 * with a one-line reason in err[0..errlen).
 * Options (rmq_bridge_usage() prints them):
 *   route 'FILTER -> TOPIC [key=TMPL|none] [value=raw|json] [headers=on|off]'  repeatable, kept in order.
 *       TOPIC and TMPL mix text with ${topic[N]} (0-based level: 'cars/VIN/telemetry' -> ${topic[1]} = VIN),
 *       ${topic}, ${client_id}, ${username}. key defaults to ${client_id} (one car, one partition); none = null
 *       key. No route at all: '# -> mqtt.messages' (said on stderr at start). '#' and '+' at the first level
 *       never match $-topics. A rendered TOPIC that is not a legal Kafka name fails that route (err -EINVAL).
 *   route-match first|all     first matching route only (default: predictable, like firewall rules) or all.
 *   kafka-brokers, kafka-linger-ms, kafka-batch-msgs, kafka-batch-bytes, kafka-compression, kafka-acks
 *       (all|1|0; 1 and 0 switch idempotence off unless -X enable.idempotence is given), kafka-producers K,
 *       kafka-partitions N (embedded cluster: partitions of each fixed route topic; templated topics get the
 *       mock's default of 4), X key=value (any librdkafka property, checked now, applied after ours).
 *   kafka-partitioning key|core-aligned  key (default): murmur2(key) over all partitions, the Java clients'
 *       placement. core-aligned: producer i of K uses only partitions i, i+K, ...: fewer, larger batches
 *       (ringmq-bridge-bench, 2 cores, 12-24 partitions: +9..18% msgs/s median on a noisy 2-CPU box); a car
 *       keeps one partition while it stays on one core and is keyed by client id, but the partition is not the
 *       one a Java client would pick, and changing --cores/--kafka-producers moves cars.
 *   ack-after kafka|broker    see rmq_bridge_publish().
 *   qos0-overflow block|drop  a QoS 0 publish refused by a full queue: -ENOBUFS (block) or dropped+counted.
 *   consume 'KAFKA_TOPIC -> MQTT_TOPIC [qos=0|1|2] [retain=on|off]'  Kafka -> MQTT, repeatable. Each record of
 *       KAFKA_TOPIC is published on MQTT_TOPIC, text mixed with ${key} (the record key), ${header.NAME} (the
 *       value of Kafka header NAME) and ${topic} (the Kafka topic), e.g. 'commands -> cars/${key}/cmd'.
 *       qos (default 1) and retain (default off) are those of the MQTT publish. Kafka headers become MQTT 5
 *       user properties (3.1.1 subscribers get the payload only). A record whose key or named header is
 *       absent or empty, or whose substituted value holds '/', '+', '#', NUL or non-UTF-8, is skipped and
 *       counted (a key must not aim at another car's topic). A record with a null value on a retain=on route
 *       clears the retained message of its MQTT topic and is not delivered (a Kafka tombstone); on other
 *       routes it is delivered with an empty payload. Several routes of one Kafka topic each publish.
 *   kafka-group NAME (default "ringmq"): the node's consumer group; one consumer per core joins it.
 *   kafka-offset-reset earliest|latest (default earliest: a new group gets the backlog of commands).
 *   consume-delay-ms N (default 3000): consuming starts N ms after start-up, so that cars reconnecting
 *       after a restart have subscribed again before their commands are read (sessions live in memory).
 *   consume-max-outstanding N (default 65536): records a core's consumer holds unfinished (a car slow to
 *       PUBACK) before it pauses its partitions (it keeps polling, so it stays in the group) until a quarter
 *       of them finished.
 * Kafka -> MQTT guarantee, at-least-once: a record's offset is committed (per partition, only up to the
 * lowest record not yet finished; enable.auto.commit=false) once every matching session had it: QoS 0 written
 * to the connection, QoS 1/2 acknowledged by the subscriber (PUBACK / PUBREC), or stored in an offline
 * persistent session's queue (bounded by --max-queued; overflow counted). Records not finished when ringmq
 * stops or dies are consumed again on restart, so a subscriber can see a command twice, never zero times.
 * Producers run with partitioner=murmur2_random, enable.idempotence=true and message.timeout.ms=0 (never
 * time out: with Kafka unreachable, messages wait in librdkafka, the queue fills and the cars are paused by
 * -ENOBUFS; nothing is dropped silently). -X message.timeout.ms=N makes them fail after N ms instead. */
int rmq_bridge_option(struct rmq_bridge_cfg *cfg, const char *name, const char *value, char *err,
		      size_t errlen);

/* Prints the bridge options for --help (one line each). */
void rmq_bridge_usage(FILE *out);

/* Starts the bridge (the embedded mock cluster when no brokers are configured, printing
 * "kafka: embedded cluster at HOST:PORT,..."), for `ncores` reactor cores. Returns 0 or -errno. */
int rmq_bridge_start(struct rmq_bridge **out, const struct rmq_bridge_cfg *cfg, int ncores);
/* Flushes every producer (up to timeout_ms) and frees everything. Call after reactors stopped. */
void rmq_bridge_stop(struct rmq_bridge *b, int timeout_ms);

/* Per-core handle; call on the reactor thread at start-up. */
struct rmq_bridge_core *rmq_bridge_core_get(struct rmq_bridge *b, int core_id);
/* An eventfd (non-blocking) that becomes readable when completions are waiting; the reactor polls it with
 * io_uring (POLL_ADD, or a READ of 8 bytes) and calls rmq_bridge_core_poll() when it fires. The poll itself
 * resets the counter, so a POLL_ADD user needs no read of its own. */
int rmq_bridge_core_fd(struct rmq_bridge_core *bc);

/* The message as the core sees it: a parsed PUBLISH plus who sent it. */
struct rmq_bridge_msg {
	const struct rmq_publish *pub;
	struct rmq_str client_id, username;
	uint8_t version;
};

/* Produces `m` to every Kafka route its topic matches. Returns the number of routes matched (0: no
 * Kafka route, nothing to wait for), -ENOBUFS when the producer queue is full (backpressure: stop
 * reading from this connection and retry later), or another -errno. When it returns > 0, exactly one
 * completion for `cookie` is reported later through rmq_bridge_core_poll(), after Kafka acknowledged
 * (or definitively failed) every matched route.
 * -ENOBUFS means nothing was produced for this message: publish it again later. If librdkafka fills up
 * after some routes of a multi-route message were taken, the rest wait in the core's deferred queue and
 * the call still returns > 0 (one completion later); while that queue is not empty every publish on this
 * core gets -ENOBUFS, so later messages never overtake earlier ones.
 * QoS 0, and every QoS with ack-after broker: returns 0 (nothing to wait for, no completion) once the
 * message is handed to librdkafka; delivery failures are then only counted. QoS 0 with qos0-overflow drop:
 * a full queue also returns 0 and counts the drop.
 * Messages are copied: m may point into the receive buffer. The Kafka timestamp is the receive time. */
int rmq_bridge_publish(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, uint64_t cookie);

/* True when p's topic matches a Kafka route or another node's subscription (--cluster-topic): what
 * rmq_bridge_publish() produces for. Lets the core tell a v5 publisher "no matching subscribers" (0x10) even
 * when the call returned 0 (ack-after broker). Reactor thread of bc. */
bool rmq_bridge_matches(struct rmq_bridge_core *bc, const struct rmq_publish *p);

/* Completion of one rmq_bridge_publish(): err 0 = in Kafka; otherwise a negative errno and the MQTT 5
 * reason code to send (0x80 unspecified, 0x97 quota exceeded). */
typedef void (*rmq_bridge_done_fn)(void *ud, uint64_t cookie, int err, uint8_t reason);

/* Serves delivery reports waiting for this core; returns how many completions were reported. `done` runs
 * on this thread and may call rmq_bridge_publish() again. */
int rmq_bridge_core_poll(struct rmq_bridge_core *bc, rmq_bridge_done_fn done, void *ud);

/* True when the producer has room again after -ENOBUFS (the core resumes reading). */
bool rmq_bridge_core_writable(struct rmq_bridge_core *bc);

/* ---- additions (bridge engineer) ------------------------------------------------------------- */

/* Counters of one core, for $SYS and metrics. Read with rmq_bridge_core_stats() on the reactor thread;
 * sum over the cores for node totals. Kafka-message counters (produced .. failed) count one per route. */
struct rmq_bridge_stats {
	uint64_t published;    /* rmq_bridge_publish() calls accepted with >= 1 route matched */
	uint64_t unrouted;     /* publishes that matched no route (nothing produced) */
	uint64_t produced;     /* Kafka messages handed to librdkafka */
	uint64_t delivered;    /* delivery reports: in Kafka (counted on the core serving the producer) */
	uint64_t failed;       /* delivery reports with an error, and routes that failed before producing
				* (rendered Kafka topic invalid, message too large) */
	uint64_t refused;      /* -ENOBUFS returned: producer queue full, the connection is paused */
	uint64_t dropped_qos0; /* QoS 0 messages dropped by qos0-overflow drop */
	uint64_t deferred;     /* routes parked after a queue-full in the middle of a multi-route publish */
	uint64_t completions;  /* completions reported by rmq_bridge_core_poll() */
	uint64_t completions_failed; /* ... of which with err != 0 */
	uint64_t kafka_errors; /* librdkafka error events (broker connection lost, all brokers down, fatal) */
	uint64_t reclaimed;    /* --spool: messages taken back from librdkafka into the spool (Kafka down) */
};
void rmq_bridge_core_stats(const struct rmq_bridge_core *bc, struct rmq_bridge_stats *out);

/* "HOST:PORT,..." of the Kafka cluster in use (the embedded one, or kafka-brokers), for a consumer
 * (Kafka -> MQTT) to share. Valid until rmq_bridge_stop(). */
const char *rmq_bridge_bootstraps(const struct rmq_bridge *b);

/* ---- Kafka spool (--spool): the core keeps rendered messages on disk and replays them later ----------- */

/* One Kafka message as a route rendered it (topic after templating, key, value): what the spool stores. headers
 * is the bridge's own encoding of the Kafka headers and the receive timestamp: store it, hand it back as is. */
struct rmq_bridge_kmsg {
	const char *topic;
	size_t topic_len;
	bool has_key;                /* false: null key (key=none) */
	const void *key;
	size_t key_len;
	const void *value;
	size_t value_len;
	const void *headers;
	size_t headers_len;
};
/* Called once per rendered route; k's pointers are valid during the call only. 0, or < 0 to stop. */
typedef int (*rmq_bridge_kmsg_fn)(void *ud, const struct rmq_bridge_kmsg *k);

/* Renders m for every Kafka route it matches (as rmq_bridge_publish would produce it) without producing: fn
 * once per route, in route order. Returns the routes rendered (0: no Kafka route), fn's negative value, or
 * -EINVAL when a route cannot be rendered (its Kafka topic is not a legal name: the publish fails as it would
 * on the direct path; counted in failed). */
int rmq_bridge_render_all(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, rmq_bridge_kmsg_fn fn,
			  void *ud);

/* Produces one rendered message (a spool replay). 0: exactly one completion later, through the replay function
 * (rmq_bridge_core_set_replay), with `cookie`. -ENOBUFS: not now (the deferred FIFO is not empty, or replays
 * would take more than half of the producer queue: direct QoS 0 traffic keeps room); -EINVAL (k is not a
 * rendered message: a corrupt or foreign spool record), or another -errno librdkafka refused it with. */
int rmq_bridge_produce_rendered(struct rmq_bridge_core *bc, const struct rmq_bridge_kmsg *k, uint64_t cookie);

/* Where completions of rmq_bridge_produce_rendered() go (from rmq_bridge_core_poll(), on this core). */
void rmq_bridge_core_set_replay(struct rmq_bridge_core *bc, rmq_bridge_done_fn fn, void *ud);

/* True once librdkafka said every broker of this core's producer is down (RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN),
 * until a delivery succeeds again. */
bool rmq_bridge_core_kafka_down(const struct rmq_bridge_core *bc);

/* Kafka went down with messages in this core's librdkafka queue (not yet sent to a broker): takes them back
 * (rd_kafka_purge) and hands each one with a completion to wait for to `spool`, in the order the cars published
 * them; fn returning 0 means "spooled: call rmq_bridge_core_spilled() once durable". Their completions then
 * come when the spool has them, so the cars' PUBACKs no longer wait for Kafka. QoS 0 messages, and every
 * message from the first one `spool` refuses on, go back into librdkafka in their order. Call only while the
 * spool is empty (a spooled message is newer than these). Returns the number spooled, -ENOTSUP (a producer
 * shared by several cores: its queue is not this core's alone) or -EBUSY (the deferred FIFO is not empty). */
int rmq_bridge_core_reclaim(struct rmq_bridge_core *bc, rmq_bridge_kmsg_fn spool, void *ud);
/* The oldest message handed to rmq_bridge_core_reclaim's `spool` is durable (err 0) or failed to be written:
 * completes its publish (reported by rmq_bridge_core_poll). */
void rmq_bridge_core_spilled(struct rmq_bridge_core *bc, int err);

/* ---- Kafka -> MQTT ------------------------------------------------------------------------------ */

/* One Kafka record rendered for MQTT, handed to the core by rmq_bridge_core_consume(). pub's views (topic,
 * payload, user properties) are valid during the callback only: the core copies what it keeps. */
struct rmq_bridge_rec {
	struct rmq_publish pub;   /* qos and retain from the route; packet_id 0 */
	bool clear_retained;      /* null value on a retain route: clear pub.topic's retained message */
	void *token;              /* give to rmq_bridge_rec_done() exactly once, when the record is finished */
	bool cluster;             /* from another node (--cluster-topic): deliver locally, never send it back out */
	bool store_only;          /* the shared retained store (set or clear): store, deliver to nobody */
};
typedef void (*rmq_bridge_rec_fn)(void *ud, const struct rmq_bridge_rec *r);

/* Reactor thread: serves this core's consumer (its records, rebalances, finished records, commits). Call it
 * when rmq_bridge_core_fd() fires and on a periodic tick (start delay, commits). Calls fn for each new record,
 * at most a bounded batch per call (it wakes the fd itself when more are waiting). Returns records handed. */
int rmq_bridge_core_consume(struct rmq_bridge_core *bc, rmq_bridge_rec_fn fn, void *ud);

/* Any thread: the record of `token` was handed to every matching session (see the guarantee above). */
void rmq_bridge_rec_done(void *token);

/* Called by a core as it begins its teardown: from then on rmq_bridge_rec_done() marks nothing finished
 * (sessions freed at exit must not commit records their cars never had). */
void rmq_bridge_core_freeze(struct rmq_bridge_core *bc);

struct rmq_bridge_cstats {
	uint64_t records;      /* records consumed */
	uint64_t handed;       /* publishes handed to the core (one per record and route) */
	uint64_t skipped;      /* records whose MQTT topic could not be rendered (counted, committed) */
	uint64_t finished;     /* records finished (every publish of it done) */
	uint64_t commits;      /* commit requests sent */
	uint64_t commit_errors;
	uint64_t rebalances;
	uint64_t paused;       /* times consumption stopped at the outstanding-record bound */
};
void rmq_bridge_core_cstats(const struct rmq_bridge_core *bc, struct rmq_bridge_cstats *out);

/* ---- cross-node delivery (--cluster-topic; bridge/cluster.c) ---------------------------------------- */

/* Options (rmq_bridge_option):
 *   cluster-topic TOPIC    on: many nodes share one Kafka; a publish that a subscriber on another node wants is
 *                          produced to TOPIC, which every node consumes in a group of its own.
 *   node-id ID             unique per node, stable across restarts (default HOST:PORT, set by main through
 *                          node-id-default); names the node's group ringmq-cluster-ID.
 *   cluster-routes-topic T compacted topic of route summaries (default TOPIC.routes).
 *   cluster-retain-topic T compacted topic of retained messages (default TOPIC.retained).
 *   cluster-resume-since MS set by main with --data-dir: when the data dir was made (ms since the epoch). The
 *                          node then resumes its group at the committed offsets (only records older than MS are
 *                          skipped, not all those older than this process) and a stopping node keeps the filters
 *                          of its persistent sessions announced (rmq_bridge_cluster_keep). */

/* Reactor thread: this core's subscriptions changed for `count` filters (data: count x (u16 big-endian length,
 * bytes), the cross-core route batch): the first/last of them on this core. No-op without a cluster. */
void rmq_bridge_cluster_filters(struct rmq_bridge_core *bc, bool add, const uint8_t *data, uint32_t count);

/* Reactor thread, at its teardown (before rmq_bridge_stop): these filters (same encoding) belong to sessions the
 * data dir restores at the next start, so the node's stop must not withdraw them: they keep receiving while the
 * node is down. No-op without a cluster or without cluster-resume-since. */
void rmq_bridge_cluster_keep(struct rmq_bridge_core *bc, const uint8_t *data, uint32_t count);

/* Reactor thread: a message that did not come from a client connection (a will, a Kafka -> MQTT record) goes to
 * the other nodes that want it, without waiting for Kafka (counted when refused). No-op without a cluster. */
void rmq_bridge_cluster_forward(struct rmq_bridge_core *bc, const struct rmq_publish *p);

/* Any thread: Prometheus text of the cluster counters (nothing without a cluster). */
void rmq_bridge_cluster_metrics(const struct rmq_bridge *b, FILE *f);

#endif
