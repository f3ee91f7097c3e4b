/* Room io: the reactor loop, connections (bytes, buffers, sends, close), transports, cross-core queues, timers,
 * the start-up probe, TLS reload. Every function runs on the thread of the core it is given, unless its comment says. */
#ifndef RMQ_CORE_IO_IO_H
#define RMQ_CORE_IO_IO_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/timer.h"

struct broker;
struct core;
struct rmq_packet;
struct rmq_tls_ctx;
struct rmq_xport;
struct rmq_xq_entry;
union rmq_proxy_sa;

/* ---- connection names ------------------------------------------------------------------------------
 * A connection is named by its slab slot and the slot's generation, bumped at every release. Every completion
 * that names a connection (io_uring user data below; the completion cookie of mqtt/cookie.h for Kafka, the state
 * log and route acks) compares the low RMQ_CONN_GEN_BITS. The generation is the second line of defence: the first
 * is that a slot is reused only once nothing can complete for it any more (conn.c: io_uring operations end before
 * the release; cookies hold the slot, rmq_conn_hold). Slot numbers stay below RMQ_CONN_SLOTS_MAX, which leaves the
 * all-ones slot free to mean "no connection". */
#define RMQ_CONN_GEN_BITS 24
#define RMQ_CONN_GEN_MASK ((1u << RMQ_CONN_GEN_BITS) - 1)
#define RMQ_CONN_SLOT_BITS 24
#define RMQ_CONN_SLOTS_MAX ((1u << RMQ_CONN_SLOT_BITS) - 1)

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

/* ---- connection state (the protocol sets CS_HANDOFF and CS_ACTIVE; io the rest) -------------------------- */
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

/* ---- a connection as io sees it: socket, slot, state, buffers, timer, transport --------------------------------
 * Touched only by the thread of the core whose slab holds it. The protocol's per-connection state lives in a larger
 * struct that starts with this one (struct mqtt_conn, mqtt/mqtt.h): io allocates c->proto->conn_size bytes, so the
 * protocol reaches its fields by a cast, without a pointer to follow. The fields a receive touches come first. */
struct conn {
	int fd;
	uint32_t slot, gen;
	uint8_t state;
	uint8_t version;             /* MQTT protocol level of the CONNECT (encoding of what io writes) */
	uint8_t pause;
	bool recv_armed, send_inflight, dirty, rearm, closing_after_flush, shut;
	bool got_disconnect, released, in_paused, doomed, in_parse;
	bool recv_cancelled;         /* a cancel of the armed receive is on its way (conn.c, paused input) */
	uint32_t ka_ms;              /* 1.5 x keep-alive; 0 = none */
	uint64_t last_rx_ms;
	struct rmq_timer timer;      /* connect timeout, then keep-alive */
	uint32_t client_max_packet;  /* v5 Maximum Packet Size from the client; 0 = no limit */
	uint8_t *rbuf;               /* reassembly: a partial packet, or input held while paused */
	uint32_t rlen, rcap;
	struct obuf out, sending;    /* staged replies; the buffer of the send in flight */
	struct conn *next_dirty, *next_paused, *next_grave;
	struct rmq_xport *xp;        /* TLS and/or WebSocket under MQTT; NULL for plain TCP */
	/* --proxy-protocol: the PROXY header has not arrived yet (nothing else is parsed until it has), and the
	 * client address it named, which logs and the failed-login limiter use instead of the socket's peer
	 * (the load balancer). NULL: use getpeername(). Heap, so unproxied connections pay one pointer. */
	bool proxy_wait;
	union rmq_proxy_sa *peer;
};

/* Entries for one destination core that did not fit its queue yet (reactor.c). */
struct outbox {
	struct rmq_xq_entry *e;
	uint32_t n, cap;
	uint32_t data_n;      /* publish/retain entries (dropped first when over the cap) */
};

/* ---- the protocol above io -------------------------------------------------------------------------------
 * io moves bytes, connections and completions; what they mean belongs to the protocol room above it (core/mqtt),
 * which io reaches only through this table. Main sets c->proto once per core before its reactor starts; every
 * entry runs on that core's thread and none may be NULL.
 *
 * Framing stays in io (conn.c, rmq_proto_frame): an MQTT fixed header is a type byte and a variable-length integer
 * that proto/ (below every room) decodes without state or allocation, so io can hold a partial frame across reads,
 * bound it by --max-packet-size and refuse a bad length itself, and call up once per whole frame instead of per
 * read. Everything past the frame's length (decoding, the handler, the answer) is the protocol's. */
struct rmq_proto_ops {
	/* ---- a connection ---- */
	/* Bytes io allocates (zeroed) for each connection: the protocol's struct, which starts with struct conn. */
	size_t conn_size;
	/* cn was accepted (or adopted from another core): its protocol state is set up. */
	void (*opened)(struct core *c, struct conn *cn);
	/* May a connection's first byte be `b`? false: counted as malformed and closed at once, before any length is
	 * awaited (a stray HTTP request is refused on its first read). */
	bool (*may_start)(uint8_t b);
	/* One complete frame of cn (header included): 0 consumed, 1 not consumed (cn paused: the same bytes come
	 * again on resume), < 0 cn was refused and is closing. */
	int (*frame)(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len);
	/* After each parse pass over cn's input: consumed (some frame completed), leftover (a partial frame stays). */
	void (*parsed)(struct core *c, struct conn *cn, bool consumed, bool leftover);
	/* After TLS/WebSocket input: partial when the transport holds an unfinished record or frame header. */
	void (*transport_input)(struct core *c, struct conn *cn, bool partial);
	/* A TLS/WebSocket handshake of cn failed (garbage, wrong protocol, bad certificate). */
	void (*handshake_failed)(struct core *c, struct conn *cn);
	/* cn's timer fired while CS_ACTIVE: true when the protocol handled it (re-armed or closed cn); false: the
	 * keep-alive expired and io closes cn. */
	bool (*conn_timer)(struct core *c, struct conn *cn);
	/* cn is in CS_HANDOFF and its receive (and any send) has ended: the protocol moves it to its owner core and
	 * releases its slot here. */
	void (*handoff)(struct core *c, struct conn *cn);
	/* cn has just become CS_CLOSING (once): the protocol lets go of it. abnormal: cn was established and ended
	 * without the protocol's own goodbye (EOF, error, timeout, refusal), so its will goes out. */
	void (*closed)(struct core *c, struct conn *cn, bool abnormal);
	/* cn is being freed (rmq_conn_reap): frees the protocol state it still holds. */
	void (*reap)(struct core *c, struct conn *cn);
	/* ---- the core ---- */
	/* Set-up, before `ready`: the core's logs opened (and replayed), its state announced. 0 or -errno (fatal). */
	int (*start)(struct core *c);
	/* A cross-core queue entry (enum xkind) arrived for c. */
	void (*xentry)(struct core *c, struct rmq_xq_entry *e);
	/* Releases what entry e holds without delivering it: dropped on a full outbox (its origin must not wait
	 * for it), or left in an outbox at teardown (dropped false). */
	void (*xfree)(struct core *c, struct rmq_xq_entry *e, bool dropped);
	/* A timer of kind TK_SESSION fired (session expiry, delayed will). */
	void (*session_timer)(struct core *c, struct rmq_timer *t);
	/* The bridge's delivery reports (rmq_bridge_done_fn; ud is the core). */
	void (*bridge_done)(void *ud, uint64_t cookie, int err, uint8_t reason);
	/* Each tick and each time the bridge's fd is readable: Kafka -> protocol records, periodic commits. */
	void (*poll)(struct core *c);
	/* SIGTERM, after the loop: the protocol says goodbye to its clients and writes out what it keeps. */
	void (*drain)(struct core *c);
	/* Teardown, before the connections go: what must outlive the process is marked to stay. */
	void (*stop)(struct core *c);
	/* Teardown, once the connections are reaped and the ring is gone: frees the protocol's per-core state. */
	void (*teardown)(struct core *c);
};

/* What io calls in the rooms beside the protocol: the store's state log and Kafka spool (their completions come back
 * through this core's ring, their writes are queued at the end of each loop turn) and the ops room's tick. Filled by
 * core/ops (rmq_ops_io_hooks), which sees every room, and set once per core by main before the thread starts; called
 * on the core's own reactor thread. */
struct rmq_io_hooks {
	/* OP_WAL: a completion of the state log's writes or fsyncs. */
	void (*log_done)(struct core *c, struct io_uring_cqe *cqe);
	/* End of each loop turn, with a state log: its staged records queued on the ring. */
	void (*log_prep)(struct core *c);
	/* Teardown: the state log closed (already done by a clean drain). */
	void (*log_close)(struct core *c);
	/* OP_SPOOL: a completion of the Kafka spool's log. */
	void (*spool_done)(struct core *c, struct io_uring_cqe *cqe);
	/* With a spool (c->kspool): may publishers paused on Kafka backpressure resume. */
	bool (*spool_writable)(struct core *c);
	/* End of each loop turn: the spool's replay and ring work. */
	void (*spool_pump)(struct core *c);
	/* Stop (drain true: write what is staged, SIGTERM) or teardown (false); NULL-safe on a core without one. */
	void (*spool_close)(struct core *c, bool drain);
	/* Each tick, before the protocol's poll ($SYS) and after it (the metrics snapshot). */
	void (*tick)(struct core *c);
	void (*tick_end)(struct core *c);
};

/* ---- probe.c ---------------------------------------------------------------------------------------------- */

/* Main thread, before any reactor starts: tries every kernel feature and limit the reactors need (io_uring setup
 * flags, buffer rings, multishot receive, MSG_RING, min_wait, memlock, open files) and fills b->ring_flags,
 * b->use_msg_ring and b->min_wait. 0, or -1 with the first missing one in err. */
int rmq_probe(struct broker *b, char *err, size_t errlen);

/* ---- reactor.c ------------------------------------------------------------------------------------------- */

/* The body of core c's thread: sets up its ring, buffers and state, runs the loop until c->stop, drains and tears
 * down. 0, or -1 when set-up failed (main then stops every core). */
int rmq_core_run(struct core *c);

/* A free submission queue entry of c's ring; submits what is queued to make room, so it never returns NULL. */
struct io_uring_sqe *rmq_core_sqe(struct core *c);

/* Queues an entry (enum xkind, its arg and ptr) for core `to`; rings its doorbell on the empty->non-empty edge.
 * A full queue parks the entry in c's outbox (flushed each iteration): control kinds are never lost, data kinds
 * (XK_PUBLISH, XK_RETAIN) beyond the outbox bound are dropped and counted, releasing ptr's reference. */
void rmq_core_xpush(struct core *c, int to, uint32_t kind, uint32_t arg, void *ptr);

/* rmq_wal_foreign_fn for the state log and the spool: while one drains, the other's completions reach it. */
void rmq_core_log_foreign(void *core, struct io_uring_cqe *cqe);

/* ---- conn.c: the connection slab ------------------------------------------------------------------------ */

/* A connection for accepted socket fd in a free slot (a new generation), opened by c->proto; NULL when out of
 * memory. */
struct conn *rmq_conn_new(struct core *c, int fd);

/* The live connection in slot with generation gen (the low RMQ_CONN_GEN_BITS compared), or NULL when the slot was freed
 * or reused since: how a late completion finds out its connection is gone. */
struct conn *rmq_conn_lookup(struct core *c, uint32_t slot, uint32_t gen);

/* n completions will name cn's slot (cookies handed out, mqtt/cookie.h): the slot is not reused before
 * rmq_conn_unhold took them all back, even when the connection closes meanwhile. rmq_conn_unhold: one came back
 * (slot < nslots); frees a closed connection's slot with the last one. */
void rmq_conn_hold(struct core *c, const struct conn *cn, uint32_t n);
void rmq_conn_unhold(struct core *c, uint32_t slot);

/* Frees cn's slot (its generation moves on) without touching the fd; cn itself is freed by rmq_conn_reap. */
void rmq_conn_release(struct core *c, struct conn *cn);

/* End of each loop iteration: frees the released connections no list of this iteration still links. */
void rmq_conn_reap(struct core *c);

/* ---- conn.c: input -------------------------------------------------------------------------------------- */

/* Arms (or re-arms) cn's multishot receive into the core's provided-buffer ring. */
void rmq_conn_arm_recv(struct core *c, struct conn *cn);

/* An OP_RECV completion of cn: bytes go through PROXY, TLS/WebSocket and MQTT framing; the buffer goes back to
 * the ring at once (partial packets are copied to cn's reassembly area); EOF or an error closes cn. */
void rmq_conn_on_recv(struct core *c, struct conn *cn, struct io_uring_cqe *cqe);

/* Parses what cn's reassembly area holds, as far as cn's pause bits allow. */
void rmq_conn_process_input(struct core *c, struct conn *cn);

/* Stops parsing cn's input for reason `why` (PAUSE_* bits); PAUSE_HANDOFF also cancels the receive. */
void rmq_conn_pause(struct core *c, struct conn *cn, uint8_t why);

/* Clears pause bit `why`; with no bit left, parses what waited and re-arms the receive. */
void rmq_conn_resume(struct core *c, struct conn *cn, uint8_t why);

/* Re-arms cn's keep-alive deadline (1.5x the keep-alive from now), or removes it for keep-alive 0. */
void rmq_conn_touch_keepalive(struct core *c, struct conn *cn);

/* ---- conn.c: output: staged in cn's out buffer, flushed once per loop iteration, one send in flight ------ */

/* n bytes of room at the end of cn's out buffer, to be filled and then committed. NULL when cn is closing, out of
 * memory, or over the slow-consumer bound (cn is then marked to be disconnected at flush time, counted). */
uint8_t *rmq_conn_reserve(struct core *c, struct conn *cn, size_t n);

/* Commits n bytes written into what rmq_conn_reserve returned, and marks cn for the end-of-iteration flush. */
void rmq_conn_commit(struct core *c, struct conn *cn, size_t n);

/* Encodes p for cn's protocol version into its out buffer. 0, -ENOBUFS (see rmq_conn_reserve), -E2BIG when p is over
 * the client's Maximum Packet Size even without its droppable properties (not sent, counted), or the codec's error. */
int rmq_conn_write_packet(struct core *c, struct conn *cn, const struct rmq_packet *p);

/* A PUBACK/PUBREC/PUBREL/PUBCOMP (type) for packet id pid with reason (v5; 0 = success). As rmq_conn_write_packet. */
int rmq_conn_write_ack(struct core *c, struct conn *cn, uint8_t type, uint16_t pid, uint8_t reason);

/* End of each loop iteration: one send per connection that has staged bytes and no send in flight. */
void rmq_conn_flush_all(struct core *c);

/* An OP_SEND completion of cn (res: bytes sent or -errno): sends the rest, shuts down a closing cn once empty. */
void rmq_conn_on_send(struct core *c, struct conn *cn, int res);

/* ---- conn.c: closing ------------------------------------------------------------------------------------- */

/* Closes cn: c->proto->closed lets go of it (an established cn that ends `abnormal`, without the protocol's
 * goodbye, sends its will); staged bytes still leave within a linger time, then the socket is shut and the slot
 * released. Idempotent. */
void rmq_conn_close(struct core *c, struct conn *cn, bool abnormal);

/* A v5 DISCONNECT with reason (3.x: none, the spec has no server DISCONNECT) then rmq_conn_close(abnormal). */
void rmq_conn_disconnect(struct core *c, struct conn *cn, uint8_t reason);

/* The linger time of a closing cn expired with bytes unsent: shut it now. */
void rmq_conn_force_close(struct core *c, struct conn *cn);

/* tls_reload.c: SIGHUP certificate reload. init/reload/free: main thread (init before the reactors start,
 * free after they stopped); rmq_core_tls_ctx: the core's own thread, at a TLS accept. rmq_tls_reload returns 0,
 * or -EINVAL with the reason in err (the running context stays). */
void rmq_core_tls_init(struct broker *b);
struct rmq_tls_ctx *rmq_core_tls_ctx(struct core *c);
int rmq_tls_reload(struct broker *b, char *err, size_t errlen);
void rmq_core_tls_free(struct broker *b);

#endif
