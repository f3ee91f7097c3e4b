/* ringmq-codec-bench: decode and encode cost of the MQTT codec on one core (ns/packet, packets/s) for
 * a v3.1.1 and a v5 PUBLISH (64-byte payload) and SUBSCRIBEs with 5 filters. Single-threaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringmq/proto.h"

/* Each figure is the best of ROUNDS rounds of about ROUND_NS: the machine is shared, and the
 * fastest round is the one least disturbed by other processes. 8 figures x 300 ms keep a run < 3 s. */
#define ROUND_NS 30000000ull
#define ROUNDS 10
#define BATCH 1024
#define PAYLOAD_LEN 64

#define S(lit) ((struct rmq_str){(const uint8_t *)(lit), (uint32_t)(sizeof(lit) - 1)})

static void fatal(const char *what, long rc)
{
	fprintf(stderr, "ringmq-codec-bench: %s: %ld (%s)\n", what, rc, rmq_proto_err_str((int)rc));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct bench_case {
	const char *name;
	uint8_t version;
	struct rmq_packet pkt;
	uint8_t wire[512];
	size_t wire_len;
};

static volatile uint64_t sink; /* keeps the compiler from dropping the measured work */

static void report(const char *what, const char *name, double best, double mean)
{
	printf("%-7s %-32s %7.1f ns/packet %12.0f packets/s  (mean of rounds %.1f ns)\n", what, name, best,
	       1e9 / best, mean);
}

static void decode_batch(const struct bench_case *c)
{
	struct rmq_decode_ctx ctx = {.version = c->version, .role = RMQ_ROLE_SERVER};
	struct rmq_packet out;
	for (int i = 0; i < BATCH; i++) {
		int rc = rmq_proto_decode(c->wire, c->wire_len, &ctx, &out);
		if (rc != RMQ_OK)
			fatal("decode", rc);
		sink += out.flags;
	}
}

static void encode_batch(const struct bench_case *c)
{
	uint8_t buf[512];
	for (int i = 0; i < BATCH; i++) {
		ssize_t len = rmq_proto_encode(buf, sizeof buf, c->version, &c->pkt);
		if (len <= 0)
			fatal("encode", len);
		sink += buf[len - 1];
	}
}

/* Runs `batch` in rounds; reports the best and the mean ns per packet. */
static void measure(const char *what, const struct bench_case *c, void (*batch)(const struct bench_case *))
{
	double best = 1e18, sum = 0;
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t n = 0, start = now_ns(), elapsed;
		do {
			batch(c);
			n += BATCH;
		} while ((elapsed = now_ns() - start) < ROUND_NS);
		double per = (double)elapsed / (double)n;
		sum += per;
		if (per < best)
			best = per;
	}
	report(what, c->name, best, sum / ROUNDS);
}

static void publish_case(struct bench_case *c, const char *name, uint8_t version, uint8_t *user_buf, size_t cap)
{
	static uint8_t payload[PAYLOAD_LEN];
	memset(payload, 'p', sizeof payload);
	c->name = name;
	c->version = version;
	c->pkt = (struct rmq_packet){.type = RMQ_PUBLISH};
	struct rmq_publish *p = &c->pkt.u.publish;
	p->qos = 1;
	p->packet_id = 4242;
	p->topic = S("fleet/VF1RFB00X12345678/telemetry");
	p->payload = (struct rmq_str){payload, sizeof payload};
	if (version == RMQ_V5) {
		size_t used = 0;
		p->props.present = RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY);
		p->props.message_expiry = 3600;
		int rc = rmq_props_user_add(&p->props, user_buf, cap, &used, S("ecu"), S("gw-2"));
		if (rc)
			fatal("user property", rc);
	}
}

static void subscribe_case(struct bench_case *c, const char *name, uint8_t version, uint8_t *list, size_t cap)
{
	static const char *filters[] = {"fleet/+/telemetry", "fleet/+/status", "fleet/VF1RFB00X12345678/cmd/#",
					"$share/ingest/fleet/+/gps", "ota/+/progress"};
	c->name = name;
	c->version = version;
	c->pkt = (struct rmq_packet){.type = RMQ_SUBSCRIBE};
	struct rmq_subscribe *s = &c->pkt.u.subscribe;
	s->packet_id = 7;
	size_t used = 0;
	for (int i = 0; i < 5; i++) {
		struct rmq_str f = {(const uint8_t *)filters[i], (uint32_t)strlen(filters[i])};
		int rc = rmq_sub_add(s, list, cap, &used, f, 1);
		if (rc)
			fatal("subscribe entry", rc);
	}
	if (version == RMQ_V5) {
		s->props.sub_id_count = 1;
		s->props.sub_ids[0] = 12;
	}
}

int main(void)
{
	static struct bench_case cases[4];
	static uint8_t bufs[4][256];
	publish_case(&cases[0], "PUBLISH v3.1.1 QoS1 64B", RMQ_V311, bufs[0], sizeof bufs[0]);
	publish_case(&cases[1], "PUBLISH v5 QoS1 64B +2 props", RMQ_V5, bufs[1], sizeof bufs[1]);
	subscribe_case(&cases[2], "SUBSCRIBE v3.1.1 5 filters", RMQ_V311, bufs[2], sizeof bufs[2]);
	subscribe_case(&cases[3], "SUBSCRIBE v5 5 filters +sub id", RMQ_V5, bufs[3], sizeof bufs[3]);
	for (size_t i = 0; i < 4; i++) {
		ssize_t n = rmq_proto_encode(cases[i].wire, sizeof cases[i].wire, cases[i].version, &cases[i].pkt);
		if (n <= 0)
			fatal("encode", n);
		cases[i].wire_len = (size_t)n;
	}
	printf("ringmq-codec-bench: one core; best of %d rounds of %u ms per figure\n", ROUNDS,
	       (unsigned)(ROUND_NS / 1000000));
	for (size_t i = 0; i < 4; i++) {
		printf("%-7s %-32s %zu bytes on the wire\n", "packet", cases[i].name, cases[i].wire_len);
		measure("decode", &cases[i], decode_batch);
		measure("encode", &cases[i], encode_batch);
	}
	return 0;
}
