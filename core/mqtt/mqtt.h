/* Room mqtt: packet handlers, sessions (queue, inflight window, QoS 2 state), the ordered ack window and the
 * completions that release acks, wills and expiry, shared subscriptions, limits, Kafka -> MQTT, drain. Reactor thread. */
#ifndef RMQ_CORE_MQTT_MQTT_H
#define RMQ_CORE_MQTT_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/io.h"
#include "io/timer.h"
#include "index/ackwin.h"
#include "ringmq/config.h"
#include "ringmq/proto.h"
#include "store/session.h"

struct broker;
struct rmq_proto_ops;
struct rmq_store_hooks;
struct core;
struct session;
struct handoff;
struct route_upd;
struct pending_sub;
struct qent;
struct rmq_msg;
struct rmq_str;
struct rmq_xport;
struct rmq_shared;
struct rmq_auth_ratelimit;
union rmq_proxy_sa;

/* The mqtt room's per-core state, reached from io's struct core by c->mq (io only holds the pointer). Owned by the
 * core's thread; its route updates (live_upds) are read by other cores until every reactor stopped, so main frees
 * them and the struct (rmq_mqtt_core_free) after joining the threads. */
struct mqtt_core {
	uint32_t match_epoch;        /* one per publish: a session matched twice is delivered once (publish.c) */
	struct session **mscratch;   /* the sessions one publish matched */
	uint32_t mscratch_n, mscratch_cap;
	uint64_t coremask[4];        /* the cores one publish goes to */
	uint32_t routes_inflight;    /* route updates not yet acknowledged by every other core (subscribe.c) */
	struct route_upd *live_upds; /* those updates; other cores hold pointers to them */
	struct rmq_shared *shared;   /* shared subscriptions (shared_sub.c); NULL until the first one */
	struct rmq_auth_ratelimit *auth_rl;  /* failed logins per source address (NULL: no limit) */
	uint64_t assign_seq;         /* for assigned client ids */
	bool logged_wrong_ack;       /* the one log line of st.rej_wrong_ack on this core was written */
};
_Static_assert(sizeof(((struct mqtt_core *)0)->coremask) * 8 >= RMQ_MAX_CORES, "coremask holds every core");

/* proto_ops.c: c->mq for a core (MQTT's start; unit tests), and its release once no other core runs. */
int rmq_mqtt_core_new(struct core *c);
void rmq_mqtt_core_free(struct core *c);

/* A connection moving to its client id's owner core (XK_HANDOFF). */
struct handoff {
	int fd;
	struct rmq_xport *xp;        /* TLS/WebSocket state of the connection (NULL: plain TCP), moves with fd */
	union rmq_proxy_sa *peer;    /* client address from the PROXY header (proxy_proto.h; NULL: none), moves with fd */
	uint32_t connect_len, unread_len;
	uint8_t data[];              /* raw CONNECT packet, then the unread bytes */
};

/* A batch of route changes from one core, acknowledged by every other core before the origin sends
 * its SUBACK. Immutable once pushed, except `pending`, touched only by the origin. */
struct route_upd {
	struct route_upd *next, *prev;   /* origin's list of live updates (freed by main at exit) */
	uint64_t cookie;                 /* SUBSCRIBE waiting for the acks (mqtt/cookie.h); RMQ_COOKIE_NONE: none */
	uint16_t origin;
	uint16_t pending;
	uint32_t count, len;
	uint8_t data[];                  /* count x (u16 len, bytes) */
};

/* ---- a connection as MQTT sees it ----------------------------------------------------------------------------
 * io's struct conn first, then the session, will, ack window, aliases and limits of one client connection: io
 * allocates rmq_mqtt_proto.conn_size bytes for each, and mqtt_conn() finds them from io's pointer by a cast.
 * Touched only by the thread of the core that holds the connection. */
struct mqtt_conn {
	struct conn io;              /* first: a struct conn * of a connection of this protocol is a struct mqtt_conn * */
	struct session *sess;
	struct rmq_msg *will;
	uint16_t client_recv_max;    /* v5 Receive Maximum from the client */
	struct rmq_ackwin acks;
	uint32_t qos_in_unacked;     /* receive maximum accounting */
	uint8_t *username;           /* for the bridge's ${username} key template */
	uint16_t username_len;
	uint8_t *connect_raw;        /* kept while a handoff is pending */
	int handoff_to;
	uint32_t connect_len;
	struct pending_sub *psub;
	struct topic_aliases *aliases;  /* v5 client-to-broker topic aliases (topic_alias.c); NULL until used */
	struct topic_aliases_out *oaliases;  /* v5 broker-to-client aliases (topic_alias_out.c); NULL: none asked */
	uint32_t will_delay_s;       /* v5 Will Delay Interval of this connection's will */
	/* limits.c: control-packet token bucket (milli-tokens) and the start of a packet still arriving; times
	 * are now_ms truncated to 32 bits (differences stay right for 49 days) */
	uint32_t ctl_tokens, ctl_ms, partial_ms;
	bool ctl_started, partial;
};

/* MQTT's state of a connection io handed up (every connection of a core that runs rmq_mqtt_proto), const kept. */
static inline struct mqtt_conn *mqtt_conn_mut(struct conn *cn)
{
	return (struct mqtt_conn *)cn;
}
static inline const struct mqtt_conn *mqtt_conn_const(const struct conn *cn)
{
	return (const struct mqtt_conn *)cn;
}
#define mqtt_conn(cn) _Generic((cn), const struct conn *: mqtt_conn_const, struct conn *: mqtt_conn_mut)(cn)
_Static_assert(offsetof(struct mqtt_conn, io) == 0, "io's struct conn starts the protocol's");

/* ---- proto_ops.c ------------------------------------------------------------------------------------------ */

/* MQTT as the protocol above io (io/io.h): main sets each core's c->proto to this before its thread starts. */
extern const struct rmq_proto_ops rmq_mqtt_proto;
/* What the store calls up (store/store.h): main sets each core's c->store_hooks to this likewise. */
extern const struct rmq_store_hooks rmq_mqtt_store_hooks;

/* ---- drain.c --------------------------------------------------------------------------------------------- */

/* SIGTERM, after the loop and before teardown: stops accepting, sends every v5 client DISCONNECT 0x8B, gives those
 * packets a bounded time to leave, then writes out the state log. */
void rmq_core_drain(struct core *c);

/* ---- dispatch.c -------------------------------------------------------------------------------------------- */

/* One complete packet of cn (fixed header included), from io's framing: decodes it and runs its handler; malformed
 * input gets the spec's answer (v5 DISCONNECT with the reason code, 3.x close). 0 when consumed, 1 when not (cn
 * paused: it is parsed again on resume), < 0 once cn was refused. Only on the core whose slab holds cn. */
int rmq_mqtt_handle(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len);

/* ---- connect.c ------------------------------------------------------------------------------------------- */

/* CONNECT (raw bytes pkt, decoded ck): on a core that does not own the client id, pauses cn for the handoff;
 * on the owner, authenticates, takes over or starts the session, and stages CONNACK. 0, or < 0 once cn is closed. */
int rmq_mqtt_on_connect(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len,
		    const struct rmq_connect *ck);
/* The owner core's side of a handoff (XK_HANDOFF): adopts the fd, its transport and unread bytes, runs CONNECT. */
void rmq_handoff_receive(struct core *c, struct handoff *h);
/* Moves cn, whose receive has ended, to its owner core (fd, transport, raw CONNECT, unread bytes); frees its slot here. */
void rmq_handoff_send(struct core *c, struct conn *cn);

/* ---- publish.c ------------------------------------------------------------------------------------------- */

/* A client's PUBLISH: limits, topic alias, ACL, receive maximum, QoS 2 duplicates; delivery to this core's
 * subscribers, the other cores, Kafka and the retained store; its PUBACK/PUBREC queued in cn's ordered ack window.
 * 0, or < 0 once cn is disconnected. */
int rmq_mqtt_on_publish(struct core *c, struct conn *cn, struct rmq_publish *p);
/* PUBACK/PUBREC/PUBREL/PUBCOMP (type) from the client; an ack of the wrong type for the QoS is a protocol error. */
int rmq_mqtt_on_ack(struct core *c, struct conn *cn, uint8_t type, const struct rmq_ack *a);
/* A message made on this core (a will, a Kafka record, $SYS) delivered as if published by origin_sess (NULL: none);
 * m stays the caller's. */
void rmq_publish_from_core(struct core *c, struct rmq_msg *m, const struct session *origin_sess);
/* XK_PUBLISH from another core: delivers m to this core's subscribers and releases the entry's reference. */
void rmq_publish_deliver_remote(struct core *c, struct rmq_msg *m);
/* XK_RETAIN (or a local retained PUBLISH): stores or clears m as the topic's retained message, newest stamp wins. */
void rmq_publish_retain_store(struct core *c, struct rmq_msg *m);
/* The bridge's delivery report (rmq_bridge_done_fn): err 0, or the reason code the car gets for a refusal. */
void rmq_publish_bridge_done(void *ud, uint64_t cookie, int err, uint8_t reason);
/* Stages every ack at the head of cn's window whose completions all arrived, in arrival order; a 3.x refusal
 * disconnects. Resumes a 3.x publisher paused on a full window. */
void rmq_publish_ackwin_flush(struct core *c, struct conn *cn);
/* Completes the ack-window entry a bridge/persist cookie names (reason 0: success); gone connections ignored. */
void rmq_publish_complete_cookie(struct core *c, uint64_t cookie, uint8_t reason);

/* ---- subscribe.c ----------------------------------------------------------------------------------------- */

/* SUBSCRIBE: local trie and session, route updates to every other core; input pauses until every core (and with
 * --data-dir the state log) acknowledged, then SUBACK and the retained messages. 0, or < 0 once cn is closed. */
int rmq_mqtt_on_subscribe(struct core *c, struct conn *cn, const struct rmq_subscribe *s);
/* UNSUBSCRIBE: removes the filters, withdraws routes no local subscriber needs, stages UNSUBACK. */
int rmq_mqtt_on_unsubscribe(struct core *c, struct conn *cn, const struct rmq_subscribe *s);
/* XK_ROUTE_ADD/DEL from core u->origin: applies the batch to this core's route table and acknowledges it. */
void rmq_routes_on_update(struct core *c, uint32_t kind, struct route_upd *u);
/* XK_ROUTE_ACK: one more core applied u; the last one releases the SUBACK waiting for it and frees u. */
void rmq_routes_on_ack(struct core *c, struct route_upd *u);
void rmq_subscribe_durable(struct core *c, uint64_t cookie);  /* persist.c: a SUBSCRIBE's records are durable */
/* Removes every filter of s from the local trie and withdraws the routes that were only s's. */
void rmq_routes_remove_session(struct core *c, struct session *s);
/* Start-up, after the state log's replay: local tries and every other core's routes for the replayed subs. */
void rmq_routes_restore(struct core *c);
void rmq_routes_keep(struct core *c);  /* teardown, --data-dir: persistent sessions' filters stay announced */
void rmq_subscribe_pending_free(struct pending_sub *ps);

/* ---- session.c: the only code that changes a session; with --data-dir every change is logged here --------- */

/* The session of client id (NULL: none on this core). */
struct session *rmq_session_get(struct core *c, const uint8_t *id, size_t len);
/* A new empty session for client id, in this core's map; NULL when out of memory. */
struct session *rmq_session_create(struct core *c, const uint8_t *id, size_t len);
/* Ends s: its subscriptions and routes, queued and inflight messages, timers and state-log records. */
void rmq_session_destroy(struct core *c, struct session *s);
/* A message on its way to subscribers: the decoded PUBLISH, and the shared copy made only when some
 * delivery has to keep it (QoS 1/2, offline queue, another core, retained store). */
struct pubctx {
	struct core *c;
	const struct rmq_publish *pub;
	struct rmq_msg *m;           /* owned by the context (one ref) once made */
	bool borrowed;               /* m belongs to the caller */
	const struct session *origin;
	uint64_t share_key;          /* set while delivering to a shared-subscription member (else 0) */
	bool matched;                /* some subscription matched: here, on another core or a shared group */
};
struct rmq_msg *rmq_publish_ctx_msg(struct pubctx *x);  /* NULL on ENOMEM */
/* One delivery of x to s at the granted qos: written at once (QoS 0 online, or a free inflight slot), else queued
 * (bounded by --max-queued, overflow counted); QoS 0 is not kept for an offline session. */
void rmq_session_deliver(struct core *c, struct session *s, struct pubctx *x, uint8_t qos, bool retain,
		     const uint32_t *ids, uint32_t nids);
/* s got a connection back: resends unacknowledged PUBLISH (DUP) and PUBREL in order, drops expired ones, pumps. */
void rmq_session_resume(struct core *c, struct session *s);
void rmq_session_detached(struct core *c, struct session *s);  /* connection gone: expire or keep */
/* Moves queued messages into free inflight slots while s is online. */
void rmq_session_pump(struct core *c, struct session *s);
int rmq_session_sub_add(struct session *s, const uint8_t *f, uint16_t len, uint8_t options, uint32_t sub_id);
int rmq_session_queue_append(struct session *s, struct qent q);  /* no checks, no log: the replay's way in */
bool rmq_session_sub_del(struct session *s, const uint8_t *f, uint16_t len);  /* no log: the replay's way */
/* A live session's subscription added/replaced (>= 0 as rmq_session_sub_add) or removed (false: it had none);
 * logged. */
int rmq_session_subscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len, uint8_t options,
		      uint32_t sub_id);
bool rmq_session_unsubscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len);
/* Inbound QoS 2 ids between PUBREC and PUBREL: add (0, -ENOSPC, -ENOMEM) and del (0, -ENOENT) are logged. */
bool rmq_session_qos2_seen(const struct session *s, uint16_t pid);
int rmq_session_qos2_add(struct core *c, struct session *s, uint16_t pid);
int rmq_session_qos2_del(struct core *c, struct session *s, uint16_t pid);
/* A $share member leaves group `key`: takes out of s every queued message of the group and every unacknowledged
 * QoS 1 one ([MQTT-4.8.2-5]: a QoS 2 already being sent stays), logged as one record. Returns how many, one ref
 * each in *out (delivery order; the caller frees the array). The replay applies it through the same code. */
uint32_t rmq_session_take_shared(struct core *c, struct session *s, uint64_t key, struct rmq_msg ***out);
/* Extra per-delivery data of an outgoing PUBLISH: subscription ids, and the absolute expiry of the
 * message (0 = none; the remaining interval is forwarded, an expired message is not sent: -ETIME). */
struct out_extra {
	const uint32_t *ids;
	uint32_t nids;
	uint64_t expire_at_ms;
};
int rmq_session_write_publish(struct core *c, struct conn *cn, const struct rmq_publish *src, uint8_t qos,
			  uint16_t pid, bool dup, bool retain, const struct out_extra *ex);
/* Outbound window of s: --max-inflight, bounded by the client's v5 Receive Maximum. */
uint32_t rmq_session_inflight_cap(struct core *c, struct session *s);
/* The client acknowledged packet id pid: 0, -ENOENT for an unknown id (acks are idempotent), or -EPROTO for an ack
 * of the wrong type for the QoS of that PUBLISH (the caller ends the connection). */
int rmq_session_on_puback(struct core *c, struct session *s, uint16_t pid);
int rmq_session_on_pubrec(struct core *c, struct session *s, uint16_t pid, uint8_t reason);
int rmq_session_on_pubcomp(struct core *c, struct session *s, uint16_t pid);
/* The state log made the change an ack reports durable (rmq_persist_ack_end): sends that PUBREL or PUBCOMP (type) for
 * the connection and packet id cookie names, if the connection is still there. */
void rmq_session_ack_durable(struct core *c, uint8_t type, uint64_t cookie);

/* session_expiry.c: v5 Session Expiry Interval and Will Delay Interval, on the core's session wheel. */
void rmq_session_expiry_on_close(struct core *c, struct session *s, struct rmq_msg *will, uint32_t will_delay_s);
void rmq_session_expiry_on_resume(struct core *c, struct session *s);
void rmq_session_expiry_fire(struct core *c, struct session *s);  /* its expiry_timer fired */
void rmq_session_expiry_free(struct core *c, struct session *s);

/* topic_alias.c: client-to-broker topic aliases. Resolves/records p's alias; 0 or a v5 reason code. */
#define RMQ_TOPIC_ALIAS_MAX 64
int rmq_topic_alias_apply(struct conn *cn, struct rmq_publish *p);
void rmq_topic_alias_free(struct conn *cn);

/* topic_alias_out.c: broker-to-client topic aliases, first come first served (policy and measurement in
 * the file). At most this many per connection, whatever larger maximum the client announces: each holds a
 * copy of its topic, and a car's command topics are a handful. */
#define RMQ_OUT_ALIAS_CAP 16
int rmq_topic_alias_out_init(struct conn *cn, uint16_t client_max);   /* at CONNECT; 0 or -ENOMEM */
/* The alias of `topic` on cn (cn->oaliases set): *is_new false: established, send the alias alone; true: the
 * alias to offer with the topic (0: none left), recorded by rmq_topic_alias_out_commit once the packet is staged. */
uint16_t rmq_topic_alias_out_find(const struct conn *cn, const struct rmq_str *topic, bool *is_new);
void rmq_topic_alias_out_commit(struct conn *cn, const struct rmq_str *topic);
void rmq_topic_alias_out_free(struct conn *cn);

/* shared_sub.c: "$share/group/filter" subscriptions. */
struct rmq_shared;
int rmq_shared_parse(const uint8_t *f, size_t len, struct rmq_str *group, struct rmq_str *inner);
int rmq_shared_subscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len, uint8_t options,
			 uint32_t sub_id);
int rmq_shared_unsubscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len);
int rmq_shared_route(struct core *c, const uint8_t *f, uint16_t len, int core, bool add);
void rmq_shared_pick(struct core *c, struct pubctx *x);
void rmq_shared_add_cores(struct core *c, const struct rmq_msg *m, uint64_t *coremask);
void rmq_shared_deliver(struct core *c, struct pubctx *x);
void rmq_shared_free(struct core *c);

/* limits.c: hardening limits, each counted. The checks return 0 to go on, or -EPROTO once they refused
 * the packet and disconnected (or closed) the connection. */
int rmq_limits_check_connect(struct core *c, struct conn *cn, const struct rmq_connect *ck);
int rmq_limits_check_packet(struct core *c, struct conn *cn, const struct rmq_packet *p);
/* SUBSCRIBE: the SUBACK code refusing filter f (topic levels, subscription count), or 0 to go on. */
uint8_t rmq_limits_subscribe_refusal(struct core *c, struct conn *cn, const uint8_t *f, uint16_t len);
/* After a parse pass: consumed (some packet completed), leftover (a partial packet stays buffered). */
void rmq_limits_track_partial(struct core *c, struct conn *cn, bool consumed, bool leftover);
/* After TLS/WebSocket input: xp_partial when the transport holds an unfinished record or frame header. */
void rmq_limits_track_transport(struct core *c, struct conn *cn, bool xp_partial);
/* The connection timer of an active connection fired: true when limits.c handled it (closed a connection
 * whose packet is overdue, or re-armed the timer for a deadline still ahead); false: keep-alive expired. */
bool rmq_limits_conn_timer(struct core *c, struct conn *cn);
/* A TLS/WebSocket handshake failed (garbage, wrong protocol, bad certificate): counts it. */
void rmq_limits_handshake_failed(struct core *c, struct conn *cn);

/* kafka_in.c: Kafka -> MQTT records from the core's bridge consumer */
void rmq_kafka_in_poll(struct core *c);

#endif
