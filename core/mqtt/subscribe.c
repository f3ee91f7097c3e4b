/* SUBSCRIBE / UNSUBSCRIBE: local trie, session list, route replication to every core (SUBACK only once
 * every core acknowledged), retained delivery after SUBACK. Reactor thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "index/msg.h"
#include "index/retain.h"
#include "index/trie.h"
#include "io/reactor.h"
#include "ringmq/bridge.h"
#include "security/security.h"
#include "store/persist.h"
#include "mqtt/cookie.h"

/* A SUBACK waiting for route acks, with what to do once they are in. */
struct pending_sub {
	uint16_t pid, count;
	uint8_t waits;           /* every core's route ack (1), the durability of the logged subscriptions (1) */
	uint8_t version;
	uint32_t sub_id;
	uint8_t *reasons;
	struct sub *subs;        /* granted filters for retained delivery (filter NULL: skip) */
	bool *is_new;
};

void rmq_subscribe_pending_free(struct pending_sub *ps)
{
	if (!ps)
		return;
	for (uint16_t i = 0; i < ps->count; i++)
		free(ps->subs[i].filter);
	free(ps->subs);
	free(ps->is_new);
	free(ps->reasons);
	free(ps);
}

static bool is_shared(const uint8_t *f, size_t len)
{
	return len >= 7 && !memcmp(f, "$share/", 7);
}

/* ---- route replication ---------------------------------------------------------------------- */

struct route_batch {
	uint8_t *data;
	uint32_t len, cap, count;
};

static int batch_add(struct route_batch *rb, const uint8_t *f, uint16_t len)
{
	if (rb->len + 2u + len > rb->cap) {
		uint32_t cap = rb->cap ? rb->cap * 2 : 256;
		while (cap < rb->len + 2u + len)
			cap *= 2;
		uint8_t *d = realloc(rb->data, cap);
		if (!d)
			return -ENOMEM;
		rb->data = d;
		rb->cap = cap;
	}
	rb->data[rb->len] = (uint8_t)(len >> 8);
	rb->data[rb->len + 1] = (uint8_t)len;
	memcpy(rb->data + rb->len + 2, f, len);
	rb->len += 2u + len;
	rb->count++;
	return 0;
}

/* Sends the batch to every other core. Returns true if acks are now awaited for `cn`. */
static bool batch_send(struct core *c, struct route_batch *rb, uint32_t kind, struct conn *cn)
{
	int others = c->b->ncores - 1;
	/* This core's first/last subscriber of these filters: the node's route summary (--cluster-topic). */
	rmq_bridge_cluster_filters(c->bc, kind == XK_ROUTE_ADD, rb->data, rb->count);
	if (!rb->count || others == 0) {
		free(rb->data);
		return false;
	}
	struct route_upd *u = malloc(sizeof(*u) + rb->len);
	if (!u) {
		free(rb->data);
		return false;
	}
	u->cookie = cn ? rmq_cookie_make(cn, 0) : RMQ_COOKIE_NONE;
	u->origin = (uint16_t)c->id;
	u->pending = (uint16_t)others;
	u->count = rb->count;
	u->len = rb->len;
	memcpy(u->data, rb->data, rb->len);
	free(rb->data);
	u->prev = NULL;
	u->next = c->mq->live_upds;
	if (u->next)
		u->next->prev = u;
	c->mq->live_upds = u;
	c->mq->routes_inflight++;
	for (int k = 0; k < c->b->ncores; k++)
		if (k != c->id)
			rmq_core_xpush(c, k, kind, (uint32_t)c->id, u);
	return cn != NULL;
}

static void apply_routes(struct core *c, struct rmq_trie *t, uint32_t kind, const struct route_upd *u, int origin)
{
	void *sub = (void *)(uintptr_t)(origin + 1);
	uint32_t off = 0;
	for (uint32_t i = 0; i < u->count; i++) {
		uint16_t len = (uint16_t)(u->data[off] << 8 | u->data[off + 1]);
		const uint8_t *f = u->data + off + 2;
		if (is_shared(f, len))
			rmq_shared_route(c, f, len, origin, kind == XK_ROUTE_ADD);
		else if (kind == XK_ROUTE_ADD)
			rmq_trie_add(t, f, len, sub, 0, 0);
		else
			rmq_trie_remove(t, f, len, sub);
		off += 2u + len;
	}
}

void rmq_routes_on_update(struct core *c, uint32_t kind, struct route_upd *u)
{
	apply_routes(c, c->routes, kind, u, u->origin);
	rmq_core_xpush(c, u->origin, XK_ROUTE_ACK, (uint32_t)c->id, u);
}

static void finish_subscribe(struct core *c, struct conn *cn);

/* One of the things a SUBACK waits for is done. */
static void subscribe_wait_done(struct core *c, uint64_t cookie)
{
	uint32_t seq;
	struct conn *cn = rmq_cookie_take(c, cookie, &seq);
	struct pending_sub *ps = cn ? mqtt_conn(cn)->psub : NULL;
	if (ps && cn->state == CS_ACTIVE && ps->waits && !--ps->waits) {
		finish_subscribe(c, cn);
		rmq_conn_resume(c, cn, PAUSE_ROUTES);
	}
}

void rmq_subscribe_durable(struct core *c, uint64_t cookie)
{
	subscribe_wait_done(c, cookie);
}

void rmq_routes_on_ack(struct core *c, struct route_upd *u)
{
	if (--u->pending)
		return;
	c->mq->routes_inflight--;
	if (u->cookie != RMQ_COOKIE_NONE)
		subscribe_wait_done(c, u->cookie);
	if (u->prev)
		u->prev->next = u->next;
	else
		c->mq->live_upds = u->next;
	if (u->next)
		u->next->prev = u->prev;
	free(u);
}

/* Drops `s` from the local trie for `f`; queues a route removal when it was the last subscriber. */
static void unsub_one(struct core *c, struct session *s, const uint8_t *f, uint16_t len, struct route_batch *rb)
{
	if (is_shared(f, len)) {
		if (rmq_shared_unsubscribe(c, s, f, len) == 1)
			batch_add(rb, f, len);  /* this core's last member of the group left */
		return;
	}
	if (rmq_trie_remove(c->subs, f, len, s))
		return;
	if (!is_shared(f, len) && rmq_trie_filter_subs(c->subs, f, len) == 0) {
		rmq_trie_remove(c->routes, f, len, (void *)(uintptr_t)(c->id + 1));
		batch_add(rb, f, len);
	}
}

void rmq_routes_remove_session(struct core *c, struct session *s)
{
	struct route_batch rb = {0};
	for (uint32_t i = 0; i < s->nsubs; i++)
		unsub_one(c, s, s->subs[i].filter, s->subs[i].len, &rb);
	if (!c->stopping)
		batch_send(c, &rb, XK_ROUTE_DEL, NULL);
	else
		free(rb.data);
}

struct restore_ctx {
	struct core *c;
	struct route_batch rb;
};

static void restore_session(void *ud, void *val)
{
	struct restore_ctx *x = ud;
	struct core *c = x->c;
	struct session *s = val;
	/* The username the subscriptions were granted to came back from the log; whether a filter reaches
	 * unreadable topics was not kept: with an ACL, check each delivery (fail closed) until the next CONNECT. */
	if (c->b->sec->acl)
		s->acl_filtered = true;
	for (uint32_t i = 0; i < s->nsubs; i++) {
		const struct sub *sb = &s->subs[i];
		if (is_shared(sb->filter, sb->len)) {
			if (rmq_shared_subscribe(c, s, sb->filter, sb->len, sb->options, sb->sub_id) == 1)
				batch_add(&x->rb, sb->filter, sb->len);
			continue;
		}
		int rc = rmq_trie_add(c->subs, sb->filter, sb->len, s, sb->options, sb->sub_id);
		if (rc == 1 && rmq_trie_filter_subs(c->subs, sb->filter, sb->len) == 1) {
			rmq_trie_add(c->routes, sb->filter, sb->len, (void *)(uintptr_t)(c->id + 1), 0, 0);
			batch_add(&x->rb, sb->filter, sb->len);
		}
	}
}

/* As SUBSCRIBE does, in one batch: every other core gets the routes before any core accepts a client
 * (reactor.c drains them between set-up and the first accept), so no publish after start-up misses them. */
void rmq_routes_restore(struct core *c)
{
	struct restore_ctx x = {c, {0}};
	rmq_strmap_each(&c->sessions, restore_session, &x);
	batch_send(c, &x.rb, XK_ROUTE_ADD, NULL);
}

static void keep_session(void *ud, void *val)
{
	struct route_batch *rb = ud;
	const struct session *s = val;
	for (uint32_t i = 0; s->durable && i < s->nsubs; i++)
		batch_add(rb, s->subs[i].filter, s->subs[i].len);  /* -ENOMEM: that filter is withdrawn at stop */
}

/* Teardown with --data-dir: the filters of sessions the log restores at the next start stay announced to the
 * other nodes (--cluster-topic) while this node is down, so what they publish meanwhile waits in Kafka. */
void rmq_routes_keep(struct core *c)
{
	struct route_batch rb = {0};
	rmq_strmap_each(&c->sessions, keep_session, &rb);
	rmq_bridge_cluster_keep(c->bc, rb.data, rb.count);
	free(rb.data);
}

/* ---- SUBSCRIBE ------------------------------------------------------------------------------ */

struct retained_ctx {
	struct core *c;
	struct session *s;
	uint8_t granted;
	uint32_t sub_id;
};

static void send_retained(void *ud, const uint8_t *topic, size_t len, void *value)
{
	struct retained_ctx *r = ud;
	struct rmq_msg *m = value;
	(void)topic;
	(void)len;
	struct pubctx x = {r->c, &m->pub, m, true, NULL, 0, false};
	if (m->expire_at_ms && m->expire_at_ms <= r->c->now_ms) {
		r->c->st.expired++;  /* expired retained messages are not delivered */
		return;
	}
	uint8_t qos = m->pub.qos < r->granted ? m->pub.qos : r->granted;
	/* [MQTT-3.3.1-8] sent because of a new subscription: retain flag set. */
	rmq_session_deliver(r->c, r->s, &x, qos, true, &r->sub_id, r->sub_id ? 1 : 0);
}

static void finish_subscribe(struct core *c, struct conn *cn)
{
	struct pending_sub *ps = mqtt_conn(cn)->psub;
	mqtt_conn(cn)->psub = NULL;
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_SUBACK;
	p.u.suback.packet_id = ps->pid;
	p.u.suback.count = ps->count;
	p.u.suback.reasons = ps->reasons;
	rmq_conn_write_packet(c, cn, &p);
	for (uint16_t i = 0; i < ps->count && mqtt_conn(cn)->sess; i++) {
		struct sub *sb = &ps->subs[i];
		if (!sb->filter)
			continue;
		uint8_t rh = RMQ_SUBOPT_RH(sb->options);
		/* v5 Retain Handling: 0 always, 1 only for a new subscription, 2 never. */
		if (rh == 2 || (rh == 1 && !ps->is_new[i]))
			continue;
		struct retained_ctx r = {c, mqtt_conn(cn)->sess, RMQ_SUBOPT_QOS(sb->options), ps->sub_id};
		rmq_retain_match(c->retained, sb->filter, sb->len, send_retained, &r);
	}
	rmq_subscribe_pending_free(ps);
}

/* May this connection subscribe to `f`? A filter reaching only partly into readable topics
 * (RMQ_ACL_FILTERED) is granted, and from then on the session's deliveries are checked one by one (as
 * mosquitto checks every delivery). Counts refusals. */
static bool acl_denies_subscribe(struct core *c, struct conn *cn, const uint8_t *f, uint16_t len)
{
	struct rmq_acl *acl = c->b->sec->acl;
	if (!acl)
		return false;
	const struct mqtt_conn *mc = mqtt_conn(cn);
	struct rmq_acl_who who = {mc->sess->client_id, mc->sess->id_len, mc->username, mc->username_len};
	int rc = rmq_acl_check_subscribe(acl, &who, f, len);
	if (rc == RMQ_ACL_FILTERED)
		mqtt_conn(cn)->sess->acl_filtered = true;
	if (rc >= 0)
		return false;
	c->st.acl_denied_sub++;
	VLOG(c, "ringmq: core %d: ACL denied subscription '%.*s'\n", c->id, (int)len, (const char *)f);
	return true;
}

/* One "$share/group/filter" entry: membership, session list, route replication on the first local
 * member. Retained messages are not sent on a shared subscription (MQTT 5 4.8.2): ps->subs[i] stays empty. */
static void subscribe_shared(struct core *c, struct conn *cn, struct pending_sub *ps, uint16_t i,
			     const struct rmq_sub_entry *e, struct route_batch *rb)
{
	const uint8_t *f = e->filter.p;
	uint16_t len = (uint16_t)e->filter.len;
	struct rmq_str g, inner;
	if (rmq_shared_parse(f, len, &g, &inner)) {
		ps->reasons[i] = cn->version == RMQ_V5 ? RMQ_RC_TOPIC_FILTER_INVALID : RMQ_V3_SUBACK_FAILURE;
		return;
	}
	int rc = rmq_shared_subscribe(c, mqtt_conn(cn)->sess, f, len, e->options, ps->sub_id);
	if (rc < 0 || rmq_session_subscribe(c, mqtt_conn(cn)->sess, f, len, e->options, ps->sub_id) < 0) {
		if (rc >= 0 && rmq_shared_unsubscribe(c, mqtt_conn(cn)->sess, f, len) == 1)
			batch_add(rb, f, len);
		ps->reasons[i] = cn->version == RMQ_V5 ? RMQ_RC_UNSPECIFIED : RMQ_V3_SUBACK_FAILURE;
		return;
	}
	ps->reasons[i] = RMQ_SUBOPT_QOS(e->options);
	if (rc == 1 || c->mq->routes_inflight)
		batch_add(rb, f, len);
}

/* [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error. */
static bool shared_no_local(const struct rmq_subscribe *sp)
{
	uint32_t pos = 0;
	struct rmq_sub_entry e;
	while (rmq_sub_next(sp, &pos, &e))
		if ((e.options & RMQ_SUBOPT_NO_LOCAL) && is_shared(e.filter.p, e.filter.len))
			return true;
	return false;
}

int rmq_mqtt_on_subscribe(struct core *c, struct conn *cn, const struct rmq_subscribe *sp)
{
	struct session *s = mqtt_conn(cn)->sess;
	if (cn->version == RMQ_V5 && shared_no_local(sp)) {
		c->st.malformed++;
		rmq_conn_disconnect(c, cn, RMQ_RC_PROTOCOL_ERROR);
		return -EPROTO;
	}
	struct pending_sub *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ps->pid = sp->packet_id;
	ps->count = sp->count;
	/* [MQTT-3.8.2.1.2] one Subscription Identifier applies to every filter of the SUBSCRIBE. */
	ps->sub_id = sp->props.sub_id_count ? sp->props.sub_ids[0] : 0;
	ps->reasons = calloc(sp->count ? sp->count : 1, 1);
	ps->subs = calloc(sp->count ? sp->count : 1, sizeof(*ps->subs));
	ps->is_new = calloc(sp->count ? sp->count : 1, sizeof(*ps->is_new));
	if (!ps->reasons || !ps->subs || !ps->is_new) {
		rmq_subscribe_pending_free(ps);
		return -ENOMEM;
	}
	struct route_batch rb = {0};
	uint32_t pos = 0;
	struct rmq_sub_entry e;
	/* --data-dir: a persistent session's SUBACK also waits until its subscriptions are on disk. */
	bool logging = s->durable && rmq_persist_waits(c);
	if (logging)
		rmq_persist_sub_begin(c, rmq_cookie_make(cn, 0));
	for (uint16_t i = 0; i < sp->count && rmq_sub_next(sp, &pos, &e); i++) {
		const uint8_t *f = e.filter.p;
		uint16_t len = (uint16_t)e.filter.len;
		uint8_t qos = RMQ_SUBOPT_QOS(e.options);
		uint8_t refused = rmq_limits_subscribe_refusal(c, cn, f, len);
		if (refused) {
			ps->reasons[i] = refused;
			continue;
		}
		if (acl_denies_subscribe(c, cn, f, len)) {
			ps->reasons[i] = rmq_security_subscribe_denied_code(cn->version);
			continue;
		}
		if (is_shared(f, len)) {
			subscribe_shared(c, cn, ps, i, &e, &rb);
			continue;
		}
		int rc = rmq_trie_add(c->subs, f, len, s, e.options, ps->sub_id);
		if (rc < 0 || rmq_session_subscribe(c, s, f, len, e.options, ps->sub_id) < 0) {
			if (rc == 1)
				rmq_trie_remove(c->subs, f, len, s);
			ps->reasons[i] = cn->version == RMQ_V5 ? (rc == -E2BIG ? RMQ_RC_TOPIC_FILTER_INVALID
									  : RMQ_RC_UNSPECIFIED)
							       : RMQ_V3_SUBACK_FAILURE;
			continue;
		}
		ps->reasons[i] = qos;
		ps->is_new[i] = rc == 1;
		ps->subs[i].filter = malloc(len ? len : 1);
		if (ps->subs[i].filter) {
			memcpy(ps->subs[i].filter, f, len);
			ps->subs[i].len = len;
			ps->subs[i].options = e.options;
		}
		/* A route appears when this core gets its first subscriber of the filter; while earlier
		 * updates are still unacknowledged we resend, so this SUBACK also waits for the route. */
		if (rc == 1 && (rmq_trie_filter_subs(c->subs, f, len) == 1 || c->mq->routes_inflight)) {
			rmq_trie_add(c->routes, f, len, (void *)(uintptr_t)(c->id + 1), 0, 0);
			batch_add(&rb, f, len);
		}
	}
	mqtt_conn(cn)->psub = ps;
	ps->waits = (uint8_t)(logging && rmq_persist_sub_end(c));
	ps->waits += batch_send(c, &rb, XK_ROUTE_ADD, cn);
	rmq_cookie_hold(c, cn, ps->waits);  /* each wait comes back through subscribe_wait_done */
	if (ps->waits) {
		rmq_conn_pause(c, cn, PAUSE_ROUTES);
		return 0;
	}
	finish_subscribe(c, cn);
	return 0;
}

int rmq_mqtt_on_unsubscribe(struct core *c, struct conn *cn, const struct rmq_subscribe *sp)
{
	struct session *s = mqtt_conn(cn)->sess;
	uint8_t reasons[sp->count ? sp->count : 1];
	struct route_batch rb = {0};
	uint32_t pos = 0;
	struct rmq_sub_entry e;
	for (uint16_t i = 0; i < sp->count && rmq_sub_next(sp, &pos, &e); i++) {
		const uint8_t *f = e.filter.p;
		uint16_t len = (uint16_t)e.filter.len;
		if (rmq_session_unsubscribe(c, s, f, len)) {
			unsub_one(c, s, f, len, &rb);
			reasons[i] = RMQ_RC_SUCCESS;
		} else {
			reasons[i] = RMQ_RC_NO_SUBSCRIPTION_EXISTED;
		}
	}
	batch_send(c, &rb, XK_ROUTE_DEL, NULL);
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_UNSUBACK;
	p.u.suback.packet_id = sp->packet_id;
	p.u.suback.count = cn->version == RMQ_V5 ? sp->count : 0;
	p.u.suback.reasons = reasons;
	return rmq_conn_write_packet(c, cn, &p);
}
