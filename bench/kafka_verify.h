/* ringmq-bench kafka-verify: results of consuming a scenario's Kafka topic (exactly once, per-car order,
 * latency). Main thread only (and the unit tests). */
#ifndef RMQ_BENCH_KAFKA_VERIFY_H
#define RMQ_BENCH_KAFKA_VERIFY_H

#include "bench.h"
#include "hist.h"
#include "stamp.h"

struct rmq_kv_result {
	uint64_t records, foreign, unique, dup, ooo, gaps, errors;
	uint32_t cars;
	int partitions;
	double seconds;
	struct rmq_hist_snap lat;   /* last: not cleared by the memset */
};

/* Consumes o->kafka_topic from o->kafka_brokers for o->duration seconds (from the end of a topic that
 * already exists, else from the beginning once it appears). Returns 0 or a negative errno with err set.
 * `announce` prints the ready line and per-second progress on stderr. */
int rmq_bench_kafka_verify_run(const struct rmq_bench_opts *o, struct rmq_kv_result *r, bool announce, char *err,
			       size_t errlen);
/* Exactly once and in order: no duplicate, no out-of-order, no gap, and `expect` unique records if given. */
bool rmq_bench_kafka_verify_ok(const struct rmq_kv_result *r, uint64_t expect);
/* The CLI: runs, prints the report (and --json), returns the exit status. */
int rmq_bench_kafka_verify(const struct rmq_bench_opts *o);

#endif
