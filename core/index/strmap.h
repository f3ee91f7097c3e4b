/* String-keyed hash map (client id -> session): chained, power-of-two buckets, grows at load 1.
 * Owned by one reactor; only that thread calls it. */
#ifndef RMQ_CORE_STRMAP_H
#define RMQ_CORE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct rmq_strmap_ent {
	struct rmq_strmap_ent *next;
	uint64_t hash;
	void *val;
	uint32_t len;
	uint8_t key[];
};

struct rmq_strmap {
	struct rmq_strmap_ent **b;
	uint32_t nb, n;
};

void rmq_strmap_init(struct rmq_strmap *m);
/* Frees the entries (not the values). */
void rmq_strmap_destroy(struct rmq_strmap *m);
void *rmq_strmap_get(const struct rmq_strmap *m, const uint8_t *key, size_t len);
/* Inserts or replaces. Returns 0 or -ENOMEM. */
int rmq_strmap_put(struct rmq_strmap *m, const uint8_t *key, size_t len, void *val);
/* Removes; returns the value or NULL. */
void *rmq_strmap_del(struct rmq_strmap *m, const uint8_t *key, size_t len);
/* Calls fn for each entry; fn must not modify the map. */
void rmq_strmap_each(const struct rmq_strmap *m, void (*fn)(void *ud, void *val), void *ud);

#endif
