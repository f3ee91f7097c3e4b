/* ringmq-bench latency histogram: HDR-style log-linear buckets over nanoseconds, fixed size, no allocation.
 * One writer thread per histogram (the worker that owns it); any thread may read a snapshot concurrently. */
#ifndef RMQ_BENCH_HIST_H
#define RMQ_BENCH_HIST_H

#include <stdatomic.h>
#include <stdint.h>

/* 2^SUB_BITS linear sub-buckets per power of two: relative error below 1/2^(SUB_BITS-1) = 0.8 %. */
#define RMQ_HIST_SUB_BITS 8
#define RMQ_HIST_SUB (1u << RMQ_HIST_SUB_BITS)
/* Values are clamped to 2^40 ns (18 min): no bench run is longer, and it bounds the table to 35 KiB. */
#define RMQ_HIST_MAX_BITS 40
#define RMQ_HIST_MAX_VALUE ((1ull << RMQ_HIST_MAX_BITS) - 1)
#define RMQ_HIST_BUCKETS ((RMQ_HIST_MAX_BITS - RMQ_HIST_SUB_BITS + 1) * (RMQ_HIST_SUB / 2) + RMQ_HIST_SUB / 2)

/* Counts are C11 atomics written with relaxed load+store by their single owner (a plain mov on x86,
 * no lock prefix), so the main thread can read live snapshots for the progress line without a race. */
struct rmq_hist {
	_Atomic uint64_t count;
	_Atomic uint64_t max;
	_Atomic uint64_t min;
	_Atomic uint64_t sum;
	_Atomic uint64_t buckets[RMQ_HIST_BUCKETS];
};

/* Plain (non-atomic) copy used for merging, diffing and percentiles. */
struct rmq_hist_snap {
	uint64_t count, max, min, sum;
	uint64_t buckets[RMQ_HIST_BUCKETS];
};

void rmq_bench_hist_init(struct rmq_hist *h);
/* Owner thread only. */
void rmq_bench_hist_record(struct rmq_hist *h, uint64_t value_ns);
/* Any thread: adds the live histogram into `out` (which may already hold other threads' counts). */
void rmq_bench_hist_snap_add(struct rmq_hist_snap *out, const struct rmq_hist *h);
void rmq_bench_hist_snap_clear(struct rmq_hist_snap *s);
/* out = later - earlier (bucket-wise; min/max taken from `later`, which bounds the interval's values). */
void rmq_bench_hist_snap_diff(struct rmq_hist_snap *out, const struct rmq_hist_snap *later,
			      const struct rmq_hist_snap *earlier);
/* Value at percentile p (0..100]: highest value equivalent to the bucket holding it, clamped to max.
 * Returns 0 for an empty histogram. */
uint64_t rmq_bench_hist_percentile(const struct rmq_hist_snap *s, double p);
double rmq_bench_hist_mean(const struct rmq_hist_snap *s);

/* Bucket mapping, exposed for tests. */
uint32_t rmq_bench_hist_index(uint64_t v);
uint64_t rmq_bench_hist_lowest(uint32_t idx);
uint64_t rmq_bench_hist_highest(uint32_t idx);

#endif
