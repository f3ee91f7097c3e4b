/* The MQTT -> Kafka path: per-core librdkafka producers, publish (route, render, produce), delivery reports turned
 * into exactly one completion per cookie. rmq_bridge_publish: the owning reactor only; delivery reports: the core
 * serving the producer (bridge.c).
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
 * the cookie completes once all of them resolved (QoS 0 with qos0-overflow drop: the rest are dropped, counted).
 * While the FIFO is not empty every new publish gets -ENOBUFS, so a car's later message never overtakes an earlier
 * one. */
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
#include "producer_internal.h"

/* ---- errors ------------------------------------------------------------------------------------ */

int rmq_prod_kafka_errno(rd_kafka_resp_err_t e)
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

/* MQTT 5 reason of a failed publish. 0x97 Quota exceeded for limits (the topic's max.message.bytes, a full queue, a
 * Kafka quota): an administrative limit, not the MQTT packet size the CONNACK announced (that is 0x95). 0x87 Not
 * authorized for a Kafka ACL refusal. 0x90 Topic Name invalid for a Kafka topic that does not exist: the MQTT topic
 * is well-formed but this server does not accept it, and resending it will not help until the topic is created. */
uint8_t rmq_prod_reason_of(int err)
{
	switch (err) {
	case -EMSGSIZE:
	case -ENOBUFS:
	case -EDQUOT: return RMQ_RC_QUOTA_EXCEEDED;
	case -EACCES: return RMQ_RC_NOT_AUTHORIZED;
	case -ENOENT: return RMQ_RC_TOPIC_NAME_INVALID;
	default: return RMQ_RC_UNSPECIFIED;
	}
}

/* A route Kafka refused for good: counted by class on the core running now, logged once per (cause, topic). */
void rmq_prod_kafka_refused(struct rmq_bridge_core *bc, rd_kafka_resp_err_t e, const char *topic)
{
	enum rmq_kfault f = rmq_bridge_kfault_of(e);
	if (f == RMQ_KFAULT_NONE)
		return;
	if (f == RMQ_KFAULT_UNKNOWN_TOPIC)
		bc->st.refused_unknown_topic++;
	else if (f == RMQ_KFAULT_DENIED)
		bc->st.refused_denied++;
	else
		bc->st.refused_too_large++;
	if (!rmq_bridge_kfault_first(&bc->b->faults, f, topic))
		return;
	fprintf(stderr, "kafka: topic %s: %s: publishers get reason 0x%02x (MQTT 5) or are disconnected (3.1.1); "
		"logged once per topic, counted in ringmq_kafka_refused_total{reason=\"%s\"}\n", topic,
		rd_kafka_err2str(e), rmq_prod_reason_of(rmq_prod_kafka_errno(e)), rmq_bridge_kfault_name(f));
}

/* ---- pendings and completion ------------------------------------------------------------------- */

struct pending *rmq_prod_pending_get(struct rmq_bridge_core *bc)
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

void rmq_prod_pending_put(struct rmq_bridge_core *bc, struct pending *pd)
{
	pd->next = bc->free;
	bc->free = pd;
}

void rmq_prod_wake(int efd)
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
		rmq_prod_wake(owner->efd);
}

void rmq_prod_resolve(struct rmq_bridge_core *self, struct pending *pd, int err)
{
	if (!pd)
		return;
	int zero = 0;
	if (err)
		atomic_compare_exchange_strong(&pd->err, &zero, err);
	if (atomic_fetch_sub_explicit(&pd->remaining, 1, memory_order_acq_rel) == 1)
		complete(self, pd);
}

void rmq_prod_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct producer *p = opaque;
	struct rmq_bridge_core *sc = p->server;
	if (m->_private)
		HANDOFF_ACQUIRE(m->_private);
	if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE && sc->reclaiming && rmq_prod_reclaim_keep(sc, m) == 0)
		return; /* rmq_bridge_core_reclaim spools it or produces it again */
	if (m->err) {
		sc->st.failed++;
		rmq_prod_kafka_refused(sc, m->err, rd_kafka_topic_name(m->rkt));
	} else {
		sc->st.delivered++;
		atomic_store_explicit(&p->down, false, memory_order_relaxed); /* a broker took it: Kafka is back */
	}
	if (atomic_load_explicit(&p->b->stopping, memory_order_relaxed))
		return; /* stop(): the pools are about to be freed, nobody waits for completions */
	rmq_prod_resolve(sc, m->_private, m->err ? rmq_prod_kafka_errno(m->err) : 0);
}

/* librdkafka's error events (broker down, all brokers down, fatal idempotence errors), served by rd_kafka_poll()
 * on the serving core. Counted; printed at most once per ERROR_LOG_MS per producer, so a Kafka outage does not
 * flood the log. A fatal error is always printed: the producer cannot continue and every later message fails. */
void rmq_prod_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
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

/* The Kafka headers of m, one add() each: user properties, then the MQTT metadata. Shared by the direct path
 * (librdkafka headers) and the spool (the bridge's blob), so a replayed message carries exactly the same. */
int rmq_prod_headers_each(const struct rmq_bridge_msg *m, header_fn add, void *ud)
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
	rmq_prod_headers_each(m, rd_header_add, h);
	return h;
}

/* Renders route r of m into bc's buffers. Returns 0, -EINVAL (rendered topic not a Kafka name) or -ENOMEM. */
int rmq_prod_render(struct rmq_bridge_core *bc, const struct rmq_bridge_route *r, const struct rmq_bridge_msg *m,
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
rd_kafka_resp_err_t rmq_prod_produce(struct producer *p, int route, const struct rendered *x, struct pending *pd)
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
	if (pd)
		HANDOFF_RELEASE(pd);
	rd_kafka_error_t *e = rd_kafka_produceva(p->rk, vu, (size_t)n);
	if (!e)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	rd_kafka_resp_err_t code = rd_kafka_error_code(e);
	rd_kafka_error_destroy(e);
	return code;
}

/* The Kafka topic of a route about to be produced: the rendered one, or the fixed route's cached handle's. */
static const char *topic_of(const struct producer *p, int route, const char *rendered)
{
	return rendered ? rendered : route >= 0 && p->rkt[route] ? rd_kafka_topic_name(p->rkt[route]) : "?";
}

void rmq_prod_deferred_free(struct deferred *d)
{
	if (d->hdrs)
		rd_kafka_headers_destroy(d->hdrs);
	free(d->topic);
	free(d->key);
	free(d->val);
	free(d);
}

void *rmq_prod_dup_mem(const void *p, size_t n)
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
	d->key = x->key ? rmq_prod_dup_mem(x->key, x->keylen) : NULL;
	d->val = rmq_prod_dup_mem(x->val, x->vallen);
	if ((x->topic && !d->topic) || (x->key && !d->key) || !d->val) {
		d->hdrs = NULL;
		rmq_prod_deferred_free(d);
		return -ENOMEM;
	}
	*bc->defer_tail = d;
	bc->defer_tail = &d->next;
	bc->st.deferred++;
	return 0;
}

/* Produces the deferred FIFO in order until librdkafka is full again. */
void rmq_prod_drain_deferred(struct rmq_bridge_core *bc)
{
	while (bc->defer) {
		struct deferred *d = bc->defer;
		struct rendered x = {.topic = d->topic, .key = d->key, .keylen = d->keylen, .val = d->val,
				     .vallen = d->vallen, .hdrs = d->hdrs, .ts = d->ts};
		rd_kafka_resp_err_t e = rmq_prod_produce(bc->prod, d->route, &x, d->pd);
		if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return;
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
			d->hdrs = NULL; /* librdkafka owns them now */
			bc->st.produced++;
			if (CLUSTER_UNIT(d->route))
				rmq_bridge_cluster_produced(bc->b->cluster, bc->id, CLUSTER_UNIT(d->route), true);
		} else {
			bc->st.failed++;
			rmq_prod_kafka_refused(bc, e, topic_of(bc->prod, d->route, d->topic));
			rmq_prod_resolve(bc, d->pd, rmq_prod_kafka_errno(e));
		}
		bc->defer = d->next;
		if (!bc->defer)
			bc->defer_tail = &bc->defer;
		rmq_prod_deferred_free(d);
	}
}

/* Routes of topic t, in configuration order; first match only unless route-match all. */
int rmq_prod_match(const struct rmq_bridge *b, struct rmq_str t, int *out)
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
	int rc = rmq_prod_render(bc, &bc->b->routes[r], m, ts, true, &x);
	if (rc) {
		bc->st.failed++;
		rmq_prod_resolve(bc, pd, rc);
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
		rd_kafka_resp_err_t e = rmq_prod_produce(bc->prod, r, &x, pd);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
			bc->st.produced++;
			if (CLUSTER_UNIT(r))
				rmq_bridge_cluster_produced(bc->b->cluster, bc->id, CLUSTER_UNIT(r), true);
			return 0;
		}
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			bc->st.failed++;
			rmq_prod_kafka_refused(bc, e, topic_of(bc->prod, r, x.topic));
			if (x.hdrs)
				rd_kafka_headers_destroy(x.hdrs);
			rmq_prod_resolve(bc, pd, rmq_prod_kafka_errno(e));
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
		rmq_prod_resolve(bc, pd, -ENOBUFS);
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
		rmq_prod_resolve(bc, pd, rc);
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
	return rmq_prod_match(bc->b, p->topic, routes) > 0 ||
	       (bc->b->cluster && (rmq_bridge_cluster_units(bc->b->cluster, bc->id, p) & RMQ_CLUSTER_DATA));
}

int rmq_bridge_publish(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, uint64_t cookie)
{
	struct rmq_bridge *b = bc->b;
	int routes[RMQ_BRIDGE_MAX_ROUTES];
	if (!m->pub->topic.len)
		return -EINVAL; /* a v5 topic alias must be resolved by the core first */
	int n = rmq_prod_match(b, m->pub->topic, routes);
	int units = b->cluster ? rmq_bridge_cluster_units(b->cluster, bc->id, m->pub) : 0;
	int total = n + (units & RMQ_CLUSTER_DATA ? 1 : 0) + (units & RMQ_CLUSTER_RETAIN ? 1 : 0);
	if (total == 0) {
		bc->st.unrouted++;
		return 0;
	}
	if (bc->defer) {
		rmq_prod_drain_deferred(bc);
		if (bc->defer)
			return refuse(bc, m);
	}
	/* QoS 0 has nothing to acknowledge, and ack-after broker acknowledges now: no completion for either
	 * (a QoS 0 cookie would otherwise share its sequence number with the next QoS 1 on the connection). */
	struct pending *pd = NULL;
	if (!b->ack_broker && m->pub->qos > 0) {
		if (!(pd = rmq_prod_pending_get(bc)))
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
				rmq_prod_pending_put(bc, pd);
			return refuse(bc, m);
		}
	}
	bc->st.published++;
	if (!pd)
		return 0; /* nothing to wait for; delivery failures are only counted */
	size_t before = bc->ready ? 1 : 0;
	rmq_prod_resolve(bc, pd, 0); /* drops the guard */
	if (!before && bc->ready)
		rmq_prod_wake(bc->efd); /* completed synchronously (every route failed early): make the reactor poll */
	return total;
}

