/* MQTT as the room above io and store: the protocol table io calls (struct rmq_proto_ops, io/io.h) and the hooks the
 * store calls (struct rmq_store_hooks, store/store.h). Reactor thread of the core given. */
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "index/msg.h"
#include "index/retain.h"
#include "index/trie.h"
#include "io/reactor.h"
#include "io/xport.h"
#include "mqtt/mqtt.h"
#include "security/security.h"
#include "store/kafka_spool.h"
#include "store/persist.h"
#include "store/store.h"

static void opened(struct core *c, struct conn *cn)
{
	rmq_ackwin_init(&mqtt_conn(cn)->acks, c->b->cfg.max_inflight);
}

/* [MQTT-3.1.0-1] CONNECT first: judged on the first byte, so that an HTTP request or other stray protocol is
 * refused at once instead of waiting for its "length". */
static bool may_start(uint8_t b)
{
	return b == RMQ_CONNECT << 4;
}

static void closed(struct core *c, struct conn *cn, bool abnormal)
{
	struct session *s = mqtt_conn(cn)->sess;
	mqtt_conn(cn)->sess = NULL;
	struct rmq_msg *w = NULL;
	if (abnormal && mqtt_conn(cn)->will) {
		w = mqtt_conn(cn)->will;
		mqtt_conn(cn)->will = NULL;
	}
	if (s && s->conn == cn) {
		s->conn = NULL;
		rmq_session_expiry_on_close(c, s, w, mqtt_conn(cn)->will_delay_s);  /* takes w */
	} else if (w) {
		/* Taken over: a delayed will is not sent, the session lives on in the new connection. */
		if (!mqtt_conn(cn)->will_delay_s)
			rmq_publish_from_core(c, w, s);
		rmq_msg_unref(w);
	}
}

static void reap(struct core *c, struct conn *cn)
{
	(void)c;
	/* Only at teardown does a connection go without closed() having detached it. */
	if (mqtt_conn(cn)->sess && mqtt_conn(cn)->sess->conn == cn)
		mqtt_conn(cn)->sess->conn = NULL;
	mqtt_conn(cn)->sess = NULL;
	if (mqtt_conn(cn)->will)
		rmq_msg_unref(mqtt_conn(cn)->will);
	rmq_subscribe_pending_free(mqtt_conn(cn)->psub);
	rmq_ackwin_free(&mqtt_conn(cn)->acks);
	free(mqtt_conn(cn)->connect_raw);
	free(mqtt_conn(cn)->username);
	rmq_topic_alias_free(cn);
	rmq_topic_alias_out_free(cn);
}

int rmq_mqtt_core_new(struct core *c)
{
	c->mq = calloc(1, sizeof(*c->mq));
	return c->mq ? 0 : -ENOMEM;
}

/* What only the core's own thread reads: freed at its teardown. */
static void free_local(struct core *c)
{
	struct mqtt_core *mq = c->mq;
	rmq_shared_free(c);
	rmq_auth_ratelimit_free(mq->auth_rl);
	mq->auth_rl = NULL;
	free(mq->mscratch);
	mq->mscratch = NULL;
	mq->mscratch_n = mq->mscratch_cap = 0;
}

void rmq_mqtt_core_free(struct core *c)
{
	struct mqtt_core *mq = c->mq;
	if (!mq)
		return;
	free_local(c);
	for (struct route_upd *u = mq->live_upds, *n; u; u = n) {
		n = u->next;
		free(u);
	}
	free(mq);
	c->mq = NULL;
}

static int start(struct core *c)
{
	int rc = rmq_mqtt_core_new(c);
	if (rc)
		return rc;
	c->subs = rmq_trie_new();
	c->routes = rmq_trie_new();
	c->retained = rmq_retain_new();
	if (!c->subs || !c->routes || !c->retained)
		return -ENOMEM;
	rmq_strmap_init(&c->sessions);
	rc = rmq_security_ratelimit_new(&c->b->cfg.sec, &c->mq->auth_rl);  /* CONNECT's failed-login limiter */
	if (rc < 0)
		return rc;
	if ((rc = rmq_kspool_open(c)))
		return rc;
	if (c->b->cfg.data_dir[0]) {
		/* State first, then its routes queued to every other core, all before `ready`. */
		if ((rc = rmq_persist_open(c)))
			return rc;
		rmq_routes_restore(c);
	}
	return 0;
}

/* A publish or retained set whose origin holds its ack until what this core stores is durable (arg 1). */
static void store_durably(struct core *c, struct rmq_xq_entry *e)
{
	struct rmq_msg *m = e->ptr;
	uint64_t ck = m->durable_ck;
	int origin = m->origin_core;
	rmq_persist_remote_begin(c, ck, origin);
	if (e->kind == XK_PUBLISH)
		rmq_publish_deliver_remote(c, m);
	else
		rmq_publish_retain_store(c, m);
	rmq_persist_remote_end(c, ck, origin);
}

static void xentry(struct core *c, struct rmq_xq_entry *e)
{
	switch (e->kind) {
	case XK_HANDOFF:
		rmq_handoff_receive(c, e->ptr);
		break;
	case XK_PUBLISH:
		if (e->arg)
			store_durably(c, e);
		else
			rmq_publish_deliver_remote(c, e->ptr);
		break;
	case XK_RETAIN:
		if (e->arg)
			store_durably(c, e);
		else
			rmq_publish_retain_store(c, e->ptr);
		break;
	case XK_DURABLE:
		rmq_persist_on_durable(c, (uint64_t)(uintptr_t)e->ptr, e->arg != 0);
		break;
	case XK_ROUTE_ADD:
	case XK_ROUTE_DEL:
		rmq_routes_on_update(c, e->kind, e->ptr);
		break;
	case XK_ROUTE_ACK:
		rmq_routes_on_ack(c, e->ptr);
		break;
	}
}

static void xfree(struct core *c, struct rmq_xq_entry *e, bool dropped)
{
	struct handoff *h;
	switch (e->kind) {
	case XK_PUBLISH:
	case XK_RETAIN:
		if (dropped && e->arg)
			rmq_persist_remote_dropped(c, e->ptr);  /* nothing stored there: do not hold the ack for it */
		rmq_msg_unref(e->ptr);
		break;
	case XK_HANDOFF:
		h = e->ptr;
		close(h->fd);
		rmq_xport_free(h->xp);
		free(h->peer);
		free(h);
		break;
	default:
		break;  /* route updates are shared by every destination: main frees them after the join */
	}
}

static void session_timer(struct core *c, struct rmq_timer *t)
{
	/* v5 Session Expiry or Will Delay Interval elapsed while the client stayed away. */
	rmq_session_expiry_fire(c, (struct session *)((char *)t - offsetof(struct session, expiry_timer)));
}

static void stop(struct core *c)
{
	if (c->bc && c->b->cfg.data_dir[0])
		rmq_routes_keep(c);
}

static void free_session_cb(void *ud, void *val)
{
	rmq_session_destroy(ud, val);
}

static void release_msg(void *v) { rmq_msg_unref(v); }

static void teardown(struct core *c)
{
	/* rmq_session_destroy unsubscribes; the map must not change while we walk it, so collect first. */
	struct rmq_strmap sessions = c->sessions;
	rmq_strmap_init(&c->sessions);
	rmq_strmap_each(&sessions, free_session_cb, c);
	rmq_strmap_destroy(&sessions);
	/* The route updates stay: other cores may still hold them (main frees them, rmq_mqtt_core_free). */
	if (c->mq)
		free_local(c);
	/* The indexes last: the sessions above unsubscribed from them. */
	if (c->subs)
		rmq_trie_free(c->subs);
	if (c->routes)
		rmq_trie_free(c->routes);
	if (c->retained)
		rmq_retain_free(c->retained, release_msg);
	c->subs = c->routes = NULL;
	c->retained = NULL;
}

const struct rmq_proto_ops rmq_mqtt_proto = {
	.conn_size = sizeof(struct mqtt_conn),
	.opened = opened,
	.may_start = may_start,
	.frame = rmq_mqtt_handle,
	.parsed = rmq_limits_track_partial,
	.transport_input = rmq_limits_track_transport,
	.handshake_failed = rmq_limits_handshake_failed,
	.conn_timer = rmq_limits_conn_timer,
	.handoff = rmq_handoff_send,
	.closed = closed,
	.reap = reap,
	.start = start,
	.xentry = xentry,
	.xfree = xfree,
	.session_timer = session_timer,
	.bridge_done = rmq_publish_bridge_done,
	.poll = rmq_kafka_in_poll,
	.drain = rmq_core_drain,
	.stop = stop,
	.teardown = teardown,
};

const struct rmq_store_hooks rmq_mqtt_store_hooks = {
	.durable = rmq_publish_complete_cookie,
	.sub_durable = rmq_subscribe_durable,
	.ack_durable = rmq_session_ack_durable,
	.kafka_done = rmq_publish_bridge_done,
	.session_get = rmq_session_get,
	.session_create = rmq_session_create,
	.session_destroy = rmq_session_destroy,
	.session_queue_append = rmq_session_queue_append,
	.session_sub_add = rmq_session_sub_add,
	.session_sub_del = rmq_session_sub_del,
	.session_take_shared = rmq_session_take_shared,
};
