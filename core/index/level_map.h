/* Child table of a topic tree node: maps one topic level (bytes) to a child node, open addressing.
 * Used by the subscription trie and the retained store; owned by one reactor thread, like its tree. */
#ifndef RMQ_LEVEL_MAP_H
#define RMQ_LEVEL_MAP_H

#include <stddef.h>
#include <stdint.h>

/* Every node kept in a level map starts with this header, so the map can compare keys. */
struct rmq_lnode {
	uint64_t hash;
	uint32_t len;
	uint8_t *name;
};

struct rmq_level_map {
	struct rmq_lnode **slots;  /* NULL = empty; TOMBSTONE = deleted */
	uint32_t count, used, cap; /* used counts tombstones too; cap is 0 or a power of two */
};

uint64_t rmq_level_hash(const uint8_t *s, size_t len);
struct rmq_lnode *rmq_level_map_get(const struct rmq_level_map *m, const uint8_t *s, size_t len, uint64_t h);
/* Inserts n (whose key is not present yet). Returns 0 or -ENOMEM. */
int rmq_level_map_put(struct rmq_level_map *m, struct rmq_lnode *n);
void rmq_level_map_del(struct rmq_level_map *m, struct rmq_lnode *n);
/* Iteration: *pos starts at 0; returns the next node or NULL at the end. */
struct rmq_lnode *rmq_level_map_next(const struct rmq_level_map *m, uint32_t *pos);
void rmq_level_map_free(struct rmq_level_map *m);

#endif
