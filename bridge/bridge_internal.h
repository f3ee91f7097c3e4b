/* Kafka bridge internals shared by the bridge sources and the bridge unit tests: configuration, route templates,
 * rendering helpers. Pure data and pure functions except where noted; the same threading rules as bridge.h. */
#ifndef RINGMQ_BRIDGE_INTERNAL_H
#define RINGMQ_BRIDGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "ringmq/bridge.h"

/* Bounds: a fleet operator configures a handful of routes; these keep every per-message loop tiny. */
#define RMQ_BRIDGE_MAX_ROUTES 32
#define RMQ_BRIDGE_MAX_TMPL_PARTS 16
#define RMQ_BRIDGE_MAX_LEVEL 31          /* highest N accepted in ${topic[N]} */
#define RMQ_BRIDGE_KAFKA_TOPIC_MAX 249   /* Kafka's own limit on a topic name */
#define RMQ_BRIDGE_DEFAULT_TOPIC "mqtt.messages"
#define RMQ_BRIDGE_DEFAULT_PARTITIONS 4  /* the mock cluster's own default for auto-created topics */
#define RMQ_BRIDGE_EMBEDDED_BROKERS 3
/* What librdkafka's mock (the embedded cluster) keeps of each partition, measured with librdkafka 2.0.2: about the
 * last 5 MB of record batches; older segments are dropped (249k of 300k 10-byte records kept, 4.2k of 20k 1 KB). */
#define RMQ_BRIDGE_EMBEDDED_KEEP_MB 5

enum tmpl_kind { TP_LIT, TP_LEVEL, TP_TOPIC, TP_CLIENT_ID, TP_USERNAME };

struct rmq_bridge_tpart {
	uint8_t kind;      /* enum tmpl_kind */
	uint8_t level;     /* TP_LEVEL: 0-based topic level */
	uint16_t len;      /* TP_LIT: bytes at lit */
	const char *lit;   /* TP_LIT: points into rmq_bridge_tmpl.src */
};

/* A parsed template: literal text mixed with ${topic[N]}, ${topic}, ${client_id}, ${username}. */
struct rmq_bridge_tmpl {
	char *src;         /* owned copy of the template text */
	int nparts;
	struct rmq_bridge_tpart parts[RMQ_BRIDGE_MAX_TMPL_PARTS];
};

struct rmq_bridge_route {
	char *spec;                    /* the option text, so rmq_bridge_start() can keep its own copy */
	char *filter;                  /* MQTT topic filter */
	struct rmq_bridge_tmpl topic;  /* Kafka topic */
	bool topic_fixed;              /* no ${...} in the topic: a cached rd_kafka_topic_t is used */
	bool key_none;                 /* key=none: null key, murmur2_random spreads over partitions */
	struct rmq_bridge_tmpl key;    /* default ${client_id} */
	bool json;                     /* value=json: the envelope; else the raw payload */
	bool headers;                  /* headers=on (default): MQTT metadata as Kafka headers */
};

struct rmq_bridge_kv {
	char *key, *value;
};

struct rmq_bridge_cfg {
	struct rmq_bridge_route routes[RMQ_BRIDGE_MAX_ROUTES];
	int nroutes;
	bool match_all;        /* route-match all; default first */
	bool ack_broker;       /* ack-after broker; default kafka */
	bool qos0_drop;        /* qos0-overflow drop; default block */
	bool core_aligned;     /* kafka-partitioning core-aligned; default key (Java placement) */
	bool acks_not_all;     /* kafka-acks 0 or 1: idempotence is switched off at start */
	bool idempotence_set;  /* -X enable.idempotence given: the operator decides */
	bool off;              /* kafka off: a plain MQTT broker, no producer, no embedded cluster */
	int producers;         /* 0: one per core */
	int partitions;        /* embedded cluster: partitions of each fixed route topic */
	char *brokers;         /* NULL: embedded mock cluster */
	struct rmq_bridge_consume *consumes;  /* Kafka -> MQTT routes, in the order given */
	int nconsumes;
	char *group;           /* kafka-group; NULL: RMQ_BRIDGE_DEFAULT_GROUP */
	bool offset_latest;    /* kafka-offset-reset latest; default earliest */
	int consume_delay_ms;  /* consume-delay-ms: grace for cars to reconnect before consuming */
	int consume_max;       /* consume-max-outstanding: unfinished records per consumer before it pauses */
	struct rmq_bridge_kv *kv;  /* librdkafka properties in the order given; applied after our defaults */
	int nkv, capkv;
	/* cross-node delivery (cluster.c); cluster_topic NULL: off */
	char *cluster_topic, *cluster_routes, *cluster_retain;  /* the last two default to TOPIC.routes/.retained */
	char *node_id;         /* node-id; NULL: node_default (main: HOST:PORT) */
	char *node_default;
	/* cluster-resume-since (main, with --data-dir): ms since the epoch when the node's data dir was made; 0: off.
	 * Set: restored sessions want what was published while the node was down (cluster.c). */
	long long cluster_since_ms;
	bool wait_topics;      /* kafka-wait-topics on: a missing fixed route topic is waited for, not refused */
};

/* Formats a one-line reason into err[0..errlen) and returns -EINVAL. */
int rmq_bridge_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Whole-string decimal in [lo, hi] (no sign games, no spaces, no trailing text). */
bool rmq_bridge_parse_long(const char *s, long lo, long hi, long *out);

/* Growable byte buffer reused across messages (one per core), so rendering allocates only on growth. */
struct rmq_bbuf {
	char *p;
	size_t len, cap;
};
int rmq_bridge_buf_put(struct rmq_bbuf *b, const void *p, size_t n);
void rmq_bridge_buf_free(struct rmq_bbuf *b);

/* Parses a template; `for_topic` also requires literal text to be legal in a Kafka topic name.
 * Returns 0 or -EINVAL with a reason in err. */
int rmq_bridge_tmpl_parse(struct rmq_bridge_tmpl *t, const char *src, bool for_topic, char *err, size_t errlen);
void rmq_bridge_tmpl_free(struct rmq_bridge_tmpl *t);

/* Parses one `route` option value into r. Returns 0 or -EINVAL with a reason. */
int rmq_bridge_route_parse(struct rmq_bridge_route *r, const char *value, char *err, size_t errlen);
void rmq_bridge_route_free(struct rmq_bridge_route *r);

/* MQTT topic filter match ('+', '#', and '#'/'+' never match a leading '$' level [MQTT-4.7.2-1]). */
bool rmq_bridge_filter_match(const char *filter, const uint8_t *topic, size_t len);

/* Appends the rendered template (levels beyond the topic's render as empty). Returns 0 or -ENOMEM. */
int rmq_bridge_render(const struct rmq_bridge_tmpl *t, const struct rmq_bridge_msg *m, struct rmq_bbuf *out);

/* Kafka topic name rule: 1..249 bytes of [A-Za-z0-9._-], and not "." or "..". */
bool rmq_bridge_kafka_topic_valid(const char *s, size_t n);

/* Appends `s` as a JSON string (quotes included); ill-formed UTF-8 bytes become U+FFFD. */
int rmq_bridge_json_str(struct rmq_bbuf *b, const uint8_t *s, size_t n);
/* Appends the JSON envelope of m (see bridge.h); ts_ms is the broker's receive time. */
int rmq_bridge_render_json(const struct rmq_bridge_msg *m, int64_t ts_ms, struct rmq_bbuf *out);
/* Well-formed UTF-8 (U+0000 allowed: JSON escapes it). */
bool rmq_bridge_utf8_valid(const uint8_t *s, size_t n);
/* Appends standard base64 (RFC 4648, padded). */
int rmq_bridge_base64(struct rmq_bbuf *b, const uint8_t *s, size_t n);

/* ---- a rendered message's headers and timestamp in the spool (spool_codec.c) ---- */
/* Starts b (emptied) with the fixed part: the timestamp, and whether the route sends headers. 0 or -ENOMEM. */
int rmq_bridge_hblob_begin(struct rmq_bbuf *b, int64_t ts, bool headers);
/* Appends one header; v NULL = null value. 0, -EINVAL (name over 65535 bytes) or -ENOMEM. */
int rmq_bridge_hblob_add(struct rmq_bbuf *b, const void *name, size_t namelen, const void *v, size_t vlen);
/* Reads the fixed part; *pos is then where the headers begin. 0 or -EINVAL (short, unknown version/flags). */
int rmq_bridge_hblob_open(const uint8_t *p, size_t len, int64_t *ts, bool *headers, size_t *pos);
struct rmq_bridge_hdr {
	const char *name;
	size_t namelen;
	const void *value;   /* NULL: null value */
	size_t vlen;
};
/* The header at *pos: 1 (filled, *pos advanced), 0 (end), -EINVAL (truncated). */
int rmq_bridge_hblob_next(const uint8_t *p, size_t len, size_t *pos, struct rmq_bridge_hdr *out);

/* librdkafka's in-process mock cluster, hosted by a handle of its own (used by rmq_bridge_start with no
 * kafka-brokers, and by tools/ringmq-kafka-mock). */
struct rmq_bridge_mock {
	struct rd_kafka_s *host;
	struct rd_kafka_mock_cluster_s *mc;
	const char *bootstraps;  /* "HOST:PORT,HOST:PORT,..." owned by mc */
	int brokers;
};
int rmq_bridge_mock_start(struct rmq_bridge_mock *m, int brokers, char *err, size_t errlen);
/* Creates `topic` with `partitions` partitions (replication: min(3, brokers)). 0 or -EINVAL. */
int rmq_bridge_mock_topic(struct rmq_bridge_mock *m, const char *topic, int partitions);
void rmq_bridge_mock_stop(struct rmq_bridge_mock *m);

/* ---- Kafka -> MQTT (consume.c, consumer.c) ---- */
#define RMQ_BRIDGE_MAX_CONSUMES 32
#define RMQ_BRIDGE_DEFAULT_GROUP "ringmq"
#define RMQ_BRIDGE_DEFAULT_CONSUME_DELAY_MS 3000
#define RMQ_BRIDGE_DEFAULT_CONSUME_MAX 65536
#define RMQ_BRIDGE_MQTT_TOPIC_MAX 65535

enum ctmpl_kind { TC_LIT, TC_KEY, TC_HEADER, TC_KTOPIC };

struct rmq_bridge_cpart {
	uint8_t kind;      /* enum ctmpl_kind */
	uint16_t len;      /* TC_LIT: literal bytes; TC_HEADER: header name bytes */
	const char *s;     /* points into rmq_bridge_consume.mqtt_src */
};

/* One --consume route: a Kafka topic and the MQTT topic template its records are published on. */
struct rmq_bridge_consume {
	char *spec;                     /* the option text */
	char *ktopic;                   /* Kafka topic (a plain name) */
	char *mqtt_src;                 /* the template text, owned */
	int nparts;
	struct rmq_bridge_cpart parts[RMQ_BRIDGE_MAX_TMPL_PARTS];
	uint8_t qos;                    /* default 1 */
	bool retain;                    /* default off */
	struct rmq_cluster *cluster;    /* the cluster topic: records are whole PUBLISH packets (cluster.c) */
};

/* What a template draws on: one Kafka record. NULL key or header value = absent. */
struct rmq_bridge_krec {
	const char *ktopic;
	const void *key;
	size_t keylen;
	/* header lookup: returns 0 and fills v and n when a header `name` exists with a non-null value */
	int (*header)(void *ud, const char *name, size_t namelen, const void **v, size_t *n);
	void *ud;
};

/* Parses one consume option value. Returns 0 or -EINVAL with a reason. */
int rmq_bridge_consume_parse(struct rmq_bridge_consume *r, const char *value, char *err, size_t errlen);
void rmq_bridge_consume_free(struct rmq_bridge_consume *r);
/* Renders the MQTT topic of record k on route r into out (appended). Returns 0, -ENOENT (the key or a
 * header it names is absent or empty), -EINVAL (a substituted value holds '/', '+', '#', NUL or is not
 * UTF-8: one record must not be able to aim at another car's topic or a wildcard), or -ENOMEM. */
int rmq_bridge_consume_render(const struct rmq_bridge_consume *r, const struct rmq_bridge_krec *k,
			      struct rmq_bbuf *out);

/* consumer.c: one consumer per core in one group; start/stop from main, poll from the owning reactor. */
struct rmq_bridge_consumers;
int rmq_bridge_consumers_start(struct rmq_bridge_consumers **out, const struct rmq_bridge_cfg *cfg,
			       const char *bootstraps, int ncores, const int *efds, char *why, size_t len);
void rmq_bridge_consumers_stop(struct rmq_bridge_consumers *cs);
int rmq_bridge_consumers_poll(struct rmq_bridge_consumers *cs, int core, rmq_bridge_rec_fn fn, void *ud);
void rmq_bridge_consumers_freeze(struct rmq_bridge_consumers *cs);
void rmq_bridge_consumers_stats(const struct rmq_bridge_consumers *cs, int core, struct rmq_bridge_cstats *out);

/* fault.c: Kafka's definitive refusals, classed for counters and reason codes, logged once per (cause, topic). */
enum rmq_kfault { RMQ_KFAULT_NONE, RMQ_KFAULT_UNKNOWN_TOPIC, RMQ_KFAULT_DENIED, RMQ_KFAULT_TOO_LARGE };
#define RMQ_KFAULT_LOG_SLOTS 1024
struct rmq_kfault_log {
	_Atomic uint64_t seen[RMQ_KFAULT_LOG_SLOTS];  /* hashes of (cause, topic) already logged; 0 = free */
	_Atomic bool full;
};
enum rmq_kfault rmq_bridge_kfault_of(rd_kafka_resp_err_t e);
/* true the first time (cause, topic) is seen: the caller prints its one line. Any thread. */
bool rmq_bridge_kfault_first(struct rmq_kfault_log *l, enum rmq_kfault f, const char *topic);
const char *rmq_bridge_kfault_name(enum rmq_kfault f);

/* start_check.c: with kafka-brokers, before serving: the credentials work (else -EACCES, one line) and every
 * fixed route topic exists (else -ENOENT naming it, or with kafka-wait-topics on wait for it). Main thread. */
int rmq_bridge_start_check(const struct rmq_bridge_cfg *cfg, const char *bootstraps, const char *const *topics,
			   int ntopics, char *why, size_t len);

/* A librdkafka property only producers take (ringmq's producer flags): not given to consumers. */
bool rmq_bridge_producer_only(const char *key);
/* A librdkafka property only consumers take (group membership, fetching): not given to producers. */
bool rmq_bridge_consumer_only(const char *key);
void rmq_bridge_consumers_set_cluster(struct rmq_bridge_consumers *cs, struct rmq_cluster *cl);

/* ---- cross-node delivery (cluster_set.c: pure; cluster.c: runtime) ---- */
#define RMQ_CLUSTER_ORIGIN_HEADER "ringmq.origin"
#define RMQ_CLUSTER_NODE_MAX 128

/* Reference-counted set of topic filters, owned by one thread. */
struct rmq_cfset_ent;
struct rmq_cfset {
	struct rmq_cfset_ent **b;      /* exact filters (no wildcard), hashed */
	uint32_t nb, n;
	struct rmq_cfset_ent **wild;   /* filters with '+' or '#' */
	uint32_t nwild, capwild;
};
/* Returns the filter's new reference count (1: it just appeared) or -ENOMEM. */
int rmq_cfset_add(struct rmq_cfset *s, const uint8_t *f, size_t len);
/* Returns the reference count left (0: it just went) or -ENOENT. */
int rmq_cfset_del(struct rmq_cfset *s, const uint8_t *f, size_t len);
uint32_t rmq_cfset_refs(const struct rmq_cfset *s, const uint8_t *f, size_t len);
/* Does any filter of s match topic name t ('$' topics: see rmq_bridge_filter_match)? */
bool rmq_cfset_match(const struct rmq_cfset *s, const uint8_t *t, size_t len);
size_t rmq_cfset_count(const struct rmq_cfset *s);
void rmq_cfset_each(const struct rmq_cfset *s, void (*fn)(void *ud, const uint8_t *f, size_t len), void *ud);
void rmq_cfset_free(struct rmq_cfset *s);

/* Route-summary record key: NODE NUL FILTER (out is overwritten). 0 or -ENOMEM. */
int rmq_cluster_key(struct rmq_bbuf *out, const char *node, const uint8_t *f, size_t len);
/* Splits a key; -EINVAL when it is not NODE NUL FILTER with a non-empty node and a valid filter. */
int rmq_cluster_key_split(const void *key, size_t keylen, struct rmq_str *node, struct rmq_str *filter);
/* The filter inside "$share/GROUP/FILTER"; f itself otherwise. */
struct rmq_str rmq_cluster_inner_filter(const uint8_t *f, size_t len);
/* A message as an MQTT 5 PUBLISH packet (out overwritten) and back (views into v). 0, -EINVAL or -ENOMEM. */
int rmq_cluster_encode(struct rmq_bbuf *out, const struct rmq_publish *p);
int rmq_cluster_decode(const void *v, size_t n, struct rmq_publish *out);
/* Takes the time since sent_ms off a Message Expiry Interval; -ETIME when it has run out (drop the message). */
int rmq_cluster_expiry_left(struct rmq_props *props, int64_t sent_ms, int64_t now_ms);

/* Records the producer publishes besides its routes' (cluster mode: cluster.c is the one source). The producer owns
 * producing, completions, the deferred FIFO and the spool copy; a source only says which records (units, bits
 * 1 << 0 .. RMQ_BRIDGE_SOURCE_UNITS - 1) a publish has and renders each. Set by main before the reactors start;
 * its functions are called on the publishing reactor `core` (units, render) and on the core that produced a unit
 * (produced). */
#define RMQ_BRIDGE_SOURCE_UNITS 2
struct rmq_bridge_record {       /* one rendered record; views valid until the next render on that core */
	const char *topic;
	const void *key, *val;       /* val NULL: a tombstone */
	size_t keylen, vallen;
	const char *header, *header_val; /* one Kafka header (NUL-terminated), or header NULL */
};
struct rmq_bridge_source {
	void *ctx;                   /* NULL: no source */
	int (*units)(void *ctx, int core, const struct rmq_publish *p);            /* 0: none */
	int (*render)(void *ctx, int core, const struct rmq_bridge_msg *m, int unit, struct rmq_bridge_record *r);
	void (*produced)(void *ctx, int core, int unit, bool ok);                  /* counted by the source */
};

/* cluster.c */
struct rmq_cluster;
struct rd_kafka_message_s;
struct rd_kafka_headers_s;
#define RMQ_CLUSTER_DATA 1       /* units of one publish: the cluster topic (another node wants it) ... */
#define RMQ_CLUSTER_RETAIN 2     /* ... and the retained topic (a retained set or clear) */
int rmq_bridge_cluster_start(struct rmq_cluster **out, const struct rmq_bridge_cfg *cfg, const char *bootstraps,
			     int ncores, const int *efds, char *why, size_t len);
void rmq_bridge_cluster_stop(struct rmq_cluster *cl);
void rmq_bridge_cluster_freeze(struct rmq_cluster *cl);
/* The cluster as a record source of the producer (see struct rmq_bridge_source). */
struct rmq_bridge_source rmq_bridge_cluster_source(struct rmq_cluster *cl);
/* Reactor `core`: serves the cluster's consumers (core 0) and applies route-summary changes (every core). */
int rmq_bridge_cluster_poll(struct rmq_cluster *cl, int core, rmq_bridge_rec_fn fn, void *ud);
/* Any reactor: see rmq_bridge_cluster_filters() in bridge.h. */
void rmq_bridge_cluster_filters_cl(struct rmq_cluster *cl, bool add, const uint8_t *data, uint32_t count);
/* Any reactor, at its teardown: see rmq_bridge_cluster_keep() in bridge.h. */
void rmq_bridge_cluster_keep_cl(struct rmq_cluster *cl, const uint8_t *data, uint32_t count);
void rmq_bridge_cluster_metrics_cl(const struct rmq_cluster *cl, FILE *f);
/* consumer.c, for a record of the cluster topic: 0 with rec filled (deliver it), or < 0 (skip; counted). */
int rmq_bridge_cluster_record(struct rmq_cluster *cl, const struct rd_kafka_message_s *m,
			      struct rd_kafka_headers_s *h, struct rmq_bridge_rec *rec);

#endif
