/* Bridge configuration: parses every bridge option (routes, Kafka producer settings, policies) into rmq_bridge_cfg.
 * Called by main only, before the reactors start (single-threaded). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "bridge_internal.h"

int rmq_bridge_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

struct rmq_bridge_cfg *rmq_bridge_cfg_new(void)
{
	struct rmq_bridge_cfg *cfg = calloc(1, sizeof(*cfg));
	if (cfg) {
		cfg->partitions = RMQ_BRIDGE_DEFAULT_PARTITIONS;
		cfg->consume_delay_ms = RMQ_BRIDGE_DEFAULT_CONSUME_DELAY_MS;
		cfg->consume_max = RMQ_BRIDGE_DEFAULT_CONSUME_MAX;
	}
	return cfg;
}

void rmq_bridge_cfg_free(struct rmq_bridge_cfg *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; i < cfg->nroutes; i++)
		rmq_bridge_route_free(&cfg->routes[i]);
	for (int i = 0; i < cfg->nkv; i++) {
		free(cfg->kv[i].key);
		free(cfg->kv[i].value);
	}
	free(cfg->kv);
	for (int i = 0; i < cfg->nconsumes; i++)
		rmq_bridge_consume_free(&cfg->consumes[i]);
	free(cfg->consumes);
	free(cfg->group);
	free(cfg->brokers);
	free(cfg->cluster_topic);
	free(cfg->cluster_routes);
	free(cfg->cluster_retain);
	free(cfg->node_id);
	free(cfg->node_default);
	free(cfg);
}

bool rmq_bridge_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	if (!s || !*s || isspace((unsigned char)*s))
		return false;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* Asks librdkafka whether it accepts key=value, so a typo fails at start-up with librdkafka's own words. */
static int rdkafka_check(const char *key, const char *value, char *err, size_t errlen)
{
	char why[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, key, value, why, sizeof(why));
	rd_kafka_conf_destroy(conf);
	if (res != RD_KAFKA_CONF_OK)
		return rmq_bridge_fail(err, errlen, "librdkafka: %s", why);
	return 0;
}

/* Records key=value for the producers, replacing an earlier value of the same key. */
static int kv_set(struct rmq_bridge_cfg *cfg, const char *key, const char *value, char *err, size_t errlen)
{
	int rc = rdkafka_check(key, value, err, errlen);
	if (rc)
		return rc;
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	for (int i = 0; i < cfg->nkv; i++) {
		if (strcmp(cfg->kv[i].key, key) == 0) {
			free(cfg->kv[i].value);
			cfg->kv[i].value = v;
			return 0;
		}
	}
	if (cfg->nkv == cfg->capkv) {
		int cap = cfg->capkv ? cfg->capkv * 2 : 8;
		struct rmq_bridge_kv *kv = realloc(cfg->kv, (size_t)cap * sizeof(*kv));
		if (!kv) {
			free(v);
			return -ENOMEM;
		}
		cfg->kv = kv;
		cfg->capkv = cap;
	}
	char *k = strdup(key);
	if (!k) {
		free(v);
		return -ENOMEM;
	}
	cfg->kv[cfg->nkv++] = (struct rmq_bridge_kv){k, v};
	return 0;
}

static int opt_x(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	const char *eq = strchr(value, '=');
	if (!eq || eq == value)
		return rmq_bridge_fail(err, errlen, "X: expected key=value (a librdkafka property), got '%s'", value);
	char key[128];
	size_t klen = (size_t)(eq - value);
	if (klen >= sizeof(key))
		return rmq_bridge_fail(err, errlen, "X: property name too long");
	memcpy(key, value, klen);
	key[klen] = 0;
	int rc = kv_set(cfg, key, eq + 1, err, errlen);
	if (rc == 0 && strcmp(key, "enable.idempotence") == 0)
		cfg->idempotence_set = true;
	return rc;
}

static int opt_route(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	if (cfg->nroutes == RMQ_BRIDGE_MAX_ROUTES)
		return rmq_bridge_fail(err, errlen, "route: at most %d routes", RMQ_BRIDGE_MAX_ROUTES);
	int rc = rmq_bridge_route_parse(&cfg->routes[cfg->nroutes], value, err, errlen);
	if (rc == 0)
		cfg->nroutes++;
	return rc;
}

static int opt_consume(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	if (!cfg->consumes && !(cfg->consumes = calloc(RMQ_BRIDGE_MAX_CONSUMES, sizeof(*cfg->consumes))))
		return -ENOMEM;
	if (cfg->nconsumes == RMQ_BRIDGE_MAX_CONSUMES)
		return rmq_bridge_fail(err, errlen, "consume: at most %d routes", RMQ_BRIDGE_MAX_CONSUMES);
	int rc = rmq_bridge_consume_parse(&cfg->consumes[cfg->nconsumes], value, err, errlen);
	if (rc == 0)
		cfg->nconsumes++;
	return rc;
}

/* Kafka's own rule for a group id is "any non-empty string"; we also refuse spaces and control bytes, which
 * are always a quoting mistake on a command line. */
static int opt_group(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	if (!value || !*value || strlen(value) > 255)
		return rmq_bridge_fail(err, errlen, "kafka-group: expected a name of 1..255 bytes");
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p <= ' ')
			return rmq_bridge_fail(err, errlen, "kafka-group: no spaces or control characters in '%s'", value);
	char *g = strdup(value);
	if (!g)
		return -ENOMEM;
	free(cfg->group);
	cfg->group = g;
	return 0;
}

/* cluster-topic, cluster-routes-topic, cluster-retain-topic: a plain Kafka topic name. */
static int opt_ktopic(char **dst, const char *name, const char *value, char *err, size_t errlen)
{
	if (!value || !rmq_bridge_kafka_topic_valid(value, strlen(value)))
		return rmq_bridge_fail(err, errlen, "%s: '%s' is not a valid Kafka topic name (1..249 of A-Z a-z 0-9 . _ -)",
				       name, value ? value : "");
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	free(*dst);
	*dst = v;
	return 0;
}

/* A node id names the node's consumer group and tags its records: printable, no spaces, bounded. */
static int opt_node(char **dst, const char *value, char *err, size_t errlen)
{
	size_t n = value ? strlen(value) : 0;
	if (n == 0 || n > RMQ_CLUSTER_NODE_MAX)
		return rmq_bridge_fail(err, errlen, "node-id: expected 1..%d bytes", RMQ_CLUSTER_NODE_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)value[i] <= ' ' || (unsigned char)value[i] == 0x7f)
			return rmq_bridge_fail(err, errlen, "node-id: no spaces or control characters in '%s'", value);
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	free(*dst);
	*dst = v;
	return 0;
}

/* A two-valued policy option: sets *flag to (value == yes). */
static int opt_choice(const char *name, const char *value, const char *no, const char *yes, bool *flag,
		      char *err, size_t errlen)
{
	if (value && strcmp(value, no) == 0)
		*flag = false;
	else if (value && strcmp(value, yes) == 0)
		*flag = true;
	else
		return rmq_bridge_fail(err, errlen, "%s: expected %s or %s, got '%s'", name, no, yes, value ? value : "");
	return 0;
}

/* Numeric options forwarded to librdkafka under another name. */
static const struct {
	const char *name, *rdkey;
	long lo, hi;
} numeric_opts[] = {
	{"kafka-linger-ms", "linger.ms", 0, 900000},
	{"kafka-batch-msgs", "batch.num.messages", 1, 1000000},
	{"kafka-batch-bytes", "batch.size", 1, INT_MAX},
};

static int opt_numeric(struct rmq_bridge_cfg *cfg, int i, const char *value, char *err, size_t errlen)
{
	long v;
	if (!rmq_bridge_parse_long(value, numeric_opts[i].lo, numeric_opts[i].hi, &v))
		return rmq_bridge_fail(err, errlen, "%s: expected an integer in %ld..%ld, got '%s'", numeric_opts[i].name,
			    numeric_opts[i].lo, numeric_opts[i].hi, value ? value : "");
	return kv_set(cfg, numeric_opts[i].rdkey, value, err, errlen);
}

/* Milliseconds since the epoch, after 2000-01-01 (a smaller value is a unit mistake, not a date). */
static int opt_since(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	char *end = NULL;
	errno = 0;
	long long v = value ? strtoll(value, &end, 10) : 0;
	if (!value || !*value || *end || errno || v < 946684800000LL)
		return rmq_bridge_fail(err, errlen, "cluster-resume-since: expected ms since the epoch, got '%s'",
				       value ? value : "");
	cfg->cluster_since_ms = v;
	return 0;
}

static int opt_acks(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	if (!value || (strcmp(value, "all") && strcmp(value, "-1") && strcmp(value, "1") && strcmp(value, "0")))
		return rmq_bridge_fail(err, errlen, "kafka-acks: expected all, 1 or 0, got '%s'", value ? value : "");
	cfg->acks_not_all = strcmp(value, "1") == 0 || strcmp(value, "0") == 0;
	return kv_set(cfg, "acks", value, err, errlen);
}

static int opt_compression(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	static const char *const ok[] = {"none", "gzip", "snappy", "lz4", "zstd"};
	for (size_t i = 0; value && i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(value, ok[i]) == 0)
			return kv_set(cfg, "compression.codec", value, err, errlen);
	return rmq_bridge_fail(err, errlen, "kafka-compression: expected none, gzip, snappy, lz4 or zstd, got '%s'",
		    value ? value : "");
}

static int opt_brokers(struct rmq_bridge_cfg *cfg, const char *value, char *err, size_t errlen)
{
	if (!value || !*value)
		return rmq_bridge_fail(err, errlen, "kafka-brokers: expected HOST:PORT[,HOST:PORT...]");
	for (const char *p = value; *p; p++)
		if (isspace((unsigned char)*p))
			return rmq_bridge_fail(err, errlen, "kafka-brokers: no spaces allowed in '%s'", value);
	char *b = strdup(value);
	if (!b)
		return -ENOMEM;
	free(cfg->brokers);
	cfg->brokers = b;
	return 0;
}

static int opt_int(const char *name, const char *value, long lo, long hi, int *out, char *err, size_t errlen)
{
	long v;
	if (!rmq_bridge_parse_long(value, lo, hi, &v))
		return rmq_bridge_fail(err, errlen, "%s: expected an integer in %ld..%ld, got '%s'", name, lo, hi,
			    value ? value : "");
	*out = (int)v;
	return 0;
}

int rmq_bridge_option(struct rmq_bridge_cfg *cfg, const char *name, const char *value, char *err,
		      size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	if (strcmp(name, "route") == 0)
		return value ? opt_route(cfg, value, err, errlen) : rmq_bridge_fail(err, errlen, "route: missing value");
	if (strcmp(name, "kafka") == 0) {
		bool on = !cfg->off;
		int rc = opt_choice(name, value, "off", "on", &on, err, errlen);
		cfg->off = !on;
		return rc;
	}
	if (strcmp(name, "route-match") == 0)
		return opt_choice(name, value, "first", "all", &cfg->match_all, err, errlen);
	if (strcmp(name, "ack-after") == 0)
		return opt_choice(name, value, "kafka", "broker", &cfg->ack_broker, err, errlen);
	if (strcmp(name, "kafka-partitioning") == 0)
		return opt_choice(name, value, "key", "core-aligned", &cfg->core_aligned, err, errlen);
	if (strcmp(name, "qos0-overflow") == 0)
		return opt_choice(name, value, "block", "drop", &cfg->qos0_drop, err, errlen);
	if (strcmp(name, "kafka-brokers") == 0)
		return opt_brokers(cfg, value, err, errlen);
	if (strcmp(name, "kafka-wait-topics") == 0)
		return opt_choice(name, value, "off", "on", &cfg->wait_topics, err, errlen);
	if (strcmp(name, "kafka-acks") == 0)
		return opt_acks(cfg, value, err, errlen);
	if (strcmp(name, "kafka-compression") == 0)
		return opt_compression(cfg, value, err, errlen);
	if (strcmp(name, "kafka-producers") == 0)
		return opt_int(name, value, 1, 1024, &cfg->producers, err, errlen);
	if (strcmp(name, "kafka-partitions") == 0)
		return opt_int(name, value, 1, 10000, &cfg->partitions, err, errlen);
	if (strcmp(name, "consume") == 0)
		return opt_consume(cfg, value, err, errlen);
	if (strcmp(name, "kafka-group") == 0)
		return opt_group(cfg, value, err, errlen);
	if (strcmp(name, "kafka-offset-reset") == 0)
		return opt_choice(name, value, "earliest", "latest", &cfg->offset_latest, err, errlen);
	if (strcmp(name, "consume-delay-ms") == 0)
		return opt_int(name, value, 0, 3600000, &cfg->consume_delay_ms, err, errlen);
	if (strcmp(name, "consume-max-outstanding") == 0)
		return opt_int(name, value, 1, 10000000, &cfg->consume_max, err, errlen);
	if (strcmp(name, "cluster-topic") == 0)
		return opt_ktopic(&cfg->cluster_topic, name, value, err, errlen);
	if (strcmp(name, "cluster-routes-topic") == 0)
		return opt_ktopic(&cfg->cluster_routes, name, value, err, errlen);
	if (strcmp(name, "cluster-retain-topic") == 0)
		return opt_ktopic(&cfg->cluster_retain, name, value, err, errlen);
	if (strcmp(name, "node-id") == 0)
		return opt_node(&cfg->node_id, value, err, errlen);
	if (strcmp(name, "node-id-default") == 0)
		return opt_node(&cfg->node_default, value, err, errlen);
	if (strcmp(name, "cluster-resume-since") == 0)
		return opt_since(cfg, value, err, errlen);
	if (strcmp(name, "X") == 0)
		return value ? opt_x(cfg, value, err, errlen) : rmq_bridge_fail(err, errlen, "X: missing key=value");
	for (size_t i = 0; i < sizeof(numeric_opts) / sizeof(numeric_opts[0]); i++)
		if (strcmp(name, numeric_opts[i].name) == 0)
			return opt_numeric(cfg, (int)i, value, err, errlen);
	return -ENOENT;
}

void rmq_bridge_usage(FILE *out)
{
	fputs("  --kafka on|off          the Kafka bridge (default on); off: a plain MQTT broker\n"
	      "  --route 'FILTER -> TOPIC [key=TMPL|none] [value=raw|json] [headers=on|off]'\n"
	      "                          MQTT->Kafka route, repeatable; TOPIC/TMPL may use ${topic[N]} (0-based\n"
	      "                          level), ${topic}, ${client_id}, ${username}; default '# -> mqtt.messages'\n"
	      "  --route-match first|all first matching route only (default) or every matching route\n"
	      "  --kafka-brokers H:P,..  Kafka bootstrap servers (default: embedded mock cluster, 3 brokers)\n"
	      "  --kafka-wait-topics on|off  at start, wait for missing fixed route topics instead of\n"
	      "                          refusing to start (default off)\n"
	      "  --kafka-linger-ms N     producer linger.ms\n"
	      "  --kafka-batch-msgs N    producer batch.num.messages\n"
	      "  --kafka-batch-bytes N   producer batch.size\n"
	      "  --kafka-compression C   none|gzip|snappy|lz4|zstd\n"
	      "  --kafka-acks all|1|0    producer acks (1 or 0 switch idempotence off)\n"
	      "  --kafka-producers K     K producers shared by the cores (default: one per core)\n"
	      "  --kafka-partitions N    embedded cluster: partitions per route topic (default 4)\n"
	      "  --kafka-partitioning key|core-aligned  partition = murmur2(key) over all partitions (default,\n"
	      "                          as Java clients) or over the producer's own share of them\n"
	      "  -X key=value            any librdkafka producer property, applied last\n"
	      "  --ack-after kafka|broker  PUBACK after Kafka's delivery report (default) or at once\n"
	      "  --qos0-overflow block|drop  QoS 0 when the producer queue is full (default block)\n"
	      "  --consume 'KAFKA_TOPIC -> MQTT_TOPIC [qos=0|1|2] [retain=on|off]'\n"
	      "                          Kafka->MQTT route, repeatable; MQTT_TOPIC may use ${key}, ${header.NAME},\n"
	      "                          ${topic}; default qos=1 retain=off; headers -> MQTT 5 user properties; a\n"
	      "                          null value on a retain route clears the retained message. At-least-once:\n"
	      "                          offsets are committed after every matching session had the record\n"
	      "  --kafka-group NAME      consumer group of this node (default ringmq)\n"
	      "  --kafka-offset-reset earliest|latest  where a new group starts (default earliest: the backlog)\n"
	      "  --consume-delay-ms N    start consuming N ms after start-up, so reconnecting cars subscribe\n"
	      "                          first (default 3000)\n"
	      "  --consume-max-outstanding N  records per core not yet finished (e.g. waiting for a PUBACK)\n"
	      "                          before its partitions are paused (default 65536)\n"
	      "  --cluster-topic TOPIC   cross-node delivery through Kafka (needs --kafka-brokers): publishes another\n"
	      "                          node's subscribers want go through TOPIC; route summaries in TOPIC.routes and\n"
	      "                          retained messages in TOPIC.retained (both compacted)\n"
	      "  --node-id ID            this node's unique, stable name (default HOST:PORT)\n"
	      "  --cluster-routes-topic T  route summaries topic (default TOPIC.routes)\n"
	      "  --cluster-retain-topic T  retained messages topic (default TOPIC.retained)\n",
	      out);
}
