/* Per-connection ordered acknowledgement window: PUBACK/PUBREC leave in the order the PUBLISHes
 * arrived even when some wait for Kafka. Owned by the connection's reactor thread. */
#ifndef RMQ_CORE_ACKWIN_H
#define RMQ_CORE_ACKWIN_H

#include <stdbool.h>
#include <stdint.h>

/* Sequence numbers run modulo 2^16: a completion cookie (mqtt/cookie.h) carries 16 of its 64 bits for them, and
 * a window never holds more than 65535 entries (--max-inflight), so an offset from the head is never ambiguous. */
#define RMQ_ACKWIN_SEQ_BITS 16
#define RMQ_ACKWIN_SEQ_MASK ((1u << RMQ_ACKWIN_SEQ_BITS) - 1)
#define RMQ_ACKWIN_CAP_MAX RMQ_ACKWIN_SEQ_MASK

struct rmq_ack_ent {
	uint16_t packet_id;
	uint16_t pending;    /* completions still awaited (Kafka delivery, state log durability); 0: done */
	uint8_t type;        /* RMQ_PUBACK or RMQ_PUBREC */
	uint8_t reason;      /* v5 reason code to send (the first failure wins) */
	uint32_t stamp_ms;   /* when its PUBLISH arrived (ringmq_puback_latency_seconds); RMQ_ACKWIN_NO_STAMP: none */
};

#define RMQ_ACKWIN_NO_STAMP UINT32_MAX

/* PUBACK/PUBREC latency histogram (PUBLISH in -> ack out, ms): upper bounds of the buckets; hist has one more
 * slot for larger values. */
#define RMQ_ACKWIN_BUCKETS 12
extern const uint32_t rmq_ackwin_bucket_ms[RMQ_ACKWIN_BUCKETS];
void rmq_ackwin_observe(uint64_t hist[RMQ_ACKWIN_BUCKETS + 1], uint64_t *sum_ms, uint32_t ms);

struct rmq_ackwin {
	struct rmq_ack_ent *ents;   /* ring of cap entries, allocated on first use */
	uint32_t cap, head, count;
	uint32_t head_seq;          /* sequence number of ents[head] (modulo 2^RMQ_ACKWIN_SEQ_BITS) */
};

/* cap: 1..RMQ_ACKWIN_CAP_MAX entries. */
void rmq_ackwin_init(struct rmq_ackwin *w, uint32_t cap);
void rmq_ackwin_free(struct rmq_ackwin *w);
static inline bool rmq_ackwin_empty(const struct rmq_ackwin *w) { return w->count == 0; }
/* The sequence number the next push gets. */
static inline uint32_t rmq_ackwin_next_seq(const struct rmq_ackwin *w)
{
	return (w->head_seq + w->count) & RMQ_ACKWIN_SEQ_MASK;
}
/* Appends an ack; `done` false means it waits for rmq_ackwin_complete(*seq). Returns 0, -ENOSPC
 * when the window is full (client exceeded receive maximum), or -ENOMEM. */
int rmq_ackwin_push(struct rmq_ackwin *w, uint16_t packet_id, uint8_t type, bool done, uint8_t reason,
		    uint32_t *seq);
/* Same, waiting for `pending` completions (0: done now). */
int rmq_ackwin_push_n(struct rmq_ackwin *w, uint16_t packet_id, uint8_t type, uint16_t pending, uint8_t reason,
		      uint32_t *seq);
/* One of entry `seq`'s completions arrived with `reason` (a non-zero reason is kept). Returns 0 or -ENOENT
 * (already gone or done). */
int rmq_ackwin_complete(struct rmq_ackwin *w, uint32_t seq, uint8_t reason);
/* Stamps the entry pushed last with its PUBLISH's arrival time (ms), for the PUBACK latency figure. */
void rmq_ackwin_stamp_last(struct rmq_ackwin *w, uint32_t now_ms);
/* Pops the head entry into *out if it is done. */
bool rmq_ackwin_pop(struct rmq_ackwin *w, struct rmq_ack_ent *out);

#endif
