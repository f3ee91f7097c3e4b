/* Unit tests for core/store/wal.c: round trip, fsync policies, group commit, restart recovery, torn tails at every
 * byte, corruption in the middle, compaction, the reader, and the refusals. A private io_uring per test. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdint.h>

#include "wal_helpers.h"


TestSuite(wal, .init = suite_setup, .fini = suite_teardown, .timeout = 30);

/* ---- what the callbacks saw ------------------------------------------------------------------- */
#define MAXREC 4096

struct seen {
	int n;
	uint64_t seq[MAXREC], cookie[MAXREC];
	uint16_t type[MAXREC];
	uint32_t len[MAXREC];
	uint8_t first[MAXREC];
	int err[MAXREC];
	int fail_at;   /* replay: return -EPROTO at this record (0: never) */
};

static int on_replay(void *ud, uint16_t type, uint64_t seq, const uint8_t *data, uint32_t len)
{
	struct seen *s = ud;
	if (s->fail_at && s->n + 1 == s->fail_at)
		return -EPROTO;
	cr_assert_lt(s->n, MAXREC);
	s->type[s->n] = type;
	s->seq[s->n] = seq;
	s->len[s->n] = len;
	s->first[s->n] = len ? data[0] : 0;
	for (uint32_t i = 0; i < len; i++)   /* the payload pattern written by put() */
		cr_assert_eq(data[i], (uint8_t)(seq + i), "record %lu byte %u", (unsigned long)seq, i);
	s->n++;
	return 0;
}

static void on_done(void *ud, uint64_t cookie, uint64_t seq, int err)
{
	struct seen *s = ud;
	cr_assert_lt(s->n, MAXREC);
	s->cookie[s->n] = cookie;
	s->seq[s->n] = seq;
	s->err[s->n] = err;
	s->n++;
}

/* Appends a record whose payload is derived from its seq (next_seq must be known: the log's last + 1). */
static int64_t put(struct rmq_wal *w, uint16_t type, uint32_t len, uint64_t cookie)
{
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	uint8_t buf[2048];
	cr_assert_leq(len, sizeof(buf));
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(st.last_seq + 1 + i);
	return rmq_wal_append(w, type, buf, len, cookie);
}

static struct rmq_wal *open_log(const struct rmq_wal_opts *o, struct seen *replayed, struct rmq_wal_recovery *rec)
{
	struct rmq_wal *w;
	int rc = rmq_wal_open(&w, td.path, o, on_replay, replayed, rec);
	cr_assert_eq(rc, 0, "open: %d", rc);
	return w;
}

static void drain(struct rmq_wal *w)
{
	cr_assert_eq(rmq_wal_drain(w, &ring, UD_WAL), 0);
}

/* The only segment file of a one-segment log. */
static void seg_path(char *out, size_t n, uint64_t first_seq)
{
	snprintf(out, n, "%s/%016lx.wal", td.path, (unsigned long)first_seq);
}

static long file_size(const char *p)
{
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	return (long)st.st_size;
}

/* ---- tests ------------------------------------------------------------------------------------- */
Test(wal, crc32c_known_answer)
{
	cr_assert_eq(rmq_crc32c(0, "123456789", 9), 0xe3069283u);   /* the Castagnoli check value */
	cr_assert_eq(rmq_crc32c(0, "", 0), 0);
	/* incremental == one shot */
	cr_assert_eq(rmq_crc32c(rmq_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

Test(wal, fsync_option_names)
{
	enum rmq_wal_fsync f = RMQ_WAL_FSYNC_NEVER;
	cr_assert_eq(rmq_wal_parse_fsync("always", &f), 0);
	cr_assert_eq(f, RMQ_WAL_FSYNC_ALWAYS);
	cr_assert_eq(rmq_wal_parse_fsync("batch", &f), 0);
	cr_assert_eq(f, RMQ_WAL_FSYNC_BATCH);
	cr_assert_eq(rmq_wal_parse_fsync("never", &f), 0);
	cr_assert_eq(f, RMQ_WAL_FSYNC_NEVER);
	cr_assert_str_eq(rmq_wal_fsync_name(f), "never");
	cr_assert_eq(rmq_wal_parse_fsync("Always", &f), -EINVAL);
	cr_assert_eq(rmq_wal_parse_fsync("", &f), -EINVAL);
	cr_assert_eq(rmq_wal_parse_fsync("batchy", &f), -EINVAL);
	cr_assert_eq(f, RMQ_WAL_FSYNC_NEVER, "untouched on error");
}

Test(wal, round_trip_and_restart)
{
	struct seen rep = { 0 }, done = { 0 };
	struct rmq_wal_recovery rec;
	struct rmq_wal *w = open_log(NULL, &rep, &rec);
	cr_assert_eq(rep.n, 0);
	cr_assert_eq(rec.records, 0);
	cr_assert_eq(rec.segments, 1);
	rmq_wal_set_callbacks(w, on_done, NULL, &done);
	uint64_t bytes = 0;
	for (int i = 0; i < 500; i++) {
		uint32_t len = (uint32_t)(i * 7) % 700;   /* includes empty records */
		cr_assert_eq(put(w, (uint16_t)(1 + i % 5), len, i % 3 ? (uint64_t)i + 1000 : 0), i + 1);
		bytes += len;
	}
	drain(w);
	/* every record with a cookie, in order, and no others */
	cr_assert_eq(done.n, 500 - 167);
	for (int i = 1; i < done.n; i++)
		cr_assert_gt(done.seq[i], done.seq[i - 1]);
	for (int i = 0; i < done.n; i++) {
		cr_assert_eq(done.err[i], 0);
		cr_assert_eq(done.cookie[i], done.seq[i] - 1 + 1000);
	}
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.appends, 500);
	cr_assert_eq(st.append_bytes, bytes);
	cr_assert_eq(st.disk_bytes, bytes + 500 * RMQ_WAL_HDR);
	cr_assert_eq(st.unsynced_records, 0);
	rmq_wal_close(w);

	w = open_log(NULL, &rep, &rec);
	cr_assert_eq(rep.n, 500);
	cr_assert_eq(rec.records, 500);
	cr_assert_eq(rec.bytes, bytes);
	cr_assert_eq(rec.truncated_bytes, 0);
	cr_assert_eq(rec.first_seq, 1);
	cr_assert_eq(rec.last_seq, 500);
	for (int i = 0; i < 500; i++) {
		cr_assert_eq(rep.seq[i], (uint64_t)i + 1);
		cr_assert_eq(rep.type[i], 1 + i % 5);
		cr_assert_eq(rep.len[i], (uint32_t)(i * 7) % 700);
	}
	/* the sequence goes on where it stopped */
	cr_assert_eq(put(w, 1, 10, 0), 501);
	drain(w);
	rmq_wal_close(w);
}

Test(wal, segments_roll_and_replay_in_order)
{
	struct rmq_wal_opts o = { .segment_bytes = 4096 };
	struct seen rep = { 0 };
	struct rmq_wal *w = open_log(&o, &rep, NULL);
	for (int i = 0; i < 300; i++) {
		cr_assert_gt(put(w, 2, 100, 0), 0);
		if (i % 37 == 0)
			wal_step(w, &ring);   /* rolls happen with writes in flight too */
	}
	drain(w);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_geq(st.segments, 300 * 120 / 4096);
	cr_assert_eq(count_files(td.path, ".wal"), (int)st.segments);
	rmq_wal_close(w);
	struct rmq_wal_recovery rec;
	w = open_log(&o, &rep, &rec);
	cr_assert_eq(rep.n, 300);
	for (int i = 0; i < 300; i++)
		cr_assert_eq(rep.seq[i], (uint64_t)i + 1);
	cr_assert_eq(rec.segments, st.segments);
	rmq_wal_close(w);
}

Test(wal, fsync_policies)
{
	enum rmq_wal_fsync pol[] = { RMQ_WAL_FSYNC_ALWAYS, RMQ_WAL_FSYNC_BATCH, RMQ_WAL_FSYNC_NEVER };
	for (int p = 0; p < 3; p++) {
		struct tdir sub;
		tdir_make(&sub);
		struct rmq_wal_opts o = { .fsync = pol[p], .batch_us = 1000 };
		struct seen done = { 0 };
		struct rmq_wal *w;
		cr_assert_eq(rmq_wal_open(&w, sub.path, &o, NULL, NULL, NULL), 0);
		rmq_wal_set_callbacks(w, on_done, NULL, &done);
		for (int round = 0; round < 3; round++) {
			cr_assert_gt(put(w, 1, 64, (uint64_t)round + 1), 0);
			drain(w);
			cr_assert_eq(done.n, round + 1, "completion after each drain");
		}
		struct rmq_wal_stats st;
		rmq_wal_stats(w, &st);
		cr_assert_eq(st.writes, 3);
		cr_assert_eq(st.fsyncs, pol[p] == RMQ_WAL_FSYNC_NEVER ? 0u : 3u, "policy %d", p);
		if (pol[p] != RMQ_WAL_FSYNC_NEVER)
			cr_assert_geq(st.commit_max_us, st.commit_p99_us);
		rmq_wal_close(w);
		tdir_remove(&sub);
	}
}

/* The point of group commit: what arrives while one commit is pending rides the next single fsync. */
Test(wal, group_commit_batches_appends)
{
	struct rmq_wal_opts o = { .fsync = RMQ_WAL_FSYNC_BATCH, .batch_us = 20000 };
	struct seen done = { 0 };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	rmq_wal_set_callbacks(w, on_done, NULL, &done);
	for (int i = 0; i < 50; i++)
		cr_assert_gt(put(w, 1, 256, (uint64_t)i + 1), 0);
	/* before the window closes: only the batch timer is queued, nothing written, nothing reported */
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), 1);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.writes, 0);
	cr_assert_eq(st.unsynced_records, 50);
	cr_assert_eq(done.n, 0);
	/* the timer fires, then one write + one fsync carry all 50 */
	while (done.n < 50)
		wal_step(w, &ring);
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.writes, 1);
	cr_assert_eq(st.fsyncs, 1);
	cr_assert_eq(st.unsynced_records, 0);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(done.cookie[i], (uint64_t)i + 1);
	rmq_wal_close(w);
}

Test(wal, always_reports_only_after_fsync)
{
	struct rmq_wal_opts o = { .fsync = RMQ_WAL_FSYNC_ALWAYS };
	struct seen done = { 0 };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	rmq_wal_set_callbacks(w, on_done, NULL, &done);
	for (int i = 0; i < 10; i++)
		put(w, 1, 256, (uint64_t)i + 1);
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), 2, "write + linked fdatasync");
	cr_assert_eq(io_uring_submit_and_wait(&ring, 2), 2);
	/* feed the write's completion alone: still not durable */
	struct io_uring_cqe *cqes[2];
	cr_assert_eq(io_uring_peek_batch_cqe(&ring, cqes, 2), 2);
	struct io_uring_cqe *wr = cqes[0], *sy = cqes[1];
	if ((wr->user_data >> 24 & 0xff) != 1) {
		wr = cqes[1];
		sy = cqes[0];
	}
	cr_assert_eq(wr->res, 10 * (256 + (int)RMQ_WAL_HDR));
	cr_assert_eq(sy->res, 0);
	rmq_wal_complete(w, wr->user_data, wr->res);
	cr_assert_eq(done.n, 0);
	rmq_wal_complete(w, sy->user_data, sy->res);
	cr_assert_eq(done.n, 10);
	io_uring_cq_advance(&ring, 2);
	/* records staged while a commit is in flight ride the next one */
	put(w, 1, 8, 11);
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), 2);
	put(w, 1, 8, 12);
	put(w, 1, 8, 13);
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), 0, "one commit in flight at a time");
	drain(w);
	cr_assert_eq(done.n, 13);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.fsyncs, 3);
	rmq_wal_close(w);
}

/* A failed fsync or write: every waiting record learns it, the log refuses more. */
Test(wal, io_error_fails_pending_records)
{
	struct seen done = { 0 };
	struct rmq_wal_opts o = { .fsync = RMQ_WAL_FSYNC_ALWAYS, .quiet = true };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	rmq_wal_set_callbacks(w, on_done, NULL, &done);
	put(w, 1, 16, 1);
	put(w, 1, 16, 2);
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), 2);
	put(w, 1, 16, 3);   /* staged behind the flight */
	cr_assert_eq(io_uring_submit_and_wait(&ring, 2), 2);
	struct io_uring_cqe *cqes[2];
	cr_assert_eq(io_uring_peek_batch_cqe(&ring, cqes, 2), 2);
	uint64_t u0 = cqes[0]->user_data, u1 = cqes[1]->user_data;
	io_uring_cq_advance(&ring, 2);
	/* the disk said EIO on the fdatasync (as a dying disk does) */
	uint64_t wr = (u0 >> 24 & 0xff) == 1 ? u0 : u1, sy = wr == u0 ? u1 : u0;
	rmq_wal_complete(w, wr, 2 * (16 + (int)RMQ_WAL_HDR));
	rmq_wal_complete(w, sy, -EIO);
	cr_assert_eq(done.n, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(done.err[i], -EIO);
	cr_assert_eq(rmq_wal_append(w, 1, "x", 1, 4), -EIO);
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), -EIO);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.error, -EIO);
	rmq_wal_close(w);
}

Test(wal, refuses_bad_input)
{
	struct rmq_wal_opts o = { .stage_max = 4096 };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	cr_assert_eq(rmq_wal_append(w, 0, "x", 1, 0), -EINVAL, "type 0");
	cr_assert_eq(rmq_wal_append(w, 0xff01, "x", 1, 0), -EINVAL, "the log's own marker");
	struct iovec big = { .iov_base = (void *)"x", .iov_len = (size_t)RMQ_WAL_REC_MAX + 1 };
	cr_assert_eq(rmq_wal_appendv(w, 1, &big, 1, 0), -EINVAL, "longer than a record may be");
	cr_assert_eq(rmq_wal_compact(w), -ENOENT, "no snapshot callback");
	int ok = 0;
	int64_t rc;
	while ((rc = put(w, 1, 1000, 0)) > 0)
		ok++;
	cr_assert_eq(rc, -ENOBUFS, "stage bound: the caller must back off");
	cr_assert_eq(ok, 5);
	drain(w);
	cr_assert_gt(put(w, 1, 1000, 0), 0, "room again once written");
	drain(w);
	rmq_wal_close(w);
	/* a data dir that is a file */
	char path[128];
	snprintf(path, sizeof(path), "%s/file", td.path);
	close(open(path, O_CREAT | O_WRONLY, 0644));
	cr_assert_lt(rmq_wal_open(&w, path, NULL, NULL, NULL, NULL), 0);
	cr_assert_null(w);
}

Test(wal, replay_error_aborts_open)
{
	struct rmq_wal *w = open_log(NULL, &(struct seen){ 0 }, NULL);
	for (int i = 0; i < 5; i++)
		put(w, 1, 10, 0);
	drain(w);
	rmq_wal_close(w);
	struct seen rep = { .fail_at = 3 };
	cr_assert_eq(rmq_wal_open(&w, td.path, NULL, on_replay, &rep, NULL), -EPROTO);
	cr_assert_null(w);
	cr_assert_eq(rep.n, 2);
	/* and nothing was cut */
	rep = (struct seen){ 0 };
	w = open_log(NULL, &rep, NULL);
	cr_assert_eq(rep.n, 5);
	rmq_wal_close(w);
}

/* Power cut in the middle of the last record: whatever byte it stopped at, recovery keeps the records
 * before it, cuts the rest, and the log goes on from there. Also: junk past the last record. */
Test(wal, torn_tail_at_every_byte)
{
	struct rmq_wal *w = open_log(NULL, &(struct seen){ 0 }, NULL);
	for (int i = 0; i < 20; i++)
		put(w, 3, 40, 0);
	drain(w);
	rmq_wal_close(w);
	char p[128];
	seg_path(p, sizeof(p), 1);
	long full = file_size(p), last = full - (40 + RMQ_WAL_HDR);
	uint8_t *img = malloc((size_t)full);
	FILE *f = fopen(p, "rb");
	cr_assert_eq(fread(img, 1, (size_t)full, f), (size_t)full);
	fclose(f);
	struct rmq_wal_opts o = { .quiet = true };
	for (long cut = last; cut < full; cut++) {
		f = fopen(p, "wb");
		cr_assert_eq(fwrite(img, 1, (size_t)cut, f), (size_t)cut);
		fclose(f);
		struct seen rep = { 0 };
		struct rmq_wal_recovery rec;
		w = open_log(&o, &rep, &rec);
		cr_assert_eq(rep.n, 19, "cut at %ld", cut);
		cr_assert_eq(rec.truncated_bytes, (uint64_t)(cut - last));
		cr_assert_eq(file_size(p), last);
		cr_assert_eq(put(w, 3, 40, 0), 20, "the sequence goes on");
		drain(w);
		rmq_wal_close(w);
		cr_assert_eq(file_size(p), full);
	}
	/* junk (a zero-filled tail, as after a crash on some filesystems, then random bytes) */
	uint8_t junk[64] = { 0 };
	for (int pass = 0; pass < 2; pass++) {
		f = fopen(p, "ab");
		cr_assert_eq(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
		fclose(f);
		struct seen rep = { 0 };
		struct rmq_wal_recovery rec;
		w = open_log(&o, &rep, &rec);
		cr_assert_eq(rep.n, 20);
		cr_assert_eq(rec.truncated_bytes, sizeof(junk));
		rmq_wal_close(w);
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 37 + 11);
	}
	free(img);
}

/* A flipped bit in the middle: replay stops before the bad record, the log is cut there (with every later
 * segment), one warning line says so, and new records continue the sequence. */
Test(wal, corrupt_crc_in_the_middle)
{
	struct rmq_wal_opts o = { .segment_bytes = 2048 };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	for (int i = 0; i < 60; i++)
		put(w, 1, 100, 0);
	drain(w);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_geq(st.segments, 3);
	rmq_wal_close(w);
	/* 2048 / 120 -> 18 records per segment (the 18th passes the bound): seq 19 starts segment 2; corrupt the
	 * payload of its 5th record, seq 23 */
	char p[128];
	seg_path(p, sizeof(p), 19);
	cr_assert_eq(access(p, F_OK), 0);
	file_corrupt(p, 4 * 120 + RMQ_WAL_HDR + 50);
	/* catch the warning: stderr into a file for the open */
	char errp[128];
	snprintf(errp, sizeof(errp), "%s/stderr.txt", td.path);
	fflush(stderr);
	int saved = dup(2), efd = open(errp, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	cr_assert_geq(efd, 0);
	dup2(efd, 2);
	struct seen rep = { 0 };
	struct rmq_wal_recovery rec;
	w = open_log(&o, &rep, &rec);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(efd);
	cr_assert_eq(rep.n, 22);
	cr_assert_eq(rec.last_seq, 22);
	cr_assert_eq(rec.segments, 2);
	cr_assert_eq(file_size(p), 4 * 120);
	cr_assert_eq(count_files(td.path, ".wal"), 2, "later segments deleted");
	cr_assert_eq(rec.truncated_bytes, 60 * 120 - 22 * 120);
	char line[512];
	FILE *err = fopen(errp, "r");
	cr_assert_not_null(err);
	int lines = 0;
	while (fgets(line, sizeof(line), err)) {
		lines++;
		cr_assert_not_null(strstr(line, "truncated"), "%s", line);
	}
	fclose(err);
	cr_assert_eq(lines, 1, "one warning line");
	cr_assert_eq(put(w, 1, 100, 0), 23);
	drain(w);
	rmq_wal_close(w);
	rep = (struct seen){ 0 };
	w = open_log(&o, &rep, &rec);
	cr_assert_eq(rep.n, 23);
	cr_assert_eq(rec.truncated_bytes, 0);
	rmq_wal_close(w);
	/* a record with a valid CRC but the wrong sequence number (a stale one from elsewhere) is cut too */
	uint8_t rec99[120] = { 0 };
	uint32_t len = 100;
	uint16_t type = 1;
	uint64_t seq = 99;
	memcpy(rec99 + 4, &len, 4);
	memcpy(rec99 + 8, &type, 2);
	memcpy(rec99 + 12, &seq, 8);
	uint32_t crc = rmq_crc32c(0, rec99 + 4, sizeof(rec99) - 4);
	memcpy(rec99, &crc, 4);
	FILE *f = fopen(p, "r+b");
	cr_assert_not_null(f);
	fseek(f, 4 * 120, SEEK_SET);
	cr_assert_eq(fwrite(rec99, 1, sizeof(rec99), f), sizeof(rec99));
	fclose(f);
	o.quiet = true;
	rep = (struct seen){ 0 };
	w = open_log(&o, &rep, &rec);
	cr_assert_eq(rep.n, 22);
	rmq_wal_close(w);
}

/* ---- compaction: a key/value state of 16 keys, rewritten many times -------------------------------- */
struct kv {
	uint32_t val[16];
	bool has[16];
	int snap_calls;
	int fail;
};

static int kv_replay(void *ud, uint16_t type, uint64_t seq, const uint8_t *d, uint32_t len)
{
	(void)seq;
	struct kv *kv = ud;
	cr_assert_eq(len, 8);
	uint32_t k, v;
	memcpy(&k, d, 4);
	memcpy(&v, d + 4, 4);
	cr_assert_lt(k, 16);
	kv->has[k] = type == 1;
	kv->val[k] = type == 1 ? v : 0;
	return 0;
}

static int kv_put(struct rmq_wal *w, struct kv *kv, uint16_t type, uint32_t k, uint32_t v)
{
	uint8_t b[8];
	memcpy(b, &k, 4);
	memcpy(b + 4, &v, 4);
	kv_replay(kv, type, 0, b, 8);
	return rmq_wal_append(w, type, b, 8, 0) > 0 ? 0 : -1;
}

static int kv_snapshot(void *ud, struct rmq_wal *w)
{
	struct kv *kv = ud;
	kv->snap_calls++;
	if (kv->fail)
		return -ENOSPC;
	for (uint32_t k = 0; k < 16; k++) {
		uint8_t b[8];
		memcpy(b, &k, 4);
		memcpy(b + 4, &kv->val[k], 4);
		if (kv->has[k] && rmq_wal_append(w, 1, b, 8, 0) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void kv_churn(struct rmq_wal *w, struct kv *kv, int n, uint32_t base)
{
	for (int i = 0; i < n; i++) {
		uint32_t k = (uint32_t)i % 16;
		cr_assert_eq(kv_put(w, kv, (i % 7 == 6) ? 2 : 1, k, base + (uint32_t)i), 0);
		if (i % 100 == 0)
			wal_step(w, &ring);
	}
}

Test(wal, compaction_keeps_live_state_and_deletes_old_segments)
{
	struct rmq_wal_opts o = { .segment_bytes = 1024, .fsync = RMQ_WAL_FSYNC_NEVER };
	struct kv kv = { 0 }, back = { 0 };
	struct rmq_wal *w;
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, NULL), 0);
	rmq_wal_set_callbacks(w, NULL, kv_snapshot, &kv);
	kv_churn(w, &kv, 1000, 0);
	drain(w);
	int before = count_files(td.path, ".wal");
	cr_assert_gt(before, 20);
	/* a snapshot that fails is taken back: the log goes on as if it never started */
	kv.fail = 1;
	cr_assert_eq(rmq_wal_compact(w), -ENOSPC);
	kv.fail = 0;
	cr_assert_eq(count_files(td.path, ".wal"), before);
	cr_assert_eq(rmq_wal_compact(w), 0);
	cr_assert_eq(rmq_wal_compact(w), -EBUSY, "one at a time");
	kv_churn(w, &kv, 10, 5000);   /* records after the snapshot land in its segment */
	drain(w);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.compactions, 1);
	cr_assert_eq(st.segments, 1);
	cr_assert_eq(st.segments_deleted, (uint64_t)before);
	cr_assert_eq(count_files(td.path, ".wal"), 1);
	cr_assert_eq(st.fsyncs, 1, "the snapshot is synced even under fsync never");
	rmq_wal_close(w);
	struct rmq_wal_recovery rec;
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, &rec), 0);
	cr_assert_eq(memcmp(back.has, kv.has, sizeof(kv.has)), 0);
	cr_assert_eq(memcmp(back.val, kv.val, sizeof(kv.val)), 0);
	cr_assert_leq(rec.records, 16 + 10);
	rmq_wal_close(w);
}

Test(wal, auto_compaction_bounds_the_log)
{
	struct rmq_wal_opts o = { .segment_bytes = 1024, .compact_bytes = 8192, .fsync = RMQ_WAL_FSYNC_NEVER };
	struct kv kv = { 0 }, back = { 0 };
	struct rmq_wal *w;
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, NULL), 0);
	rmq_wal_set_callbacks(w, NULL, kv_snapshot, &kv);
	int most = 0;
	for (int round = 0; round < 40; round++) {
		kv_churn(w, &kv, 100, (uint32_t)round * 1000);
		drain(w);
		int n = count_files(td.path, ".wal");
		most = n > most ? n : most;
	}
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_geq(st.compactions, 10);
	cr_assert_leq(most, 8192 / 1024 + 4, "the log stays bounded (%d segments)", most);
	rmq_wal_close(w);
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, NULL), 0);
	cr_assert_eq(memcmp(back.val, kv.val, sizeof(kv.val)), 0);
	rmq_wal_close(w);
}

/* A crash in the middle of writing a snapshot: the old segments are still there (they are deleted only once
 * the snapshot is durable); recovery replays them and drops the half snapshot. */
Test(wal, half_written_snapshot_is_ignored)
{
	struct rmq_wal_opts o = { .segment_bytes = 1024, .quiet = true };
	struct kv kv = { 0 }, back = { 0 };
	struct rmq_wal *w;
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, NULL), 0);
	rmq_wal_set_callbacks(w, NULL, kv_snapshot, &kv);
	kv_churn(w, &kv, 300, 0);
	drain(w);
	struct kv want = kv;
	/* keep copies of the segments the compaction will delete */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "mkdir %s/keep && cp %s/*.wal %s/keep/", td.path, td.path, td.path);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(rmq_wal_compact(w), 0);
	drain(w);
	rmq_wal_close(w);
	cr_assert_eq(count_files(td.path, ".wal"), 1);
	/* put the old ones back and tear the snapshot in the middle */
	snprintf(cmd, sizeof(cmd), "cp %s/keep/*.wal %s/ && rm -r %s/keep", td.path, td.path, td.path);
	cr_assert_eq(system(cmd), 0);
	struct rmq_wal_stats st;
	char p[128];
	seg_path(p, sizeof(p), 301);
	cr_assert_eq(truncate(p, RMQ_WAL_HDR + 5 * (8 + RMQ_WAL_HDR)), 0);
	(void)st;
	struct rmq_wal_recovery rec;
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, &rec), 0);
	cr_assert_eq(rec.records, 300);
	cr_assert_eq(rec.last_seq, 300);
	cr_assert_eq(memcmp(back.val, want.val, sizeof(want.val)), 0);
	cr_assert_eq(memcmp(back.has, want.has, sizeof(want.has)), 0);
	cr_assert_eq(access(p, F_OK), -1, "the half snapshot is gone");
	rmq_wal_close(w);
}

/* The reader walks written records across segments through the ring, skipping the log's own markers. */
Test(wal, reader_follows_the_log)
{
	struct rmq_wal_opts o = { .segment_bytes = 1500 };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	rmq_wal_reader_enable(w, true);
	rmq_wal_reader_seek(w, 1);
	struct rmq_wal_rec r;
	cr_assert_eq(rmq_wal_reader_peek(w, &r), -EAGAIN, "empty log");
	uint64_t want = 1;
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 20; i++)
			put(w, 4, (uint32_t)(round * 20 + i) % 200, 0);
		int spins = 0;
		while (want <= (uint64_t)(round + 1) * 20) {
			int rc = rmq_wal_reader_peek(w, &r);
			if (rc == -EAGAIN) {
				wal_step(w, &ring);
				cr_assert_lt(++spins, 1000);
				continue;
			}
			cr_assert_eq(rc, 0);
			cr_assert_eq(r.seq, want);
			cr_assert_eq(r.type, 4);
			cr_assert_eq(r.len, (uint32_t)(want - 1) % 200);
			for (uint32_t i = 0; i < r.len; i++)
				cr_assert_eq(r.data[i], (uint8_t)(want + i));
			cr_assert_eq(rmq_wal_reader_peek(w, &r), 0, "peek does not consume");
			cr_assert_eq(r.seq, want);
			rmq_wal_reader_next(w);
			want++;
		}
	}
	drain(w);
	cr_assert_eq(rmq_wal_reader_peek(w, &r), -EAGAIN, "nothing past the end");
	/* seek back into the middle */
	rmq_wal_reader_seek(w, 150);
	while (rmq_wal_reader_peek(w, &r) == -EAGAIN)
		wal_step(w, &ring);
	cr_assert_eq(r.seq, 150);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_gt(st.segments, 5);
	/* release drops whole segments below a point, never the reader's */
	int n = rmq_wal_release(w, 100);
	cr_assert_gt(n, 0);
	drain(w);
	struct rmq_wal_stats st2;
	rmq_wal_stats(w, &st2);
	cr_assert_eq(st2.segments, st.segments - (uint32_t)n);
	cr_assert_eq(rmq_wal_reader_peek(w, &r), 0);
	cr_assert_eq(r.seq, 150);
	rmq_wal_close(w);
	struct seen rep = { 0 };
	struct rmq_wal_recovery rec;
	w = open_log(&o, &rep, &rec);
	cr_assert_leq(rec.first_seq, 100);
	cr_assert_gt(rec.first_seq, 1);
	cr_assert_eq(rec.last_seq, 200);
	cr_assert_eq(rec.truncated_bytes, 0);
	rmq_wal_close(w);
}

/* A record larger than the reader's read-ahead still comes back whole. */
Test(wal, reader_handles_records_larger_than_its_buffer)
{
	struct rmq_wal *w = open_log(NULL, &(struct seen){ 0 }, NULL);
	size_t big = (5u << 20) / 2;
	uint8_t *p = malloc(big);
	for (size_t i = 0; i < big; i++)
		p[i] = (uint8_t)(i * 31);
	cr_assert_eq(rmq_wal_append(w, 9, "a", 1, 0), 1);
	cr_assert_eq(rmq_wal_append(w, 9, p, (uint32_t)big, 0), 2);
	cr_assert_eq(rmq_wal_append(w, 9, "z", 1, 0), 3);
	drain(w);
	rmq_wal_reader_enable(w, true);
	rmq_wal_reader_seek(w, 2);
	struct rmq_wal_rec r;
	int spins = 0;
	while (rmq_wal_reader_peek(w, &r) == -EAGAIN) {
		wal_step(w, &ring);
		cr_assert_lt(++spins, 100);
	}
	cr_assert_eq(r.seq, 2);
	cr_assert_eq(r.len, big);
	cr_assert_eq(memcmp(r.data, p, big), 0);
	rmq_wal_reader_next(w);
	while (rmq_wal_reader_peek(w, &r) == -EAGAIN)
		wal_step(w, &ring);
	cr_assert_eq(r.seq, 3);
	cr_assert_eq(r.data[0], 'z');
	free(p);
	rmq_wal_close(w);
}

/* The kernel may write less than asked (disk nearly full, a signal): the rest goes out, then the fsync, and
 * each record is reported once. Fed here by hand: the real write was whole, the log is told half. */
Test(wal, short_write_is_resumed)
{
	struct seen done = { 0 };
	struct rmq_wal_opts o = { .fsync = RMQ_WAL_FSYNC_ALWAYS };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	rmq_wal_set_callbacks(w, on_done, NULL, &done);
	for (int i = 0; i < 4; i++)
		put(w, 1, 100, (uint64_t)i + 1);
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), 2);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 2), 2);
	struct io_uring_cqe *cqes[2];
	cr_assert_eq(io_uring_peek_batch_cqe(&ring, cqes, 2), 2);
	uint64_t u0 = cqes[0]->user_data, u1 = cqes[1]->user_data;
	io_uring_cq_advance(&ring, 2);
	uint64_t wr = (u0 >> 24 & 0xff) == 1 ? u0 : u1, sy = wr == u0 ? u1 : u0;
	rmq_wal_complete(w, wr, 150);
	rmq_wal_complete(w, sy, -ECANCELED);
	cr_assert_eq(done.n, 0);
	cr_assert_eq(rmq_wal_prep(w, &ring, UD_WAL), 2, "the rest, and the fsync again");
	drain(w);
	cr_assert_eq(done.n, 4);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.writes, 2);
	cr_assert_eq(st.fsyncs, 1);
	cr_assert_eq(st.disk_bytes, 4 * 120);
	rmq_wal_close(w);
	struct seen rep = { 0 };
	w = open_log(&o, &rep, NULL);
	cr_assert_eq(rep.n, 4);
	rmq_wal_close(w);
}

/* The next segment cannot be created (here: a file already has its name): the log fails, loudly, and the
 * records waiting for that segment are reported failed instead of hanging. */
Test(wal, segment_create_failure_fails_the_log)
{
	struct seen done = { 0 };
	struct rmq_wal_opts o = { .segment_bytes = 1024, .quiet = true };
	struct rmq_wal *w = open_log(&o, &(struct seen){ 0 }, NULL);
	rmq_wal_set_callbacks(w, on_done, NULL, &done);
	char p[128];
	seg_path(p, sizeof(p), 10);   /* 9 x 120 B pass 1024: seq 10 opens the second segment */
	close(open(p, O_CREAT | O_WRONLY, 0644));
	for (int i = 0; i < 12; i++)
		put(w, 1, 100, (uint64_t)i + 1);
	cr_assert_eq(rmq_wal_drain(w, &ring, UD_WAL), -EEXIST);
	cr_assert_eq(done.n, 12);
	for (int i = 0; i < 9; i++)
		cr_assert_eq(done.err[i], 0, "the first segment's records are durable");
	for (int i = 9; i < 12; i++)
		cr_assert_eq(done.err[i], -EEXIST);
	rmq_wal_close(w);
}

/* kill -9 in the middle of a stream under fsync always: every record reported durable before the kill is
 * replayed after it, whole and in order (the kernel keeps what was written; a power cut is the torn-tail
 * tests' business). */
static void crash_child(int fd)
{
	struct io_uring r;
	if (io_uring_queue_init(64, &r, 0))
		_exit(2);
	struct rmq_wal_opts o = { .fsync = RMQ_WAL_FSYNC_ALWAYS, .segment_bytes = 64 * 1024 };
	struct rmq_wal *w;
	if (rmq_wal_open(&w, td.path, &o, NULL, NULL, NULL))
		_exit(3);
	for (uint64_t i = 0;; i++) {
		uint8_t b[200];
		for (size_t k = 0; k < sizeof(b); k++)
			b[k] = (uint8_t)(i + 1 + k);   /* on_replay's pattern for seq i + 1 */
		while (rmq_wal_append(w, 1, b, sizeof(b), i + 1) == -ENOBUFS)
			rmq_wal_drain(w, &r, UD_WAL);
		if (rmq_wal_prep(w, &r, UD_WAL) < 0)
			_exit(4);
		io_uring_submit(&r);
		struct io_uring_cqe *cqe;
		while (io_uring_peek_cqe(&r, &cqe) == 0) {
			uint64_t u = cqe->user_data;
			int res = cqe->res;
			io_uring_cqe_seen(&r, cqe);
			rmq_wal_complete(w, u, res);
		}
		struct rmq_wal_stats st;
		rmq_wal_stats(w, &st);
		uint64_t durable = st.last_seq - st.unsynced_records;
		if (write(fd, &durable, sizeof(durable)) != sizeof(durable))
			_exit(5);
	}
}

/* Checks order and the payload pattern without keeping the records (the child writes thousands). */
static int count_replay(void *ud, uint16_t type, uint64_t seq, const uint8_t *data, uint32_t len)
{
	uint64_t *next = ud;
	cr_assert_eq(type, 1);
	cr_assert_eq(seq, *next);
	cr_assert_eq(len, 200);
	for (uint32_t i = 0; i < len; i++)
		cr_assert_eq(data[i], (uint8_t)(seq + i));
	(*next)++;
	return 0;
}

Test(wal, kill_9_loses_nothing_reported_durable)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		crash_child(p[1]);
	}
	close(p[1]);
	uint64_t durable = 0, v;
	while (durable < 300 && read(p[0], &v, sizeof(v)) == sizeof(v))
		durable = v;
	kill(pid, SIGKILL);
	while (read(p[0], &v, sizeof(v)) == sizeof(v))   /* what it reported until the kill landed */
		durable = v > durable ? v : durable;
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status), "the child was killed, not failed (status %d)", status);
	close(p[0]);
	uint64_t next = 1;
	struct rmq_wal_recovery rec;
	struct rmq_wal_opts o = { .quiet = true };
	struct rmq_wal *w;
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, count_replay, &next, &rec), 0);
	cr_assert_eq(next, rec.last_seq + 1);
	cr_assert_geq(rec.last_seq, durable, "durable %lu, recovered %lu", (unsigned long)durable,
		      (unsigned long)rec.last_seq);
	cr_assert_eq(rec.records, rec.last_seq, "no hole");
	cr_assert_gt(rec.segments, 1);
	rmq_wal_close(w);
}

/* A snapshot the caller cannot make (out of memory) does not stop the log: it retries later. */
Test(wal, failed_auto_compaction_is_retried)
{
	struct rmq_wal_opts o = { .segment_bytes = 1024, .compact_bytes = 4096, .fsync = RMQ_WAL_FSYNC_NEVER };
	struct kv kv = { .fail = 1 }, back = { 0 };
	struct rmq_wal *w;
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, NULL), 0);
	rmq_wal_set_callbacks(w, NULL, kv_snapshot, &kv);
	kv_churn(w, &kv, 1000, 0);   /* wal_step asserts every prep succeeds */
	drain(w);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	cr_assert_eq(st.compactions, 0);
	cr_assert_geq(kv.snap_calls, 2, "tried, and tried again");
	cr_assert_eq(st.error, 0);
	kv.fail = 0;
	kv_churn(w, &kv, 1000, 0);
	drain(w);
	rmq_wal_stats(w, &st);
	cr_assert_geq(st.compactions, 1);
	rmq_wal_close(w);
	cr_assert_eq(rmq_wal_open(&w, td.path, &o, kv_replay, &back, NULL), 0);
	cr_assert_eq(memcmp(back.val, kv.val, sizeof(kv.val)), 0);
	rmq_wal_close(w);
}

/* Two logs on one ring (the core's state log and its Kafka spool): draining one must hand the other's
 * completions over, or the other keeps a write in flight forever and its drain never returns. */
struct foreign_ctx {
	struct rmq_wal *other;
	uint64_t ud;
	int handed;
};

static void on_foreign(void *ud, struct io_uring_cqe *cqe)
{
	struct foreign_ctx *f = ud;
	if ((cqe->user_data & ~0xffffffffull) == f->ud) {
		rmq_wal_complete(f->other, cqe->user_data, cqe->res);
		f->handed++;
	}
}

Test(wal, drain_hands_the_other_logs_completions_over)
{
	struct tdir d2;
	tdir_make(&d2);
	const uint64_t UD_OTHER = 0x4300000000000000ull;
	struct rmq_wal_opts o = {.fsync = RMQ_WAL_FSYNC_ALWAYS};
	struct seen r1 = {0}, r2 = {0}, done1 = {0}, done2 = {0};
	struct rmq_wal_recovery rec;
	struct rmq_wal *a = open_log(&o, &r1, &rec), *b;
	cr_assert_eq(rmq_wal_open(&b, d2.path, &o, on_replay, &r2, &rec), 0);
	rmq_wal_set_callbacks(a, on_done, NULL, &done1);
	rmq_wal_set_callbacks(b, on_done, NULL, &done2);
	struct foreign_ctx f = {b, UD_OTHER, 0};
	rmq_wal_set_foreign(a, on_foreign, &f);
	cr_assert_geq(put(b, 1, 100, 7), 1);
	cr_assert_geq(rmq_wal_prep(b, &ring, UD_OTHER), 1);   /* b's write goes in flight ... */
	cr_assert_geq(put(a, 1, 100, 9), 1);
	drain(a);                                              /* ... and completes while a drains */
	cr_assert_eq(done1.n, 1);
	cr_assert_gt(f.handed, 0, "b's completion was handed over");
	/* b got its completions from a's drain: its own drain has nothing left to wait for. */
	cr_assert_eq(rmq_wal_drain(b, &ring, UD_OTHER), 0);
	cr_assert_eq(done2.n, 1);
	cr_assert_eq(done2.cookie[0], 7);
	rmq_wal_close(a);
	rmq_wal_close(b);
	tdir_remove(&d2);
}
