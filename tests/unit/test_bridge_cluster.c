/* Unit tests of cross-node delivery's pure parts (bridge/cluster_set.c): the reference-counted filter set and its
 * matching, route-summary keys, the $share inner filter, the PUBLISH record codec, and the cluster options.
 * Runs in the ringmq-unit binary (no Kafka needed). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../bridge/bridge_internal.h"

#define S(x) (const uint8_t *)(x), strlen(x)

static struct rmq_cfset set;

static void teardown(void) { rmq_cfset_free(&set); }

TestSuite(bridge_cluster, .fini = teardown);

Test(bridge_cluster, refcounts_report_first_and_last)
{
	cr_assert_eq(rmq_cfset_add(&set, S("cars/V1/cmd")), 1);
	cr_assert_eq(rmq_cfset_add(&set, S("cars/V1/cmd")), 2);
	cr_assert_eq(rmq_cfset_add(&set, S("cars/+/cmd")), 1);
	cr_assert_eq(rmq_cfset_count(&set), 2);
	cr_assert_eq(rmq_cfset_refs(&set, S("cars/V1/cmd")), 2);
	cr_assert_eq(rmq_cfset_del(&set, S("cars/V1/cmd")), 1);
	cr_assert_eq(rmq_cfset_del(&set, S("cars/V1/cmd")), 0);
	cr_assert_eq(rmq_cfset_del(&set, S("cars/V1/cmd")), -ENOENT);
	cr_assert_eq(rmq_cfset_del(&set, S("never")), -ENOENT);
	cr_assert_eq(rmq_cfset_del(&set, S("cars/+/cmd")), 0);
	cr_assert_eq(rmq_cfset_count(&set), 0);
	cr_assert_eq(rmq_cfset_refs(&set, S("cars/+/cmd")), 0);
}

Test(bridge_cluster, exact_and_wildcard_matching)
{
	cr_assert_not(rmq_cfset_match(&set, S("a/b")), "empty set matches nothing");
	rmq_cfset_add(&set, S("cars/V1/cmd"));
	rmq_cfset_add(&set, S("fleet/+/state"));
	rmq_cfset_add(&set, S("logs/#"));
	cr_assert(rmq_cfset_match(&set, S("cars/V1/cmd")));
	cr_assert_not(rmq_cfset_match(&set, S("cars/V2/cmd")));
	cr_assert_not(rmq_cfset_match(&set, S("cars/V1/cmd/x")));
	cr_assert_not(rmq_cfset_match(&set, S("cars/V1")));
	cr_assert(rmq_cfset_match(&set, S("fleet/V9/state")));
	cr_assert_not(rmq_cfset_match(&set, S("fleet/V9/state/x")));
	cr_assert(rmq_cfset_match(&set, S("logs")), "'logs/#' matches its parent [MQTT-4.7.1-2]");
	cr_assert(rmq_cfset_match(&set, S("logs/a/b/c")));
	cr_assert_not(rmq_cfset_match(&set, S("log")));
	rmq_cfset_add(&set, S("#"));
	cr_assert(rmq_cfset_match(&set, S("anything/at/all")));
	cr_assert_not(rmq_cfset_match(&set, S("$SYS/broker/uptime")), "'#' never matches $ topics [MQTT-4.7.2-1]");
	rmq_cfset_del(&set, S("#"));
	rmq_cfset_del(&set, S("fleet/+/state"));
	cr_assert_not(rmq_cfset_match(&set, S("fleet/V9/state")), "a removed wildcard matches no more");
	cr_assert(rmq_cfset_match(&set, S("logs/x")), "the other wildcard survived the swap-remove");
}

/* Enough exact filters to grow the table several times; each stays findable, removed ones are gone. */
Test(bridge_cluster, many_filters_survive_growth)
{
	char f[64];
	for (int i = 0; i < 5000; i++) {
		snprintf(f, sizeof(f), "cars/VIN%05d/cmd", i);
		cr_assert_eq(rmq_cfset_add(&set, S(f)), 1);
	}
	for (int i = 0; i < 5000; i += 2) {
		snprintf(f, sizeof(f), "cars/VIN%05d/cmd", i);
		cr_assert_eq(rmq_cfset_del(&set, S(f)), 0);
	}
	cr_assert_eq(rmq_cfset_count(&set), 2500);
	for (int i = 0; i < 5000; i++) {
		snprintf(f, sizeof(f), "cars/VIN%05d/cmd", i);
		cr_assert_eq(rmq_cfset_match(&set, S(f)), i % 2 == 1, "%s", f);
	}
}

static void count_cb(void *ud, const uint8_t *f, size_t len)
{
	(void)f;
	(void)len;
	(*(int *)ud)++;
}

Test(bridge_cluster, each_visits_every_filter_once)
{
	rmq_cfset_add(&set, S("a"));
	rmq_cfset_add(&set, S("a"));
	rmq_cfset_add(&set, S("b/+"));
	rmq_cfset_add(&set, S("c/#"));
	int n = 0;
	rmq_cfset_each(&set, count_cb, &n);
	cr_assert_eq(n, 3);
}

Test(bridge_cluster, route_keys_round_trip_and_reject_garbage)
{
	struct rmq_bbuf b = {0};
	struct rmq_str node, f;
	cr_assert_eq(rmq_cluster_key(&b, "host-1:1883", S("cars/+/cmd")), 0);
	cr_assert_eq(b.len, strlen("host-1:1883") + 1 + strlen("cars/+/cmd"));
	cr_assert_eq(rmq_cluster_key_split(b.p, b.len, &node, &f), 0);
	cr_assert(node.len == 11 && memcmp(node.p, "host-1:1883", 11) == 0);
	cr_assert(f.len == 10 && memcmp(f.p, "cars/+/cmd", 10) == 0);
	cr_assert_eq(rmq_cluster_key_split("nonul", 5, &node, &f), -EINVAL);
	cr_assert_eq(rmq_cluster_key_split("\0a/b", 4, &node, &f), -EINVAL, "empty node id");
	cr_assert_eq(rmq_cluster_key_split("n\0", 2, &node, &f), -EINVAL, "empty filter");
	cr_assert_eq(rmq_cluster_key_split("n\0a/#/b", 7, &node, &f), -EINVAL, "'#' not last: not a filter");
	cr_assert_eq(rmq_cluster_key_split("n\0a\0b", 5, &node, &f), -EINVAL, "NUL inside the filter");
	cr_assert_eq(rmq_cluster_key_split(NULL, 0, &node, &f), -EINVAL);
	rmq_bridge_buf_free(&b);
}

Test(bridge_cluster, shared_subscription_inner_filter)
{
	struct rmq_str s = rmq_cluster_inner_filter(S("$share/g1/cars/+/cmd"));
	cr_assert(s.len == 10 && memcmp(s.p, "cars/+/cmd", 10) == 0);
	s = rmq_cluster_inner_filter(S("cars/#"));
	cr_assert(s.len == 6 && memcmp(s.p, "cars/#", 6) == 0);
	s = rmq_cluster_inner_filter(S("$share/nogroupslash"));
	cr_assert_eq(s.len, strlen("$share/nogroupslash"), "malformed: left as it is");
}

Test(bridge_cluster, publish_codec_carries_qos_retain_payload_and_properties)
{
	uint8_t ubuf[128];
	size_t used = 0;
	struct rmq_publish p = {.qos = 1, .retain = true, .packet_id = 77};
	p.topic = (struct rmq_str){(const uint8_t *)"cars/V1/state", 13};
	p.payload = (struct rmq_str){(const uint8_t *)"\0bin\xff", 5};
	p.props.present = RMQ_PBIT(RMQ_PROP_CONTENT_TYPE) | RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS);
	p.props.content_type = (struct rmq_str){(const uint8_t *)"x/y", 3};
	p.props.topic_alias = 5;
	cr_assert_eq(rmq_props_user_add(&p.props, ubuf, sizeof(ubuf), &used, (struct rmq_str){(const uint8_t *)"k", 1},
					(struct rmq_str){(const uint8_t *)"v", 1}), RMQ_OK);
	struct rmq_bbuf b = {0};
	cr_assert_eq(rmq_cluster_encode(&b, &p), 0);
	struct rmq_publish q;
	cr_assert_eq(rmq_cluster_decode(b.p, b.len, &q), 0);
	cr_assert_eq(q.qos, 1);
	cr_assert(q.retain);
	cr_assert_eq(q.packet_id, 0, "packet ids are per hop");
	cr_assert(q.topic.len == 13 && memcmp(q.topic.p, "cars/V1/state", 13) == 0);
	cr_assert(q.payload.len == 5 && memcmp(q.payload.p, "\0bin\xff", 5) == 0);
	cr_assert(q.props.present & RMQ_PBIT(RMQ_PROP_CONTENT_TYPE));
	cr_assert_not(q.props.present & RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS), "topic alias is per hop");
	uint32_t pos = 0;
	struct rmq_str k, v;
	cr_assert(rmq_props_user_next(&q.props, &pos, &k, &v));
	cr_assert(k.len == 1 && k.p[0] == 'k' && v.len == 1 && v.p[0] == 'v');
	/* negative space: truncated, trailing bytes, garbage, not a PUBLISH */
	cr_assert_eq(rmq_cluster_decode(b.p, b.len - 1, &q), -EINVAL);
	char more[256];
	memcpy(more, b.p, b.len);
	more[b.len] = 0;
	cr_assert_eq(rmq_cluster_decode(more, b.len + 1, &q), -EINVAL);
	cr_assert_eq(rmq_cluster_decode("\xc0\x00", 2, &q), -EINVAL, "PINGREQ is not a message");
	cr_assert_eq(rmq_cluster_decode("garbage", 7, &q), -EINVAL);
	cr_assert_eq(rmq_cluster_decode(NULL, 0, &q), -EINVAL);
	rmq_bridge_buf_free(&b);
}

Test(bridge_cluster, message_expiry_counts_the_time_between_nodes)
{
	struct rmq_props p = {0};
	cr_assert_eq(rmq_cluster_expiry_left(&p, 1000, 999999), 0, "no expiry: nothing to do");
	p.present = RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY);
	p.message_expiry = 10;
	cr_assert_eq(rmq_cluster_expiry_left(&p, 1000, 4500), 0);
	cr_assert_eq(p.message_expiry, 7, "3.5 s in transit: 3 whole seconds off");
	cr_assert_eq(rmq_cluster_expiry_left(&p, 1000, 1000 + 7000), -ETIME, "run out: dropped");
	p.message_expiry = 5;
	cr_assert_eq(rmq_cluster_expiry_left(&p, 2000, 1000), 0, "a clock behind the sender's takes nothing off");
	cr_assert_eq(p.message_expiry, 5);
	cr_assert_eq(rmq_cluster_expiry_left(&p, -1, 1000), 0, "no timestamp");
}

Test(bridge_cluster, options_good_and_bad)
{
	char err[256];
	struct rmq_bridge_cfg *cfg = rmq_bridge_cfg_new();
	cr_assert_eq(rmq_bridge_option(cfg, "cluster-topic", "ringmq.cluster", err, sizeof(err)), 0);
	cr_assert_str_eq(cfg->cluster_topic, "ringmq.cluster");
	cr_assert_eq(rmq_bridge_option(cfg, "node-id", "eu-1:1883", err, sizeof(err)), 0);
	cr_assert_eq(rmq_bridge_option(cfg, "cluster-retain-topic", "r", err, sizeof(err)), 0);
	cr_assert_eq(rmq_bridge_option(cfg, "cluster-topic", "a b", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "cluster-topic"), "%s", err);
	cr_assert_eq(rmq_bridge_option(cfg, "cluster-routes-topic", "..", err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_bridge_option(cfg, "node-id", "", err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_bridge_option(cfg, "node-id", "a\tb", err, sizeof(err)), -EINVAL);
	char longid[RMQ_CLUSTER_NODE_MAX + 2];
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	cr_assert_eq(rmq_bridge_option(cfg, "node-id", longid, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(cfg->node_id, "eu-1:1883", "a refused value leaves the old one");
	cr_assert_eq(cfg->cluster_since_ms, 0, "off unless main sets it (--data-dir)");
	cr_assert_eq(rmq_bridge_option(cfg, "cluster-resume-since", "1764100000123", err, sizeof(err)), 0);
	cr_assert_eq(cfg->cluster_since_ms, 1764100000123LL);
	static const char *const bad[] = {"", "12x", "-5", "1764100000", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(rmq_bridge_option(cfg, "cluster-resume-since", bad[i], err, sizeof(err)), -EINVAL, "%s",
			     bad[i]);
		cr_assert(strstr(err, "cluster-resume-since"), "%s", err);
	}
	cr_assert_eq(cfg->cluster_since_ms, 1764100000123LL, "a refused value leaves the old one");
	rmq_bridge_cfg_free(cfg);
}
