/* $SYS/broker/... topics: each core snapshots its counters, core 0 publishes the totals.
 * Reactor threads (each its own core). */
#ifndef RMQ_CORE_OPS_SYS_TOPICS_H
#define RMQ_CORE_OPS_SYS_TOPICS_H


#include <stdint.h>

struct core;

/* Core 0's publishing state, reached by its c->sys (io only holds the pointer). */
struct rmq_sys {
	uint64_t start_ms, next_pub_ms;
	uint64_t prev[4];            /* totals of the rated figures at the last publish */
};

/* sys_topics.c: snapshot on every core, publish on core 0; called on each timer tick. */
void rmq_sys_tick(struct core *c);
/* Main, before core 0's thread starts (-ENOMEM) and after it stopped. */
int rmq_sys_new(struct core *c);
void rmq_sys_free(struct core *c);

#endif
