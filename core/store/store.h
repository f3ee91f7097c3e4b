/* Room store: the per-core write-ahead log (wal.c), the durable state log (persist.c) and the Kafka spool (spool.c,
 * kafka_spool.c). It reaches the protocol above it only through these hooks. Reactor thread of the core given. */
#ifndef RMQ_CORE_STORE_STORE_H
#define RMQ_CORE_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct core;
struct session;
struct qent;
struct rmq_msg;

/* What the store calls in the room above it (core/mqtt fills it: rmq_mqtt_store_hooks). Main sets c->store_hooks
 * once per core before its thread starts; every entry runs on that core's thread and none may be NULL. */
struct rmq_store_hooks {
	/* ---- completions: what waited for the log (or the spool) may go on ---- */
	/* The ack-window entry cookie names waited for these records: reason 0 (durable) or the code its ack gets. */
	void (*durable)(struct core *c, uint64_t cookie, uint8_t reason);
	/* A SUBSCRIBE's records are durable (or the log failed: the session lives on in memory): its SUBACK may go. */
	void (*sub_durable)(struct core *c, uint64_t cookie);
	/* The session change a PUBREL or PUBCOMP (type) reports is durable: it may leave for the connection cookie
	 * names. */
	void (*ack_durable)(struct core *c, uint8_t type, uint64_t cookie);
	/* The spool's answer for a publish it took (as the bridge's delivery report, rmq_bridge_done_fn; ud: core). */
	void (*kafka_done)(void *ud, uint64_t cookie, int err, uint8_t reason);
	/* ---- replay of the state log at start-up: sessions rebuilt without logging them again ---- */
	struct session *(*session_get)(struct core *c, const uint8_t *id, size_t len);
	struct session *(*session_create)(struct core *c, const uint8_t *id, size_t len);
	void (*session_destroy)(struct core *c, struct session *s);
	int (*session_queue_append)(struct session *s, struct qent q);
	int (*session_sub_add)(struct session *s, const uint8_t *f, uint16_t len, uint8_t options, uint32_t sub_id);
	bool (*session_sub_del)(struct session *s, const uint8_t *f, uint16_t len);
	uint32_t (*session_take_shared)(struct core *c, struct session *s, uint64_t key, struct rmq_msg ***out);
};

#endif
