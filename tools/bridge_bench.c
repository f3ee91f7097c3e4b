/* ringmq-bridge-bench: messages/s to librdkafka's mock cluster, (a) a bare librdkafka producer (the ceiling) vs
 * (b) the same messages through rmq_bridge_publish() with a one-core fake reactor. Single-threaded main.
 *
 *   ringmq-bridge-bench [--messages N] [--size BYTES] [--cars C] [--linger MS]
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
	long messages, size, cars, linger;
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

static void reactor_wait(struct bench *b, struct rmq_bridge_core *bc)
{
	struct pollfd p = {.fd = rmq_bridge_core_fd(bc), .events = POLLIN};
	if (poll(&p, 1, 10) > 0)
		rmq_bridge_core_poll(bc, on_done, b);
}

static double through_bridge(struct bench *b)
{
	char err[256], linger[32];
	snprintf(linger, sizeof(linger), "%ld", b->linger);
	struct rmq_bridge_cfg *cfg = rmq_bridge_cfg_new();
	struct rmq_bridge *br;
	if (rmq_bridge_option(cfg, "route", "cars/+/telemetry -> bridged", err, sizeof(err)) ||
	    rmq_bridge_option(cfg, "kafka-brokers", b->bootstrap, err, sizeof(err)) ||
	    rmq_bridge_option(cfg, "kafka-linger-ms", linger, err, sizeof(err)) ||
	    rmq_bridge_start(&br, cfg, 1))
		return fprintf(stderr, "ringmq-bridge-bench: bridge: %s\n", err), 0;
	struct rmq_bridge_core *bc = rmq_bridge_core_get(br, 0);
	b->done = 0;
	double t0 = 0;
	for (long i = 0; i <= b->messages; i++) {
		if (i == 1) { /* message 0 warms up: connection, metadata, producer id */
			while (b->done < 1)
				reactor_wait(b, bc);
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
		while (rmq_bridge_publish(bc, &m, (uint64_t)i) == -ENOBUFS)
			while (!rmq_bridge_core_writable(bc))
				reactor_wait(b, bc);
	}
	while (b->done < b->messages)
		reactor_wait(b, bc);
	double t = now_s() - t0;
	rmq_bridge_stop(br, 5000);
	rmq_bridge_cfg_free(cfg);
	return (double)b->messages / t;
}

int main(int argc, char **argv)
{
	struct bench b = {.messages = 200000, .size = 100, .cars = 1000, .linger = 5};
	for (int i = 1; i + 1 < argc; i += 2) {
		long *v = strcmp(argv[i], "--messages") == 0 ? &b.messages
			  : strcmp(argv[i], "--size") == 0    ? &b.size
			  : strcmp(argv[i], "--cars") == 0    ? &b.cars
			  : strcmp(argv[i], "--linger") == 0  ? &b.linger
							      : NULL;
		if (!v || !rmq_bridge_parse_long(argv[i + 1], 1, 100000000, v))
			return fprintf(stderr, "usage: ringmq-bridge-bench [--messages N] [--size BYTES] [--cars C] "
					       "[--linger MS]\n"), 2;
	}
	char err[256];
	struct rmq_bridge_mock mock;
	if (rmq_bridge_mock_start(&mock, 3, err, sizeof(err)))
		return fprintf(stderr, "ringmq-bridge-bench: %s\n", err), 1;
	rmq_bridge_mock_topic(&mock, "bare", 4);
	rmq_bridge_mock_topic(&mock, "bridged", 4);
	b.bootstrap = mock.bootstraps;
	b.payload = calloc(1, (size_t)b.size);
	memset(b.payload, 'x', (size_t)b.size);
	double a = bare(&b), br = through_bridge(&b);
	printf("bare librdkafka producer: %.0f msgs/s\n", a);
	printf("through rmq_bridge_publish: %.0f msgs/s (%.0f%% of bare)\n", br, a > 0 ? 100.0 * br / a : 0);
	printf("(%ld messages of %ld bytes, %ld keys, linger %ld ms, mock cluster of 3 brokers, 4 partitions)\n",
	       b.messages, b.size, b.cars, b.linger);
	free(b.payload);
	rmq_bridge_mock_stop(&mock);
	return 0;
}
