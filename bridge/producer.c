/* The MQTT -> Kafka path: per-core librdkafka producers, publish (route, render, produce), delivery reports turned
 * into exactly one completion per cookie. start/stop: main thread; rmq_bridge_core_*: the owning reactor only.
 *
 * Completion accounting. Each accepted publish gets a `pending` from its core's pool with remaining = routes + 1;
 * the extra unit is a guard the publishing core drops when it has handed every route over, so a delivery report
 * served meanwhile (shared producers: on another core) cannot complete it early. Delivery reports decrement
 * `remaining` atomically and keep the first error; whoever takes it to zero completes it: on its own core through
 * the ready list, or for a pending of another core through that core's lock-free inbox (an intrusive stack),
 * waking it through its eventfd on the empty -> non-empty edge. Atomics, no locks.
 *
 * Queue full. If librdkafka refuses the first route, nothing was produced: the pending is released and the call
 * returns -ENOBUFS (the core pauses the connection and publishes again later). If a later route is refused, the
 * earlier ones are already in librdkafka and cannot be taken back, so the rest are copied to the core's deferred
 * FIFO and produced from rmq_bridge_core_poll() as room comes back; the call still returns the route count and
 * the cookie completes once all of them resolved (QoS 0 with qos0-overflow drop: the rest are dropped, counted). While the FIFO is not empty every new publish gets -ENOBUFS,
 * so a car's later message never overtakes an earlier one.
 *
 * Spool (--spool, the core's kafka_spool.c): rmq_bridge_render_all renders without producing (the core stores the
 * result), rmq_bridge_produce_rendered replays a stored message (its pending is flagged `replay` and completes
 * through the core's replay function), and rmq_bridge_core_reclaim takes back what waits in librdkafka's queue
 * when the spool takes over (rd_kafka_purge; the purged reports are kept, ordered by pending `order`, and
 * handed to the spool; their pendings complete when the spool says the copies are durable). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "ringmq/clock.h"
#include "bridge_internal.h"

#define POOL_CHUNK 256               /* pendings allocated at once; the pool only grows */
#define WRITABLE_NUM 3               /* writable again below 3/4 of the queue: hysteresis, so a paused */
#define WRITABLE_DEN 4               /* connection is not resumed for one message only */
#define MAX_HEADERS_FIXED 4          /* mqtt.topic, mqtt.client_id, mqtt.qos, content-type */
#define ERROR_LOG_MS 10000           /* one Kafka error line per producer per 10 s during an outage */
/* Route index of a cluster unit (cluster.c): negative like every topic-named message, and apart from other uses. */
#define CLUSTER_ROUTE(unit) (-16 - (unit))
#define CLUSTER_UNIT(route) ((route) <= -16 ? -16 - (route) : 0)

struct pending {
	struct pending *next;        /* pool free list, ready list, or another core's inbox */
	uint64_t cookie;
	atomic_int remaining;
	atomic_int err;              /* first failure, negative errno; 0 = none */
	int core;                    /* the core that completes it */
	bool replay;                 /* a spool replay: completed through the core's replay function */
	uint64_t order;              /* publish order on its core: reclaimed messages are spooled in it */
};

struct chunk {
	struct chunk *next;
	struct pending p[POOL_CHUNK];
};

/* A route librdkafka refused mid-publish, with its rendered message copied. */
struct deferred {
	struct deferred *next;
	struct pending *pd;          /* NULL with ack-after broker */
	int route;
	char *topic;
	void *key, *val;
	size_t keylen, vallen;
	rd_kafka_headers_t *hdrs;
	int64_t ts;
};

struct producer {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt[RMQ_BRIDGE_MAX_ROUTES]; /* fixed-topic routes */
	struct rmq_bridge *b;
	struct rmq_bridge_core *server;              /* the core that serves its delivery reports */
	int max_msgs;                                /* queue.buffering.max.messages */
	int64_t last_log_ms;                         /* on_error() rate limit (serving core only) */
	long suppressed;
	int index;                                   /* in b->prods */
	atomic_bool down;                            /* all brokers down (error cb) until a delivery succeeds */
};

struct rmq_bridge_core {
	/* Touched by other cores: only the inbox (atomic) and the eventfd (write). */
	_Atomic(struct pending *) inbox;
	int efd;
	/* Owned by this core. */
	int id;
	struct rmq_bridge *b;
	struct producer *prod;       /* the producer this core publishes on */
	struct producer *serves;     /* the producer whose reports this core serves, or NULL */
	struct pending *free, *ready, **ready_tail;
	struct chunk *chunks;
	struct deferred *defer, **defer_tail;
	struct rmq_bbuf topic, key, val, hblob;
	rmq_bridge_done_fn replay_fn;  /* --spool: completions of rmq_bridge_produce_rendered() */
	void *replay_ud;
	uint64_t next_order;
	bool reclaiming;               /* inside rmq_bridge_core_reclaim: purged messages are kept, not failed */
	struct reclaimed *rcl;         /* ... here */
	size_t nrcl, caprcl;
	struct pending **spilled;      /* reclaimed into the spool, waiting for its durability (FIFO ring) */
	size_t sp_head, sp_n, sp_cap;
	struct rmq_bridge_stats st;
};

struct rmq_bridge {
	struct rmq_bridge_route routes[RMQ_BRIDGE_MAX_ROUTES];
	int nroutes;
	bool match_all, ack_broker, qos0_drop, core_aligned;
	atomic_bool stopping;        /* set by stop(): delivery reports no longer touch pendings */
	int ncores, nprod;
	struct rmq_bridge_core *cores;
	struct producer *prods;
	struct rmq_bridge_mock mock; /* host == NULL when kafka-brokers was given */
	struct rmq_bridge_consumers *cons; /* Kafka -> MQTT (consumer.c); NULL without consume routes */
	struct rmq_cluster *cluster; /* cross-node delivery (cluster.c); NULL without --cluster-topic */
	char *bootstraps;
};


/* ---- errors ------------------------------------------------------------------------------------ */

static int kafka_errno(rd_kafka_resp_err_t e)
{
	switch (e) {
	case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: return -ETIMEDOUT;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE: return -EMSGSIZE;
	case RD_KAFKA_RESP_ERR__QUEUE_FULL: return -ENOBUFS;
	case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
	case RD_KAFKA_RESP_ERR_POLICY_VIOLATION: return -EDQUOT;
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED: return -EACCES;
	case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
	case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT: return -ECANCELED;
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: return -ENOENT;
	default: return -EIO;
	}
}

/* 0x97 Quota exceeded for limits (size, queue, quota): resending the same message at once will not help. */
static uint8_t reason_of(int err)
{
	return err == -EMSGSIZE || err == -ENOBUFS || err == -EDQUOT ? 0x97 : 0x80;
}

/* ---- pendings and completion ------------------------------------------------------------------- */

static struct pending *pending_get(struct rmq_bridge_core *bc)
{
	if (!bc->free) {
		struct chunk *c = malloc(sizeof(*c));
		if (!c)
			return NULL;
		c->next = bc->chunks;
		bc->chunks = c;
		for (int i = 0; i < POOL_CHUNK; i++) {
			c->p[i].next = bc->free;
			bc->free = &c->p[i];
		}
	}
	struct pending *pd = bc->free;
	bc->free = pd->next;
	pd->next = NULL;
	pd->core = bc->id;
	pd->replay = false;
	pd->order = ++bc->next_order;
	atomic_init(&pd->err, 0);
	return pd;
}

static void pending_put(struct rmq_bridge_core *bc, struct pending *pd)
{
	pd->next = bc->free;
	bc->free = pd;
}

static void wake(int efd)
{
	uint64_t one = 1;
	ssize_t n = write(efd, &one, sizeof(one));
	(void)n; /* EAGAIN only when the counter is saturated: the fd is readable anyway */
}

/* Called by whoever took pd->remaining to zero; `self` is the core running now (NULL: no core, at stop). */
static void complete(struct rmq_bridge_core *self, struct pending *pd)
{
	struct rmq_bridge_core *owner = &self->b->cores[pd->core];
	if (owner == self) {
		pd->next = NULL;
		*self->ready_tail = pd;
		self->ready_tail = &pd->next;
		return;
	}
	struct pending *head = atomic_load_explicit(&owner->inbox, memory_order_relaxed);
	do
		pd->next = head;
	while (!atomic_compare_exchange_weak_explicit(&owner->inbox, &head, pd, memory_order_release,
						      memory_order_relaxed));
	if (!head)
		wake(owner->efd);
}

static void resolve(struct rmq_bridge_core *self, struct pending *pd, int err)
{
	if (!pd)
		return;
	int zero = 0;
	if (err)
		atomic_compare_exchange_strong(&pd->err, &zero, err);
	if (atomic_fetch_sub_explicit(&pd->remaining, 1, memory_order_acq_rel) == 1)
		complete(self, pd);
}

static int reclaim_keep(struct rmq_bridge_core *bc, const rd_kafka_message_t *m);

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct producer *p = opaque;
	struct rmq_bridge_core *sc = p->server;
	if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE && sc->reclaiming && reclaim_keep(sc, m) == 0)
		return; /* rmq_bridge_core_reclaim spools it or produces it again */
	if (m->err) {
		sc->st.failed++;
	} else {
		sc->st.delivered++;
		atomic_store_explicit(&p->down, false, memory_order_relaxed); /* a broker took it: Kafka is back */
	}
	if (atomic_load_explicit(&p->b->stopping, memory_order_relaxed))
		return; /* stop(): the pools are about to be freed, nobody waits for completions */
	resolve(sc, m->_private, m->err ? kafka_errno(m->err) : 0);
}

/* librdkafka's error events (broker down, all brokers down, fatal idempotence errors), served by rd_kafka_poll()
 * on the serving core. Counted; printed at most once per ERROR_LOG_MS per producer, so a Kafka outage does not
 * flood the log. A fatal error is always printed: the producer cannot continue and every later message fails. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct producer *p = opaque;
	p->server->st.kafka_errors++;
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		atomic_store_explicit(&p->down, true, memory_order_relaxed);
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char why[512];
		rd_kafka_fatal_error(rk, why, sizeof(why));
		fprintf(stderr, "kafka: %s: fatal error, this producer stops: %s\n", rd_kafka_name(rk), why);
		return;
	}
	int64_t now = (int64_t)rmq_clock_wall_ms();
	if (p->last_log_ms && now - p->last_log_ms < ERROR_LOG_MS) {
		p->suppressed++;
		return;
	}
	fprintf(stderr, "kafka: %s: %s (%ld similar suppressed)\n", rd_kafka_name(rk), reason, p->suppressed);
	p->last_log_ms = now;
	p->suppressed = 0;
}

/* ---- producing --------------------------------------------------------------------------------- */

struct rendered {
	const char *topic;           /* NUL-terminated, or NULL for a fixed route (cached topic handle) */
	const void *key, *val;
	size_t keylen, vallen;
	rd_kafka_headers_t *hdrs;
	int64_t ts;
};

/* The Kafka headers of m, one add() each: user properties, then the MQTT metadata. Shared by the direct path
 * (librdkafka headers) and the spool (the bridge's blob), so a replayed message carries exactly the same. */
typedef int (*header_fn)(void *ud, const char *name, size_t namelen, const void *v, size_t vlen);

static int headers_each(const struct rmq_bridge_msg *m, header_fn add, void *ud)
{
	const struct rmq_publish *pub = m->pub;
	char qos[2] = {(char)('0' + pub->qos), 0};
	uint32_t pos = 0;
	struct rmq_str k, v;
	int rc = 0;
	while (rc == 0 && rmq_props_user_next(&pub->props, &pos, &k, &v))
		rc = add(ud, (const char *)k.p, k.len, v.p, v.len);
	if (rc == 0)
		rc = add(ud, "mqtt.topic", 10, pub->topic.p, pub->topic.len);
	if (rc == 0)
		rc = add(ud, "mqtt.client_id", 14, m->client_id.p, m->client_id.len);
	if (rc == 0)
		rc = add(ud, "mqtt.qos", 8, qos, 1);
	if (rc == 0 && (pub->props.present & RMQ_PBIT(RMQ_PROP_CONTENT_TYPE)))
		rc = add(ud, "content-type", 12, pub->props.content_type.p, pub->props.content_type.len);
	return rc;
}

static int rd_header_add(void *ud, const char *name, size_t namelen, const void *v, size_t vlen)
{
	return rd_kafka_header_add(ud, name, (ssize_t)namelen, v, (ssize_t)vlen) ? -EINVAL : 0;
}

static rd_kafka_headers_t *make_headers(const struct rmq_bridge_msg *m)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(MAX_HEADERS_FIXED + m->pub->props.user_count);
	headers_each(m, rd_header_add, h);
	return h;
}

/* Renders route r of m into bc's buffers. Returns 0, -EINVAL (rendered topic not a Kafka name) or -ENOMEM. */
static int render(struct rmq_bridge_core *bc, const struct rmq_bridge_route *r, const struct rmq_bridge_msg *m,
		  int64_t ts, bool rd_headers, struct rendered *out)
{
	*out = (struct rendered){.ts = ts};
	bc->topic.len = bc->key.len = bc->val.len = 0;
	if (!r->topic_fixed) {
		if (rmq_bridge_render(&r->topic, m, &bc->topic) || rmq_bridge_buf_put(&bc->topic, "", 1))
			return -ENOMEM;
		if (!rmq_bridge_kafka_topic_valid(bc->topic.p, bc->topic.len - 1))
			return -EINVAL;
		out->topic = bc->topic.p;
	}
	if (!r->key_none) {
		if (rmq_bridge_render(&r->key, m, &bc->key))
			return -ENOMEM;
		out->key = bc->key.p ? bc->key.p : "";
		out->keylen = bc->key.len;
	}
	if (r->json) {
		if (rmq_bridge_render_json(m, ts, &bc->val))
			return -ENOMEM;
		out->val = bc->val.p;
		out->vallen = bc->val.len;
	} else {
		out->val = m->pub->payload.p;
		out->vallen = m->pub->payload.len;
	}
	if (r->headers && rd_headers)
		out->hdrs = make_headers(m);
	return 0;
}

/* Hands one rendered message to librdkafka (copied). On failure the caller still owns x->hdrs. */
static rd_kafka_resp_err_t produce(struct producer *p, int route, const struct rendered *x, struct pending *pd)
{
	rd_kafka_vu_t vu[7];
	int n = 0;
	if (x->topic)
		vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = x->topic};
	else
		vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = p->rkt[route]};
	vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY};
	vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {(void *)x->val, x->vallen}};
	if (x->key)
		vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {(void *)x->key, x->keylen}};
	if (x->hdrs)
		vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_HEADERS, .u.headers = x->hdrs};
	vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_TIMESTAMP, .u.i64 = x->ts};
	vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = pd};
	rd_kafka_error_t *e = rd_kafka_produceva(p->rk, vu, (size_t)n);
	if (!e)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	rd_kafka_resp_err_t code = rd_kafka_error_code(e);
	rd_kafka_error_destroy(e);
	return code;
}

static void deferred_free(struct deferred *d)
{
	if (d->hdrs)
		rd_kafka_headers_destroy(d->hdrs);
	free(d->topic);
	free(d->key);
	free(d->val);
	free(d);
}

static void *dup_mem(const void *p, size_t n)
{
	void *d = malloc(n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

/* Copies x into the core's deferred FIFO (takes x->hdrs). Returns 0 or -ENOMEM. */
static int defer(struct rmq_bridge_core *bc, int route, const struct rendered *x, struct pending *pd)
{
	struct deferred *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*d = (struct deferred){.pd = pd, .route = route, .keylen = x->keylen, .vallen = x->vallen,
			       .hdrs = x->hdrs, .ts = x->ts};
	d->topic = x->topic ? strdup(x->topic) : NULL;
	d->key = x->key ? dup_mem(x->key, x->keylen) : NULL;
	d->val = dup_mem(x->val, x->vallen);
	if ((x->topic && !d->topic) || (x->key && !d->key) || !d->val) {
		d->hdrs = NULL;
		deferred_free(d);
		return -ENOMEM;
	}
	*bc->defer_tail = d;
	bc->defer_tail = &d->next;
	bc->st.deferred++;
	return 0;
}

/* Produces the deferred FIFO in order until librdkafka is full again. */
static void drain_deferred(struct rmq_bridge_core *bc)
{
	while (bc->defer) {
		struct deferred *d = bc->defer;
		struct rendered x = {.topic = d->topic, .key = d->key, .keylen = d->keylen, .val = d->val,
				     .vallen = d->vallen, .hdrs = d->hdrs, .ts = d->ts};
		rd_kafka_resp_err_t e = produce(bc->prod, d->route, &x, d->pd);
		if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return;
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
			d->hdrs = NULL; /* librdkafka owns them now */
			bc->st.produced++;
			if (CLUSTER_UNIT(d->route))
				rmq_bridge_cluster_produced(bc->b->cluster, bc->id, CLUSTER_UNIT(d->route), true);
		} else {
			bc->st.failed++;
			resolve(bc, d->pd, kafka_errno(e));
		}
		bc->defer = d->next;
		if (!bc->defer)
			bc->defer_tail = &bc->defer;
		deferred_free(d);
	}
}

/* Routes of topic t, in configuration order; first match only unless route-match all. */
static int match(const struct rmq_bridge *b, struct rmq_str t, int *out)
{
	int n = 0;
	for (int i = 0; i < b->nroutes; i++) {
		if (rmq_bridge_filter_match(b->routes[i].filter, t.p, t.len)) {
			out[n++] = i;
			if (!b->match_all)
				break;
		}
	}
	return n;
}

/* Refusal of the whole publish: nothing was produced for it. */
static int refuse(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m)
{
	if (m->pub->qos == 0 && bc->b->qos0_drop) {
		bc->st.dropped_qos0++;
		return 0; /* dropped, counted: nothing to wait for */
	}
	bc->st.refused++;
	return -ENOBUFS;
}

static int submit(struct rmq_bridge_core *bc, int r, struct rendered x, const struct rmq_bridge_msg *m,
		  struct pending *pd, bool first, bool *full);

/* Produces route `r` of the publish; on a mid-publish queue-full defers it. Returns 1 when it was the first
 * route and librdkafka is full (the caller refuses the publish), else 0. */
static int route_one(struct rmq_bridge_core *bc, int r, const struct rmq_bridge_msg *m, struct pending *pd,
		     int64_t ts, bool first, bool *full)
{
	struct rendered x;
	int rc = render(bc, &bc->b->routes[r], m, ts, true, &x);
	if (rc) {
		bc->st.failed++;
		resolve(bc, pd, rc);
		return 0;
	}
	return submit(bc, r, x, m, pd, first, full);
}

/* Hands rendered route `r` of the publish to librdkafka; on a mid-publish queue-full defers it. Returns 1 when it
 * was the first route and librdkafka is full (the caller refuses the publish), else 0. */
static int submit(struct rmq_bridge_core *bc, int r, struct rendered x, const struct rmq_bridge_msg *m,
		  struct pending *pd, bool first, bool *full)
{
	if (!*full) {
		rd_kafka_resp_err_t e = produce(bc->prod, r, &x, pd);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
			bc->st.produced++;
			if (CLUSTER_UNIT(r))
				rmq_bridge_cluster_produced(bc->b->cluster, bc->id, CLUSTER_UNIT(r), true);
			return 0;
		}
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			bc->st.failed++;
			if (x.hdrs)
				rd_kafka_headers_destroy(x.hdrs);
			resolve(bc, pd, kafka_errno(e));
			return 0;
		}
		*full = true;
		if (first) {
			if (x.hdrs)
				rd_kafka_headers_destroy(x.hdrs);
			return 1;
		}
	}
	bool drop = m->pub->qos == 0 && bc->b->qos0_drop;
	if (drop || defer(bc, r, &x, pd)) {
		if (x.hdrs)
			rd_kafka_headers_destroy(x.hdrs);
		if (drop)
			bc->st.dropped_qos0++;
		else
			bc->st.failed++;
		resolve(bc, pd, -ENOBUFS);
	}
	return 0;
}

/* Cluster unit u (RMQ_CLUSTER_DATA or _RETAIN) of the publish: submitted as CLUSTER_ROUTE(u) (a topic name, never a
 * cached handle), so a queue-full defers it and its delivery report completes the cookie like any route's. */
static int cluster_one(struct rmq_bridge_core *bc, int u, const struct rmq_bridge_msg *m, struct pending *pd,
		       int64_t ts, bool first, bool *full)
{
	struct rmq_cluster_out o;
	int rc = rmq_bridge_cluster_render(bc->b->cluster, bc->id, m, u, &o);
	if (rc) {
		bc->st.failed++;
		rmq_bridge_cluster_produced(bc->b->cluster, bc->id, u, false);
		resolve(bc, pd, rc);
		return 0;
	}
	struct rendered x = {.topic = o.topic, .key = o.key, .keylen = o.keylen, .val = o.val, .vallen = o.vallen,
			     .hdrs = o.hdrs, .ts = ts};
	return submit(bc, CLUSTER_ROUTE(u), x, m, pd, first, full);
}

bool rmq_bridge_matches(struct rmq_bridge_core *bc, const struct rmq_publish *p)
{
	int routes[RMQ_BRIDGE_MAX_ROUTES];
	if (!p->topic.len)
		return false;
	return match(bc->b, p->topic, routes) > 0 ||
	       (bc->b->cluster && (rmq_bridge_cluster_units(bc->b->cluster, bc->id, p) & RMQ_CLUSTER_DATA));
}

int rmq_bridge_publish(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, uint64_t cookie)
{
	struct rmq_bridge *b = bc->b;
	int routes[RMQ_BRIDGE_MAX_ROUTES];
	if (!m->pub->topic.len)
		return -EINVAL; /* a v5 topic alias must be resolved by the core first */
	int n = match(b, m->pub->topic, routes);
	int units = b->cluster ? rmq_bridge_cluster_units(b->cluster, bc->id, m->pub) : 0;
	int total = n + (units & RMQ_CLUSTER_DATA ? 1 : 0) + (units & RMQ_CLUSTER_RETAIN ? 1 : 0);
	if (total == 0) {
		bc->st.unrouted++;
		return 0;
	}
	if (bc->defer) {
		drain_deferred(bc);
		if (bc->defer)
			return refuse(bc, m);
	}
	/* QoS 0 has nothing to acknowledge, and ack-after broker acknowledges now: no completion for either
	 * (a QoS 0 cookie would otherwise share its sequence number with the next QoS 1 on the connection). */
	struct pending *pd = NULL;
	if (!b->ack_broker && m->pub->qos > 0) {
		if (!(pd = pending_get(bc)))
			return -ENOMEM;
		pd->cookie = cookie;
		atomic_init(&pd->remaining, total + 1);
	}
	int64_t ts = (int64_t)rmq_clock_wall_ms();
	bool full = false;
	for (int i = 0; i < total; i++) {
		int u = i < n ? 0 : (i == n && (units & RMQ_CLUSTER_DATA) ? RMQ_CLUSTER_DATA : RMQ_CLUSTER_RETAIN);
		if (u ? cluster_one(bc, u, m, pd, ts, i == 0, &full) : route_one(bc, routes[i], m, pd, ts, i == 0, &full)) {
			if (pd)
				pending_put(bc, pd);
			return refuse(bc, m);
		}
	}
	bc->st.published++;
	if (!pd)
		return 0; /* nothing to wait for; delivery failures are only counted */
	size_t before = bc->ready ? 1 : 0;
	resolve(bc, pd, 0); /* drops the guard */
	if (!before && bc->ready)
		wake(bc->efd); /* completed synchronously (every route failed early): make the reactor poll */
	return total;
}

/* ---- the spool's side (--spool): render without producing, produce what was rendered ----------------- */

static int hblob_header_add(void *ud, const char *name, size_t namelen, const void *v, size_t vlen)
{
	return rmq_bridge_hblob_add(ud, name, namelen, v, vlen);
}

/* Cluster unit u of m for the spool: the same record as cluster_one() produces, its origin header in the blob. */
static int cluster_spool(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, int u, int64_t ts,
			 rmq_bridge_kmsg_fn fn, void *ud)
{
	struct rmq_cluster_out o;
	int rc = rmq_bridge_cluster_render(bc->b->cluster, bc->id, m, u, &o);
	if (o.hdrs)
		rd_kafka_headers_destroy(o.hdrs); /* the spool carries headers as a blob */
	const char *node = rmq_bridge_cluster_node(bc->b->cluster);
	if (rc == 0 && (rc = rmq_bridge_hblob_begin(&bc->hblob, ts, true)) == 0)
		rc = rmq_bridge_hblob_add(&bc->hblob, RMQ_CLUSTER_ORIGIN_HEADER, strlen(RMQ_CLUSTER_ORIGIN_HEADER), node,
					  strlen(node));
	if (rc) {
		bc->st.failed++;
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	struct rmq_bridge_kmsg k = {.topic = o.topic, .topic_len = strlen(o.topic), .has_key = true, .key = o.key,
				    .key_len = o.keylen, .value = o.val, .value_len = o.vallen, .headers = bc->hblob.p,
				    .headers_len = bc->hblob.len};
	return fn(ud, &k);
}

int rmq_bridge_render_all(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, rmq_bridge_kmsg_fn fn,
			  void *ud)
{
	struct rmq_bridge *b = bc->b;
	int routes[RMQ_BRIDGE_MAX_ROUTES];
	if (!m->pub->topic.len)
		return -EINVAL;
	int n = match(b, m->pub->topic, routes);
	int units = b->cluster ? rmq_bridge_cluster_units(b->cluster, bc->id, m->pub) : 0;
	if (n == 0 && units == 0) {
		bc->st.unrouted++;
		return 0;
	}
	int64_t ts = (int64_t)rmq_clock_wall_ms();
	int total = n;
	for (int u = RMQ_CLUSTER_DATA; u <= RMQ_CLUSTER_RETAIN; u <<= 1) {
		int rc = units & u ? cluster_spool(bc, m, u, ts, fn, ud) : 0;
		if (rc < 0)
			return rc;
		total += units & u ? 1 : 0;
	}
	for (int i = 0; i < n; i++) {
		const struct rmq_bridge_route *r = &b->routes[routes[i]];
		struct rendered x;
		int rc = render(bc, r, m, ts, false, &x);
		if (rc == 0 && (rc = rmq_bridge_hblob_begin(&bc->hblob, ts, r->headers)) == 0 && r->headers)
			rc = headers_each(m, hblob_header_add, &bc->hblob);
		if (rc) {
			bc->st.failed++;
			return rc == -ENOMEM ? rc : -EINVAL;
		}
		const char *topic = x.topic ? x.topic : r->topic.src;
		struct rmq_bridge_kmsg k = {.topic = topic, .topic_len = strlen(topic), .has_key = x.key != NULL,
					    .key = x.key, .key_len = x.keylen, .value = x.val, .value_len = x.vallen,
					    .headers = bc->hblob.p, .headers_len = bc->hblob.len};
		if ((rc = fn(ud, &k)) < 0)
			return rc;
	}
	bc->st.published++;
	return total;
}

/* Rebuilds the librdkafka headers of a spooled message: 0, or -EINVAL for a blob that does not parse. */
static int hblob_decode(const struct rmq_bridge_kmsg *k, int64_t *ts, rd_kafka_headers_t **out)
{
	bool has;
	size_t pos;
	*out = NULL;
	if (rmq_bridge_hblob_open(k->headers, k->headers_len, ts, &has, &pos))
		return -EINVAL;
	if (!has)
		return pos == k->headers_len ? 0 : -EINVAL;
	rd_kafka_headers_t *h = rd_kafka_headers_new(MAX_HEADERS_FIXED);
	struct rmq_bridge_hdr hd;
	int rc;
	while ((rc = rmq_bridge_hblob_next(k->headers, k->headers_len, &pos, &hd)) > 0)
		rd_kafka_header_add(h, hd.name, (ssize_t)hd.namelen, hd.value, (ssize_t)hd.vlen);
	if (rc < 0) {
		rd_kafka_headers_destroy(h);
		return -EINVAL;
	}
	*out = h;
	return 0;
}

int rmq_bridge_produce_rendered(struct rmq_bridge_core *bc, const struct rmq_bridge_kmsg *k, uint64_t cookie)
{
	if (bc->defer)
		drain_deferred(bc);
	/* Half the queue at most: replays must not starve the direct QoS 0 traffic of room (QoS 1/2 go to the
	 * spool anyway while it holds anything). */
	int half = bc->prod->max_msgs / 2;
	if (bc->defer || rd_kafka_outq_len(bc->prod->rk) >= (half > 0 ? half : 1))
		return -ENOBUFS;
	if (!k->topic_len || !rmq_bridge_kafka_topic_valid(k->topic, k->topic_len))
		return -EINVAL;
	struct rendered x = {.key = k->has_key ? (k->key ? k->key : "") : NULL, .keylen = k->key_len,
			     .val = k->value, .vallen = k->value_len};
	if (hblob_decode(k, &x.ts, &x.hdrs))
		return -EINVAL;
	bc->topic.len = 0;
	if (rmq_bridge_buf_put(&bc->topic, k->topic, k->topic_len) || rmq_bridge_buf_put(&bc->topic, "", 1)) {
		if (x.hdrs)
			rd_kafka_headers_destroy(x.hdrs);
		return -ENOMEM;
	}
	x.topic = bc->topic.p;
	struct pending *pd = pending_get(bc);
	if (!pd) {
		if (x.hdrs)
			rd_kafka_headers_destroy(x.hdrs);
		return -ENOMEM;
	}
	pd->cookie = cookie;
	pd->replay = true;
	atomic_init(&pd->remaining, 1);
	rd_kafka_resp_err_t e = produce(bc->prod, -1, &x, pd);
	if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
		bc->st.produced++;
		return 0;
	}
	if (x.hdrs)
		rd_kafka_headers_destroy(x.hdrs);
	pending_put(bc, pd);
	if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return -ENOBUFS;
	bc->st.failed++;
	return kafka_errno(e);
}

/* ---- reclaiming what librdkafka holds when Kafka goes down (--spool) --------------------------------- */

/* A purged message, copied out of its delivery report. */
struct reclaimed {
	struct pending *pd;          /* NULL: QoS 0 or ack-after broker, nobody waits for it */
	size_t idx;                  /* purge (delivery report) order: the tie-break within one pending */
	char *topic;
	void *key, *val, *hb;        /* key NULL: null key; hb: the spool's header blob */
	size_t keylen, vallen, hblen;
};

static void reclaimed_free(struct reclaimed *r)
{
	free(r->topic);
	free(r->key);
	free(r->val);
	free(r->hb);
}

/* on_delivery of a purged message inside rmq_bridge_core_reclaim: keeps a copy. 0, or < 0 (then it fails as any
 * purged message does: a replay is rewound in the spool, a publish gets its error). */
static int reclaim_keep(struct rmq_bridge_core *bc, const rd_kafka_message_t *m)
{
	struct pending *pd = m->_private;
	if (pd && pd->replay)
		return -EINVAL;
	if (bc->nrcl == bc->caprcl) {
		size_t cap = bc->caprcl ? bc->caprcl * 2 : 256;
		struct reclaimed *n = realloc(bc->rcl, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		bc->rcl = n;
		bc->caprcl = cap;
	}
	struct reclaimed *r = &bc->rcl[bc->nrcl];
	*r = (struct reclaimed){.pd = pd, .idx = bc->nrcl, .keylen = m->key_len, .vallen = m->len};
	rd_kafka_timestamp_type_t tt;
	rd_kafka_headers_t *h = NULL;
	bool has_h = rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR;
	struct rmq_bbuf hb = {0};
	int rc = rmq_bridge_hblob_begin(&hb, rd_kafka_message_timestamp(m, &tt), has_h);
	const char *name;
	const void *v;
	size_t n;
	for (size_t i = 0; rc == 0 && has_h && !rd_kafka_header_get_all(h, i, &name, &v, &n); i++)
		rc = rmq_bridge_hblob_add(&hb, name, strlen(name), v, n);
	r->hb = hb.p;
	r->hblen = hb.len;
	r->topic = strdup(rd_kafka_topic_name(m->rkt));
	r->key = m->key ? dup_mem(m->key, m->key_len) : NULL;
	r->val = dup_mem(m->payload, m->len);
	if (rc || !r->topic || (m->key && !r->key) || !r->val) {
		reclaimed_free(r);
		return -ENOMEM;
	}
	bc->nrcl++;
	return 0;
}

/* Publish order (a car's messages in the order it sent them), then purge order within one publish. */
static int reclaimed_cmp(const void *a, const void *b)
{
	const struct reclaimed *x = a, *y = b;
	uint64_t ox = x->pd ? x->pd->order : 0, oy = y->pd ? y->pd->order : 0;
	if (ox != oy)
		return ox < oy ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static struct rmq_bridge_kmsg kmsg_of(const struct reclaimed *r)
{
	return (struct rmq_bridge_kmsg){.topic = r->topic, .topic_len = strlen(r->topic), .has_key = r->key != NULL,
					.key = r->key, .key_len = r->keylen, .value = r->val, .value_len = r->vallen,
					.headers = r->hb, .headers_len = r->hblen};
}

/* Hands a reclaimed message back to librdkafka (the queue was just emptied: it goes where it was). */
static void reproduce(struct rmq_bridge_core *bc, const struct reclaimed *r)
{
	struct rmq_bridge_kmsg k = kmsg_of(r);
	struct rendered x = {.topic = r->topic, .key = r->key, .keylen = r->keylen, .val = r->val, .vallen = r->vallen};
	rd_kafka_resp_err_t e = hblob_decode(&k, &x.ts, &x.hdrs) ? RD_KAFKA_RESP_ERR__BAD_MSG
								 : produce(bc->prod, -1, &x, r->pd);
	if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (x.hdrs)
		rd_kafka_headers_destroy(x.hdrs);
	bc->st.failed++;
	resolve(bc, r->pd, kafka_errno(e));
}

/* Room in the spilled ring for n more, order kept. 0 or -ENOMEM. */
static int spilled_reserve(struct rmq_bridge_core *bc, size_t n)
{
	if (bc->sp_n + n <= bc->sp_cap)
		return 0;
	size_t cap = bc->sp_cap ? bc->sp_cap : 256;
	while (cap < bc->sp_n + n)
		cap *= 2;
	struct pending **ring = malloc(cap * sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	for (size_t i = 0; i < bc->sp_n; i++)
		ring[i] = bc->spilled[(bc->sp_head + i) % bc->sp_cap];
	free(bc->spilled);
	bc->spilled = ring;
	bc->sp_cap = cap;
	bc->sp_head = 0;
	return 0;
}

int rmq_bridge_core_reclaim(struct rmq_bridge_core *bc, rmq_bridge_kmsg_fn spool, void *ud)
{
	struct rmq_bridge *b = bc->b;
	if (b->nprod != b->ncores || bc->serves != bc->prod)
		return -ENOTSUP;
	if (bc->defer)
		return -EBUSY;
	rd_kafka_purge(bc->prod->rk, RD_KAFKA_PURGE_F_QUEUE); /* blocking: every report is queued when it returns */
	bc->reclaiming = true;
	rd_kafka_poll(bc->prod->rk, 0);
	bc->reclaiming = false;
	if (bc->nrcl)
		qsort(bc->rcl, bc->nrcl, sizeof(*bc->rcl), reclaimed_cmp);
	bool back = spilled_reserve(bc, bc->nrcl) != 0, was_ready = bc->ready != NULL;
	int spooled = 0;
	for (size_t i = 0; i < bc->nrcl; i++) {
		struct reclaimed *r = &bc->rcl[i];
		struct rmq_bridge_kmsg k = kmsg_of(r);
		/* Once one is refused (spool full), the rest go back too: a car's later message must not be spooled
		 * ahead of an earlier one waiting in librdkafka. */
		if (!back && r->pd && spool(ud, &k) == 0) {
			bc->spilled[(bc->sp_head + bc->sp_n++) % bc->sp_cap] = r->pd;
			spooled++;
		} else {
			if (r->pd)
				back = true;
			reproduce(bc, r);
		}
		reclaimed_free(r);
	}
	bc->nrcl = 0;
	bc->st.reclaimed += (uint64_t)spooled;
	if (!was_ready && bc->ready)
		wake(bc->efd);
	return spooled;
}

void rmq_bridge_core_spilled(struct rmq_bridge_core *bc, int err)
{
	if (!bc->sp_n)
		return;
	struct pending *pd = bc->spilled[bc->sp_head];
	bc->sp_head = (bc->sp_head + 1) % bc->sp_cap;
	bc->sp_n--;
	bool was_ready = bc->ready != NULL;
	resolve(bc, pd, err);
	if (!was_ready && bc->ready)
		wake(bc->efd); /* the completion is reported from rmq_bridge_core_poll */
}

void rmq_bridge_core_set_replay(struct rmq_bridge_core *bc, rmq_bridge_done_fn fn, void *ud)
{
	bc->replay_fn = fn;
	bc->replay_ud = ud;
}

bool rmq_bridge_core_kafka_down(const struct rmq_bridge_core *bc)
{
	return atomic_load_explicit(&bc->prod->down, memory_order_relaxed);
}

/* ---- reactor side ------------------------------------------------------------------------------ */

struct rmq_bridge_core *rmq_bridge_core_get(struct rmq_bridge *b, int core_id)
{
	return b && core_id >= 0 && core_id < b->ncores ? &b->cores[core_id] : NULL;
}

int rmq_bridge_core_fd(struct rmq_bridge_core *bc)
{
	return bc ? bc->efd : -1;
}

int rmq_bridge_core_poll(struct rmq_bridge_core *bc, rmq_bridge_done_fn done, void *ud)
{
	uint64_t cnt;
	ssize_t rd = read(bc->efd, &cnt, sizeof(cnt)); /* reset first: a report arriving later wakes us again */
	(void)rd;
	if (bc->serves)
		rd_kafka_poll(bc->serves->rk, 0); /* serves every waiting delivery report through on_delivery */
	struct pending *in = atomic_exchange_explicit(&bc->inbox, NULL, memory_order_acquire), *rev = NULL;
	while (in) { /* the inbox is a stack: reverse it to report in arrival order */
		struct pending *next = in->next;
		in->next = rev;
		rev = in;
		in = next;
	}
	for (; rev; rev = rev->next) {
		*bc->ready_tail = rev;
		bc->ready_tail = &rev->next;
	}
	if (bc->defer)
		drain_deferred(bc);
	int n = 0;
	struct pending *pd = bc->ready;
	bc->ready = NULL;
	bc->ready_tail = &bc->ready;
	while (pd) {
		struct pending *next = pd->next;
		int err = atomic_load_explicit(&pd->err, memory_order_relaxed);
		bc->st.completions++;
		if (err)
			bc->st.completions_failed++;
		if (pd->replay)
			bc->replay_fn(bc->replay_ud, pd->cookie, err, err ? reason_of(err) : 0);
		else
			done(ud, pd->cookie, err, err ? reason_of(err) : 0);
		pending_put(bc, pd);
		n++;
		pd = next;
	}
	return n;
}

bool rmq_bridge_core_writable(struct rmq_bridge_core *bc)
{
	if (bc->defer)
		drain_deferred(bc);
	if (bc->defer)
		return false;
	int room = bc->prod->max_msgs / WRITABLE_DEN * WRITABLE_NUM;
	return rd_kafka_outq_len(bc->prod->rk) < (room > 0 ? room : 1);
}

void rmq_bridge_core_stats(const struct rmq_bridge_core *bc, struct rmq_bridge_stats *out)
{
	*out = bc->st;
}

int rmq_bridge_core_consume(struct rmq_bridge_core *bc, rmq_bridge_rec_fn fn, void *ud)
{
	int n = bc && bc->b->cluster ? rmq_bridge_cluster_poll(bc->b->cluster, bc->id, fn, ud) : 0;
	return n + (bc && bc->b->cons ? rmq_bridge_consumers_poll(bc->b->cons, bc->id, fn, ud) : 0);
}

void rmq_bridge_core_freeze(struct rmq_bridge_core *bc)
{
	if (bc) {
		rmq_bridge_consumers_freeze(bc->b->cons);
		rmq_bridge_cluster_freeze(bc->b->cluster);
	}
}

void rmq_bridge_cluster_filters(struct rmq_bridge_core *bc, bool add, const uint8_t *data, uint32_t count)
{
	if (bc && bc->b->cluster && count)
		rmq_bridge_cluster_filters_cl(bc->b->cluster, add, data, count);
}

void rmq_bridge_cluster_keep(struct rmq_bridge_core *bc, const uint8_t *data, uint32_t count)
{
	if (bc && bc->b->cluster && count)
		rmq_bridge_cluster_keep_cl(bc->b->cluster, data, count);
}

/* Fire and forget (nothing waits for the report): the will or Kafka record is already on its way locally. */
void rmq_bridge_cluster_forward(struct rmq_bridge_core *bc, const struct rmq_publish *p)
{
	if (!bc || !bc->b->cluster)
		return;
	int units = rmq_bridge_cluster_units(bc->b->cluster, bc->id, p);
	struct rmq_bridge_msg m = {.pub = p, .version = RMQ_V5};
	for (int u = RMQ_CLUSTER_DATA; u <= RMQ_CLUSTER_RETAIN; u <<= 1) {
		struct rmq_cluster_out o;
		if (!(units & u))
			continue;
		bool ok = rmq_bridge_cluster_render(bc->b->cluster, bc->id, &m, u, &o) == 0;
		if (ok) {
			struct rendered x = {.topic = o.topic, .key = o.key, .keylen = o.keylen, .val = o.val,
					     .vallen = o.vallen, .hdrs = o.hdrs, .ts = (int64_t)rmq_clock_wall_ms()};
			ok = produce(bc->prod, CLUSTER_ROUTE(u), &x, NULL) == RD_KAFKA_RESP_ERR_NO_ERROR;
			if (!ok)
				rd_kafka_headers_destroy(o.hdrs);
		}
		if (ok)
			bc->st.produced++;
		else
			bc->st.failed++;
		rmq_bridge_cluster_produced(bc->b->cluster, bc->id, u, ok);
	}
}

void rmq_bridge_cluster_metrics(const struct rmq_bridge *b, FILE *f)
{
	if (b && b->cluster)
		rmq_bridge_cluster_metrics_cl(b->cluster, f);
}

void rmq_bridge_core_cstats(const struct rmq_bridge_core *bc, struct rmq_bridge_cstats *out)
{
	rmq_bridge_consumers_stats(bc ? bc->b->cons : NULL, bc ? bc->id : 0, out);
}

const char *rmq_bridge_bootstraps(const struct rmq_bridge *b)
{
	return b->bootstraps;
}

/* ---- start and stop (main thread) -------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *why, size_t len)
{
	return rd_kafka_conf_set(conf, k, v, why, len) == RD_KAFKA_CONF_OK ? 0 : -EINVAL;
}

/* Our defaults first, then the operator's properties in the order given, so -X can override anything. */
/* kafka-partitioning core-aligned: producer i of K writes only to partitions i, i+K, i+2K, ... and picks one of
 * them by murmur2(key), so each producer batches for fewer partitions (fewer, larger requests). A car keeps one
 * partition as long as it stays on one core (client id hash, same --cores) and the key is its client id; the
 * partition differs from what a Java client would choose. Fewer partitions than producers: the plain placement.
 * Runs in librdkafka's partitioner context: only its pure partitioner helpers are called. */
static int32_t aligned_partitioner(const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t cnt,
				   void *rkt_opaque, void *msg_opaque)
{
	const struct producer *p = rkt_opaque;
	int32_t k = p->b->nprod, i = p->index;
	if (cnt < k)
		return rd_kafka_msg_partitioner_murmur2_random(rkt, key, keylen, cnt, rkt_opaque, msg_opaque);
	int32_t share = (cnt - i + k - 1) / k;
	int32_t j = key ? rd_kafka_msg_partitioner_murmur2(rkt, key, keylen, share, rkt_opaque, msg_opaque)
			: rd_kafka_msg_partitioner_random(rkt, key, keylen, share, rkt_opaque, msg_opaque);
	return i + j * k;
}

static rd_kafka_conf_t *producer_conf(const struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, int i,
				      char *why, size_t len)
{
	char client_id[64];
	snprintf(client_id, sizeof(client_id), "ringmq-%d", i);
	bool idempotent = !(cfg->acks_not_all && !cfg->idempotence_set);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	/* message.timeout.ms 0 = never give up: with Kafka unreachable the messages wait in librdkafka (the
	 * queue fills, the cars are paused) instead of failing after a few minutes. */
	int rc = conf_set(conf, "bootstrap.servers", b->bootstraps, why, len) ||
		 conf_set(conf, "client.id", client_id, why, len) ||
		 conf_set(conf, "partitioner", "murmur2_random", why, len) ||
		 conf_set(conf, "enable.idempotence", idempotent ? "true" : "false", why, len) ||
		 conf_set(conf, "message.timeout.ms", "0", why, len);
	for (int k = 0; rc == 0 && k < cfg->nkv; k++)
		rc = conf_set(conf, cfg->kv[k].key, cfg->kv[k].value, why, len);
	if (rc) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_topic_conf_t *tconf = rd_kafka_conf_get_default_topic_conf(conf); /* made by "partitioner" */
	if (b->core_aligned && tconf) {
		rd_kafka_topic_conf_set_partitioner_cb(tconf, aligned_partitioner);
		rd_kafka_topic_conf_set_opaque(tconf, &b->prods[i]);
	}
	return conf;
}

static int producer_start(struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, int i, char *why, size_t len)
{
	struct producer *p = &b->prods[i];
	p->b = b;
	p->index = i;
	p->server = &b->cores[i];
	rd_kafka_conf_t *conf = producer_conf(b, cfg, i, why, len);
	if (!conf)
		return -EINVAL;
	char max[32];
	size_t maxlen = sizeof(max);
	p->max_msgs = 100000;
	if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", max, &maxlen) == RD_KAFKA_CONF_OK)
		p->max_msgs = atoi(max);
	rd_kafka_conf_set_opaque(conf, p);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, len);
	if (!p->rk) {
		rd_kafka_conf_destroy(conf); /* rd_kafka_new takes conf only on success */
		return -EINVAL;
	}
	rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
	uint64_t one = 1;
	rd_kafka_queue_io_event_enable(q, p->server->efd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);
	/* librdkafka writes the fd only on an empty -> non-empty edge: anything queued before the line above
	 * (a connection error at start-up) would never be signalled, so the first poll must happen anyway. */
	wake(p->server->efd);
	for (int r = 0; r < b->nroutes; r++)
		if (b->routes[r].topic_fixed && !(p->rkt[r] = rd_kafka_topic_new(p->rk, b->routes[r].topic.src, NULL))) {
			snprintf(why, len, "topic %s: %s", b->routes[r].topic.src, rd_kafka_err2str(rd_kafka_last_error()));
			return -EINVAL;
		}
	return 0;
}

static int routes_copy(struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, char *why, size_t len)
{
	const char *dflt = "# -> " RMQ_BRIDGE_DEFAULT_TOPIC;
	int n = cfg->nroutes ? cfg->nroutes : 1;
	for (int i = 0; i < n; i++) {
		int rc = rmq_bridge_route_parse(&b->routes[i], cfg->nroutes ? cfg->routes[i].spec : dflt, why, len);
		if (rc)
			return rc;
		b->nroutes++;
	}
	if (!cfg->nroutes)
		fprintf(stderr, "kafka: no route given, using '%s'\n", dflt);
	return 0;
}

static int cores_init(struct rmq_bridge *b)
{
	b->cores = calloc((size_t)b->ncores, sizeof(*b->cores));
	if (!b->cores)
		return -ENOMEM;
	for (int c = 0; c < b->ncores; c++)
		b->cores[c].efd = -1;
	for (int c = 0; c < b->ncores; c++) {
		struct rmq_bridge_core *bc = &b->cores[c];
		bc->id = c;
		bc->b = b;
		bc->ready_tail = &bc->ready;
		bc->defer_tail = &bc->defer;
		atomic_init(&bc->inbox, NULL);
		bc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (bc->efd < 0)
			return -errno;
	}
	return 0;
}

static int kafka_start(struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, char *why, size_t len)
{
	if (cfg->brokers) {
		b->bootstraps = strdup(cfg->brokers);
		return b->bootstraps ? 0 : -ENOMEM;
	}
	int rc = rmq_bridge_mock_start(&b->mock, RMQ_BRIDGE_EMBEDDED_BROKERS, why, len);
	if (rc)
		return rc;
	for (int r = 0; r < b->nroutes; r++)
		if (b->routes[r].topic_fixed && rmq_bridge_mock_topic(&b->mock, b->routes[r].topic.src, cfg->partitions)) {
			snprintf(why, len, "embedded kafka: cannot create topic %s", b->routes[r].topic.src);
			return -EINVAL;
		}
	for (int r = 0; r < cfg->nconsumes; r++)
		if (rmq_bridge_mock_topic(&b->mock, cfg->consumes[r].ktopic, cfg->partitions)) {
			snprintf(why, len, "embedded kafka: cannot create topic %s", cfg->consumes[r].ktopic);
			return -EINVAL;
		}
	b->bootstraps = strdup(b->mock.bootstraps);
	if (!b->bootstraps)
		return -ENOMEM;
	printf("kafka: embedded cluster at %s\n", b->bootstraps);
	fflush(stdout);
	return 0;
}

int rmq_bridge_start(struct rmq_bridge **out, const struct rmq_bridge_cfg *cfg, int ncores)
{
	char why[512] = "";
	*out = NULL;
	if (ncores < 1)
		return -EINVAL;
	struct rmq_bridge *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->match_all = cfg->match_all;
	b->ack_broker = cfg->ack_broker;
	b->qos0_drop = cfg->qos0_drop;
	b->core_aligned = cfg->core_aligned;
	if (cfg->cluster_topic && (cfg->off || !cfg->brokers)) {
		fprintf(stderr, "kafka: --cluster-topic needs --kafka-brokers (a Kafka every node shares)\n");
		free(b);
		return -EINVAL;
	}
	if (cfg->off && cfg->nconsumes) {
		fprintf(stderr, "kafka: --consume needs the Kafka bridge (remove --kafka off)\n");
		free(b);
		return -EINVAL;
	}
	if (cfg->off) {
		/* ncores stays 0: rmq_bridge_core_get() gives every core NULL, i.e. no Kafka route */
		fprintf(stderr, "kafka: bridge off (--kafka off): plain MQTT broker\n");
		*out = b;
		return 0;
	}
	b->ncores = ncores;
	b->nprod = cfg->producers && cfg->producers < ncores ? cfg->producers : ncores;
	int rc = routes_copy(b, cfg, why, sizeof(why));
	if (rc == 0)
		rc = cores_init(b);
	if (rc == 0)
		rc = kafka_start(b, cfg, why, sizeof(why));
	if (rc == 0 && !(b->prods = calloc((size_t)b->nprod, sizeof(*b->prods))))
		rc = -ENOMEM;
	for (int i = 0; rc == 0 && i < b->nprod; i++)
		rc = producer_start(b, cfg, i, why, sizeof(why));
	int efds[b->ncores];
	for (int c = 0; c < b->ncores; c++)
		efds[c] = b->cores ? b->cores[c].efd : -1;
	if (rc == 0 && cfg->nconsumes)
		rc = rmq_bridge_consumers_start(&b->cons, cfg, b->bootstraps, b->ncores, efds, why, sizeof(why));
	if (rc == 0 && cfg->cluster_topic)
		rc = rmq_bridge_cluster_start(&b->cluster, cfg, b->bootstraps, b->ncores, efds, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "kafka: %s\n", why[0] ? why : strerror(-rc));
		rmq_bridge_stop(b, 0);
		return rc;
	}
	for (int c = 0; c < ncores; c++) {
		b->cores[c].prod = &b->prods[c % b->nprod];
		b->cores[c].serves = c < b->nprod ? &b->prods[c] : NULL;
	}
	fprintf(stderr, "kafka: %d producer%s for %d core%s, %s, %s partitioning, ack after %s, %d route%s (%s match)\n",
		b->nprod, b->nprod > 1 ? "s" : "", ncores, ncores > 1 ? "s" : "",
		cfg->acks_not_all && !cfg->idempotence_set ? "acks 0/1 without idempotence" : "idempotent",
		b->core_aligned ? "core-aligned" : "key",
		b->ack_broker ? "broker" : "kafka", b->nroutes, b->nroutes > 1 ? "s" : "",
		b->match_all ? "all" : "first");
	*out = b;
	return 0;
}

/* Flushes, then purges what Kafka did not take within the time left; returns how many were purged. */
static long producers_flush(struct rmq_bridge *b, int timeout_ms)
{
	int64_t deadline = (int64_t)rmq_clock_wall_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	long lost = 0;
	for (int i = 0; i < b->nprod; i++) {
		if (!b->prods[i].rk)
			continue;
		int64_t left = deadline - (int64_t)rmq_clock_wall_ms();
		rd_kafka_flush(b->prods[i].rk, left > 0 ? (int)left : 0);
		int n = rd_kafka_outq_len(b->prods[i].rk);
		if (n > 0) {
			lost += n;
			rd_kafka_purge(b->prods[i].rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
							 RD_KAFKA_PURGE_F_NON_BLOCKING);
			rd_kafka_poll(b->prods[i].rk, 0);
		}
	}
	return lost;
}

static void core_free(struct rmq_bridge_core *bc)
{
	while (bc->defer) {
		struct deferred *d = bc->defer;
		bc->defer = d->next;
		deferred_free(d);
	}
	while (bc->chunks) {
		struct chunk *c = bc->chunks;
		bc->chunks = c->next;
		free(c);
	}
	rmq_bridge_buf_free(&bc->topic);
	rmq_bridge_buf_free(&bc->key);
	rmq_bridge_buf_free(&bc->val);
	rmq_bridge_buf_free(&bc->hblob);
	free(bc->rcl);
	free(bc->spilled);
	if (bc->efd >= 0)
		close(bc->efd);
}

void rmq_bridge_stop(struct rmq_bridge *b, int timeout_ms)
{
	if (!b)
		return;
	atomic_store(&b->stopping, true);
	rmq_bridge_consumers_stop(b->cons); /* before the embedded cluster goes: the last commit needs it */
	b->cons = NULL;
	rmq_bridge_cluster_stop(b->cluster);
	b->cluster = NULL;
	long deferred = 0;
	for (int c = 0; b->cores && c < b->ncores; c++)
		for (struct deferred *d = b->cores[c].defer; d; d = d->next)
			deferred++;
	long lost = b->prods ? producers_flush(b, timeout_ms) : 0;
	if (lost || deferred)
		fprintf(stderr, "kafka: %ld messages not delivered within %d ms at shutdown\n", lost + deferred,
			timeout_ms);
	for (int i = 0; b->prods && i < b->nprod; i++) {
		for (int r = 0; r < b->nroutes; r++)
			if (b->prods[i].rkt[r])
				rd_kafka_topic_destroy(b->prods[i].rkt[r]);
		if (b->prods[i].rk)
			rd_kafka_destroy(b->prods[i].rk);
	}
	rmq_bridge_mock_stop(&b->mock);
	for (int c = 0; b->cores && c < b->ncores; c++)
		core_free(&b->cores[c]);
	for (int r = 0; r < b->nroutes; r++)
		rmq_bridge_route_free(&b->routes[r]);
	free(b->prods);
	free(b->cores);
	free(b->bootstraps);
	free(b);
}
