/* The reactor's types: broker (process-wide, read-only after start), core (one per thread), connection,
 * session, and the functions the core/ files call on each other. Every function here runs on the
 * thread of the core it is given, unless its comment says otherwise. */
#ifndef RMQ_CORE_CORE_H
#define RMQ_CORE_CORE_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mqtt/ackwin.h"
#include "ops/config.h"
#include "ops/metrics.h"
#include "mqtt/msg.h"
#include "store/persist.h"
#include "index/retain.h"
#include "security/security.h"
#include "ringmq/bridge.h"
#include "ringmq/proto.h"
#include "index/strmap.h"
#include "io/timer.h"
#include "index/trie.h"
#include "io/xport.h"
#include "io/xq.h"

/* ---- completion ops: user_data = op (8 bits) | generation (24 bits) | slot (32 bits) ---------- */
enum op {
	OP_NONE = 0,   /* CQEs we do not care about (cancel results, skipped successes) */
	OP_ACCEPT,     /* slot = listener index */
	OP_RECV,
	OP_SEND,
	OP_DOORBELL,   /* MSG_RING from another core */
	OP_EVENTFD,    /* stop request or eventfd doorbell */
	OP_TICK,       /* timer wheel tick */
	OP_BRIDGE,     /* bridge delivery-report fd readable */
	OP_WAL,        /* persist.c's state log (--data-dir): low 32 bits belong to rmq_wal_complete */
	OP_SPOOL,      /* the Kafka spool's log (--spool): low 32 bits belong to rmq_spool_complete */
	OP__COUNT
};

static inline uint64_t ud_pack(enum op op, uint32_t gen, uint32_t slot)
{
	return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffff) << 32 | slot;
}
#define UD_OP(u) ((enum op)((u) >> 56))
#define UD_GEN(u) ((uint32_t)((u) >> 32) & 0xffffff)
#define UD_SLOT(u) ((uint32_t)(u))

/* ---- cross-core queue entry kinds ------------------------------------------------------------- */
enum xkind {
	XK_HANDOFF = 1,  /* ptr: struct handoff (fd + CONNECT + unread bytes) */
	XK_PUBLISH,      /* ptr: struct rmq_msg, one ref for the receiver */
	XK_RETAIN,       /* ptr: struct rmq_msg to store as retained (one ref) */
	XK_ROUTE_ADD,    /* ptr: struct route_upd; arg: origin core; receiver answers XK_ROUTE_ACK */
	XK_ROUTE_DEL,    /* same, removal */
	XK_ROUTE_ACK,    /* ptr: the origin's struct route_upd coming back */
	XK_DURABLE,      /* ptr: an ack-window cookie of the receiver (persist.c); arg: 1 if the log failed */
};

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
	uint32_t conn_slot, conn_gen;    /* SUBSCRIBE waiting for the acks; UINT32_MAX = none */
	uint16_t origin;
	uint16_t pending;
	uint32_t count, len;
	uint8_t data[];                  /* count x (u16 len, bytes) */
};

/* ---- sessions ----------------------------------------------------------------------------- */
struct sub {
	uint8_t *filter;
	uint16_t len;
	uint8_t options;
	uint32_t sub_id;             /* v5 Subscription Identifier (0: none), kept for the state log */
};

enum out_state { OUT_PUBLISH = 1, OUT_PUBREL = 2 };

/* v5 Subscription Identifiers of the subscriptions a message matched; NULL when none. */
struct subids {
	uint32_t n;
	uint32_t v[];
};

struct outmsg {
	struct rmq_msg *m;   /* NULL once PUBREC arrived (only the id is kept) */
	struct subids *ids;
	uint64_t share_key;  /* came through this shared subscription group (0: not shared) */
	uint16_t pid;
	uint8_t qos;
	uint8_t state;
	bool retain;
};

struct qent {
	struct rmq_msg *m;
	struct subids *ids;
	uint64_t share_key;
	uint8_t qos;
	bool retain;
};

struct session {
	uint8_t *client_id;
	uint16_t id_len;
	uint8_t version;
	bool clean;                  /* ends when its connection ends */
	bool durable;                /* in the state log (--data-dir): its changes are logged (persist.c) */
	uint32_t expiry;             /* v5 Session Expiry Interval, s (0xFFFFFFFF: never) */
	struct rmq_timer expiry_timer;
	bool acl_filtered;           /* a granted filter reaches unreadable topics: ACL-check each delivery */
	uint8_t *acl_user;           /* username of the last CONNECT, for those checks (NULL: anonymous) */
	uint16_t acl_user_len;
	struct conn *conn;           /* NULL while offline */
	struct sub *subs;
	uint32_t nsubs, subs_cap;
	struct outmsg *inflight;     /* outbound QoS 1/2 in send order, <= max_inflight */
	uint32_t ninflight;
	struct qent *queue;          /* waiting for an inflight slot (or for the client to return) */
	uint32_t qhead, qcount, qcap;
	uint16_t next_pid;
	uint16_t *qos2_in;           /* inbound QoS 2 ids between PUBREC and PUBREL */
	uint32_t nqos2_in, qos2_cap;
	uint32_t match_epoch;        /* publish-time dedup of overlapping subscriptions */
	uint8_t match_opts;
	bool matched_qos_set;
	uint8_t match_nids;          /* publish-time: subscription ids of the matching filters */
	uint32_t match_ids[RMQ_MAX_SUB_IDS];
	uint64_t expire_at_ms, will_at_ms;  /* expiry_timer's deadlines while offline; 0 = not pending */
	struct rmq_msg *will;        /* delayed will waiting for will_at_ms (v5 Will Delay Interval) */
};

/* ---- connections -------------------------------------------------------------------------- */
enum timer_kind { TK_CONN = 0, TK_SESSION = 1 };

enum conn_state { CS_NEW = 0, CS_HANDOFF, CS_ACTIVE, CS_CLOSING };

/* Reasons the connection's input is not being parsed. */
#define PAUSE_HANDOFF 0x01   /* waiting to move to the owner core */
#define PAUSE_ROUTES 0x02    /* SUBSCRIBE waiting for every core's route ack */
#define PAUSE_BRIDGE 0x04    /* Kafka producer queue full */
#define PAUSE_WINDOW 0x08    /* 3.x client filled the ack window (it has no receive maximum to obey) */

struct obuf {
	uint8_t *p;
	uint32_t len, cap, off;
};

struct pending_sub;

struct conn {
	int fd;
	uint32_t slot, gen;
	uint8_t state;
	uint8_t version;
	uint8_t pause;
	bool recv_armed, send_inflight, dirty, rearm, closing_after_flush, shut;
	bool got_disconnect, released, in_paused, doomed, in_parse;
	uint32_t ka_ms;              /* 1.5 x keep-alive; 0 = none */
	uint64_t last_rx_ms;
	struct rmq_timer timer;      /* connect timeout, then keep-alive */
	struct session *sess;
	struct rmq_msg *will;
	uint32_t client_max_packet;  /* v5 Maximum Packet Size from the client; 0 = no limit */
	uint16_t client_recv_max;    /* v5 Receive Maximum from the client */
	uint8_t *rbuf;               /* reassembly: a partial packet, or input held while paused */
	uint32_t rlen, rcap;
	struct obuf out, sending;    /* staged replies; the buffer of the send in flight */
	struct conn *next_dirty, *next_paused, *next_grave;
	struct rmq_ackwin acks;
	uint32_t qos_in_unacked;     /* receive maximum accounting */
	uint8_t *username;           /* for the bridge's ${username} key template */
	uint16_t username_len;
	uint8_t *connect_raw;        /* kept while a handoff is pending */
	int handoff_to;
	uint32_t connect_len;
	struct pending_sub *psub;
	struct rmq_xport *xp;        /* TLS and/or WebSocket under MQTT; NULL for plain TCP */
	/* --proxy-protocol: the PROXY header has not arrived yet (nothing else is parsed until it has), and the
	 * client address it named, which logs and the failed-login limiter use instead of the socket's peer
	 * (the load balancer). NULL: use getpeername(). Heap, so unproxied connections pay one pointer. */
	bool proxy_wait;
	union rmq_proxy_sa *peer;
	struct topic_aliases *aliases;  /* v5 client-to-broker topic aliases (topic_alias.c); NULL until used */
	uint32_t will_delay_s;       /* v5 Will Delay Interval of this connection's will */
	/* limits.c: control-packet token bucket (milli-tokens) and the start of a packet still arriving; times
	 * are now_ms truncated to 32 bits (differences stay right for 49 days) */
	uint32_t ctl_tokens, ctl_ms, partial_ms;
	bool ctl_started, partial;
};

/* ---- counters (per core; summed at exit with -v) ------------------------------------------ */
struct counters {
	uint64_t accepted, refused_max_conn, closed, handoffs_out, handoffs_in;
	uint64_t proxy_refused;      /* --proxy-protocol: connections closed for a missing or bad PROXY header */
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
	uint64_t enobufs, cq_overflow, xq_full, xq_drop;
	uint64_t malformed, slow_consumer, queue_overflow, too_large_out, keepalive_timeout, takeovers;
	uint64_t bridge_enobufs, bridge_fail;
	uint64_t login_refused, acl_denied_pub, acl_denied_sub;
	uint64_t expired, payload_format_invalid, sessions_expired, wills_delayed;
	uint64_t shared_handed_over, shared_lost;
	/* hardening limits hit (limits.c): /metrics ringmq_rejected_total{reason=...}, $SYS broker/rejected/... */
	uint64_t rej_control_rate, rej_topic_levels, rej_subscriptions, rej_user_props, rej_slow_packet;
	uint64_t rej_handshake;
};

/* ---- one core -------------------------------------------------------------------------- */
#define RMQ_SYS_NFIELDS 32
struct broker;

struct outbox {           /* entries for one destination core that did not fit its queue yet */
	struct rmq_xq_entry *e;
	uint32_t n, cap;
	uint32_t data_n;      /* publish/retain entries (dropped first when over the cap) */
};

struct core {
	int id;
	struct broker *b;
	pthread_t thread;
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint32_t nbufs, buf_size;
	int buf_returns;         /* buffers added since the last advance */
	uint32_t bufs_used;      /* receives into buffers since the last trim (reactor.c trim_bufs) */
	uint64_t bufs_trim_ms;   /* when the tick looks again */
	bool bufs_trim;          /* hand the receive buffers' pages back once no completion is waiting */
	int *listen_fds;
	/* connection slab */
	struct conn **slots;
	uint32_t *gens;
	uint32_t nslots, slots_cap;
	uint32_t *free_slots;
	uint32_t nfree;
	uint32_t nconns;
	struct conn *dirty, *paused, *graveyard;
	/* state */
	struct rmq_trie *subs, *routes;
	struct rmq_retain *retained;
	struct rmq_strmap sessions;
	struct rmq_wheel wheel;
	struct rmq_shared *shared;    /* shared subscriptions (shared_sub.c); NULL until the first one */
	/* $SYS (sys_topics.c): this core's figures, stored by this core once a second and read by core 0,
	 * which publishes the totals; the only fields another core reads. */
	_Atomic uint64_t sys_snap[RMQ_SYS_NFIELDS];
	uint64_t sys_start_ms, sys_next_snap_ms, sys_next_pub_ms;
	uint64_t sys_prev[RMQ_SYS_NFIELDS];       /* core 0: totals at the last publish, for rates */
	uint64_t now_ms;
	uint32_t match_epoch;
	uint32_t routes_inflight;
	struct route_upd *live_upds;
	uint64_t assign_seq;         /* for assigned client ids */
	/* cross-core */
	struct rmq_xq_wake wake;
	int efd;
	uint64_t efd_val;
	struct outbox *outboxes;     /* one per destination core */
	bool outbox_pending;
	struct rmq_bridge_core *bc;
	struct kspool *kspool;       /* --spool (kafka_spool.c); NULL when off */
	struct __kernel_timespec tick_ts;
	atomic_bool stop;
	bool stopping;
	int sqes_pending;
	struct counters st;
	struct rmq_metrics_snap snap;   /* st as of the last tick, for the metrics thread */
	struct rmq_auth_ratelimit *auth_rl;  /* failed logins per source address (NULL: no limit) */
	struct rmq_persist *persist;  /* durable state log (persist.c); NULL without --data-dir */
	struct rmq_tls_ctx *tls;     /* this core's reference to the context of new TLS connections (tls_reload.c) */
	struct rmq_tls_ctx *_Atomic tls_next;  /* a reloaded context main hands over; the core takes it */
	/* publish-time scratch */
	struct session **mscratch;
	uint32_t mscratch_n, mscratch_cap;
	uint64_t coremask[4];
};

struct broker {
	struct rmq_config cfg;
	int ncores;
	struct core *cores;
	struct rmq_xq *xq;           /* xq[from * ncores + to] */
	struct rmq_bridge *bridge;
	struct rmq_security sec;     /* password db, ACL, anonymous policy (read-only while running) */
	struct rmq_tls_ctx *tls;     /* server context for TLS/WSS listeners (NULL: none configured) */
	bool use_msg_ring;
	unsigned ring_flags;         /* the setup flags the probe found working */
	bool min_wait;               /* the kernel bounds batched waits (--batch-wait-us; 6.12+) */
	int nlisten_fds;
	int *listen_fds;             /* [core * nlisten + i] */
	_Atomic uint32_t nconns;     /* process-wide, to enforce --max-connections */
	_Atomic uint64_t stamp;      /* retained-message order across cores */
	uint32_t out_limit;          /* slow consumer: staged bytes beyond this disconnect */
	_Atomic int ready, failed;   /* cores done with set-up / failed it */
	_Atomic int go;              /* listeners are listening: cores may arm their accepts */
	struct rmq_metrics_srv *metrics;  /* --metrics server (main thread), NULL when off */
	_Atomic int quiesced;        /* cores that stopped reading clients at SIGTERM (reactor.c quiesce) */
};

/* probe.c: start-up checks; fills ring_flags/use_msg_ring/min_wait. 0 or -1 with err filled. */
int rmq_probe(struct broker *b, char *err, size_t errlen);

/* reactor.c */
int rmq_core_run(struct core *c);                 /* thread body */
struct io_uring_sqe *core_sqe(struct core *c);    /* never NULL: submits to make room */
void core_xpush(struct core *c, int to, uint32_t kind, uint32_t arg, void *ptr);
/* rmq_wal_foreign_fn for the state log and the spool: while one drains, the other's completions reach it. */
void core_log_foreign(void *core, struct io_uring_cqe *cqe);
/* drain.c: after the loop, before teardown (SIGTERM) */
void rmq_core_drain(struct core *c);

/* conn.c */
struct conn *conn_new(struct core *c, int fd);
struct conn *conn_lookup(struct core *c, uint32_t slot, uint32_t gen);
void conn_arm_recv(struct core *c, struct conn *cn);
void conn_on_recv(struct core *c, struct conn *cn, struct io_uring_cqe *cqe);
void conn_on_send(struct core *c, struct conn *cn, int res);
uint8_t *conn_reserve(struct core *c, struct conn *cn, size_t n);  /* NULL: slow consumer, closing */
void conn_commit(struct core *c, struct conn *cn, size_t n);
int conn_write_packet(struct core *c, struct conn *cn, const struct rmq_packet *p);
int conn_write_ack(struct core *c, struct conn *cn, uint8_t type, uint16_t pid, uint8_t reason);
void conn_flush_all(struct core *c);
void conn_close(struct core *c, struct conn *cn, bool abnormal);
void conn_disconnect(struct core *c, struct conn *cn, uint8_t reason);
void conn_pause(struct core *c, struct conn *cn, uint8_t why);
void conn_resume(struct core *c, struct conn *cn, uint8_t why);
void conn_process_input(struct core *c, struct conn *cn);
void conn_release(struct core *c, struct conn *cn);   /* frees the slot without touching the fd */
void conn_touch_keepalive(struct core *c, struct conn *cn);
void conn_force_close(struct core *c, struct conn *cn);  /* linger expired */
void conn_reap(struct core *c);                       /* frees released connections */

/* mqtt.c: packet dispatch */
int mqtt_handle(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len);

/* mqtt/connect.c */
int mqtt_on_connect(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len,
		    const struct rmq_connect *ck);
void handoff_receive(struct core *c, struct handoff *h);
void handoff_send(struct core *c, struct conn *cn);

/* mqtt/publish.c */
int mqtt_on_publish(struct core *c, struct conn *cn, struct rmq_publish *p);
int mqtt_on_ack(struct core *c, struct conn *cn, uint8_t type, const struct rmq_ack *a);
void publish_from_core(struct core *c, struct rmq_msg *m, const struct session *origin_sess);
void deliver_remote(struct core *c, struct rmq_msg *m);
void retain_store(struct core *c, struct rmq_msg *m);
void bridge_done(void *ud, uint64_t cookie, int err, uint8_t reason);
void ackwin_flush(struct core *c, struct conn *cn);
/* Completes the ack-window entry a bridge/persist cookie names (reason 0: success); gone connections ignored. */
void ackwin_complete_cookie(struct core *c, uint64_t cookie, uint8_t reason);

/* mqtt/subscribe.c */
int mqtt_on_subscribe(struct core *c, struct conn *cn, const struct rmq_subscribe *s);
int mqtt_on_unsubscribe(struct core *c, struct conn *cn, const struct rmq_subscribe *s);
void routes_on_update(struct core *c, uint32_t kind, struct route_upd *u);
void routes_on_ack(struct core *c, struct route_upd *u);
void subscribe_durable(struct core *c, uint64_t cookie);  /* persist.c: a SUBSCRIBE's records are durable */
void routes_remove_session(struct core *c, struct session *s);
/* Start-up, after the state log's replay: local tries and every other core's routes for the replayed subs. */
void routes_restore(struct core *c);
void routes_keep(struct core *c);  /* teardown, --data-dir: persistent sessions' filters stay announced */
void pending_sub_free(struct pending_sub *ps);

/* session.c */
struct session *session_get(struct core *c, const uint8_t *id, size_t len);
struct session *session_create(struct core *c, const uint8_t *id, size_t len);
void session_destroy(struct core *c, struct session *s);
/* A message on its way to subscribers: the decoded PUBLISH, and the shared copy made only when some
 * delivery has to keep it (QoS 1/2, offline queue, another core, retained store). */
struct pubctx {
	struct core *c;
	const struct rmq_publish *pub;
	struct rmq_msg *m;           /* owned by the context (one ref) once made */
	bool borrowed;               /* m belongs to the caller */
	const struct session *origin;
	uint64_t share_key;          /* set while delivering to a shared-subscription member (else 0) */
};
struct rmq_msg *pubctx_msg(struct pubctx *x);  /* NULL on ENOMEM */
void session_deliver(struct core *c, struct session *s, struct pubctx *x, uint8_t qos, bool retain,
		     const uint32_t *ids, uint32_t nids);
void session_resume(struct core *c, struct session *s);
void session_detached(struct core *c, struct session *s);  /* connection gone: expire or keep */
void session_pump(struct core *c, struct session *s);
int session_sub_add(struct session *s, const uint8_t *f, uint16_t len, uint8_t options, uint32_t sub_id);
int session_queue_append(struct session *s, struct qent q);  /* no checks, no log: the replay's way in */
bool session_sub_del(struct session *s, const uint8_t *f, uint16_t len);
/* Extra per-delivery data of an outgoing PUBLISH: subscription ids, and the absolute expiry of the
 * message (0 = none; the remaining interval is forwarded, an expired message is not sent: -ETIME). */
struct out_extra {
	const uint32_t *ids;
	uint32_t nids;
	uint64_t expire_at_ms;
};
int session_write_publish(struct core *c, struct conn *cn, const struct rmq_publish *src, uint8_t qos,
			  uint16_t pid, bool dup, bool retain, const struct out_extra *ex);
uint32_t session_inflight_cap(struct core *c, struct session *s);
int session_on_puback(struct core *c, struct session *s, uint16_t pid);
int session_on_pubrec(struct core *c, struct session *s, uint16_t pid, uint8_t reason);
int session_on_pubcomp(struct core *c, struct session *s, uint16_t pid);

/* session_expiry.c: v5 Session Expiry Interval and Will Delay Interval, on the core's session wheel. */
void session_expiry_on_close(struct core *c, struct session *s, struct rmq_msg *will, uint32_t will_delay_s);
void session_expiry_on_resume(struct core *c, struct session *s);
void session_expiry_fire(struct core *c, struct session *s);  /* its expiry_timer fired */
void session_expiry_free(struct core *c, struct session *s);

/* topic_alias.c: client-to-broker topic aliases. Resolves/records p's alias; 0 or a v5 reason code. */
#define RMQ_TOPIC_ALIAS_MAX 64
int topic_alias_apply(struct conn *cn, struct rmq_publish *p);
void topic_alias_free(struct conn *cn);

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
int limits_check_connect(struct core *c, struct conn *cn, const struct rmq_connect *ck);
int limits_check_packet(struct core *c, struct conn *cn, const struct rmq_packet *p);
/* SUBSCRIBE: the SUBACK code refusing filter f (topic levels, subscription count), or 0 to go on. */
uint8_t limits_subscribe_refusal(struct core *c, struct conn *cn, const uint8_t *f, uint16_t len);
/* After a parse pass: consumed (some packet completed), leftover (a partial packet stays buffered). */
void limits_track_partial(struct core *c, struct conn *cn, bool consumed, bool leftover);
/* After TLS/WebSocket input: xp_partial when the transport holds an unfinished record or frame header. */
void limits_track_transport(struct core *c, struct conn *cn, bool xp_partial);
/* The connection timer of an active connection fired: true when limits.c handled it (closed a connection
 * whose packet is overdue, or re-armed the timer for a deadline still ahead); false: keep-alive expired. */
bool limits_conn_timer(struct core *c, struct conn *cn);
/* A TLS/WebSocket handshake failed (garbage, wrong protocol, bad certificate): counts it. */
void limits_handshake_failed(struct core *c, struct conn *cn);

/* tls_reload.c: SIGHUP certificate reload. init/reload/free: main thread (init before the reactors start,
 * free after they stopped); core_tls_ctx: the core's own thread, at a TLS accept. rmq_tls_reload returns 0,
 * or -EINVAL with the reason in err (the running context stays). */
void core_tls_init(struct broker *b);
struct rmq_tls_ctx *core_tls_ctx(struct core *c);
int rmq_tls_reload(struct broker *b, char *err, size_t errlen);
void core_tls_free(struct broker *b);

/* sys_topics.c: snapshot on every core, publish on core 0; called on each timer tick. */
void sys_tick(struct core *c);

/* kafka_in.c: Kafka -> MQTT records from the core's bridge consumer */
void kafka_in_poll(struct core *c);

/* kafka_spool.c: the Kafka spool (--spool) of this core. */
struct kspool;
struct kspool_counters {
	uint64_t spooled;        /* publishes written to the spool */
	uint64_t took_over;      /* times the spool took over from the producer (queue full / all brokers down) */
	uint64_t refused;        /* publishes refused: spool full (or its disk behind): the car was paused */
	uint64_t throttled;      /* publishes refused while the spool drains (Kafka up): the car was paused */
	uint64_t replayed;       /* spooled messages Kafka acknowledged */
	uint64_t replay_retries; /* transient replay failures (then replayed again) */
	uint64_t dropped;        /* spooled messages Kafka refused for good (counted, logged) */
	uint64_t append_failed;  /* spool writes that failed (the car got an error) */
	uint64_t reclaimed;      /* messages taken back from librdkafka into the spool when Kafka went down */
};
struct kspool_stats {
	struct kspool_counters c;
	uint64_t backlog_records, backlog_bytes, disk_bytes, inflight, refused_full;
	uint64_t fsyncs, commit_p99_us, commit_max_us;
};
int kspool_open(struct core *c);              /* start-up, before accepting: 0 or -errno (fatal) */
/* A QoS 1/2 publish on this core with --spool: as rmq_bridge_publish (> 0: one completion for cookie later,
 * through bridge_done), but to the spool when it holds anything or Kafka is down or the producer is full.
 * -ENOBUFS: the spool is full too (pause the connection). */
int kspool_publish(struct core *c, const struct rmq_bridge_msg *bm, uint64_t cookie);
void kspool_pump(struct core *c);             /* each loop iteration: replay, the log's ring work */
void kspool_on_cqe(struct core *c, struct io_uring_cqe *cqe);   /* OP_SPOOL */
bool kspool_writable(struct core *c);         /* paused publishers may resume */
void kspool_stats(struct core *c, struct kspool_stats *out);   /* zeros when off */
void kspool_close(struct core *c, bool drain);  /* drain: write what is staged (SIGTERM); NULL-safe */

#define VLOG(c, ...) do { if ((c)->b->cfg.verbose) fprintf(stderr, __VA_ARGS__); } while (0)

#endif
