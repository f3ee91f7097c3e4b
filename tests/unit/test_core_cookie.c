/* Unit tests for the completion cookie (core/mqtt/cookie.h): a completion that arrives after its connection
 * closed never releases an ack of a later connection, however often the slot was reused meanwhile. */
#include <criterion/criterion.h>
#include <string.h>

#include "ops/config.h"
#include "io/reactor.h"
#include "mqtt/cookie.h"

static struct rmq_security tsec;  /* no password file, no ACL */
static struct broker tbroker = {.sec = &tsec};

static void core_up(struct core *c)
{
	memset(c, 0, sizeof(*c));
	rmq_config_defaults(&tbroker.cfg);
	tbroker.cfg.max_inflight = 8;
	tbroker.out_limit = 1 << 20;
	tbroker.ncores = 1;
	c->b = &tbroker;
	c->proto = &rmq_mqtt_proto;
	cr_assert_eq(rmq_mqtt_core_new(c), 0);
	rmq_wheel_init(&c->wheel, 0, 100);
}

/* No loop flushes here: forget the staged output so that rmq_conn_reap frees every connection. */
static void undirty(struct core *c)
{
	for (struct conn *d = c->dirty; d; d = d->next_dirty)
		d->dirty = false;
	c->dirty = NULL;
}

static void core_down(struct core *c)
{
	for (uint32_t i = 0; i < c->nslots; i++)
		if (c->slots[i])
			rmq_conn_release(c, c->slots[i]);
	undirty(c);
	rmq_conn_reap(c);
	free(c->slots);
	free(c->gens);
	free(c->holds);
	free(c->free_slots);
	rmq_mqtt_core_free(c);
}

static struct conn *open_conn(struct core *c)
{
	struct conn *cn = rmq_conn_new(c, -1);
	cr_assert_not_null(cn);
	cn->state = CS_ACTIVE;
	cn->version = RMQ_V5;
	return cn;
}

static void close_conn(struct core *c, struct conn *cn)
{
	rmq_conn_release(c, cn);
	undirty(c);
	rmq_conn_reap(c);
}

Test(core_cookie, late_completion_never_releases_a_later_connections_ack)
{
	struct core c;
	core_up(&c);
	/* A QoS 1 PUBLISH waits for Kafka (one completion), then its car goes away. */
	struct conn *a = open_conn(&c);
	uint32_t seq;
	cr_assert_eq(rmq_ackwin_push(&mqtt_conn(a)->acks, 1, RMQ_PUBACK, false, 0, &seq), 0);
	uint64_t late = rmq_cookie_make(a, seq);
	rmq_cookie_hold(&c, a, 1);  /* as rmq_mqtt_on_publish does when the bridge promised a completion */
	uint32_t slot_a = a->slot;
	close_conn(&c, a);
	/* The outage lasts: the car reconnects 4,096 times, each time on the slot freed last. */
	for (int i = 0; i < 4095; i++)
		close_conn(&c, open_conn(&c));
	struct conn *b = open_conn(&c);
	/* Whatever the generation's width: a slot a completion may still name is not handed out again. */
	cr_assert_neq(b->slot, slot_a, "slot %u reused while a delivery report for it is outstanding", slot_a);
	cr_assert_eq(rmq_ackwin_push(&mqtt_conn(b)->acks, 7, RMQ_PUBACK, false, 0, &seq), 0);
	/* Kafka comes back: the first connection's delivery report arrives. */
	rmq_publish_complete_cookie(&c, late, 0);
	cr_assert_eq(mqtt_conn(b)->acks.count, 1, "slot %u (was %u): the late report released the new connection's PUBACK",
		     b->slot, slot_a);
	cr_assert_eq(b->out.len, 0, "no PUBACK may be staged for the new connection");
	/* The report gave the slot back: the next connection gets it. */
	struct conn *d = open_conn(&c);
	cr_assert_eq(d->slot, slot_a);
	core_down(&c);
}

Test(core_cookie, live_connection_completes_across_sequence_wrap)
{
	struct core c;
	core_up(&c);
	struct conn *cn = open_conn(&c);
	/* More entries than the 16-bit sequence space: each completes through its cookie, in order. */
	for (uint32_t i = 0; i < 70000; i++) {
		uint32_t seq;
		cr_assert_eq(rmq_ackwin_push(&mqtt_conn(cn)->acks, (uint16_t)(i % 65535 + 1), RMQ_PUBACK, false, 0, &seq), 0);
		cr_assert_eq(seq, i & RMQ_ACKWIN_SEQ_MASK);
		uint64_t ck = rmq_cookie_make(cn, seq);
		rmq_cookie_hold(&c, cn, 1);
		rmq_publish_complete_cookie(&c, ck, 0);
		cr_assert_eq(mqtt_conn(cn)->acks.count, 0, "entry %u acknowledged", i);
	}
	cr_assert_eq(c.holds[cn->slot], 0, "every hold given back");
	cr_assert_gt(cn->out.len, 0);
	core_down(&c);
}

Test(core_cookie, fields_round_trip)
{
	struct conn cn = {.slot = RMQ_CONN_SLOTS_MAX - 1, .gen = 0xabcdef12};
	uint64_t ck = rmq_cookie_make(&cn, RMQ_ACKWIN_SEQ_MASK);
	cr_assert_neq(ck, RMQ_COOKIE_NONE, "the largest real cookie is not the none value");
	cr_assert_eq(ck & RMQ_CONN_SLOTS_MAX, cn.slot);
	cr_assert_eq((ck >> RMQ_COOKIE_GEN_SHIFT) & RMQ_CONN_GEN_MASK, cn.gen & RMQ_CONN_GEN_MASK);
	cr_assert_eq(ck >> RMQ_COOKIE_SEQ_SHIFT, RMQ_ACKWIN_SEQ_MASK);
}
