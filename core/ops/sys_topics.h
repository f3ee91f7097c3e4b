/* $SYS/broker/... topics: each core snapshots its counters, core 0 publishes the totals.
 * Reactor threads (each its own core). */
#ifndef RMQ_CORE_OPS_SYS_TOPICS_H
#define RMQ_CORE_OPS_SYS_TOPICS_H


struct core;

/* sys_topics.c: snapshot on every core, publish on core 0; called on each timer tick. */
void rmq_sys_tick(struct core *c);

#endif
