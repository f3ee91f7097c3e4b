/* Unit tests of the Kafka -> MQTT route syntax (--consume), its topic templates and the consumer options:
 * good values, bad values and their one-line reasons. Runs in the ringmq-unit binary (no Kafka needed). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../bridge/bridge_internal.h"

static struct rmq_bridge_cfg *cfg;
static char err[256];

static void setup(void) { cfg = rmq_bridge_cfg_new(); err[0] = 0; }
static void teardown(void) { rmq_bridge_cfg_free(cfg); }

TestSuite(bridge_consume, .init = setup, .fini = teardown);

static int opt(const char *name, const char *value)
{
	return rmq_bridge_option(cfg, name, value, err, sizeof(err));
}

/* Headers of a test record: "region" = "eu", "empty" = "", "slash" = "a/b". */
static int test_header(void *ud, const char *name, size_t n, const void **v, size_t *vn)
{
	(void)ud;
	static const char *const tab[][2] = {{"region", "eu"}, {"empty", ""}, {"slash", "a/b"}};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strlen(tab[i][0]) == n && memcmp(tab[i][0], name, n) == 0) {
			*v = tab[i][1];
			*vn = strlen(tab[i][1]);
			return 0;
		}
	return -ENOENT;
}

/* Renders route 0 for a record with key `key` (NULL: null key); returns the rc, the topic in out. */
static int render(const char *key, size_t keylen, char *out, size_t outlen)
{
	struct rmq_bbuf b = {0};
	struct rmq_bridge_krec k = {"commands", key, keylen, test_header, NULL};
	int rc = rmq_bridge_consume_render(&cfg->consumes[0], &k, &b);
	snprintf(out, outlen, "%.*s", (int)b.len, b.p ? b.p : "");
	rmq_bridge_buf_free(&b);
	return rc;
}

Test(bridge_consume, defaults)
{
	cr_assert_eq(cfg->nconsumes, 0);
	cr_assert_null(cfg->group);
	cr_assert_not(cfg->offset_latest);
	cr_assert_eq(cfg->consume_delay_ms, RMQ_BRIDGE_DEFAULT_CONSUME_DELAY_MS);
	cr_assert_eq(cfg->consume_max, RMQ_BRIDGE_DEFAULT_CONSUME_MAX);
}

Test(bridge_consume, route_defaults_and_options)
{
	cr_assert_eq(opt("consume", "commands -> cars/${key}/cmd"), 0, "%s", err);
	cr_assert_eq(opt("consume", "  state\t->  cars/${key}/state   qos=2 retain=on "), 0, "%s", err);
	cr_assert_eq(opt("consume", "alerts -> fleet/all qos=0 retain=off"), 0, "%s", err);
	cr_assert_eq(cfg->nconsumes, 3);
	cr_assert_str_eq(cfg->consumes[0].ktopic, "commands");
	cr_assert_eq(cfg->consumes[0].qos, 1);
	cr_assert_not(cfg->consumes[0].retain);
	cr_assert_eq(cfg->consumes[0].nparts, 3);
	cr_assert_str_eq(cfg->consumes[1].ktopic, "state");
	cr_assert_eq(cfg->consumes[1].qos, 2);
	cr_assert(cfg->consumes[1].retain);
	cr_assert_eq(cfg->consumes[2].qos, 0);
	cr_assert_eq(cfg->consumes[2].nparts, 1);
	cr_assert_eq(cfg->consumes[2].parts[0].kind, TC_LIT);
}

Test(bridge_consume, bad_routes_say_why)
{
	static const struct {
		const char *spec, *why;
	} bad[] = {
		{"commands", "expected 'KAFKA_TOPIC -> MQTT_TOPIC"},
		{"commands cars/x", "expected 'KAFKA_TOPIC -> MQTT_TOPIC"},
		{"commands => cars/x", "expected 'KAFKA_TOPIC -> MQTT_TOPIC"},
		{"-> cars/x", "expected 'KAFKA_TOPIC -> MQTT_TOPIC"},
		{"", "expected 'KAFKA_TOPIC -> MQTT_TOPIC"},
		{"com/mands -> cars/x", "not a valid Kafka topic name"},
		{".. -> cars/x", "not a valid Kafka topic name"},
		{"commands -> cars/+/cmd", "'+', '#' and NUL are not allowed"},
		{"commands -> cars/#", "'+', '#' and NUL are not allowed"},
		{"commands -> cars/${vin}/cmd", "unknown variable at '${vin}/cmd'"},
		{"commands -> cars/${key/cmd", "unknown variable"},
		{"commands -> cars/${header.}/cmd", "unknown variable"},
		{"commands -> cars/${key}/cmd qos=3", "unknown option 'qos=3'"},
		{"commands -> cars/${key}/cmd qos=", "unknown option 'qos='"},
		{"commands -> cars/${key}/cmd qos=11", "unknown option 'qos=11'"},
		{"commands -> cars/${key}/cmd retain=yes", "unknown option 'retain=yes'"},
		{"commands -> cars/${key}/cmd key=x", "unknown option 'key=x'"},
		{"commands -> a qos=1 qos=1 qos=1 qos=1", "too many words"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_assert_eq(opt("consume", bad[i].spec), -EINVAL, "accepted '%s'", bad[i].spec);
		cr_assert(strstr(err, bad[i].why), "'%s': reason '%s' lacks '%s'", bad[i].spec, err, bad[i].why);
	}
	cr_assert_eq(opt("consume", NULL), -EINVAL);
	cr_assert_eq(cfg->nconsumes, 0, "a refused route must not be kept");
}

Test(bridge_consume, at_most_max_routes)
{
	for (int i = 0; i < RMQ_BRIDGE_MAX_CONSUMES; i++)
		cr_assert_eq(opt("consume", "c -> t"), 0, "%s", err);
	cr_assert_eq(opt("consume", "c -> t"), -EINVAL);
	cr_assert(strstr(err, "at most"), "%s", err);
}

Test(bridge_consume, render_key_header_topic)
{
	char t[128];
	cr_assert_eq(opt("consume", "commands -> cars/${key}/cmd/${header.region}/${topic}"), 0, "%s", err);
	cr_assert_eq(render("VIN42", 5, t, sizeof(t)), 0);
	cr_assert_str_eq(t, "cars/VIN42/cmd/eu/commands");
	/* the key is binary-safe in length: only its first keylen bytes count */
	cr_assert_eq(render("VIN42xyz", 3, t, sizeof(t)), 0);
	cr_assert_str_eq(t, "cars/VIN/cmd/eu/commands");
}

Test(bridge_consume, render_fixed_topic_needs_no_key)
{
	char t[64];
	cr_assert_eq(opt("consume", "broadcast -> fleet/all/cmd"), 0, "%s", err);
	cr_assert_eq(render(NULL, 0, t, sizeof(t)), 0);
	cr_assert_str_eq(t, "fleet/all/cmd");
}

Test(bridge_consume, render_refuses_absent_or_empty)
{
	char t[64];
	cr_assert_eq(opt("consume", "commands -> cars/${key}/cmd"), 0, "%s", err);
	cr_assert_eq(render(NULL, 0, t, sizeof(t)), -ENOENT, "null key");
	cr_assert_eq(render("", 0, t, sizeof(t)), -ENOENT, "empty key");
	rmq_bridge_cfg_free(cfg);
	cfg = rmq_bridge_cfg_new();
	cr_assert_eq(opt("consume", "commands -> x/${header.missing}"), 0, "%s", err);
	cr_assert_eq(render("k", 1, t, sizeof(t)), -ENOENT, "absent header");
	rmq_bridge_cfg_free(cfg);
	cfg = rmq_bridge_cfg_new();
	cr_assert_eq(opt("consume", "commands -> x/${header.empty}"), 0, "%s", err);
	cr_assert_eq(render("k", 1, t, sizeof(t)), -ENOENT, "empty header");
}

Test(bridge_consume, render_refuses_topic_injection)
{
	char t[64];
	cr_assert_eq(opt("consume", "commands -> cars/${key}/cmd"), 0, "%s", err);
	static const char *const keys[] = {"VIN1/other", "+", "#", "VIN#", "a+b", "/"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert_eq(render(keys[i], strlen(keys[i]), t, sizeof(t)), -EINVAL, "key '%s' accepted", keys[i]);
	cr_assert_eq(render("VIN\0x", 5, t, sizeof(t)), -EINVAL, "NUL in key");
	cr_assert_eq(render("\xff\xfe", 2, t, sizeof(t)), -EINVAL, "ill-formed UTF-8");
	cr_assert_eq(render("\xc3\xa9t\xc3\xa9", 5, t, sizeof(t)), 0, "well-formed UTF-8 is fine");
	rmq_bridge_cfg_free(cfg);
	cfg = rmq_bridge_cfg_new();
	cr_assert_eq(opt("consume", "commands -> x/${header.slash}"), 0, "%s", err);
	cr_assert_eq(render("k", 1, t, sizeof(t)), -EINVAL, "header with '/'");
}

Test(bridge_consume, group_reset_delay_options)
{
	cr_assert_eq(opt("kafka-group", "fleet-eu"), 0, "%s", err);
	cr_assert_str_eq(cfg->group, "fleet-eu");
	cr_assert_eq(opt("kafka-group", "other"), 0, "%s", err);
	cr_assert_str_eq(cfg->group, "other", "the last value wins");
	cr_assert_eq(opt("kafka-group", ""), -EINVAL);
	cr_assert_eq(opt("kafka-group", "a b"), -EINVAL);
	cr_assert(strstr(err, "no spaces"), "%s", err);
	cr_assert_eq(opt("kafka-group", NULL), -EINVAL);
	cr_assert_str_eq(cfg->group, "other", "a refused value changes nothing");

	cr_assert_eq(opt("kafka-offset-reset", "latest"), 0, "%s", err);
	cr_assert(cfg->offset_latest);
	cr_assert_eq(opt("kafka-offset-reset", "earliest"), 0, "%s", err);
	cr_assert_not(cfg->offset_latest);
	cr_assert_eq(opt("kafka-offset-reset", "smallest"), -EINVAL);
	cr_assert(strstr(err, "expected earliest or latest"), "%s", err);

	cr_assert_eq(opt("consume-delay-ms", "0"), 0, "%s", err);
	cr_assert_eq(cfg->consume_delay_ms, 0);
	cr_assert_eq(opt("consume-delay-ms", "-1"), -EINVAL);
	cr_assert_eq(opt("consume-delay-ms", "10s"), -EINVAL);
	cr_assert_eq(opt("consume-delay-ms", "3600001"), -EINVAL);

	cr_assert_eq(opt("consume-max-outstanding", "1"), 0, "%s", err);
	cr_assert_eq(cfg->consume_max, 1);
	cr_assert_eq(opt("consume-max-outstanding", "0"), -EINVAL, "a bound of 0 would never consume");
	cr_assert_eq(opt("consume-max-outstanding", "10000001"), -EINVAL);
	cr_assert_eq(opt("consume-max-outstanding", ""), -EINVAL);
	cr_assert_eq(cfg->consume_max, 1, "a refused value changes nothing");
}
