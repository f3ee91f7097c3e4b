/* Per-core Kafka spool (--spool, DIR/core-N/spool): QoS 1/2 messages for Kafka kept on disk while Kafka is
 * unreachable or the producer queue is full, acknowledged once durable, replayed in order. Owner thread only. */
#ifndef RMQ_CORE_SPOOL_H
#define RMQ_CORE_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "store/wal.h"

/* One message bound for Kafka, as the bridge rendered it (topic after templating, key, value, headers).
 * headers is opaque to the spool: the bridge's own encoding, stored and handed back as is. */
struct rmq_spool_msg {
	const char *topic;
	uint16_t topic_len;
	bool has_key;                /* false: null key (key template "none") */
	const uint8_t *key;
	uint32_t key_len;
	const uint8_t *value;
	uint32_t value_len;
	const uint8_t *headers;
	uint32_t headers_len;
	uint64_t seq;                /* set by peek: the id to ack */
};

struct rmq_spool_opts {
	struct rmq_wal_opts wal;     /* fsync policy etc.; segment_bytes 0 = max_bytes / 8 in [1, 64] MiB */
	uint64_t max_bytes;          /* --spool-max-bytes: undelivered bytes past which append says -ENOSPC;
				      * 0 = 1 GiB */
	uint32_t window;             /* messages handed out and not yet acked; 0 = 65536 */
};

/* A message appended with a non-zero cookie is durable (err 0: the PUBACK may go) or failed (err < 0: the
 * log failed; the car gets 0x80 or a disconnect). In append order, from rmq_spool_complete. */
typedef void (*rmq_spool_done_fn)(void *ud, uint64_t cookie, int err);

struct rmq_spool_recovery {
	struct rmq_wal_recovery wal;
	uint64_t backlog_records, backlog_bytes;   /* undelivered, to replay into Kafka */
};

struct rmq_spool_stats {
	struct rmq_wal_stats wal;
	uint64_t backlog_records, backlog_bytes;   /* appended, not acked as delivered */
	uint64_t inflight;                         /* handed out by next, not acked */
	uint64_t appended, delivered;              /* since open */
	uint64_t refused_full;                     /* appends refused with -ENOSPC */
	uint64_t max_bytes;
};

struct rmq_spool;

/* Opens (creating) the spool in dir and recovers its backlog. Synchronous: start-up only. 0 or -errno. */
int rmq_spool_open(struct rmq_spool **out, const char *dir, const struct rmq_spool_opts *o, rmq_spool_done_fn done,
		   void *ud, struct rmq_spool_recovery *rec);
/* Stages one message (per-core FIFO: a car's messages stay in order). 0, or -ENOSPC (max_bytes reached:
 * backpressure), -ENOBUFS (the log's stage is full: back off), -EINVAL, -EIO (the log failed). */
int rmq_spool_append(struct rmq_spool *s, const struct rmq_spool_msg *m, uint64_t cookie);
/* The oldest message not handed out yet, written to disk. Pointers stay valid until the next prep or next.
 * 0; -ENODATA (nothing left to hand out); -EAGAIN (being read: prep and retry); -EBUSY (window full: wait
 * for acks); -EIO. */
int rmq_spool_peek(struct rmq_spool *s, struct rmq_spool_msg *m);
/* Checks that the n messages of one publish (several Kafka routes) would all be taken by rmq_spool_append, so a
 * publish is never half spooled: 0, -ENOSPC (max_bytes: counted in refused_full) or -ENOBUFS (the log's stage
 * is full). Appends right after a 0 succeed unless the log fails. */
int rmq_spool_reserve(struct rmq_spool *s, const struct rmq_spool_msg *m, int n);
/* Hands out the message peek returned (the bridge produced it): it is now in flight until acked. */
void rmq_spool_next(struct rmq_spool *s);
/* Kafka has message seq (or the bridge gave up on it and counted it): it will not be replayed again.
 * Acks may come in any order. 0 or -ENOENT (not in flight). */
int rmq_spool_ack(struct rmq_spool *s, uint64_t seq);
/* Kafka failed the messages in flight: hand out everything not acked again, oldest first. */
void rmq_spool_rewind(struct rmq_spool *s);
/* Nothing undelivered: new messages may go straight to Kafka again without overtaking spooled ones. */
bool rmq_spool_empty(const struct rmq_spool *s);
/* Handed out by next and not acked yet (a rewind waits for these to come back). */
uint32_t rmq_spool_inflight(const struct rmq_spool *s);

/* As rmq_wal_prep / rmq_wal_complete (the spool's log owns the low 32 bits of user_data). */
int rmq_spool_prep(struct rmq_spool *s, struct io_uring *ring, uint64_t ud_base);
void rmq_spool_complete(struct rmq_spool *s, uint64_t user_data, int res);
int rmq_spool_drain(struct rmq_spool *s, struct io_uring *ring, uint64_t ud_base);
void rmq_spool_close(struct rmq_spool *s);
/* As rmq_wal_set_foreign, for the spool's log. */
void rmq_spool_set_foreign(struct rmq_spool *s, rmq_wal_foreign_fn fn, void *ud);
void rmq_spool_stats(const struct rmq_spool *s, struct rmq_spool_stats *st);

#endif
