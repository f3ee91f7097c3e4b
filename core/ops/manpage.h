/* ringmq(1) generated from the --help table (manpage.c).
 * Main thread only (it renders rmq_config_usage into memory first). */
#ifndef RMQ_OPS_MANPAGE_H
#define RMQ_OPS_MANPAGE_H

#include <stdio.h>

/* Writes the man page (roff, man macros) for this version to out. 0, or -1 on a write or memory error. */
int rmq_manpage_write(FILE *out, const char *version);

#endif
