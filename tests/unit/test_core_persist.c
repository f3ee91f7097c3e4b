/* Unit tests for core/store/persist.c: the record codec (every type, negative space), and the log as a core uses it:
 * state logged through the real session/retain paths, replayed into a fresh core, compacted, replayed again. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/msg.h"
#include "index/retain.h"
#include "index/trie.h"
#include "io/reactor.h"
#include "mqtt/mqtt.h"
#include "ops/config.h"
#include "store/persist.h"
#include "wal_helpers.h"

#define STR(x) ((struct rmq_str){(const uint8_t *)(x), (uint32_t)strlen(x)})

/* ---- codec ------------------------------------------------------------------------------------- */

static struct rmq_persist_rec full_rec(uint16_t type)
{
	static const uint8_t msg[] = {0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x01};
	struct rmq_persist_rec r = {.type = type, .id = STR("car-42"), .proto_version = 5, .expiry = 3600,
				    .options = 0x25, .sub_id = 268435455, .filter = STR("cars/+/state"), .pid = 65535,
				    .qos = 2, .retain = 1, .state = 2, .share_key = 0x0123456789abcdefull, .nids = 3,
				    .expire_wall_ms = 1700000000123ull, .stamp = 99, .msg = msg, .msg_len = sizeof(msg)};
	r.ids[0] = 1;
	r.ids[1] = 70000;
	r.ids[2] = 268435455;
	return r;
}

Test(core_persist, every_type_round_trips)
{
	for (uint16_t t = 1; t < RMQ_PR__COUNT; t++) {
		struct rmq_persist_rec in = full_rec(t), out;
		uint8_t buf[512];
		ssize_t n = rmq_persist_encode(buf, sizeof(buf), &in);
		cr_assert_gt(n, 1, "type %u", t);
		cr_assert_eq(buf[0], RMQ_PERSIST_VER, "version byte first");
		cr_assert_eq(rmq_persist_decode(t, buf, (size_t)n, &out), 0, "type %u", t);
		cr_assert_eq(out.type, t);
		/* Each type keeps the fields it declares; every declared field must come back intact. */
		if (out.id.len)
			cr_assert(out.id.len == 6 && !memcmp(out.id.p, "car-42", 6));
		if (out.filter.len)
			cr_assert(out.filter.len == 12 && !memcmp(out.filter.p, "cars/+/state", 12));
		if (out.msg_len)
			cr_assert(out.msg_len == in.msg_len && !memcmp(out.msg, in.msg, in.msg_len));
		if (out.nids) {
			cr_assert_eq(out.nids, 3);
			cr_assert_eq(out.ids[1], 70000);
			cr_assert_eq(out.ids[2], 268435455);
		}
		if (out.share_key)
			cr_assert_eq(out.share_key, in.share_key);
		if (out.pid)
			cr_assert_eq(out.pid, 65535);
		if (out.stamp)
			cr_assert_eq(out.stamp, 99);
		if (out.expire_wall_ms)
			cr_assert_eq(out.expire_wall_ms, in.expire_wall_ms);
	}
	struct rmq_persist_rec in = full_rec(RMQ_PR_SUB_ADD), out;
	uint8_t buf[256];
	ssize_t n = rmq_persist_encode(buf, sizeof(buf), &in);
	cr_assert_eq(rmq_persist_decode(RMQ_PR_SUB_ADD, buf, (size_t)n, &out), 0);
	cr_assert_eq(out.options, 0x25);
	cr_assert_eq(out.sub_id, 268435455);
	in = full_rec(RMQ_PR_SESS_PUT);
	n = rmq_persist_encode(buf, sizeof(buf), &in);
	cr_assert_eq(rmq_persist_decode(RMQ_PR_SESS_PUT, buf, (size_t)n, &out), 0);
	cr_assert(out.proto_version == 5 && out.expiry == 3600);
}

Test(core_persist, encode_reports_the_length_it_needs)
{
	struct rmq_persist_rec in = full_rec(RMQ_PR_QUEUE_PUSH);
	uint8_t small[8], big[256];
	ssize_t need = rmq_persist_encode(small, sizeof(small), &in);
	cr_assert_gt(need, (ssize_t)sizeof(small));
	cr_assert_eq(rmq_persist_encode(big, sizeof(big), &in), need);
	cr_assert_eq(rmq_persist_encode(NULL, 0, &in), need, "a NULL buffer only measures");
}

Test(core_persist, bad_records_are_refused)
{
	struct rmq_persist_rec in = full_rec(RMQ_PR_INFL_ADD), out;
	uint8_t buf[256];
	ssize_t n = rmq_persist_encode(buf, sizeof(buf), &in);
	for (ssize_t cut = 0; cut < n; cut++)
		cr_assert_neq(rmq_persist_decode(RMQ_PR_INFL_ADD, buf, (size_t)cut, &out), 0, "truncated at %zd", cut);
	buf[n] = 0;
	cr_assert_eq(rmq_persist_decode(RMQ_PR_INFL_ADD, buf, (size_t)n + 1, &out), -EBADMSG, "trailing byte");
	buf[0] = RMQ_PERSIST_VER + 1;
	cr_assert_eq(rmq_persist_decode(RMQ_PR_INFL_ADD, buf, (size_t)n, &out), -EPROTO, "unknown version");
	buf[0] = RMQ_PERSIST_VER;
	cr_assert_eq(rmq_persist_decode(0, buf, (size_t)n, &out), -EPROTO, "type 0");
	cr_assert_eq(rmq_persist_decode(RMQ_PR__COUNT, buf, (size_t)n, &out), -EPROTO, "unknown type");
	buf[11] = 3;  /* INFL_ADD: version 1, id 2 + 6, pid 2: the QoS byte is at 11 */
	cr_assert_neq(rmq_persist_decode(RMQ_PR_INFL_ADD, buf, (size_t)n, &out), 0, "QoS 3");
	in.nids = RMQ_MAX_SUB_IDS + 1;
	cr_assert_eq(rmq_persist_encode(buf, sizeof(buf), &in), -EINVAL);
	in = full_rec(0);
	cr_assert_eq(rmq_persist_encode(buf, sizeof(buf), &in), -EINVAL);
}

Test(core_persist, message_survives_the_publish_encoding)
{
	struct rmq_publish p;
	memset(&p, 0, sizeof(p));
	p.qos = 1;
	p.retain = true;
	p.topic = STR("cars/V1/state");
	p.payload = STR("{\"speed\":42}");
	p.props.present = RMQ_PBIT(RMQ_PROP_CONTENT_TYPE) | RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY) |
			  RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS);
	p.props.content_type = STR("application/json");
	p.props.message_expiry = 30;
	p.props.topic_alias = 3;
	uint8_t buf[256];
	ssize_t n = rmq_persist_msg_encode(buf, sizeof(buf), &p);
	cr_assert_gt(n, 0);
	struct rmq_packet pk;
	struct rmq_decode_ctx dc = {.version = RMQ_V5, .role = RMQ_ROLE_SERVER};
	cr_assert_eq(rmq_proto_decode(buf, (size_t)n, &dc, &pk), RMQ_OK);
	const struct rmq_publish *q = &pk.u.publish;
	cr_assert(q->qos == 1 && q->retain);
	cr_assert(q->topic.len == p.topic.len && !memcmp(q->topic.p, p.topic.p, p.topic.len));
	cr_assert(q->payload.len == p.payload.len && !memcmp(q->payload.p, p.payload.p, p.payload.len));
	cr_assert(q->props.present & RMQ_PBIT(RMQ_PROP_CONTENT_TYPE));
	cr_assert_eq(q->props.message_expiry, 30);
	cr_assert_not(q->props.present & RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS), "per-hop alias never stored");
}

/* ---- a core's log ------------------------------------------------------------------------------- */

static struct rmq_security tsec;  /* no password file, no ACL */
static struct broker tbroker = {.sec = &tsec};

static uint64_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void core_up(struct core *c)
{
	memset(c, 0, sizeof(*c));
	c->b = &tbroker;
	c->store_hooks = &rmq_mqtt_store_hooks;
	cr_assert_eq(rmq_mqtt_core_new(c), 0);
	c->subs = rmq_trie_new();
	c->routes = rmq_trie_new();
	c->retained = rmq_retain_new();
	rmq_strmap_init(&c->sessions);
	c->now_ms = mono_now();
	rmq_wheel_init(&c->wheel, c->now_ms, 100);
	cr_assert_eq(io_uring_queue_init(64, &c->ring, 0), 0);
	c->ring_ok = true;
	cr_assert_eq(rmq_persist_open(c), 0);
	cr_assert_not_null(c->persist);
}

static void free_session(void *ud, void *v) { rmq_session_destroy(ud, v); }
static void release(void *v) { rmq_msg_unref(v); }

static void core_down(struct core *c)
{
	rmq_persist_close(c);
	cr_assert_null(c->persist);
	c->stopping = true;
	struct rmq_strmap m = c->sessions;
	rmq_strmap_init(&c->sessions);
	rmq_strmap_each(&m, free_session, c);
	rmq_strmap_destroy(&m);
	rmq_trie_free(c->subs);
	rmq_trie_free(c->routes);
	rmq_retain_free(c->retained, release);
	rmq_mqtt_core_free(c);
	io_uring_queue_exit(&c->ring);
}

static void setup(void)
{
	tdir_make(&td);
	rmq_config_defaults(&tbroker.cfg);
	snprintf(tbroker.cfg.data_dir, sizeof(tbroker.cfg.data_dir), "%s/data", td.path);
	tbroker.cfg.fsync_policy = RMQ_WAL_FSYNC_ALWAYS;
	tbroker.ncores = 1;
	atomic_store(&tbroker.stamp, 0);
}

static void teardown(void) { tdir_remove(&td); }

static struct rmq_msg *msg(const char *topic, const char *payload, uint8_t qos)
{
	struct rmq_publish p;
	memset(&p, 0, sizeof(p));
	p.qos = qos;
	p.topic = STR(topic);
	p.payload = STR(payload);
	return rmq_msg_new(&p);
}

/* Delivers to an offline session through the real path (rmq_session_deliver queues and logs it). */
static void deliver(struct core *c, struct session *s, const char *payload, uint32_t sub_id)
{
	struct rmq_msg *m = msg("cars/1/cmd", payload, 1);
	struct pubctx x = {c, &m->pub, m, true, NULL, 0, false};
	rmq_session_deliver(c, s, &x, 1, false, &sub_id, sub_id ? 1 : 0);
	rmq_msg_unref(m);
}

static struct session *persistent(struct core *c, const char *id)
{
	struct session *s = rmq_session_create(c, (const uint8_t *)id, strlen(id));
	cr_assert_not_null(s);
	s->version = RMQ_V5;
	s->expiry = UINT32_MAX;
	rmq_persist_session_connected(c, s);
	cr_assert(s->durable);
	return s;
}

static void build_state(struct core *c)
{
	struct session *s = persistent(c, "car-1");
	cr_assert_eq(rmq_session_sub_add(s, (const uint8_t *)"cars/1/#", 8, 1, 7), 1);
	rmq_persist_sub_add(c, s, (const uint8_t *)"cars/1/#", 8, 1, 7);
	cr_assert_eq(rmq_session_sub_add(s, (const uint8_t *)"gone/#", 6, 0, 0), 1);
	rmq_persist_sub_add(c, s, (const uint8_t *)"gone/#", 6, 0, 0);
	rmq_session_sub_del(s, (const uint8_t *)"gone/#", 6);
	rmq_persist_sub_del(c, s, (const uint8_t *)"gone/#", 6);
	for (int i = 0; i < 4; i++) {
		char p[8];
		snprintf(p, sizeof(p), "q%d", i);
		deliver(c, s, p, 7);
	}
	cr_assert_eq(s->qcount, 4);
	/* What a resume would do: the queue head moves into the window as pid 5; then pid 6 is PUBREC'd. */
	rmq_persist_queue_pop(c, s, 5);
	rmq_persist_queue_pop(c, s, 6);
	rmq_persist_pid(c, s, RMQ_PR_INFL_REL, 6);
	rmq_persist_queue_pop(c, s, 0);   /* q2 dropped (expired while queued) */
	rmq_persist_pid(c, s, RMQ_PR_QOS2_ADD, 300);
	rmq_persist_pid(c, s, RMQ_PR_QOS2_ADD, 301);
	rmq_persist_pid(c, s, RMQ_PR_QOS2_DEL, 300);
	/* A session that ends, and one that turns clean on reconnect: neither may come back. */
	struct session *e = persistent(c, "car-2");
	rmq_session_destroy(c, e);
	struct session *t = persistent(c, "car-3");
	t->clean = true;
	rmq_persist_session_connected(c, t);
	cr_assert_not(t->durable);
	struct rmq_msg *r1 = msg("ret/a", "A", 1), *r2 = msg("ret/b", "B", 0), *r3 = msg("ret/b", "", 0);
	r1->stamp = 7;
	r2->stamp = 8;
	r3->stamp = 11;
	rmq_publish_retain_store(c, r1);
	rmq_publish_retain_store(c, r2);
	rmq_publish_retain_store(c, r3);
	struct rmq_msg *sys = msg("$SYS/broker/uptime", "5", 0);
	sys->stamp = 12;
	rmq_publish_retain_store(c, sys);   /* rebuilt by the broker itself: never logged */
}

static void check_state(struct core *c)
{
	cr_assert_eq(c->sessions.n, 1, "only car-1 is persistent");
	struct session *s = rmq_session_get(c, (const uint8_t *)"car-1", 5);
	cr_assert_not_null(s);
	cr_assert(s->durable && !s->clean && s->version == RMQ_V5 && s->expiry == UINT32_MAX);
	cr_assert_eq(s->nsubs, 1);
	cr_assert(s->subs[0].len == 8 && !memcmp(s->subs[0].filter, "cars/1/#", 8));
	cr_assert(s->subs[0].options == 1 && s->subs[0].sub_id == 7);
	cr_assert_eq(s->ninflight, 2);
	cr_assert(s->inflight[0].pid == 5 && s->inflight[0].state == OUT_PUBLISH && s->inflight[0].m);
	cr_assert(s->inflight[0].m->pub.payload.len == 2 && !memcmp(s->inflight[0].m->pub.payload.p, "q0", 2));
	cr_assert(s->inflight[0].ids && s->inflight[0].ids->n == 1 && s->inflight[0].ids->v[0] == 7);
	cr_assert(s->inflight[1].pid == 6 && s->inflight[1].state == OUT_PUBREL && !s->inflight[1].m);
	cr_assert_eq(s->qcount, 1);
	struct qent *q = &s->queue[s->qhead];
	cr_assert(q->m->pub.payload.len == 2 && !memcmp(q->m->pub.payload.p, "q3", 2) && q->qos == 1);
	cr_assert(s->nqos2_in == 1 && s->qos2_in[0] == 301);
	cr_assert_eq(rmq_retain_count(c->retained), 1, "ret/b cleared, $SYS not kept");
	struct rmq_msg *r = rmq_retain_get(c->retained, (const uint8_t *)"ret/a", 5);
	cr_assert(r && r->stamp == 7 && r->pub.payload.len == 1 && r->pub.qos == 1);
	cr_assert_geq(atomic_load(&tbroker.stamp), 11, "new retained sets sort after replayed ones");
	/* The replayed subscription is in the trie again, and its route. */
	cr_assert_eq(rmq_trie_filter_subs(c->subs, (const uint8_t *)"cars/1/#", 8), 0, "rmq_routes_restore adds them");
}

Test(core_persist, state_replays_into_a_fresh_core, .init = setup, .fini = teardown)
{
	struct core c;
	core_up(&c);
	build_state(&c);
	core_down(&c);
	core_up(&c);
	check_state(&c);
	rmq_routes_restore(&c);
	cr_assert_eq(rmq_trie_filter_subs(c.subs, (const uint8_t *)"cars/1/#", 8), 1);
	core_down(&c);
}

Test(core_persist, compaction_keeps_exactly_the_live_state, .init = setup, .fini = teardown)
{
	struct core c;
	core_up(&c);
	build_state(&c);   /* logs some steps without making them in memory: replay first, then memory == log */
	core_down(&c);
	core_up(&c);
	check_state(&c);
	cr_assert_eq(rmq_persist_compact(&c), 0);
	cr_assert_eq(rmq_persist_compact(&c), -EBUSY, "one at a time");
	core_down(&c);
	core_up(&c);
	check_state(&c);
	core_down(&c);
	char dir[700];
	snprintf(dir, sizeof(dir), "%s/core-0/state", tbroker.cfg.data_dir);
	cr_assert_eq(count_files(dir, ".wal"), 1, "segments before the snapshot are deleted");
	/* Once more from the compacted log alone: the snapshot must itself replay to the same state. */
	core_up(&c);
	check_state(&c);
	core_down(&c);
}

Test(core_persist, never_policy_holds_no_ack, .init = setup, .fini = teardown)
{
	tbroker.cfg.fsync_policy = RMQ_WAL_FSYNC_NEVER;
	struct core c;
	core_up(&c);
	cr_assert_not(rmq_persist_waits(&c));
	core_down(&c);
	tbroker.cfg.fsync_policy = RMQ_WAL_FSYNC_BATCH;
	core_up(&c);
	cr_assert(rmq_persist_waits(&c));
	/* A stored publish inside a scope holds its ack once; outside a scope nothing is held. */
	struct session *s = persistent(&c, "car-9");
	rmq_persist_pub_begin(&c, 1);
	deliver(&c, s, "x", 0);
	bool failed = true;
	cr_assert_eq(rmq_persist_pub_end(&c, &failed), 1);
	cr_assert_not(failed);
	rmq_persist_pub_begin(&c, 2);
	failed = true;
	cr_assert_eq(rmq_persist_pub_end(&c, &failed), 0, "nothing stored: nothing to wait for");
	core_down(&c);
}

Test(core_persist, meta_refuses_another_core_count, .init = setup, .fini = teardown)
{
	char err[512];
	cr_assert_eq(rmq_persist_meta_check(tbroker.cfg.data_dir, 2, err, sizeof(err)), 0);
	cr_assert_eq(rmq_persist_meta_check(tbroker.cfg.data_dir, 2, err, sizeof(err)), 0, "same count again");
	cr_assert_eq(rmq_persist_meta_check(tbroker.cfg.data_dir, 4, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "--cores 2"), "%s", err);
	char meta[600];
	snprintf(meta, sizeof(meta), "%s/meta", tbroker.cfg.data_dir);
	FILE *f = fopen(meta, "w");
	fputs("garbage\n", f);
	fclose(f);
	cr_assert_eq(rmq_persist_meta_check(tbroker.cfg.data_dir, 2, err, sizeof(err)), -EINVAL, "unreadable meta");
}

static int freed;
static void count_free(void *ud)
{
	(void)ud;
	freed++;
}

static void core_pump(struct core *c)
{
	rmq_persist_prep(c);
	io_uring_submit(&c->ring);
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {.tv_sec = 2};
	io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
	while (io_uring_peek_cqe(&c->ring, &cqe) == 0) {
		rmq_persist_complete(c, cqe);
		io_uring_cqe_seen(&c->ring, cqe);
	}
}

/* A Kafka command stored for an offline car: its offset (committed when the message is freed) must wait until
 * the stored copy is durable, or a crash in between would lose the command. */
static void kafka_record_to_offline_session(int policy, int freed_at_once)
{
	tbroker.cfg.fsync_policy = policy;
	freed = 0;
	struct core c;
	core_up(&c);
	struct session *s = persistent(&c, "car-k");
	struct rmq_msg *m = msg("cars/k/cmd", "open", 1);
	m->on_free = count_free;
	struct pubctx x = {&c, &m->pub, m, true, NULL, 0, false};
	rmq_session_deliver(&c, s, &x, 1, false, NULL, 0);
	rmq_msg_unref(m);
	cr_assert_eq(s->qcount, 1);
	cr_assert_eq(freed, freed_at_once);
	for (int i = 0; i < 50 && !freed; i++)
		core_pump(&c);
	cr_assert_eq(freed, 1, "released exactly once, once durable");
	core_down(&c);
	cr_assert_eq(freed, 1);
}

Test(core_persist, kafka_offset_waits_for_the_stored_copy, .init = setup, .fini = teardown)
{
	kafka_record_to_offline_session(RMQ_WAL_FSYNC_ALWAYS, 0);
}

Test(core_persist, kafka_offset_does_not_wait_with_fsync_never, .init = setup, .fini = teardown)
{
	kafka_record_to_offline_session(RMQ_WAL_FSYNC_NEVER, 1);
}
