/* $SYS/broker/... topics: every core snapshots its own counters once a second; core 0 sums the snapshots
 * and publishes them (retained, QoS 0) every --sys-interval seconds. Reactor threads (each its own core). */
#include <stdio.h>
#include <string.h>

#include "core.h"

#define SNAP_EVERY_MS 1000u

enum sys_field {
	F_CONNECTED, F_SESSIONS, F_MSGS_IN, F_MSGS_OUT, F_BYTES_IN, F_BYTES_OUT, F_SUBS,
	F_DROP_QUEUE_FULL, F_DROP_TOO_LARGE, F_DROP_EXPIRED, F_DROP_SLOW_CONSUMER, F_DROP_XQ,
	F_DROP_PAYLOAD_FORMAT, F_DROP_ACL, F_SESSIONS_EXPIRED, F_SPOOL_BYTES, F_SPOOL_RECORDS, F_SPOOL_REPLAYED,
	F_SPOOL_REFUSED, F_STORE_BYTES, F_STORE_RECORDS, F_STORE_BACKLOG,
	F_REJ_CONTROL_RATE, F_REJ_TOPIC_LEVELS, F_REJ_SUBSCRIPTIONS, F_REJ_USER_PROPS, F_REJ_SLOW_PACKET,
	F_REJ_HANDSHAKE, F_REJ_WRONG_ACK, F_TOO_LARGE_TRIMMED, F_TOO_LARGE_CTL, F__COUNT
};
_Static_assert(F__COUNT <= RMQ_SYS_NFIELDS, "RMQ_SYS_NFIELDS too small");

static const char *const names[F__COUNT] = {
	[F_CONNECTED] = "clients/connected", [F_SESSIONS] = "clients/total",
	[F_MSGS_IN] = "messages/received", [F_MSGS_OUT] = "messages/sent",
	[F_BYTES_IN] = "bytes/received", [F_BYTES_OUT] = "bytes/sent", [F_SUBS] = "subscriptions/count",
	[F_DROP_QUEUE_FULL] = "messages/dropped/queue_full", [F_DROP_TOO_LARGE] = "messages/dropped/too_large",
	[F_DROP_EXPIRED] = "messages/dropped/expired", [F_DROP_SLOW_CONSUMER] = "clients/disconnected/slow_consumer",
	[F_DROP_XQ] = "messages/dropped/cross_core_full", [F_DROP_PAYLOAD_FORMAT] = "messages/dropped/payload_format",
	[F_DROP_ACL] = "messages/dropped/not_authorized", [F_SESSIONS_EXPIRED] = "clients/expired",
	[F_SPOOL_BYTES] = "kafka/spool/bytes", [F_SPOOL_RECORDS] = "kafka/spool/records",
	[F_SPOOL_REPLAYED] = "kafka/spool/replayed", [F_SPOOL_REFUSED] = "kafka/spool/refused",
	[F_STORE_BYTES] = "store/bytes", [F_STORE_RECORDS] = "store/records", [F_STORE_BACKLOG] = "store/backlog",
	/* hardening limits, named as the reason labels of /metrics' ringmq_rejected_total */
	[F_REJ_CONTROL_RATE] = "rejected/control_rate", [F_REJ_TOPIC_LEVELS] = "rejected/topic_levels",
	[F_REJ_SUBSCRIPTIONS] = "rejected/max_subscriptions", [F_REJ_USER_PROPS] = "rejected/user_properties",
	[F_REJ_SLOW_PACKET] = "rejected/packet_timeout", [F_REJ_HANDSHAKE] = "rejected/handshake",
	[F_REJ_WRONG_ACK] = "rejected/wrong_ack",
	[F_TOO_LARGE_TRIMMED] = "packets/too_large/trimmed", [F_TOO_LARGE_CTL] = "packets/too_large/dropped",
};

static void snapshot(struct core *c)
{
	const struct counters *st = &c->st;
	struct rmq_wal_stats ws;
	rmq_persist_stats(c, &ws);  /* zeros without --data-dir */
	uint64_t v[F__COUNT] = {
		[F_CONNECTED] = c->nconns, [F_SESSIONS] = c->sessions.n, [F_MSGS_IN] = st->msgs_in,
		[F_MSGS_OUT] = st->msgs_out, [F_BYTES_IN] = st->bytes_in, [F_BYTES_OUT] = st->bytes_out,
		[F_SUBS] = c->subs ? rmq_trie_count(c->subs) : 0, [F_DROP_QUEUE_FULL] = st->queue_overflow,
		[F_DROP_TOO_LARGE] = st->too_large_out, [F_DROP_EXPIRED] = st->expired,
		[F_DROP_SLOW_CONSUMER] = st->slow_consumer, [F_DROP_XQ] = st->xq_drop,
		[F_DROP_PAYLOAD_FORMAT] = st->payload_format_invalid, [F_DROP_ACL] = st->acl_denied_pub,
		[F_SESSIONS_EXPIRED] = st->sessions_expired,
		/* the spool's figures as of this core's last metrics tick (computing them costs a log walk) */
		[F_SPOOL_BYTES] = atomic_load_explicit(&c->snap.v[RMQ_M_SP_BACKLOG_BYTES], memory_order_relaxed),
		[F_SPOOL_RECORDS] = atomic_load_explicit(&c->snap.v[RMQ_M_SP_BACKLOG_RECORDS], memory_order_relaxed),
		[F_SPOOL_REPLAYED] = atomic_load_explicit(&c->snap.v[RMQ_M_SP_REPLAYED], memory_order_relaxed),
		[F_SPOOL_REFUSED] = atomic_load_explicit(&c->snap.v[RMQ_M_SP_REFUSED_FULL], memory_order_relaxed),
		[F_STORE_BYTES] = ws.append_bytes,
		[F_STORE_RECORDS] = ws.appends, [F_STORE_BACKLOG] = ws.unsynced_records,
		[F_REJ_CONTROL_RATE] = st->rej_control_rate,
		[F_REJ_TOPIC_LEVELS] = st->rej_topic_levels, [F_REJ_SUBSCRIPTIONS] = st->rej_subscriptions,
		[F_REJ_USER_PROPS] = st->rej_user_props, [F_REJ_SLOW_PACKET] = st->rej_slow_packet,
		[F_REJ_HANDSHAKE] = st->rej_handshake, [F_REJ_WRONG_ACK] = st->rej_wrong_ack,
		[F_TOO_LARGE_TRIMMED] = st->too_large_trimmed, [F_TOO_LARGE_CTL] = st->too_large_ctl,
	};
	for (int i = 0; i < F__COUNT; i++)
		atomic_store_explicit(&c->sys_snap[i], v[i], memory_order_relaxed);
}

static void put(struct core *c, const char *topic, const char *payload)
{
	struct rmq_publish p;
	memset(&p, 0, sizeof(p));
	p.retain = true;
	p.topic = (struct rmq_str){(const uint8_t *)topic, (uint32_t)strlen(topic)};
	p.payload = (struct rmq_str){(const uint8_t *)payload, (uint32_t)strlen(payload)};
	struct rmq_msg *m = rmq_msg_new(&p);
	if (!m)
		return;
	publish_from_core(c, m, NULL);
	rmq_msg_unref(m);
}

static void putu(struct core *c, const char *topic, uint64_t v)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	put(c, topic, buf);
}

static void publish_all(struct core *c, uint32_t interval_s)
{
	struct broker *b = c->b;
	uint64_t tot[F__COUNT] = {0};
	char topic[96];
	for (int k = 0; k < b->ncores; k++) {
		for (int i = 0; i < F__COUNT; i++) {
			uint64_t v = atomic_load_explicit(&b->cores[k].sys_snap[i], memory_order_relaxed);
			tot[i] += v;
			if (i <= F_BYTES_OUT) {  /* per-core figures: load and traffic */
				snprintf(topic, sizeof(topic), "$SYS/broker/core/%d/%s", k, names[i]);
				putu(c, topic, v);
			}
		}
	}
	put(c, "$SYS/broker/version", "ringmq " RMQ_SYS_VERSION);
	putu(c, "$SYS/broker/uptime", (c->now_ms - c->sys_start_ms) / 1000u);
	putu(c, "$SYS/broker/retained messages/count", c->retained ? rmq_retain_count(c->retained) : 0);
	putu(c, "$SYS/broker/cores", (uint64_t)b->ncores);
	for (int i = 0; i < F__COUNT; i++) {
		snprintf(topic, sizeof(topic), "$SYS/broker/%s", names[i]);
		putu(c, topic, tot[i]);
	}
	static const int rates[] = {F_MSGS_IN, F_MSGS_OUT, F_BYTES_IN, F_BYTES_OUT};
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		int i = rates[r];
		uint64_t d = tot[i] >= c->sys_prev[i] ? tot[i] - c->sys_prev[i] : 0;
		snprintf(topic, sizeof(topic), "$SYS/broker/%s/per_second", names[i]);
		putu(c, topic, d / interval_s);
	}
	memcpy(c->sys_prev, tot, sizeof(tot));
}

void sys_tick(struct core *c)
{
	uint32_t interval = c->b->cfg.sys_interval;
	if (!interval || c->stopping)
		return;
	if (!c->sys_start_ms) {
		c->sys_start_ms = c->now_ms ? c->now_ms : 1;
		c->sys_next_snap_ms = c->now_ms;
		/* The first publish once every core has had a snapshot in. */
		c->sys_next_pub_ms = c->now_ms + SNAP_EVERY_MS + 200u;
	}
	if (c->now_ms >= c->sys_next_snap_ms) {
		snapshot(c);
		c->sys_next_snap_ms = c->now_ms + SNAP_EVERY_MS;
	}
	if (c->id == 0 && c->now_ms >= c->sys_next_pub_ms) {
		publish_all(c, interval);
		c->sys_next_pub_ms = c->now_ms + (uint64_t)interval * 1000u;
	}
}
