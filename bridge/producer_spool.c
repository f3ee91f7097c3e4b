/* The spool's side of the producer (--spool, the core's kafka_spool.c): render without producing, produce what was
 * stored, and take back what waits in librdkafka when the spool takes over. The owning reactor only.
 *
 * rmq_bridge_render_all renders without producing (the core stores the
 * result), rmq_bridge_produce_rendered replays a stored message (its pending is flagged `replay` and completes
 * through the core's replay function), and rmq_bridge_core_reclaim takes back what waits in librdkafka's queue
 * when the spool takes over (rd_kafka_purge; the purged reports are kept, ordered by pending `order`, and
 * handed to the spool; their pendings complete when the spool says the copies are durable). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "ringmq/clock.h"
#include "producer_internal.h"

/* ---- the spool's side (--spool): render without producing, produce what was rendered ----------------- */

static int hblob_header_add(void *ud, const char *name, size_t namelen, const void *v, size_t vlen)
{
	return rmq_bridge_hblob_add(ud, name, namelen, v, vlen);
}

/* Cluster unit u of m for the spool: the same record as cluster_one() produces, its origin header in the blob. */
static int cluster_spool(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, int u, int64_t ts,
			 rmq_bridge_kmsg_fn fn, void *ud)
{
	struct rmq_cluster_out o;
	int rc = rmq_bridge_cluster_render(bc->b->cluster, bc->id, m, u, &o);
	if (o.hdrs)
		rd_kafka_headers_destroy(o.hdrs); /* the spool carries headers as a blob */
	const char *node = rmq_bridge_cluster_node(bc->b->cluster);
	if (rc == 0 && (rc = rmq_bridge_hblob_begin(&bc->hblob, ts, true)) == 0)
		rc = rmq_bridge_hblob_add(&bc->hblob, RMQ_CLUSTER_ORIGIN_HEADER, strlen(RMQ_CLUSTER_ORIGIN_HEADER), node,
					  strlen(node));
	if (rc) {
		bc->st.failed++;
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	struct rmq_bridge_kmsg k = {.topic = o.topic, .topic_len = strlen(o.topic), .has_key = true, .key = o.key,
				    .key_len = o.keylen, .value = o.val, .value_len = o.vallen, .headers = bc->hblob.p,
				    .headers_len = bc->hblob.len};
	return fn(ud, &k);
}

int rmq_bridge_render_all(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, rmq_bridge_kmsg_fn fn,
			  void *ud)
{
	struct rmq_bridge *b = bc->b;
	int routes[RMQ_BRIDGE_MAX_ROUTES];
	if (!m->pub->topic.len)
		return -EINVAL;
	int n = rmq_prod_match(b, m->pub->topic, routes);
	int units = b->cluster ? rmq_bridge_cluster_units(b->cluster, bc->id, m->pub) : 0;
	if (n == 0 && units == 0) {
		bc->st.unrouted++;
		return 0;
	}
	int64_t ts = (int64_t)rmq_clock_wall_ms();
	int total = n;
	for (int u = RMQ_CLUSTER_DATA; u <= RMQ_CLUSTER_RETAIN; u <<= 1) {
		int rc = units & u ? cluster_spool(bc, m, u, ts, fn, ud) : 0;
		if (rc < 0)
			return rc;
		total += units & u ? 1 : 0;
	}
	for (int i = 0; i < n; i++) {
		const struct rmq_bridge_route *r = &b->routes[routes[i]];
		struct rendered x;
		int rc = rmq_prod_render(bc, r, m, ts, false, &x);
		if (rc == 0 && (rc = rmq_bridge_hblob_begin(&bc->hblob, ts, r->headers)) == 0 && r->headers)
			rc = rmq_prod_headers_each(m, hblob_header_add, &bc->hblob);
		if (rc) {
			bc->st.failed++;
			return rc == -ENOMEM ? rc : -EINVAL;
		}
		const char *topic = x.topic ? x.topic : r->topic.src;
		struct rmq_bridge_kmsg k = {.topic = topic, .topic_len = strlen(topic), .has_key = x.key != NULL,
					    .key = x.key, .key_len = x.keylen, .value = x.val, .value_len = x.vallen,
					    .headers = bc->hblob.p, .headers_len = bc->hblob.len};
		if ((rc = fn(ud, &k)) < 0)
			return rc;
	}
	bc->st.published++;
	return total;
}

/* Rebuilds the librdkafka headers of a spooled message: 0, or -EINVAL for a blob that does not parse. */
static int hblob_decode(const struct rmq_bridge_kmsg *k, int64_t *ts, rd_kafka_headers_t **out)
{
	bool has;
	size_t pos;
	*out = NULL;
	if (rmq_bridge_hblob_open(k->headers, k->headers_len, ts, &has, &pos))
		return -EINVAL;
	if (!has)
		return pos == k->headers_len ? 0 : -EINVAL;
	rd_kafka_headers_t *h = rd_kafka_headers_new(MAX_HEADERS_FIXED);
	struct rmq_bridge_hdr hd;
	int rc;
	while ((rc = rmq_bridge_hblob_next(k->headers, k->headers_len, &pos, &hd)) > 0)
		rd_kafka_header_add(h, hd.name, (ssize_t)hd.namelen, hd.value, (ssize_t)hd.vlen);
	if (rc < 0) {
		rd_kafka_headers_destroy(h);
		return -EINVAL;
	}
	*out = h;
	return 0;
}

int rmq_bridge_produce_rendered(struct rmq_bridge_core *bc, const struct rmq_bridge_kmsg *k, uint64_t cookie)
{
	if (bc->defer)
		rmq_prod_drain_deferred(bc);
	/* Half the queue at most: replays must not starve the direct QoS 0 traffic of room (QoS 1/2 go to the
	 * spool anyway while it holds anything). */
	int half = bc->prod->max_msgs / 2;
	if (bc->defer || rd_kafka_outq_len(bc->prod->rk) >= (half > 0 ? half : 1))
		return -ENOBUFS;
	if (!k->topic_len || !rmq_bridge_kafka_topic_valid(k->topic, k->topic_len))
		return -EINVAL;
	struct rendered x = {.key = k->has_key ? (k->key ? k->key : "") : NULL, .keylen = k->key_len,
			     .val = k->value, .vallen = k->value_len};
	if (hblob_decode(k, &x.ts, &x.hdrs))
		return -EINVAL;
	bc->topic.len = 0;
	if (rmq_bridge_buf_put(&bc->topic, k->topic, k->topic_len) || rmq_bridge_buf_put(&bc->topic, "", 1)) {
		if (x.hdrs)
			rd_kafka_headers_destroy(x.hdrs);
		return -ENOMEM;
	}
	x.topic = bc->topic.p;
	struct pending *pd = rmq_prod_pending_get(bc);
	if (!pd) {
		if (x.hdrs)
			rd_kafka_headers_destroy(x.hdrs);
		return -ENOMEM;
	}
	pd->cookie = cookie;
	pd->replay = true;
	atomic_init(&pd->remaining, 1);
	rd_kafka_resp_err_t e = rmq_prod_produce(bc->prod, -1, &x, pd);
	if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
		bc->st.produced++;
		return 0;
	}
	if (x.hdrs)
		rd_kafka_headers_destroy(x.hdrs);
	rmq_prod_pending_put(bc, pd);
	if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return -ENOBUFS;
	bc->st.failed++;
	rmq_prod_kafka_refused(bc, e, x.topic);
	return rmq_prod_kafka_errno(e);
}

/* ---- reclaiming what librdkafka holds when Kafka goes down (--spool) --------------------------------- */

/* A purged message, copied out of its delivery report. */
struct reclaimed {
	struct pending *pd;          /* NULL: QoS 0 or ack-after broker, nobody waits for it */
	size_t idx;                  /* purge (delivery report) order: the tie-break within one pending */
	char *topic;
	void *key, *val, *hb;        /* key NULL: null key; hb: the spool's header blob */
	size_t keylen, vallen, hblen;
};

static void reclaimed_free(struct reclaimed *r)
{
	free(r->topic);
	free(r->key);
	free(r->val);
	free(r->hb);
}

/* The delivery report of a purged message inside rmq_bridge_core_reclaim: keeps a copy. 0, or < 0 (then it fails as
 * any purged message does: a replay is rewound in the spool, a publish gets its error). */
int rmq_prod_reclaim_keep(struct rmq_bridge_core *bc, const rd_kafka_message_t *m)
{
	struct pending *pd = m->_private;
	if (pd && pd->replay)
		return -EINVAL;
	if (bc->nrcl == bc->caprcl) {
		size_t cap = bc->caprcl ? bc->caprcl * 2 : 256;
		struct reclaimed *n = realloc(bc->rcl, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		bc->rcl = n;
		bc->caprcl = cap;
	}
	struct reclaimed *r = &bc->rcl[bc->nrcl];
	*r = (struct reclaimed){.pd = pd, .idx = bc->nrcl, .keylen = m->key_len, .vallen = m->len};
	rd_kafka_timestamp_type_t tt;
	rd_kafka_headers_t *h = NULL;
	bool has_h = rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR;
	struct rmq_bbuf hb = {0};
	int rc = rmq_bridge_hblob_begin(&hb, rd_kafka_message_timestamp(m, &tt), has_h);
	const char *name;
	const void *v;
	size_t n;
	for (size_t i = 0; rc == 0 && has_h && !rd_kafka_header_get_all(h, i, &name, &v, &n); i++)
		rc = rmq_bridge_hblob_add(&hb, name, strlen(name), v, n);
	r->hb = hb.p;
	r->hblen = hb.len;
	r->topic = strdup(rd_kafka_topic_name(m->rkt));
	r->key = m->key ? rmq_prod_dup_mem(m->key, m->key_len) : NULL;
	r->val = rmq_prod_dup_mem(m->payload, m->len);
	if (rc || !r->topic || (m->key && !r->key) || !r->val) {
		reclaimed_free(r);
		return -ENOMEM;
	}
	bc->nrcl++;
	return 0;
}

/* Publish order (a car's messages in the order it sent them), then purge order within one publish. */
static int reclaimed_cmp(const void *a, const void *b)
{
	const struct reclaimed *x = a, *y = b;
	uint64_t ox = x->pd ? x->pd->order : 0, oy = y->pd ? y->pd->order : 0;
	if (ox != oy)
		return ox < oy ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static struct rmq_bridge_kmsg kmsg_of(const struct reclaimed *r)
{
	return (struct rmq_bridge_kmsg){.topic = r->topic, .topic_len = strlen(r->topic), .has_key = r->key != NULL,
					.key = r->key, .key_len = r->keylen, .value = r->val, .value_len = r->vallen,
					.headers = r->hb, .headers_len = r->hblen};
}

/* Hands a reclaimed message back to librdkafka (the queue was just emptied: it goes where it was). */
static void reproduce(struct rmq_bridge_core *bc, const struct reclaimed *r)
{
	struct rmq_bridge_kmsg k = kmsg_of(r);
	struct rendered x = {.topic = r->topic, .key = r->key, .keylen = r->keylen, .val = r->val, .vallen = r->vallen};
	rd_kafka_resp_err_t e = hblob_decode(&k, &x.ts, &x.hdrs) ? RD_KAFKA_RESP_ERR__BAD_MSG
								 : rmq_prod_produce(bc->prod, -1, &x, r->pd);
	if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (x.hdrs)
		rd_kafka_headers_destroy(x.hdrs);
	bc->st.failed++;
	rmq_prod_kafka_refused(bc, e, r->topic);
	rmq_prod_resolve(bc, r->pd, rmq_prod_kafka_errno(e));
}

/* Room in the spilled ring for n more, order kept. 0 or -ENOMEM. */
static int spilled_reserve(struct rmq_bridge_core *bc, size_t n)
{
	if (bc->sp_n + n <= bc->sp_cap)
		return 0;
	size_t cap = bc->sp_cap ? bc->sp_cap : 256;
	while (cap < bc->sp_n + n)
		cap *= 2;
	struct pending **ring = malloc(cap * sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	for (size_t i = 0; i < bc->sp_n; i++)
		ring[i] = bc->spilled[(bc->sp_head + i) % bc->sp_cap];
	free(bc->spilled);
	bc->spilled = ring;
	bc->sp_cap = cap;
	bc->sp_head = 0;
	return 0;
}

int rmq_bridge_core_reclaim(struct rmq_bridge_core *bc, rmq_bridge_kmsg_fn spool, void *ud)
{
	struct rmq_bridge *b = bc->b;
	if (b->nprod != b->ncores || bc->serves != bc->prod)
		return -ENOTSUP;
	if (bc->defer)
		return -EBUSY;
	rd_kafka_purge(bc->prod->rk, RD_KAFKA_PURGE_F_QUEUE); /* blocking: every report is queued when it returns */
	bc->reclaiming = true;
	rd_kafka_poll(bc->prod->rk, 0);
	bc->reclaiming = false;
	if (bc->nrcl)
		qsort(bc->rcl, bc->nrcl, sizeof(*bc->rcl), reclaimed_cmp);
	bool back = spilled_reserve(bc, bc->nrcl) != 0, was_ready = bc->ready != NULL;
	int spooled = 0;
	for (size_t i = 0; i < bc->nrcl; i++) {
		struct reclaimed *r = &bc->rcl[i];
		struct rmq_bridge_kmsg k = kmsg_of(r);
		/* Once one is refused (spool full), the rest go back too: a car's later message must not be spooled
		 * ahead of an earlier one waiting in librdkafka. */
		if (!back && r->pd && spool(ud, &k) == 0) {
			bc->spilled[(bc->sp_head + bc->sp_n++) % bc->sp_cap] = r->pd;
			spooled++;
		} else {
			if (r->pd)
				back = true;
			reproduce(bc, r);
		}
		reclaimed_free(r);
	}
	bc->nrcl = 0;
	bc->st.reclaimed += (uint64_t)spooled;
	if (!was_ready && bc->ready)
		rmq_prod_wake(bc->efd);
	return spooled;
}

void rmq_bridge_core_spilled(struct rmq_bridge_core *bc, int err)
{
	if (!bc->sp_n)
		return;
	struct pending *pd = bc->spilled[bc->sp_head];
	bc->sp_head = (bc->sp_head + 1) % bc->sp_cap;
	bc->sp_n--;
	bool was_ready = bc->ready != NULL;
	rmq_prod_resolve(bc, pd, err);
	if (!was_ready && bc->ready)
		rmq_prod_wake(bc->efd); /* the completion is reported from rmq_bridge_core_poll */
}

void rmq_bridge_core_set_replay(struct rmq_bridge_core *bc, rmq_bridge_done_fn fn, void *ud)
{
	bc->replay_fn = fn;
	bc->replay_ud = ud;
}

bool rmq_bridge_core_kafka_down(const struct rmq_bridge_core *bc)
{
	return atomic_load_explicit(&bc->prod->down, memory_order_relaxed);
}

