/* PUBLISH in and out: receive maximum, QoS 2 duplicate detection, Kafka hand-off with the ordered ack
 * window, local fan-out with overlapping-subscription merge, cross-core fan-out, retained store.
 * Reactor thread. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/msg.h"
#include "index/retain.h"
#include "index/trie.h"
#include "io/reactor.h"
#include "ringmq/bridge.h"
#include "security/security.h"
#include "store/kafka_spool.h"
#include "store/persist.h"
#include "mqtt/cookie.h"

/* v5 Message Expiry Interval: the deadline is fixed when the broker receives the message. */
static void msg_set_expiry(struct core *c, struct rmq_msg *m)
{
	if ((m->pub.props.present & RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY)) && !m->expire_at_ms)
		m->expire_at_ms = c->now_ms + (uint64_t)m->pub.props.message_expiry * 1000u;
}

struct rmq_msg *rmq_publish_ctx_msg(struct pubctx *x)
{
	if (!x->m) {
		x->m = rmq_msg_new(x->pub);
		if (x->m) {
			x->m->origin_core = (uint16_t)x->c->id;
			x->m->origin_session = x->origin;
			msg_set_expiry(x->c, x->m);
		}
	}
	return x->m;
}

/* ---- fan-out -------------------------------------------------------------------------------- */

static void collect(void *ud, void *sub, uint8_t options, uint32_t sub_id)
{
	struct mqtt_core *mq = ud;
	struct session *s = sub;
	if (s->match_epoch == mq->match_epoch) {
		if (sub_id && s->match_nids < RMQ_MAX_SUB_IDS)
			s->match_ids[s->match_nids++] = sub_id;
		/* Overlapping subscriptions: one copy, at the highest granted QoS. */
		if (RMQ_SUBOPT_QOS(options) > RMQ_SUBOPT_QOS(s->match_opts))
			s->match_opts = (uint8_t)((s->match_opts & ~3) | RMQ_SUBOPT_QOS(options));
		if (!(options & RMQ_SUBOPT_NO_LOCAL))
			s->match_opts &= (uint8_t)~RMQ_SUBOPT_NO_LOCAL;
		if (options & RMQ_SUBOPT_RAP)
			s->match_opts |= RMQ_SUBOPT_RAP;
		return;
	}
	s->match_epoch = mq->match_epoch;
	s->match_opts = options;
	s->match_nids = 0;
	if (sub_id)
		s->match_ids[s->match_nids++] = sub_id;
	if (mq->mscratch_n == mq->mscratch_cap) {
		uint32_t cap = mq->mscratch_cap ? mq->mscratch_cap * 2 : 64;
		struct session **n = realloc(mq->mscratch, cap * sizeof(*n));
		if (!n)
			return;
		mq->mscratch = n;
		mq->mscratch_cap = cap;
	}
	mq->mscratch[mq->mscratch_n++] = s;
}

static void deliver_local(struct core *c, struct pubctx *x)
{
	const struct rmq_publish *p = x->pub;
	struct mqtt_core *mq = c->mq;
	mq->match_epoch++;
	mq->mscratch_n = 0;
	if (!x->m || !x->m->share_only)
		rmq_trie_match(c->subs, p->topic.p, p->topic.len, collect, mq);
	x->matched |= mq->mscratch_n > 0;
	/* The scratch array may be reused (and moved) by a nested publish (a will): walk a stable count, and read the
	 * array through mq each time. */
	uint32_t n = mq->mscratch_n;
	for (uint32_t i = 0; i < n && i < mq->mscratch_n; i++) {
		struct session *s = mq->mscratch[i];
		uint8_t o = s->match_opts;
		const void *origin = x->m ? x->m->origin_session : x->origin;
		if ((o & RMQ_SUBOPT_NO_LOCAL) && s == origin && (!x->m || x->m->origin_core == c->id))
			continue;
		uint8_t qos = p->qos < RMQ_SUBOPT_QOS(o) ? p->qos : RMQ_SUBOPT_QOS(o);
		/* [MQTT-3.3.1-9] retain is 0 on normal delivery, unless v5 Retain As Published. */
		bool retain = (o & RMQ_SUBOPT_RAP) && p->retain;
		rmq_session_deliver(c, s, x, qos, retain, s->match_ids, s->match_nids);
	}
	rmq_shared_deliver(c, x);
}

static void route_collect(void *ud, void *sub, uint8_t options, uint32_t sub_id)
{
	struct mqtt_core *mq = ud;
	(void)options;
	(void)sub_id;
	uint32_t core = (uint32_t)((uintptr_t)sub - 1);
	mq->coremask[core / 64] |= 1ull << (core % 64);
}

static void deliver_other_cores(struct core *c, struct pubctx *x)
{
	const struct rmq_publish *p = x->pub;
	uint64_t *mask = c->mq->coremask;
	memset(mask, 0, sizeof(c->mq->coremask));
	rmq_trie_match(c->routes, p->topic.p, p->topic.len, route_collect, c->mq);
	rmq_shared_add_cores(c, x->m, mask);
	for (int k = 0; k < c->b->ncores; k++) {
		if (k == c->id || !(mask[k / 64] & (1ull << (k % 64))))
			continue;
		x->matched = true;
		struct rmq_msg *m = rmq_publish_ctx_msg(x);
		if (!m)
			return;
		/* --data-dir: the receiver answers once what it stored for this publish is durable. */
		rmq_core_xpush(c, k, XK_PUBLISH, c->persist ? rmq_persist_hold_remote(c, m) : 0, rmq_msg_ref(m));
	}
}

/* Retained messages are replicated to every core rather than sharded: SUBSCRIBE (the moment a car
 * reconnects and wants its last state) is then answered from local memory without a cross-core
 * round trip, and a retained set costs one queue entry per core, which is rare next to publishes.
 * Sets race across cores, so each carries a broker-wide stamp and the newest wins on every core. */
void rmq_publish_retain_store(struct core *c, struct rmq_msg *m)
{
	const struct rmq_publish *p = &m->pub;
	struct rmq_msg *cur = rmq_retain_get(c->retained, p->topic.p, p->topic.len);
	if (cur && cur->stamp > m->stamp) {
		rmq_msg_unref(m);  /* a newer set from another core got here first */
		return;
	}
	void *old = NULL;
	if (c->persist)
		rmq_persist_retain(c, m, p->payload.len == 0);
	if (p->payload.len == 0) {
		/* [MQTT-3.3.1-10] an empty retained payload clears the topic. */
		rmq_retain_set(c->retained, p->topic.p, p->topic.len, NULL, &old);
		rmq_msg_unref(m);
	} else if (rmq_retain_set(c->retained, p->topic.p, p->topic.len, m, &old)) {
		rmq_msg_unref(m);
		return;
	}
	if (old)
		rmq_msg_unref(old);
}

static void publish_ctx(struct core *c, struct pubctx *x)
{
	const struct rmq_publish *p = x->pub;
	/* The shared-subscription picks are written into the message before its first push to another core:
	 * from then on other cores read it and it stays as it is. */
	rmq_shared_pick(c, x);  /* sets x->matched when a group takes it */
	if (p->retain) {
		struct rmq_msg *m = rmq_publish_ctx_msg(x);
		if (m) {
			m->stamp = atomic_fetch_add_explicit(&c->b->stamp, 1, memory_order_relaxed) + 1;
			for (int k = 0; k < c->b->ncores; k++)
				if (k != c->id)
					rmq_core_xpush(c, k, XK_RETAIN, c->persist ? rmq_persist_hold_remote(c, m) : 0,
						   rmq_msg_ref(m));
			rmq_publish_retain_store(c, rmq_msg_ref(m));
		}
	}
	deliver_local(c, x);
	if (c->b->ncores > 1)
		deliver_other_cores(c, x);
	if (x->m && !x->borrowed)
		rmq_msg_unref(x->m);
}

void rmq_publish_from_core(struct core *c, struct rmq_msg *m, const struct session *origin_sess)
{
	struct pubctx x = {c, &m->pub, m, true, origin_sess, 0, false};
	m->origin_core = (uint16_t)c->id;
	m->origin_session = origin_sess;
	msg_set_expiry(c, m);
	publish_ctx(c, &x);
	if (c->bc && !m->from_cluster)
		rmq_bridge_cluster_forward(c->bc, &m->pub);  /* wills, Kafka records: to other nodes' subscribers */
}

void rmq_publish_deliver_remote(struct core *c, struct rmq_msg *m)
{
	struct pubctx x = {c, &m->pub, m, true, NULL, 0, false};
	deliver_local(c, &x);
	rmq_msg_unref(m);
}

/* ---- inbound PUBLISH and its acknowledgement ------------------------------------------------ */

void rmq_publish_ackwin_flush(struct core *c, struct conn *cn)
{
	struct rmq_ack_ent e;
	assert(c->slots[cn->slot] == cn);  /* the connection's own core */
	while (rmq_ackwin_pop(&mqtt_conn(cn)->acks, &e)) {
		assert(e.type == RMQ_PUBACK || e.type == RMQ_PUBREC);
		if (e.reason >= 0x80 && cn->version != RMQ_V5) {
			/* 3.x has no negative PUBACK: disconnect so the car resends. */
			rmq_conn_close(c, cn, true);
			return;
		}
		if (e.stamp_ms != RMQ_ACKWIN_NO_STAMP)
			rmq_ackwin_observe(c->st.ack_hist, &c->st.ack_sum_ms, (uint32_t)c->now_ms - e.stamp_ms);
		rmq_conn_write_ack(c, cn, e.type, e.packet_id, e.reason);
	}
	if ((cn->pause & PAUSE_WINDOW) && mqtt_conn(cn)->acks.count < c->b->cfg.max_inflight)
		rmq_conn_resume(c, cn, PAUSE_WINDOW);
}

void rmq_publish_complete_cookie(struct core *c, uint64_t cookie, uint8_t reason)
{
	uint32_t seq;
	struct conn *cn = rmq_cookie_take(c, cookie, &seq);
	if (!cn)
		return;  /* the connection is gone; the car will resend on its next session */
	int rc = rmq_ackwin_complete(&mqtt_conn(cn)->acks, seq, reason);
	assert(rc == 0);  /* held cookies complete each entry's pending count exactly */
	if (rc == 0)
		rmq_publish_ackwin_flush(c, cn);
}

void rmq_publish_bridge_done(void *ud, uint64_t cookie, int err, uint8_t reason)
{
	struct core *c = ud;
	if (err)
		c->st.bridge_fail++;
	rmq_publish_complete_cookie(c, cookie, err ? (reason ? reason : RMQ_RC_UNSPECIFIED) : 0);
}

static int protocol_violation(struct core *c, struct conn *cn, uint8_t reason)
{
	c->st.malformed++;
	rmq_conn_disconnect(c, cn, reason);
	return -EPROTO;
}

/* May this connection publish on p's topic? Without an ACL file, yes. Counts refusals. */
static bool acl_denies_publish(struct core *c, struct conn *cn, const struct rmq_publish *p)
{
	if (!c->b->sec->acl)
		return false;
	const struct mqtt_conn *mc = mqtt_conn(cn);
	struct rmq_acl_who who = {mc->sess->client_id, mc->sess->id_len, mc->username, mc->username_len};
	if (rmq_acl_check(c->b->sec->acl, &who, p->topic.p, p->topic.len, RMQ_ACL_WRITE) == 0)
		return false;
	c->st.acl_denied_pub++;
	VLOG(c, "ringmq: core %d: ACL denied publish to '%.*s'\n", c->id, (int)p->topic.len, (const char *)p->topic.p);
	return true;
}

/* A denied PUBLISH goes nowhere but is still acknowledged, in arrival order behind acks waiting for
 * Kafka: v5 with 0x87 (a PUBREC >= 0x80 ends a QoS 2 exchange), 3.x as if accepted, so the client does
 * not resend it forever (its PUBREL then finds no id and still gets PUBCOMP). */
static int ack_refused(struct core *c, struct conn *cn, const struct rmq_publish *p, uint8_t reason)
{
	if (p->qos == 0)
		return 0;
	uint8_t type = p->qos == 1 ? RMQ_PUBACK : RMQ_PUBREC;
	if (rmq_ackwin_empty(&mqtt_conn(cn)->acks)) {
		rmq_conn_write_ack(c, cn, type, p->packet_id, reason);
		return 0;
	}
	if (rmq_ackwin_push(&mqtt_conn(cn)->acks, p->packet_id, type, true, reason, NULL))
		return protocol_violation(c, cn, RMQ_RC_RECEIVE_MAX_EXCEEDED);
	rmq_publish_ackwin_flush(c, cn);
	return 0;
}

int rmq_mqtt_on_publish(struct core *c, struct conn *cn, struct rmq_publish *p)
{
	struct session *s = mqtt_conn(cn)->sess;
	const struct rmq_config *cfg = &c->b->cfg;
	c->st.msgs_in++;
	if (cn->version == RMQ_V5) {
		int rc = rmq_topic_alias_apply(cn, p);
		if (rc)
			return protocol_violation(c, cn, (uint8_t)rc);
	}
	if (p->qos == 2 && rmq_session_qos2_seen(s, p->packet_id)) {
		/* [MQTT-4.3.3] a resent QoS 2 PUBLISH is acknowledged again but not delivered again. */
		rmq_conn_write_ack(c, cn, RMQ_PUBREC, p->packet_id, 0);
		return 0;
	}
	if (p->qos && cn->version == RMQ_V5 && mqtt_conn(cn)->acks.count + s->nqos2_in >= cfg->max_inflight)
		return protocol_violation(c, cn, RMQ_RC_RECEIVE_MAX_EXCEEDED);  /* [MQTT-3.3.4-7] */
	if (p->qos && mqtt_conn(cn)->acks.count >= cfg->max_inflight) {
		/* 3.x has no receive maximum: a deep pipeline is legal, so stop reading until Kafka
		 * acknowledges (the window empties only through completions, never through input). */
		rmq_conn_pause(c, cn, PAUSE_WINDOW);
		c->st.msgs_in--;
		return 1;
	}

	if (cn->version == RMQ_V5 && rmq_proto_check_payload_format(p) != RMQ_OK) {
		/* [MQTT-3.3.2-4] not delivered; QoS 1/2 get a negative ack, QoS 0 has none to get. */
		c->st.payload_format_invalid++;
		if (p->qos == 0)
			return protocol_violation(c, cn, RMQ_RC_PAYLOAD_FORMAT_INVALID);
		return ack_refused(c, cn, p, RMQ_RC_PAYLOAD_FORMAT_INVALID);
	}
	if (acl_denies_publish(c, cn, p))
		return ack_refused(c, cn, p, rmq_security_publish_denied_code(cn->version));

	int routed = 0;
	uint64_t ck = rmq_cookie_make(cn, rmq_ackwin_next_seq(&mqtt_conn(cn)->acks));
	if (c->bc) {
		struct rmq_bridge_msg bm = {p, {s->client_id, s->id_len}, {mqtt_conn(cn)->username, mqtt_conn(cn)->username_len},
					    cn->version};
		routed = c->kspool && p->qos ? rmq_kspool_publish(c, &bm, ck) : rmq_bridge_publish(c->bc, &bm, ck);
		if (routed == -ENOBUFS) {
			/* Producer queue full: stop reading this connection, retry this PUBLISH later. */
			c->st.bridge_enobufs++;
			c->st.msgs_in--;
			rmq_conn_pause(c, cn, PAUSE_BRIDGE);
			return 1;
		}
		if (routed < 0) {
			c->st.bridge_fail++;
			VLOG(c, "ringmq: core %d: bridge refused a message: %s\n", c->id, strerror(-routed));
		}
	}

	/* --data-dir with fsync: what this publish stores (retained, queued or inflight for a persistent session,
	 * here or on another core) holds its ack until durable; one branch when off. */
	bool durable = p->qos && rmq_persist_waits(c);
	if (durable)
		rmq_persist_pub_begin(c, ck);
	/* Every completion promised for ck holds this connection's slot until it came back (mqtt/cookie.h); one
	 * more hold guards the fan-out, which may close this connection before the log's holds are counted. */
	rmq_cookie_hold(c, cn, (uint32_t)(routed > 0) + 1);
	struct pubctx x = {c, p, NULL, false, s, 0, false};
	publish_ctx(c, &x);
	bool active = cn->state == CS_ACTIVE && p->qos;
	bool qos2_full = active && p->qos == 2 && rmq_session_qos2_add(c, s, p->packet_id);
	bool log_failed = false;
	uint16_t held = durable ? rmq_persist_pub_end(c, &log_failed) : 0;  /* a closed connection's find nothing */
	rmq_cookie_hold(c, cn, held);
	rmq_conn_unhold(c, cn->slot);  /* the guard */
	if (!active)
		return 0;
	uint8_t type = p->qos == 1 ? RMQ_PUBACK : RMQ_PUBREC;
	if (qos2_full)
		return protocol_violation(c, cn, RMQ_RC_RECEIVE_MAX_EXCEEDED);
	uint8_t reason = routed < 0 || log_failed ? RMQ_RC_UNSPECIFIED : 0;
	if (!reason && cn->version == RMQ_V5 && !x.matched && routed == 0 &&
	    !(c->bc && rmq_bridge_matches(c->bc, p)))
		reason = RMQ_RC_NO_MATCHING_SUBSCRIBERS;  /* v5 3.4.2.1: accepted, but nobody takes it */
	uint16_t pending = (uint16_t)(routed > 0) + held;
	if (pending || !rmq_ackwin_empty(&mqtt_conn(cn)->acks) || reason) {
		/* Keep arrival order: this ack waits behind any still waiting for Kafka or the disk. */
		if (rmq_ackwin_push_n(&mqtt_conn(cn)->acks, p->packet_id, type, pending, reason, NULL))
			return protocol_violation(c, cn, RMQ_RC_RECEIVE_MAX_EXCEEDED);
		rmq_ackwin_stamp_last(&mqtt_conn(cn)->acks, (uint32_t)c->now_ms);
		rmq_publish_ackwin_flush(c, cn);
		return 0;
	}
	rmq_ackwin_observe(c->st.ack_hist, &c->st.ack_sum_ms, 0);
	rmq_conn_write_ack(c, cn, type, p->packet_id, 0);
	return 0;
}

/* An ack of the wrong type for the QoS of the PUBLISH it names: the client is broken, and ignoring it would
 * leave the message inflight, slowly filling its window. Ended as a protocol error (as mosquitto does),
 * counted in rejected/wrong_ack, logged once per core so that a broken fleet does not flood the log. */
static int wrong_ack(struct core *c, struct conn *cn, uint8_t type, uint16_t pid)
{
	c->st.rej_wrong_ack++;
	if (!c->mq->logged_wrong_ack) {
		c->mq->logged_wrong_ack = true;
		fprintf(stderr, "ringmq: core %d: client '%.*s' answered PUBLISH %u with packet type %u of the wrong "
			"QoS: protocol error, disconnected (logged once; counted in rejected/wrong_ack)\n",
			c->id, (int)mqtt_conn(cn)->sess->id_len, (const char *)mqtt_conn(cn)->sess->client_id, pid, type);
	}
	rmq_conn_disconnect(c, cn, RMQ_RC_PROTOCOL_ERROR);
	return -EPROTO;
}

int rmq_mqtt_on_ack(struct core *c, struct conn *cn, uint8_t type, const struct rmq_ack *a)
{
	struct session *s = mqtt_conn(cn)->sess;
	int rc = 0;
	switch (type) {
	case RMQ_PUBACK:
		rc = rmq_session_on_puback(c, s, a->packet_id);
		break;
	case RMQ_PUBREC:
		rc = rmq_session_on_pubrec(c, s, a->packet_id, a->reason);
		break;
	case RMQ_PUBCOMP:
		rc = rmq_session_on_pubcomp(c, s, a->packet_id);
		break;
	case RMQ_PUBREL: {
		uint64_t ck = rmq_cookie_make(cn, a->packet_id);
		rmq_persist_ack_begin(c, ck, RMQ_PUBCOMP);
		uint8_t reason = rmq_session_qos2_del(c, s, a->packet_id) ? RMQ_RC_PACKET_ID_NOT_FOUND : 0;
		if (rmq_persist_ack_end(c)) {
			rmq_cookie_hold(c, cn, 1);
			return 0;  /* the PUBCOMP leaves once the id's release is durable (rmq_session_ack_durable) */
		}
		rmq_conn_write_ack(c, cn, RMQ_PUBCOMP, a->packet_id, cn->version == RMQ_V5 ? reason : 0);
		return 0;
	}
	}
	return rc == -EPROTO ? wrong_ack(c, cn, type, a->packet_id) : 0;
}
