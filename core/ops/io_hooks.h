/* The io hooks ops fills for every core (struct rmq_io_hooks, io/io.h): io's calls to the store and to ops.
 * Read-only after start; set by main on each core before its thread starts. */
#ifndef RMQ_CORE_OPS_IO_HOOKS_H
#define RMQ_CORE_OPS_IO_HOOKS_H

#include "io/io.h"

/* io_hooks.c: the state log and Kafka spool of core/store, $SYS and the metrics snapshot of core/ops. */
extern const struct rmq_io_hooks rmq_ops_io_hooks;

#endif
