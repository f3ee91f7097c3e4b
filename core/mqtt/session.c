/* Sessions: client id map, subscriptions list, outbound QoS 1/2 inflight window and offline queue, inbound QoS 2
 * ids, redelivery with DUP on resume. The only code that changes a live session's state: each change of a
 * persistent session is logged here (--data-dir). Owner core's reactor thread only. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "index/msg.h"
#include "io/reactor.h"
#include "security/security.h"
#include "store/persist.h"
#include "mqtt/cookie.h"

/* Changes of this session go to the state log (--data-dir, persistent session). */
static inline bool logged(const struct core *c, const struct session *s)
{
	return c->persist && s->durable;
}

struct session *rmq_session_get(struct core *c, const uint8_t *id, size_t len)
{
	return rmq_strmap_get(&c->sessions, id, len);
}

struct session *rmq_session_create(struct core *c, const uint8_t *id, size_t len)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->client_id = malloc(len ? len : 1);
	if (!s->client_id || rmq_strmap_put(&c->sessions, id, len, s)) {
		free(s->client_id);
		free(s);
		return NULL;
	}
	memcpy(s->client_id, id, len);
	s->id_len = (uint16_t)len;
	s->next_pid = 1;
	s->expiry_timer.kind = TK_SESSION;
	return s;
}

void rmq_session_destroy(struct core *c, struct session *s)
{
	if (logged(c, s))
		rmq_persist_session_del(c, s);
	rmq_session_expiry_free(c, s);
	rmq_strmap_del(&c->sessions, s->client_id, s->id_len);
	rmq_wheel_del(&c->wheel, &s->expiry_timer);
	if (s->conn) {
		mqtt_conn(s->conn)->sess = NULL;
		s->conn = NULL;
	}
	rmq_routes_remove_session(c, s);
	for (uint32_t i = 0; i < s->nsubs; i++)
		free(s->subs[i].filter);
	free(s->subs);
	for (uint32_t i = 0; i < s->ninflight; i++)
		if (s->inflight[i].m)
			rmq_msg_unref(s->inflight[i].m);
	for (uint32_t i = 0; i < s->ninflight; i++)
		free(s->inflight[i].ids);
	free(s->inflight);
	for (uint32_t i = 0; i < s->qcount; i++) {
		rmq_msg_unref(s->queue[(s->qhead + i) % s->qcap].m);
		free(s->queue[(s->qhead + i) % s->qcap].ids);
	}
	free(s->queue);
	free(s->qos2_in);
	free(s->acl_user);
	free(s->client_id);
	free(s);
}

void rmq_session_detached(struct core *c, struct session *s)
{
	if (s->clean) {
		rmq_session_destroy(c, s);
		return;
	}
	/* Offline sessions hold memory (subscriptions, queued messages): a v5 client bounds that with its
	 * expiry; 3.x sessions (and v5 0xFFFFFFFF) stay until replaced. */
	if (s->expiry != UINT32_MAX)
		rmq_wheel_add(&c->wheel, &s->expiry_timer, c->now_ms + (uint64_t)s->expiry * 1000);
}

/* ---- subscriptions list (what to remove from the trie when the session ends) ---------------- */

int rmq_session_sub_add(struct session *s, const uint8_t *f, uint16_t len, uint8_t options, uint32_t sub_id)
{
	for (uint32_t i = 0; i < s->nsubs; i++)
		if (s->subs[i].len == len && !memcmp(s->subs[i].filter, f, len)) {
			s->subs[i].options = options;
			s->subs[i].sub_id = sub_id;
			return 0;
		}
	if (s->nsubs == s->subs_cap) {
		uint32_t cap = s->subs_cap ? s->subs_cap * 2 : 4;
		struct sub *n = realloc(s->subs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->subs = n;
		s->subs_cap = cap;
	}
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, f, len);
	s->subs[s->nsubs++] = (struct sub){copy, len, options, sub_id};
	return 1;
}

bool rmq_session_sub_del(struct session *s, const uint8_t *f, uint16_t len)
{
	for (uint32_t i = 0; i < s->nsubs; i++)
		if (s->subs[i].len == len && !memcmp(s->subs[i].filter, f, len)) {
			free(s->subs[i].filter);
			s->subs[i] = s->subs[--s->nsubs];
			return true;
		}
	return false;
}

int rmq_session_subscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len, uint8_t options,
		      uint32_t sub_id)
{
	int rc = rmq_session_sub_add(s, f, len, options, sub_id);
	if (rc >= 0 && logged(c, s))
		rmq_persist_sub_add(c, s, f, len, options, sub_id);
	return rc;
}

bool rmq_session_unsubscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len)
{
	if (!rmq_session_sub_del(s, f, len))
		return false;
	if (logged(c, s))
		rmq_persist_sub_del(c, s, f, len);
	return true;
}

/* ---- inbound QoS 2 ids awaiting PUBREL ------------------------------------------------------- */

bool rmq_session_qos2_seen(const struct session *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->nqos2_in; i++)
		if (s->qos2_in[i] == pid)
			return true;
	return false;
}

/* Bounded by receive maximum in v5, by the 16-bit id space in 3.x. */
int rmq_session_qos2_add(struct core *c, struct session *s, uint16_t pid)
{
	if (s->nqos2_in == s->qos2_cap) {
		uint32_t cap = s->qos2_cap ? s->qos2_cap * 2 : 16;
		if (cap > 65536)
			return -ENOSPC;
		uint16_t *n = realloc(s->qos2_in, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->qos2_in = n;
		s->qos2_cap = cap;
	}
	s->qos2_in[s->nqos2_in++] = pid;
	assert(s->nqos2_in <= s->qos2_cap);
	if (logged(c, s))
		rmq_persist_pid(c, s, RMQ_PR_QOS2_ADD, pid);
	return 0;
}

int rmq_session_qos2_del(struct core *c, struct session *s, uint16_t pid)
{
	int rc = -ENOENT;
	for (uint32_t i = 0; i < s->nqos2_in; i++)
		if (s->qos2_in[i] == pid) {
			s->qos2_in[i] = s->qos2_in[--s->nqos2_in];
			rc = 0;
			if (logged(c, s))
				rmq_persist_pid(c, s, RMQ_PR_QOS2_DEL, pid);
			break;
		}
	if (!s->nqos2_in) {
		free(s->qos2_in);
		s->qos2_in = NULL;
		s->qos2_cap = 0;
	}
	return rc;
}

/* ---- outbound ------------------------------------------------------------------------------ */

uint32_t rmq_session_inflight_cap(struct core *c, struct session *s)
{
	uint32_t cap = c->b->cfg.max_inflight;
	if (s->conn && mqtt_conn(s->conn)->client_recv_max && mqtt_conn(s->conn)->client_recv_max < cap)
		cap = mqtt_conn(s->conn)->client_recv_max;
	return cap;
}

/* A PUBLISH to a client that takes topic aliases: the alias alone (a zero-length topic name, MQTT 5
 * 3.3.2.3.4) once established, topic and alias the first time; the mapping counts only once the packet is
 * staged, so a dropped packet (too large, slow consumer) never leaves the client with an alias it does not know. */
static int write_aliased(struct core *c, struct conn *cn, struct rmq_packet *p)
{
	struct rmq_publish *pub = &p->u.publish;
	struct rmq_str topic = pub->topic;
	bool is_new;
	uint16_t alias = rmq_topic_alias_out_find(cn, &topic, &is_new);
	if (alias) {
		pub->props.present |= RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS);
		pub->props.topic_alias = alias;
		if (!is_new)
			pub->topic = (struct rmq_str){(const uint8_t *)"", 0};
	}
	int rc = rmq_conn_write_packet(c, cn, p);
	if (rc)
		return rc;
	c->st.msgs_out++;
	if (alias && is_new)
		rmq_topic_alias_out_commit(cn, &topic);
	return 0;
}

int rmq_session_write_publish(struct core *c, struct conn *cn, const struct rmq_publish *src, uint8_t qos,
			  uint16_t pid, bool dup, bool retain, const struct out_extra *ex)
{
	struct rmq_packet p;
	p.type = RMQ_PUBLISH;
	p.flags = 0;
	p.u.publish = *src;
	p.u.publish.qos = qos;
	p.u.publish.packet_id = qos ? pid : 0;
	p.u.publish.dup = dup;
	p.u.publish.retain = retain;
	p.u.publish.props.present &= ~(RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS) | RMQ_PBIT(RMQ_PROP_SUB_ID));
	p.u.publish.props.sub_id_count = 0;
	if (ex && ex->expire_at_ms) {
		if (ex->expire_at_ms <= c->now_ms) {
			c->st.expired++;
			return -ETIME;
		}
		/* [MQTT-3.3.2-6] forward the interval that is left (rounded up: never 0 while alive). */
		p.u.publish.props.present |= RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY);
		p.u.publish.props.message_expiry = (uint32_t)((ex->expire_at_ms - c->now_ms + 999) / 1000);
	}
	if (ex && ex->nids && cn->version == RMQ_V5) {
		/* [MQTT-3.3.4-3] every matching subscription's identifier, on this delivery. */
		uint32_t n = ex->nids < RMQ_MAX_SUB_IDS ? ex->nids : RMQ_MAX_SUB_IDS;
		memcpy(p.u.publish.props.sub_ids, ex->ids, n * sizeof(uint32_t));
		p.u.publish.props.sub_id_count = (uint8_t)n;
		p.u.publish.props.present |= RMQ_PBIT(RMQ_PROP_SUB_ID);
	}
	if (mqtt_conn(cn)->oaliases)
		return write_aliased(c, cn, &p);
	int rc = rmq_conn_write_packet(c, cn, &p);  /* -E2BIG: over the client's Maximum Packet Size, counted */
	if (rc == 0)
		c->st.msgs_out++;
	return rc;
}

static bool pid_in_use(const struct session *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->ninflight; i++)
		if (s->inflight[i].pid == pid)
			return true;
	return false;
}

static uint16_t next_pid(struct session *s)
{
	for (;;) {
		uint16_t pid = s->next_pid++;
		if (!s->next_pid)
			s->next_pid = 1;
		if (pid && !pid_in_use(s, pid))
			return pid;
	}
}

static bool online(const struct session *s)
{
	return s->conn && s->conn->state == CS_ACTIVE;
}

static struct subids *ids_copy(const uint32_t *ids, uint32_t n)
{
	if (!n)
		return NULL;
	struct subids *d = malloc(sizeof(*d) + n * sizeof(uint32_t));
	if (d) {
		d->n = n;
		memcpy(d->v, ids, n * sizeof(uint32_t));
	}
	return d;
}

static struct out_extra extra_of(const struct rmq_msg *m, const struct subids *ids)
{
	return (struct out_extra){ids ? ids->v : NULL, ids ? ids->n : 0, m ? m->expire_at_ms : 0};
}

/* Sends `m` now as a new inflight message; takes the ref on m and ownership of ids. Returns the window
 * entry, or NULL when the message was dropped instead. */
static struct outmsg *send_inflight(struct core *c, struct session *s, struct rmq_msg *m, uint8_t qos, bool retain,
			  struct subids *ids, uint64_t share_key)
{
	if (!s->inflight) {
		s->inflight = malloc(c->b->cfg.max_inflight * sizeof(*s->inflight));
		if (!s->inflight) {
			rmq_msg_unref(m);
			free(ids);
			return NULL;
		}
	}
	uint16_t pid = next_pid(s);
	struct out_extra ex = extra_of(m, ids);
	int rc = rmq_session_write_publish(c, s->conn, &m->pub, qos, pid, false, retain, &ex);
	if (rc == -E2BIG || rc == -ETIME) {
		/* Too large for this client, or expired while queued: never delivered, counted. */
		rmq_msg_unref(m);
		free(ids);
		return NULL;
	}
	assert(s->ninflight < c->b->cfg.max_inflight);  /* callers check the window (rmq_session_inflight_cap) */
	s->inflight[s->ninflight] = (struct outmsg){m, ids, share_key, pid, qos, OUT_PUBLISH, retain};
	return &s->inflight[s->ninflight++];
}

int rmq_session_queue_append(struct session *s, struct qent q)
{
	if (s->qcount == s->qcap) {
		uint32_t cap = s->qcap ? s->qcap * 2 : 8;
		struct qent *n = malloc(cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		for (uint32_t i = 0; i < s->qcount; i++)
			n[i] = s->queue[(s->qhead + i) % s->qcap];
		free(s->queue);
		s->queue = n;
		s->qcap = cap;
		s->qhead = 0;
	}
	s->queue[(s->qhead + s->qcount++) % s->qcap] = q;
	assert(s->qcount <= s->qcap && s->qhead < s->qcap);
	return 0;
}

/* Drops expired messages at the head of the offline queue (they are counted when dropped). */
static int enqueue(struct core *c, struct session *s, struct rmq_msg *m, uint8_t qos, bool retain,
		   const uint32_t *ids, uint32_t nids, uint64_t share_key)
{
	if (m->expire_at_ms && m->expire_at_ms <= c->now_ms) {
		c->st.expired++;
		return 0;
	}
	if (s->qcount >= c->b->cfg.max_queued) {
		c->st.queue_overflow++;
		return -ENOSPC;
	}
	struct subids *d = ids_copy(ids, nids);
	if (nids && !d)
		return -ENOMEM;
	struct qent q = {rmq_msg_ref(m), d, share_key, qos, retain};
	if (rmq_session_queue_append(s, q)) {
		rmq_msg_unref(m);
		free(d);
		return -ENOMEM;
	}
	if (logged(c, s))
		rmq_persist_queue_push(c, s, &q);
	return 0;
}

/* Only sessions holding a filter that reaches unreadable topics pay for this check. */
static bool acl_may_read(struct core *c, const struct session *s, const struct rmq_publish *p)
{
	struct rmq_acl *acl = c->b->sec->acl;
	if (!acl)
		return true;
	struct rmq_acl_who who = {s->client_id, s->id_len, s->acl_user, s->acl_user_len};
	return rmq_acl_check(acl, &who, p->topic.p, p->topic.len, RMQ_ACL_READ) == 0;
}

void rmq_session_deliver(struct core *c, struct session *s, struct pubctx *x, uint8_t qos, bool retain,
		     const uint32_t *ids, uint32_t nids)
{
	if (s->acl_filtered && !acl_may_read(c, s, x->pub))
		return;
	if (qos == 0) {
		/* QoS 0 is not kept for offline sessions (as mosquitto does by default). */
		if (online(s)) {
			struct out_extra ex = {ids, nids, x->m ? x->m->expire_at_ms : 0};
			rmq_session_write_publish(c, s->conn, x->pub, 0, 0, false, retain, &ex);
		}
		return;
	}
	struct rmq_msg *m = rmq_publish_ctx_msg(x);
	if (!m)
		return;
	if (online(s) && s->qcount == 0 && s->ninflight < rmq_session_inflight_cap(c, s)) {
		struct subids *d = ids_copy(ids, nids);
		if (nids && !d)
			return;
		struct outmsg *o = send_inflight(c, s, rmq_msg_ref(m), qos, retain, d, x->share_key);
		if (o && logged(c, s))
			rmq_persist_inflight_add(c, s, o);
	} else if (!online(s) && m->on_free) {
		/* A Kafka record stored in an offline persistent session's queue counts as handed over (its
		 * offset may be committed, kafka_in.c): the queue keeps a copy without the commit hook. */
		struct rmq_msg *cp = rmq_msg_new(&m->pub);
		if (cp) {
			cp->expire_at_ms = m->expire_at_ms;
			/* --data-dir: the offset waits until the stored copy is durable (persist.c holds m). */
			bool held = logged(c, s) && rmq_persist_hold_begin(c, m);
			enqueue(c, s, cp, qos, retain, ids, nids, x->share_key);
			if (held)
				rmq_persist_hold_end(c, m);
			rmq_msg_unref(cp);
		}
	} else {
		enqueue(c, s, m, qos, retain, ids, nids, x->share_key);
	}
}

void rmq_session_pump(struct core *c, struct session *s)
{
	uint32_t cap = rmq_session_inflight_cap(c, s);
	while (online(s) && s->qcount && s->ninflight < cap) {
		assert(s->qhead < s->qcap);
		struct qent q = s->queue[s->qhead];
		s->qhead = (s->qhead + 1) % s->qcap;
		s->qcount--;
		struct outmsg *o = send_inflight(c, s, q.m, q.qos, q.retain, q.ids, q.share_key);
		if (logged(c, s))
			rmq_persist_queue_pop(c, s, o ? o->pid : 0);
	}
	if (!s->qcount && s->queue && s->qcap > 8) {
		free(s->queue);
		s->queue = NULL;
		s->qcap = s->qhead = 0;
	}
}

void rmq_session_resume(struct core *c, struct session *s)
{
	/* [MQTT-4.4.0-1] resend unacknowledged PUBLISH (with DUP) and PUBREL, in their original order.
	 * A PUBLISH that expired while the client was away is dropped instead ([MQTT-3.3.2-5]). */
	uint32_t keep = 0;
	for (uint32_t i = 0; i < s->ninflight; i++) {
		struct outmsg *o = &s->inflight[i];
		if (o->state == OUT_PUBLISH && o->m->expire_at_ms && o->m->expire_at_ms <= c->now_ms) {
			c->st.expired++;
			if (logged(c, s))
				rmq_persist_pid(c, s, RMQ_PR_INFL_DEL, o->pid);
			rmq_msg_unref(o->m);
			free(o->ids);
			continue;
		}
		s->inflight[keep++] = *o;
	}
	s->ninflight = keep;
	for (uint32_t i = 0; i < s->ninflight && online(s); i++) {
		struct outmsg *o = &s->inflight[i];
		struct out_extra ex = extra_of(o->m, o->ids);
		if (o->state == OUT_PUBLISH)
			rmq_session_write_publish(c, s->conn, &o->m->pub, o->qos, o->pid, true, o->retain, &ex);
		else
			rmq_conn_write_ack(c, s->conn, RMQ_PUBREL, o->pid, 0);
	}
	rmq_session_pump(c, s);
}

static void remove_inflight(struct core *c, struct session *s, int i)
{
	if (logged(c, s))
		rmq_persist_pid(c, s, RMQ_PR_INFL_DEL, s->inflight[i].pid);
	if (s->inflight[i].m)
		rmq_msg_unref(s->inflight[i].m);
	free(s->inflight[i].ids);
	memmove(&s->inflight[i], &s->inflight[i + 1], (s->ninflight - (uint32_t)i - 1) * sizeof(*s->inflight));
	s->ninflight--;
	rmq_session_pump(c, s);
	if (!s->ninflight) {
		/* Idle sessions keep no window memory. */
		free(s->inflight);
		s->inflight = NULL;
	}
}

/* The inflight entry of packet id pid, whatever its state (an id is in use once at most: pid_in_use), or -1. One
 * scan serves each ack: the entry found also says whether the ack's type fits the QoS of its PUBLISH. */
static int find_pid(const struct session *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->ninflight; i++)
		if (s->inflight[i].pid == pid)
			return (int)i;
	return -1;
}

/* A QoS 2 exchange answered with PUBACK, or a QoS 1 PUBLISH with PUBREC/PUBCOMP ([MQTT-4.3.2-2], [MQTT-4.3.3-2]: the
 * receiver's ack must match the QoS) is -EPROTO: the caller ends the connection. */
int rmq_session_on_puback(struct core *c, struct session *s, uint16_t pid)
{
	int i = find_pid(s, pid);
	if (i < 0)
		return -ENOENT;  /* unknown id: nothing to do ([MQTT-4.3.2] acks are idempotent) */
	if (s->inflight[i].qos != 1)
		return -EPROTO;
	assert(s->inflight[i].state == OUT_PUBLISH);
	remove_inflight(c, s, i);
	return 0;
}

int rmq_session_on_pubrec(struct core *c, struct session *s, uint16_t pid, uint8_t reason)
{
	int i = find_pid(s, pid);
	if (i >= 0 && s->inflight[i].qos == 1)
		return -EPROTO;
	if (i < 0 || s->inflight[i].state != OUT_PUBLISH) {
		if (i >= 0) {  /* OUT_PUBREL: our PUBREL was lost, the receiver asks again */
			rmq_conn_write_ack(c, s->conn, RMQ_PUBREL, pid, 0);
			return 0;
		}
		if (s->conn && s->conn->version == RMQ_V5)
			rmq_conn_write_ack(c, s->conn, RMQ_PUBREL, pid, RMQ_RC_PACKET_ID_NOT_FOUND);
		return -ENOENT;
	}
	if (reason >= 0x80) {
		/* v5: the receiver refused it; the exchange ends here. */
		remove_inflight(c, s, i);
		return 0;
	}
	struct outmsg *o = &s->inflight[i];
	rmq_msg_unref(o->m);
	o->m = NULL;
	free(o->ids);
	o->ids = NULL;
	o->state = OUT_PUBREL;
	if (logged(c, s)) {
		uint64_t ck = rmq_cookie_make(s->conn, pid);
		rmq_persist_ack_begin(c, ck, RMQ_PUBREL);
		rmq_persist_pid(c, s, RMQ_PR_INFL_REL, pid);
		if (rmq_persist_ack_end(c)) {
			rmq_cookie_hold(c, s->conn, 1);
			return 0;  /* the PUBREL leaves once the state is durable (rmq_session_ack_durable) */
		}
	}
	rmq_conn_write_ack(c, s->conn, RMQ_PUBREL, pid, 0);
	return 0;
}

void rmq_session_ack_durable(struct core *c, uint8_t type, uint64_t cookie)
{
	uint32_t pid;
	struct conn *cn = rmq_cookie_take(c, cookie, &pid);
	if (!cn || cn->state != CS_ACTIVE || !mqtt_conn(cn)->sess)
		return;  /* gone: a PUBREL is resent when the session resumes, a PUBREL from the client is answered again */
	if (type == RMQ_PUBREL) {
		int i = find_pid(mqtt_conn(cn)->sess, (uint16_t)pid);
		if (i < 0 || mqtt_conn(cn)->sess->inflight[i].state != OUT_PUBREL)
			return;
	}
	rmq_conn_write_ack(c, cn, type, (uint16_t)pid, 0);
}

int rmq_session_on_pubcomp(struct core *c, struct session *s, uint16_t pid)
{
	int i = find_pid(s, pid);
	if (i < 0)
		return -ENOENT;
	if (s->inflight[i].qos == 1)
		return -EPROTO;
	if (s->inflight[i].state != OUT_PUBREL)
		return -ENOENT;
	remove_inflight(c, s, i);
	return 0;
}

/* ---- a leaving $share member's messages ------------------------------------------------------- */

uint32_t rmq_session_take_shared(struct core *c, struct session *s, uint64_t key, struct rmq_msg ***out)
{
	*out = NULL;
	uint32_t n = 0, cap = s->ninflight + s->qcount;
	if (!cap || !(*out = malloc(cap * sizeof(**out))))
		return 0;
	uint32_t keep = 0;
	for (uint32_t i = 0; i < s->ninflight; i++) {
		struct outmsg *o = &s->inflight[i];
		if (o->share_key == key && o->qos == 1 && o->state == OUT_PUBLISH) {
			(*out)[n++] = o->m;
			free(o->ids);
			continue;
		}
		s->inflight[keep++] = *o;
	}
	s->ninflight = keep;
	uint32_t qn = s->qcount, kept = 0;
	for (uint32_t i = 0; i < qn; i++) {
		struct qent q = s->queue[(s->qhead + i) % s->qcap];
		if (q.share_key == key) {
			(*out)[n++] = q.m;
			free(q.ids);
			continue;
		}
		s->queue[(s->qhead + kept++) % s->qcap] = q;
	}
	s->qcount = kept;
	assert(n <= cap);
	/* One record says what left: the replay applies this same selection to the same state. */
	if (n && logged(c, s))
		rmq_persist_share_take(c, s, key);
	return n;
}
