/* Kafka -> MQTT on the reactor: records from this core's bridge consumer become publishes through the normal routing
 * (local trie, other cores, retained store). Reactor thread only (the commit hook may run on any core).
 *
 * A record's message carries the bridge's token in its on_free hook: the message is freed when the last session
 * that holds it let go (QoS 0 written out, QoS 1/2 acknowledged, cross-core copies delivered), which is exactly
 * "handed to every matching session", so the bridge may then commit its offset. Offline persistent sessions
 * queue a copy without the hook (session.c): stored in the queue counts as handed over. */
#include <stdatomic.h>

#include "index/msg.h"
#include "io/reactor.h"
#include "mqtt/mqtt.h"
#include "ringmq/bridge.h"

/* The retained store keeps a copy of its own without the hook: a retained command may stay for days, and its
 * partition's commits must not wait for it. Replicated to every core as publish_ctx() does. */
static void retain_record(struct core *c, const struct rmq_bridge_rec *r)
{
	struct rmq_publish rp = r->pub;
	if (r->clear_retained)
		rp.payload = (struct rmq_str){0}; /* [MQTT-3.3.1-10] empty retained payload = clear */
	struct rmq_msg *m = rmq_msg_new(&rp);
	if (!m)
		return;
	m->origin_core = (uint16_t)c->id;
	m->stamp = atomic_fetch_add_explicit(&c->b->stamp, 1, memory_order_relaxed) + 1;
	for (int k = 0; k < c->b->ncores; k++)
		if (k != c->id)
			rmq_core_xpush(c, k, XK_RETAIN, 0, rmq_msg_ref(m));
	rmq_publish_retain_store(c, m); /* takes our reference */
}

static void on_record(void *ud, const struct rmq_bridge_rec *r)
{
	struct core *c = ud;
	if (r->store_only) { /* the cluster's shared retained store: every node keeps it, nobody is sent it now */
		retain_record(c, r);
		rmq_bridge_rec_done(r->token);
		return;
	}
	if (r->pub.retain) {
		retain_record(c, r);
		if (r->clear_retained) {
			rmq_bridge_rec_done(r->token); /* a tombstone clears; it is not a command to deliver */
			return;
		}
	}
	struct rmq_publish p = r->pub;
	p.retain = false; /* stored above; the hooked copy must not be kept by the retained store */
	struct rmq_msg *m = rmq_msg_new(&p);
	if (!m)
		return; /* never finished: the partition commits no further and the record comes again on restart */
	m->on_free = rmq_bridge_rec_done;
	m->on_free_ud = r->token;
	m->from_cluster = r->cluster;
	c->st.msgs_in++;
	rmq_publish_from_core(c, m, NULL);
	rmq_msg_unref(m);
}

void rmq_kafka_in_poll(struct core *c)
{
	if (c->bc && !c->stopping)
		rmq_bridge_core_consume(c->bc, on_record, c);
}
