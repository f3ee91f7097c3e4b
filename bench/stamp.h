/* ringmq-bench payload stamp (magic, run id, send time, publisher id, sequence) and the per-publisher
 * sequence tracker that turns received stamps into loss, duplicates and out-of-order counts.
 * Pure functions; a tracker belongs to the worker thread that owns its subscriber connection. */
#ifndef RMQ_BENCH_STAMP_H
#define RMQ_BENCH_STAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_STAMP_MAGIC 0x424d5152u /* "RQMB" little-endian */
#define RMQ_STAMP_LEN 24u           /* magic 4, run id 4, send ns 8, publisher 4, seq 4 */

struct rmq_stamp {
	uint32_t run_id;
	uint64_t send_ns;   /* CLOCK_MONOTONIC: system-wide, so pub and sub may be separate processes */
	uint32_t pub_id;
	uint32_t seq;       /* per publisher, from 0 */
};

/* Writes the stamp into buf[0..RMQ_STAMP_LEN); the caller owns the rest of the payload. */
void rmq_bench_stamp_write(uint8_t *buf, const struct rmq_stamp *s);
/* Reads a stamp; false when the payload is too short or does not carry our magic (foreign traffic). */
bool rmq_bench_stamp_read(const uint8_t *buf, size_t len, struct rmq_stamp *out);

/* What one subscriber has seen from one publisher. A 128-bit window behind the highest sequence tells a
 * late (out-of-order) arrival from a duplicate; anything older than the window counts as a duplicate,
 * which can only overstate loss, never hide it. */
#define RMQ_SEQ_WINDOW 128u
struct rmq_seq_state {
	uint32_t key;       /* publisher id + 1; 0 marks an empty slot */
	uint32_t base;      /* first sequence expected (0, or the first seen in --from-first mode) */
	uint32_t next;      /* highest sequence seen + 1 */
	uint64_t unique, dup, ooo;
	uint64_t window[RMQ_SEQ_WINDOW / 64]; /* bit i: sequence next-1-i was seen */
};

struct rmq_seq_tracker {
	/* Open-addressing table keyed by publisher id: a pairs subscriber sees one publisher, a fan-in one
	 * sees thousands; grown (doubling) only on first sight of a new publisher, never per message. */
	struct rmq_seq_state *slots;
	uint32_t cap, used;
	bool from_first;            /* a standalone `sub` joins a running stream: start at the first seen */
};

enum rmq_seq_verdict { RMQ_SEQ_IN_ORDER, RMQ_SEQ_GAP, RMQ_SEQ_LATE, RMQ_SEQ_DUP };

void rmq_bench_seq_init(struct rmq_seq_tracker *t, bool from_first);
void rmq_bench_seq_free(struct rmq_seq_tracker *t);
/* Records one arrival; returns its verdict, or -ENOMEM (publisher id too large to track). GAP means
 * in order but skipping sequences (they may still arrive LATE). */
int rmq_bench_seq_record(struct rmq_seq_tracker *t, uint32_t pub_id, uint32_t seq);

struct rmq_seq_totals {
	uint64_t unique, dup, ooo;
	uint64_t gaps;     /* sequences in [base, next) never seen: loss visible without knowing the sender */
	uint32_t publishers;
};
void rmq_bench_seq_totals(const struct rmq_seq_tracker *t, struct rmq_seq_totals *out);
/* Unique messages seen from one publisher (0 if never seen). */
uint64_t rmq_bench_seq_unique(const struct rmq_seq_tracker *t, uint32_t pub_id);

#endif
