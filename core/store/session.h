/* A session's data: subscriptions, outbound inflight window and queue, inbound QoS 2 ids, expiry and delayed will.
 * Declared in the store because the state log writes and rebuilds it (persist.c); only mqtt/session.c and the code
 * it names change a live one (mqtt/mqtt.h). Touched only by the thread of the core that owns the client id. */
#ifndef RMQ_CORE_STORE_SESSION_H
#define RMQ_CORE_STORE_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "io/timer.h"
#include "ringmq/proto.h"

struct conn;
struct rmq_msg;

/* ---- a session ----------------------------------------------------------------------------- */
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

#endif
