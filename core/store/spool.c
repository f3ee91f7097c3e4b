/* The Kafka spool of spool.h on top of the log (wal.c): message records, delivery marks, the bound, replay.
 * Every function runs on the owning reactor thread (open/close at start-up and shutdown). */
#include "store/spool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Record types in the spool's log. */
#define SP_MSG 1        /* u64 cum_bytes, u64 cum_count (of all MSG before it), u16 topic_len, u8 flags,
			 * u8 0, u32 key_len, u32 value_len, u32 headers_len, then topic, key, value, headers */
#define SP_DELIVERED 2  /* u64 seq, u64 cum_bytes, u64 cum_count: every MSG up to seq is delivered */
#define MSG_HDR 32u
#define MARK_LEN 24u
#define F_KEY 1u

#define DEF_MAX (1ull << 30)
#define DEF_WINDOW 65536u   /* ~ librdkafka's default queue.buffering.max.messages / 1.5 */
#define MARK_COOKIE 1u      /* any non-zero cookie: marks are told apart by seq */
#define DEF_STAGE (8u << 20) /* the log's default stage_max (wal.h) */

struct sent {            /* a message handed out, waiting for its ack */
	uint64_t seq;
	uint32_t bytes;
	bool acked;
};

struct rmq_spool {
	struct rmq_wal *w;
	rmq_spool_done_fn done;
	void *ud;
	uint64_t max_bytes;
	uint32_t stage_max;                     /* the log's: rmq_spool_reserve must stay under it */
	/* cumulative over the spool's life (carried in the records, so they survive restarts) */
	uint64_t cum_bytes, cum_count;          /* appended */
	uint64_t del_bytes, del_count, del_seq; /* delivered: everything up to del_seq */
	uint64_t sent_count;                    /* handed out (delivered + in flight) */
	struct sent *fifo;                      /* ring of `window` entries, handed-out order */
	uint32_t window, head, n;
	/* delivery mark: the newest one appended, and the newest one durable */
	bool mark_dirty, mark_pending;          /* one mark in the log's hands at a time */
	uint64_t mark_seq, mark_upto;
	uint64_t appended, delivered, refused_full;
	struct rmq_wal_rec peeked;              /* what peek returned, for next */
	bool have_peek;
};

static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Fills m from a MSG record; -EIO if its lengths disagree with the record (a bug: the CRC was good). */
static int parse_msg(const uint8_t *d, uint32_t len, struct rmq_spool_msg *m)
{
	if (len < MSG_HDR)
		return -EIO;
	m->topic_len = get16(d + 16);
	m->has_key = d[18] & F_KEY;
	m->key_len = get32(d + 20);
	m->value_len = get32(d + 24);
	m->headers_len = get32(d + 28);
	uint64_t total = (uint64_t)MSG_HDR + m->topic_len + m->key_len + m->value_len + m->headers_len;
	if (total != len)
		return -EIO;
	const uint8_t *p = d + MSG_HDR;
	m->topic = (const char *)p;
	m->key = p += m->topic_len;
	m->value = p += m->key_len;
	m->headers = p + m->value_len;
	return 0;
}

/* ---- recovery ---------------------------------------------------------------------------------- */
struct rstate {
	bool any_msg, any_mark;
	uint64_t first_cum_bytes, first_cum_count, first_seq;
	uint64_t end_bytes, end_count;          /* after the last MSG */
	uint64_t mark_seq, mark_bytes, mark_count;
};

static int on_replay(void *ud, uint16_t type, uint64_t seq, const uint8_t *d, uint32_t len)
{
	struct rstate *r = ud;
	if (type == SP_MSG) {
		if (len < MSG_HDR)
			return -EIO;
		if (!r->any_msg) {
			r->any_msg = true;
			r->first_seq = seq;
			r->first_cum_bytes = get64(d);
			r->first_cum_count = get64(d + 8);
		}
		r->end_bytes = get64(d) + len;
		r->end_count = get64(d + 8) + 1;
	} else if (type == SP_DELIVERED && len == MARK_LEN) {
		r->any_mark = true;
		r->mark_seq = get64(d);
		r->mark_bytes = get64(d + 8);
		r->mark_count = get64(d + 16);
	}
	return 0;   /* other types: a newer version's, skipped */
}

static void on_done(void *ud, uint64_t cookie, uint64_t seq, int err)
{
	struct rmq_spool *s = ud;
	if (s->mark_pending && seq == s->mark_seq) {
		s->mark_pending = false;
		/* The mark is durable: segments wholly below it will never be replayed. */
		if (err == 0)
			rmq_wal_release(s->w, s->mark_upto + 1);
		return;
	}
	if (s->done)
		s->done(s->ud, cookie, err);
}

static void adopt(struct rmq_spool *s, const struct rstate *r)
{
	/* Delivered: up to the newest mark; with none, up to what the deleted segments held. */
	if (r->any_mark) {
		s->del_seq = r->mark_seq;
		s->del_bytes = r->mark_bytes;
		s->del_count = r->mark_count;
	}
	if (r->any_msg && (!r->any_mark || r->first_cum_count > s->del_count)) {
		s->del_seq = r->first_seq - 1;
		s->del_bytes = r->first_cum_bytes;
		s->del_count = r->first_cum_count;
	}
	s->cum_bytes = r->any_msg ? r->end_bytes : s->del_bytes;
	s->cum_count = r->any_msg ? r->end_count : s->del_count;
	if (s->cum_count < s->del_count) {   /* a mark newer than every message left */
		s->cum_bytes = s->del_bytes;
		s->cum_count = s->del_count;
	}
	s->sent_count = s->del_count;
}

int rmq_spool_open(struct rmq_spool **out, const char *dir, const struct rmq_spool_opts *o, rmq_spool_done_fn done,
		   void *ud, struct rmq_spool_recovery *rec)
{
	struct rmq_spool_recovery dummy;
	rec = rec ? rec : &dummy;
	memset(rec, 0, sizeof(*rec));
	*out = NULL;
	struct rmq_spool *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	struct rmq_spool_opts so = o ? *o : (struct rmq_spool_opts){ 0 };
	s->max_bytes = so.max_bytes ? so.max_bytes : DEF_MAX;
	s->window = so.window ? so.window : DEF_WINDOW;
	s->stage_max = so.wal.stage_max ? so.wal.stage_max : DEF_STAGE;
	if (!so.wal.segment_bytes) {
		/* small enough that delivered data is deleted promptly, large enough that rolls are rare */
		uint64_t seg = s->max_bytes / 8;
		so.wal.segment_bytes = seg < (1u << 20) ? (1u << 20) : seg > (64u << 20) ? (64u << 20) : seg;
	}
	s->fifo = calloc(s->window, sizeof(*s->fifo));
	if (!s->fifo) {
		free(s);
		return -ENOMEM;
	}
	struct rstate r = { 0 };
	int rc = rmq_wal_open(&s->w, dir, &so.wal, on_replay, &r, &rec->wal);
	if (rc) {
		free(s->fifo);
		free(s);
		return rc;
	}
	adopt(s, &r);
	s->done = done;
	s->ud = ud;
	rmq_wal_set_callbacks(s->w, on_done, NULL, s);
	rmq_wal_reader_enable(s->w, true);
	rmq_wal_reader_seek(s->w, s->del_seq + 1);
	rec->backlog_records = s->cum_count - s->del_count;
	rec->backlog_bytes = s->cum_bytes - s->del_bytes;
	*out = s;
	return 0;
}

/* ---- append ------------------------------------------------------------------------------------ */
static uint64_t rec_len(const struct rmq_spool_msg *m)
{
	return (uint64_t)MSG_HDR + m->topic_len + m->key_len + m->value_len + m->headers_len;
}

int rmq_spool_reserve(struct rmq_spool *s, const struct rmq_spool_msg *m, int n)
{
	uint64_t total = 0;
	for (int i = 0; i < n; i++)
		total += rec_len(&m[i]);
	if (s->cum_bytes - s->del_bytes + total > s->max_bytes) {
		s->refused_full++;
		return -ENOSPC;
	}
	if (n > 1) {   /* the log checks its stage before each record: the first ones could fill it */
		struct rmq_wal_stats ws;
		rmq_wal_stats(s->w, &ws);
		if (ws.staged_bytes + total + (uint64_t)n * RMQ_WAL_HDR > s->stage_max)
			return -ENOBUFS;
	}
	return 0;
}

int rmq_spool_append(struct rmq_spool *s, const struct rmq_spool_msg *m, uint64_t cookie)
{
	if (m->topic_len == 0 || (!m->has_key && m->key_len))
		return -EINVAL;
	uint64_t len = rec_len(m);
	if (len > RMQ_WAL_REC_MAX)
		return -EINVAL;
	if (s->cum_bytes - s->del_bytes + len > s->max_bytes) {
		s->refused_full++;
		return -ENOSPC;
	}
	uint8_t h[MSG_HDR] = { 0 };
	memcpy(h, &s->cum_bytes, 8);
	memcpy(h + 8, &s->cum_count, 8);
	memcpy(h + 16, &m->topic_len, 2);
	h[18] = m->has_key ? F_KEY : 0;
	memcpy(h + 20, &m->key_len, 4);
	memcpy(h + 24, &m->value_len, 4);
	memcpy(h + 28, &m->headers_len, 4);
	struct iovec iov[5] = {
		{ h, MSG_HDR },
		{ (void *)m->topic, m->topic_len },
		{ (void *)m->key, m->key_len },
		{ (void *)m->value, m->value_len },
		{ (void *)m->headers, m->headers_len },
	};
	int64_t seq = rmq_wal_appendv(s->w, SP_MSG, iov, 5, cookie);
	if (seq < 0)
		return (int)seq;
	s->cum_bytes += len;
	s->cum_count++;
	s->appended++;
	return 0;
}

/* ---- replay ------------------------------------------------------------------------------------ */
int rmq_spool_peek(struct rmq_spool *s, struct rmq_spool_msg *m)
{
	s->have_peek = false;
	if (s->sent_count >= s->cum_count)
		return -ENODATA;
	if (s->n == s->window)
		return -EBUSY;
	for (;;) {
		struct rmq_wal_rec r;
		int rc = rmq_wal_reader_peek(s->w, &r);
		if (rc)
			return rc;
		if (r.type != SP_MSG) {
			rmq_wal_reader_next(s->w);
			continue;
		}
		rc = parse_msg(r.data, r.len, m);
		if (rc)
			return rc;
		m->seq = r.seq;
		s->peeked = r;
		s->have_peek = true;
		return 0;
	}
}

void rmq_spool_next(struct rmq_spool *s)
{
	if (!s->have_peek || s->n == s->window)
		return;
	s->fifo[(s->head + s->n) % s->window] = (struct sent){ .seq = s->peeked.seq, .bytes = s->peeked.len };
	s->n++;
	s->sent_count++;
	s->have_peek = false;
	rmq_wal_reader_next(s->w);
}

static struct sent *find_sent(struct rmq_spool *s, uint64_t seq)
{
	uint32_t lo = 0, hi = s->n;   /* handed out in seq order: binary search */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct sent *e = &s->fifo[(s->head + mid) % s->window];
		if (e->seq == seq)
			return e;
		if (e->seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int rmq_spool_ack(struct rmq_spool *s, uint64_t seq)
{
	struct sent *e = find_sent(s, seq);
	if (!e || e->acked)
		return -ENOENT;
	e->acked = true;
	while (s->n && s->fifo[s->head].acked) {
		struct sent *h = &s->fifo[s->head];
		s->del_seq = h->seq;
		s->del_bytes += h->bytes;
		s->del_count++;
		s->delivered++;
		s->head = (s->head + 1) % s->window;
		s->n--;
		s->mark_dirty = true;
	}
	return 0;
}

void rmq_spool_rewind(struct rmq_spool *s)
{
	s->n = 0;
	s->head = 0;
	s->sent_count = s->del_count;
	s->have_peek = false;
	rmq_wal_reader_seek(s->w, s->del_seq + 1);
}

bool rmq_spool_empty(const struct rmq_spool *s)
{
	return s->del_count == s->cum_count;
}

uint32_t rmq_spool_inflight(const struct rmq_spool *s)
{
	return s->n;
}

/* ---- the ring ---------------------------------------------------------------------------------- */
/* Records how far delivery got, so a restart replays only the rest (a lost mark only means duplicates). */
static int write_mark(struct rmq_spool *s)
{
	uint8_t d[MARK_LEN];
	memcpy(d, &s->del_seq, 8);
	memcpy(d + 8, &s->del_bytes, 8);
	memcpy(d + 16, &s->del_count, 8);
	if (s->mark_pending)
		return 0;   /* after the one in flight */
	int64_t seq = rmq_wal_append(s->w, SP_DELIVERED, d, sizeof(d), MARK_COOKIE);
	if (seq == -ENOBUFS)
		return 0;   /* later */
	if (seq < 0)
		return (int)seq;
	s->mark_seq = (uint64_t)seq;
	s->mark_upto = s->del_seq;
	s->mark_dirty = false;
	s->mark_pending = true;
	return 0;
}

int rmq_spool_prep(struct rmq_spool *s, struct io_uring *ring, uint64_t ud_base)
{
	if (s->mark_dirty) {
		int rc = write_mark(s);
		if (rc)
			return rc;
	}
	return rmq_wal_prep(s->w, ring, ud_base);
}

void rmq_spool_complete(struct rmq_spool *s, uint64_t user_data, int res)
{
	rmq_wal_complete(s->w, user_data, res);
}

void rmq_spool_set_foreign(struct rmq_spool *s, rmq_wal_foreign_fn fn, void *ud)
{
	rmq_wal_set_foreign(s->w, fn, ud);
}

int rmq_spool_drain(struct rmq_spool *s, struct io_uring *ring, uint64_t ud_base)
{
	/* a mark waiting behind the one in flight, then the deletions the last one allows */
	for (int i = 0; i < 3; i++) {
		if (s->mark_dirty) {
			int rc = write_mark(s);
			if (rc)
				return rc;
		}
		int rc = rmq_wal_drain(s->w, ring, ud_base);
		if (rc)
			return rc;
	}
	return 0;
}

void rmq_spool_close(struct rmq_spool *s)
{
	if (!s)
		return;
	rmq_wal_close(s->w);
	free(s->fifo);
	free(s);
}

void rmq_spool_stats(const struct rmq_spool *s, struct rmq_spool_stats *st)
{
	memset(st, 0, sizeof(*st));
	rmq_wal_stats(s->w, &st->wal);
	st->backlog_records = s->cum_count - s->del_count;
	st->backlog_bytes = s->cum_bytes - s->del_bytes;
	st->inflight = s->n;
	st->appended = s->appended;
	st->delivered = s->delivered;
	st->refused_full = s->refused_full;
	st->max_bytes = s->max_bytes;
}
