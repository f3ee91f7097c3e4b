/* CONNECT: owner-core handoff, session takeover, clean start / session present, assigned client ids,
 * keep-alive, will, CONNACK. Reactor thread (the accepting core, then the owner core). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "index/msg.h"
#include "io/reactor.h"
#include "io/xport.h"
#include "mqtt/mqtt.h"
#include "security/security.h"
#include "store/persist.h"
#include "io/proxy_proto.h"

static int owner_of(const struct core *c, const uint8_t *id, size_t len)
{
	return (int)(XXH3_64bits(id, len) % (uint64_t)c->b->ncores);
}

/* An assigned id that hashes to this very core, so the client needs no handoff now or later. */
static size_t assign_id(struct core *c, char *buf, size_t cap)
{
	size_t n = 0;
	for (int tries = 0; tries < 1024; tries++) {
		n = (size_t)snprintf(buf, cap, "ringmq-%d-%llx-%llx", c->id, (unsigned long long)c->now_ms,
				     (unsigned long long)++c->mq->assign_seq);
		if (owner_of(c, (const uint8_t *)buf, n) == c->id)
			break;
	}
	return n;
}

/* -E2BIG: over the client's Maximum Packet Size, not sent (rmq_conn_write_packet). */
static int write_connack(struct core *c, struct conn *cn, bool present, uint8_t reason,
			 const char *assigned, size_t alen, uint16_t server_ka)
{
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_CONNACK;
	p.u.connack.session_present = present;
	p.u.connack.reason = reason;
	if (cn->version == RMQ_V5 && reason == 0) {
		struct rmq_props *r = &p.u.connack.props;
		const struct rmq_config *cfg = &c->b->cfg;
		r->present |= RMQ_PBIT(RMQ_PROP_RECEIVE_MAX) | RMQ_PBIT(RMQ_PROP_MAX_PACKET_SIZE) |
			      RMQ_PBIT(RMQ_PROP_SHARED_AVAILABLE) | RMQ_PBIT(RMQ_PROP_SUB_ID_AVAILABLE);
		r->receive_max = (uint16_t)cfg->max_inflight;
		r->max_packet_size = cfg->max_packet_size;
		r->shared_available = 1;
		r->sub_id_available = 1;
		r->present |= RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS_MAX);
		r->topic_alias_max = RMQ_TOPIC_ALIAS_MAX;
		if (assigned) {
			r->present |= RMQ_PBIT(RMQ_PROP_ASSIGNED_CLIENT_ID);
			r->assigned_client_id = (struct rmq_str){(const uint8_t *)assigned, (uint32_t)alen};
		}
		if (server_ka) {
			r->present |= RMQ_PBIT(RMQ_PROP_SERVER_KEEP_ALIVE);
			r->server_keep_alive = server_ka;
		}
	}
	return rmq_conn_write_packet(c, cn, &p);
}

/* Takes the old connection of this client id off its session: v5 gets DISCONNECT 0x8E ([MQTT-3.1.4-3]).
 * Its will, by the old connection's protocol:
 * - 3.1.1: published, as for every connection closed without DISCONNECT ([MQTT-3.1.2-8] has no exception;
 *   mosquitto withholds it when the session lives on, which the 3.1.1 text does not allow).
 * - v5: published when the session ends here, at once even with a Will Delay (3.1.2.5: "until the Will Delay
 *   Interval has passed or the Session ends"); not published when the session lives on, since a new
 *   connection for the client id was opened before any delay elapsed ([MQTT-3.1.2-8], as mosquitto does). */
static void take_over(struct core *c, struct session *s, bool session_ends)
{
	struct conn *old = s->conn;
	s->conn = NULL;
	mqtt_conn(old)->sess = NULL;
	if (session_ends) {
		mqtt_conn(old)->will_delay_s = 0;
	} else if (old->version == RMQ_V5 && mqtt_conn(old)->will) {
		rmq_msg_unref(mqtt_conn(old)->will);
		mqtt_conn(old)->will = NULL;
	}
	c->st.takeovers++;
	VLOG(c, "ringmq: core %d: session taken over\n", c->id);
	rmq_conn_disconnect(c, old, RMQ_RC_SESSION_TAKEN_OVER);
}

static int connect_accept(struct core *c, struct conn *cn, const struct rmq_connect *ck, const uint8_t *id,
			  size_t idlen, bool assigned)
{
	const struct rmq_config *cfg = &c->b->cfg;
	cn->version = ck->version;
	mqtt_conn(cn)->client_recv_max = 65535;
	if (ck->version == RMQ_V5) {
		if (ck->props.present & RMQ_PBIT(RMQ_PROP_RECEIVE_MAX))
			mqtt_conn(cn)->client_recv_max = ck->props.receive_max;
		if (ck->props.present & RMQ_PBIT(RMQ_PROP_MAX_PACKET_SIZE))
			cn->client_max_packet = ck->props.max_packet_size;
		if ((ck->props.present & RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS_MAX)) && ck->props.topic_alias_max)
			rmq_topic_alias_out_init(cn, ck->props.topic_alias_max);  /* -ENOMEM: no aliases, no harm */
	}
	uint16_t ka = ck->keep_alive, server_ka = 0;
	if (ck->version == RMQ_V5 && (ka > cfg->max_keepalive || (ka == 0 && cfg->max_keepalive < 65535))) {
		/* v5 lets the server lower it (Server Keep Alive), also from "never" (0) when the operator
		 * set a bound: dead mobile links are then noticed. 3.x clients keep what they asked for. */
		ka = (uint16_t)cfg->max_keepalive;
		server_ka = ka;
	}
	cn->ka_ms = (uint32_t)ka * 1500u;  /* [MQTT-3.1.2-24] one and a half times the keep-alive */

	struct session *s = rmq_session_get(c, id, idlen);
	/* The old session ends with a clean start, and also when it was itself clean (3.x CleanSession=1, v5
	 * Session Expiry 0): it lasted only as long as its connection, which ends now, so the new
	 * connection starts empty with Session Present 0 ([MQTT-3.1.2-6], [MQTT-3.2.2-3], v5 3.1.2.11.2). */
	bool session_ends = s && (ck->clean_start || (s->conn && s->clean));
	if (s && s->conn)
		take_over(c, s, session_ends);
	if (session_ends) {
		rmq_session_destroy(c, s);
		s = NULL;
	}
	bool present = s != NULL;
	if (!s) {
		s = rmq_session_create(c, id, idlen);
		if (!s) {
			write_connack(c, cn, false, cn->version == RMQ_V5 ? RMQ_RC_SERVER_UNAVAILABLE
									 : RMQ_V3_SERVER_UNAVAILABLE,
				      NULL, 0, 0);
			rmq_conn_close(c, cn, false);
			return -ENOMEM;
		}
	}
	s->version = ck->version;
	if (ck->version == RMQ_V5) {
		s->expiry = (ck->props.present & RMQ_PBIT(RMQ_PROP_SESSION_EXPIRY)) ? ck->props.session_expiry : 0;
		s->clean = s->expiry == 0;
	} else {
		s->expiry = UINT32_MAX;  /* 3.x persistent sessions live until a clean session replaces them */
		s->clean = ck->clean_start;
	}
	rmq_wheel_del(&c->wheel, &s->expiry_timer);
	rmq_session_expiry_on_resume(c, s);
	s->conn = cn;
	mqtt_conn(cn)->sess = s;
	/* The username ACLs and the bridge see: the verified client certificate's name (mTLS) wins over the
	 * CONNECT's, as in rmq_security_username; the transport came along on a handoff, so the owner core
	 * reads it here again. */
	char cert[256];
	const uint8_t *user = ck->has_username ? ck->username.p : NULL;
	size_t user_len = ck->has_username ? ck->username.len : 0;
	int cert_len = cn->xp ? rmq_xport_peer_name(cn->xp, cert, sizeof(cert)) : -ENOENT;
	if (cert_len > 0) {
		user = (const uint8_t *)cert;
		user_len = (size_t)cert_len;
	}
	/* Per-delivery ACL checks run for offline sessions too: keep the username with the session. */
	free(s->acl_user);
	s->acl_user = NULL;
	s->acl_user_len = 0;
	if (c->b->sec->acl && user_len && (s->acl_user = malloc(user_len))) {
		memcpy(s->acl_user, user, user_len);
		s->acl_user_len = (uint16_t)user_len;
	}
	if (c->persist)
		rmq_persist_session_connected(c, s);  /* after acl_user: the log keeps it for offline ACL checks */
	if (ck->will) {
		struct rmq_publish wp;
		memset(&wp, 0, sizeof(wp));
		wp.qos = ck->will_qos;
		wp.retain = ck->will_retain;
		wp.topic = ck->will_topic;
		wp.payload = ck->will_payload;
		wp.props = ck->will_props;
		/* Will Delay belongs to the CONNECT, not to the PUBLISH the will becomes. */
		wp.props.present &= ~RMQ_PBIT(RMQ_PROP_WILL_DELAY);
		mqtt_conn(cn)->will = rmq_msg_new(&wp);
		if (ck->version == RMQ_V5 && (ck->will_props.present & RMQ_PBIT(RMQ_PROP_WILL_DELAY)))
			mqtt_conn(cn)->will_delay_s = ck->will_props.will_delay;
		if (mqtt_conn(cn)->will)
			mqtt_conn(cn)->will->origin_core = (uint16_t)c->id;
	}
	if (user_len && (mqtt_conn(cn)->username = malloc(user_len))) {
		memcpy(mqtt_conn(cn)->username, user, user_len);
		mqtt_conn(cn)->username_len = (uint16_t)user_len;
	}
	cn->state = CS_ACTIVE;
	if (write_connack(c, cn, present, 0, assigned ? (const char *)id : NULL, idlen, server_ka) == -E2BIG) {
		/* [MQTT-3.1.2-24] a CONNACK the client cannot take: the connection ends without one (the
		 * session stays as after any close; no will, the client did nothing wrong). */
		rmq_conn_close(c, cn, false);
		return -E2BIG;
	}
	rmq_conn_touch_keepalive(c, cn);
	VLOG(c, "ringmq: core %d: client '%.*s' connected (v%d, present %d)\n", c->id, (int)idlen, id,
	     ck->version, present);
	if (cn->peer && c->b->cfg.verbose) {
		char a[64];
		rmq_proxy_addr_str(cn->peer, a, sizeof(a));
		fprintf(stderr, "ringmq: core %d: client '%.*s' from %s (PROXY header)\n", c->id, (int)idlen, id, a);
	}
	if (present)
		rmq_session_resume(c, s);
	return 0;
}

/* Authentication runs on the accepting core, before any handoff: a refused login costs no cross-core
 * traffic, and this core's failed-login limiter sees the source address. Returns true if refused. */
static bool login_refused(struct core *c, struct conn *cn, const struct rmq_connect *ck)
{
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	struct rmq_security_login in = {.ck = ck, .now_ms = c->now_ms};
	char cert[256];
	if (cn->xp && rmq_xport_peer_name(cn->xp, cert, sizeof(cert)) > 0)
		in.cert_name = cert;
	if (c->b->sec->auth && cn->peer)
		in.peer = &cn->peer->sa;  /* --proxy-protocol: the car, not the load balancer */
	else if (c->b->sec->auth && getpeername(cn->fd, (struct sockaddr *)&peer, &plen) == 0)
		in.peer = (struct sockaddr *)&peer;
	enum rmq_security_verdict v = rmq_security_connect(c->b->sec, c->mq->auth_rl, &in);
	if (v == RMQ_SEC_OK)
		return false;
	c->st.login_refused++;
	VLOG(c, "ringmq: core %d: login refused (%d) for client '%.*s'\n", c->id, (int)v, (int)ck->client_id.len,
	     (const char *)ck->client_id.p);
	cn->version = ck->version;
	write_connack(c, cn, false, rmq_security_connack_code(v, ck->version), NULL, 0, 0);
	rmq_conn_close(c, cn, false);
	return true;
}

int rmq_mqtt_on_connect(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len,
		    const struct rmq_connect *ck)
{
	if (ck->version == RMQ_V5 && (ck->props.present & RMQ_PBIT(RMQ_PROP_MAX_PACKET_SIZE)))
		cn->client_max_packet = ck->props.max_packet_size;  /* a refusing CONNACK obeys it too */
	if (ck->version == RMQ_V5 && (ck->props.present & RMQ_PBIT(RMQ_PROP_AUTH_METHOD))) {
		/* [MQTT-4.12.0-1] no enhanced authentication method is supported yet: 0x8C. */
		cn->version = ck->version;
		c->st.login_refused++;
		write_connack(c, cn, false, RMQ_RC_BAD_AUTH_METHOD, NULL, 0, 0);
		rmq_conn_close(c, cn, false);
		return -EACCES;
	}
	if (login_refused(c, cn, ck))
		return -EACCES;
	const uint8_t *id = ck->client_id.p;
	size_t idlen = ck->client_id.len;
	char idbuf[64];
	bool assigned = false;
	if (idlen == 0) {
		if (ck->version != RMQ_V5 && !ck->clean_start) {
			/* [MQTT-3.1.3-8] 3.1.1: an empty id needs clean session; return code 0x02. */
			cn->version = ck->version;
			write_connack(c, cn, false, RMQ_V3_ID_REJECTED, NULL, 0, 0);
			rmq_conn_close(c, cn, false);
			return -EINVAL;
		}
		idlen = assign_id(c, idbuf, sizeof(idbuf));
		id = (const uint8_t *)idbuf;
		assigned = ck->version == RMQ_V5;
	}
	int owner = owner_of(c, id, idlen);
	if (owner != c->id) {
		/* Not ours: stop reading, then hand fd, CONNECT and unread bytes to the owner (from
		 * rmq_handoff_send once the recv has ended), so the session lives on exactly one core. */
		mqtt_conn(cn)->connect_raw = malloc(len);
		if (!mqtt_conn(cn)->connect_raw) {
			rmq_conn_close(c, cn, false);
			return -ENOMEM;
		}
		memcpy(mqtt_conn(cn)->connect_raw, pkt, len);
		mqtt_conn(cn)->connect_len = (uint32_t)len;
		mqtt_conn(cn)->handoff_to = owner;
		cn->state = CS_HANDOFF;
		rmq_conn_pause(c, cn, PAUSE_HANDOFF);
		return 0;
	}
	return connect_accept(c, cn, ck, id, idlen, assigned);
}

/* Moves a connection whose recv has ended to its owner core. The parsed CONNECT travels as its raw
 * bytes and is decoded again there: the decoded struct is nothing but views into the packet, so copying
 * the bytes is the deep copy (one memcpy, no pointer fix-ups). The fd is a plain process-wide descriptor
 * (no fixed files), so it needs no MSG_RING fd passing, just the queue entry. */
void rmq_handoff_send(struct core *c, struct conn *cn)
{
	struct handoff *h = malloc(sizeof(*h) + mqtt_conn(cn)->connect_len + cn->rlen);
	if (!h) {
		cn->state = CS_NEW;
		rmq_conn_close(c, cn, false);
		return;
	}
	h->fd = cn->fd;
	/* The TLS/WebSocket state moves with the socket. An SSL object is plain heap memory with no thread
	 * affinity: only one thread may use it at a time, which holds since this core never touches it again
	 * after the push, and the queue's release/acquire publishes it whole to the owner core. Moving it is
	 * far cheaper than the alternative (proxying every byte through the accepting core forever). */
	h->xp = cn->xp;
	cn->xp = NULL;
	h->peer = cn->peer;  /* the owner core logs the car's address too */
	cn->peer = NULL;
	h->connect_len = mqtt_conn(cn)->connect_len;
	h->unread_len = cn->rlen;
	memcpy(h->data, mqtt_conn(cn)->connect_raw, mqtt_conn(cn)->connect_len);
	if (cn->rlen)
		memcpy(h->data + mqtt_conn(cn)->connect_len, cn->rbuf, cn->rlen);
	cn->fd = -1;
	cn->state = CS_CLOSING;
	c->st.handoffs_out++;
	rmq_core_xpush(c, mqtt_conn(cn)->handoff_to, XK_HANDOFF, 0, h);
	rmq_conn_release(c, cn);
}

void rmq_handoff_receive(struct core *c, struct handoff *h)
{
	struct conn *cn = c->stopping ? NULL : rmq_conn_new(c, h->fd);
	if (!cn) {
		rmq_xport_free(h->xp);
		free(h->peer);
		close(h->fd);
		atomic_fetch_sub_explicit(&c->b->nconns, 1, memory_order_relaxed);
		free(h);
		return;
	}
	c->st.handoffs_in++;
	cn->xp = h->xp;
	cn->peer = h->peer;
	struct rmq_packet p;
	struct rmq_decode_ctx ctx = {.version = RMQ_V311, .role = RMQ_ROLE_SERVER};
	/* Decoded once already by the accepting core; the views now point into h->data. */
	if (rmq_proto_decode(h->data, h->connect_len, &ctx, &p) != RMQ_OK || p.type != RMQ_CONNECT) {
		rmq_conn_close(c, cn, false);
		free(h);
		return;
	}
	const struct rmq_connect *ck = &p.u.connect;
	connect_accept(c, cn, ck, ck->client_id.p, ck->client_id.len, false);
	if (cn->state == CS_ACTIVE && h->unread_len) {
		cn->rbuf = malloc(h->unread_len);
		if (cn->rbuf) {
			memcpy(cn->rbuf, h->data + h->connect_len, h->unread_len);
			cn->rlen = cn->rcap = h->unread_len;
			rmq_conn_process_input(c, cn);
		}
	}
	free(h);
	if (cn->state == CS_ACTIVE && !cn->pause)
		rmq_conn_arm_recv(c, cn);
}
