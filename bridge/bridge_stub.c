/* Placeholder bridge: accepts no options and routes nothing, until the real bridge lands.
 * Same threading contract as include/ringmq/bridge.h. */
#include <errno.h>
#include <stdlib.h>

#include "ringmq/bridge.h"

struct rmq_bridge_cfg { int unused; };
struct rmq_bridge { int unused; };

struct rmq_bridge_cfg *rmq_bridge_cfg_new(void) { return calloc(1, sizeof(struct rmq_bridge_cfg)); }
void rmq_bridge_cfg_free(struct rmq_bridge_cfg *cfg) { free(cfg); }

int rmq_bridge_option(struct rmq_bridge_cfg *cfg, const char *name, const char *value, char *err,
		      size_t errlen)
{
	(void)cfg; (void)name; (void)value; (void)err; (void)errlen;
	return -ENOENT;
}

void rmq_bridge_usage(FILE *out) { (void)out; }

int rmq_bridge_start(struct rmq_bridge **out, const struct rmq_bridge_cfg *cfg, int ncores)
{
	(void)cfg; (void)ncores;
	*out = calloc(1, sizeof(struct rmq_bridge));
	return *out ? 0 : -ENOMEM;
}

void rmq_bridge_stop(struct rmq_bridge *b, int timeout_ms) { (void)timeout_ms; free(b); }
struct rmq_bridge_core *rmq_bridge_core_get(struct rmq_bridge *b, int core_id)
{
	(void)b; (void)core_id;
	return NULL;
}
int rmq_bridge_core_fd(struct rmq_bridge_core *bc) { (void)bc; return -1; }
int rmq_bridge_publish(struct rmq_bridge_core *bc, const struct rmq_bridge_msg *m, uint64_t cookie)
{
	(void)bc; (void)m; (void)cookie;
	return 0;
}
int rmq_bridge_core_poll(struct rmq_bridge_core *bc, rmq_bridge_done_fn done, void *ud)
{
	(void)bc; (void)done; (void)ud;
	return 0;
}
bool rmq_bridge_core_writable(struct rmq_bridge_core *bc) { (void)bc; return true; }
