/* The bridge object: start and stop (main thread: producers, consumers, cluster mode, the embedded cluster) and
 * each reactor's entry points (rmq_bridge_core_*: the owning reactor only), which poll completions and hand the
 * cluster's calls to cluster.c. Producing is producer.c's; the spool's side is producer_spool.c's. */
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

/* ---- reactor side ------------------------------------------------------------------------------ */

struct rmq_bridge_core *rmq_bridge_core_get(struct rmq_bridge *b, int core_id)
{
	return b && core_id >= 0 && core_id < b->ncores ? &b->cores[core_id] : NULL;
}

int rmq_bridge_core_fd(struct rmq_bridge_core *bc)
{
	return bc ? bc->efd : -1;
}

int rmq_bridge_core_poll(struct rmq_bridge_core *bc, rmq_bridge_done_fn done, void *ud)
{
	uint64_t cnt;
	ssize_t rd = read(bc->efd, &cnt, sizeof(cnt)); /* reset first: a report arriving later wakes us again */
	(void)rd;
	if (bc->serves)
		rd_kafka_poll(bc->serves->rk, 0); /* serves every waiting delivery report through rmq_prod_on_delivery */
	struct pending *in = atomic_exchange_explicit(&bc->inbox, NULL, memory_order_acquire), *rev = NULL;
	while (in) { /* the inbox is a stack: reverse it to report in arrival order */
		struct pending *next = in->next;
		in->next = rev;
		rev = in;
		in = next;
	}
	for (; rev; rev = rev->next) {
		*bc->ready_tail = rev;
		bc->ready_tail = &rev->next;
	}
	if (bc->defer)
		rmq_prod_drain_deferred(bc);
	int n = 0;
	struct pending *pd = bc->ready;
	bc->ready = NULL;
	bc->ready_tail = &bc->ready;
	while (pd) {
		struct pending *next = pd->next;
		int err = atomic_load_explicit(&pd->err, memory_order_relaxed);
		bc->st.completions++;
		if (err)
			bc->st.completions_failed++;
		if (pd->replay)
			bc->replay_fn(bc->replay_ud, pd->cookie, err, err ? rmq_prod_reason_of(err) : 0);
		else
			done(ud, pd->cookie, err, err ? rmq_prod_reason_of(err) : 0);
		rmq_prod_pending_put(bc, pd);
		n++;
		pd = next;
	}
	return n;
}

bool rmq_bridge_core_writable(struct rmq_bridge_core *bc)
{
	if (bc->defer)
		rmq_prod_drain_deferred(bc);
	if (bc->defer)
		return false;
	int room = bc->prod->max_msgs / WRITABLE_DEN * WRITABLE_NUM;
	return rd_kafka_outq_len(bc->prod->rk) < (room > 0 ? room : 1);
}

void rmq_bridge_core_stats(const struct rmq_bridge_core *bc, struct rmq_bridge_stats *out)
{
	*out = bc->st;
}

int rmq_bridge_core_consume(struct rmq_bridge_core *bc, rmq_bridge_rec_fn fn, void *ud)
{
	int n = bc && bc->b->cluster ? rmq_bridge_cluster_poll(bc->b->cluster, bc->id, fn, ud) : 0;
	return n + (bc && bc->b->cons ? rmq_bridge_consumers_poll(bc->b->cons, bc->id, fn, ud) : 0);
}

void rmq_bridge_core_freeze(struct rmq_bridge_core *bc)
{
	if (bc) {
		rmq_bridge_consumers_freeze(bc->b->cons);
		rmq_bridge_cluster_freeze(bc->b->cluster);
	}
}

void rmq_bridge_cluster_filters(struct rmq_bridge_core *bc, bool add, const uint8_t *data, uint32_t count)
{
	if (bc && bc->b->cluster && count)
		rmq_bridge_cluster_filters_cl(bc->b->cluster, add, data, count);
}

void rmq_bridge_cluster_keep(struct rmq_bridge_core *bc, const uint8_t *data, uint32_t count)
{
	if (bc && bc->b->cluster && count)
		rmq_bridge_cluster_keep_cl(bc->b->cluster, data, count);
}

/* Fire and forget (nothing waits for the report): the will or Kafka record is already on its way locally. */
void rmq_bridge_cluster_forward(struct rmq_bridge_core *bc, const struct rmq_publish *p)
{
	if (!bc || !bc->b->src.ctx)
		return;
	const struct rmq_bridge_source *src = &bc->b->src;
	int units = rmq_prod_source_units(bc, p);
	struct rmq_bridge_msg m = {.pub = p, .version = RMQ_V5};
	for (int u = 1; u < 1 << RMQ_BRIDGE_SOURCE_UNITS; u <<= 1) {
		struct rmq_bridge_record o;
		if (!(units & u))
			continue;
		bool ok = src->render(src->ctx, bc->id, &m, u, &o) == 0;
		if (ok) {
			struct rendered x = {.topic = o.topic, .key = o.key, .keylen = o.keylen, .val = o.val,
					     .vallen = o.vallen, .hdrs = rmq_prod_record_headers(&o),
					     .ts = (int64_t)rmq_clock_wall_ms()};
			ok = rmq_prod_produce(bc->prod, SOURCE_ROUTE(u), &x, NULL) == RD_KAFKA_RESP_ERR_NO_ERROR;
			if (!ok && x.hdrs)
				rd_kafka_headers_destroy(x.hdrs);
		}
		if (ok)
			bc->st.produced++;
		else
			bc->st.failed++;
		rmq_prod_source_produced(bc, u, ok);
	}
}

void rmq_bridge_cluster_metrics(const struct rmq_bridge *b, FILE *f)
{
	if (b && b->cluster)
		rmq_bridge_cluster_metrics_cl(b->cluster, f);
}

void rmq_bridge_core_cstats(const struct rmq_bridge_core *bc, struct rmq_bridge_cstats *out)
{
	rmq_bridge_consumers_stats(bc ? bc->b->cons : NULL, bc ? bc->id : 0, out);
}

const char *rmq_bridge_bootstraps(const struct rmq_bridge *b)
{
	return b->bootstraps;
}

/* ---- start and stop (main thread) -------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *why, size_t len)
{
	return rd_kafka_conf_set(conf, k, v, why, len) == RD_KAFKA_CONF_OK ? 0 : -EINVAL;
}

/* Our defaults first, then the operator's properties in the order given, so -X can override anything. */
/* kafka-partitioning core-aligned: producer i of K writes only to partitions i, i+K, i+2K, ... and picks one of
 * them by murmur2(key), so each producer batches for fewer partitions (fewer, larger requests). A car keeps one
 * partition as long as it stays on one core (client id hash, same --cores) and the key is its client id; the
 * partition differs from what a Java client would choose. Fewer partitions than producers: the plain placement.
 * Runs in librdkafka's partitioner context: only its pure partitioner helpers are called. */
static int32_t aligned_partitioner(const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t cnt,
				   void *rkt_opaque, void *msg_opaque)
{
	const struct producer *p = rkt_opaque;
	int32_t k = p->b->nprod, i = p->index;
	if (cnt < k)
		return rd_kafka_msg_partitioner_murmur2_random(rkt, key, keylen, cnt, rkt_opaque, msg_opaque);
	int32_t share = (cnt - i + k - 1) / k;
	int32_t j = key ? rd_kafka_msg_partitioner_murmur2(rkt, key, keylen, share, rkt_opaque, msg_opaque)
			: rd_kafka_msg_partitioner_random(rkt, key, keylen, share, rkt_opaque, msg_opaque);
	return i + j * k;
}

static rd_kafka_conf_t *producer_conf(const struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, int i,
				      char *why, size_t len)
{
	char client_id[64];
	snprintf(client_id, sizeof(client_id), "ringmq-%d", i);
	bool idempotent = !(cfg->acks_not_all && !cfg->idempotence_set);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	/* message.timeout.ms 0 = never give up: with Kafka unreachable the messages wait in librdkafka (the
	 * queue fills, the cars are paused) instead of failing after a few minutes. */
	int rc = conf_set(conf, "bootstrap.servers", b->bootstraps, why, len) ||
		 conf_set(conf, "client.id", client_id, why, len) ||
		 conf_set(conf, "partitioner", "murmur2_random", why, len) ||
		 conf_set(conf, "enable.idempotence", idempotent ? "true" : "false", why, len) ||
		 conf_set(conf, "message.timeout.ms", "0", why, len);
	for (int k = 0; rc == 0 && k < cfg->nkv; k++)
		if (!rmq_bridge_consumer_only(cfg->kv[k].key))
			rc = conf_set(conf, cfg->kv[k].key, cfg->kv[k].value, why, len);
	if (rc) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, rmq_prod_on_delivery);
	rd_kafka_conf_set_error_cb(conf, rmq_prod_on_error);
	rd_kafka_topic_conf_t *tconf = rd_kafka_conf_get_default_topic_conf(conf); /* made by "partitioner" */
	if (b->core_aligned && tconf) {
		rd_kafka_topic_conf_set_partitioner_cb(tconf, aligned_partitioner);
		rd_kafka_topic_conf_set_opaque(tconf, &b->prods[i]);
	}
	return conf;
}

static int producer_start(struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, int i, char *why, size_t len)
{
	struct producer *p = &b->prods[i];
	p->b = b;
	p->index = i;
	p->server = &b->cores[i];
	rd_kafka_conf_t *conf = producer_conf(b, cfg, i, why, len);
	if (!conf)
		return -EINVAL;
	char max[32];
	size_t maxlen = sizeof(max);
	p->max_msgs = 100000;
	if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", max, &maxlen) == RD_KAFKA_CONF_OK)
		p->max_msgs = atoi(max);
	rd_kafka_conf_set_opaque(conf, p);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, len);
	if (!p->rk) {
		rd_kafka_conf_destroy(conf); /* rd_kafka_new takes conf only on success */
		return -EINVAL;
	}
	rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
	uint64_t one = 1;
	rd_kafka_queue_io_event_enable(q, p->server->efd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);
	/* librdkafka writes the fd only on an empty -> non-empty edge: anything queued before the line above
	 * (a connection error at start-up) would never be signalled, so the first poll must happen anyway. */
	rmq_prod_wake(p->server->efd);
	for (int r = 0; r < b->nroutes; r++)
		if (b->routes[r].topic_fixed && !(p->rkt[r] = rd_kafka_topic_new(p->rk, b->routes[r].topic.src, NULL))) {
			snprintf(why, len, "topic %s: %s", b->routes[r].topic.src, rd_kafka_err2str(rd_kafka_last_error()));
			return -EINVAL;
		}
	return 0;
}

static int routes_copy(struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, char *why, size_t len)
{
	const char *dflt = "# -> " RMQ_BRIDGE_DEFAULT_TOPIC;
	int n = cfg->nroutes ? cfg->nroutes : 1;
	for (int i = 0; i < n; i++) {
		int rc = rmq_bridge_route_parse(&b->routes[i], cfg->nroutes ? cfg->routes[i].spec : dflt, why, len);
		if (rc)
			return rc;
		b->nroutes++;
	}
	if (!cfg->nroutes)
		fprintf(stderr, "kafka: no route given, using '%s'\n", dflt);
	return 0;
}

static int cores_init(struct rmq_bridge *b)
{
	b->cores = calloc((size_t)b->ncores, sizeof(*b->cores));
	if (!b->cores)
		return -ENOMEM;
	for (int c = 0; c < b->ncores; c++)
		b->cores[c].efd = -1;
	for (int c = 0; c < b->ncores; c++) {
		struct rmq_bridge_core *bc = &b->cores[c];
		bc->id = c;
		bc->b = b;
		bc->ready_tail = &bc->ready;
		bc->defer_tail = &bc->defer;
		atomic_init(&bc->inbox, NULL);
		bc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (bc->efd < 0)
			return -errno;
	}
	return 0;
}

static int kafka_start(struct rmq_bridge *b, const struct rmq_bridge_cfg *cfg, char *why, size_t len)
{
	if (cfg->brokers) {
		if (!(b->bootstraps = strdup(cfg->brokers)))
			return -ENOMEM;
		/* Only the routes the operator wrote: a node given none (consuming commands only, say) must not be
		 * refused over the implicit '# -> mqtt.messages'; a publish to a missing topic still gets 0x90. */
		const char *topics[RMQ_BRIDGE_MAX_ROUTES];
		int n = 0;
		for (int r = 0; cfg->nroutes && r < b->nroutes; r++)
			if (b->routes[r].topic_fixed)
				topics[n++] = b->routes[r].topic.src;
		return rmq_bridge_start_check(cfg, b->bootstraps, topics, n, why, len);
	}
	int rc = rmq_bridge_mock_start(&b->mock, RMQ_BRIDGE_EMBEDDED_BROKERS, why, len);
	if (rc)
		return rc;
	for (int r = 0; r < b->nroutes; r++)
		if (b->routes[r].topic_fixed && rmq_bridge_mock_topic(&b->mock, b->routes[r].topic.src, cfg->partitions)) {
			snprintf(why, len, "embedded kafka: cannot create topic %s", b->routes[r].topic.src);
			return -EINVAL;
		}
	for (int r = 0; r < cfg->nconsumes; r++)
		if (rmq_bridge_mock_topic(&b->mock, cfg->consumes[r].ktopic, cfg->partitions)) {
			snprintf(why, len, "embedded kafka: cannot create topic %s", cfg->consumes[r].ktopic);
			return -EINVAL;
		}
	b->bootstraps = strdup(b->mock.bootstraps);
	if (!b->bootstraps)
		return -ENOMEM;
	printf("kafka: embedded cluster at %s\n", b->bootstraps);
	printf("kafka: embedded cluster keeps only the last ~%d MB of each partition (older records are dropped after "
	       "delivery); to keep everything: make kafka, or your Kafka with --kafka-brokers\n",
	       RMQ_BRIDGE_EMBEDDED_KEEP_MB);
	fflush(stdout);
	return 0;
}

int rmq_bridge_start(struct rmq_bridge **out, const struct rmq_bridge_cfg *cfg, int ncores)
{
	char why[512] = "";
	*out = NULL;
	if (ncores < 1)
		return -EINVAL;
	struct rmq_bridge *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->match_all = cfg->match_all;
	b->ack_broker = cfg->ack_broker;
	b->qos0_drop = cfg->qos0_drop;
	b->core_aligned = cfg->core_aligned;
	if (cfg->cluster_topic && (cfg->off || !cfg->brokers)) {
		fprintf(stderr, "kafka: --cluster-topic needs --kafka-brokers (a Kafka every node shares)\n");
		free(b);
		return -EINVAL;
	}
	if (cfg->off && cfg->nconsumes) {
		fprintf(stderr, "kafka: --consume needs the Kafka bridge (remove --kafka off)\n");
		free(b);
		return -EINVAL;
	}
	if (cfg->off) {
		/* ncores stays 0: rmq_bridge_core_get() gives every core NULL, i.e. no Kafka route */
		fprintf(stderr, "kafka: bridge off (--kafka off): plain MQTT broker\n");
		*out = b;
		return 0;
	}
	b->ncores = ncores;
	b->nprod = cfg->producers && cfg->producers < ncores ? cfg->producers : ncores;
	int rc = routes_copy(b, cfg, why, sizeof(why));
	if (rc == 0)
		rc = cores_init(b);
	if (rc == 0)
		rc = kafka_start(b, cfg, why, sizeof(why));
	if (rc == 0 && !(b->prods = calloc((size_t)b->nprod, sizeof(*b->prods))))
		rc = -ENOMEM;
	for (int i = 0; rc == 0 && i < b->nprod; i++)
		rc = producer_start(b, cfg, i, why, sizeof(why));
	int efds[b->ncores];
	for (int c = 0; c < b->ncores; c++)
		efds[c] = b->cores ? b->cores[c].efd : -1;
	if (rc == 0 && cfg->nconsumes)
		rc = rmq_bridge_consumers_start(&b->cons, cfg, b->bootstraps, b->ncores, efds, why, sizeof(why));
	if (rc == 0 && cfg->cluster_topic)
		rc = rmq_bridge_cluster_start(&b->cluster, cfg, b->bootstraps, b->ncores, efds, why, sizeof(why));
	b->src = rmq_bridge_cluster_source(b->cluster); /* the cluster's records go out through the producer */
	b->src_match = RMQ_CLUSTER_DATA;               /* a record another node wants routes the publish */
	if (rc) {
		fprintf(stderr, "kafka: %s\n", why[0] ? why : strerror(-rc));
		rmq_bridge_stop(b, 0);
		return rc;
	}
	for (int c = 0; c < ncores; c++) {
		b->cores[c].prod = &b->prods[c % b->nprod];
		b->cores[c].serves = c < b->nprod ? &b->prods[c] : NULL;
	}
	fprintf(stderr, "kafka: %d producer%s for %d core%s, %s, %s partitioning, ack after %s, %d route%s (%s match)\n",
		b->nprod, b->nprod > 1 ? "s" : "", ncores, ncores > 1 ? "s" : "",
		cfg->acks_not_all && !cfg->idempotence_set ? "acks 0/1 without idempotence" : "idempotent",
		b->core_aligned ? "core-aligned" : "key",
		b->ack_broker ? "broker" : "kafka", b->nroutes, b->nroutes > 1 ? "s" : "",
		b->match_all ? "all" : "first");
	*out = b;
	return 0;
}

/* Flushes, then purges what Kafka did not take within the time left; returns how many were purged. */
static long producers_flush(struct rmq_bridge *b, int timeout_ms)
{
	int64_t deadline = (int64_t)rmq_clock_wall_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	long lost = 0;
	for (int i = 0; i < b->nprod; i++) {
		if (!b->prods[i].rk)
			continue;
		int64_t left = deadline - (int64_t)rmq_clock_wall_ms();
		rd_kafka_flush(b->prods[i].rk, left > 0 ? (int)left : 0);
		int n = rd_kafka_outq_len(b->prods[i].rk);
		if (n > 0) {
			lost += n;
			rd_kafka_purge(b->prods[i].rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
							 RD_KAFKA_PURGE_F_NON_BLOCKING);
			rd_kafka_poll(b->prods[i].rk, 0);
		}
	}
	return lost;
}

static void core_free(struct rmq_bridge_core *bc)
{
	while (bc->defer) {
		struct deferred *d = bc->defer;
		bc->defer = d->next;
		rmq_prod_deferred_free(d);
	}
	while (bc->chunks) {
		struct chunk *c = bc->chunks;
		bc->chunks = c->next;
		free(c);
	}
	rmq_bridge_buf_free(&bc->topic);
	rmq_bridge_buf_free(&bc->key);
	rmq_bridge_buf_free(&bc->val);
	rmq_bridge_buf_free(&bc->hblob);
	free(bc->rcl);
	free(bc->spilled);
	if (bc->efd >= 0)
		close(bc->efd);
}

void rmq_bridge_stop(struct rmq_bridge *b, int timeout_ms)
{
	if (!b)
		return;
	atomic_store(&b->stopping, true);
	rmq_bridge_consumers_stop(b->cons); /* before the embedded cluster goes: the last commit needs it */
	b->cons = NULL;
	b->src = (struct rmq_bridge_source){0};
	rmq_bridge_cluster_stop(b->cluster);
	b->cluster = NULL;
	long deferred = 0;
	for (int c = 0; b->cores && c < b->ncores; c++)
		for (struct deferred *d = b->cores[c].defer; d; d = d->next)
			deferred++;
	long lost = b->prods ? producers_flush(b, timeout_ms) : 0;
	if (lost || deferred)
		fprintf(stderr, "kafka: %ld messages not delivered within %d ms at shutdown\n", lost + deferred,
			timeout_ms);
	for (int i = 0; b->prods && i < b->nprod; i++) {
		for (int r = 0; r < b->nroutes; r++)
			if (b->prods[i].rkt[r])
				rd_kafka_topic_destroy(b->prods[i].rkt[r]);
		if (b->prods[i].rk)
			rd_kafka_destroy(b->prods[i].rk);
	}
	rmq_bridge_mock_stop(&b->mock);
	for (int c = 0; b->cores && c < b->ncores; c++)
		core_free(&b->cores[c]);
	for (int r = 0; r < b->nroutes; r++)
		rmq_bridge_route_free(&b->routes[r]);
	free(b->prods);
	free(b->cores);
	free(b->bootstraps);
	free(b);
}

