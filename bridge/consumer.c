/* The Kafka -> MQTT path: one librdkafka consumer per core in the node's group, records rendered for MQTT and handed
 * to the owning core, per-partition windows of unfinished offsets, commits. start/stop: main thread; poll: the
 * owning reactor only; rmq_bridge_rec_done: any thread.
 *
 * Offsets. Every record consumed on a partition enters that partition's window (a ring of offsets in consumption
 * order) and gets an `inrec` whose token the core passes along with each publish. When the core says a publish is
 * finished (rmq_bridge_rec_done, from whichever core dropped the message's last reference) the inrec counts down;
 * the last one pushes it onto its consumer's lock-free inbox and wakes the core's eventfd on the empty -> non-empty
 * edge (as the producer's completions do). The owning core marks the offset finished and commits, per partition,
 * the lowest offset still unfinished (or one past the last consumed): a record is committed only once it and every
 * earlier record of its partition were handed over. Nothing is auto-committed or auto-stored.
 *
 * Rebalance. A revoked partition's window is dropped (its epoch moves on, so late completions are ignored); what
 * was finished is committed first. Unfinished records are consumed again by the partition's next owner: duplicates,
 * never loss (at-least-once).
 *
 * Bound. At consume-max-outstanding unfinished records a consumer pauses its partitions until a quarter of them
 * finished (a subscriber that never acknowledges slows its consumer instead of growing memory). It keeps polling
 * while paused, so it stays in the group (max.poll.interval.ms) and still serves rebalances; records already
 * fetched may still come and are handled (never dropped: their position has moved on). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "ringmq/clock.h"
#include "bridge_internal.h"

#define POLL_BATCH 256               /* records per rmq_bridge_core_consume call: the core has sockets too */
#define COMMIT_MS 100                /* at most one commit request per consumer per 100 ms */
/* Consumer lag for /metrics and the status page: once a second is what a scrape or a human can see. */
#define LAG_MS 1000
#define ERROR_LOG_MS 10000           /* one Kafka error line per consumer per 10 s during an outage */
#define MAX_USER_PROPS 65535

struct cpart {
	char *topic;
	int32_t partition;
	uint32_t epoch;              /* moves on at every assign/revoke: older inrecs are ignored */
	bool assigned;
	int64_t *offs;               /* window ring: offsets consumed and not yet released, in order */
	uint8_t *done;
	uint32_t cap;                /* power of two */
	uint64_t head_seq, tail_seq; /* the window is [head_seq, tail_seq) */
	int64_t next;                /* one past the last consumed offset; -1 none yet */
	int64_t committed;           /* last offset sent in a commit; -1 none */
	bool lost;                   /* its topic was deleted or denied: no more commits until assigned again */
};

struct consumer;

struct inrec {
	struct inrec *next;          /* the consumer's inbox */
	struct consumer *k;
	struct cpart *part;
	uint32_t epoch;
	uint64_t seq;
	atomic_int remaining;        /* publishes of this record not finished, + 1 guard while handing over */
};

struct consumer {
	/* Touched by other cores: the inbox (atomic) and the eventfd (write). */
	_Atomic(struct inrec *) inbox;
	int efd;
	/* Owned by the core. */
	struct rmq_bridge_consumers *cs;
	int id;
	rd_kafka_t *rk;
	struct cpart **parts;
	int nparts, capparts;
	uint32_t outstanding;
	bool subscribed, paused;
	int64_t last_commit_ms, last_log_ms, last_lag_ms;
	long suppressed;
	struct rmq_bbuf topic;
	uint8_t *ubuf;               /* user properties of the record being handed */
	size_t ubufcap;
	struct rmq_bridge_cstats st;
};

struct rmq_bridge_consumers {
	struct rmq_bridge_consume routes[RMQ_BRIDGE_MAX_CONSUMES];
	int nroutes;
	int n;
	struct consumer *k;
	atomic_bool frozen;
	int64_t start_at_ms;
	uint32_t max_outstanding;
	struct rmq_kfault_log faults;  /* consumed topics whose loss was logged (any core) */
};


static void wake(int efd)
{
	uint64_t one = 1;
	ssize_t n = write(efd, &one, sizeof(one));
	(void)n; /* EAGAIN only when the counter is saturated: the fd is readable anyway */
}

static void log_limited(struct consumer *k, const char *fmt, const char *a, const char *b)
{
	int64_t now = (int64_t)rmq_clock_mono_ms();
	if (k->last_log_ms && now - k->last_log_ms < ERROR_LOG_MS) {
		k->suppressed++;
		return;
	}
	fprintf(stderr, "kafka: consumer %d: ", k->id);
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, " (%ld similar suppressed)\n", k->suppressed);
	k->last_log_ms = now;
	k->suppressed = 0;
}

/* ---- partition windows --------------------------------------------------------------------------- */

static struct cpart *part_find(struct consumer *k, const char *topic, int32_t partition, bool create)
{
	for (int i = 0; i < k->nparts; i++)
		if (k->parts[i]->partition == partition && strcmp(k->parts[i]->topic, topic) == 0)
			return k->parts[i];
	if (!create)
		return NULL;
	if (k->nparts == k->capparts) {
		int cap = k->capparts ? k->capparts * 2 : 8;
		struct cpart **np = realloc(k->parts, (size_t)cap * sizeof(*np));
		if (!np)
			return NULL;
		k->parts = np;
		k->capparts = cap;
	}
	struct cpart *p = calloc(1, sizeof(*p));
	if (!p || !(p->topic = strdup(topic))) {
		free(p);
		return NULL;
	}
	p->partition = partition;
	p->next = p->committed = -1;
	k->parts[k->nparts++] = p;
	return p;
}

/* Forgets the window (after assign or revoke): later completions of its records are ignored. */
static void part_reset(struct consumer *k, struct cpart *p)
{
	for (uint64_t s = p->head_seq; s < p->tail_seq; s++)
		if (!p->done[s & (p->cap - 1)])
			k->outstanding--;
	p->head_seq = p->tail_seq = 0;
	p->epoch++;
	p->next = p->committed = -1;
	p->lost = false;
}

static int part_push(struct cpart *p, int64_t offset, uint64_t *seq)
{
	if (p->tail_seq - p->head_seq == p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 64;
		int64_t *offs = malloc(cap * sizeof(*offs));
		uint8_t *done = malloc(cap);
		if (!offs || !done) {
			free(offs);
			free(done);
			return -ENOMEM;
		}
		for (uint64_t s = p->head_seq; s < p->tail_seq; s++) {
			offs[s & (cap - 1)] = p->offs[s & (p->cap - 1)];
			done[s & (cap - 1)] = p->done[s & (p->cap - 1)];
		}
		free(p->offs);
		free(p->done);
		p->offs = offs;
		p->done = done;
		p->cap = cap;
	}
	*seq = p->tail_seq++;
	p->offs[*seq & (p->cap - 1)] = offset;
	p->done[*seq & (p->cap - 1)] = 0;
	p->next = offset + 1;
	return 0;
}

/* The offset to commit: the lowest unfinished one, or one past the last consumed. -1: nothing consumed. */
static int64_t part_committable(struct cpart *p)
{
	while (p->head_seq < p->tail_seq && p->done[p->head_seq & (p->cap - 1)])
		p->head_seq++;
	return p->head_seq < p->tail_seq ? p->offs[p->head_seq & (p->cap - 1)] : p->next;
}

/* ---- completion ------------------------------------------------------------------------------------ */

void rmq_bridge_rec_done(void *token)
{
	struct inrec *r = token;
	if (!r)
		return; /* a record of no consumer group (the cluster's retained topic): nothing to commit */
	if (atomic_fetch_sub_explicit(&r->remaining, 1, memory_order_acq_rel) != 1)
		return;
	struct consumer *k = r->k;
	if (atomic_load_explicit(&k->cs->frozen, memory_order_acquire)) {
		free(r); /* shutting down: a session freed at exit did not hand this record to its car */
		return;
	}
	struct inrec *head = atomic_load_explicit(&k->inbox, memory_order_relaxed);
	do
		r->next = head;
	while (!atomic_compare_exchange_weak_explicit(&k->inbox, &head, r, memory_order_release, memory_order_relaxed));
	if (!head)
		wake(k->efd);
}

static void drain_inbox(struct consumer *k)
{
	struct inrec *r = atomic_exchange_explicit(&k->inbox, NULL, memory_order_acquire);
	while (r) {
		struct inrec *next = r->next;
		struct cpart *p = r->part;
		if (r->epoch == p->epoch && r->seq >= p->head_seq && r->seq < p->tail_seq) {
			p->done[r->seq & (p->cap - 1)] = 1;
			k->outstanding--;
			k->st.finished++;
		}
		free(r);
		r = next;
	}
}

/* A consumed topic deleted or not authorized (a consumer error or a partition's commit error): counted, logged
 * once per topic for the whole node; the consumer goes on with its other topics. false: another error. */
static bool topic_lost(struct consumer *k, rd_kafka_resp_err_t err, const char *topic, const char *what)
{
	enum rmq_kfault f = err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ? RMQ_KFAULT_DENIED
			    : err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION     ? RMQ_KFAULT_UNKNOWN_TOPIC
									      : rmq_bridge_kfault_of(err);
	if (f != RMQ_KFAULT_UNKNOWN_TOPIC && f != RMQ_KFAULT_DENIED)
		return false;
	if (f == RMQ_KFAULT_UNKNOWN_TOPIC)
		k->st.topic_missing++;
	else
		k->st.topic_denied++;
	if (rmq_bridge_kfault_first(&k->cs->faults, f, topic))
		fprintf(stderr, "kafka: consumer: topic %s: %s: its --consume routes get nothing, the others go on; "
			"logged once per topic, counted in ringmq_kafka_consume_errors_total{reason=\"%s\"}\n", topic,
			what, rmq_bridge_kfault_name(f));
	return true;
}

/* ---- commits --------------------------------------------------------------------------------------- */

/* Commits every assigned partition (or only `only`) whose committable offset moved. */
static void commit(struct consumer *k, const rd_kafka_topic_partition_list_t *only)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(k->nparts ? k->nparts : 1);
	for (int i = 0; i < k->nparts; i++) {
		struct cpart *p = k->parts[i];
		if (!p->assigned || p->lost ||
		    (only && !rd_kafka_topic_partition_list_find(only, p->topic, p->partition)))
			continue;
		int64_t off = part_committable(p);
		if (off < 0 || off <= p->committed)
			continue;
		rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = off;
		p->committed = off;
	}
	if (l->cnt) {
		k->st.commits++;
		rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, l, 1);
		if (e) {
			k->st.commit_errors++;
			log_limited(k, "commit: %s%s", rd_kafka_err2str(e), "");
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
	k->last_commit_ms = (int64_t)rmq_clock_mono_ms();
}

/* A failed commit: forget what we believed committed, so the next commit sends those partitions again; a partition
 * whose topic is gone or denied is not retried (the commit would fail forever) but counted and logged once. */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
		      void *opaque)
{
	(void)rk;
	struct consumer *k = opaque;
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return;
	int lost = 0;
	for (int i = 0; offsets && i < offsets->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &offsets->elems[i];
		if (!err && !tp->err)
			continue;
		struct cpart *p = part_find(k, tp->topic, tp->partition, false);
		if (tp->err && topic_lost(k, tp->err, tp->topic, rd_kafka_err2str(tp->err))) {
			lost++;
			if (p)
				p->lost = true;
		} else if (p && p->committed == tp->offset) {
			p->committed = -1;
		}
	}
	if (err && !(lost && rmq_bridge_kfault_of(err) != RMQ_KFAULT_NONE)) {
		k->st.commit_errors++;
		log_limited(k, "commit failed: %s%s", rd_kafka_err2str(err), "");
	}
}

/* ---- rebalance --------------------------------------------------------------------------------------- */

/* Marks `parts` assigned or not, each with a fresh window. */
static void parts_set(struct consumer *k, const rd_kafka_topic_partition_list_t *parts, bool assigned)
{
	for (int i = 0; i < parts->cnt; i++) {
		struct cpart *p = part_find(k, parts->elems[i].topic, parts->elems[i].partition, assigned);
		if (!p)
			continue; /* assigned but out of memory: handle() skips its records, they are never committed */
		part_reset(k, p);
		p->assigned = assigned;
	}
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
			 void *opaque)
{
	struct consumer *k = opaque;
	/* NULL once the consumer has left its group: the revoke that rd_kafka_consumer_close() runs at shutdown */
	const char *protocol = rd_kafka_rebalance_protocol(rk);
	bool cooperative = protocol && strcmp(protocol, "COOPERATIVE") == 0;
	k->st.rebalances++;
	k->paused = false; /* partitions assigned now are not paused: flow_control() looks again */
	/* One line per rebalance (rare): which partitions this core now serves is what an operator asks first. */
	char line[1024]; /* built first: the other cores' consumers print theirs at the same moment */
	int n = snprintf(line, sizeof(line), "kafka: consumer %d: %s %d partition%s", k->id,
			 err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assigned" : "revoked", parts->cnt,
			 parts->cnt == 1 ? "" : "s");
	for (int i = 0; i < parts->cnt && i < 16 && n > 0 && (size_t)n < sizeof(line); i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%s[%d]", i ? ", " : " ", parts->elems[i].topic,
			      (int)parts->elems[i].partition);
	fprintf(stderr, "%s%s\n", line, parts->cnt > 16 ? ", ..." : "");
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		parts_set(k, parts, true);
		if (cooperative)
			rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
		else
			rd_kafka_assign(rk, parts);
		return;
	}
	/* Revoked (or an error): commit what finished, then forget those windows. */
	if (!atomic_load(&k->cs->frozen))
		commit(k, parts);
	parts_set(k, parts, false);
	if (cooperative)
		rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
	else
		rd_kafka_assign(rk, NULL);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	struct consumer *k = opaque;
	/* librdkafka's reason starts "TOPIC [PARTITION]: ..." for a partition's error: the topic is the key */
	char topic[RMQ_BRIDGE_KAFKA_TOPIC_MAX + 1];
	const char *end = strstr(reason, " [");
	size_t n = end ? (size_t)(end - reason) : 0;
	snprintf(topic, sizeof(topic), "%.*s", (int)(n < sizeof(topic) ? n : 0), reason);
	if (!topic_lost(k, err, topic[0] ? topic : "(unknown)", reason))
		log_limited(k, "%s: %s", rd_kafka_err2name(err), reason);
}

/* ---- records ----------------------------------------------------------------------------------------- */

static int header_of(void *ud, const char *name, size_t namelen, const void **v, size_t *n)
{
	rd_kafka_headers_t *h = ud;
	char nm[256];
	if (!h || namelen >= sizeof(nm))
		return -ENOENT;
	memcpy(nm, name, namelen);
	nm[namelen] = 0;
	/* The last header of that name wins, as for a map. */
	return rd_kafka_header_get_last(h, nm, v, n) == RD_KAFKA_RESP_ERR_NO_ERROR && *v ? 0 : -ENOENT;
}

/* MQTT strings are UTF-8 without U+0000 [MQTT-1.5.4-1, -2]; other headers are not carried. */
static bool mqtt_string_ok(const void *s, size_t n)
{
	return n <= UINT16_MAX && !memchr(s, 0, n) && rmq_bridge_utf8_valid(s, n);
}

/* Kafka headers as user properties, in k->ubuf. */
static void headers_to_props(struct consumer *k, rd_kafka_headers_t *h, struct rmq_props *props)
{
	size_t need = 0, cnt = h ? rd_kafka_header_cnt(h) : 0;
	const char *name;
	const void *v;
	size_t n;
	for (size_t i = 0; i < cnt && rd_kafka_header_get_all(h, i, &name, &v, &n) == 0; i++)
		need += 5 + strlen(name) + (v ? n : 0);
	if (need > k->ubufcap) {
		uint8_t *nb = realloc(k->ubuf, need);
		if (!nb)
			return; /* no user properties rather than no command */
		k->ubuf = nb;
		k->ubufcap = need;
	}
	size_t used = 0;
	for (size_t i = 0; i < cnt && props->user_count < MAX_USER_PROPS; i++) {
		if (rd_kafka_header_get_all(h, i, &name, &v, &n))
			break;
		if (!v)
			v = "", n = 0;
		if (!mqtt_string_ok(name, strlen(name)) || !mqtt_string_ok(v, n))
			continue;
		rmq_props_user_add(props, k->ubuf, k->ubufcap, &used, (struct rmq_str){(const uint8_t *)name,
			(uint32_t)strlen(name)}, (struct rmq_str){v, (uint32_t)n});
	}
}

/* Hands record m to the core once per route of its topic. */
static void handle(struct consumer *k, rd_kafka_message_t *m, rmq_bridge_rec_fn fn, void *ud)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	struct cpart *p = part_find(k, topic, m->partition, false);
	k->st.records++;
	if (!p || !p->assigned)
		return; /* a record of a partition revoked meanwhile: its next owner reads it again */
	struct inrec *r = malloc(sizeof(*r));
	uint64_t seq;
	if (!r || part_push(p, m->offset, &seq)) {
		free(r);
		log_limited(k, "out of memory, record %s%s not handed over (it is consumed again after a restart)",
			    topic, "");
		return; /* never released: the partition commits no further until a rebalance or restart */
	}
	k->outstanding++;
	*r = (struct inrec){.k = k, .part = p, .epoch = p->epoch, .seq = seq};
	atomic_init(&r->remaining, 1);
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_headers(m, &h))
		h = NULL;
	struct rmq_bridge_krec kr = {topic, m->key, m->key_len, header_of, h};
	const struct rmq_bridge_consumers *cs = k->cs;
	for (int i = 0; i < cs->nroutes; i++) {
		const struct rmq_bridge_consume *route = &cs->routes[i];
		if (strcmp(route->ktopic, topic) != 0)
			continue;
		if (route->cluster) { /* a whole PUBLISH from another node (cluster.c), or one to skip */
			struct rmq_bridge_rec rec = {.token = r};
			if (rmq_bridge_cluster_record(route->cluster, m, h, &rec) == 0) {
				atomic_fetch_add_explicit(&r->remaining, 1, memory_order_relaxed);
				k->st.handed++;
				fn(ud, &rec);
			}
			continue;
		}
		k->topic.len = 0;
		if (rmq_bridge_consume_render(route, &kr, &k->topic)) {
			k->st.skipped++;
			continue;
		}
		struct rmq_bridge_rec rec = {.token = r};
		rec.pub.qos = route->qos;
		rec.pub.retain = route->retain;
		rec.pub.topic = (struct rmq_str){(const uint8_t *)k->topic.p, (uint32_t)k->topic.len};
		rec.pub.payload = (struct rmq_str){m->payload, m->payload ? (uint32_t)m->len : 0};
		rec.clear_retained = route->retain && !m->payload;
		headers_to_props(k, h, &rec.pub.props);
		atomic_fetch_add_explicit(&r->remaining, 1, memory_order_relaxed);
		k->st.handed++;
		fn(ud, &rec);
	}
	rmq_bridge_rec_done(r); /* the guard */
}

/* Pauses every assigned partition at the bound, resumes them below three quarters of it. */
static void flow_control(struct consumer *k)
{
	uint32_t bound = k->cs->max_outstanding;
	bool pause = k->outstanding >= bound;
	if (pause == k->paused || (!pause && k->outstanding > bound - bound / 4))
		return;
	rd_kafka_topic_partition_list_t *a = NULL;
	if (rd_kafka_assignment(k->rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
		if (pause)
			rd_kafka_pause_partitions(k->rk, a);
		else
			rd_kafka_resume_partitions(k->rk, a);
		rd_kafka_topic_partition_list_destroy(a);
	}
	k->paused = pause;
	if (pause)
		k->st.paused++;
}

static void consume_batch(struct consumer *k, rmq_bridge_rec_fn fn, void *ud, int *handed)
{
	for (int i = 0; i < POLL_BATCH; i++) {
		flow_control(k);
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 0);
		if (!m)
			return;
		if (m->err) {
			if (!topic_lost(k, m->err, m->rkt ? rd_kafka_topic_name(m->rkt) : "(group)",
					rd_kafka_message_errstr(m)) && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				log_limited(k, "%s: %s", rd_kafka_err2name(m->err), rd_kafka_message_errstr(m));
		} else {
			handle(k, m, fn, ud);
			(*handed)++;
		}
		rd_kafka_message_destroy(m);
	}
	wake(k->efd); /* batch used up with records possibly waiting: come back next loop iteration */
}

/* Records in Kafka past this consumer's position, summed over its assigned partitions: the high watermarks are
 * librdkafka's cached ones (from its last fetch), so this costs no request. A partition without a position yet
 * (nothing fetched) is left out. */
static void update_lag(struct consumer *k)
{
	rd_kafka_topic_partition_list_t *a = NULL;
	if (rd_kafka_assignment(k->rk, &a) || !a)
		return;
	uint64_t lag = 0;
	if (a->cnt && !rd_kafka_position(k->rk, a))
		for (int i = 0; i < a->cnt; i++) {
			int64_t lo, hi, pos = a->elems[i].offset;
			if (pos >= 0 && !rd_kafka_get_watermark_offsets(k->rk, a->elems[i].topic, a->elems[i].partition,
									&lo, &hi) && hi > pos)
				lag += (uint64_t)(hi - pos);
		}
	rd_kafka_topic_partition_list_destroy(a);
	k->st.lag = lag;
}

int rmq_bridge_consumers_poll(struct rmq_bridge_consumers *cs, int core, rmq_bridge_rec_fn fn, void *ud)
{
	if (!cs || core >= cs->n || atomic_load_explicit(&cs->frozen, memory_order_relaxed))
		return 0;
	struct consumer *k = &cs->k[core];
	int handed = 0;
	drain_inbox(k);
	int64_t now = (int64_t)rmq_clock_mono_ms();
	if (!k->subscribed) {
		if (now < cs->start_at_ms)
			return 0;
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(cs->nroutes);
		for (int i = 0; i < cs->nroutes; i++)
			if (!rd_kafka_topic_partition_list_find(l, cs->routes[i].ktopic, RD_KAFKA_PARTITION_UA))
				rd_kafka_topic_partition_list_add(l, cs->routes[i].ktopic, RD_KAFKA_PARTITION_UA);
		rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, l);
		rd_kafka_topic_partition_list_destroy(l);
		if (e)
			fprintf(stderr, "kafka: consumer %d: subscribe: %s\n", k->id, rd_kafka_err2str(e));
		k->subscribed = true;
	}
	consume_batch(k, fn, ud, &handed);
	if (now - k->last_commit_ms >= COMMIT_MS)
		commit(k, NULL);
	if (now - k->last_lag_ms >= LAG_MS) {
		update_lag(k);
		k->last_lag_ms = now;
	}
	return handed;
}

void rmq_bridge_consumers_set_cluster(struct rmq_bridge_consumers *cs, struct rmq_cluster *cl)
{
	for (int i = 0; cs && i < cs->nroutes; i++)
		cs->routes[i].cluster = cl;
}

void rmq_bridge_consumers_freeze(struct rmq_bridge_consumers *cs)
{
	if (cs)
		atomic_store(&cs->frozen, true);
}

void rmq_bridge_consumers_stats(const struct rmq_bridge_consumers *cs, int core, struct rmq_bridge_cstats *out)
{
	if (cs && core < cs->n)
		*out = cs->k[core].st;
	else
		memset(out, 0, sizeof(*out));
}

/* ---- start and stop (main thread) --------------------------------------------------------------------- */

static bool key_in(const char *key, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, keys[i]) == 0)
			return true;
	return false;
}

/* Producer-only properties that ringmq's own flags put in the shared -X list: not given to consumers (librdkafka
 * would warn about each). */
bool rmq_bridge_producer_only(const char *key)
{
	static const char *const keys[] = {"linger.ms", "batch.num.messages", "batch.size", "compression.codec",
					   "acks", "enable.idempotence", "message.timeout.ms", "partitioner",
					   "queue.buffering.max.messages", "queue.buffering.max.kbytes"};
	return key_in(key, keys, sizeof(keys) / sizeof(keys[0]));
}

/* Consumer-only properties an operator gives with -X (group membership and fetching): not given to producers,
 * which librdkafka would warn about once per producer at start. */
bool rmq_bridge_consumer_only(const char *key)
{
	static const char *const keys[] = {"session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
					   "group.instance.id", "partition.assignment.strategy", "fetch.wait.max.ms",
					   "fetch.min.bytes", "fetch.max.bytes", "max.partition.fetch.bytes",
					   "auto.offset.reset", "isolation.level", "check.crcs"};
	return key_in(key, keys, sizeof(keys) / sizeof(keys[0]));
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *why, size_t len)
{
	return rd_kafka_conf_set(conf, k, v, why, len) == RD_KAFKA_CONF_OK ? 0 : -EINVAL;
}

static int consumer_start(struct consumer *k, const struct rmq_bridge_cfg *cfg, const char *bootstraps, char *why,
			  size_t len)
{
	char client_id[64];
	snprintf(client_id, sizeof(client_id), "ringmq-consumer-%d", k->id);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	/* session.timeout.ms 10 s (librdkafka: 45 s): after a crash the restarted node's consumers get the
	 * partitions back within seconds, so the commands that were waiting flow again quickly.
	 * fetch.wait.max.ms 100: a command is latency-sensitive; the broker answers earlier when data is there. */
	int rc = conf_set(conf, "bootstrap.servers", bootstraps, why, len) ||
		 conf_set(conf, "client.id", client_id, why, len) ||
		 conf_set(conf, "group.id", cfg->group ? cfg->group : RMQ_BRIDGE_DEFAULT_GROUP, why, len) ||
		 conf_set(conf, "enable.auto.commit", "false", why, len) ||
		 conf_set(conf, "enable.auto.offset.store", "false", why, len) ||
		 conf_set(conf, "auto.offset.reset", cfg->offset_latest ? "latest" : "earliest", why, len) ||
		 conf_set(conf, "session.timeout.ms", "10000", why, len) ||
		 conf_set(conf, "heartbeat.interval.ms", "1000", why, len) ||
		 conf_set(conf, "fetch.wait.max.ms", "100", why, len);
	for (int i = 0; rc == 0 && i < cfg->nkv; i++)
		if (!rmq_bridge_producer_only(cfg->kv[i].key))
			rc = conf_set(conf, cfg->kv[i].key, cfg->kv[i].value, why, len);
	if (rc) {
		rd_kafka_conf_destroy(conf);
		return -EINVAL;
	}
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_opaque(conf, k);
	k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, len);
	if (!k->rk) {
		rd_kafka_conf_destroy(conf);
		return -EINVAL;
	}
	rd_kafka_poll_set_consumer(k->rk); /* rebalances, commits and errors arrive with the records */
	rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(k->rk);
	uint64_t one = 1;
	rd_kafka_queue_io_event_enable(q, k->efd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);
	wake(k->efd); /* the io event fires on an empty -> non-empty edge only: look once anyway */
	return 0;
}

int rmq_bridge_consumers_start(struct rmq_bridge_consumers **out, const struct rmq_bridge_cfg *cfg,
			       const char *bootstraps, int ncores, const int *efds, char *why, size_t len)
{
	*out = NULL;
	if (!cfg->nconsumes)
		return 0;
	struct rmq_bridge_consumers *cs = calloc(1, sizeof(*cs));
	if (!cs || !(cs->k = calloc((size_t)ncores, sizeof(*cs->k)))) {
		free(cs);
		return -ENOMEM;
	}
	atomic_init(&cs->frozen, false);
	cs->n = ncores;
	cs->start_at_ms = (int64_t)rmq_clock_mono_ms() + cfg->consume_delay_ms;
	cs->max_outstanding = (uint32_t)cfg->consume_max;
	int rc = 0;
	for (int i = 0; rc == 0 && i < cfg->nconsumes; i++)
		if ((rc = rmq_bridge_consume_parse(&cs->routes[i], cfg->consumes[i].spec, why, len)) == 0)
			cs->nroutes++;
	for (int c = 0; rc == 0 && c < ncores; c++) {
		struct consumer *k = &cs->k[c];
		k->cs = cs;
		k->id = c;
		k->efd = efds[c];
		atomic_init(&k->inbox, NULL);
		rc = consumer_start(k, cfg, bootstraps, why, len);
	}
	if (rc) {
		rmq_bridge_consumers_stop(cs);
		return rc;
	}
	fprintf(stderr, "kafka: %d consumer%s in group %s, %d consume route%s, offset reset %s, consuming in %d ms\n",
		ncores, ncores > 1 ? "s" : "", cfg->group ? cfg->group : RMQ_BRIDGE_DEFAULT_GROUP, cs->nroutes,
		cs->nroutes > 1 ? "s" : "", cfg->offset_latest ? "latest" : "earliest", cfg->consume_delay_ms);
	*out = cs;
	return 0;
}

/* After the reactors stopped: commit what finished, leave the group, free. Completions that
 * reached an inbox but no reactor are not committed: those records come again after the restart. */
void rmq_bridge_consumers_stop(struct rmq_bridge_consumers *cs)
{
	if (!cs)
		return;
	atomic_store(&cs->frozen, true);
	for (int c = 0; cs->k && c < cs->n; c++) {
		struct consumer *k = &cs->k[c];
		if (k->st.records)
			fprintf(stderr, "kafka: consumer %d: records %llu, published %llu, skipped %llu, finished %llu, "
				"commits %llu (%llu failed), rebalances %llu, paused at the bound %llu\n", k->id,
				(unsigned long long)k->st.records, (unsigned long long)k->st.handed,
				(unsigned long long)k->st.skipped, (unsigned long long)k->st.finished,
				(unsigned long long)k->st.commits, (unsigned long long)k->st.commit_errors,
				(unsigned long long)k->st.rebalances, (unsigned long long)k->st.paused);
		if (k->rk) {
			/* Asynchronous: rd_kafka_consumer_close() waits for it, bounded by session.timeout.ms, where a
			 * synchronous commit to a Kafka that just went away would wait for the socket timeout (60 s). */
			commit(k, NULL);
			rd_kafka_consumer_close(k->rk);
			/* librdkafka up to at least 2.0.2 can hang for ever in rd_kafka_destroy() of a consumer whose
			 * subscribed topic was deleted (a toppar reference kept; librdkafka issue 4362). At shutdown the
			 * process is about to exit: leaving the closed handle is safe, hanging the stop is not. */
			if (k->st.topic_missing)
				fprintf(stderr, "kafka: consumer %d: a consumed topic was deleted: its closed handle is left to "
					"the exit (librdkafka can hang destroying it)\n", k->id);
			else
				rd_kafka_destroy(k->rk);
		}
		struct inrec *r = atomic_exchange(&k->inbox, NULL);
		while (r) {
			struct inrec *next = r->next;
			free(r);
			r = next;
		}
		for (int i = 0; i < k->nparts; i++) {
			free(k->parts[i]->topic);
			free(k->parts[i]->offs);
			free(k->parts[i]->done);
			free(k->parts[i]);
		}
		free(k->parts);
		free(k->ubuf);
		rmq_bridge_buf_free(&k->topic);
	}
	for (int i = 0; i < cs->nroutes; i++)
		rmq_bridge_consume_free(&cs->routes[i]);
	free(cs->k);
	free(cs);
}
