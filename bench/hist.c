/* ringmq-bench latency histogram: log-linear bucket mapping, recording, snapshot merge and percentiles.
 * rmq_bench_hist_record: the owning worker thread only; the snapshot functions: any thread. */
#include "hist.h"

#include <string.h>

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

/* Values below SUB map to themselves (exact). Above, group g = msb - SUB_BITS + 1 holds values with
 * that msb, shifted right by g so that they land on SUB/2 sub-buckets of width 2^g each. */
uint32_t rmq_bench_hist_index(uint64_t v)
{
	if (v > RMQ_HIST_MAX_VALUE)
		v = RMQ_HIST_MAX_VALUE;
	if (v < RMQ_HIST_SUB)
		return (uint32_t)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned g = msb - RMQ_HIST_SUB_BITS + 1;
	return (uint32_t)(g * (RMQ_HIST_SUB / 2) + (v >> g));
}

uint64_t rmq_bench_hist_lowest(uint32_t idx)
{
	if (idx < RMQ_HIST_SUB)
		return idx;
	uint32_t g = idx / (RMQ_HIST_SUB / 2) - 1;
	uint64_t sub = idx - g * (RMQ_HIST_SUB / 2);
	return sub << g;
}

uint64_t rmq_bench_hist_highest(uint32_t idx)
{
	if (idx < RMQ_HIST_SUB)
		return idx;
	uint32_t g = idx / (RMQ_HIST_SUB / 2) - 1;
	return rmq_bench_hist_lowest(idx) + (1ull << g) - 1;
}

void rmq_bench_hist_init(struct rmq_hist *h)
{
	ST(h->count, 0);
	ST(h->max, 0);
	ST(h->min, UINT64_MAX);
	ST(h->sum, 0);
	for (uint32_t i = 0; i < RMQ_HIST_BUCKETS; i++)
		ST(h->buckets[i], 0);
}

void rmq_bench_hist_record(struct rmq_hist *h, uint64_t v)
{
	if (v > RMQ_HIST_MAX_VALUE)
		v = RMQ_HIST_MAX_VALUE;
	uint32_t i = rmq_bench_hist_index(v);
	ST(h->buckets[i], LD(h->buckets[i]) + 1);
	ST(h->count, LD(h->count) + 1);
	ST(h->sum, LD(h->sum) + v);
	if (v > LD(h->max))
		ST(h->max, v);
	if (v < LD(h->min))
		ST(h->min, v);
}

void rmq_bench_hist_snap_clear(struct rmq_hist_snap *s)
{
	memset(s, 0, sizeof(*s));
	s->min = UINT64_MAX;
}

void rmq_bench_hist_snap_add(struct rmq_hist_snap *out, const struct rmq_hist *h)
{
	for (uint32_t i = 0; i < RMQ_HIST_BUCKETS; i++)
		out->buckets[i] += LD(h->buckets[i]);
	out->count += LD(h->count);
	out->sum += LD(h->sum);
	uint64_t mx = LD(h->max), mn = LD(h->min);
	if (mx > out->max)
		out->max = mx;
	if (mn < out->min)
		out->min = mn;
}

void rmq_bench_hist_snap_diff(struct rmq_hist_snap *out, const struct rmq_hist_snap *later,
			      const struct rmq_hist_snap *earlier)
{
	out->count = 0;
	out->max = 0;
	out->min = UINT64_MAX;
	for (uint32_t i = 0; i < RMQ_HIST_BUCKETS; i++) {
		uint64_t d = later->buckets[i] - earlier->buckets[i];
		out->buckets[i] = d;
		if (d) {
			/* The interval's own extremes, bounded by the bucket edges and the run's max. */
			if (out->min == UINT64_MAX)
				out->min = rmq_bench_hist_lowest(i);
			out->max = rmq_bench_hist_highest(i);
		}
		out->count += d;
	}
	if (out->max > later->max)
		out->max = later->max;
	if (out->count && out->min < later->min)
		out->min = later->min;
	out->sum = later->sum - earlier->sum;
}

uint64_t rmq_bench_hist_percentile(const struct rmq_hist_snap *s, double p)
{
	if (!s->count)
		return 0;
	if (p > 100.0)
		p = 100.0;
	/* Rank of the sample at percentile p, 1-based: at least the first sample. */
	uint64_t rank = (uint64_t)((p / 100.0) * (double)s->count + 0.5);
	if (rank < 1)
		rank = 1;
	if (rank > s->count)
		rank = s->count;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < RMQ_HIST_BUCKETS; i++) {
		seen += s->buckets[i];
		if (seen >= rank) {
			uint64_t v = rmq_bench_hist_highest(i);
			return v > s->max ? s->max : v;
		}
	}
	return s->max;
}

double rmq_bench_hist_mean(const struct rmq_hist_snap *s)
{
	return s->count ? (double)s->sum / (double)s->count : 0.0;
}
