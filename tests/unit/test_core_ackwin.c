/* Unit tests for core/index/ackwin.c: acks leave in arrival order whatever order Kafka completes them in,
 * the window is bounded, completions for unknown entries are refused. */
#include <criterion/criterion.h>
#include <errno.h>

#include "index/ackwin.h"
#include "ringmq/proto.h"

Test(core_ackwin, in_order_despite_out_of_order_completion)
{
	struct rmq_ackwin w;
	rmq_ackwin_init(&w, 4);
	uint32_t s1, s2, s3;
	cr_assert_eq(rmq_ackwin_push(&w, 11, RMQ_PUBACK, false, 0, &s1), 0);
	cr_assert_eq(rmq_ackwin_push(&w, 12, RMQ_PUBREC, false, 0, &s2), 0);
	cr_assert_eq(rmq_ackwin_push(&w, 13, RMQ_PUBACK, true, 0, &s3), 0);
	struct rmq_ack_ent e;
	cr_assert(!rmq_ackwin_pop(&w, &e), "head still waiting");
	cr_assert_eq(rmq_ackwin_complete(&w, s2, 0x97), 0);
	cr_assert(!rmq_ackwin_pop(&w, &e), "head still waiting");
	cr_assert_eq(rmq_ackwin_complete(&w, s1, 0), 0);
	cr_assert(rmq_ackwin_pop(&w, &e));
	cr_assert_eq(e.packet_id, 11);
	cr_assert(rmq_ackwin_pop(&w, &e));
	cr_assert_eq(e.packet_id, 12);
	cr_assert_eq(e.type, RMQ_PUBREC);
	cr_assert_eq(e.reason, 0x97);
	cr_assert(rmq_ackwin_pop(&w, &e));
	cr_assert_eq(e.packet_id, 13);
	cr_assert(rmq_ackwin_empty(&w));
	rmq_ackwin_free(&w);
}

Test(core_ackwin, bounded_and_wraps)
{
	struct rmq_ackwin w;
	rmq_ackwin_init(&w, 3);
	uint32_t seq[3];
	struct rmq_ack_ent e;
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 3; i++)
			cr_assert_eq(rmq_ackwin_push(&w, (uint16_t)(round * 3 + i + 1), RMQ_PUBACK, false, 0, &seq[i]), 0);
		cr_assert_eq(rmq_ackwin_push(&w, 99, RMQ_PUBACK, true, 0, NULL), -ENOSPC, "full window refuses");
		for (int i = 2; i >= 0; i--)
			cr_assert_eq(rmq_ackwin_complete(&w, seq[i], 0), 0);
		for (int i = 0; i < 3; i++) {
			cr_assert(rmq_ackwin_pop(&w, &e));
			cr_assert_eq(e.packet_id, round * 3 + i + 1);
		}
	}
	rmq_ackwin_free(&w);
}

Test(core_ackwin, unknown_or_repeated_completion)
{
	struct rmq_ackwin w;
	rmq_ackwin_init(&w, 2);
	uint32_t s;
	cr_assert_eq(rmq_ackwin_complete(&w, 0, 0), -ENOENT, "empty window");
	cr_assert_eq(rmq_ackwin_push(&w, 1, RMQ_PUBACK, false, 0, &s), 0);
	cr_assert_eq(rmq_ackwin_complete(&w, s + 1, 0), -ENOENT, "never pushed");
	cr_assert_eq(rmq_ackwin_complete(&w, s, 0), 0);
	cr_assert_eq(rmq_ackwin_complete(&w, s, 0), -ENOENT, "completed twice");
	struct rmq_ack_ent e;
	cr_assert(rmq_ackwin_pop(&w, &e));
	cr_assert_eq(rmq_ackwin_complete(&w, s, 0), -ENOENT, "already gone");
	rmq_ackwin_free(&w);
}

Test(core_ackwin, stamps_and_latency_buckets)
{
	struct rmq_ackwin w;
	rmq_ackwin_init(&w, 4);
	uint32_t s;
	cr_assert_eq(rmq_ackwin_push(&w, 1, RMQ_PUBACK, true, 0, NULL), 0);
	cr_assert_eq(rmq_ackwin_push(&w, 2, RMQ_PUBACK, false, 0, &s), 0);
	rmq_ackwin_stamp_last(&w, 1000);
	cr_assert_eq(rmq_ackwin_complete(&w, s, 0), 0);
	struct rmq_ack_ent e;
	cr_assert(rmq_ackwin_pop(&w, &e));
	cr_assert_eq(e.stamp_ms, RMQ_ACKWIN_NO_STAMP, "an entry never stamped says so");
	cr_assert(rmq_ackwin_pop(&w, &e));
	cr_assert_eq(e.stamp_ms, 1000, "the stamp goes to the entry pushed last");
	rmq_ackwin_free(&w);

	uint64_t hist[RMQ_ACKWIN_BUCKETS + 1] = {0}, sum = 0;
	rmq_ackwin_observe(hist, &sum, 0);      /* at once: the first bucket (le 1 ms) */
	rmq_ackwin_observe(hist, &sum, 1);      /* on a bound: that bucket (le is inclusive) */
	rmq_ackwin_observe(hist, &sum, 120);    /* le 250 ms */
	rmq_ackwin_observe(hist, &sum, 60000);  /* past the last bound: +Inf */
	cr_assert_eq(hist[0], 2);
	cr_assert_eq(hist[7], 1);
	cr_assert_eq(rmq_ackwin_bucket_ms[7], 250);
	cr_assert_eq(hist[RMQ_ACKWIN_BUCKETS], 1);
	cr_assert_eq(sum, 60121);
}
