/* The completion cookie: the one 64-bit name of "this connection's ack-window entry" handed to everything that
 * completes later (Kafka delivery reports and the Kafka spool, the state log's durability, other cores' route
 * acks for a SUBACK). Reactor thread of the connection's core. */
#ifndef RMQ_MQTT_COOKIE_H
#define RMQ_MQTT_COOKIE_H

#include <assert.h>
#include <stdint.h>

#include "mqtt/mqtt.h"
#include "ringmq/config.h"

/* slot (bits 0..23) | generation (24..47) | ack-window sequence (48..63). A SUBACK wait uses sequence 0. */
#define RMQ_COOKIE_SLOT_BITS RMQ_CONN_SLOT_BITS
#define RMQ_COOKIE_GEN_BITS RMQ_CONN_GEN_BITS
#define RMQ_COOKIE_SEQ_BITS RMQ_ACKWIN_SEQ_BITS
#define RMQ_COOKIE_GEN_SHIFT RMQ_COOKIE_SLOT_BITS
#define RMQ_COOKIE_SEQ_SHIFT (RMQ_COOKIE_SLOT_BITS + RMQ_COOKIE_GEN_BITS)
/* No connection: the all-ones slot is never allocated (RMQ_CONN_SLOTS_MAX). */
#define RMQ_COOKIE_NONE UINT64_MAX

_Static_assert(RMQ_COOKIE_SLOT_BITS + RMQ_COOKIE_GEN_BITS + RMQ_COOKIE_SEQ_BITS == 64, "the fields fill 64 bits");
_Static_assert(RMQ_CONN_SLOTS_MAX < (1ull << RMQ_COOKIE_SLOT_BITS), "every slot number fits, all-ones stays free");
_Static_assert(RMQ_MAX_INFLIGHT_LIMIT <= RMQ_ACKWIN_CAP_MAX, "a window's offsets are unique modulo 2^SEQ_BITS");
_Static_assert(RMQ_COOKIE_GEN_BITS >= 24, "a generation that wraps only after 16M reuses of one slot");

/* The cookie of cn's ack-window entry `seq` (rmq_ackwin_next_seq), or of its SUBACK wait (seq 0). */
static inline uint64_t rmq_cookie_make(const struct conn *cn, uint32_t seq)
{
	assert(cn->slot < RMQ_CONN_SLOTS_MAX && seq <= RMQ_ACKWIN_SEQ_MASK);
	return (uint64_t)cn->slot | (uint64_t)(cn->gen & RMQ_CONN_GEN_MASK) << RMQ_COOKIE_GEN_SHIFT |
	       (uint64_t)seq << RMQ_COOKIE_SEQ_SHIFT;
}

/* n completions naming cn will come back through rmq_cookie_take: until then its slot is not reused. */
static inline void rmq_cookie_hold(struct core *c, const struct conn *cn, uint32_t n)
{
	if (n)
		rmq_conn_hold(c, cn, n);
}

/* One completion of a held cookie came back: the connection it names if that is still open (with its window
 * sequence in *seq), else NULL. Gives the hold back either way. */
struct conn *rmq_cookie_take(struct core *c, uint64_t cookie, uint32_t *seq);

#endif
