/* The shared types of the core rooms: broker (process-wide, read-only after start), core (one per thread),
 * connection, session, counters; then the room headers (io, mqtt, store, ops) that declare what each room
 * exports. Every function runs on the thread of the core it is given, unless its comment says otherwise. */
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
#include "index/msg.h"
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

/* ---- connection names ------------------------------------------------------------------------------
 * A connection is named by its slab slot and the slot's generation, bumped at every release. Every completion
 * that names a connection (io_uring user data below; the completion cookie of mqtt/cookie.h for Kafka, the state
 * log and route acks) compares the low RMQ_CONN_GEN_BITS. The generation is the second line of defence: the first
 * is that a slot is reused only once nothing can complete for it any more (conn.c: io_uring operations end before
 * the release; cookies hold the slot, conn_hold). Slot numbers stay below RMQ_CONN_SLOTS_MAX, which leaves the
 * all-ones slot free to mean "no connection". */
#define RMQ_CONN_GEN_BITS 24
#define RMQ_CONN_GEN_MASK ((1u << RMQ_CONN_GEN_BITS) - 1)
#define RMQ_CONN_SLOT_BITS 24
#define RMQ_CONN_SLOTS_MAX ((1u << RMQ_CONN_SLOT_BITS) - 1)
_Static_assert(RMQ_MAX_CONNECTIONS_LIMIT < RMQ_CONN_SLOTS_MAX, "--max-connections must fit the slot field");

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
	return (uint64_t)op << 56 | (uint64_t)(gen & RMQ_CONN_GEN_MASK) << 32 | slot;
}
_Static_assert(OP__COUNT <= 256 && RMQ_CONN_GEN_BITS <= 24, "user data: op 8 bits | generation 24 | slot 32");
#define UD_OP(u) ((enum op)((u) >> 56))
#define UD_GEN(u) ((uint32_t)((u) >> 32) & RMQ_CONN_GEN_MASK)
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
	uint64_t cookie;                 /* SUBSCRIBE waiting for the acks (mqtt/cookie.h); RMQ_COOKIE_NONE: none */
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
	struct topic_aliases_out *oaliases;  /* v5 broker-to-client aliases (topic_alias_out.c); NULL: none asked */
	uint32_t will_delay_s;       /* v5 Will Delay Interval of this connection's will */
	/* limits.c: control-packet token bucket (milli-tokens) and the start of a packet still arriving; times
	 * are now_ms truncated to 32 bits (differences stay right for 49 days) */
	uint32_t ctl_tokens, ctl_ms, partial_ms;
	bool ctl_started, partial;
};

/* ---- counters: struct counters comes from the list in ops/counters.h (via ops/metrics.h) ----------- */

/* ---- one core -------------------------------------------------------------------------- */
struct broker;

struct outbox {           /* entries for one destination core that did not fit its queue yet */
	struct rmq_xq_entry *e;
	uint32_t n, cap;
	uint32_t data_n;      /* publish/retain entries (dropped first when over the cap) */
};

struct core {
	int id;
	struct broker *b;
	const struct rmq_proto_ops *proto;  /* the protocol above io (io/io.h), set by main before the thread starts */
	const struct rmq_store_hooks *store_hooks;  /* the store's calls up (store/store.h), set by main likewise */
	pthread_t thread;
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint32_t nbufs, buf_size;
	int buf_returns;         /* buffers added since the last advance */
	int *listen_fds;
	/* connection slab */
	struct conn **slots;
	uint32_t *gens;
	uint32_t *holds;         /* completions still to come for the slot (conn_hold): not reused before 0 */
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
	/* $SYS (sys_topics.c), core 0 only: it publishes the totals of every core's snap (below). */
	uint64_t sys_start_ms, sys_next_pub_ms;
	uint64_t sys_prev[4];                     /* totals of the rated figures at the last publish */
	uint64_t now_ms;
	uint32_t match_epoch;
	uint32_t routes_inflight;
	struct route_upd *live_upds;
	uint64_t assign_seq;         /* for assigned client ids */
	bool logged_wrong_ack;       /* the one log line of st.rej_wrong_ack on this core was written */
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
	struct rmq_metrics_snap snap;   /* st and the gauges as of the last tick: /metrics, $SYS (core 0) */
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

/* The rooms' functions on these types. */
#include "io/io.h"
#include "mqtt/mqtt.h"
#include "store/store.h"
#include "store/kafka_spool.h"
#include "ops/sys_topics.h"

#define VLOG(c, ...) do { if ((c)->b->cfg.verbose) fprintf(stderr, __VA_ARGS__); } while (0)

#endif
