/* This core's durable state log: record codec, logging of state changes, replay at start-up, compaction
 * snapshot, and acks held until their records are durable. Reactor thread of the core (meta check: main). */
#include "store/persist.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringmq/clock.h"

#include "index/msg.h"
#include "index/retain.h"
#include "io/reactor.h"
#include "store/session.h"
#include "store/store.h"

/* The log is compacted once this much was appended since the last snapshot, or at start-up when the replayed
 * log is already that long: big enough that a busy core compacts rarely (a snapshot re-writes every live
 * session and retained message), small enough that a restart replays seconds, not minutes. */
#define COMPACT_BYTES (64ull << 20)
/* ... and only once the log since the last snapshot is this many times that snapshot: a core whose live state
 * is large (long offline queues) then rewrites each byte at most 1/4 more often instead of once more, and the
 * log stays within max(COMPACT_BYTES, LIVE_FACTOR x live) + live. */
#define LIVE_FACTOR 4
/* Staged, unwritten bytes before appends are refused: a few seconds of a slow disk at full publish rate. A
 * refused record is counted and its publish gets a failed ack (3.x: disconnect), so the car resends. */
#define STAGE_MAX (256u << 20)
/* One write (and its fdatasync) in flight at a time: under load a flight carries everything staged meanwhile,
 * so the largest write bounds throughput at WRITE_MAX per commit latency (8 MiB / 20 ms = 400 MB/s here;
 * the log's 1 MiB default capped QoS 1 at ~150k stored messages/s on this machine's virtual disk). */
#define WRITE_MAX (8u << 20)
#define META_NAME "meta"

/* ---- record codec ----------------------------------------------------------------------------- */

enum {
	F_ID = 1 << 0, F_PVER = 1 << 1, F_EXPIRY = 1 << 2, F_SUBOPT = 1 << 3, F_FILTER = 1 << 4, F_PID = 1 << 5,
	F_FLAGS = 1 << 6, F_SHARE = 1 << 7, F_IDS = 1 << 8, F_EXPWALL = 1 << 9, F_STAMP = 1 << 10, F_MSG = 1 << 11,
};

static const uint16_t fields[RMQ_PR__COUNT] = {
	[RMQ_PR_SESS_PUT] = F_ID | F_PVER | F_EXPIRY | F_FILTER | F_EXPWALL,
	[RMQ_PR_SESS_DEL] = F_ID,
	[RMQ_PR_SUB_ADD] = F_ID | F_SUBOPT | F_FILTER,
	[RMQ_PR_SUB_DEL] = F_ID | F_FILTER,
	[RMQ_PR_QUEUE_PUSH] = F_ID | F_FLAGS | F_SHARE | F_IDS | F_EXPWALL | F_MSG,
	[RMQ_PR_QUEUE_POP] = F_ID | F_PID,
	[RMQ_PR_INFL_ADD] = F_ID | F_PID | F_FLAGS | F_SHARE | F_IDS | F_EXPWALL | F_MSG,
	[RMQ_PR_INFL_REL] = F_ID | F_PID,
	[RMQ_PR_INFL_DEL] = F_ID | F_PID,
	[RMQ_PR_QOS2_ADD] = F_ID | F_PID,
	[RMQ_PR_QOS2_DEL] = F_ID | F_PID,
	[RMQ_PR_RET_SET] = F_STAMP | F_EXPWALL | F_MSG,
	[RMQ_PR_RET_CLR] = F_STAMP | F_FILTER,
	[RMQ_PR_SHARE_TAKE] = F_ID | F_SHARE,
};

struct wr {
	uint8_t *p;
	size_t cap, n;
};

static void wbytes(struct wr *w, const void *d, size_t len)
{
	if (w->n + len <= w->cap && len)
		memcpy(w->p + w->n, d, len);
	w->n += len;
}

static void wuint(struct wr *w, uint64_t v, int bytes)
{
	uint8_t b[8];
	for (int i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	wbytes(w, b, (size_t)bytes);
}

ssize_t rmq_persist_encode(uint8_t *buf, size_t cap, const struct rmq_persist_rec *r)
{
	if (r->type == 0 || r->type >= RMQ_PR__COUNT || r->nids > RMQ_MAX_SUB_IDS)
		return -EINVAL;
	uint16_t f = fields[r->type];
	struct wr w = {buf, cap, 0};
	wuint(&w, RMQ_PERSIST_VER, 1);
	if (f & F_ID) {
		wuint(&w, r->id.len, 2);
		wbytes(&w, r->id.p, r->id.len);
	}
	if (f & F_PVER)
		wuint(&w, r->proto_version, 1);
	if (f & F_EXPIRY)
		wuint(&w, r->expiry, 4);
	if (f & F_SUBOPT) {
		wuint(&w, r->options, 1);
		wuint(&w, r->sub_id, 4);
	}
	if (f & F_FILTER) {
		wuint(&w, r->filter.len, 2);
		wbytes(&w, r->filter.p, r->filter.len);
	}
	if (f & F_PID)
		wuint(&w, r->pid, 2);
	if (f & F_FLAGS) {
		wuint(&w, r->qos, 1);
		wuint(&w, r->retain, 1);
		wuint(&w, r->state, 1);
	}
	if (f & F_SHARE)
		wuint(&w, r->share_key, 8);
	if (f & F_IDS) {
		wuint(&w, r->nids, 1);
		for (uint8_t i = 0; i < r->nids; i++)
			wuint(&w, r->ids[i], 4);
	}
	if (f & F_EXPWALL)
		wuint(&w, r->expire_wall_ms, 8);
	if (f & F_STAMP)
		wuint(&w, r->stamp, 8);
	if (f & F_MSG) {
		wuint(&w, r->msg_len, 4);
		if (r->msg)
			wbytes(&w, r->msg, r->msg_len);
		else
			w.n += r->msg_len;   /* reserved: the caller encodes the message in place (one copy less) */
	}
	return (ssize_t)w.n;
}

struct rd {
	const uint8_t *p;
	size_t len, n;
	bool bad;
};

static uint64_t ruint(struct rd *r, int bytes)
{
	if (r->n + (size_t)bytes > r->len) {
		r->bad = true;
		return 0;
	}
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)r->p[r->n + (size_t)i] << (8 * i);
	r->n += (size_t)bytes;
	return v;
}

static const uint8_t *rbytes(struct rd *r, size_t len)
{
	if (r->n + len > r->len) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p + r->n;
	r->n += len;
	return p;
}

static struct rmq_str rstr(struct rd *r)
{
	uint32_t len = (uint32_t)ruint(r, 2);
	return (struct rmq_str){rbytes(r, len), len};
}

int rmq_persist_decode(uint16_t type, const uint8_t *data, size_t len, struct rmq_persist_rec *out)
{
	memset(out, 0, sizeof(*out));
	if (type == 0 || type >= RMQ_PR__COUNT || len < 1 || data[0] != RMQ_PERSIST_VER)
		return -EPROTO;
	out->type = type;
	uint16_t f = fields[type];
	struct rd r = {data, len, 1, false};
	if (f & F_ID)
		out->id = rstr(&r);
	if (f & F_PVER)
		out->proto_version = (uint8_t)ruint(&r, 1);
	if (f & F_EXPIRY)
		out->expiry = (uint32_t)ruint(&r, 4);
	if (f & F_SUBOPT) {
		out->options = (uint8_t)ruint(&r, 1);
		out->sub_id = (uint32_t)ruint(&r, 4);
	}
	if (f & F_FILTER)
		out->filter = rstr(&r);
	if (f & F_PID)
		out->pid = (uint16_t)ruint(&r, 2);
	if (f & F_FLAGS) {
		out->qos = (uint8_t)ruint(&r, 1);
		out->retain = (uint8_t)ruint(&r, 1);
		out->state = (uint8_t)ruint(&r, 1);
	}
	if (f & F_SHARE)
		out->share_key = ruint(&r, 8);
	if (f & F_IDS) {
		out->nids = (uint8_t)ruint(&r, 1);
		if (out->nids > RMQ_MAX_SUB_IDS)
			return -EBADMSG;
		for (uint8_t i = 0; i < out->nids; i++)
			out->ids[i] = (uint32_t)ruint(&r, 4);
	}
	if (f & F_EXPWALL)
		out->expire_wall_ms = ruint(&r, 8);
	if (f & F_STAMP)
		out->stamp = ruint(&r, 8);
	if (f & F_MSG) {
		out->msg_len = (uint32_t)ruint(&r, 4);
		out->msg = rbytes(&r, out->msg_len);
	}
	if (r.bad || r.n != len || out->qos > 2)
		return -EBADMSG;
	return 0;
}

static void msg_packet(struct rmq_packet *pk, const struct rmq_publish *pub)
{
	pk->type = RMQ_PUBLISH;
	pk->flags = 0;
	pk->u.publish = *pub;
	pk->u.publish.dup = false;
	pk->u.publish.packet_id = pub->qos ? 1 : 0;
	pk->u.publish.props.present &= ~(RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS) | RMQ_PBIT(RMQ_PROP_SUB_ID));
	pk->u.publish.props.sub_id_count = 0;
}

ssize_t rmq_persist_msg_encode(uint8_t *buf, size_t cap, const struct rmq_publish *pub)
{
	struct rmq_packet pk;
	msg_packet(&pk, pub);
	ssize_t n = rmq_proto_encoded_len(RMQ_V5, &pk);
	if (n < 0 || (size_t)n > cap)
		return n;
	return rmq_proto_encode(buf, cap, RMQ_V5, &pk);
}

/* ---- the core's log ------------------------------------------------------------------------------ */

#define ORIGIN_LOCAL -1   /* waiter: an ack on this core */
#define ORIGIN_MSG -2     /* waiter: cookie is a struct rmq_msg * whose ref is dropped once durable */
#define ORIGIN_SUB -3     /* waiter: cookie names a connection whose SUBACK waits */
#define ORIGIN_PUBREL -4  /* waiter: cookie names a connection and packet id whose PUBREL waits */
#define ORIGIN_PUBCOMP -5 /* waiter: the same for a PUBCOMP */

struct waiter {
	uint64_t seq, cookie;
	int origin;              /* ORIGIN_*, or the core to answer with XK_DURABLE */
};

struct rmq_persist {
	struct rmq_wal *w;
	bool wait;               /* acks wait for durability (fsync always|batch) */
	uint8_t *buf;            /* encode scratch */
	size_t cap;
	/* the publish being fanned out (pub_begin..end) or the remote entry being stored */
	bool in_scope;
	int scope_origin;
	uint64_t scope_ck, scope_seq;
	uint16_t scope_holds;
	bool scope_failed;
	struct waiter *wq;       /* FIFO by seq: durability is reported in append order */
	uint32_t wq_head, wq_n, wq_cap;
	uint64_t append_fail;
	/* compaction policy (snapshot) */
	bool in_snapshot, snap_failed, snap_forced;
	uint64_t snap_at, snap_bytes;    /* append_bytes at the end of the last snapshot, and its size */
	/* what the replay rebuilt */
	uint64_t skipped;
};


/* Deadlines live on the reactors' monotonic clock in memory and on the wall clock on disk. */
static uint64_t to_wall(const struct core *c, uint64_t mono)
{
	if (!mono)
		return 0;
	uint64_t w = rmq_clock_wall_ms();
	return mono > c->now_ms ? w + (mono - c->now_ms) : (w > c->now_ms - mono ? w - (c->now_ms - mono) : 1);
}

static uint64_t to_mono(const struct core *c, uint64_t wall)
{
	if (!wall)
		return 0;
	uint64_t w = rmq_clock_wall_ms();
	return wall > w ? c->now_ms + (wall - w) : 1;  /* 1: already past (expired) */
}

static bool grow(uint8_t **b, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	uint8_t *nb = realloc(*b, n);
	if (!nb)
		return false;
	*b = nb;
	*cap = n;
	return true;
}

static void append_failed(struct core *c, int err)
{
	struct rmq_persist *p = c->persist;
	if (p->in_snapshot) {
		p->snap_failed = true;   /* the log takes the whole snapshot back; nothing was lost */
		return;
	}
	if (p->in_scope)
		p->scope_failed = true;
	if (!p->append_fail++)
		fprintf(stderr, "ringmq: core %d: state log: record not logged (%s); counting further ones\n", c->id,
			strerror(-err));
}

/* pk: the message of r, encoded into the space r reserved (r->msg NULL, r->msg_len its length); or NULL. */
static void append_to(struct core *c, struct rmq_wal *w, const struct rmq_persist_rec *r,
		      const struct rmq_packet *pk)
{
	struct rmq_persist *p = c->persist;
	ssize_t n = rmq_persist_encode(p->buf, p->cap, r);
	if (n > (ssize_t)p->cap) {
		if (!grow(&p->buf, &p->cap, (size_t)n)) {
			append_failed(c, -ENOMEM);
			return;
		}
		n = rmq_persist_encode(p->buf, p->cap, r);
	}
	if (n < 0 || (pk && rmq_proto_encode(p->buf + n - r->msg_len, r->msg_len, RMQ_V5, pk) != r->msg_len)) {
		append_failed(c, n < 0 ? (int)n : -EINVAL);
		return;
	}
	int64_t seq = rmq_wal_append(w, r->type, p->buf, (uint32_t)n, p->in_scope && p->wait ? 1 : 0);
	if (seq < 0) {
		append_failed(c, (int)seq);
		return;
	}
	if (p->in_scope)
		p->scope_seq = (uint64_t)seq;
}

static void append(struct core *c, const struct rmq_persist_rec *r)
{
	append_to(c, c->persist->w, r, NULL);
}

/* Appends r with message m (its deadline included). */
static void append_msg(struct core *c, struct rmq_wal *w, struct rmq_persist_rec *r, const struct rmq_msg *m)
{
	struct rmq_packet pk;
	msg_packet(&pk, &m->pub);
	ssize_t n = rmq_proto_encoded_len(RMQ_V5, &pk);
	if (n < 0) {
		append_failed(c, -EINVAL);
		return;
	}
	r->msg = NULL;
	r->msg_len = (uint32_t)n;
	r->expire_wall_ms = to_wall(c, m->expire_at_ms);
	append_to(c, w, r, &pk);
}

static struct rmq_persist_rec rec_of(uint16_t type, const struct session *s)
{
	struct rmq_persist_rec r;
	memset(&r, 0, sizeof(r));
	r.type = type;
	if (s)
		r.id = (struct rmq_str){s->client_id, s->id_len};
	return r;
}

static void ids_into(struct rmq_persist_rec *r, const struct subids *ids)
{
	r->nids = ids ? (uint8_t)(ids->n < RMQ_MAX_SUB_IDS ? ids->n : RMQ_MAX_SUB_IDS) : 0;
	for (uint8_t i = 0; i < r->nids; i++)
		r->ids[i] = ids->v[i];
}

/* ---- logging state changes ---------------------------------------------------------------------- */

static void log_session_put(struct core *c, struct rmq_wal *w, const struct session *s)
{
	struct rmq_persist_rec r = rec_of(RMQ_PR_SESS_PUT, s);
	r.proto_version = s->version;
	r.expiry = s->expiry;
	r.expire_wall_ms = s->conn ? 0 : to_wall(c, s->expire_at_ms);
	r.filter = (struct rmq_str){s->acl_user, s->acl_user_len};  /* per-delivery ACL checks need it offline */
	append_to(c, w, &r, NULL);
}

/* A message on its way to a session: queued (QUEUE_PUSH) or sent and unacknowledged (INFL_ADD). */
struct delivery {
	const struct rmq_msg *m;   /* NULL: inflight in PUBREL state */
	const struct subids *ids;
	uint64_t share_key;
	uint16_t pid;
	uint8_t qos, retain, state;
};

static void log_delivery(struct core *c, struct rmq_wal *w, const struct session *s, uint16_t type,
			 const struct delivery *d)
{
	struct rmq_persist_rec r = rec_of(type, s);
	r.pid = d->pid;
	r.qos = d->qos;
	r.retain = d->retain;
	r.state = d->state;
	r.share_key = d->share_key;
	ids_into(&r, d->ids);
	if (d->m)
		append_msg(c, w, &r, d->m);
	else
		append_to(c, w, &r, NULL);
}

static void log_inflight(struct core *c, struct rmq_wal *w, const struct session *s, const struct outmsg *o)
{
	struct delivery d = {o->m, o->ids, o->share_key, o->pid, o->qos, o->retain, o->state};
	log_delivery(c, w, s, RMQ_PR_INFL_ADD, &d);
}

static void log_queued(struct core *c, struct rmq_wal *w, const struct session *s, const struct qent *q)
{
	struct delivery d = {q->m, q->ids, q->share_key, 0, q->qos, q->retain, 0};
	log_delivery(c, w, s, RMQ_PR_QUEUE_PUSH, &d);
}

/* Everything a session holds, as if it had been built record by record: a snapshot, or a session that just
 * became persistent (a clean session taken over by a CONNECT with a session expiry). */
static void log_session_full(struct core *c, struct rmq_wal *w, const struct session *s)
{
	log_session_put(c, w, s);
	for (uint32_t i = 0; i < s->nsubs; i++) {
		struct rmq_persist_rec r = rec_of(RMQ_PR_SUB_ADD, s);
		r.options = s->subs[i].options;
		r.sub_id = s->subs[i].sub_id;
		r.filter = (struct rmq_str){s->subs[i].filter, s->subs[i].len};
		append_to(c, w, &r, NULL);
	}
	for (uint32_t i = 0; i < s->ninflight; i++)
		log_inflight(c, w, s, &s->inflight[i]);
	for (uint32_t i = 0; i < s->qcount; i++)
		log_queued(c, w, s, &s->queue[(s->qhead + i) % s->qcap]);
	for (uint32_t i = 0; i < s->nqos2_in; i++) {
		struct rmq_persist_rec r = rec_of(RMQ_PR_QOS2_ADD, s);
		r.pid = s->qos2_in[i];
		append_to(c, w, &r, NULL);
	}
}

void rmq_persist_session_connected(struct core *c, struct session *s)
{
	if (!s->clean) {
		if (s->durable) {
			log_session_put(c, c->persist->w, s);
		} else {
			s->durable = true;
			log_session_full(c, c->persist->w, s);
		}
	} else if (s->durable) {
		/* Resumed with expiry 0: it ends with this connection; a crash must not bring it back. */
		rmq_persist_session_del(c, s);
		s->durable = false;
	}
}

void rmq_persist_session_offline(struct core *c, struct session *s)
{
	log_session_put(c, c->persist->w, s);
}

void rmq_persist_session_del(struct core *c, struct session *s)
{
	struct rmq_persist_rec r = rec_of(RMQ_PR_SESS_DEL, s);
	append(c, &r);
}

void rmq_persist_sub_add(struct core *c, struct session *s, const uint8_t *f, uint16_t len, uint8_t options,
			 uint32_t sub_id)
{
	struct rmq_persist_rec r = rec_of(RMQ_PR_SUB_ADD, s);
	r.options = options;
	r.sub_id = sub_id;
	r.filter = (struct rmq_str){f, len};
	append(c, &r);
}

void rmq_persist_sub_del(struct core *c, struct session *s, const uint8_t *f, uint16_t len)
{
	struct rmq_persist_rec r = rec_of(RMQ_PR_SUB_DEL, s);
	r.filter = (struct rmq_str){f, len};
	append(c, &r);
}

void rmq_persist_queue_push(struct core *c, struct session *s, const struct qent *q)
{
	log_queued(c, c->persist->w, s, q);
}

void rmq_persist_queue_pop(struct core *c, struct session *s, uint16_t pid)
{
	rmq_persist_pid(c, s, RMQ_PR_QUEUE_POP, pid);
}

void rmq_persist_inflight_add(struct core *c, struct session *s, const struct outmsg *o)
{
	log_inflight(c, c->persist->w, s, o);
}

void rmq_persist_pid(struct core *c, struct session *s, enum rmq_persist_type type, uint16_t pid)
{
	struct rmq_persist_rec r = rec_of((uint16_t)type, s);
	r.pid = pid;
	append(c, &r);
}

void rmq_persist_share_take(struct core *c, struct session *s, uint64_t share_key)
{
	struct rmq_persist_rec r = rec_of(RMQ_PR_SHARE_TAKE, s);
	r.share_key = share_key;
	append(c, &r);
}

static bool is_sys_topic(const struct rmq_str *t)
{
	return t->len >= 5 && !memcmp(t->p, "$SYS/", 5);
}

static void log_retained(struct core *c, struct rmq_wal *w, const struct rmq_msg *m, bool clear)
{
	/* $SYS topics are rewritten every interval by the broker itself: nothing to keep. */
	if (is_sys_topic(&m->pub.topic))
		return;
	struct rmq_persist_rec r = rec_of(clear ? RMQ_PR_RET_CLR : RMQ_PR_RET_SET, NULL);
	r.stamp = m->stamp;
	if (clear) {
		r.filter = m->pub.topic;
		append_to(c, w, &r, NULL);
	} else {
		append_msg(c, w, &r, m);
	}
}

void rmq_persist_retain(struct core *c, const struct rmq_msg *m, bool clear)
{
	log_retained(c, c->persist->w, m, clear);
}

/* ---- acks held for durability --------------------------------------------------------------------- */

bool rmq_persist_waits(const struct core *c)
{
	return c->persist && c->persist->wait;
}

static void scope_open(struct rmq_persist *p, uint64_t cookie, int origin)
{
	p->in_scope = true;
	p->scope_ck = cookie;
	p->scope_origin = origin;
	p->scope_seq = 0;
	p->scope_holds = 0;
	p->scope_failed = false;
}

static int wait_for(struct rmq_persist *p, uint64_t seq, uint64_t cookie, int origin)
{
	if (p->wq_n == p->wq_cap) {
		uint32_t cap = p->wq_cap ? p->wq_cap * 2 : 256;
		struct waiter *n = malloc(cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		for (uint32_t i = 0; i < p->wq_n; i++)
			n[i] = p->wq[(p->wq_head + i) % p->wq_cap];
		free(p->wq);
		p->wq = n;
		p->wq_cap = cap;
		p->wq_head = 0;
	}
	p->wq[(p->wq_head + p->wq_n++) % p->wq_cap] = (struct waiter){seq, cookie, origin};
	return 0;
}

void rmq_persist_pub_begin(struct core *c, uint64_t cookie)
{
	scope_open(c->persist, cookie, ORIGIN_LOCAL);
}

uint16_t rmq_persist_pub_end(struct core *c, bool *failed)
{
	struct rmq_persist *p = c->persist;
	p->in_scope = false;
	*failed = p->scope_failed;
	if (p->scope_seq && !p->scope_failed && wait_for(p, p->scope_seq, p->scope_ck, ORIGIN_LOCAL) == 0)
		p->scope_holds++;
	return p->scope_holds;
}

uint32_t rmq_persist_hold_remote(struct core *c, struct rmq_msg *m)
{
	struct rmq_persist *p = c->persist;
	if (!p || !p->in_scope || p->scope_origin != ORIGIN_LOCAL)
		return 0;
	/* Written before the first push only: other cores may already read m (one message, one publish scope). */
	if (m->durable_ck != p->scope_ck)
		m->durable_ck = p->scope_ck;
	p->scope_holds++;
	return 1;
}

void rmq_persist_remote_dropped(struct core *c, const struct rmq_msg *m)
{
	struct rmq_persist *p = c->persist;
	if (p && p->in_scope && p->scope_origin == ORIGIN_LOCAL && p->scope_ck == m->durable_ck && p->scope_holds)
		p->scope_holds--;
	else
		rmq_persist_on_durable(c, m->durable_ck, false);
}

void rmq_persist_remote_begin(struct core *c, uint64_t cookie, int origin)
{
	if (c->persist)
		scope_open(c->persist, cookie, origin);
}

void rmq_persist_remote_end(struct core *c, uint64_t cookie, int origin)
{
	struct rmq_persist *p = c->persist;
	bool failed = false;
	if (p) {
		p->in_scope = false;
		failed = p->scope_failed;
		if (p->scope_seq && !failed && wait_for(p, p->scope_seq, cookie, origin) == 0)
			return;
	}
	rmq_core_xpush(c, origin, XK_DURABLE, failed, (void *)(uintptr_t)cookie);
}

bool rmq_persist_hold_begin(struct core *c, const struct rmq_msg *m)
{
	struct rmq_persist *p = c->persist;
	if (!p || !p->wait || p->in_scope)
		return false;
	scope_open(p, (uint64_t)(uintptr_t)m, ORIGIN_MSG);
	return true;
}

void rmq_persist_hold_end(struct core *c, struct rmq_msg *m)
{
	struct rmq_persist *p = c->persist;
	p->in_scope = false;
	if (!p->scope_seq || p->scope_failed)
		return;
	if (wait_for(p, p->scope_seq, (uint64_t)(uintptr_t)rmq_msg_ref(m), ORIGIN_MSG))
		rmq_msg_unref(m);
}

void rmq_persist_sub_begin(struct core *c, uint64_t cookie)
{
	scope_open(c->persist, cookie, ORIGIN_SUB);
}

bool rmq_persist_sub_end(struct core *c)
{
	struct rmq_persist *p = c->persist;
	p->in_scope = false;
	return p->scope_seq && !p->scope_failed && wait_for(p, p->scope_seq, p->scope_ck, ORIGIN_SUB) == 0;
}

void rmq_persist_ack_begin(struct core *c, uint64_t cookie, uint8_t type)
{
	assert(type == RMQ_PUBREL || type == RMQ_PUBCOMP);
	if (c->persist)
		scope_open(c->persist, cookie, type == RMQ_PUBREL ? ORIGIN_PUBREL : ORIGIN_PUBCOMP);
}

bool rmq_persist_ack_end(struct core *c)
{
	struct rmq_persist *p = c->persist;
	if (!p)
		return false;
	p->in_scope = false;
	return p->scope_seq && !p->scope_failed && wait_for(p, p->scope_seq, p->scope_ck, p->scope_origin) == 0;
}

void rmq_persist_on_durable(struct core *c, uint64_t cookie, bool err)
{
	c->store_hooks->durable(c, cookie, err ? RMQ_RC_UNSPECIFIED : 0);
}

static void on_done(void *ud, uint64_t cookie, uint64_t seq, int err)
{
	struct core *c = ud;
	struct rmq_persist *p = c->persist;
	(void)cookie;
	if (err && !p->append_fail++)
		fprintf(stderr, "ringmq: core %d: state log failed: %s\n", c->id, strerror(-err));
	while (p->wq_n && (p->wq[p->wq_head].seq <= seq || err)) {
		struct waiter wt = p->wq[p->wq_head];
		p->wq_head = (p->wq_head + 1) % p->wq_cap;
		p->wq_n--;
		if (wt.origin == ORIGIN_MSG)
			rmq_msg_unref((struct rmq_msg *)(uintptr_t)wt.cookie);
		else if (wt.origin == ORIGIN_SUB)
			/* a failed log still answers: the session lives on in memory */
			c->store_hooks->sub_durable(c, wt.cookie);
		else if (wt.origin == ORIGIN_PUBREL || wt.origin == ORIGIN_PUBCOMP)
			c->store_hooks->ack_durable(c, wt.origin == ORIGIN_PUBREL ? RMQ_PUBREL : RMQ_PUBCOMP, wt.cookie);
		else if (wt.origin < 0)
			rmq_persist_on_durable(c, wt.cookie, err != 0);
		else
			rmq_core_xpush(c, wt.origin, XK_DURABLE, err != 0, (void *)(uintptr_t)wt.cookie);
	}
}

/* ---- compaction -------------------------------------------------------------------------------------- */

struct snap_ctx {
	struct core *c;
	struct rmq_wal *w;
};

static void snap_retained(void *ud, const uint8_t *topic, size_t len, void *value)
{
	struct snap_ctx *x = ud;
	(void)topic;
	(void)len;
	log_retained(x->c, x->w, value, false);
}

static void snap_session(void *ud, void *val)
{
	struct snap_ctx *x = ud;
	struct session *s = val;
	if (s->durable)
		log_session_full(x->c, x->w, s);
}

static int snapshot(void *ud, struct rmq_wal *w)
{
	struct core *c = ud;
	struct rmq_persist *p = c->persist;
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	if (!p->snap_forced && p->snap_bytes && st.append_bytes - p->snap_at < LIVE_FACTOR * p->snap_bytes)
		return -EAGAIN;  /* not yet worth it; the log asks again after COMPACT_BYTES more */
	uint64_t before = st.append_bytes;
	p->in_snapshot = true;
	p->snap_failed = false;
	struct snap_ctx x = {c, w};
	rmq_retain_each(c->retained, snap_retained, &x);
	rmq_strmap_each(&c->sessions, snap_session, &x);
	p->in_snapshot = false;
	rmq_wal_stats(w, &st);
	/* Too large to stage at once (STAGE_MAX): remember at least that much, which defers the next attempt. */
	p->snap_bytes = st.append_bytes - before;
	p->snap_at = before;
	if (p->snap_failed)
		return -ENOBUFS;
	p->snap_at = st.append_bytes;
	return 0;
}

/* ---- replay ------------------------------------------------------------------------------------------ */

struct replay_ctx {
	struct core *c;
	uint64_t skipped, stamp_max;
};

static struct rmq_msg *msg_of(struct core *c, const struct rmq_persist_rec *r)
{
	struct rmq_packet pk;
	struct rmq_decode_ctx dc = {.version = RMQ_V5, .role = RMQ_ROLE_SERVER};
	if (!r->msg_len || rmq_proto_decode(r->msg, r->msg_len, &dc, &pk) != RMQ_OK || pk.type != RMQ_PUBLISH)
		return NULL;
	struct rmq_msg *m = rmq_msg_new(&pk.u.publish);
	if (m) {
		m->origin_core = (uint16_t)c->id;
		m->expire_at_ms = to_mono(c, r->expire_wall_ms);
	}
	return m;
}

static struct subids *ids_of(const struct rmq_persist_rec *r)
{
	if (!r->nids)
		return NULL;
	struct subids *d = malloc(sizeof(*d) + r->nids * sizeof(uint32_t));
	if (d) {
		d->n = r->nids;
		memcpy(d->v, r->ids, r->nids * sizeof(uint32_t));
	}
	return d;
}

/* Inflight windows are sized by --max-inflight; a log written with a larger one still fits. */
static int inflight_push(struct core *c, struct session *s, struct outmsg o)
{
	uint32_t cap = c->b->cfg.max_inflight;
	if (s->ninflight >= cap) {
		struct outmsg *n = realloc(s->inflight, (s->ninflight + 1) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->inflight = n;
	} else if (!s->inflight && !(s->inflight = malloc(cap * sizeof(*s->inflight)))) {
		return -ENOMEM;
	}
	s->inflight[s->ninflight++] = o;
	return 0;
}

static int find_pid(const struct session *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->ninflight; i++)
		if (s->inflight[i].pid == pid)
			return (int)i;
	return -1;
}

static void inflight_drop(struct session *s, int i)
{
	if (s->inflight[i].m)
		rmq_msg_unref(s->inflight[i].m);
	free(s->inflight[i].ids);
	memmove(&s->inflight[i], &s->inflight[i + 1], (s->ninflight - (uint32_t)i - 1) * sizeof(*s->inflight));
	s->ninflight--;
}

/* The log holds no routes yet (they are replicated after the replay): drop the list before destroying. */
static void replay_session_drop(struct core *c, struct session *s)
{
	for (uint32_t i = 0; i < s->nsubs; i++)
		free(s->subs[i].filter);
	s->nsubs = 0;
	c->store_hooks->session_destroy(c, s);
}

static int replay_retained(struct replay_ctx *x, const struct rmq_persist_rec *r)
{
	struct core *c = x->c;
	void *old = NULL;
	if (r->stamp > x->stamp_max)
		x->stamp_max = r->stamp;
	if (r->type == RMQ_PR_RET_CLR) {
		rmq_retain_set(c->retained, r->filter.p, r->filter.len, NULL, &old);
	} else {
		struct rmq_msg *m = msg_of(c, r);
		if (!m)
			return -EBADMSG;
		m->stamp = r->stamp;
		if (rmq_retain_set(c->retained, m->pub.topic.p, m->pub.topic.len, m, &old)) {
			rmq_msg_unref(m);
			return -ENOMEM;
		}
	}
	if (old)
		rmq_msg_unref(old);
	return 0;
}

static int replay_queue(struct core *c, struct session *s, const struct rmq_persist_rec *r)
{
	if (r->type == RMQ_PR_QUEUE_PUSH) {
		struct rmq_msg *m = msg_of(c, r);
		struct subids *ids = ids_of(r);
		if (!m || (r->nids && !ids) ||
		    c->store_hooks->session_queue_append(s, (struct qent){m, ids, r->share_key, r->qos, r->retain})) {
			if (m)
				rmq_msg_unref(m);
			free(ids);
			return -ENOMEM;
		}
		return 0;
	}
	if (!s->qcount)
		return -EBADMSG;
	struct qent q = s->queue[s->qhead];
	s->qhead = (s->qhead + 1) % s->qcap;
	s->qcount--;
	if (!r->pid || inflight_push(c, s, (struct outmsg){q.m, q.ids, q.share_key, r->pid, q.qos, OUT_PUBLISH,
							   q.retain})) {
		rmq_msg_unref(q.m);
		free(q.ids);
	}
	return 0;
}

static int replay_inflight(struct core *c, struct session *s, const struct rmq_persist_rec *r)
{
	int i = find_pid(s, r->pid);
	switch (r->type) {
	case RMQ_PR_INFL_ADD: {
		struct rmq_msg *m = r->state == OUT_PUBLISH ? msg_of(c, r) : NULL;
		struct subids *ids = ids_of(r);
		if (i >= 0)
			inflight_drop(s, i);  /* a snapshot re-states what the log already said */
		if ((r->state == OUT_PUBLISH && !m) ||
		    inflight_push(c, s, (struct outmsg){m, ids, r->share_key, r->pid, r->qos, r->state, r->retain})) {
			if (m)
				rmq_msg_unref(m);
			free(ids);
			return -EBADMSG;
		}
		return 0;
	}
	case RMQ_PR_INFL_REL:
		if (i < 0)
			return -EBADMSG;
		if (s->inflight[i].m)
			rmq_msg_unref(s->inflight[i].m);
		free(s->inflight[i].ids);
		s->inflight[i].m = NULL;
		s->inflight[i].ids = NULL;
		s->inflight[i].state = OUT_PUBREL;
		return 0;
	default:
		if (i >= 0)
			inflight_drop(s, i);
		return 0;
	}
}

static int replay_qos2(struct session *s, const struct rmq_persist_rec *r)
{
	for (uint32_t i = 0; i < s->nqos2_in; i++)
		if (s->qos2_in[i] == r->pid) {
			if (r->type == RMQ_PR_QOS2_DEL)
				s->qos2_in[i] = s->qos2_in[--s->nqos2_in];
			return 0;
		}
	if (r->type == RMQ_PR_QOS2_DEL)
		return 0;
	if (s->nqos2_in == s->qos2_cap) {
		uint32_t cap = s->qos2_cap ? s->qos2_cap * 2 : 16;
		uint16_t *n = realloc(s->qos2_in, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->qos2_in = n;
		s->qos2_cap = cap;
	}
	s->qos2_in[s->nqos2_in++] = r->pid;
	return 0;
}

static int replay_session(struct core *c, struct session *s, const struct rmq_persist_rec *r)
{
	switch (r->type) {
	case RMQ_PR_SESS_PUT:
		s->version = r->proto_version;
		s->expiry = r->expiry;
		s->clean = false;
		s->durable = true;
		s->expire_at_ms = to_mono(c, r->expire_wall_ms);
		free(s->acl_user);
		s->acl_user = NULL;
		s->acl_user_len = 0;
		if (r->filter.len && (s->acl_user = malloc(r->filter.len))) {
			memcpy(s->acl_user, r->filter.p, r->filter.len);
			s->acl_user_len = (uint16_t)r->filter.len;
		}
		return 0;
	case RMQ_PR_SESS_DEL:
		replay_session_drop(c, s);
		return 0;
	case RMQ_PR_SUB_ADD:
		return c->store_hooks->session_sub_add(s, r->filter.p, (uint16_t)r->filter.len, r->options,
						       r->sub_id) < 0 ? -ENOMEM : 0;
	case RMQ_PR_SUB_DEL:
		c->store_hooks->session_sub_del(s, r->filter.p, (uint16_t)r->filter.len);
		return 0;
	case RMQ_PR_QUEUE_PUSH:
	case RMQ_PR_QUEUE_POP:
		return replay_queue(c, s, r);
	case RMQ_PR_QOS2_ADD:
	case RMQ_PR_QOS2_DEL:
		return replay_qos2(s, r);
	case RMQ_PR_SHARE_TAKE: {
		/* The selection the live session made, on the same state (c->persist is not set yet: no new record).
		 * Where the messages went is in the takers' own records. */
		struct rmq_msg **gone = NULL;
		uint32_t n = c->store_hooks->session_take_shared(c, s, r->share_key, &gone);
		for (uint32_t i = 0; i < n; i++)
			rmq_msg_unref(gone[i]);
		free(gone);
		return 0;
	}
	default:
		return replay_inflight(c, s, r);
	}
}

static int replay(void *ud, uint16_t type, uint64_t seq, const uint8_t *data, uint32_t len)
{
	struct replay_ctx *x = ud;
	struct core *c = x->c;
	struct rmq_persist_rec r;
	(void)seq;
	int rc = rmq_persist_decode(type, data, len, &r);
	if (rc == 0 && (type == RMQ_PR_RET_SET || type == RMQ_PR_RET_CLR)) {
		rc = replay_retained(x, &r);
	} else if (rc == 0) {
		struct session *s = c->store_hooks->session_get(c, r.id.p, r.id.len);
		if (!s && type == RMQ_PR_SESS_PUT && !(s = c->store_hooks->session_create(c, r.id.p, r.id.len)))
			return -ENOMEM;
		rc = s ? replay_session(c, s, &r) : -EBADMSG;
	}
	if (rc == -ENOMEM)
		return rc;
	if (rc)
		x->skipped++;  /* checksummed, yet not understood: a newer format or a bug; counted, not fatal */
	return 0;
}

struct settle_ctx {
	struct core *c;
	struct session **gone;
	uint32_t ngone, cap;
	uint64_t subs, queued, inflight;
};

/* After the replay every session is offline: its expiry runs from when it went offline (or from now if it
 * was connected when the broker stopped). */
static void settle_one(void *ud, void *val)
{
	struct settle_ctx *x = ud;
	struct session *s = val;
	struct core *c = x->c;
	if (s->expiry != UINT32_MAX && !s->expire_at_ms)
		s->expire_at_ms = c->now_ms + (uint64_t)s->expiry * 1000u;
	if (s->expiry == UINT32_MAX)
		s->expire_at_ms = 0;
	if (s->expire_at_ms && s->expire_at_ms <= c->now_ms) {
		if (x->ngone == x->cap) {
			uint32_t cap = x->cap ? x->cap * 2 : 16;
			struct session **n = realloc(x->gone, cap * sizeof(*n));
			if (!n)
				return;  /* kept until its timer fires: armed below */
			x->gone = n;
			x->cap = cap;
		}
		x->gone[x->ngone++] = s;
		return;
	}
	if (s->expire_at_ms)
		rmq_wheel_add(&c->wheel, &s->expiry_timer, s->expire_at_ms);
	x->subs += s->nsubs;
	x->queued += s->qcount;
	x->inflight += s->ninflight;
}

static int mkdir_p(char *path)
{
	for (char *q = path + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = '\0';
		int rc = mkdir(path, 0755);
		*q = '/';
		if (rc && errno != EEXIST)
			return -errno;
	}
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

static void print_recovery(struct core *c, const struct rmq_wal_recovery *rec, const struct settle_ctx *x,
			   uint64_t skipped, uint64_t usec)
{
	fprintf(stderr,
		"ringmq: core %d: state recovered: %" PRIu64 " records, %" PRIu64 " bytes, %zu sessions, %zu retained, "
		"%" PRIu64 " subscriptions, %" PRIu64 " queued, %" PRIu64 " inflight, %u expired in %" PRIu64 " ms%s\n",
		c->id, rec->records, rec->bytes, (size_t)c->sessions.n, rmq_retain_count(c->retained), x->subs, x->queued,
		x->inflight, x->ngone, (usec + 999) / 1000, rec->truncated_bytes ? " (torn tail cut)" : "");
	if (skipped)
		fprintf(stderr, "ringmq: core %d: state log: %" PRIu64 " records not understood, skipped\n", c->id, skipped);
}


int rmq_persist_open(struct core *c)
{
	const struct rmq_config *cfg = &c->b->cfg;
	char dir[sizeof(cfg->data_dir) + 32];
	snprintf(dir, sizeof(dir), "%s/core-%d/state", cfg->data_dir, c->id);
	uint64_t t0 = rmq_clock_mono_us();
	int rc = mkdir_p(dir);
	struct rmq_persist *p = calloc(1, sizeof(*p));
	if (rc || !p) {
		free(p);
		rc = rc ? rc : -ENOMEM;
		fprintf(stderr, "ringmq: core %d: %s: %s\n", c->id, dir, strerror(-rc));
		return rc;
	}
	p->wait = cfg->fsync_policy != RMQ_WAL_FSYNC_NEVER;
	struct rmq_wal_opts o = {.fsync = (enum rmq_wal_fsync)cfg->fsync_policy, .stage_max = STAGE_MAX, .write_max = WRITE_MAX,
				 .compact_bytes = COMPACT_BYTES};
	struct rmq_wal_recovery rec;
	struct replay_ctx x = {c, 0, 0};
	rc = rmq_wal_open(&p->w, dir, &o, replay, &x, &rec);
	if (rc) {
		fprintf(stderr, "ringmq: core %d: state log %s: %s\n", c->id, dir, strerror(-rc));
		free(p);
		return rc;
	}
	rmq_wal_set_foreign(p->w, rmq_core_log_foreign, c);
	/* New retained sets must sort after every replayed one on every core. */
	uint64_t cur = atomic_load(&c->b->stamp);
	while (cur < x.stamp_max && !atomic_compare_exchange_weak(&c->b->stamp, &cur, x.stamp_max))
		;
	struct settle_ctx sx = {.c = c};
	rmq_strmap_each(&c->sessions, settle_one, &sx);
	for (uint32_t i = 0; i < sx.ngone; i++)
		replay_session_drop(c, sx.gone[i]);
	free(sx.gone);
	c->persist = p;
	rmq_wal_set_callbacks(p->w, on_done, snapshot, c);
	print_recovery(c, &rec, &sx, x.skipped, rmq_clock_mono_us() - t0);
	/* A log much longer than its live state (a long run since the last snapshot): start from a short one. */
	if (rec.bytes >= COMPACT_BYTES)
		rmq_persist_compact(c);
	return 0;
}

void rmq_persist_prep(struct core *c)
{
	int rc = rmq_wal_prep(c->persist->w, &c->ring, ud_pack(OP_WAL, 0, 0));
	if (rc < 0 && !c->persist->append_fail++)
		fprintf(stderr, "ringmq: core %d: state log: %s\n", c->id, strerror(-rc));
}

void rmq_persist_complete(struct core *c, struct io_uring_cqe *cqe)
{
	if (c->persist)
		rmq_wal_complete(c->persist->w, cqe->user_data, cqe->res);
}

void rmq_persist_close(struct core *c)
{
	struct rmq_persist *p = c->persist;
	if (!p)
		return;
	int rc = c->ring_ok ? rmq_wal_drain(p->w, &c->ring, ud_pack(OP_WAL, 0, 0)) : -EIO;
	if (rc)
		fprintf(stderr, "ringmq: core %d: state log not fully written at exit: %s\n", c->id, strerror(-rc));
	rmq_wal_close(p->w);
	for (; p->wq_n; p->wq_n--, p->wq_head = (p->wq_head + 1) % p->wq_cap)
		if (p->wq[p->wq_head].origin == ORIGIN_MSG)   /* the log failed: its offsets are never committed */
			rmq_msg_unref((struct rmq_msg *)(uintptr_t)p->wq[p->wq_head].cookie);
	c->persist = NULL;
	free(p->buf);
	free(p->wq);
	free(p);
}

void rmq_persist_stats(const struct core *c, struct rmq_wal_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (c->persist)
		rmq_wal_stats(c->persist->w, st);
}

int rmq_persist_compact(struct core *c)
{
	if (!c->persist)
		return -ENOENT;
	c->persist->snap_forced = true;
	int rc = rmq_wal_compact(c->persist->w);
	c->persist->snap_forced = false;
	return rc;
}

/* ---- DIR/meta -------------------------------------------------------------------------------------- */

int rmq_persist_meta_cores(const char *dir, char *err, size_t errlen)
{
	char path[600], buf[128];
	snprintf(path, sizeof(path), "%s/" META_NAME, dir);
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	int old = 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *k = strstr(buf, "cores ");
	if (!k || sscanf(k, "cores %d", &old) != 1 || old <= 0) {
		snprintf(err, errlen, "%s: unreadable (expected a line 'cores N')", path);
		return -EINVAL;
	}
	return old;
}

int rmq_persist_meta_check(const char *dir, int ncores, char *err, size_t errlen)
{
	char path[600], tmp[620], buf[128];
	snprintf(path, sizeof(path), "%s", dir);
	int rc = mkdir_p(path);
	if (rc) {
		snprintf(err, errlen, "--data-dir %s: %s", dir, strerror(-rc));
		return rc;
	}
	int old = rmq_persist_meta_cores(dir, err, errlen);
	if (old < 0)
		return old;
	if (old > 0) {
		if (old != ncores) {
			snprintf(err, errlen,
				 "--data-dir %s holds state written with --cores %d: client ids are hashed to cores, so "
				 "start with --cores %d (or move the directory away to start empty)",
				 dir, old, old);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(path, sizeof(path), "%s/" META_NAME, dir);
	/* Written once, atomically (rename), before any core logs anything. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int len = snprintf(buf, sizeof(buf), "ringmq-data 1\ncores %d\n", ncores);
	if (fd < 0 || write(fd, buf, (size_t)len) != len || fsync(fd) || close(fd) || rename(tmp, path)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}
