/* Unit tests for the completion cookie (core/mqtt/cookie.h): a completion that arrives after its connection
 * closed never releases an ack of a later connection, however often the slot was reused meanwhile. */
#include <criterion/criterion.h>
#include <string.h>

#include "core.h"

/* mqtt/publish.c's bridge cookie as on main: slot (20 bits) | generation (12 bits) | sequence (32 bits). */
#define OLD_COOKIE(cn, seq) ((uint64_t)((cn)->slot & 0xfffff) | (uint64_t)((cn)->gen & 0xfff) << 20 | (uint64_t)(seq) << 32)

static struct broker tbroker;

static void core_up(struct core *c)
{
	memset(c, 0, sizeof(*c));
	rmq_config_defaults(&tbroker.cfg);
	tbroker.cfg.max_inflight = 8;
	tbroker.out_limit = 1 << 20;
	tbroker.ncores = 1;
	c->b = &tbroker;
	rmq_wheel_init(&c->wheel, 0, 100);
}

static void core_down(struct core *c)
{
	for (uint32_t i = 0; i < c->nslots; i++)
		if (c->slots[i])
			conn_release(c, c->slots[i]);
	c->dirty = NULL;
	conn_reap(c);
	free(c->slots);
	free(c->gens);
	free(c->free_slots);
}

static struct conn *open_conn(struct core *c)
{
	struct conn *cn = conn_new(c, -1);
	cr_assert_not_null(cn);
	cn->state = CS_ACTIVE;
	cn->version = RMQ_V5;
	return cn;
}

static void close_conn(struct core *c, struct conn *cn)
{
	conn_release(c, cn);
	c->dirty = NULL;
	conn_reap(c);
}

Test(core_cookie, late_completion_never_releases_a_later_connections_ack)
{
	struct core c;
	core_up(&c);
	/* A QoS 1 PUBLISH waits for Kafka (one completion), then its car goes away. */
	struct conn *a = open_conn(&c);
	uint32_t seq;
	cr_assert_eq(rmq_ackwin_push(&a->acks, 1, RMQ_PUBACK, false, 0, &seq), 0);
	uint64_t late = OLD_COOKIE(a, seq);
	uint32_t slot_a = a->slot;
	close_conn(&c, a);
	/* The outage lasts: the car reconnects 4,096 times, each time on the slot freed last. */
	for (int i = 0; i < 4095; i++)
		close_conn(&c, open_conn(&c));
	struct conn *b = open_conn(&c);
	cr_assert_eq(rmq_ackwin_push(&b->acks, 7, RMQ_PUBACK, false, 0, &seq), 0);
	/* Kafka comes back: the first connection's delivery report arrives. */
	ackwin_complete_cookie(&c, late, 0);
	cr_assert_eq(b->acks.count, 1, "slot %u (was %u): the late report released the new connection's PUBACK",
		     b->slot, slot_a);
	cr_assert_eq(b->out.len, 0, "no PUBACK may be staged for the new connection");
	core_down(&c);
}
