/* ringmq-bridge-bench: messages/s to librdkafka's mock cluster, (a) a bare librdkafka producer (the ceiling) vs
 * (b) the same messages through rmq_bridge_publish() with a one-core fake reactor. Single-threaded main.
 *
 *   ringmq-bridge-bench [--messages N] [--size BYTES] [--cars C] [--linger MS] [--runs R]
 *                       [--cores N] [--partitions P]
 * The sides alternate R times (a shared machine is noisy); best and median of each are reported. With --cores N
 * the bridge side runs N producers (car i on core i % N, as a single-threaded fake reactor) twice: partitioned
 * by key over all partitions (default) and core-aligned (kafka-partitioning core-aligned).
 * Both write the same records (key = client id, value of BYTES, the bridge's headers) with the same producer
 * settings (idempotent, murmur2_random) to the same cluster; each side waits for its last delivery report. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "../bridge/bridge_internal.h"

struct bench {
	long messages, size, cars, linger, runs, cores, partitions;
	const char *bootstrap;
	char *payload;
	long done;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)m;
	((struct bench *)opaque)->done++;
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
	char e[256];
	if (rd_kafka_conf_set(c, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "ringmq-bridge-bench: %s\n", e);
		exit(1);
	}
}

static double bare(struct bench *b)
{
	char e[256], linger[32];
	snprintf(linger, sizeof(linger), "%ld", b->linger);
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	set(c, "bootstrap.servers", b->bootstrap);
	set(c, "enable.idempotence", "true");
	set(c, "partitioner", "murmur2_random");
	set(c, "message.timeout.ms", "0");
	set(c, "linger.ms", linger);
	rd_kafka_conf_set_dr_msg_cb(c, on_dr);
	rd_kafka_conf_set_opaque(c, b);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
	if (!rk)
		return fprintf(stderr, "ringmq-bridge-bench: %s\n", e), 0;
	/* Warm-up: connection, metadata and producer id are not part of the measurement. */
	b->done = 0;
	rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bare"), RD_KAFKA_V_VALUE("w", 1), RD_KAFKA_V_END);
	while (b->done < 1)
		rd_kafka_poll(rk, 10);
	b->done = 0;
	double t0 = now_s();
	for (long i = 0; i < b->messages; i++) {
		char cid[32], topic[64];
		snprintf(cid, sizeof(cid), "car-%ld", i % b->cars);
		snprintf(topic, sizeof(topic), "cars/%s/telemetry", cid);
		for (;;) {
			rd_kafka_headers_t *h = rd_kafka_headers_new(4);
			rd_kafka_header_add(h, "mqtt.topic", -1, topic, -1);
			rd_kafka_header_add(h, "mqtt.client_id", -1, cid, -1);
			rd_kafka_header_add(h, "mqtt.qos", -1, "1", 1);
			rd_kafka_resp_err_t err = rd_kafka_producev(
				rk, RD_KAFKA_V_TOPIC("bare"), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				RD_KAFKA_V_KEY(cid, strlen(cid)), RD_KAFKA_V_VALUE(b->payload, (size_t)b->size),
				RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
			if (!err)
				break;
			rd_kafka_headers_destroy(h);
			rd_kafka_poll(rk, 5);
		}
		if (i % 1024 == 0)
			rd_kafka_poll(rk, 0); /* serve reports in batches, as an event loop would */
	}
	while (b->done < b->messages)
		rd_kafka_poll(rk, 10);
	double t = now_s() - t0;
	rd_kafka_destroy(rk);
	return (double)b->messages / t;
}

static void on_done(void *ud, uint64_t cookie, int err, uint8_t reason)
{
	(void)cookie;
	(void)reason;
	struct bench *b = ud;
	if (err)
		fprintf(stderr, "ringmq-bridge-bench: completion error %d\n", err);
	b->done++;
}

/* Serves every core whose eventfd fired (waits up to 10 ms). */
static void reactor_wait(struct bench *b, struct rmq_bridge *br)
{
	struct pollfd p[64];
	int n = (int)b->cores;
	for (int c = 0; c < n; c++)
		p[c] = (struct pollfd){.fd = rmq_bridge_core_fd(rmq_bridge_core_get(br, c)), .events = POLLIN};
	if (poll(p, (nfds_t)n, 10) <= 0)
		return;
	for (int c = 0; c < n; c++)
		if (p[c].revents)
			rmq_bridge_core_poll(rmq_bridge_core_get(br, c), on_done, b);
}

static double through_bridge(struct bench *b, bool aligned)
{
	char err[256], linger[32];
	snprintf(linger, sizeof(linger), "%ld", b->linger);
	struct rmq_bridge_cfg *cfg = rmq_bridge_cfg_new();
	struct rmq_bridge *br;
	if (rmq_bridge_option(cfg, "route", "cars/+/telemetry -> bridged", err, sizeof(err)) ||
	    rmq_bridge_option(cfg, "kafka-brokers", b->bootstrap, err, sizeof(err)) ||
	    rmq_bridge_option(cfg, "kafka-linger-ms", linger, err, sizeof(err)) ||
	    rmq_bridge_option(cfg, "kafka-partitioning", aligned ? "core-aligned" : "key", err, sizeof(err)) ||
	    rmq_bridge_start(&br, cfg, (int)b->cores))
		return fprintf(stderr, "ringmq-bridge-bench: bridge: %s\n", err), 0;
	b->done = 0;
	double t0 = 0;
	for (long i = 0; i <= b->messages; i++) {
		if (i == 1) { /* message 0 warms up: connection, metadata, producer id */
			while (b->done < 1)
				reactor_wait(b, br);
			b->done = 0;
			t0 = now_s();
		}
		char cid[32], topic[64];
		snprintf(cid, sizeof(cid), "car-%ld", i % b->cars);
		snprintf(topic, sizeof(topic), "cars/%s/telemetry", cid);
		struct rmq_publish pub = {.qos = 1, .packet_id = 1,
					  .topic = {(const uint8_t *)topic, (uint32_t)strlen(topic)},
					  .payload = {(const uint8_t *)b->payload, (uint32_t)b->size}};
		struct rmq_bridge_msg m = {.pub = &pub, .client_id = {(const uint8_t *)cid, (uint32_t)strlen(cid)},
					   .version = 5};
		struct rmq_bridge_core *bc = rmq_bridge_core_get(br, (int)(i % b->cars % b->cores));
		while (rmq_bridge_publish(bc, &m, (uint64_t)i) == -ENOBUFS)
			while (!rmq_bridge_core_writable(bc))
				reactor_wait(b, br);
	}
	while (b->done < b->messages)
		reactor_wait(b, br);
	double t = now_s() - t0;
	rmq_bridge_stop(br, 5000);
	rmq_bridge_cfg_free(cfg);
	return (double)b->messages / t;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

int main(int argc, char **argv)
{
	struct bench b = {.messages = 200000, .size = 100, .cars = 1000, .linger = 5, .runs = 3, .cores = 1,
			  .partitions = 4};
	for (int i = 1; i + 1 < argc; i += 2) {
		long *v = strcmp(argv[i], "--messages") == 0 ? &b.messages
			  : strcmp(argv[i], "--size") == 0    ? &b.size
			  : strcmp(argv[i], "--cars") == 0    ? &b.cars
			  : strcmp(argv[i], "--linger") == 0  ? &b.linger
			  : strcmp(argv[i], "--runs") == 0    ? &b.runs
			  : strcmp(argv[i], "--cores") == 0   ? &b.cores
			  : strcmp(argv[i], "--partitions") == 0 ? &b.partitions
							      : NULL;
		if (!v || !rmq_bridge_parse_long(argv[i + 1], 1, 100000000, v))
			return fprintf(stderr, "usage: ringmq-bridge-bench [--messages N] [--size BYTES] [--cars C] "
					       "[--linger MS] [--runs R] [--cores N] [--partitions P]\n"), 2;
	}
	if (b.cores > 64) {
		fprintf(stderr, "ringmq-bridge-bench: --cores: at most 64\n");
		return 2;
	}
	char err[256];
	struct rmq_bridge_mock mock;
	if (rmq_bridge_mock_start(&mock, 3, err, sizeof(err)))
		return fprintf(stderr, "ringmq-bridge-bench: %s\n", err), 1;
	rmq_bridge_mock_topic(&mock, "bare", (int)b.partitions);
	rmq_bridge_mock_topic(&mock, "bridged", (int)b.partitions);
	b.bootstrap = mock.bootstraps;
	b.payload = calloc(1, (size_t)b.size);
	memset(b.payload, 'x', (size_t)b.size);
	enum { MAX_RUNS = 32 };
	double a[MAX_RUNS], br[MAX_RUNS], al[MAX_RUNS];
	int runs = b.runs < MAX_RUNS ? (int)b.runs : MAX_RUNS;
	for (int r = 0; r < runs; r++) {
		a[r] = bare(&b);
		br[r] = through_bridge(&b, false);
		al[r] = b.cores > 1 ? through_bridge(&b, true) : 0;
	}
	qsort(a, (size_t)runs, sizeof(double), cmp_double);
	qsort(br, (size_t)runs, sizeof(double), cmp_double);
	qsort(al, (size_t)runs, sizeof(double), cmp_double);
	double am = a[runs / 2], bm = br[runs / 2];
	printf("bare librdkafka producer (1):   best %.0f, median %.0f msgs/s\n", a[runs - 1], am);
	printf("through rmq_bridge_publish (%ld): best %.0f, median %.0f msgs/s (median %.0f%% of bare)\n", b.cores,
	       br[runs - 1], bm, am > 0 ? 100.0 * bm / am : 0);
	if (b.cores > 1)
		printf("  ... core-aligned partitioning: best %.0f, median %.0f msgs/s (median %.0f%% of key)\n",
		       al[runs - 1], al[runs / 2], bm > 0 ? 100.0 * al[runs / 2] / bm : 0);
	printf("(%d runs of %ld messages of %ld bytes, %ld keys, linger %ld ms, mock cluster of 3 brokers, "
	       "%ld partitions)\n", runs, b.messages, b.size, b.cars, b.linger, b.partitions);
	free(b.payload);
	rmq_bridge_mock_stop(&mock);
	return 0;
}
