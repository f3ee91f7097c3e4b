/* ringmq --version (version.c) and the version string the man page and $SYS carry.
 * Main thread only: printing runs the io_uring start-up probe. */
#ifndef RMQ_OPS_VERSION_H
#define RMQ_OPS_VERSION_H

#include <stdio.h>

struct broker;

/* "0.1.0": the project version of this build. Any thread. */
const char *rmq_version_string(void);

/* Prints version, git revision, library versions and the io_uring features found (probing with b's
 * configuration: it fills b->ring_flags and b->use_msg_ring). */
void rmq_version_print(FILE *out, struct broker *b);

#endif
