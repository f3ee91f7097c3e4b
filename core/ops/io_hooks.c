/* io's calls beside the protocol, filled here because ops is the room that sees all others: the store's state log
 * and Kafka spool, and ops' own tick. Constant data; the functions run on the reactor thread of the core given. */
#include "ops/io_hooks.h"
#include "ops/metrics.h"
#include "ops/sys_topics.h"
#include "store/kafka_spool.h"
#include "store/persist.h"

const struct rmq_io_hooks rmq_ops_io_hooks = {
	.log_done = rmq_persist_complete,
	.log_prep = rmq_persist_prep,
	.log_close = rmq_persist_close,
	.spool_done = rmq_kspool_on_cqe,
	.spool_writable = rmq_kspool_writable,
	.spool_pump = rmq_kspool_pump,
	.spool_close = rmq_kspool_close,
	.tick = rmq_sys_tick,
	.tick_end = rmq_metrics_publish,
};
