/* The core's side of the Kafka spool (--spool): per QoS 1/2 publish on a Kafka route, producer or disk; the
 * PUBACK once durable; replay into Kafka; metrics; drain at stop. Reactor thread of the core it is given. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringmq/clock.h"
#include "io/reactor.h"
#include "ringmq/bridge.h"
#include "store/kafka_spool.h"
#include "store/store.h"
#include "store/spool.h"

/* When the spool takes over (rmq_kspool_publish):
 *  - the producer refused the message (-ENOBUFS: librdkafka's queue is full, or the bridge's deferred FIFO is
 *    not empty). Without the spool the car would be paused; with it, the car goes on and its data is on disk.
 *  - librdkafka said every broker is down (RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN). Waiting for the queue to fill
 *    is not enough: a fleet of cars each holding a few messages in flight (paho's default window is 20) never
 *    fills a 100000-message queue, so without this the cars would just stall, unacknowledged, with their data
 *    in ringmq's memory instead of on disk. The flag clears on the next successful delivery (a replayed
 *    message is the probe: replay runs while Kafka is down too, up to half the producer queue).
 *  - the spool holds anything not yet delivered (rmq_spool_empty false): a message never overtakes a spooled
 *    one of the same car, so new messages queue behind the spool until replay has emptied it.
 * While Kafka is up and the spool drains, it takes new messages only at half the rate replay delivers (one
 * record per two replayed; the cars wait, paused, for the rest): the disk acknowledges faster than Kafka takes
 * (measured: bench/kafka_spool.sh), so without this bound a spool engaged once under heavy load would never
 * empty again and every message would keep taking the detour through the disk.
 * Messages already in librdkafka when Kafka goes down would hold their cars' PUBACKs (they leave in PUBLISH
 * order [MQTT-4.6.0-2]), so whenever the spool takes over from an empty state (and on the first sight of "all
 * brokers down" while it is empty), the ones not yet sent to a broker are taken back (rmq_bridge_core_reclaim)
 * and spooled in publish order, ahead of anything newer. Left in librdkafka (they go first when Kafka returns, ahead of the replay, so per-car order
 * holds, but their PUBACKs wait): messages already in a request to a broker, everything when the producer is
 * shared by several cores (--kafka-producers), and the reclaimed ones the spool had no room for.
 *
 * Failed replays: with message.timeout.ms=0 (the bridge's default) librdkafka never gives up on a transient
 * error, so a failed replay is either permanent (too large, not authorized, policy: the same bytes will fail
 * forever, and holding them would stop the whole spool) -- dropped, counted and logged, the car already had
 * its PUBACK -- or, with -X message.timeout.ms set, a timeout: then everything not yet delivered is replayed
 * again after RETRY_MS, which can duplicate the messages that were in flight behind the failed one. */

#define PUMP_BATCH 1024          /* replays handed to the producer per loop iteration, so clients get a turn */
#define RETRY_MS 1000            /* after a transient replay failure, wait this long before replaying again */
#define ROOM_NUM 3               /* a paused car resumes once the spool is below 3/4 of its bound: */
#define ROOM_DEN 4               /* hysteresis, so it is not resumed for one message only */
#define STOP_WAIT_MS 2000        /* at stop, how long to wait for replays in flight (so a restart does not
				  * replay what Kafka already has) */
#define LOG_MS 10000             /* one line per kind of replay trouble per 10 s */
#define MAX_PARTS 32             /* = the bridge's route bound (RMQ_BRIDGE_MAX_ROUTES) */

struct part {                    /* one rendered route, copied into the scratch buffer (offsets) */
	size_t topic, key, value, headers;
	struct rmq_bridge_kmsg k;
};

struct kspool {
	struct rmq_spool *s;
	uint64_t ud_base;
	uint64_t max_bytes;
	uint8_t *buf;                /* scratch: the rendered routes of the publish being spooled */
	size_t len, cap;
	struct part parts[MAX_PARTS];
	int nparts;
	bool rewind_wait;            /* a replay failed: rewind once the others came back and RETRY_MS passed */
	uint64_t retry_at_ms, last_log_ms;
	bool prep_failed;
	bool reclaim_done;           /* this outage's reclaim happened (reset when Kafka is back) */
	uint32_t drain_credit;       /* Kafka up, spool draining: new records it may take (half of those replayed) */
	struct kspool_counters st;
};


static bool log_due(struct core *c, struct kspool *k)
{
	if (k->last_log_ms && c->now_ms - k->last_log_ms < LOG_MS)
		return false;
	k->last_log_ms = c->now_ms ? c->now_ms : 1;
	return true;
}

/* A spool cookie is the bridge cookie + 1: the log reports only non-zero cookies, and the bridge cookie of
 * slot 0, generation 0, window position 0 is 0. RECLAIMED marks a message taken back from librdkafka; the two
 * bridge cookies that would collide with it or with 0 are never spooled (rmq_kspool_publish). */
#define RECLAIMED UINT64_MAX

static void on_durable(void *ud, uint64_t cookie, int err)
{
	struct core *c = ud;
	if (cookie == RECLAIMED) {
		rmq_bridge_core_spilled(c->bc, err);
		return;
	}
	if (err) {
		c->kspool->st.append_failed++;
		if (log_due(c, c->kspool))
			fprintf(stderr, "ringmq: core %d: spool: write failed: %s (publishes get 0x80 or a disconnect)\n",
				c->id, strerror(-err));
	}
	c->store_hooks->kafka_done(c, cookie - 1, err, err ? RMQ_RC_UNSPECIFIED : 0);
}

static bool permanent(int err)
{
	return err == -EMSGSIZE || err == -EACCES || err == -EDQUOT || err == -EINVAL;
}

static void give_up(struct core *c, uint64_t seq, int err)
{
	struct kspool *k = c->kspool;
	rmq_spool_ack(k->s, seq);
	k->st.dropped++;
	if (log_due(c, k))
		fprintf(stderr, "ringmq: core %d: spool: Kafka refused a spooled message for good (%s): dropped, "
			"counted in ringmq_kafka_spool_dropped_total\n", c->id, strerror(-err));
}

/* Completion of one replay (rmq_bridge_produce_rendered with cookie = spool seq). */
static void on_replayed(void *ud, uint64_t seq, int err, uint8_t reason)
{
	struct core *c = ud;
	struct kspool *k = c->kspool;
	(void)reason;
	if (!k)
		return;  /* stopping: the spool is closed, the restart replays it */
	if (!err) {
		if (rmq_spool_ack(k->s, seq) == 0) {
			k->st.replayed++;
			k->drain_credit += k->st.replayed & 1;  /* one per two replayed */
		}
		return;
	}
	if (permanent(err)) {
		give_up(c, seq, err);
		return;
	}
	k->st.replay_retries++;
	if (!k->rewind_wait) {
		k->rewind_wait = true;
		k->retry_at_ms = c->now_ms + RETRY_MS;
		if (log_due(c, k))
			fprintf(stderr, "ringmq: core %d: spool: replay failed (%s), replaying again in %d ms\n", c->id,
				strerror(-err), RETRY_MS);
	}
}

/* mkdir -p (start-up only). */
static int mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		int rc = mkdir(path, 0755) && errno != EEXIST ? -errno : 0;
		*p = '/';
		if (rc)
			return rc;
	}
	return mkdir(path, 0755) && errno != EEXIST ? -errno : 0;
}

int rmq_kspool_open(struct core *c)
{
	const struct rmq_config *cfg = &c->b->cfg;
	if (!cfg->spool)
		return 0;
	if (!c->bc) {
		if (c->id == 0)
			fprintf(stderr, "ringmq: --spool has nothing to do without the Kafka bridge (--kafka off)\n");
		return 0;
	}
	char dir[sizeof(cfg->data_dir) + 32];
	snprintf(dir, sizeof(dir), "%s/core-%d/spool", cfg->data_dir, c->id);
	int rc = mkdirs(dir);
	struct kspool *k = calloc(1, sizeof(*k));
	if (rc || !k) {
		free(k);
		rc = rc ? rc : -ENOMEM;
		fprintf(stderr, "ringmq: core %d: spool %s: %s\n", c->id, dir, strerror(-rc));
		return rc;
	}
	struct rmq_spool_opts o = {.wal = {.fsync = (enum rmq_wal_fsync)cfg->fsync_policy}, .max_bytes = cfg->spool_max_bytes};
	struct rmq_spool_recovery rec;
	rc = rmq_spool_open(&k->s, dir, &o, on_durable, c, &rec);
	if (rc) {
		fprintf(stderr, "ringmq: core %d: spool %s: %s\n", c->id, dir, strerror(-rc));
		free(k);
		return rc;
	}
	k->ud_base = ud_pack(OP_SPOOL, 0, 0);
	rmq_spool_set_foreign(k->s, rmq_core_log_foreign, c);
	k->max_bytes = o.max_bytes;
	c->kspool = k;
	rmq_bridge_core_set_replay(c->bc, on_replayed, c);
	/* stdout, like "listening on": operators and tests read how much is waiting for Kafka */
	printf("ringmq: core %d: spool %s: %llu records, %llu bytes to replay (recovered in %llu ms, fsync %s)\n",
	       c->id, dir, (unsigned long long)rec.backlog_records, (unsigned long long)rec.backlog_bytes,
	       (unsigned long long)(rec.wal.usec / 1000), rmq_wal_fsync_name(o.wal.fsync));
	fflush(stdout);
	return 0;
}

/* ---- spooling one publish ---------------------------------------------------------------------- */

static int scratch_put(struct kspool *k, const void *p, size_t n, size_t *at)
{
	if (k->len + n > k->cap) {
		size_t cap = k->cap ? k->cap : 4096;
		while (cap < k->len + n)
			cap *= 2;
		uint8_t *nb = realloc(k->buf, cap);
		if (!nb)
			return -ENOMEM;
		k->buf = nb;
		k->cap = cap;
	}
	*at = k->len;
	if (n)
		memcpy(k->buf + k->len, p, n);
	k->len += n;
	return 0;
}

/* rmq_bridge_render_all callback: the bridge's buffers are reused per route, so copy. */
static int collect(void *ud, const struct rmq_bridge_kmsg *km)
{
	struct kspool *k = ud;
	if (k->nparts == MAX_PARTS)
		return -E2BIG;
	struct part *p = &k->parts[k->nparts];
	p->k = *km;
	if (scratch_put(k, km->topic, km->topic_len, &p->topic) || scratch_put(k, km->key, km->key_len, &p->key) ||
	    scratch_put(k, km->value, km->value_len, &p->value) ||
	    scratch_put(k, km->headers, km->headers_len, &p->headers))
		return -ENOMEM;
	k->nparts++;
	return 0;
}

static struct rmq_spool_msg from_kmsg(const struct rmq_bridge_kmsg *km)
{
	return (struct rmq_spool_msg){
		.topic = km->topic, .topic_len = (uint16_t)km->topic_len, .has_key = km->has_key, .key = km->key,
		.key_len = (uint32_t)km->key_len, .value = km->value, .value_len = (uint32_t)km->value_len,
		.headers = km->headers, .headers_len = (uint32_t)km->headers_len,
	};
}

/* Appends every route of the publish, or none. Only the last record carries the cookie: the log reports
 * durability in append order, so when it is durable all of them are. */
static int spool_msg(struct core *c, const struct rmq_bridge_msg *bm, uint64_t cookie)
{
	struct kspool *k = c->kspool;
	k->len = 0;
	k->nparts = 0;
	int n = rmq_bridge_render_all(c->bc, bm, collect, k);
	if (n <= 0)
		return n;
	struct rmq_spool_msg m[MAX_PARTS];
	for (int i = 0; i < k->nparts; i++) {
		const struct part *p = &k->parts[i];
		if (p->k.topic_len > UINT16_MAX || p->k.value_len > UINT32_MAX / 2)
			return -EMSGSIZE;
		struct rmq_bridge_kmsg km = p->k;  /* the same, pointing into the scratch buffer */
		km.topic = (const char *)k->buf + p->topic;
		km.key = k->buf + p->key;
		km.value = k->buf + p->value;
		km.headers = k->buf + p->headers;
		m[i] = from_kmsg(&km);
	}
	bool draining = !rmq_spool_empty(k->s) && !rmq_bridge_core_kafka_down(c->bc);
	if (draining && k->drain_credit < (uint32_t)k->nparts) {
		k->st.throttled++;
		return -ENOBUFS;  /* the car waits while replay catches up */
	}
	int rc = rmq_spool_reserve(k->s, m, k->nparts);
	if (rc) {
		k->st.refused++;
		return -ENOBUFS;  /* full (or the disk is behind): backpressure, as without the spool */
	}
	if (draining)
		k->drain_credit -= (uint32_t)k->nparts;
	for (int i = 0; i < k->nparts; i++) {
		rc = rmq_spool_append(k->s, &m[i], i == k->nparts - 1 ? cookie + 1 : 0);
		if (rc) {
			/* only a failed log gets here (reserve said yes): earlier routes may be in, the car gets an
			 * error and resends: at-least-once for them */
			k->st.append_failed++;
			return rc == -ENOBUFS || rc == -ENOSPC ? -EIO : rc;
		}
	}
	k->st.spooled++;
	return n;
}

/* rmq_bridge_core_reclaim callback: one message taken back from librdkafka. */
static int spool_reclaimed(void *ud, const struct rmq_bridge_kmsg *km)
{
	struct core *c = ud;
	struct rmq_spool_msg m = from_kmsg(km);
	if (km->topic_len > UINT16_MAX || km->value_len > UINT32_MAX / 2 || rmq_spool_reserve(c->kspool->s, &m, 1))
		return -ENOSPC;
	return rmq_spool_append(c->kspool->s, &m, RECLAIMED);
}

/* The spool is about to take over (it is empty): first take back what librdkafka holds, so those messages are
 * spooled ahead of the new ones and their cars' PUBACKs no longer wait for Kafka. */
static void reclaim(struct core *c, struct kspool *k)
{
	k->reclaim_done = true;
	int n = rmq_bridge_core_reclaim(c->bc, spool_reclaimed, c);
	if (n > 0) {
		k->st.reclaimed += (uint64_t)n;
		fprintf(stderr, "ringmq: core %d: spool takes over: %d messages moved from the producer queue to the spool\n",
			c->id, n);
	}
}

int rmq_kspool_publish(struct core *c, const struct rmq_bridge_msg *bm, uint64_t cookie)
{
	struct kspool *k = c->kspool;
	if (cookie >= RECLAIMED - 1)
		return rmq_bridge_publish(c->bc, bm, cookie);  /* see RECLAIMED */
	if (rmq_spool_empty(k->s)) {
		if (!rmq_bridge_core_kafka_down(c->bc)) {
			int rc = rmq_bridge_publish(c->bc, bm, cookie);
			if (rc != -ENOBUFS)
				return rc;
		}
		k->st.took_over++;
		reclaim(c, k);
	}
	return spool_msg(c, bm, cookie);
}

/* ---- replay, the log's ring work, backpressure ------------------------------------------------- */

static void replay(struct core *c, struct kspool *k)
{
	for (int i = 0; i < PUMP_BATCH; i++) {
		struct rmq_spool_msg m;
		int rc = rmq_spool_peek(k->s, &m);
		if (rc == -EIO && log_due(c, k))
			fprintf(stderr, "ringmq: core %d: spool: cannot read the spool back (I/O error or corruption); "
				"replay stops\n", c->id);
		if (rc)
			return;  /* -ENODATA: all handed out; -EAGAIN: read pending; -EBUSY: window full */
		struct rmq_bridge_kmsg km = {.topic = m.topic, .topic_len = m.topic_len, .has_key = m.has_key,
					     .key = m.key, .key_len = m.key_len, .value = m.value,
					     .value_len = m.value_len, .headers = m.headers, .headers_len = m.headers_len};
		rc = rmq_bridge_produce_rendered(c->bc, &km, m.seq);
		if (rc == -ENOBUFS || rc == -ENOMEM)
			return;
		rmq_spool_next(k->s);
		if (rc)
			give_up(c, m.seq, rc);
	}
}

void rmq_kspool_pump(struct core *c)
{
	struct kspool *k = c->kspool;
	if (!k)
		return;
	/* Kafka went down while the spool is empty: messages stranded in librdkafka hold their cars' PUBACKs even
	 * if no new publish comes to trigger the takeover. Once per outage. */
	bool down = rmq_bridge_core_kafka_down(c->bc);
	if (down && !k->reclaim_done && rmq_spool_empty(k->s))
		reclaim(c, k);
	if (!down)
		k->reclaim_done = false;
	if (k->rewind_wait && rmq_spool_inflight(k->s) == 0 && c->now_ms >= k->retry_at_ms) {
		rmq_spool_rewind(k->s);
		k->rewind_wait = false;
	}
	if (!k->rewind_wait && !rmq_spool_empty(k->s))
		replay(c, k);
	int rc = rmq_spool_prep(k->s, &c->ring, k->ud_base);
	if (rc < 0 && rc != -EBUSY && !k->prep_failed) {
		k->prep_failed = true;
		fprintf(stderr, "ringmq: core %d: spool: %s\n", c->id, strerror(-rc));
	}
}

void rmq_kspool_on_cqe(struct core *c, struct io_uring_cqe *cqe)
{
	if (c->kspool)
		rmq_spool_complete(c->kspool->s, cqe->user_data, cqe->res);
}

bool rmq_kspool_writable(struct core *c)
{
	struct kspool *k = c->kspool;
	if (rmq_spool_empty(k->s)) {
		k->drain_credit = 0;
		return true;  /* a publish the producer refuses is spooled */
	}
	if (!rmq_bridge_core_kafka_down(c->bc) && !k->drain_credit)
		return false;
	struct rmq_spool_stats st;
	rmq_spool_stats(k->s, &st);
	return st.backlog_bytes < k->max_bytes / ROOM_DEN * ROOM_NUM && !st.wal.error;
}

void rmq_kspool_stats(struct core *c, struct rmq_kspool_stats *out)
{
	struct kspool *k = c->kspool;
	memset(out, 0, sizeof(*out));
	if (!k)
		return;
	struct rmq_spool_stats st;
	rmq_spool_stats(k->s, &st);
	out->c = k->st;
	out->backlog_records = st.backlog_records;
	out->backlog_bytes = st.backlog_bytes;
	out->disk_bytes = st.wal.disk_bytes;
	out->inflight = st.inflight;
	out->refused_full = st.refused_full;
	out->fsyncs = st.wal.fsyncs;
	out->commit_p99_us = st.wal.commit_p99_us;
	out->commit_max_us = st.wal.commit_max_us;
}

/* ---- stop ---------------------------------------------------------------------------------------- */

void rmq_kspool_close(struct core *c, bool drain)
{
	struct kspool *k = c->kspool;
	if (!k)
		return;
	if (drain && c->ring_ok) {
		/* Replays in flight: their delivery reports let the last mark say Kafka has them. */
		uint64_t deadline = rmq_clock_mono_ms() + STOP_WAIT_MS;
		while (rmq_spool_inflight(k->s) && !rmq_bridge_core_kafka_down(c->bc) && rmq_clock_mono_ms() < deadline) {
			rmq_bridge_core_poll(c->bc, c->store_hooks->kafka_done, c);
			usleep(5000);
		}
		int rc = rmq_spool_drain(k->s, &c->ring, k->ud_base);
		if (rc)
			fprintf(stderr, "ringmq: core %d: spool: drain at stop: %s\n", c->id, strerror(-rc));
		/* What became durable just now: PUBACKs (reclaimed ones complete through the bridge), sent before the
		 * connections close, so those cars do not send them again. */
		rmq_bridge_core_poll(c->bc, c->store_hooks->kafka_done, c);
		rmq_conn_flush_all(c);
		io_uring_submit(&c->ring);
		struct rmq_spool_stats st;
		rmq_spool_stats(k->s, &st);
		if (st.backlog_records)
			printf("ringmq: core %d: spool keeps %llu records, %llu bytes for Kafka (replayed at start)\n",
			       c->id, (unsigned long long)st.backlog_records, (unsigned long long)st.backlog_bytes);
		fflush(stdout);
	}
	c->kspool = NULL;  /* a report served later (another core, shared producer) finds no spool */
	rmq_spool_close(k->s);
	free(k->buf);
	free(k);
}
