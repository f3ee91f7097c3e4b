/* Unit tests for ringmq-bench kafka-verify against librdkafka's mock cluster: a producer thread plays the
 * bridge (stamped records keyed by car), the verifier must count exactly-once and per-car order right. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bench.h"
#include "kafka_verify.h"
#include "stamp.h"

struct feed {
	const char *bootstraps, *topic;
	int cars, per_car;
	bool corrupt;   /* one duplicate, one swapped pair, one missing record, one foreign record */
};

static void produce_one(rd_kafka_t *p, const char *topic, uint32_t car, uint32_t seq)
{
	uint8_t v[64];
	memset(v, 'x', sizeof(v));
	struct rmq_stamp s = {.run_id = 7, .send_ns = rmq_bench_now_ns(), .pub_id = car, .seq = seq};
	rmq_bench_stamp_write(v, &s);
	char key[16];
	snprintf(key, sizeof(key), "car%u", car);
	cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
				       RD_KAFKA_V_VALUE(v, sizeof(v)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				       RD_KAFKA_V_END), 0);
}

static void *feeder(void *arg)
{
	struct feed *f = arg;
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", f->bootstraps, e, sizeof(e));
	rd_kafka_conf_set(conf, "linger.ms", "5", e, sizeof(e));
	rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	cr_assert_not_null(p, "%s", e);
	usleep(1500 * 1000); /* after the verifier has assigned its partitions */
	for (int car = 0; car < f->cars; car++) {
		for (int seq = 0; seq < f->per_car; seq++) {
			if (f->corrupt && car == 1 && seq == 5) {
				produce_one(p, f->topic, 1, 6); /* 6 before 5: out of order */
				produce_one(p, f->topic, 1, 5);
				seq = 6;
				continue;
			}
			if (f->corrupt && car == 2 && seq == 10)
				continue;                       /* never sent: a gap */
			produce_one(p, f->topic, (uint32_t)car, (uint32_t)seq);
			if (f->corrupt && car == 3 && seq == 0)
				produce_one(p, f->topic, 3, 0); /* twice */
		}
	}
	if (f->corrupt)
		cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(f->topic), RD_KAFKA_V_VALUE("plain text", 10),
					       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END), 0);
	cr_assert_eq(rd_kafka_flush(p, 10000), 0);
	rd_kafka_destroy(p);
	return NULL;
}

static void run(const char *topic, bool corrupt, struct rmq_kv_result *r)
{
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e)); /* it only hosts the mock cluster */
	rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	cr_assert_not_null(host, "%s", e);
	rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
	cr_assert_not_null(mc);
	cr_assert_eq(rd_kafka_mock_topic_create(mc, topic, 3, 1), 0);
	struct feed f = {.bootstraps = rd_kafka_mock_cluster_bootstraps(mc), .topic = topic, .cars = 10,
			 .per_car = 50, .corrupt = corrupt};
	struct rmq_bench_opts o;
	memset(&o, 0, sizeof(o));
	snprintf(o.kafka_brokers, sizeof(o.kafka_brokers), "%s", f.bootstraps);
	snprintf(o.kafka_topic, sizeof(o.kafka_topic), "%s", topic);
	o.duration = 5;
	o.run_id = 7;
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, feeder, &f), 0);
	char err[256] = "";
	int rc = rmq_bench_kafka_verify_run(&o, r, false, err, sizeof(err));
	pthread_join(t, NULL);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(r->partitions, 3);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(host);
}

Test(bench_kafka, clean_stream_is_exactly_once_in_order, .timeout = 30)
{
	struct rmq_kv_result *r = malloc(sizeof(*r));
	run("telemetry", false, r);
	cr_assert_eq(r->records, 500);
	cr_assert_eq(r->unique, 500);
	cr_assert_eq(r->cars, 10);
	cr_assert_eq(r->dup + r->ooo + r->gaps + r->foreign + r->errors, 0);
	cr_assert_eq(r->lat.count, 500);
	cr_assert(rmq_bench_kafka_verify_ok(r, 500));
	cr_assert_not(rmq_bench_kafka_verify_ok(r, 501), "one record short of what the scenario sent");
	free(r);
}

Test(bench_kafka, duplicates_reordering_gaps_and_foreign_records_are_caught, .timeout = 30)
{
	struct rmq_kv_result *r = malloc(sizeof(*r));
	run("telemetry2", true, r);
	cr_assert_eq(r->records, 500 + 1 /* dup */ - 1 /* gap */ + 1 /* foreign */);
	cr_assert_eq(r->foreign, 1);
	cr_assert_eq(r->dup, 1);
	cr_assert_eq(r->ooo, 1);
	cr_assert_eq(r->gaps, 1);
	cr_assert_eq(r->unique, 499);
	cr_assert_not(rmq_bench_kafka_verify_ok(r, 0));
	free(r);
}
