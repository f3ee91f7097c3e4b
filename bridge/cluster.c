/* Cross-node delivery through Kafka (--cluster-topic): route summaries (which filters each node's subscribers want),
 * the shared retained store, and the cluster topic's records. start/stop: main thread; rmq_bridge_cluster_filters:
 * any reactor (under the cluster lock); the consumers: core 0's reactor; units/render/poll: the reactor they name.
 *
 * Three topics, Kafka is the only channel between nodes (no protocol of our own):
 *   TOPIC           the messages. Key = publisher client id (per-publisher order, as a Kafka route), value = the
 *                   MQTT 5 PUBLISH packet, header ringmq.origin = node id. Produced only when another node's
 *                   summary matches the topic. Every node consumes it in a group of its own (ringmq-cluster-ID),
 *                   so each node sees every record; it skips its own (delivered locally already) and delivers the
 *                   rest to its local subscribers only, never producing them again: no loops, no duplicates.
 *                   Offsets are committed after local delivery (consumer.c), so a restarted node resumes where it
 *                   was. Without --data-dir, records older than this process are skipped: a new or restarted node
 *                   has no session that subscribed before it started (sessions live in memory), so a backlog would
 *                   only hand old messages to new subscriptions. This also closes the start-up gap a "latest"
 *                   reset would leave. With --data-dir (cluster-resume-since), sessions come back from the disk:
 *                   only records older than the data dir itself are skipped (a new node still gets no history),
 *                   and the node resumes at its committed offsets, so what was published for its restored
 *                   sessions while it was down reaches their queues (the offset of a record stored in an offline
 *                   session's queue is committed once the stored copy is durable: session.c, persist.c).
 *   TOPIC.routes    compacted; key = NODE NUL FILTER, value "1" (the node has subscribers for FILTER) or null
 *                   (it has none any more: a tombstone). One record per filter, so a change costs one small record
 *                   whatever the node's filter count (a per-car filter per car is the common case). Every node
 *                   reads it whole from the beginning at start (no group, no commits) and keeps reading. A node's
 *                   records of an earlier life (it crashed, its sessions are gone) are tombstoned once it has read
 *                   the topic to its end, unless it has subscribers for that filter again by then (sessions restored
 *                   from --data-dir announce theirs before the first poll, so they are never taken for stale). With
 *                   --data-dir, a stopping node keeps its persistent sessions' records: they still want messages.
 *   TOPIC.retained  compacted; key = MQTT topic, value = the PUBLISH packet, null = cleared. Every node reads it
 *                   whole from the beginning into its retained store, its own records included: Kafka's order per
 *                   key is then the one order every node applies, so concurrent sets on two nodes converge to the
 *                   same value everywhere (skipping its own would leave each node with the other's value).
 *
 * Route summaries reach the cores through a broadcast log: core 0 (reading TOPIC.routes) appends "+filter" and
 * "-filter" under a mutex and bumps a sequence number; each core compares that number with what it applied (one
 * relaxed load per publish) and replays the new entries into its own filter set. No lock on the publish path
 * unless the summaries changed; entries every core has applied are freed. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "ringmq/clock.h"
#include "bridge_internal.h"

#define META_BATCH 512               /* summary/retained records per poll: the core has sockets too */
#define META_WAIT_MS 10000           /* start-up: how long to wait for the metadata of the compacted topics */
#define MAX_META_PARTS 4096          /* bound on the partitions of TOPIC.routes we track for "read to the end" */

struct logent {
	bool add;
	uint32_t len;
	uint8_t *f;
};

struct cl_core {                     /* owned by its reactor, except `applied` (written under loglock) */
	struct rmq_cfset remote;         /* filters other nodes want; refs = how many nodes */
	uint64_t applied;
	struct rmq_bbuf val;
	_Atomic uint64_t out[3];         /* records produced: data, retained; [2] refused */
};

struct rmq_cluster {
	char *node, *topic, *rtopic, *ttopic;
	int ncores;
	struct cl_core *cores;
	int64_t start_ms;                /* records older than this are skipped (see the top) */
	bool resume;                     /* --data-dir: sessions outlive the process (cluster-resume-since) */
	/* This node's filters and the route-summary producer: any core, under lock. One producer for every core,
	 * so that a filter's add and its removal reach Kafka in the order the refcount changed. */
	pthread_mutex_t lock;
	struct rmq_cfset local;          /* refs = cores that have subscribers for it */
	struct rmq_cfset keep;           /* resume: filters of persistent sessions, reported at teardown */
	rd_kafka_t *rprod;
	struct rmq_bbuf key;
	bool synced;                     /* TOPIC.routes read to its end once: stale records cleaned */
	/* Core 0 only: the compacted topics' consumer and what it learnt. */
	rd_kafka_t *meta;
	struct rmq_cfset known;          /* NODE NUL FILTER of the other nodes */
	struct rmq_cfset own;            /* our own keys found in TOPIC.routes */
	int rparts, reofs;
	uint8_t *reof;
	struct rmq_bridge_consumers *data;  /* TOPIC, in group ringmq-cluster-NODE */
	/* broadcast log */
	pthread_mutex_t loglock;
	struct logent *log;
	uint64_t log_base;
	uint32_t log_n, log_cap;
	_Atomic uint64_t log_seq;
	/* counters (metrics thread reads) */
	_Atomic uint64_t consumed, own_skipped, stale_skipped, invalid, expired, delivered, retained_in, routes_out,
		routes_failed, summaries, locals;
};


static void bump(_Atomic uint64_t *v)
{
	atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

/* ---- broadcast log of remote filter changes ------------------------------------------------------------ */

/* Core 0: appends one change. Out of memory: the change is lost for the cores (a publish may then go to Kafka for
 * nobody, or not go): said once on stderr. */
static void log_push(struct rmq_cluster *cl, bool add, const uint8_t *f, size_t len)
{
	pthread_mutex_lock(&cl->loglock);
	uint8_t *copy = malloc(len ? len : 1);
	if (cl->log_n == cl->log_cap) {
		uint32_t cap = cl->log_cap ? cl->log_cap * 2 : 64;
		struct logent *n = realloc(cl->log, cap * sizeof(*n));
		if (n) {
			cl->log = n;
			cl->log_cap = cap;
		}
	}
	if (!copy || cl->log_n == cl->log_cap) {
		free(copy);
		pthread_mutex_unlock(&cl->loglock);
		fprintf(stderr, "kafka: cluster: out of memory, a route summary change is lost\n");
		return;
	}
	memcpy(copy, f, len);
	cl->log[cl->log_n++] = (struct logent){add, (uint32_t)len, copy};
	atomic_store_explicit(&cl->log_seq, cl->log_base + cl->log_n, memory_order_release);
	pthread_mutex_unlock(&cl->loglock);
}

/* Reactor `core`: replays what it has not applied yet, then frees what every core has applied. */
static void log_sync(struct rmq_cluster *cl, int core)
{
	struct cl_core *cc = &cl->cores[core];
	if (atomic_load_explicit(&cl->log_seq, memory_order_acquire) == cc->applied)
		return;
	pthread_mutex_lock(&cl->loglock);
	for (uint64_t s = cc->applied; s < cl->log_base + cl->log_n; s++) {
		struct logent *e = &cl->log[s - cl->log_base];
		if (e->add)
			rmq_cfset_add(&cc->remote, e->f, e->len); /* -ENOMEM: that filter is missed on this core */
		else
			rmq_cfset_del(&cc->remote, e->f, e->len);
	}
	cc->applied = cl->log_base + cl->log_n;
	uint64_t min = cc->applied;
	for (int k = 0; k < cl->ncores; k++)
		if (cl->cores[k].applied < min)
			min = cl->cores[k].applied;
	uint32_t drop = (uint32_t)(min - cl->log_base);
	for (uint32_t i = 0; i < drop; i++)
		free(cl->log[i].f);
	memmove(cl->log, cl->log + drop, (cl->log_n - drop) * sizeof(*cl->log));
	cl->log_n -= drop;
	cl->log_base = min;
	pthread_mutex_unlock(&cl->loglock);
}

/* ---- this node's route summary ----------------------------------------------------------------------- */

static void on_route_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct rmq_cluster *cl = opaque;
	if (m->err) {
		bump(&cl->routes_failed);
		fprintf(stderr, "kafka: cluster: route summary record not delivered: %s\n", rd_kafka_err2str(m->err));
	}
}

/* Under cl->lock: produces NODE NUL FILTER -> "1" (add) or a tombstone. */
static void announce(struct rmq_cluster *cl, const uint8_t *f, size_t len, bool add)
{
	if (rmq_cluster_key(&cl->key, cl->node, f, len))
		return;
	rd_kafka_resp_err_t e = rd_kafka_producev(cl->rprod, RD_KAFKA_V_TOPIC(cl->rtopic),
						  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
						  RD_KAFKA_V_KEY(cl->key.p, cl->key.len),
						  RD_KAFKA_V_VALUE(add ? "1" : NULL, add ? 1 : 0), RD_KAFKA_V_END);
	if (e) {
		bump(&cl->routes_failed);
		fprintf(stderr, "kafka: cluster: route summary record refused: %s\n", rd_kafka_err2str(e));
		return;
	}
	bump(&cl->routes_out);
}

/* The filter of the i-th entry of a route batch (count x (u16 length, bytes)), $share/G/ stripped; *off advances. */
static struct rmq_str batch_next(const uint8_t *data, uint32_t *off)
{
	uint16_t len = (uint16_t)(data[*off] << 8 | data[*off + 1]);
	struct rmq_str f = rmq_cluster_inner_filter(data + *off + 2, len);
	*off += 2u + len;
	return f;
}

void rmq_bridge_cluster_filters_cl(struct rmq_cluster *cl, bool add, const uint8_t *data, uint32_t count)
{
	pthread_mutex_lock(&cl->lock);
	uint32_t off = 0;
	for (uint32_t i = 0; i < count; i++) {
		struct rmq_str f = batch_next(data, &off);
		int refs = add ? rmq_cfset_add(&cl->local, f.p, f.len) : rmq_cfset_del(&cl->local, f.p, f.len);
		if ((add && refs == 1) || (!add && refs == 0))
			announce(cl, f.p, f.len, add);
	}
	atomic_store_explicit(&cl->locals, rmq_cfset_count(&cl->local), memory_order_relaxed);
	pthread_mutex_unlock(&cl->lock);
}

void rmq_bridge_cluster_keep_cl(struct rmq_cluster *cl, const uint8_t *data, uint32_t count)
{
	if (!cl->resume)
		return;
	pthread_mutex_lock(&cl->lock);
	uint32_t off = 0;
	for (uint32_t i = 0; i < count; i++) {
		struct rmq_str f = batch_next(data, &off);
		if (rmq_cfset_add(&cl->keep, f.p, f.len) < 0)
			fprintf(stderr, "kafka: cluster: out of memory: filter %.*s of a persistent session is withdrawn "
				"at stop (re-announced at the next start)\n", (int)f.len, (const char *)f.p);
	}
	pthread_mutex_unlock(&cl->lock);
}

struct cleanup_ctx {
	struct rmq_cluster *cl;
	size_t stale;
};

/* Our record of an earlier life: tombstone it unless a subscriber for that filter came back meanwhile. */
static void clean_one(void *ud, const uint8_t *key, size_t len)
{
	struct cleanup_ctx *x = ud;
	struct rmq_str node, f;
	if (rmq_cluster_key_split(key, len, &node, &f) || rmq_cfset_refs(&x->cl->local, f.p, f.len))
		return;
	announce(x->cl, f.p, f.len, false);
	x->stale++;
}

static void synced(struct rmq_cluster *cl)
{
	struct cleanup_ctx x = {cl, 0};
	pthread_mutex_lock(&cl->lock);
	rmq_cfset_each(&cl->own, clean_one, &x);
	cl->synced = true;
	pthread_mutex_unlock(&cl->lock);
	fprintf(stderr, "kafka: cluster: node %s read %s: %zu route filter%s of other nodes, %zu stale filter%s of "
		"its own removed\n", cl->node, cl->rtopic, rmq_cfset_count(&cl->known),
		rmq_cfset_count(&cl->known) == 1 ? "" : "s", x.stale, x.stale == 1 ? "" : "s");
}

/* ---- reading the compacted topics (core 0) ------------------------------------------------------------ */

static bool is_self(const struct rmq_cluster *cl, struct rmq_str node)
{
	return node.len == strlen(cl->node) && memcmp(node.p, cl->node, node.len) == 0;
}

static void route_record(struct rmq_cluster *cl, const rd_kafka_message_t *m)
{
	struct rmq_str node, f;
	if (rmq_cluster_key_split(m->key, m->key_len, &node, &f)) {
		bump(&cl->invalid);
		return;
	}
	bool add = m->payload != NULL;
	struct rmq_cfset *set = is_self(cl, node) ? &cl->own : &cl->known;
	uint32_t had = rmq_cfset_refs(set, m->key, m->key_len);
	if (add == (had > 0))
		return; /* repeated (a restart announcing again, compaction not run yet) */
	if (add ? rmq_cfset_add(set, m->key, m->key_len) < 0 : rmq_cfset_del(set, m->key, m->key_len) < 0)
		return;
	if (set == &cl->known) {
		log_push(cl, add, f.p, f.len);
		atomic_store_explicit(&cl->summaries, rmq_cfset_count(&cl->known), memory_order_relaxed);
	}
}

/* A retained set or clear, ours included (see the top of the file), handed to core 0 for every core's store. */
static void retained_record(struct rmq_cluster *cl, const rd_kafka_message_t *m, rmq_bridge_rec_fn fn, void *ud)
{
	struct rmq_bridge_rec rec = {.store_only = true};
	if (m->payload && m->len) {
		if (rmq_cluster_decode(m->payload, m->len, &rec.pub)) {
			bump(&cl->invalid);
			return;
		}
	} else {
		rec.pub.topic = (struct rmq_str){m->key, (uint32_t)m->key_len};
		rec.clear_retained = true;
		if (!m->key || !m->key_len || m->key_len > UINT16_MAX ||
		    rmq_proto_topic_name_check(m->key, m->key_len) != RMQ_OK) {
			bump(&cl->invalid);
			return;
		}
	}
	rec.pub.retain = true;
	bump(&cl->retained_in);
	fn(ud, &rec);
}

static void meta_eof(struct rmq_cluster *cl, const rd_kafka_message_t *m)
{
	if (cl->synced || strcmp(rd_kafka_topic_name(m->rkt), cl->rtopic) || m->partition < 0 ||
	    m->partition >= cl->rparts || cl->reof[m->partition])
		return;
	cl->reof[m->partition] = 1;
	if (++cl->reofs == cl->rparts)
		synced(cl);
}

static int meta_poll(struct rmq_cluster *cl, rmq_bridge_rec_fn fn, void *ud)
{
	int n = 0;
	for (; n < META_BATCH; n++) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(cl->meta, 0);
		if (!m)
			return n;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			meta_eof(cl, m);
		else if (m->err)
			fprintf(stderr, "kafka: cluster: %s\n", rd_kafka_message_errstr(m));
		else if (strcmp(rd_kafka_topic_name(m->rkt), cl->rtopic) == 0)
			route_record(cl, m);
		else
			retained_record(cl, m, fn, ud);
		rd_kafka_message_destroy(m);
	}
	return n;
}

int rmq_bridge_cluster_poll(struct rmq_cluster *cl, int core, rmq_bridge_rec_fn fn, void *ud)
{
	int n = 0;
	if (core == 0) {
		rd_kafka_poll(cl->rprod, 0);
		n += meta_poll(cl, fn, ud);
	}
	log_sync(cl, core);
	return n + rmq_bridge_consumers_poll(cl->data, core, fn, ud);
}

/* ---- the cluster topic: out ---------------------------------------------------------------------------- */

/* Reactor `core`: which units publish p needs (0: none). */
static int source_units(void *ctx, int core, const struct rmq_publish *p)
{
	struct rmq_cluster *cl = ctx;
	if (!p->topic.len || p->topic.p[0] == '$')
		return 0; /* $SYS and other '$' topics belong to the node that publishes them */
	log_sync(cl, core);
	int u = p->retain ? RMQ_CLUSTER_RETAIN : 0;
	if (rmq_cfset_match(&cl->cores[core].remote, p->topic.p, p->topic.len))
		u |= RMQ_CLUSTER_DATA;
	return u;
}

/* Reactor `core`: renders unit (RMQ_CLUSTER_DATA or _RETAIN) of m, with this node as its origin header. 0, -EINVAL
 * or -ENOMEM. */
static int source_render(void *ctx, int core, const struct rmq_bridge_msg *m, int unit, struct rmq_bridge_record *o)
{
	struct rmq_cluster *cl = ctx;
	struct cl_core *cc = &cl->cores[core];
	const struct rmq_publish *p = m->pub;
	*o = (struct rmq_bridge_record){.header = RMQ_CLUSTER_ORIGIN_HEADER, .header_val = cl->node};
	if (unit == RMQ_CLUSTER_DATA) {
		o->topic = cl->topic;
		bool by_client = m->client_id.len > 0;
		o->key = by_client ? m->client_id.p : p->topic.p;
		o->keylen = by_client ? m->client_id.len : p->topic.len;
	} else {
		o->topic = cl->ttopic;
		o->key = p->topic.p;
		o->keylen = p->topic.len;
	}
	if (unit == RMQ_CLUSTER_DATA || p->payload.len) {
		int rc = rmq_cluster_encode(&cc->val, p);
		if (rc)
			return rc;
		o->val = cc->val.p;
		o->vallen = cc->val.len;
	} /* else: a retained clear is a tombstone (null value), which compaction eventually removes */
	return 0;
}

static void source_produced(void *ctx, int core, int unit, bool ok)
{
	struct rmq_cluster *cl = ctx;
	_Atomic uint64_t *v = &cl->cores[core].out[ok ? (unit == RMQ_CLUSTER_DATA ? 0 : 1) : 2];
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + 1, memory_order_relaxed);
}

struct rmq_bridge_source rmq_bridge_cluster_source(struct rmq_cluster *cl)
{
	_Static_assert(RMQ_CLUSTER_RETAIN < 1 << RMQ_BRIDGE_SOURCE_UNITS, "cluster units fit the source's bits");
	if (!cl)
		return (struct rmq_bridge_source){0};
	return (struct rmq_bridge_source){.ctx = cl, .units = source_units, .render = source_render,
					  .produced = source_produced};
}

/* ---- the cluster topic: in ------------------------------------------------------------------------------ */

int rmq_bridge_cluster_record(struct rmq_cluster *cl, const rd_kafka_message_t *m, rd_kafka_headers_t *h,
			      struct rmq_bridge_rec *rec)
{
	bump(&cl->consumed);
	const void *origin = NULL;
	size_t olen = 0;
	if (h && rd_kafka_header_get_last(h, RMQ_CLUSTER_ORIGIN_HEADER, &origin, &olen) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    origin && olen == strlen(cl->node) && memcmp(origin, cl->node, olen) == 0) {
		bump(&cl->own_skipped); /* delivered locally when it was published */
		return -EEXIST;
	}
	rd_kafka_timestamp_type_t tt;
	int64_t ts = rd_kafka_message_timestamp(m, &tt);
	if (ts >= 0 && ts < cl->start_ms) {
		bump(&cl->stale_skipped);
		return -ESTALE;
	}
	if (rmq_cluster_decode(m->payload, m->len, &rec->pub)) {
		bump(&cl->invalid);
		return -EINVAL;
	}
	if (rmq_cluster_expiry_left(&rec->pub.props, ts, (int64_t)rmq_clock_wall_ms())) {
		bump(&cl->expired);
		return -ETIME;
	}
	rec->pub.retain = false; /* live delivery only: TOPIC.retained feeds the retained store */
	rec->cluster = true;
	bump(&cl->delivered);
	return 0;
}

/* ---- start and stop (main thread) ---------------------------------------------------------------------- */

static char *dup_or(const char *v, const char *base, const char *suffix)
{
	if (v)
		return strdup(v);
	char *s = malloc(strlen(base) + strlen(suffix) + 1);
	if (s)
		sprintf(s, "%s%s", base, suffix);
	return s;
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *why, size_t len)
{
	return rd_kafka_conf_set(conf, k, v, why, len) == RD_KAFKA_CONF_OK ? 0 : -EINVAL;
}

/* The operator's -X properties (security, timeouts) apply to the cluster's clients too, as to the others. The
 * route producer keeps its own linger, idempotence and acks: the summaries' order depends on them. */
static int conf_operator(rd_kafka_conf_t *conf, const struct rmq_bridge_cfg *cfg, bool producer, char *why,
			 size_t len)
{
	int rc = 0;
	for (int i = 0; rc == 0 && i < cfg->nkv; i++)
		if (producer && rmq_bridge_consumer_only(cfg->kv[i].key))
			continue;
		else if (!rmq_bridge_producer_only(cfg->kv[i].key))
			rc = conf_set(conf, cfg->kv[i].key, cfg->kv[i].value, why, len);
		else if (producer && strcmp(cfg->kv[i].key, "compression.codec") == 0)
			rc = conf_set(conf, cfg->kv[i].key, cfg->kv[i].value, why, len);
	return rc;
}

/* Route records are tiny and rare: linger 5 ms (a SUBSCRIBE of many filters goes in one request) keeps the window
 * in which another node has not heard of a new subscription short. */
static int rprod_start(struct rmq_cluster *cl, const struct rmq_bridge_cfg *cfg, const char *bootstraps, char *why,
		       size_t len)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_operator(conf, cfg, true, why, len) || conf_set(conf, "bootstrap.servers", bootstraps, why, len) ||
	    conf_set(conf, "client.id", "ringmq-cluster-routes", why, len) ||
	    conf_set(conf, "enable.idempotence", "true", why, len) || conf_set(conf, "linger.ms", "5", why, len) ||
	    conf_set(conf, "message.timeout.ms", "0", why, len)) {
		rd_kafka_conf_destroy(conf);
		return -EINVAL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_route_delivery);
	rd_kafka_conf_set_opaque(conf, cl);
	if (!(cl->rprod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, len))) {
		rd_kafka_conf_destroy(conf);
		return -EINVAL;
	}
	return 0;
}

/* Partitions of `topic` (asking for its metadata also creates it where the cluster auto-creates topics). */
static int partitions_of(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	int n = -1;
	for (int waited = 0; t && n <= 0 && waited < META_WAIT_MS; waited += 200) {
		const struct rd_kafka_metadata *md = NULL;
		if (rd_kafka_metadata(rk, 0, t, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
		    !md->topics[0].err)
			n = md->topics[0].partition_cnt;
		if (md)
			rd_kafka_metadata_destroy(md);
		if (n <= 0)
			nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
	}
	if (t)
		rd_kafka_topic_destroy(t);
	return n;
}

/* One consumer, no group membership (assign, never commit): both compacted topics from their first offset. */
static int meta_start(struct rmq_cluster *cl, const struct rmq_bridge_cfg *cfg, const char *bootstraps, int efd0,
		      char *why, size_t len)
{
	int tparts = partitions_of(cl->rprod, cl->ttopic);
	cl->rparts = partitions_of(cl->rprod, cl->rtopic);
	if (cl->rparts <= 0 || tparts <= 0 || cl->rparts > MAX_META_PARTS) {
		snprintf(why, len, "cluster: topics %s and %s must exist (compacted) with 1..%d partitions",
			 cl->rtopic, cl->ttopic, MAX_META_PARTS);
		return -EINVAL;
	}
	if (!(cl->reof = calloc((size_t)cl->rparts, 1)))
		return -ENOMEM;
	char group[RMQ_CLUSTER_NODE_MAX + 32];
	snprintf(group, sizeof(group), "ringmq-cluster-meta-%s", cl->node); /* required by librdkafka, never joined */
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_operator(conf, cfg, false, why, len) || conf_set(conf, "bootstrap.servers", bootstraps, why, len) ||
	    conf_set(conf, "client.id", "ringmq-cluster-meta", why, len) || conf_set(conf, "group.id", group, why, len) ||
	    conf_set(conf, "enable.auto.commit", "false", why, len) ||
	    conf_set(conf, "enable.partition.eof", "true", why, len) ||
	    conf_set(conf, "fetch.wait.max.ms", "50", why, len)) {
		rd_kafka_conf_destroy(conf);
		return -EINVAL;
	}
	if (!(cl->meta = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, len))) {
		rd_kafka_conf_destroy(conf);
		return -EINVAL;
	}
	rd_kafka_poll_set_consumer(cl->meta);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(cl->rparts + tparts);
	for (int i = 0; i < cl->rparts; i++)
		rd_kafka_topic_partition_list_add(l, cl->rtopic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
	for (int i = 0; i < tparts; i++)
		rd_kafka_topic_partition_list_add(l, cl->ttopic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_resp_err_t e = rd_kafka_assign(cl->meta, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (e) {
		snprintf(why, len, "cluster: assign: %s", rd_kafka_err2str(e));
		return -EINVAL;
	}
	rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(cl->meta);
	uint64_t one = 1;
	rd_kafka_queue_io_event_enable(q, efd0, &one, sizeof(one));
	rd_kafka_queue_destroy(q);
	return 0;
}

/* The cluster topic through consumer.c (windows, commits after delivery): one consumer per core in the node's own
 * group, as for --consume, so decoding and fan-out of what other nodes send are spread over the cores; one
 * publisher's records share a partition, hence a consumer, hence their order. */
static int data_start(struct rmq_cluster *cl, const struct rmq_bridge_cfg *cfg, const char *bootstraps,
		      const int *efds, char *why, size_t len)
{
	char group[RMQ_CLUSTER_NODE_MAX + 32], spec[RMQ_BRIDGE_KAFKA_TOPIC_MAX + 32];
	snprintf(group, sizeof(group), "ringmq-cluster-%s", cl->node);
	snprintf(spec, sizeof(spec), "%s -> cluster", cl->topic); /* the MQTT side comes from each record */
	struct rmq_bridge_consume route;
	int rc = rmq_bridge_consume_parse(&route, spec, why, len);
	if (rc)
		return rc;
	struct rmq_bridge_cfg c = *cfg;
	c.consumes = &route;
	c.nconsumes = 1;
	c.group = group;
	c.offset_latest = false; /* earliest, and records older than this process are skipped (see the top) */
	rc = rmq_bridge_consumers_start(&cl->data, &c, bootstraps, cl->ncores, efds, why, len);
	rmq_bridge_consume_free(&route);
	if (rc == 0)
		rmq_bridge_consumers_set_cluster(cl->data, cl);
	return rc;
}

int rmq_bridge_cluster_start(struct rmq_cluster **out, const struct rmq_bridge_cfg *cfg, const char *bootstraps,
			     int ncores, const int *efds, char *why, size_t len)
{
	*out = NULL;
	const char *node = cfg->node_id ? cfg->node_id : cfg->node_default;
	if (!node) {
		snprintf(why, len, "cluster: --node-id is required");
		return -EINVAL;
	}
	struct rmq_cluster *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	pthread_mutex_init(&cl->lock, NULL);
	pthread_mutex_init(&cl->loglock, NULL);
	cl->ncores = ncores;
	cl->resume = cfg->cluster_since_ms > 0;
	cl->start_ms = cl->resume ? (int64_t)cfg->cluster_since_ms : (int64_t)rmq_clock_wall_ms();
	cl->node = strdup(node);
	cl->topic = strdup(cfg->cluster_topic);
	cl->rtopic = dup_or(cfg->cluster_routes, cfg->cluster_topic, ".routes");
	cl->ttopic = dup_or(cfg->cluster_retain, cfg->cluster_topic, ".retained");
	cl->cores = calloc((size_t)ncores, sizeof(*cl->cores));
	int rc = !cl->node || !cl->topic || !cl->rtopic || !cl->ttopic || !cl->cores ? -ENOMEM : 0;
	if (rc == 0 && (!rmq_bridge_kafka_topic_valid(cl->rtopic, strlen(cl->rtopic)) ||
			!rmq_bridge_kafka_topic_valid(cl->ttopic, strlen(cl->ttopic))))
		rc = rmq_bridge_fail(why, len, "cluster: %s or %s is not a valid Kafka topic name", cl->rtopic, cl->ttopic);
	if (rc == 0)
		rc = rprod_start(cl, cfg, bootstraps, why, len);
	if (rc == 0)
		rc = meta_start(cl, cfg, bootstraps, efds[0], why, len);
	if (rc == 0)
		rc = data_start(cl, cfg, bootstraps, efds, why, len);
	if (rc) {
		rmq_bridge_cluster_stop(cl);
		return rc;
	}
	fprintf(stderr, "kafka: cluster: node %s, messages %s (group ringmq-cluster-%s), route summaries %s, retained %s; "
		"%s\n", cl->node, cl->topic, cl->node, cl->rtopic, cl->ttopic,
		cl->resume ? "--data-dir: resuming at the committed offsets" : "records older than this process skipped");
	*out = cl;
	return 0;
}

void rmq_bridge_cluster_freeze(struct rmq_cluster *cl)
{
	if (cl)
		rmq_bridge_consumers_freeze(cl->data);
}

static void withdraw_one(void *ud, const uint8_t *f, size_t len)
{
	struct rmq_cluster *cl = ud;
	if (!rmq_cfset_refs(&cl->keep, f, len))
		announce(cl, f, len, false);
}

void rmq_bridge_cluster_stop(struct rmq_cluster *cl)
{
	if (!cl)
		return;
	/* A stopping node's sessions end with it (their cars reconnect to other nodes, which announce the filters
	 * again): withdraw its filters now rather than at its next start, so nobody produces for it meanwhile.
	 * With --data-dir, persistent sessions do not end: their filters (`keep`, from the cores' teardown) stay
	 * announced, so what is published for them while the node is down waits in Kafka for its return; only
	 * filters held by clean sessions alone are withdrawn. */
	if (cl->rprod) {
		pthread_mutex_lock(&cl->lock);
		rmq_cfset_each(&cl->local, withdraw_one, cl);
		pthread_mutex_unlock(&cl->lock);
	}
	rmq_bridge_consumers_stop(cl->data);
	if (cl->meta) {
		rd_kafka_consumer_close(cl->meta);
		rd_kafka_destroy(cl->meta);
	}
	if (cl->rprod) {
		rd_kafka_flush(cl->rprod, 2000);
		rd_kafka_destroy(cl->rprod);
	}
	for (int k = 0; cl->cores && k < cl->ncores; k++) {
		rmq_cfset_free(&cl->cores[k].remote);
		rmq_bridge_buf_free(&cl->cores[k].val);
	}
	for (uint32_t i = 0; i < cl->log_n; i++)
		free(cl->log[i].f);
	free(cl->log);
	rmq_cfset_free(&cl->local);
	rmq_cfset_free(&cl->keep);
	rmq_cfset_free(&cl->known);
	rmq_cfset_free(&cl->own);
	rmq_bridge_buf_free(&cl->key);
	pthread_mutex_destroy(&cl->lock);
	pthread_mutex_destroy(&cl->loglock);
	free(cl->reof);
	free(cl->cores);
	free(cl->node);
	free(cl->topic);
	free(cl->rtopic);
	free(cl->ttopic);
	free(cl);
}

/* ---- metrics (any thread) ------------------------------------------------------------------------------- */

static uint64_t ld(const _Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

void rmq_bridge_cluster_metrics_cl(const struct rmq_cluster *cl, FILE *f)
{
	uint64_t out[3] = {0};
	for (int k = 0; k < cl->ncores; k++)
		for (int i = 0; i < 3; i++)
			out[i] += ld(&cl->cores[k].out[i]);
	fprintf(f, "# HELP ringmq_cluster_produced_total Records produced for the other nodes, by topic\n"
		   "# TYPE ringmq_cluster_produced_total counter\n"
		   "ringmq_cluster_produced_total{kind=\"message\"} %llu\n"
		   "ringmq_cluster_produced_total{kind=\"retained\"} %llu\n"
		   "ringmq_cluster_produced_total{kind=\"route\"} %llu\n",
		(unsigned long long)out[0], (unsigned long long)out[1], (unsigned long long)ld(&cl->routes_out));
	fprintf(f, "# HELP ringmq_cluster_failed_total Cluster records refused or not delivered\n"
		   "# TYPE ringmq_cluster_failed_total counter\n"
		   "ringmq_cluster_failed_total{kind=\"message\"} %llu\n"
		   "ringmq_cluster_failed_total{kind=\"route\"} %llu\n",
		(unsigned long long)out[2], (unsigned long long)ld(&cl->routes_failed));
	fprintf(f, "# HELP ringmq_cluster_consumed_total Records read from the cluster topic\n"
		   "# TYPE ringmq_cluster_consumed_total counter\nringmq_cluster_consumed_total %llu\n",
		(unsigned long long)ld(&cl->consumed));
	fprintf(f, "# HELP ringmq_cluster_skipped_total Cluster records not delivered, by reason\n"
		   "# TYPE ringmq_cluster_skipped_total counter\n"
		   "ringmq_cluster_skipped_total{reason=\"own\"} %llu\n"
		   "ringmq_cluster_skipped_total{reason=\"stale\"} %llu\n"
		   "ringmq_cluster_skipped_total{reason=\"invalid\"} %llu\n"
		   "ringmq_cluster_skipped_total{reason=\"expired\"} %llu\n",
		(unsigned long long)ld(&cl->own_skipped), (unsigned long long)ld(&cl->stale_skipped),
		(unsigned long long)ld(&cl->invalid), (unsigned long long)ld(&cl->expired));
	fprintf(f, "# HELP ringmq_cluster_forwarded_total Cluster records handed to this node's subscribers\n"
		   "# TYPE ringmq_cluster_forwarded_total counter\nringmq_cluster_forwarded_total %llu\n",
		(unsigned long long)ld(&cl->delivered));
	fprintf(f, "# HELP ringmq_cluster_retained_in_total Retained sets and clears read from the retained topic\n"
		   "# TYPE ringmq_cluster_retained_in_total counter\nringmq_cluster_retained_in_total %llu\n",
		(unsigned long long)ld(&cl->retained_in));
	fprintf(f, "# HELP ringmq_cluster_route_filters Route summary entries (node, filter) of the other nodes\n"
		   "# TYPE ringmq_cluster_route_filters gauge\nringmq_cluster_route_filters %llu\n"
		   "# HELP ringmq_cluster_local_filters Filters this node announces\n"
		   "# TYPE ringmq_cluster_local_filters gauge\nringmq_cluster_local_filters %llu\n",
		(unsigned long long)ld(&cl->summaries), (unsigned long long)ld(&cl->locals));
}
