/* Unit tests for core/store/spool.c: order and content, durable acks, the byte bound, the ack window, replay after a
 * restart with partial delivery, deletion of delivered segments, rewind, a torn tail. Private io_uring. */
#include <errno.h>
#include <stdint.h>

#include "store/spool.h"
#include "wal_helpers.h"


TestSuite(spool, .init = suite_setup, .fini = suite_teardown, .timeout = 30);

struct acks {
	int n;
	uint64_t cookie[4096];
	int err[4096];
};

static void on_durable(void *ud, uint64_t cookie, int err)
{
	struct acks *a = ud;
	cr_assert_lt(a->n, 4096);
	a->cookie[a->n] = cookie;
	a->err[a->n] = err;
	a->n++;
}

/* Message i: car (i % 7), a value naming i; every 5th has no key, every 3rd has headers. */
struct mbuf {
	char topic[32], key[16], value[64];
	uint8_t hdr[8];
};

static struct rmq_spool_msg mk(struct mbuf *b, int i)
{
	struct rmq_spool_msg m = { 0 };
	m.topic_len = (uint16_t)snprintf(b->topic, sizeof(b->topic), "vehicle-%d", i % 7);
	m.topic = b->topic;
	m.has_key = i % 5 != 0;
	if (m.has_key) {
		m.key_len = (uint32_t)snprintf(b->key, sizeof(b->key), "car-%d", i % 7);
		m.key = (const uint8_t *)b->key;
	}
	m.value_len = (uint32_t)snprintf(b->value, sizeof(b->value), "{\"n\":%d,\"pad\":\"%.*s\"}", i, i % 20,
					 "xxxxxxxxxxxxxxxxxxxx");
	m.value = (const uint8_t *)b->value;
	if (i % 3 == 0) {
		memcpy(b->hdr, "h\0v\0", 4);
		memcpy(b->hdr + 4, &i, 4);
		m.headers = b->hdr;
		m.headers_len = 8;
	}
	return m;
}

static void check(const struct rmq_spool_msg *got, int i)
{
	struct mbuf b;
	struct rmq_spool_msg want = mk(&b, i);
	cr_assert_eq(got->topic_len, want.topic_len, "msg %d", i);
	cr_assert_eq(memcmp(got->topic, want.topic, want.topic_len), 0, "msg %d", i);
	cr_assert_eq(got->has_key, want.has_key, "msg %d", i);
	cr_assert_eq(got->key_len, want.key_len);
	if (want.key_len)
		cr_assert_eq(memcmp(got->key, want.key, want.key_len), 0);
	cr_assert_eq(got->value_len, want.value_len, "msg %d", i);
	cr_assert_eq(memcmp(got->value, want.value, want.value_len), 0, "msg %d", i);
	cr_assert_eq(got->headers_len, want.headers_len);
	if (want.headers_len)
		cr_assert_eq(memcmp(got->headers, want.headers, want.headers_len), 0);
}

static void step(struct rmq_spool *s)
{
	cr_assert_geq(rmq_spool_prep(s, &ring, UD_WAL), 0);
	io_uring_submit(&ring);
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_nsec = 200 * 1000 * 1000 };
	io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
	while (io_uring_peek_cqe(&ring, &cqe) == 0) {
		uint64_t u = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		rmq_spool_complete(s, u, res);
	}
}

/* Peeks the next message (pumping the ring while it is read); returns its seq or 0 on -ENODATA. */
static uint64_t take(struct rmq_spool *s, int expect_i, bool hand_out)
{
	struct rmq_spool_msg m;
	int rc, spins = 0;
	while ((rc = rmq_spool_peek(s, &m)) == -EAGAIN) {
		step(s);
		cr_assert_lt(++spins, 100, "replay stuck");
	}
	if (rc == -ENODATA)
		return 0;
	cr_assert_eq(rc, 0, "peek: %d", rc);
	check(&m, expect_i);
	if (hand_out)
		rmq_spool_next(s);
	return m.seq;
}

static struct rmq_spool *open_spool(const struct rmq_spool_opts *o, struct acks *a, struct rmq_spool_recovery *rec)
{
	struct rmq_spool *s;
	int rc = rmq_spool_open(&s, td.path, o, on_durable, a, rec);
	cr_assert_eq(rc, 0, "open: %d", rc);
	return s;
}

static void put(struct rmq_spool *s, int i)
{
	struct mbuf b;
	struct rmq_spool_msg m = mk(&b, i);
	cr_assert_eq(rmq_spool_append(s, &m, (uint64_t)i + 1), 0, "append %d", i);
}

Test(spool, order_content_and_durable_acks)
{
	struct acks a = { 0 };
	struct rmq_spool_opts o = { .wal.fsync = RMQ_WAL_FSYNC_ALWAYS };
	struct rmq_spool *s = open_spool(&o, &a, NULL);
	cr_assert(rmq_spool_empty(s));
	struct rmq_spool_msg m;
	cr_assert_eq(rmq_spool_peek(s, &m), -ENODATA);
	for (int i = 0; i < 100; i++)
		put(s, i);
	cr_assert_not(rmq_spool_empty(s));
	cr_assert_eq(a.n, 0, "not durable before the disk said so");
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	cr_assert_eq(a.n, 100);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(a.cookie[i], (uint64_t)i + 1, "in append order");
		cr_assert_eq(a.err[i], 0);
	}
	uint64_t prev = 0;
	for (int i = 0; i < 100; i++) {
		uint64_t seq = take(s, i, true);
		cr_assert_gt(seq, prev);
		prev = seq;
		cr_assert_eq(rmq_spool_ack(s, seq), 0);
	}
	cr_assert_eq(take(s, 0, false), 0, "all handed out");
	cr_assert(rmq_spool_empty(s));
	struct rmq_spool_stats st;
	rmq_spool_stats(s, &st);
	cr_assert_eq(st.appended, 100);
	cr_assert_eq(st.delivered, 100);
	cr_assert_eq(st.backlog_records, 0);
	cr_assert_eq(st.backlog_bytes, 0);
	cr_assert_geq(st.wal.fsyncs, 1);
	rmq_spool_close(s);
}

Test(spool, bound_is_backpressure)
{
	struct acks a = { 0 };
	struct rmq_spool_opts o = { .max_bytes = 2000 };
	struct rmq_spool *s = open_spool(&o, &a, NULL);
	struct mbuf b;
	struct rmq_spool_msg m = mk(&b, 0);
	cr_assert_eq(rmq_spool_append(s, &(struct rmq_spool_msg){ .topic_len = 0 }, 1), -EINVAL, "no topic");
	struct rmq_spool_msg bad = m;
	bad.has_key = false;
	bad.key_len = 3;
	cr_assert_eq(rmq_spool_append(s, &bad, 1), -EINVAL, "null key with a length");
	int n = 0, rc;
	while ((rc = rmq_spool_append(s, &m, (uint64_t)n + 1)) == 0)
		n++;
	cr_assert_eq(rc, -ENOSPC);
	uint32_t one = 32 + m.topic_len + m.key_len + m.value_len + m.headers_len;
	cr_assert_eq(n, (int)(2000 / one));
	struct rmq_spool_stats st;
	rmq_spool_stats(s, &st);
	cr_assert_eq(st.refused_full, 1);
	cr_assert_eq(st.backlog_bytes, (uint64_t)n * one);
	cr_assert_leq(st.backlog_bytes, 2000);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	cr_assert_eq(a.n, n, "every accepted message is acknowledged, refused ones are not");
	/* delivering one makes room for one */
	uint64_t seq = take(s, 0, true);
	cr_assert_eq(rmq_spool_append(s, &m, 99), -ENOSPC, "in flight is not delivered");
	cr_assert_eq(rmq_spool_ack(s, seq), 0);
	cr_assert_eq(rmq_spool_append(s, &m, 99), 0);
	cr_assert_eq(rmq_spool_append(s, &m, 100), -ENOSPC);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	rmq_spool_close(s);
}

Test(spool, ack_window_and_out_of_order_acks)
{
	struct acks a = { 0 };
	struct rmq_spool_opts o = { .window = 4 };
	struct rmq_spool *s = open_spool(&o, &a, NULL);
	for (int i = 0; i < 10; i++)
		put(s, i);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	uint64_t seq[10];
	for (int i = 0; i < 4; i++)
		seq[i] = take(s, i, true);
	struct rmq_spool_msg m;
	cr_assert_eq(rmq_spool_peek(s, &m), -EBUSY, "window full");
	cr_assert_eq(rmq_spool_ack(s, seq[2]), 0);
	cr_assert_eq(rmq_spool_peek(s, &m), -EBUSY, "the oldest is still out");
	cr_assert_eq(rmq_spool_ack(s, seq[2]), -ENOENT, "twice");
	cr_assert_eq(rmq_spool_ack(s, seq[3] + 1000), -ENOENT, "never handed out");
	cr_assert_eq(rmq_spool_ack(s, seq[0]), 0);
	struct rmq_spool_stats st;
	rmq_spool_stats(s, &st);
	cr_assert_eq(st.inflight, 3);
	cr_assert_eq(st.delivered, 1);
	cr_assert_eq(rmq_spool_ack(s, seq[1]), 0);
	rmq_spool_stats(s, &st);
	cr_assert_eq(st.inflight, 1, "1 and 2 (acked early) leave together");
	cr_assert_eq(st.delivered, 3);
	seq[4] = take(s, 4, true);
	/* Kafka failed what was in flight: rewind hands out 3 again, then 4 */
	rmq_spool_rewind(s);
	cr_assert_eq(take(s, 3, true), seq[3]);
	cr_assert_eq(take(s, 4, true), seq[4]);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	rmq_spool_close(s);
}

/* Kafka came back for a while, then the broker restarted: what was acked as delivered (and recorded) is not
 * replayed; everything else is, in order, and new messages queue behind it. */
Test(spool, replay_after_restart_with_partial_delivery)
{
	struct acks a = { 0 };
	struct rmq_spool_recovery rec;
	struct rmq_spool *s = open_spool(NULL, &a, &rec);
	cr_assert_eq(rec.backlog_records, 0);
	for (int i = 0; i < 50; i++)
		put(s, i);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(rmq_spool_ack(s, take(s, i, true)), 0);
	take(s, 20, true);   /* in flight when the broker stops: not delivered */
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	struct rmq_spool_stats st;
	rmq_spool_stats(s, &st);
	uint64_t bytes = st.backlog_bytes;
	rmq_spool_close(s);

	s = open_spool(NULL, &a, &rec);
	cr_assert_eq(rec.backlog_records, 30);
	cr_assert_eq(rec.backlog_bytes, bytes);
	cr_assert_eq(rec.wal.truncated_bytes, 0);
	/* acks for 5 more and 10 new messages, but the broker dies before any of it is written (no prep ran
	 * after them) */
	for (int i = 20; i < 25; i++)
		cr_assert_eq(rmq_spool_ack(s, take(s, i, true)), 0);
	for (int i = 50; i < 60; i++)
		put(s, i);
	cr_assert_eq(a.n, 50, "the lost ones were never acknowledged to the car");
	rmq_spool_close(s);

	s = open_spool(NULL, &a, &rec);
	cr_assert_eq(rec.backlog_records, 30, "unmarked deliveries come again (at least once), unwritten appends do not");
	for (int i = 20; i < 50; i++)
		cr_assert_eq(rmq_spool_ack(s, take(s, i, true)), 0);
	cr_assert_eq(take(s, 0, false), 0);
	cr_assert(rmq_spool_empty(s));
	for (int i = 60; i < 63; i++)
		put(s, i);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	rmq_spool_close(s);

	s = open_spool(NULL, &a, &rec);
	cr_assert_eq(rec.backlog_records, 3);
	for (int i = 60; i < 63; i++)
		take(s, i, true);
	rmq_spool_close(s);
}

/* Appends and replay interleaved (Kafka back while cars still publish): one FIFO, nothing overtakes. */
Test(spool, interleaved_append_and_replay_keep_order)
{
	struct acks a = { 0 };
	struct rmq_spool_opts o = { .wal.segment_bytes = 2048, .wal.fsync = RMQ_WAL_FSYNC_NEVER };
	struct rmq_spool *s = open_spool(&o, &a, NULL);
	int next_in = 0, next_out = 0;
	for (int round = 0; round < 200; round++) {
		for (int k = 0; k < 3; k++)
			put(s, next_in++);
		step(s);
		for (int k = 0; k < 2 && next_out < next_in; k++) {
			struct rmq_spool_msg m;
			int rc = rmq_spool_peek(s, &m);
			if (rc == -EAGAIN)
				break;
			cr_assert_eq(rc, 0);
			check(&m, next_out++);
			rmq_spool_next(s);
			cr_assert_eq(rmq_spool_ack(s, m.seq), 0);
		}
	}
	while (next_out < next_in) {
		uint64_t seq = take(s, next_out++, true);
		cr_assert_eq(rmq_spool_ack(s, seq), 0);
	}
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	cr_assert(rmq_spool_empty(s));
	rmq_spool_close(s);
}

Test(spool, delivered_segments_are_deleted)
{
	struct acks a = { 0 };
	struct rmq_spool_opts o = { .wal.segment_bytes = 4096 };
	struct rmq_spool *s = open_spool(&o, &a, NULL);
	for (int i = 0; i < 300; i++)
		put(s, i);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	int before = count_files(td.path, ".wal");
	cr_assert_gt(before, 5);
	for (int i = 0; i < 150; i++)
		cr_assert_eq(rmq_spool_ack(s, take(s, i, true)), 0);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	int half = count_files(td.path, ".wal");
	cr_assert_lt(half, before);
	cr_assert_gt(half, before / 2 - 2);
	for (int i = 150; i < 300; i++)
		cr_assert_eq(rmq_spool_ack(s, take(s, i, true)), 0);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	cr_assert_leq(count_files(td.path, ".wal"), 2, "only the segment being written (and the mark's)");
	struct rmq_spool_stats st;
	rmq_spool_stats(s, &st);
	cr_assert_geq(st.wal.segments_deleted, (uint64_t)before - 2);
	rmq_spool_close(s);
	struct rmq_spool_recovery rec;
	s = open_spool(&o, &a, &rec);
	cr_assert_eq(rec.backlog_records, 0);
	cr_assert_eq(rec.backlog_bytes, 0);
	cr_assert(rmq_spool_empty(s));
	struct rmq_spool_msg m;
	cr_assert_eq(rmq_spool_peek(s, &m), -ENODATA);
	rmq_spool_close(s);
}

/* Power cut while the last message was being written: the spool comes back with the others. */
Test(spool, torn_tail_loses_only_the_unacknowledged_message)
{
	struct acks a = { 0 };
	struct rmq_spool *s = open_spool(NULL, &a, NULL);
	for (int i = 0; i < 10; i++)
		put(s, i);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	rmq_spool_close(s);
	char p[128];
	snprintf(p, sizeof(p), "%s/%016x.wal", td.path, 1);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(truncate(p, st.st_size - 3), 0);
	struct rmq_spool_recovery rec;
	struct rmq_spool_opts o = { .wal.quiet = true };
	s = open_spool(&o, &a, &rec);
	cr_assert_eq(rec.backlog_records, 9);
	cr_assert_gt(rec.wal.truncated_bytes, 0);
	for (int i = 0; i < 9; i++)
		take(s, i, true);
	cr_assert_eq(take(s, 0, false), 0);
	rmq_spool_close(s);
}

Test(spool, reserve_is_all_or_nothing_for_a_multi_route_publish)
{
	struct acks a = { 0 };
	struct rmq_spool_opts o = { .max_bytes = 2000, .wal.stage_max = 600 };
	struct rmq_spool *s = open_spool(&o, &a, NULL);
	struct mbuf b[3];
	struct rmq_spool_msg m[3] = { mk(&b[0], 1), mk(&b[1], 2), mk(&b[2], 3) };
	uint64_t one = 32 + m[0].topic_len + m[0].key_len + m[0].value_len + m[0].headers_len;
	cr_assert_eq(rmq_spool_reserve(s, m, 1), 0);
	/* the log's stage (600 bytes) takes only a few before the disk catches up: a group that would cross it
	 * is refused whole, while a single message below the stage is always taken */
	int n = 0;
	while (rmq_spool_reserve(s, m, 3) == 0) {
		for (int i = 0; i < 3; i++)
			cr_assert_eq(rmq_spool_append(s, &m[i], 0), 0, "reserve said yes: append %d of group %d", i, n);
		n++;
	}
	cr_assert_eq(rmq_spool_reserve(s, m, 3), -ENOBUFS);
	cr_assert_gt(n, 0);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	/* now the byte bound: refused whole and counted, nothing appended */
	struct rmq_spool_stats st;
	while (rmq_spool_reserve(s, m, 3) == 0) {
		for (int i = 0; i < 3; i++)
			cr_assert_eq(rmq_spool_append(s, &m[i], 0), 0);
		cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	}
	rmq_spool_stats(s, &st);
	uint64_t before = st.backlog_bytes;
	cr_assert_eq(rmq_spool_reserve(s, m, 3), -ENOSPC);
	cr_assert_gt(before + 3 * one, 2000);
	rmq_spool_stats(s, &st);
	cr_assert_eq(st.backlog_bytes, before, "a refused reserve appends nothing");
	cr_assert_geq(st.refused_full, 1);
	cr_assert_eq(st.backlog_records % 3, 0, "whole groups only, none of the refused one");
	rmq_spool_close(s);
}

Test(spool, inflight_counts_handed_out_until_acked)
{
	struct acks a = { 0 };
	struct rmq_spool *s = open_spool(NULL, &a, NULL);
	for (int i = 0; i < 3; i++)
		put(s, i);
	cr_assert_eq(rmq_spool_drain(s, &ring, UD_WAL), 0);
	cr_assert_eq(rmq_spool_inflight(s), 0);
	uint64_t s0 = take(s, 0, true), s1 = take(s, 1, true);
	cr_assert_eq(rmq_spool_inflight(s), 2);
	cr_assert_eq(rmq_spool_ack(s, s1), 0);
	cr_assert_eq(rmq_spool_inflight(s), 2, "out of order: the head is still out");
	cr_assert_eq(rmq_spool_ack(s, s0), 0);
	cr_assert_eq(rmq_spool_inflight(s), 0);
	take(s, 2, true);
	rmq_spool_rewind(s);
	cr_assert_eq(rmq_spool_inflight(s), 0, "rewound: nothing out");
	take(s, 2, false);
	rmq_spool_close(s);
}
