/* Kafka bridge internals shared by the bridge sources and the bridge unit tests: configuration, route templates,
 * rendering helpers. Pure data and pure functions except where noted; the same threading rules as bridge.h. */
#ifndef RINGMQ_BRIDGE_INTERNAL_H
#define RINGMQ_BRIDGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringmq/bridge.h"

/* Bounds: a fleet operator configures a handful of routes; these keep every per-message loop tiny. */
#define RMQ_BRIDGE_MAX_ROUTES 32
#define RMQ_BRIDGE_MAX_TMPL_PARTS 16
#define RMQ_BRIDGE_MAX_LEVEL 31          /* highest N accepted in ${topic[N]} */
#define RMQ_BRIDGE_KAFKA_TOPIC_MAX 249   /* Kafka's own limit on a topic name */
#define RMQ_BRIDGE_DEFAULT_TOPIC "mqtt.messages"
#define RMQ_BRIDGE_DEFAULT_PARTITIONS 4  /* the mock cluster's own default for auto-created topics */
#define RMQ_BRIDGE_EMBEDDED_BROKERS 3

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
	struct rmq_bridge_kv *kv;  /* librdkafka properties in the order given; applied after our defaults */
	int nkv, capkv;
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

#endif
