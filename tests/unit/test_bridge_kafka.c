/* Mock-cluster tests of the bridge: produce through the bridge API with a fake reactor (poll the eventfd, call
 * rmq_bridge_core_poll) and read Kafka back with a librdkafka consumer. Single test thread plays every core. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../../bridge/bridge_internal.h"

#define MAX_COOKIES 4096

struct done_rec {
	int count, err;
	uint8_t reason;
};

struct harness {
	struct rmq_bridge_cfg *cfg;
	struct rmq_bridge *b;
	int ncores;
	struct done_rec done[MAX_COOKIES];
	int ndone;
	struct rmq_bridge_mock ext; /* an "external" Kafka for fault tests; host NULL when unused */
};

static struct harness *H;

static void h_setup(void)
{
	H = calloc(1, sizeof(*H));
	H->cfg = rmq_bridge_cfg_new();
}

static void h_teardown(void)
{
	if (H->b)
		rmq_bridge_stop(H->b, 2000);
	rmq_bridge_mock_stop(&H->ext);
	rmq_bridge_cfg_free(H->cfg);
	free(H);
}

TestSuite(bridge_kafka, .init = h_setup, .fini = h_teardown, .timeout = 60);

static void opt(const char *name, const char *value)
{
	char err[256];
	cr_assert_eq(rmq_bridge_option(H->cfg, name, value, err, sizeof(err)), 0, "%s %s: %s", name, value, err);
}

static void start(int ncores)
{
	H->ncores = ncores;
	cr_assert_eq(rmq_bridge_start(&H->b, H->cfg, ncores), 0);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_done(void *ud, uint64_t cookie, int err, uint8_t reason)
{
	struct harness *h = ud;
	cr_assert_lt(cookie, MAX_COOKIES);
	h->done[cookie].count++;
	h->done[cookie].err = err;
	h->done[cookie].reason = reason;
	h->ndone++;
}

/* The fake reactor: waits on every core's eventfd and serves only a core whose fd fired, so a missing wake-up
 * shows as a timeout. Runs until `want` completions in total or timeout_ms. */
static void reactor_until(int want, int timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;
	while (H->ndone < want && mono_ms() < end) {
		struct pollfd pfd[8];
		for (int c = 0; c < H->ncores; c++)
			pfd[c] = (struct pollfd){.fd = rmq_bridge_core_fd(rmq_bridge_core_get(H->b, c)), .events = POLLIN};
		if (poll(pfd, (nfds_t)H->ncores, 50) <= 0)
			continue;
		for (int c = 0; c < H->ncores; c++)
			if (pfd[c].revents & POLLIN)
				rmq_bridge_core_poll(rmq_bridge_core_get(H->b, c), on_done, H);
	}
}

/* A PUBLISH as the core would hand it over; user properties in wire form. */
struct pubmsg {
	char topic[128], cid[64], payload[128];
	uint8_t props[128];
	struct rmq_publish pub;
	struct rmq_bridge_msg msg;
};

static void mkmsg(struct pubmsg *p, const char *topic, const char *cid, int seq, uint8_t qos)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->topic, sizeof(p->topic), "%s", topic);
	snprintf(p->cid, sizeof(p->cid), "%s", cid);
	snprintf(p->payload, sizeof(p->payload), "%s:%d", cid, seq);
	p->pub = (struct rmq_publish){.qos = qos, .packet_id = 1,
				      .topic = {(const uint8_t *)p->topic, (uint32_t)strlen(p->topic)},
				      .payload = {(const uint8_t *)p->payload, (uint32_t)strlen(p->payload)}};
	size_t used = 0;
	cr_assert_eq(rmq_props_user_add(&p->pub.props, p->props, sizeof(p->props), &used,
					(struct rmq_str){(const uint8_t *)"trip", 4}, (struct rmq_str){(const uint8_t *)"42", 2}),
		     0);
	p->pub.props.present |= RMQ_PBIT(RMQ_PROP_CONTENT_TYPE);
	p->pub.props.content_type = (struct rmq_str){(const uint8_t *)"text/plain", 10};
	p->msg = (struct rmq_bridge_msg){.pub = &p->pub, .client_id = {(const uint8_t *)p->cid,
								    (uint32_t)strlen(p->cid)}, .version = 5};
}

/* Publishes car c's message seq on core (c % ncores); cookie = index. Retries on -ENOBUFS as a core would:
 * poll, wait until writable. */
static int publish(int core, const char *topic, const char *cid, int seq, uint64_t cookie)
{
	struct pubmsg p;
	mkmsg(&p, topic, cid, seq, 1);
	struct rmq_bridge_core *bc = rmq_bridge_core_get(H->b, core);
	return rmq_bridge_publish(bc, &p.msg, cookie);
}

/* ---- consumer side ---------------------------------------------------------------------------- */

struct rec {
	char topic[64], key[64], val[512], hdr_topic[128], hdr_cid[64], hdr_qos[4], hdr_trip[8], hdr_ct[32];
	int32_t partition;
	int64_t offset, ts;
	bool has_key;
};

static void hdr(const rd_kafka_message_t *m, const char *name, char *out, size_t cap)
{
	rd_kafka_headers_t *h = NULL;
	const void *v;
	size_t n;
	out[0] = 0;
	if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &n))
		return;
	snprintf(out, cap, "%.*s", (int)n, (const char *)v);
}

/* Reads `topic` from the beginning of every partition until `want` records or timeout_ms. */
static int consume(const char *topic, struct rec *out, int want, int timeout_ms)
{
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *boot = H->ext.host ? H->ext.bootstraps : rmq_bridge_bootstraps(H->b);
	rd_kafka_conf_set(conf, "bootstrap.servers", boot, e, sizeof(e));
	rd_kafka_conf_set(conf, "group.id", "test", e, sizeof(e));
	rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
	cr_assert_not_null(rk, "%s", e);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	cr_assert_eq(rd_kafka_metadata(rk, 0, rkt, &md, 5000), 0);
	cr_assert_eq(md->topic_cnt, 1);
	int np = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
	for (int i = 0; i < np; i++)
		rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
	cr_assert_eq(rd_kafka_assign(rk, parts), 0);
	rd_kafka_topic_partition_list_destroy(parts);
	int n = 0;
	int64_t end = mono_ms() + timeout_ms;
	while (n < want && mono_ms() < end) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		if (!m->err) {
			struct rec *r = &out[n++];
			memset(r, 0, sizeof(*r));
			snprintf(r->topic, sizeof(r->topic), "%s", rd_kafka_topic_name(m->rkt));
			r->has_key = m->key != NULL;
			snprintf(r->key, sizeof(r->key), "%.*s", (int)m->key_len, (const char *)m->key);
			snprintf(r->val, sizeof(r->val), "%.*s", (int)m->len, (const char *)m->payload);
			r->partition = m->partition;
			r->offset = m->offset;
			r->ts = rd_kafka_message_timestamp(m, NULL);
			hdr(m, "mqtt.topic", r->hdr_topic, sizeof(r->hdr_topic));
			hdr(m, "mqtt.client_id", r->hdr_cid, sizeof(r->hdr_cid));
			hdr(m, "mqtt.qos", r->hdr_qos, sizeof(r->hdr_qos));
			hdr(m, "trip", r->hdr_trip, sizeof(r->hdr_trip));
			hdr(m, "content-type", r->hdr_ct, sizeof(r->hdr_ct));
		}
		rd_kafka_message_destroy(m);
	}
	/* a little longer, to catch duplicates beyond `want` */
	for (int64_t extra = mono_ms() + 300; n < want + 1 && mono_ms() < extra;) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
		if (m && !m->err)
			n++;
		if (m)
			rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return n;
}

/* Every car's messages exactly once, in order, in one partition, keyed by client id. */
static void check_stream(struct rec *r, int n, int cars, int per_car)
{
	cr_assert_eq(n, cars * per_car, "consumed %d, expected %d", n, cars * per_car);
	int next[64] = {0}, part[64];
	for (int c = 0; c < cars; c++)
		part[c] = -1;
	/* records of one partition come in offset order from the consumer */
	for (int i = 0; i < n; i++) {
		int c, seq;
		cr_assert_eq(sscanf(r[i].val, "car-%d:%d", &c, &seq), 2, "payload '%s'", r[i].val);
		cr_assert(c >= 0 && c < cars);
		cr_assert_eq(seq, next[c], "car %d: got seq %d, expected %d (loss, duplicate or reorder)", c, seq,
			     next[c]);
		next[c]++;
		if (part[c] < 0)
			part[c] = r[i].partition;
		cr_assert_eq(r[i].partition, part[c], "car %d spread over partitions", c);
		char cid[16];
		snprintf(cid, sizeof(cid), "car-%d", c);
		cr_assert_str_eq(r[i].key, cid);
	}
}

Test(bridge_kafka, every_message_once_in_order_with_keys_and_headers)
{
	enum { CARS = 8, PER_CAR = 40, N = CARS * PER_CAR };
	opt("route", "cars/+/telemetry -> telemetry");
	start(2);
	for (int s = 0; s < PER_CAR; s++)
		for (int c = 0; c < CARS; c++) {
			char topic[64], cid[16];
			snprintf(topic, sizeof(topic), "cars/%d/telemetry", c);
			snprintf(cid, sizeof(cid), "car-%d", c);
			cr_assert_eq(publish(c % 2, topic, cid, s, (uint64_t)(s * CARS + c)), 1);
		}
	reactor_until(N, 20000);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(H->done[i].count, 1, "cookie %d completed %d times", i, H->done[i].count);
		cr_assert_eq(H->done[i].err, 0);
	}
	static struct rec r[N + 1];
	int n = consume("telemetry", r, N, 15000);
	check_stream(r, n, CARS, PER_CAR);
	cr_assert_str_eq(r[0].hdr_qos, "1");
	cr_assert_str_eq(r[0].hdr_trip, "42");
	cr_assert_str_eq(r[0].hdr_ct, "text/plain");
	cr_assert_str_eq(r[0].hdr_cid, r[0].key);
	cr_assert(strstr(r[0].hdr_topic, "/telemetry"));
	cr_assert_gt(r[0].ts, 1700000000000, "Kafka timestamp = broker receive time");
	struct rmq_bridge_stats st[2];
	rmq_bridge_core_stats(rmq_bridge_core_get(H->b, 0), &st[0]);
	rmq_bridge_core_stats(rmq_bridge_core_get(H->b, 1), &st[1]);
	cr_assert_eq(st[0].produced + st[1].produced, N);
	cr_assert_eq(st[0].delivered + st[1].delivered, N);
	cr_assert_eq(st[0].completions + st[1].completions, N);
	cr_assert_eq(st[0].failed + st[1].failed + st[0].refused + st[1].refused, 0);
}

Test(bridge_kafka, default_route_and_unrouted)
{
	start(1);
	cr_assert_eq(publish(0, "anything/at/all", "car-0", 0, 0), 1);
	cr_assert_eq(publish(0, "$SYS/x", "car-0", 1, 1), 0, "'#' must not route $-topics");
	reactor_until(1, 10000);
	cr_assert_eq(H->done[0].count, 1);
	cr_assert_eq(H->done[1].count, 0);
	static struct rec r[2];
	cr_assert_eq(consume(RMQ_BRIDGE_DEFAULT_TOPIC, r, 1, 10000), 1);
	cr_assert_str_eq(r[0].val, "car-0:0");
	struct rmq_bridge_stats st;
	rmq_bridge_core_stats(rmq_bridge_core_get(H->b, 0), &st);
	cr_assert_eq(st.unrouted, 1);
}

Test(bridge_kafka, route_match_all_template_topic_json_keyless_one_completion)
{
	opt("route-match", "all");
	opt("route", "cars/+/telemetry -> vehicle-${topic[1]} key=${topic[1]} value=json");
	opt("route", "cars/# -> everything key=none headers=off");
	opt("route", "other/# -> never");
	start(1);
	cr_assert_eq(publish(0, "cars/VIN7/telemetry", "car-7", 0, 5), 2);
	reactor_until(1, 10000);
	reactor_until(2, 300); /* a second completion would be a bug */
	cr_assert_eq(H->done[5].count, 1);
	cr_assert_eq(H->done[5].err, 0);
	cr_assert_eq(H->ndone, 1);
	static struct rec r[2];
	cr_assert_eq(consume("vehicle-VIN7", r, 1, 10000), 1);
	cr_assert_str_eq(r[0].key, "VIN7");
	cr_assert(strstr(r[0].val, "\"topic\":\"cars/VIN7/telemetry\",\"client_id\":\"car-7\""), "%s", r[0].val);
	cr_assert(strstr(r[0].val, "\"user_properties\":[[\"trip\",\"42\"]]"), "%s", r[0].val);
	cr_assert(strstr(r[0].val, "\"payload\":\"car-7:0\"}"), "%s", r[0].val);
	cr_assert_eq(consume("everything", r, 1, 10000), 1);
	cr_assert_not(r[0].has_key, "key=none");
	cr_assert_str_eq(r[0].hdr_topic, "", "headers=off");
	cr_assert_str_eq(r[0].val, "car-7:0");
}

Test(bridge_kafka, bad_rendered_topic_fails_with_reason)
{
	opt("route", "cars/+/x -> v-${topic[1]}");
	start(1);
	cr_assert_eq(publish(0, "cars/has space/x", "car-1", 0, 3), 1);
	cr_assert_eq(publish(0, "cars//x", "car-1", 1, 4), 1, "empty level: topic 'v-' is valid");
	reactor_until(2, 10000);
	cr_assert_eq(H->done[3].count, 1);
	cr_assert_eq(H->done[3].err, -EINVAL);
	cr_assert_eq(H->done[3].reason, 0x80);
	cr_assert_eq(H->done[4].err, 0);
	struct rmq_bridge_stats st;
	rmq_bridge_core_stats(rmq_bridge_core_get(H->b, 0), &st);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(st.completions_failed, 1);
}

Test(bridge_kafka, ack_after_broker_returns_zero_but_produces)
{
	opt("ack-after", "broker");
	opt("route", "# -> acked");
	start(1);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(publish(0, "t", "car-0", i, (uint64_t)i), 0);
	static struct rec r[11];
	int n = consume("acked", r, 10, 10000);
	check_stream(r, n, 1, 10);
	reactor_until(1, 200);
	cr_assert_eq(H->ndone, 0, "no completion in ack-after broker mode");
}

Test(bridge_kafka, shared_producer_completes_on_publishing_core)
{
	enum { N = 60 };
	opt("kafka-producers", "1");
	opt("route", "# -> shared");
	start(3);
	for (int i = 0; i < N; i++) {
		char cid[16];
		snprintf(cid, sizeof(cid), "car-%d", i % 3);
		cr_assert_eq(publish(i % 3, "t", cid, i / 3, (uint64_t)i), 1);
	}
	reactor_until(N, 15000);
	for (int i = 0; i < N; i++)
		cr_assert_eq(H->done[i].count, 1, "cookie %d: %d completions", i, H->done[i].count);
	struct rmq_bridge_stats st[3];
	for (int c = 0; c < 3; c++) {
		rmq_bridge_core_stats(rmq_bridge_core_get(H->b, c), &st[c]);
		cr_assert_eq(st[c].completions, N / 3, "core %d reported %lu", c, (unsigned long)st[c].completions);
	}
	cr_assert_eq(st[0].delivered, N, "core 0 serves the shared producer's reports");
	static struct rec r[N + 1];
	check_stream(r, consume("shared", r, N, 10000), 3, N / 3);
}

/* ---- fault tests against an external mock cluster ------------------------------------------- */

static void start_ext(int ncores, int partitions, const char *topic)
{
	char err[256];
	cr_assert_eq(rmq_bridge_mock_start(&H->ext, 3, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rmq_bridge_mock_topic(&H->ext, topic, partitions), 0);
	opt("kafka-brokers", H->ext.bootstraps);
	start(ncores);
}

/* Publishes car (i % cars)'s next message as cookie i, backing off like a core on -ENOBUFS. */
static void stream(int from, int to, int cars)
{
	for (int i = from; i < to; i++) {
		char cid[16];
		snprintf(cid, sizeof(cid), "car-%d", i % cars);
		int rc;
		while ((rc = publish(0, "cars/x/telemetry", cid, i / cars, (uint64_t)i)) == -ENOBUFS) {
			int64_t end = mono_ms() + 10000;
			while (!rmq_bridge_core_writable(rmq_bridge_core_get(H->b, 0)) && mono_ms() < end)
				reactor_until(H->ndone + 1, 20);
		}
		cr_assert_eq(rc, 1, "publish %d: %d", i, rc);
	}
}

static void all_done_ok(int n)
{
	for (int i = 0; i < n; i++) {
		cr_assert_eq(H->done[i].count, 1, "cookie %d completed %d times", i, H->done[i].count);
		cr_assert_eq(H->done[i].err, 0, "cookie %d failed: %d", i, H->done[i].err);
	}
}

Test(bridge_kafka, broker_down_mid_stream_nothing_lost_no_duplicates)
{
	enum { CARS = 6, N = 300 };
	opt("route", "# -> t1");
	opt("kafka-linger-ms", "5");
	start_ext(1, 3, "t1");
	for (int p = 0; p < 3; p++) /* broker 2 leads partition 1 only, so that the others keep flowing */
		rd_kafka_mock_partition_set_leader(H->ext.mc, "t1", p, p + 1);
	stream(0, N / 3, CARS);
	reactor_until(N / 3, 10000);
	cr_assert_eq(H->ndone, N / 3);
	rd_kafka_mock_broker_set_down(H->ext.mc, 2);
	stream(N / 3, 2 * N / 3, CARS);
	reactor_until(2 * N / 3, 2000);
	cr_assert_gt(H->ndone, N / 3, "partitions 0 and 2 keep flowing");
	cr_assert_lt(H->ndone, 2 * N / 3, "partition 1's messages wait for broker 2");
	rd_kafka_mock_broker_set_up(H->ext.mc, 2);
	stream(2 * N / 3, N, CARS);
	reactor_until(N, 20000);
	all_done_ok(N);
	static struct rec r[N + 1];
	check_stream(r, consume("t1", r, N, 15000), CARS, N / CARS);
}

Test(bridge_kafka, retriable_produce_errors_are_retried_once_in_kafka)
{
	enum { CARS = 4, N = 120 };
	opt("route", "# -> t2");
	start_ext(1, 2, "t2");
	stream(0, N / 2, CARS);
	rd_kafka_mock_push_request_errors(H->ext.mc, 0 /* Produce */, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
					  RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT,
					  RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
	stream(N / 2, N, CARS);
	reactor_until(N, 20000);
	all_done_ok(N);
	static struct rec r[N + 1];
	check_stream(r, consume("t2", r, N, 15000), CARS, N / CARS);
}

Test(bridge_kafka, permanent_produce_errors_complete_with_failure_and_reason)
{
	opt("route", "# -> t3");
	start_ext(1, 1, "t3");
	stream(0, 5, 1);
	reactor_until(5, 10000);
	rd_kafka_mock_push_request_errors(H->ext.mc, 0, 1, RD_KAFKA_RESP_ERR_INVALID_RECORD);
	stream(5, 6, 1);
	reactor_until(6, 10000);
	rd_kafka_mock_push_request_errors(H->ext.mc, 0, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	stream(6, 7, 1);
	reactor_until(7, 10000);
	cr_assert_eq(H->done[5].count, 1);
	cr_assert_eq(H->done[5].err, -EIO);
	cr_assert_eq(H->done[5].reason, 0x80);
	cr_assert_eq(H->done[6].err, -EMSGSIZE);
	cr_assert_eq(H->done[6].reason, 0x97, "a limit: quota exceeded");
	struct rmq_bridge_stats st;
	rmq_bridge_core_stats(rmq_bridge_core_get(H->b, 0), &st);
	cr_assert_eq(st.completions_failed, 2);
	stream(7, 10, 1); /* the producer keeps working after a permanent error */
	reactor_until(10, 10000);
	for (int i = 7; i < 10; i++)
		cr_assert_eq(H->done[i].err, 0, "cookie %d: %d", i, H->done[i].err);
}

Test(bridge_kafka, kafka_unreachable_then_back_and_queue_full_backpressure)
{
	enum { N = 40 };
	opt("route", "# -> t4");
	opt("X", "queue.buffering.max.messages=16");
	char err[256];
	cr_assert_eq(rmq_bridge_mock_start(&H->ext, 3, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rmq_bridge_mock_topic(&H->ext, "t4", 2), 0);
	for (int id = 1; id <= 3; id++)
		rd_kafka_mock_broker_set_down(H->ext.mc, id);
	opt("kafka-brokers", H->ext.bootstraps);
	start(1);
	struct rmq_bridge_core *bc = rmq_bridge_core_get(H->b, 0);
	int accepted = 0, rc = 0;
	for (int i = 0; i < N && (rc = publish(0, "t", "car-0", i, (uint64_t)i)) == 1; i++)
		accepted++;
	cr_assert_eq(rc, -ENOBUFS);
	cr_assert_eq(accepted, 16, "the queue holds queue.buffering.max.messages");
	cr_assert_not(rmq_bridge_core_writable(bc));
	reactor_until(1, 1000);
	cr_assert_eq(H->ndone, 0, "nothing is acknowledged while Kafka is unreachable");
	struct rmq_bridge_stats st;
	rmq_bridge_core_stats(bc, &st);
	cr_assert_eq(st.refused, 1);
	cr_assert_gt(st.kafka_errors, 0, "the outage is counted");
	for (int id = 1; id <= 3; id++)
		rd_kafka_mock_broker_set_up(H->ext.mc, id);
	reactor_until(accepted, 20000);
	cr_assert(rmq_bridge_core_writable(bc));
	stream(accepted, N, 1);
	reactor_until(N, 20000);
	all_done_ok(N);
	static struct rec r[N + 1];
	check_stream(r, consume("t4", r, N, 15000), 1, N);
}

Test(bridge_kafka, qos0_overflow_drop_counts)
{
	opt("route", "# -> t5");
	opt("qos0-overflow", "drop");
	opt("X", "queue.buffering.max.messages=4");
	char err[256];
	cr_assert_eq(rmq_bridge_mock_start(&H->ext, 1, err, sizeof(err)), 0, "%s", err);
	rd_kafka_mock_broker_set_down(H->ext.mc, 1);
	opt("kafka-brokers", H->ext.bootstraps);
	start(1);
	struct rmq_bridge_core *bc = rmq_bridge_core_get(H->b, 0);
	struct pubmsg p;
	for (int i = 0; i < 10; i++) {
		mkmsg(&p, "t", "car-0", i, 0);
		int rc = rmq_bridge_publish(bc, &p.msg, (uint64_t)i);
		cr_assert_eq(rc, 0, "QoS 0: nothing to wait for, even when dropped");
	}
	mkmsg(&p, "t", "car-0", 10, 1);
	cr_assert_eq(rmq_bridge_publish(bc, &p.msg, 10), -ENOBUFS, "QoS 1 still blocks");
	struct rmq_bridge_stats st;
	rmq_bridge_core_stats(bc, &st);
	cr_assert_eq(st.produced, 4, "the queue holds 4");
	cr_assert_eq(st.dropped_qos0, 6);
	cr_assert_eq(st.refused, 1);
	rd_kafka_mock_broker_set_up(H->ext.mc, 1);
	for (int64_t end = mono_ms() + 20000; st.delivered < 4 && mono_ms() < end; rmq_bridge_core_stats(bc, &st))
		reactor_until(1, 50);
	cr_assert_eq(st.delivered, 4);
	cr_assert_eq(H->ndone, 0, "no completion for QoS 0");
}

Test(bridge_kafka, stop_flushes_lingering_messages)
{
	enum { N = 200 };
	opt("route", "# -> t6");
	opt("kafka-linger-ms", "30000"); /* without a flush nothing would leave for 30 s */
	start_ext(1, 2, "t6");
	stream(0, N, 4);
	int64_t t0 = mono_ms();
	rmq_bridge_stop(H->b, 10000);
	H->b = NULL;
	cr_assert_lt(mono_ms() - t0, 10000, "flush must not wait for linger.ms");
	static struct rec r[N + 1];
	check_stream(r, consume("t6", r, N, 15000), 4, N / 4);
}

Test(bridge_kafka, stop_gives_up_after_timeout_when_kafka_is_down)
{
	opt("route", "# -> t7");
	start_ext(1, 1, "t7");
	rd_kafka_mock_broker_set_down(H->ext.mc, 1);
	rd_kafka_mock_broker_set_down(H->ext.mc, 2);
	rd_kafka_mock_broker_set_down(H->ext.mc, 3);
	stream(0, 10, 1);
	int64_t t0 = mono_ms();
	rmq_bridge_stop(H->b, 500);
	H->b = NULL;
	int64_t took = mono_ms() - t0;
	cr_assert_lt(took, 5000, "stop took %ld ms", (long)took);
	cr_assert_eq(H->ndone, 0);
}

Test(bridge_kafka, queue_full_mid_publish_defers_rest_and_completes_once)
{
	opt("route-match", "all");
	opt("route", "# -> d1");
	opt("route", "# -> d2");
	opt("X", "queue.buffering.max.messages=3");
	char err[256];
	cr_assert_eq(rmq_bridge_mock_start(&H->ext, 1, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rmq_bridge_mock_topic(&H->ext, "d1", 1), 0);
	cr_assert_eq(rmq_bridge_mock_topic(&H->ext, "d2", 1), 0);
	rd_kafka_mock_broker_set_down(H->ext.mc, 1);
	opt("kafka-brokers", H->ext.bootstraps);
	start(1);
	struct rmq_bridge_core *bc = rmq_bridge_core_get(H->b, 0);
	cr_assert_eq(publish(0, "t", "car-0", 0, 0), 2, "both routes fit");
	cr_assert_eq(publish(0, "t", "car-0", 1, 1), 2, "d1 fits, d2 is deferred: still accepted");
	cr_assert_eq(publish(0, "t", "car-0", 2, 2), -ENOBUFS, "nothing may overtake the deferred route");
	cr_assert_not(rmq_bridge_core_writable(bc));
	struct rmq_bridge_stats st;
	rmq_bridge_core_stats(bc, &st);
	cr_assert_eq(st.deferred, 1);
	cr_assert_eq(st.produced, 3);
	rd_kafka_mock_broker_set_up(H->ext.mc, 1);
	reactor_until(2, 20000);
	reactor_until(3, 300);
	cr_assert_eq(H->ndone, 2);
	cr_assert_eq(H->done[0].count, 1);
	cr_assert_eq(H->done[1].count, 1);
	cr_assert_eq(H->done[1].err, 0);
	cr_assert(rmq_bridge_core_writable(bc));
	cr_assert_eq(publish(0, "t", "car-0", 2, 2), 2);
	reactor_until(3, 10000);
	static struct rec r[4];
	check_stream(r, consume("d1", r, 3, 10000), 1, 3);
	check_stream(r, consume("d2", r, 3, 10000), 1, 3);
}

Test(bridge_kafka, acks_1_switches_idempotence_off_unless_forced)
{
	opt("route", "# -> a1");
	opt("kafka-acks", "1");
	start_ext(1, 1, "a1");
	stream(0, 5, 1);
	reactor_until(5, 10000);
	all_done_ok(5);
	rmq_bridge_stop(H->b, 2000);
	H->b = NULL;
	opt("X", "enable.idempotence=true"); /* the operator insists: librdkafka refuses acks=1 with it */
	cr_assert_eq(rmq_bridge_start(&H->b, H->cfg, 1), -EINVAL);
	cr_assert_null(H->b);
}

Test(bridge_kafka, start_rejects_bad_combinations_cleanly)
{
	cr_assert_eq(rmq_bridge_start(&H->b, H->cfg, 0), -EINVAL, "no cores");
	opt("kafka-brokers", "127.0.0.1:1");
	opt("X", "transactional.id=x");
	opt("X", "enable.idempotence=false"); /* transactions need idempotence: rd_kafka_new refuses */
	cr_assert_eq(rmq_bridge_start(&H->b, H->cfg, 2), -EINVAL);
	cr_assert_null(H->b);
}

Test(bridge_kafka, more_producers_than_cores_is_clamped)
{
	opt("kafka-producers", "8");
	opt("route", "# -> c1");
	start(2);
	cr_assert_eq(publish(1, "t", "car-1", 0, 0), 1);
	reactor_until(1, 10000);
	cr_assert_eq(H->done[0].count, 1);
	struct rmq_bridge_stats st;
	rmq_bridge_core_stats(rmq_bridge_core_get(H->b, 1), &st);
	cr_assert_eq(st.delivered, 1, "core 1 has its own producer");
	cr_assert_null(rmq_bridge_core_get(H->b, 2));
	cr_assert_null(rmq_bridge_core_get(H->b, -1));
}

Test(bridge_kafka, core_aligned_partitioning_keeps_each_core_on_its_share)
{
	enum { CARS = 12, PER_CAR = 5, N = CARS * PER_CAR };
	opt("route", "# -> al");
	opt("kafka-partitioning", "core-aligned");
	start_ext(2, 6, "al");
	for (int s = 0; s < PER_CAR; s++)
		for (int c = 0; c < CARS; c++) {
			char cid[16];
			snprintf(cid, sizeof(cid), "car-%d", c);
			cr_assert_eq(publish(c % 2, "t", cid, s, (uint64_t)(s * CARS + c)), 1);
		}
	reactor_until(N, 20000);
	all_done_ok(N);
	static struct rec r[N + 1];
	int n = consume("al", r, N, 15000);
	check_stream(r, n, CARS, PER_CAR); /* once, in order, one partition per car */
	bool used[6] = {0};
	for (int i = 0; i < n; i++) {
		int c;
		sscanf(r[i].val, "car-%d:", &c);
		cr_assert_eq(r[i].partition % 2, c % 2, "car %d (core %d) landed on partition %d", c, c % 2,
			     r[i].partition);
		used[r[i].partition] = true;
	}
	cr_assert(used[0] + used[2] + used[4] >= 2 && used[1] + used[3] + used[5] >= 2, "each share is spread");
}
