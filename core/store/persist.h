/* This core's durable state log (--data-dir DIR/core-N/state): retained messages, persistent sessions, their
 * subscriptions, offline queues and QoS 1/2 inflight state as records in a core/store/wal.h log. Reactor thread of c. */
#ifndef RMQ_CORE_PERSIST_H
#define RMQ_CORE_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ringmq/proto.h"
#include "store/wal.h"

/* ---- records (payload of one wal record; the wal type is the record type) -------------------------------
 * Every payload starts with a version byte (RMQ_PERSIST_VER); then the fields its type uses, in the order of
 * struct rmq_persist_rec, little-endian. A message is stored as an MQTT 5 PUBLISH packet (the codec already
 * knows every property; no second format to keep in step with it). */
#define RMQ_PERSIST_VER 1

enum rmq_persist_type {
	RMQ_PR_SESS_PUT = 1,  /* session exists: proto version, expiry interval, ACL username (filter), expiry deadline */
	RMQ_PR_SESS_DEL,      /* session ended (expired, clean start, became non-persistent) */
	RMQ_PR_SUB_ADD,       /* subscription added or replaced: options, v5 subscription id, filter */
	RMQ_PR_SUB_DEL,
	RMQ_PR_QUEUE_PUSH,    /* message appended to the offline queue */
	RMQ_PR_QUEUE_POP,     /* queue head left: into the inflight window as pid, or dropped (pid 0) */
	RMQ_PR_INFL_ADD,      /* outgoing QoS 1/2 message sent as pid (state PUBLISH), or awaiting PUBCOMP (PUBREL) */
	RMQ_PR_INFL_REL,      /* PUBREC arrived: pid now awaits PUBCOMP */
	RMQ_PR_INFL_DEL,      /* PUBACK / PUBCOMP / expired */
	RMQ_PR_QOS2_ADD,      /* incoming QoS 2 pid awaiting PUBREL */
	RMQ_PR_QOS2_DEL,
	RMQ_PR_RET_SET,       /* retained message (stamp orders sets across cores) */
	RMQ_PR_RET_CLR,       /* retained topic cleared */
	RMQ_PR_SHARE_TAKE,    /* a $share member left group share_key: its queued and unacked QoS 1 ones of it left */
	RMQ_PR__COUNT
};

struct rmq_persist_rec {
	uint16_t type;
	struct rmq_str id;          /* client id */
	uint8_t proto_version;
	uint32_t expiry;            /* v5 Session Expiry Interval (0xFFFFFFFF never) */
	uint8_t options;            /* subscription options */
	uint32_t sub_id;
	struct rmq_str filter;      /* subscription filter, or the topic of RET_CLR */
	uint16_t pid;
	uint8_t qos, retain, state; /* state: enum out_state of core.h */
	uint64_t share_key;
	uint8_t nids;
	uint32_t ids[RMQ_MAX_SUB_IDS];
	uint64_t expire_wall_ms;    /* message or session expiry on CLOCK_REALTIME, 0 = none */
	uint64_t stamp;
	const uint8_t *msg;         /* encoded v5 PUBLISH; NULL/0 for an inflight entry in PUBREL state */
	uint32_t msg_len;
};

/* Encodes r into buf[0..cap). Returns the length (also when it exceeds cap: call again with a bigger buffer),
 * or -EINVAL (unknown type). A NULL r->msg with a msg_len reserves the message's bytes at the end. */
ssize_t rmq_persist_encode(uint8_t *buf, size_t cap, const struct rmq_persist_rec *r);
/* Decodes a payload of wal type `type`; views point into data. 0, -EPROTO (unknown version or type) or -EBADMSG
 * (truncated, trailing bytes). */
int rmq_persist_decode(uint16_t type, const uint8_t *data, size_t len, struct rmq_persist_rec *r);
/* Encodes pub as a v5 PUBLISH (packet id 1 for QoS > 0: it is rewritten per delivery). Length or negative. */
ssize_t rmq_persist_msg_encode(uint8_t *buf, size_t cap, const struct rmq_publish *pub);

/* ---- the core's log ------------------------------------------------------------------------------------ */
struct core;
struct session;
struct outmsg;
struct qent;
struct rmq_msg;
struct io_uring_cqe;

/* Main thread: the --cores count DIR's state was written with (its meta file), 0 when DIR holds none yet, or
 * -errno with err filled when the meta file cannot be read. */
int rmq_persist_meta_cores(const char *dir, char *err, size_t errlen);
/* Main thread, before any core starts: creates DIR and checks DIR/meta against --cores. Sessions are hashed
 * to cores by client id, so a log written with another core count holds sessions the new owner core would
 * never read: start-up refuses (naming the old count) instead of silently losing them. 0 or -errno, err set. */
int rmq_persist_meta_check(const char *dir, int ncores, char *err, size_t errlen);

/* Core set-up, before accepting: opens DIR/core-N/state, rebuilds this core's state from it through
 * c->store_hooks (store/store.h), prints one line. The caller then replicates the subscriptions' routes
 * (rmq_routes_restore). 0 or -errno (message printed). */
int rmq_persist_open(struct core *c);
/* Once per loop iteration: queues the log's due disk work on c's ring. */
void rmq_persist_prep(struct core *c);
/* An OP_WAL completion. */
void rmq_persist_complete(struct core *c, struct io_uring_cqe *cqe);
/* Shutdown: writes (and syncs) what is staged, closes; c->persist is NULL afterwards (nothing more logged). */
void rmq_persist_close(struct core *c);
void rmq_persist_stats(const struct core *c, struct rmq_wal_stats *st);
/* Compacts now (the snapshot re-appends the live state); normally automatic. 0 or -errno (-EBUSY: running). */
int rmq_persist_compact(struct core *c);

/* State changes, each logged as it happens. Callers test c->persist (and s->durable) first. */
void rmq_persist_session_connected(struct core *c, struct session *s);  /* after CONNECT settled s->clean */
void rmq_persist_session_offline(struct core *c, struct session *s);
void rmq_persist_session_del(struct core *c, struct session *s);
void rmq_persist_sub_add(struct core *c, struct session *s, const uint8_t *f, uint16_t len, uint8_t options,
			 uint32_t sub_id);
void rmq_persist_sub_del(struct core *c, struct session *s, const uint8_t *f, uint16_t len);
void rmq_persist_queue_push(struct core *c, struct session *s, const struct qent *q);
void rmq_persist_queue_pop(struct core *c, struct session *s, uint16_t pid);
void rmq_persist_inflight_add(struct core *c, struct session *s, const struct outmsg *o);
void rmq_persist_pid(struct core *c, struct session *s, enum rmq_persist_type type, uint16_t pid);
void rmq_persist_share_take(struct core *c, struct session *s, uint64_t share_key);
void rmq_persist_retain(struct core *c, const struct rmq_msg *m, bool clear);

/* Acknowledgement of a stored QoS 1/2 PUBLISH. Between begin and end, records appended on this core and
 * messages pushed to other cores (rmq_persist_hold_remote) count as holds on the connection's ack window
 * entry `cookie` (mqtt/publish.c's bridge cookie). end returns how many completions the entry must wait for
 * (0: nothing was stored, or --fsync never). */
bool rmq_persist_waits(const struct core *c);
void rmq_persist_pub_begin(struct core *c, uint64_t cookie);
uint16_t rmq_persist_pub_end(struct core *c, bool *failed);
/* Before pushing m to another core inside a publish scope: returns the xq arg to push with (1 = the receiver
 * answers XK_DURABLE once what it stored is durable), 0 outside a scope. */
uint32_t rmq_persist_hold_remote(struct core *c, struct rmq_msg *m);
/* The origin's push of such an entry was dropped (cross-core queue full): release its hold. */
void rmq_persist_remote_dropped(struct core *c, const struct rmq_msg *m);
/* Receiver side around rmq_publish_deliver_remote / rmq_publish_retain_store of an entry pushed with arg 1. */
void rmq_persist_remote_begin(struct core *c, uint64_t cookie, int origin);
void rmq_persist_remote_end(struct core *c, uint64_t cookie, int origin);
/* Origin side: an XK_DURABLE arrived (err: the receiver's log failed). */
void rmq_persist_on_durable(struct core *c, uint64_t cookie, bool err);
/* A Kafka record's offset is committed when its message is freed (kafka_in.c). Around storing a copy for an
 * offline session: begin returns true if the store will hold a ref on m until the copy's record is durable
 * (false: --fsync never, or inside another scope); then call end. */
bool rmq_persist_hold_begin(struct core *c, const struct rmq_msg *m);
void rmq_persist_hold_end(struct core *c, struct rmq_msg *m);
/* Around a persistent session's SUBSCRIBE (cookie: connection gen << 32 | slot): end returns true when its
 * SUBACK must wait (rmq_subscribe_durable is then called once the records are durable). */
void rmq_persist_sub_begin(struct core *c, uint64_t cookie);
bool rmq_persist_sub_end(struct core *c);
/* Around logging the state change an acknowledgement reports (an outgoing PUBREL after the client's PUBREC, a PUBCOMP
 * after its PUBREL; cookie: the connection and packet id, mqtt/cookie.h): end returns true when the ack must wait
 * until those records are durable (rmq_session_ack_durable then sends it), false to send it now. Without the wait, a
 * kill -9 could take the session back to a state the client has already left: a PUBLISH resent after its PUBCOMP
 * (delivered twice), or a packet id still awaiting PUBREL that the client reuses (a new message taken for a
 * duplicate). */
void rmq_persist_ack_begin(struct core *c, uint64_t cookie, uint8_t type);
bool rmq_persist_ack_end(struct core *c);

#endif
