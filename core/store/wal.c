/* The append-only log of wal.h: staging, group commit on the owner's io_uring, recovery, compaction, reader.
 * Every function runs on the owning reactor thread (rmq_wal_open/close at start-up and shutdown). */
#include "store/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringmq/clock.h"

#define SNAP_BEGIN 0xff01u
#define SNAP_END 0xff02u

#define DEF_BATCH_US 2000u            /* "every few ms": a car's PUBACK waits at most this for the disk */
#define DEF_SEGMENT (64ull << 20)     /* big enough that rolls are rare, small enough to delete promptly */
#define DEF_STAGE_MAX (8u << 20)      /* ~ a second of a fast disk: past it the reactor must back off */
#define DEF_WRITE_MAX (1u << 20)      /* batch mode flushes early at this: a longer wait buys nothing */
#define READ_BUF (1u << 20)           /* reader's read-ahead */

/* user_data low 32 bits: op << 24 | arg */
enum { T_WRITE = 1, T_SYNC, T_OPEN, T_DIRSYNC, T_UNLINK, T_TIMER, T_READ };
#define TOKEN(op, arg) ((uint64_t)(op) << 24 | ((arg) & 0xffffffu))

struct seg {
	uint64_t first_seq, last_seq;   /* last_seq 0: no record yet */
	uint64_t size;                  /* bytes written to the file */
	int fd;
	uint32_t id;                    /* for user_data (unlink) */
	bool doomed, unlinking;
	char name[24];
};

struct ckent {
	uint64_t end;      /* stream offset just past the record */
	uint64_t seq, cookie;
};

struct cut {           /* the record at stream offset `at` starts a new segment named first_seq */
	uint64_t at, first_seq;
};

struct reader {
	bool on, inflight;
	uint32_t seg_id;
	uint64_t from;
	uint64_t file_off;             /* file offset of buf[0] */
	uint8_t *buf;
	size_t cap, len, pos;
	int err;
};

struct rmq_wal {
	char *dir;
	int dirfd;
	struct rmq_wal_opts o;
	rmq_wal_done_fn done;
	rmq_wal_snapshot_fn snapshot;
	void *ud;
	rmq_wal_foreign_fn foreign;     /* drain: completions that are not ours */
	void *foreign_ud;
	int err;

	struct seg *segs;               /* oldest first; the last one takes writes */
	uint32_t nsegs, next_id;
	size_t segs_cap;
	struct seg opening;             /* a new segment between openat and its directory fsync */
	int open_wait, open_err;        /* CQEs still expected for it; first error */

	uint64_t next_seq;
	uint64_t staged_end;            /* stream offset: every byte ever appended */
	uint64_t tail_seg_bytes;        /* bytes the last (current or future) segment will hold */
	/* staging: bytes [st_abs, staged_end) */
	uint8_t *st;
	size_t st_cap;
	uint64_t st_abs, st_t0;
	/* the write in flight: bytes [fl_abs, fl_abs + fl_len) */
	uint8_t *fl;
	size_t fl_cap, fl_len, fl_done;
	uint64_t fl_abs, fl_t0, fl_last_seq;
	int fl_wait, fl_res;            /* CQEs still expected; first error */
	bool fl_sync, fl_short;
	bool flush_now;

	struct ckent *ck;
	size_t ck_head, ck_n, ck_cap;
	struct cut *cuts;
	size_t ncuts, cuts_cap;

	bool timer_on;
	struct __kernel_timespec ts;

	bool compacting;
	uint64_t snap_first_seq, snap_end;  /* the snapshot's segment, and stream offset past SNAP_END */
	uint64_t since_snap, snap_bytes;    /* logged since the last snapshot; that snapshot's size */
	bool unlink_on;

	struct reader rd;

	uint64_t appends, append_bytes, writes, fsyncs, commit_max_us, compactions, seg_deleted;
	uint64_t hist[64];
};

/* ---- CRC32C ---------------------------------------------------------------------------------- */
#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = crc;
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
	}
	uint32_t c32 = (uint32_t)c;
	for (; n; n--, p++)
		c32 = _mm_crc32_u8(c32, *p);
	return c32;
}
#endif

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return crc;
}

uint32_t rmq_crc32c(uint32_t crc, const void *data, size_t len)
{
	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc_hw(crc, data, len);
#endif
	return ~crc_sw(crc, data, len);
}

/* ---- little helpers -------------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }  /* x86/arm64: little-endian hosts */
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static void seg_name(char *out, uint64_t first_seq)
{
	snprintf(out, 24, "%016" PRIx64 ".wal", first_seq);
}

static struct seg *active(struct rmq_wal *w)
{
	return w->nsegs ? &w->segs[w->nsegs - 1] : NULL;
}

/* A record at p with `avail` bytes after it: its total size, 0 if incomplete, -1 if corrupt. */
static int64_t rec_check(const uint8_t *p, size_t avail)
{
	if (avail < RMQ_WAL_HDR)
		return 0;
	uint32_t len = get32(p + 4);
	if (len > RMQ_WAL_REC_MAX || get16(p + 10) != 0 || get16(p + 8) == 0)
		return -1;
	if (avail < RMQ_WAL_HDR + (size_t)len)
		return 0;
	if (rmq_crc32c(0, p + 4, RMQ_WAL_HDR - 4 + len) != get32(p))
		return -1;
	return RMQ_WAL_HDR + len;
}

/* ---- failure: every waiting cookie learns the error, the log refuses further work ------------- */
static void fail(struct rmq_wal *w, int err)
{
	if (w->err)
		return;
	w->err = err < 0 ? err : -EIO;
	if (!w->o.quiet)
		fprintf(stderr, "ringmq: wal %s: %s: log failed, no further writes\n", w->dir, strerror(-w->err));
	while (w->ck_n) {
		struct ckent e = w->ck[w->ck_head++];
		w->ck_n--;
		if (w->done)
			w->done(w->ud, e.cookie, e.seq, w->err);
	}
}

/* ---- append ---------------------------------------------------------------------------------- */
static int add_cut(struct rmq_wal *w, uint64_t first_seq)
{
	if (grow((void **)&w->cuts, &w->cuts_cap, w->ncuts + 1, sizeof(*w->cuts)))
		return -ENOMEM;
	w->cuts[w->ncuts++] = (struct cut){ .at = w->staged_end, .first_seq = first_seq };
	w->tail_seg_bytes = 0;
	return 0;
}

static int64_t stage(struct rmq_wal *w, uint16_t type, const struct iovec *iov, int iovcnt, uint64_t cookie)
{
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > RMQ_WAL_REC_MAX)
		return -EINVAL;
	size_t st_len = w->staged_end - w->st_abs;
	/* A segment closes between records once it is full; never inside a snapshot, which must stay whole
	 * in the segment that starts with it. */
	if (!w->compacting && w->tail_seg_bytes >= w->o.segment_bytes && add_cut(w, w->next_seq))
		return -ENOMEM;
	if (grow((void **)&w->st, &w->st_cap, st_len + RMQ_WAL_HDR + len, 1))
		return -ENOMEM;
	if (cookie && grow((void **)&w->ck, &w->ck_cap, w->ck_head + w->ck_n + 1, sizeof(*w->ck)))
		return -ENOMEM;
	uint8_t *h = w->st + st_len, *p = h + RMQ_WAL_HDR;
	put32(h + 4, (uint32_t)len);
	uint16_t t16 = type, zero = 0;
	memcpy(h + 8, &t16, 2);
	memcpy(h + 10, &zero, 2);
	uint64_t seq = w->next_seq++;
	put64(h + 12, seq);
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	put32(h, rmq_crc32c(0, h + 4, RMQ_WAL_HDR - 4 + len));
	if (st_len == 0)
		w->st_t0 = rmq_clock_mono_us();
	w->staged_end += RMQ_WAL_HDR + len;
	w->tail_seg_bytes += RMQ_WAL_HDR + len;
	w->since_snap += RMQ_WAL_HDR + len;
	if (cookie)
		w->ck[w->ck_head + w->ck_n++] = (struct ckent){ .end = w->staged_end, .seq = seq, .cookie = cookie };
	return (int64_t)seq;
}

int64_t rmq_wal_appendv(struct rmq_wal *w, uint16_t type, const struct iovec *iov, int iovcnt, uint64_t cookie)
{
	if (w->err)
		return w->err;
	if (type == 0 || type > RMQ_WAL_TYPE_MAX || iovcnt < 0)
		return -EINVAL;
	/* The snapshot must be staged whole, so the bound does not apply inside it. */
	if (!w->compacting && w->staged_end - w->st_abs >= w->o.stage_max)
		return -ENOBUFS;
	int64_t seq = stage(w, type, iov, iovcnt, cookie);
	if (seq > 0) {
		w->appends++;
		for (int i = 0; i < iovcnt; i++)
			w->append_bytes += iov[i].iov_len;
	}
	return seq;
}

int64_t rmq_wal_append(struct rmq_wal *w, uint16_t type, const void *data, uint32_t len, uint64_t cookie)
{
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	return rmq_wal_appendv(w, type, &iov, 1, cookie);
}

/* ---- compaction and release ------------------------------------------------------------------ */
int rmq_wal_compact(struct rmq_wal *w)
{
	if (w->err)
		return w->err;
	if (!w->snapshot)
		return -ENOENT;
	if (w->compacting || w->unlink_on || (w->nsegs > 1 && w->segs[0].doomed))
		return -EBUSY;
	/* Nothing of the snapshot reaches the disk before this returns, so a failed one is taken back. */
	uint64_t begin_seq = w->next_seq, end0 = w->staged_end, tail0 = w->tail_seg_bytes;
	uint64_t since0 = w->since_snap, appends0 = w->appends, abytes0 = w->append_bytes;
	size_t ncuts0 = w->ncuts, ck0 = w->ck_n;
	if (add_cut(w, begin_seq))
		return -ENOMEM;
	w->compacting = true;
	int64_t s = stage(w, SNAP_BEGIN, NULL, 0, 0);
	int rc = s < 0 ? (int)s : w->snapshot(w->ud, w);
	if (rc == 0) {
		s = stage(w, SNAP_END, NULL, 0, 0);
		rc = s < 0 ? (int)s : 0;
	}
	if (rc == 0)
		rc = w->err;
	if (rc) {
		w->compacting = false;
		w->next_seq = begin_seq;
		w->staged_end = end0;
		w->tail_seg_bytes = tail0;
		w->since_snap = since0;
		w->appends = appends0;
		w->append_bytes = abytes0;
		w->ncuts = ncuts0;
		w->ck_n = ck0;
		return rc;
	}
	w->snap_first_seq = begin_seq;
	w->snap_end = w->staged_end;
	w->snap_bytes = w->staged_end - end0;
	w->since_snap = 0;
	w->compactions++;
	return 0;
}

int rmq_wal_release(struct rmq_wal *w, uint64_t upto)
{
	int n = 0;
	for (uint32_t i = 0; i + 1 < w->nsegs; i++) {
		struct seg *s = &w->segs[i];
		if (w->rd.on && s->id == w->rd.seg_id)
			break;
		/* An empty sealed segment holds nothing: its neighbour's first_seq says it is below upto. */
		uint64_t last = s->last_seq ? s->last_seq : w->segs[i + 1].first_seq - 1;
		if (last >= upto)
			break;
		if (!s->doomed) {
			s->doomed = true;
			n++;
		}
	}
	return n;
}

/* ---- prep: the disk work that is due --------------------------------------------------------- */
static struct io_uring_sqe *get_sqe(struct io_uring *ring, unsigned need)
{
	/* A linked pair must reach the kernel in one submission, or the link is cut: make room first. */
	if (io_uring_sq_space_left(ring) < need)
		io_uring_submit(ring);
	return io_uring_get_sqe(ring);
}

static int prep_open(struct rmq_wal *w, struct io_uring *ring, uint64_t ud)
{
	struct cut *c = &w->cuts[0];
	struct io_uring_sqe *a = get_sqe(ring, 2), *b = a ? io_uring_get_sqe(ring) : NULL;
	if (!a || !b)
		return -EBUSY;
	memset(&w->opening, 0, sizeof(w->opening));
	w->opening.first_seq = c->first_seq;
	w->opening.fd = -1;
	w->opening.id = w->next_id++ & 0xffffff;
	seg_name(w->opening.name, c->first_seq);
	io_uring_prep_openat(a, w->dirfd, w->opening.name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	a->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(a, ud | TOKEN(T_OPEN, 0));
	/* The new name must survive a power cut before records in it may be reported durable. */
	io_uring_prep_fsync(b, w->dirfd, 0);
	io_uring_sqe_set_data64(b, ud | TOKEN(T_DIRSYNC, 0));
	w->open_wait = 2;
	w->open_err = 0;
	return 2;
}

static bool write_due(struct rmq_wal *w, uint64_t len, uint64_t now)
{
	if (w->o.fsync != RMQ_WAL_FSYNC_BATCH || w->flush_now || len >= w->o.write_max)
		return true;
	if (w->snap_end > w->st_abs)
		return true;   /* a snapshot waits for nobody: the old segments are deleted when it is durable */
	return now >= w->st_t0 + w->o.batch_us;
}

static int prep_write(struct rmq_wal *w, struct io_uring *ring, uint64_t ud)
{
	struct seg *s = active(w);
	size_t n = w->fl_len - w->fl_done;
	struct io_uring_sqe *a = get_sqe(ring, w->fl_sync ? 2 : 1);
	if (!a)
		return -EBUSY;
	io_uring_prep_write(a, s->fd, w->fl + w->fl_done, (unsigned)n, s->size + w->fl_done);
	io_uring_sqe_set_data64(a, ud | TOKEN(T_WRITE, 0));
	w->fl_wait = 1;
	w->fl_res = 0;
	w->fl_short = false;
	w->writes++;
	if (!w->fl_sync)
		return 1;
	a->flags |= IOSQE_IO_LINK;
	struct io_uring_sqe *b = io_uring_get_sqe(ring);
	if (!b) {   /* cannot happen after get_sqe(ring, 2); keep the write alone rather than unlinked */
		a->flags &= (uint8_t)~IOSQE_IO_LINK;
		w->fl_sync = false;
		return 1;
	}
	io_uring_prep_fsync(b, s->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(b, ud | TOKEN(T_SYNC, 0));
	w->fl_wait = 2;
	return 2;
}

/* Moves the staged bytes up to the next segment boundary into the flight buffer and writes them. */
static int start_flight(struct rmq_wal *w, struct io_uring *ring, uint64_t ud)
{
	uint64_t end = w->ncuts ? w->cuts[0].at : w->staged_end;
	size_t n = end - w->st_abs, rest = w->staged_end - end;
	uint8_t *t = w->fl;
	size_t tcap = w->fl_cap;
	w->fl = w->st;
	w->fl_cap = w->st_cap;
	w->st = t;
	w->st_cap = tcap;
	if (rest) {
		if (grow((void **)&w->st, &w->st_cap, rest, 1)) {
			/* undo the swap; try again next time */
			w->st = w->fl; w->st_cap = w->fl_cap; w->fl = t; w->fl_cap = tcap;
			return -ENOMEM;
		}
		memcpy(w->st, w->fl + n, rest);
	}
	w->fl_abs = w->st_abs;
	w->fl_len = n;
	w->fl_done = 0;
	w->st_abs = end;
	w->st_t0 = rmq_clock_mono_us();
	w->fl_t0 = w->st_t0;
	w->flush_now = false;
	w->fl_last_seq = w->ncuts ? w->cuts[0].first_seq - 1 : w->next_seq - 1;
	w->fl_sync = w->o.fsync != RMQ_WAL_FSYNC_NEVER || (w->snap_end > w->fl_abs && w->snap_end <= end);
	return prep_write(w, ring, ud);
}

static int prep_unlink(struct rmq_wal *w, struct io_uring *ring, uint64_t ud)
{
	/* One at a time, oldest first: a crash in between leaves a contiguous suffix of the log. */
	if (w->unlink_on || !w->nsegs || !w->segs[0].doomed || w->nsegs < 2)
		return 0;
	struct seg *s = &w->segs[0];
	struct io_uring_sqe *a = get_sqe(ring, 1);
	if (!a)
		return -EBUSY;
	if (s->fd >= 0) {
		close(s->fd);   /* no disk wait: the data is already synced or the file is going away */
		s->fd = -1;
	}
	io_uring_prep_unlinkat(a, w->dirfd, s->name, 0);
	io_uring_sqe_set_data64(a, ud | TOKEN(T_UNLINK, s->id));
	s->unlinking = true;
	w->unlink_on = true;
	return 1;
}

static int prep_read(struct rmq_wal *w, struct io_uring *ring, uint64_t ud);

static int prep_timer(struct rmq_wal *w, struct io_uring *ring, uint64_t ud, uint64_t now)
{
	if (w->timer_on)
		return 0;
	uint64_t due = w->st_t0 + w->o.batch_us, left = due > now ? due - now : 1;
	struct io_uring_sqe *a = get_sqe(ring, 1);
	if (!a)
		return -EBUSY;
	w->ts.tv_sec = (long long)(left / 1000000u);
	w->ts.tv_nsec = (long long)(left % 1000000u) * 1000;
	io_uring_prep_timeout(a, &w->ts, 0, 0);
	io_uring_sqe_set_data64(a, ud | TOKEN(T_TIMER, 0));
	w->timer_on = true;
	return 1;
}

int rmq_wal_prep(struct rmq_wal *w, struct io_uring *ring, uint64_t ud)
{
	int n = 0, rc = 0;
	if (w->err)
		return w->err;
	/* Compact once the log since the last snapshot outgrows both the setting and that snapshot: rewriting
	 * the live state then costs at most as much again as the log it replaces. */
	if (w->o.compact_bytes && w->since_snap >= w->o.compact_bytes && w->since_snap >= w->snap_bytes &&
	    w->snapshot && !w->compacting &&
	    !w->unlink_on && !(w->nsegs && w->segs[0].doomed)) {
		rc = rmq_wal_compact(w);
		if (rc && w->err)
			return w->err;
		if (rc)
			w->since_snap = 0;   /* the caller could not snapshot (ENOMEM...): try again later */
	}
	if (w->ncuts && w->cuts[0].at == w->st_abs && !w->fl_wait && !w->open_wait && w->fl_len == 0) {
		/* everything before the boundary is written: open the next segment */
		rc = prep_open(w, ring, ud);
		if (rc < 0)
			return rc;
		n += rc;
	}
	uint64_t avail = (w->ncuts ? w->cuts[0].at : w->staged_end) - w->st_abs;
	if (w->fl_len && !w->fl_wait) {
		rc = prep_write(w, ring, ud);   /* the rest of a short write */
		if (rc < 0)
			return rc;
		n += rc;
	} else if (!w->fl_wait && w->fl_len == 0 && !w->open_wait && avail) {
		uint64_t now = rmq_clock_mono_us();
		if (write_due(w, avail, now))
			rc = start_flight(w, ring, ud);
		else
			rc = prep_timer(w, ring, ud, now);
		if (rc < 0)
			return rc;
		n += rc;
	}
	rc = prep_unlink(w, ring, ud);
	if (rc < 0)
		return rc;
	n += rc;
	rc = prep_read(w, ring, ud);
	if (rc < 0)
		return rc;
	return n + rc;
}

/* ---- completions ----------------------------------------------------------------------------- */
static void note_commit(struct rmq_wal *w, uint64_t us)
{
	if (us > w->commit_max_us)
		w->commit_max_us = us;
	int b = us ? 64 - __builtin_clzll(us) : 0;
	b = b > 63 ? 63 : b;
	w->hist[b]++;
}

/* The flight is on disk (per policy): account for it, report its cookies. */
static void flight_done(struct rmq_wal *w)
{
	struct seg *s = active(w);
	uint64_t end = w->fl_abs + w->fl_len;
	s->size += w->fl_len;
	if (w->fl_sync) {
		w->fsyncs++;
		note_commit(w, rmq_clock_mono_us() - w->fl_t0);
	}
	w->fl_len = w->fl_done = 0;
	s->last_seq = w->fl_last_seq;
	while (w->ck_n && w->ck[w->ck_head].end <= end) {
		struct ckent e = w->ck[w->ck_head++];
		w->ck_n--;
		if (w->done)
			w->done(w->ud, e.cookie, e.seq, 0);
	}
	if (w->ck_n == 0) {
		w->ck_head = 0;
	} else if (w->ck_head > 1024 && w->ck_head > w->ck_n) {
		/* a log that is never idle would otherwise grow the array forever */
		memmove(w->ck, w->ck + w->ck_head, w->ck_n * sizeof(*w->ck));
		w->ck_head = 0;
	}
	if (w->snap_end && w->snap_end <= end) {
		/* The snapshot is durable: everything before its segment is garbage now. */
		for (uint32_t i = 0; i < w->nsegs; i++)
			if (w->segs[i].first_seq < w->snap_first_seq)
				w->segs[i].doomed = true;
		w->snap_end = 0;
		w->compacting = false;
	}
}

static void on_write(struct rmq_wal *w, int op, int res)
{
	if (op == T_WRITE) {
		if (res < 0)
			w->fl_res = w->fl_res ? w->fl_res : res;
		else if ((size_t)res < w->fl_len - w->fl_done) {
			w->fl_done += (size_t)res;   /* short write: the linked fsync is cancelled, go again */
			w->fl_short = true;
		} else
			w->fl_done = w->fl_len;
	} else if (res < 0 && !(res == -ECANCELED && w->fl_short)) {
		w->fl_res = w->fl_res ? w->fl_res : res;
	}
	if (--w->fl_wait > 0)
		return;
	if (w->fl_res) {
		fail(w, w->fl_res);
		return;
	}
	if (w->fl_done < w->fl_len)
		return;   /* the next prep writes the rest (and syncs again) */
	flight_done(w);
}

static void on_open(struct rmq_wal *w, int op, int res)
{
	if (op == T_OPEN && res >= 0)
		w->opening.fd = res;
	else if (res < 0 && !w->open_err)
		w->open_err = res;   /* the first error of the pair (the dir fsync is cancelled after it) */
	if (--w->open_wait > 0)
		return;
	if (w->open_err) {
		if (w->opening.fd >= 0)
			close(w->opening.fd);
		fail(w, w->open_err);
		return;
	}
	if (grow((void **)&w->segs, &w->segs_cap, w->nsegs + 1, sizeof(*w->segs))) {
		close(w->opening.fd);
		fail(w, -ENOMEM);
		return;
	}
	w->segs[w->nsegs++] = w->opening;
	memmove(w->cuts, w->cuts + 1, (--w->ncuts) * sizeof(*w->cuts));
}

static void on_unlink(struct rmq_wal *w, uint32_t id, int res)
{
	w->unlink_on = false;
	if (!w->nsegs || w->segs[0].id != id)
		return;
	if (res < 0 && res != -ENOENT) {
		fail(w, res);
		return;
	}
	memmove(w->segs, w->segs + 1, (--w->nsegs) * sizeof(*w->segs));
	w->seg_deleted++;
}

static void on_read(struct rmq_wal *w, int res);

void rmq_wal_complete(struct rmq_wal *w, uint64_t user_data, int res)
{
	uint32_t tok = (uint32_t)user_data;
	int op = (int)(tok >> 24);
	switch (op) {
	case T_WRITE:
	case T_SYNC:
		on_write(w, op, res);
		break;
	case T_OPEN:
	case T_DIRSYNC:
		on_open(w, op, res);
		break;
	case T_UNLINK:
		on_unlink(w, tok & 0xffffffu, res);
		break;
	case T_TIMER:
		w->timer_on = false;
		break;
	case T_READ:
		on_read(w, res);
		break;
	default:
		break;
	}
}

/* ---- reader ---------------------------------------------------------------------------------- */
static int seg_index(const struct rmq_wal *w, uint32_t id)
{
	for (uint32_t i = 0; i < w->nsegs; i++)
		if (w->segs[i].id == id)
			return (int)i;
	return -1;
}

void rmq_wal_reader_enable(struct rmq_wal *w, bool on)
{
	w->rd.on = on;
}

void rmq_wal_reader_seek(struct rmq_wal *w, uint64_t from)
{
	struct reader *r = &w->rd;
	r->from = from;
	r->file_off = 0;
	r->len = r->pos = 0;
	r->err = 0;
	r->seg_id = w->nsegs ? w->segs[0].id : 0;
	/* start in the newest segment that begins at or before `from` */
	for (uint32_t i = 0; i < w->nsegs; i++)
		if (w->segs[i].first_seq <= from)
			r->seg_id = w->segs[i].id;
}

static int prep_read(struct rmq_wal *w, struct io_uring *ring, uint64_t ud)
{
	struct reader *r = &w->rd;
	if (!r->on || r->inflight || r->err)
		return 0;
	int i = seg_index(w, r->seg_id);
	if (i < 0)
		return 0;
	struct seg *s = &w->segs[i];
	uint64_t have_end = r->file_off + r->len;
	if (have_end >= s->size)
		return 0;
	if (r->pos) {   /* keep only the unparsed bytes: pointers handed out before are void now */
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->file_off += r->pos;
		r->len -= r->pos;
		r->pos = 0;
	}
	if (r->len >= r->cap / 2 && r->cap >= READ_BUF && r->len >= RMQ_WAL_HDR) {
		/* the buffer holds a partial record longer than half of it: make room for all of it */
		uint32_t rlen = get32(r->buf + 4);
		size_t need = RMQ_WAL_HDR + (size_t)rlen;
		if (need <= r->len || rlen > RMQ_WAL_REC_MAX)
			return 0;   /* a whole record waits to be consumed, or peek reports the corruption */
		if (grow((void **)&r->buf, &r->cap, need, 1))
			return -ENOMEM;
	} else if (grow((void **)&r->buf, &r->cap, READ_BUF, 1)) {
		return -ENOMEM;
	}
	if (r->len == r->cap)
		return 0;
	uint64_t want = s->size - (r->file_off + r->len);
	size_t n = want < r->cap - r->len ? (size_t)want : r->cap - r->len;
	struct io_uring_sqe *a = get_sqe(ring, 1);
	if (!a)
		return -EBUSY;
	io_uring_prep_read(a, s->fd, r->buf + r->len, (unsigned)n, r->file_off + r->len);
	io_uring_sqe_set_data64(a, ud | TOKEN(T_READ, 0));
	r->inflight = true;
	return 1;
}

static void on_read(struct rmq_wal *w, int res)
{
	struct reader *r = &w->rd;
	r->inflight = false;
	if (res < 0) {
		r->err = res;
		return;
	}
	r->len += (size_t)res;
}

int rmq_wal_reader_peek(struct rmq_wal *w, struct rmq_wal_rec *out)
{
	struct reader *r = &w->rd;
	for (;;) {
		if (r->err)
			return -EIO;
		if (r->inflight)
			return -EAGAIN;
		int i = seg_index(w, r->seg_id);
		if (i < 0)
			return -EAGAIN;
		int64_t n = rec_check(r->buf + r->pos, r->len - r->pos);
		if (n < 0) {
			r->err = -EIO;
			return -EIO;
		}
		if (n == 0) {
			bool at_end = r->file_off + r->pos >= w->segs[i].size;
			if (at_end && (uint32_t)i + 1 < w->nsegs) {   /* sealed: on to the next segment */
				r->seg_id = w->segs[i + 1].id;
				r->file_off = 0;
				r->len = r->pos = 0;
				continue;
			}
			return -EAGAIN;
		}
		const uint8_t *p = r->buf + r->pos;
		uint16_t type = get16(p + 8);
		uint64_t seq = get64(p + 12);
		if (type > RMQ_WAL_TYPE_MAX || seq < r->from) {
			r->pos += (size_t)n;
			continue;
		}
		*out = (struct rmq_wal_rec){ .type = type, .seq = seq, .data = p + RMQ_WAL_HDR, .len = get32(p + 4) };
		return 0;
	}
}

void rmq_wal_reader_next(struct rmq_wal *w)
{
	struct reader *r = &w->rd;
	int64_t n = rec_check(r->buf + r->pos, r->len - r->pos);
	if (n > 0) {
		r->from = get64(r->buf + r->pos + 12) + 1;
		r->pos += (size_t)n;
	}
}

/* ---- idle, drain, close, stats --------------------------------------------------------------- */
bool rmq_wal_idle(const struct rmq_wal *w)
{
	if (w->err)
		return !w->fl_wait && !w->open_wait && !w->unlink_on && !w->timer_on && !w->rd.inflight;
	bool doomed = w->nsegs > 1 && w->segs[0].doomed;
	return w->staged_end == w->st_abs && !w->fl_wait && w->fl_len == 0 && !w->open_wait && !w->ncuts &&
	       !w->unlink_on && !doomed && !w->timer_on && !w->rd.inflight;
}

int rmq_wal_drain(struct rmq_wal *w, struct io_uring *ring, uint64_t ud)
{
	while (!rmq_wal_idle(w)) {
		w->flush_now = true;
		int rc = w->err ? 0 : rmq_wal_prep(w, ring, ud);
		if (rc < 0 && rc != -EBUSY)
			return rc;
		struct io_uring_cqe *cqe;
		rc = io_uring_submit_and_wait(ring, 1);
		if (rc < 0 && rc != -EINTR)
			return rc;
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			uint64_t u = cqe->user_data;
			int res = cqe->res;
			if ((u & ~0xffffffffull) != ud && w->foreign)
				w->foreign(w->foreign_ud, cqe);
			io_uring_cqe_seen(ring, cqe);
			if ((u & ~0xffffffffull) == ud)
				rmq_wal_complete(w, u, res);
		}
	}
	return w->err;
}

void rmq_wal_set_foreign(struct rmq_wal *w, rmq_wal_foreign_fn fn, void *ud)
{
	w->foreign = fn;
	w->foreign_ud = ud;
}

void rmq_wal_close(struct rmq_wal *w)
{
	if (!w)
		return;
	for (uint32_t i = 0; i < w->nsegs; i++)
		if (w->segs[i].fd >= 0)
			close(w->segs[i].fd);
	if (w->dirfd >= 0)
		close(w->dirfd);
	free(w->segs);
	free(w->st);
	free(w->fl);
	free(w->ck);
	free(w->cuts);
	free(w->rd.buf);
	free(w->dir);
	free(w);
}

int rmq_wal_parse_fsync(const char *s, enum rmq_wal_fsync *out)
{
	static const char *const names[] = { "batch", "always", "never" };
	for (int i = 0; i < 3; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum rmq_wal_fsync)i;
			return 0;
		}
	return -EINVAL;
}

const char *rmq_wal_fsync_name(enum rmq_wal_fsync f)
{
	return f == RMQ_WAL_FSYNC_ALWAYS ? "always" : f == RMQ_WAL_FSYNC_NEVER ? "never" : "batch";
}

void rmq_wal_set_callbacks(struct rmq_wal *w, rmq_wal_done_fn done, rmq_wal_snapshot_fn snapshot, void *ud)
{
	w->done = done;
	w->snapshot = snapshot;
	w->ud = ud;
}

const char *rmq_wal_dir(const struct rmq_wal *w)
{
	return w->dir;
}

void rmq_wal_stats(const struct rmq_wal *w, struct rmq_wal_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->appends = w->appends;
	st->append_bytes = w->append_bytes;
	for (uint32_t i = 0; i < w->nsegs; i++)
		st->disk_bytes += w->segs[i].size;
	st->staged_bytes = w->staged_end - w->st_abs;
	st->unsynced_records = w->ck_n;
	st->writes = w->writes;
	st->fsyncs = w->fsyncs;
	st->commit_max_us = w->commit_max_us;
	uint64_t total = 0, seen = 0;
	for (int i = 0; i < 64; i++)
		total += w->hist[i];
	for (int i = 0; i < 64 && total; i++) {
		seen += w->hist[i];
		if (seen * 100 >= total * 99) {
			st->commit_p99_us = i ? (1ull << i) - 1 : 0;
			break;
		}
	}
	if (st->commit_p99_us > st->commit_max_us)
		st->commit_p99_us = st->commit_max_us;
	st->compactions = w->compactions;
	st->segments_deleted = w->seg_deleted;
	st->segments = w->nsegs;
	st->last_seq = w->next_seq - 1;
	st->error = w->err;
}

/* ---- open and recovery (synchronous: start-up only) ------------------------------------------ */
struct walk {
	uint64_t valid;            /* bytes of whole, valid, in-sequence records */
	uint64_t next_seq;         /* expected seq of the record after them */
	uint64_t last_seq;         /* 0: none */
	bool snap_begin, snap_end; /* the segment starts with SNAP_BEGIN; SNAP_END seen */
};

struct replay {
	rmq_wal_replay_fn fn;
	void *ud;
	struct rmq_wal_recovery *rec;
	uint64_t since_snap;
};

/* Walks the valid prefix of one segment (records must carry expect, expect + 1, ...). With rp, replays the
 * caller's records. Returns 0 or the replay callback's error. */
static int walk_seg(const uint8_t *p, uint64_t size, uint64_t expect, struct walk *wk, struct replay *rp)
{
	memset(wk, 0, sizeof(*wk));
	wk->next_seq = expect;
	while (wk->valid < size) {
		const uint8_t *r = p + wk->valid;
		int64_t n = rec_check(r, size - wk->valid);
		if (n <= 0 || get64(r + 12) != wk->next_seq)
			break;
		uint16_t type = get16(r + 8);
		if (type == SNAP_BEGIN && wk->valid == 0)
			wk->snap_begin = true;
		else if (type == SNAP_BEGIN)
			break;   /* a snapshot starts its own segment; anywhere else it is not ours */
		if (type == SNAP_END)
			wk->snap_end = true;
		if (rp && type <= RMQ_WAL_TYPE_MAX) {
			uint32_t len = get32(r + 4);
			int rc = rp->fn ? rp->fn(rp->ud, type, wk->next_seq, r + RMQ_WAL_HDR, len) : 0;
			if (rc)
				return rc;
			rp->rec->records++;
			rp->rec->bytes += len;
		}
		if (rp)
			rp->since_snap = type == SNAP_END ? 0 : rp->since_snap + (uint64_t)n;
		wk->last_seq = wk->next_seq++;
		wk->valid += (uint64_t)n;
	}
	return 0;
}

struct found {
	uint64_t first_seq;
	char name[24];
};

static int cmp_found(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

static int list_segs(int dirfd, struct found **out, uint32_t *n)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".wal"))
			continue;
		uint64_t v = strtoull(e->d_name, &end, 16);
		if (end != e->d_name + 16 || v == 0)
			continue;
		if (grow((void **)out, &cap, *n + 1, sizeof(**out))) {
			closedir(d);
			return -ENOMEM;
		}
		(*out)[*n].first_seq = v;
		memcpy((*out)[*n].name, e->d_name, 21);   /* 20 characters and the NUL, checked above */
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(*out, *n, sizeof(**out), cmp_found);
	return 0;
}

struct mapped {
	int fd;
	uint64_t size;
	const uint8_t *p;
};

static int map_seg(int dirfd, const char *name, struct mapped *m)
{
	struct stat st;
	m->p = NULL;
	m->fd = openat(dirfd, name, O_RDWR | O_CLOEXEC);
	if (m->fd < 0 || fstat(m->fd, &st))
		return m->fd < 0 ? -errno : (close(m->fd), -errno);
	m->size = (uint64_t)st.st_size;
	if (m->size) {
		/* populated up front: one pass over the file instead of a page fault per 4 KiB */
		void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, m->fd, 0);
		if (p == MAP_FAILED) {
			int err = -errno;
			close(m->fd);
			return err;
		}
		m->p = p;
	}
	return 0;
}

static void unmap_seg(struct mapped *m)
{
	if (m->p)
		munmap((void *)m->p, m->size);
	m->p = NULL;
}

/* The newest segment that starts with a complete snapshot, or 0. */
static int find_start(struct rmq_wal *w, const struct found *f, uint32_t n, uint32_t *start)
{
	*start = 0;
	for (uint32_t i = n; i-- > 0;) {
		struct mapped m;
		int rc = map_seg(w->dirfd, f[i].name, &m);
		if (rc)
			return rc;
		struct walk wk;
		walk_seg(m.p, m.size, f[i].first_seq, &wk, NULL);
		unmap_seg(&m);
		close(m.fd);
		if (wk.snap_begin && wk.snap_end) {
			*start = i;
			return 0;
		}
	}
	return 0;
}

static int add_seg(struct rmq_wal *w, uint64_t first_seq, int fd, uint64_t size, uint64_t last_seq)
{
	if (grow((void **)&w->segs, &w->segs_cap, w->nsegs + 1, sizeof(*w->segs)))
		return -ENOMEM;
	struct seg *s = &w->segs[w->nsegs++];
	memset(s, 0, sizeof(*s));
	s->first_seq = first_seq;
	s->last_seq = last_seq;
	s->size = size;
	s->fd = fd;
	s->id = w->next_id++ & 0xffffff;
	seg_name(s->name, first_seq);
	return 0;
}

static void warn_cut(struct rmq_wal *w, const char *name, uint64_t off, uint64_t cut, uint32_t later)
{
	if (w->o.quiet)
		return;
	fprintf(stderr, "ringmq: wal %s: torn or corrupt record in %s at offset %" PRIu64 ": truncated %" PRIu64
		" bytes%s\n", w->dir, name, off, cut, later ? " and the segments after it" : "");
}

/* Replays segments f[start..n) and keeps the valid prefix of the log; deletes what is past it. */
static int replay_segs(struct rmq_wal *w, const struct found *f, uint32_t start, uint32_t n, struct replay *rp)
{
	uint64_t expect = f[start].first_seq;
	uint32_t i;
	for (i = start; i < n; i++) {
		struct mapped m;
		int rc = map_seg(w->dirfd, f[i].name, &m);
		if (rc)
			return rc;
		struct walk wk = { 0 };
		bool gap = f[i].first_seq != expect;
		bool stray_snap = i > start && m.size >= RMQ_WAL_HDR && get16(m.p + 8) == SNAP_BEGIN;
		if (!gap && !stray_snap)
			rc = walk_seg(m.p, m.size, expect, &wk, rp);
		unmap_seg(&m);
		if (rc) {
			close(m.fd);
			return rc;
		}
		if (gap || stray_snap) {   /* a hole in the sequence, or a snapshot that never finished */
			close(m.fd);
			break;
		}
		if (wk.valid < m.size) {
			if (ftruncate(m.fd, (off_t)wk.valid) || fdatasync(m.fd)) {
				rc = -errno;
				close(m.fd);
				return rc;
			}
			rp->rec->truncated_bytes += m.size - wk.valid;
			warn_cut(w, f[i].name, wk.valid, m.size - wk.valid, n - i - 1);
		}
		rc = add_seg(w, f[i].first_seq, m.fd, wk.valid, wk.last_seq);
		if (rc) {
			close(m.fd);
			return rc;
		}
		expect = wk.next_seq;
		if (wk.valid < m.size) {
			i++;
			break;
		}
	}
	if (i < n) {
		/* everything after the cut: a later segment cannot hold records the cut lost */
		bool warned = rp->rec->truncated_bytes > 0;
		for (uint32_t j = i; j < n; j++) {
			struct stat st;
			if (fstatat(w->dirfd, f[j].name, &st, 0) == 0)
				rp->rec->truncated_bytes += (uint64_t)st.st_size;
			if (!warned) {
				warn_cut(w, f[j].name, 0, (uint64_t)st.st_size, n - j - 1);
				warned = true;
			}
			if (unlinkat(w->dirfd, f[j].name, 0))
				return -errno;
		}
	}
	w->next_seq = expect;
	return 0;
}

static int recover(struct rmq_wal *w, struct replay *rp)
{
	struct found *f = NULL;
	uint32_t n = 0, start = 0;
	int rc = list_segs(w->dirfd, &f, &n);
	if (rc)
		return rc;
	w->next_seq = 1;
	if (n) {
		rc = find_start(w, f, n, &start);
		/* older than the newest complete snapshot: garbage a crash left behind */
		for (uint32_t j = 0; rc == 0 && j < start; j++)
			if (unlinkat(w->dirfd, f[j].name, 0))
				rc = -errno;
		if (rc == 0)
			rc = replay_segs(w, f, start, n, rp);
		if (rc == 0 && fsync(w->dirfd))
			rc = -errno;
	}
	free(f);
	return rc;
}

static int create_first(struct rmq_wal *w)
{
	char name[24];
	seg_name(name, w->next_seq);
	int fd = openat(w->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (fsync(w->dirfd)) {
		int err = -errno;
		close(fd);
		return err;
	}
	int rc = add_seg(w, w->next_seq, fd, 0, 0);
	if (rc)
		close(fd);
	return rc;
}

static void set_defaults(struct rmq_wal_opts *o)
{
	if (!o->batch_us)
		o->batch_us = DEF_BATCH_US;
	if (!o->segment_bytes)
		o->segment_bytes = DEF_SEGMENT;
	if (!o->stage_max)
		o->stage_max = DEF_STAGE_MAX;
	if (!o->write_max)
		o->write_max = DEF_WRITE_MAX;
}

int rmq_wal_open(struct rmq_wal **out, const char *dir, const struct rmq_wal_opts *o, rmq_wal_replay_fn replay,
		 void *ud, struct rmq_wal_recovery *rec)
{
	struct rmq_wal_recovery dummy;
	rec = rec ? rec : &dummy;
	memset(rec, 0, sizeof(*rec));
	uint64_t t0 = rmq_clock_mono_us();
	*out = NULL;
	struct rmq_wal *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->dirfd = -1;
	w->o = o ? *o : (struct rmq_wal_opts){ 0 };
	set_defaults(&w->o);
	w->dir = strdup(dir);
	if (!w->dir) {
		rmq_wal_close(w);
		return -ENOMEM;
	}
	if (mkdir(dir, 0755) && errno != EEXIST) {
		int err = -errno;
		rmq_wal_close(w);
		return err;
	}
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		int err = -errno;
		rmq_wal_close(w);
		return err;
	}
	struct replay rp = { .fn = replay, .ud = ud, .rec = rec };
	int rc = recover(w, &rp);
	if (rc == 0 && w->nsegs == 0)
		rc = create_first(w);
	if (rc) {
		rmq_wal_close(w);
		return rc;
	}
	w->since_snap = rp.since_snap;
	w->tail_seg_bytes = active(w)->size;
	rec->segments = w->nsegs;
	rec->first_seq = w->segs[0].first_seq;
	rec->last_seq = w->next_seq - 1;
	rec->usec = rmq_clock_mono_us() - t0;
	w->rd.seg_id = w->segs[0].id;
	*out = w;
	return 0;
}
