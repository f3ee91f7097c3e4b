/* ringmq-bench kafka-verify: consumes the Kafka topic a scenario feeds and checks that every stamped message
 * arrived exactly once and in per-car order, with MQTT-publish-to-Kafka-consume latency. Main thread only. */
#include "bench.h"
#include "kafka_verify.h"
#include "report.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

/* How long one metadata request may take before we say the brokers are unreachable. */
#define METADATA_TIMEOUT_MS 5000

static volatile sig_atomic_t stop_kv;

static void on_signal(int sig)
{
	(void)sig;
	stop_kv = 1;
}

static rd_kafka_t *make_consumer(const struct rmq_bench_opts *o, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char group[64];
	/* A group of our own: we assign partitions by hand and never commit, so we disturb nobody. */
	snprintf(group, sizeof(group), "ringmq-bench-verify-%u", (unsigned)rmq_bench_now_ns());
	if (rd_kafka_conf_set(conf, "bootstrap.servers", o->kafka_brokers, err, errlen) ||
	    rd_kafka_conf_set(conf, "group.id", group, err, errlen) ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
	    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, errlen) ||
	    rd_kafka_conf_set(conf, "log_level", "2", err, errlen)) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
	if (!rk)
		rd_kafka_conf_destroy(conf);
	return rk;
}

/* Partition count of the topic, or a negative errno with a message. Waits at most until `end`. */
static int partitions_of(rd_kafka_t *rk, const char *topic, uint64_t end, char *err, size_t errlen)
{
	uint64_t now = rmq_bench_now_ns();
	int timeout = METADATA_TIMEOUT_MS;
	if (end > now && (end - now) / 1000000 < (uint64_t)timeout)
		timeout = (int)((end - now) / 1000000);
	if (timeout < 100)
		timeout = 100;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout);
	rd_kafka_topic_destroy(rkt);
	if (e) {
		snprintf(err, errlen, "metadata for topic %s: %s", topic, rd_kafka_err2str(e));
		return -EHOSTUNREACH;
	}
	int n = md->topic_cnt == 1 && !md->topics[0].err ? md->topics[0].partition_cnt : 0;
	if (md->topic_cnt == 1 && md->topics[0].err)
		snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(md->topics[0].err));
	rd_kafka_metadata_destroy(md);
	return n > 0 ? n : -ENOENT;
}

static void record(struct rmq_kv_result *r, struct rmq_seq_tracker *trk, struct rmq_hist *lat,
		   const struct rmq_bench_opts *o, const rd_kafka_message_t *m)
{
	struct rmq_stamp st;
	r->records++;
	if (!rmq_bench_stamp_read(m->payload, m->len, &st) || (o->run_id && st.run_id != o->run_id)) {
		r->foreign++;
		return;
	}
	uint64_t now = rmq_bench_now_ns();
	rmq_bench_hist_record(lat, now > st.send_ns ? now - st.send_ns : 0);
	int v = rmq_bench_seq_record(trk, st.pub_id, st.seq);
	if (v == RMQ_SEQ_DUP)
		r->dup++;
	else if (v == RMQ_SEQ_LATE)
		r->ooo++;
}

int rmq_bench_kafka_verify_run(const struct rmq_bench_opts *o, struct rmq_kv_result *r, bool announce, char *err,
			       size_t errlen)
{
	memset(r, 0, offsetof(struct rmq_kv_result, lat));
	rmq_bench_hist_snap_clear(&r->lat);
	rd_kafka_t *rk = make_consumer(o, err, errlen);
	if (!rk)
		return -EINVAL;
	int rc = 0;
	struct rmq_hist *lat = malloc(sizeof(*lat));
	struct rmq_seq_tracker trk;
	rmq_bench_seq_init(&trk, false);
	if (!lat) {
		rd_kafka_destroy(rk);
		return -ENOMEM;
	}
	rmq_bench_hist_init(lat);
	uint64_t start = rmq_bench_now_ns(), end = start + (uint64_t)(o->duration * 1e9);
	/* A topic that exists already holds older runs: read from its end. One that appears only once the
	 * scenario produces holds nothing but this run: read it from the beginning. */
	int64_t from = RD_KAFKA_OFFSET_END;
	int np;
	while ((np = partitions_of(rk, o->kafka_topic, end, err, errlen)) == -ENOENT && rmq_bench_now_ns() < end &&
	       !stop_kv)
		from = RD_KAFKA_OFFSET_BEGINNING;
	if (np < 0) {
		rc = np;
		if (np == -ENOENT)
			snprintf(err, errlen, "topic %s never appeared within --duration", o->kafka_topic);
		goto out;
	}
	r->partitions = np;
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
	for (int i = 0; i < np; i++)
		rd_kafka_topic_partition_list_add(parts, o->kafka_topic, i)->offset = from;
	rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (e) {
		snprintf(err, errlen, "assign %s: %s", o->kafka_topic, rd_kafka_err2str(e));
		rc = -EIO;
		goto out;
	}
	if (announce)
		fprintf(stderr, "kafka-verify: consuming %s (%d partitions) from the %s for %.6g s\n", o->kafka_topic,
			np, from == RD_KAFKA_OFFSET_END ? "end" : "beginning", o->duration);
	uint64_t next_print = rmq_bench_now_ns() + 1000000000ull, last_records = 0;
	while (rmq_bench_now_ns() < end && !stop_kv) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (m) {
			if (!m->err)
				record(r, &trk, lat, o, m);
			else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				r->errors++;
			rd_kafka_message_destroy(m);
		}
		uint64_t now = rmq_bench_now_ns();
		if (announce && !o->quiet && now >= next_print) {
			struct rmq_hist_snap *s = malloc(sizeof(*s));
			if (s) {
				rmq_bench_hist_snap_clear(s);
				rmq_bench_hist_snap_add(s, lat);
				fprintf(stderr, "[%6.1fs kafka  ] records %llu (+%llu/s) duplicates %llu out of order %llu "
					"p99 %.2f ms\n", (double)(now - start) / 1e9, (unsigned long long)r->records,
					(unsigned long long)(r->records - last_records), (unsigned long long)r->dup,
					(unsigned long long)r->ooo, (double)rmq_bench_hist_percentile(s, 99) / 1e6);
				free(s);
			}
			last_records = r->records;
			next_print = now + 1000000000ull;
		}
	}
	struct rmq_seq_totals t;
	rmq_bench_seq_totals(&trk, &t);
	r->unique = t.unique;
	r->gaps = t.gaps;
	r->cars = t.publishers;
	rmq_bench_hist_snap_add(&r->lat, lat);
out:
	r->seconds = (double)(rmq_bench_now_ns() - start) / 1e9;
	rmq_bench_seq_free(&trk);
	free(lat);
	rd_kafka_destroy(rk);
	return rc;
}

bool rmq_bench_kafka_verify_ok(const struct rmq_kv_result *r, uint64_t expect)
{
	return !r->dup && !r->ooo && !r->gaps && !r->errors && (!expect || r->unique == expect);
}

static int write_json(const char *path, const struct rmq_bench_opts *o, const struct rmq_kv_result *r,
		      const struct rmq_lat_summary *l, bool ok)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "{\n  \"mode\": \"kafka-verify\",\n  \"topic\": \"%s\",\n  \"partitions\": %d,\n"
		"  \"seconds\": %.3f,\n  \"records\": %llu,\n  \"foreign\": %llu,\n  \"cars\": %u,\n"
		"  \"unique\": %llu,\n  \"duplicated\": %llu,\n  \"out_of_order\": %llu,\n  \"sequence_gaps\": %llu,\n"
		"  \"errors\": %llu,\n  \"expected\": %llu,\n", o->kafka_topic, r->partitions, r->seconds,
		(unsigned long long)r->records, (unsigned long long)r->foreign, r->cars,
		(unsigned long long)r->unique, (unsigned long long)r->dup, (unsigned long long)r->ooo,
		(unsigned long long)r->gaps, (unsigned long long)r->errors, (unsigned long long)o->expect);
	fprintf(f, "  \"latency\": {\"count\": %llu, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
		"\"p999_us\": %.3f, \"max_us\": %.3f},\n  \"ok\": %s\n}\n", (unsigned long long)l->count, l->p50,
		l->p90, l->p99, l->p999, l->max, ok ? "true" : "false");
	int rc = ferror(f) ? -EIO : 0;
	if (fclose(f))
		rc = -errno;
	return rc;
}

int rmq_bench_kafka_verify(const struct rmq_bench_opts *o)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct rmq_kv_result *r = malloc(sizeof(*r));
	if (!r)
		return 1;
	char err[512] = "";
	int rc = rmq_bench_kafka_verify_run(o, r, true, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ringmq-bench: kafka-verify: %s\n", err[0] ? err : strerror(-rc));
		free(r);
		return 1;
	}
	struct rmq_lat_summary l;
	rmq_bench_lat_summary(&l, &r->lat);
	bool ok = rmq_bench_kafka_verify_ok(r, o->expect);
	printf("ringmq-bench kafka-verify on %s (%s), %d partitions, %.1f s\n", o->kafka_topic, o->kafka_brokers,
	       r->partitions, r->seconds);
	printf("records            %llu (%llu without a stamp from this run), from %u cars\n",
	       (unsigned long long)r->records, (unsigned long long)r->foreign, r->cars);
	printf("exactly once       unique %llu%s", (unsigned long long)r->unique, o->expect ? " of " : "");
	if (o->expect)
		printf("%llu expected", (unsigned long long)o->expect);
	printf(", duplicated %llu, missing inside a car's sequence %llu\n", (unsigned long long)r->dup,
	       (unsigned long long)r->gaps);
	printf("per-car order      %llu out of order\n", (unsigned long long)r->ooo);
	if (l.count)
		printf("MQTT->Kafka        p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f us (publish to consume)\n",
		       l.p50, l.p90, l.p99, l.p999, l.max);
	printf("result             %s\n", ok ? "ok" : "FAILED: not exactly once in per-car order");
	if (o->json[0] && (rc = write_json(o->json, o, r, &l, ok)))
		fprintf(stderr, "ringmq-bench: --json %s: %s\n", o->json, strerror(-rc));
	free(r);
	return ok ? 0 : 1;
}
