/* Unit tests of the bridge options and route syntax: good values, bad values and their one-line reasons.
 * Runs in the ringmq-unit binary (any thread; no Kafka needed). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../bridge/bridge_internal.h"

static struct rmq_bridge_cfg *cfg;
static char err[256];

static void setup(void) { cfg = rmq_bridge_cfg_new(); err[0] = 0; }
static void teardown(void) { rmq_bridge_cfg_free(cfg); }

TestSuite(bridge_cfg, .init = setup, .fini = teardown);

static int opt(const char *name, const char *value)
{
	return rmq_bridge_option(cfg, name, value, err, sizeof(err));
}

static const char *kv(const char *key)
{
	for (int i = 0; i < cfg->nkv; i++)
		if (strcmp(cfg->kv[i].key, key) == 0)
			return cfg->kv[i].value;
	return NULL;
}

Test(bridge_cfg, defaults)
{
	cr_assert_eq(cfg->nroutes, 0);
	cr_assert_not(cfg->match_all);
	cr_assert_not(cfg->ack_broker);
	cr_assert_not(cfg->qos0_drop);
	cr_assert_null(cfg->brokers);
	cr_assert_eq(cfg->partitions, RMQ_BRIDGE_DEFAULT_PARTITIONS);
	cr_assert_eq(cfg->nkv, 0);
}

Test(bridge_cfg, unknown_option_is_enoent)
{
	cr_assert_eq(opt("listen", "127.0.0.1:1883"), -ENOENT);
	cr_assert_eq(opt("kafka-brokerz", "x:1"), -ENOENT);
}

Test(bridge_cfg, route_full_syntax)
{
	cr_assert_eq(opt("route", "cars/+/telemetry -> vehicle-${topic[1]} key=${topic[1]} value=json headers=off"), 0,
		     "%s", err);
	const struct rmq_bridge_route *r = &cfg->routes[0];
	cr_assert_str_eq(r->filter, "cars/+/telemetry");
	cr_assert_not(r->topic_fixed);
	cr_assert_eq(r->topic.nparts, 2);
	cr_assert_eq(r->topic.parts[1].kind, TP_LEVEL);
	cr_assert_eq(r->topic.parts[1].level, 1);
	cr_assert_eq(r->key.nparts, 1);
	cr_assert_eq(r->key.parts[0].kind, TP_LEVEL);
	cr_assert(r->json);
	cr_assert_not(r->headers);
	cr_assert_not(r->key_none);
}

Test(bridge_cfg, route_defaults_key_client_id_raw_headers)
{
	cr_assert_eq(opt("route", "  cars/#   ->\ttelemetry "), 0, "%s", err);
	const struct rmq_bridge_route *r = &cfg->routes[0];
	cr_assert(r->topic_fixed);
	cr_assert_str_eq(r->topic.src, "telemetry");
	cr_assert_eq(r->key.parts[0].kind, TP_CLIENT_ID);
	cr_assert_not(r->json);
	cr_assert(r->headers);
}

Test(bridge_cfg, route_key_none_and_order_kept)
{
	cr_assert_eq(opt("route", "a/# -> one key=none"), 0, "%s", err);
	cr_assert_eq(opt("route", "b/+ -> two key=car-${username} value=raw"), 0, "%s", err);
	cr_assert_eq(cfg->nroutes, 2);
	cr_assert(cfg->routes[0].key_none);
	cr_assert_str_eq(cfg->routes[1].filter, "b/+");
	cr_assert_eq(cfg->routes[1].key.nparts, 2);
	cr_assert_eq(cfg->routes[1].key.parts[1].kind, TP_USERNAME);
}

Test(bridge_cfg, route_bad)
{
	static const char *const bad[] = {
		"",                                  /* empty */
		"cars/+/telemetry telemetry",        /* no arrow */
		"cars/+/telemetry =>  telemetry",    /* wrong arrow */
		"cars/+/telemetry ->",               /* no topic */
		"cars/+x/telemetry -> t",            /* '+' not alone in its level */
		"cars/#/x -> t",                     /* '#' not last */
		"cars/# -> bad topic",               /* 'topic' read as an unknown option */
		"cars/# -> t@x",                     /* illegal Kafka topic char */
		"cars/# -> ..",                      /* illegal Kafka name */
		"cars/# -> t-${topic[x]}",           /* bad level */
		"cars/# -> t-${topic[32]}",          /* level out of range */
		"cars/# -> t-${nope}",               /* unknown variable */
		"cars/# -> t-${topic",               /* unterminated */
		"cars/# -> t key=",                  /* empty key template */
		"cars/# -> t value=xml",             /* bad value */
		"cars/# -> t headers=maybe",         /* bad headers */
		"cars/# -> t key=${topic[1]} a b c d e", /* too many words */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_assert_eq(opt("route", bad[i]), -EINVAL, "accepted '%s'", bad[i]);
		cr_assert_neq(err[0], 0, "no reason for '%s'", bad[i]);
		cr_assert_null(strchr(err, '\n'), "reason is not one line: %s", err);
	}
	cr_assert_eq(cfg->nroutes, 0);
	cr_assert_eq(opt("route", NULL), -EINVAL);
}

Test(bridge_cfg, route_limit)
{
	for (int i = 0; i < RMQ_BRIDGE_MAX_ROUTES; i++)
		cr_assert_eq(opt("route", "# -> t"), 0);
	cr_assert_eq(opt("route", "# -> t"), -EINVAL);
	cr_assert(strstr(err, "at most"), "%s", err);
}

Test(bridge_cfg, policies)
{
	cr_assert_eq(opt("route-match", "all"), 0);
	cr_assert(cfg->match_all);
	cr_assert_eq(opt("route-match", "first"), 0);
	cr_assert_not(cfg->match_all);
	cr_assert_eq(opt("ack-after", "broker"), 0);
	cr_assert(cfg->ack_broker);
	cr_assert_eq(opt("ack-after", "kafka"), 0);
	cr_assert_not(cfg->ack_broker);
	cr_assert_eq(opt("qos0-overflow", "drop"), 0);
	cr_assert(cfg->qos0_drop);
	cr_assert_eq(opt("kafka-partitioning", "core-aligned"), 0);
	cr_assert(cfg->core_aligned);
	cr_assert_eq(opt("kafka-partitioning", "key"), 0);
	cr_assert_not(cfg->core_aligned);
	cr_assert_eq(opt("kafka-partitioning", "core"), -EINVAL);
	cr_assert_eq(opt("route-match", "some"), -EINVAL);
	cr_assert(strstr(err, "route-match: expected first or all"), "%s", err);
	cr_assert_eq(opt("ack-after", ""), -EINVAL);
	cr_assert_eq(opt("qos0-overflow", NULL), -EINVAL);
	cr_assert(cfg->qos0_drop, "a bad value must not change the setting");
}

Test(bridge_cfg, numeric_good_become_librdkafka_properties)
{
	cr_assert_eq(opt("kafka-linger-ms", "0"), 0, "%s", err);
	cr_assert_eq(opt("kafka-linger-ms", "20"), 0, "%s", err);
	cr_assert_eq(opt("kafka-batch-msgs", "5000"), 0, "%s", err);
	cr_assert_eq(opt("kafka-batch-bytes", "1048576"), 0, "%s", err);
	cr_assert_str_eq(kv("linger.ms"), "20");
	cr_assert_str_eq(kv("batch.num.messages"), "5000");
	cr_assert_str_eq(kv("batch.size"), "1048576");
	cr_assert_eq(cfg->nkv, 3, "a repeated option replaces, not appends");
	cr_assert_eq(opt("kafka-producers", "2"), 0);
	cr_assert_eq(cfg->producers, 2);
	cr_assert_eq(opt("kafka-partitions", "12"), 0);
	cr_assert_eq(cfg->partitions, 12);
}

Test(bridge_cfg, numeric_bad)
{
	static const char *const names[] = {"kafka-linger-ms", "kafka-batch-msgs", "kafka-batch-bytes",
					    "kafka-producers", "kafka-partitions"};
	static const char *const vals[] = {"", "-1", "abc", "12x", " 5", "99999999999999999999"};
	for (size_t n = 0; n < 5; n++)
		for (size_t v = 0; v < 6; v++) {
			err[0] = 0;
			cr_assert_eq(opt(names[n], vals[v]), -EINVAL, "%s accepted '%s'", names[n], vals[v]);
			cr_assert(strstr(err, names[n]), "reason does not name the option: %s", err);
		}
	cr_assert_eq(opt("kafka-batch-msgs", "0"), -EINVAL);
	cr_assert_eq(opt("kafka-producers", "0"), -EINVAL);
	cr_assert_eq(opt("kafka-linger-ms", "900001"), -EINVAL);
	cr_assert_eq(opt("kafka-linger-ms", NULL), -EINVAL);
	cr_assert_eq(cfg->nkv, 0);
}

Test(bridge_cfg, acks_and_compression)
{
	cr_assert_eq(opt("kafka-acks", "all"), 0);
	cr_assert_not(cfg->acks_not_all);
	cr_assert_eq(opt("kafka-acks", "1"), 0);
	cr_assert(cfg->acks_not_all);
	cr_assert_str_eq(kv("acks"), "1");
	cr_assert_eq(opt("kafka-acks", "2"), -EINVAL);
	cr_assert_eq(opt("kafka-acks", "some"), -EINVAL);
	cr_assert_eq(opt("kafka-compression", "lz4"), 0, "%s", err);
	cr_assert_str_eq(kv("compression.codec"), "lz4");
	cr_assert_eq(opt("kafka-compression", "zip"), -EINVAL);
	cr_assert(strstr(err, "kafka-compression"), "%s", err);
}

Test(bridge_cfg, brokers)
{
	cr_assert_eq(opt("kafka-brokers", "k1:9092,k2:9092"), 0);
	cr_assert_str_eq(cfg->brokers, "k1:9092,k2:9092");
	cr_assert_eq(opt("kafka-brokers", ""), -EINVAL);
	cr_assert_eq(opt("kafka-brokers", "k1:9092, k2:9092"), -EINVAL);
	cr_assert_str_eq(cfg->brokers, "k1:9092,k2:9092");
}

Test(bridge_cfg, x_passes_properties_and_rejects_unknown)
{
	cr_assert_eq(opt("X", "security.protocol=plaintext"), 0, "%s", err);
	cr_assert_eq(opt("X", "queue.buffering.max.messages=1000"), 0, "%s", err);
	cr_assert_str_eq(kv("queue.buffering.max.messages"), "1000");
	cr_assert_not(cfg->idempotence_set);
	cr_assert_eq(opt("X", "enable.idempotence=false"), 0, "%s", err);
	cr_assert(cfg->idempotence_set);

	cr_assert_eq(opt("X", "no.such.property=1"), -EINVAL);
	cr_assert(strstr(err, "no.such.property"), "reason should name the property: %s", err);
	cr_assert_eq(opt("X", "queue.buffering.max.messages=lots"), -EINVAL);
	cr_assert(strstr(err, "librdkafka"), "%s", err);
	cr_assert_eq(opt("X", "novalue"), -EINVAL);
	cr_assert_eq(opt("X", "=1"), -EINVAL);
	cr_assert_eq(opt("X", NULL), -EINVAL);
	cr_assert_eq(cfg->nkv, 3);
}

Test(bridge_cfg, kafka_off_is_a_plain_broker)
{
	cr_assert_not(cfg->off, "the bridge is on by default");
	cr_assert_eq(opt("kafka", "maybe"), -EINVAL);
	cr_assert(strstr(err, "kafka: expected off or on"), "%s", err);
	cr_assert_not(cfg->off, "a bad value must not change the setting");
	cr_assert_eq(opt("kafka", "off"), 0);
	cr_assert(cfg->off);
	struct rmq_bridge *b = NULL;
	cr_assert_eq(rmq_bridge_start(&b, cfg, 2), 0);
	cr_assert_not_null(b);
	cr_assert_null(rmq_bridge_core_get(b, 0), "no producer: the core sees no Kafka route");
	cr_assert_null(rmq_bridge_core_get(b, 1));
	rmq_bridge_stop(b, 0);
	cr_assert_eq(opt("kafka", "on"), 0);
	cr_assert_not(cfg->off);
}
