/* Broker configuration: defaults, command-line and config-file parsing into struct rmq_config (ringmq/config.h).
 * Called by main before any reactor starts (single thread); the result is read-only afterwards. */
#ifndef RMQ_CORE_CONFIG_H
#define RMQ_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "ringmq/config.h"
#include "security/security.h"

struct rmq_bridge_cfg;

/* Fills the defaults. */
void rmq_config_defaults(struct rmq_config *cfg);

/* Applies one option `key` (long flag name without dashes) = `value`. Keys the core does not know
 * are passed to the bridge (bcfg may be NULL). Returns 0, -ENOENT (unknown everywhere), or -EINVAL
 * with a one-line reason in err. */
int rmq_config_set(struct rmq_config *cfg, struct rmq_bridge_cfg *bcfg, const char *key,
		   const char *value, char *err, size_t errlen);

/* Reads a config file: `key value` lines, '#' comments, blank lines. Errors name the line.
 * Returns 0 or -errno with err filled. */
int rmq_config_load(struct rmq_config *cfg, struct rmq_bridge_cfg *bcfg, const char *path, char *err,
		    size_t errlen);

/* What rmq_config_parse_args found besides options to run with. */
#define RMQ_CONFIG_HELP 1       /* --help, -h */
#define RMQ_CONFIG_VERSION 2    /* --version */
#define RMQ_CONFIG_HELP_MAN 3   /* --help-man (hidden): the --help table as a man page */

/* Parses argv. Returns 0 to run, RMQ_CONFIG_* for --help/--version/--help-man (main prints, exits 0), or
 * -EINVAL with err filled (main prints it and exits 2). */
int rmq_config_parse_args(struct rmq_config *cfg, struct rmq_bridge_cfg *bcfg, int argc, char **argv,
			  char *err, size_t errlen);

/* Applies defaults that depend on other options or the machine: listen address, --cores and the CPUs
 * (sched_getaffinity). */
void rmq_config_finish(struct rmq_config *cfg);

/* Checks options that depend on each other (a TLS listener needs --cert and --key), after
 * rmq_config_finish. Returns 0, or -EINVAL with err filled (main exits 2). */
int rmq_config_check(const struct rmq_config *cfg, char *err, size_t errlen);

/* True when some listener speaks TLS (TLS or WSS). */
bool rmq_config_has_tls(const struct rmq_config *cfg);

void rmq_config_usage(FILE *out);

/* Fills the socket address of a parsed listen address; true when it is IPv6. Any thread. */
bool rmq_listen_sockaddr(const struct rmq_listen_addr *a, struct sockaddr_storage *ss, socklen_t *len);

#endif
