/* ringmq-persist-gen: writes a --data-dir holding a state log of a given size (for timing ringmq's start-up
 * recovery): sessions with subscriptions, retained messages, then queue churn up to the size. Main thread only. */
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/persist.h"
#include "store/wal.h"

#define UD 0x5800000000000000ull
#define STATE_IS_PUBLISH 1   /* enum out_state OUT_PUBLISH (core.h) */

struct gen {
	struct rmq_wal *w;
	struct io_uring ring;
	uint8_t rec[4096], msg[2048];
	uint64_t records, bytes;
};

static void pump(struct gen *g, bool wait)
{
	struct io_uring_cqe *cqe;
	if (rmq_wal_prep(g->w, &g->ring, UD) < 0) {
		fprintf(stderr, "persist-gen: log failed\n");
		exit(1);
	}
	io_uring_submit(&g->ring);
	if (wait && !rmq_wal_idle(g->w))
		io_uring_wait_cqe(&g->ring, &cqe);
	while (io_uring_peek_cqe(&g->ring, &cqe) == 0) {
		uint64_t u = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&g->ring, cqe);
		rmq_wal_complete(g->w, u, res);
	}
}

static void put(struct gen *g, const struct rmq_persist_rec *r)
{
	ssize_t n = rmq_persist_encode(g->rec, sizeof(g->rec), r);
	if (n < 0 || (size_t)n > sizeof(g->rec)) {
		fprintf(stderr, "persist-gen: record too large\n");
		exit(1);
	}
	while (rmq_wal_append(g->w, r->type, g->rec, (uint32_t)n, 0) == -ENOBUFS)
		pump(g, true);   /* the stage is full: let the write in flight finish */
	g->records++;
	g->bytes += (uint64_t)n + RMQ_WAL_HDR;
	if ((g->records & 255) == 0)
		pump(g, false);
}

static struct rmq_str str(char *buf, size_t cap, const char *fmt, uint64_t i)
{
	int n = snprintf(buf, cap, fmt, (unsigned long long)i);
	return (struct rmq_str){(const uint8_t *)buf, (uint32_t)n};
}

static void with_msg(struct gen *g, struct rmq_persist_rec *r, const char *topic, size_t payload)
{
	static uint8_t body[1024];
	struct rmq_publish p;
	memset(&p, 0, sizeof(p));
	memset(body, 'x', sizeof(body));
	p.qos = 1;
	p.topic = (struct rmq_str){(const uint8_t *)topic, (uint32_t)strlen(topic)};
	p.payload = (struct rmq_str){body, (uint32_t)(payload < sizeof(body) ? payload : sizeof(body))};
	ssize_t n = rmq_persist_msg_encode(g->msg, sizeof(g->msg), &p);
	if (n < 0) {
		fprintf(stderr, "persist-gen: message encoding failed\n");
		exit(1);
	}
	r->msg = g->msg;
	r->msg_len = (uint32_t)n;
	r->qos = 1;
	r->state = STATE_IS_PUBLISH;
}

int main(int argc, char **argv)
{
	uint64_t mb = 1024, sessions = 10000, retained = 10000, payload = 256;
	static const struct option lo[] = {{"mb", 1, 0, 'm'}, {"sessions", 1, 0, 's'}, {"retained", 1, 0, 'r'},
					   {"payload", 1, 0, 'p'}, {0, 0, 0, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		uint64_t v = strtoull(optarg, NULL, 10);
		if (ch == 'm')
			mb = v;
		else if (ch == 's')
			sessions = v ? v : 1;
		else if (ch == 'r')
			retained = v;
		else if (ch == 'p')
			payload = v;
		else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: ringmq-persist-gen [--mb N] [--sessions N] [--retained N] [--payload B] DATA_DIR\n"
				"  writes DATA_DIR for ringmq --cores 1 --data-dir DATA_DIR (DATA_DIR must not exist)\n");
		return 2;
	}
	const char *dir = argv[optind];
	char err[512], path[600];
	if (mkdir(dir, 0755)) {
		fprintf(stderr, "persist-gen: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (rmq_persist_meta_check(dir, 1, err, sizeof(err))) {
		fprintf(stderr, "persist-gen: %s\n", err);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/core-0", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/core-0/state", dir);
	struct gen *g = calloc(1, sizeof(*g));
	struct rmq_wal_opts o = {.fsync = RMQ_WAL_FSYNC_NEVER};
	if (!g || io_uring_queue_init(256, &g->ring, 0) || rmq_wal_open(&g->w, path, &o, NULL, NULL, NULL)) {
		fprintf(stderr, "persist-gen: cannot open the log in %s\n", path);
		return 1;
	}
	char id[64], filt[64], topic[64];
	for (uint64_t i = 0; i < sessions; i++) {
		struct rmq_persist_rec r = {.type = RMQ_PR_SESS_PUT, .id = str(id, sizeof(id), "gen-%llu", i),
					    .proto_version = 4, .expiry = UINT32_MAX};
		put(g, &r);
		r = (struct rmq_persist_rec){.type = RMQ_PR_SUB_ADD, .id = r.id, .options = 1,
					     .filter = str(filt, sizeof(filt), "gen/%llu/#", i)};
		put(g, &r);
	}
	for (uint64_t i = 0; i < retained; i++) {
		struct rmq_persist_rec r = {.type = RMQ_PR_RET_SET, .stamp = i + 1};
		snprintf(topic, sizeof(topic), "ret/%llu", (unsigned long long)i);
		with_msg(g, &r, topic, 64);
		put(g, &r);
	}
	/* Churn: each message queued, sent, acknowledged; the last one per session stays queued. */
	uint64_t target = mb << 20, n = 0;
	while (g->bytes < target) {
		uint64_t s = n % sessions;
		uint16_t pid = (uint16_t)(n / sessions % 65535 + 1);
		struct rmq_persist_rec r = {.type = RMQ_PR_QUEUE_PUSH, .id = str(id, sizeof(id), "gen-%llu", s)};
		snprintf(topic, sizeof(topic), "gen/%llu/telemetry", (unsigned long long)s);
		with_msg(g, &r, topic, payload);
		put(g, &r);
		r = (struct rmq_persist_rec){.type = RMQ_PR_QUEUE_POP, .id = r.id, .pid = pid};
		put(g, &r);
		r.type = RMQ_PR_INFL_DEL;
		put(g, &r);
		n++;
	}
	for (uint64_t s = 0; s < sessions; s++) {
		struct rmq_persist_rec r = {.type = RMQ_PR_QUEUE_PUSH, .id = str(id, sizeof(id), "gen-%llu", s)};
		snprintf(topic, sizeof(topic), "gen/%llu/telemetry", (unsigned long long)s);
		with_msg(g, &r, topic, payload);
		put(g, &r);
	}
	rmq_wal_drain(g->w, &g->ring, UD);
	rmq_wal_close(g->w);
	io_uring_queue_exit(&g->ring);
	printf("persist-gen: %s: %llu records, %llu MiB, %llu sessions, %llu retained, %llu queued\n", dir,
	       (unsigned long long)g->records, (unsigned long long)(g->bytes >> 20), (unsigned long long)sessions,
	       (unsigned long long)retained, (unsigned long long)sessions);
	free(g);
	return 0;
}
