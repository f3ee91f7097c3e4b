/* The completion cookie's way back: a completion names a connection's slot, which stayed reserved for it.
 * Reactor thread of the connection's core. */
#include "mqtt/cookie.h"

#include "io/reactor.h"

struct conn *rmq_cookie_take(struct core *c, uint64_t cookie, uint32_t *seq)
{
	uint32_t slot = (uint32_t)(cookie & RMQ_CONN_SLOTS_MAX);
	uint32_t gen = (uint32_t)(cookie >> RMQ_COOKIE_GEN_SHIFT) & RMQ_CONN_GEN_MASK;
	*seq = (uint32_t)(cookie >> RMQ_COOKIE_SEQ_SHIFT);
	assert(cookie != RMQ_COOKIE_NONE);
	if (slot >= c->nslots)
		return NULL;  /* never handed out by this core (unit tests name no connection) */
	struct conn *cn = rmq_conn_lookup(c, slot, gen);
	/* A slot held by a cookie is never reused: a live connection there is the one the cookie names. */
	assert(!c->slots[slot] || cn);
	rmq_conn_unhold(c, slot);
	return cn;
}
