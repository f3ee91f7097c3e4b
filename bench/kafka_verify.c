/* ringmq-bench kafka-verify: the hook where the Kafka side of a run will be checked (exactly once, per-car
 * order, MQTT-publish-to-Kafka latency) once the bridge (issue 5) lands. Main thread only. */
#include "bench.h"

#include <stdio.h>

/* Plan, so that the bridge's first merge can fill this in: consume o->kafka_topic from o->kafka_brokers
 * with librdkafka from the current end offsets, parse each record's value with rmq_bench_stamp_read(),
 * feed (pub_id, seq) into an rmq_seq_tracker keyed by car, record now - send_ns into an rmq_hist, and
 * report like `fleet` does (expected = what the fleet run sent at QoS 1). */
int rmq_bench_kafka_verify(const struct rmq_bench_opts *o)
{
	(void)o;
	fprintf(stderr, "ringmq-bench: kafka-verify is not implemented yet: it needs the Kafka bridge "
		"(issue 5); see bench/kafka_verify.c\n");
	return 3;
}
