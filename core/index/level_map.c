/* Child table of a topic tree node: maps one topic level (bytes) to a child node, open addressing.
 * Used by the subscription trie and the retained store; owned by one reactor thread, like its tree. */
#include "index/level_map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define TOMBSTONE ((struct rmq_lnode *)(uintptr_t)1)
#define MIN_CAP 4u

uint64_t rmq_level_hash(const uint8_t *s, size_t len)
{
	return XXH3_64bits(s, len);
}

static int same_key(const struct rmq_lnode *n, const uint8_t *s, size_t len, uint64_t h)
{
	return n->hash == h && n->len == len && memcmp(n->name, s, len) == 0;
}

struct rmq_lnode *rmq_level_map_get(const struct rmq_level_map *m, const uint8_t *s, size_t len, uint64_t h)
{
	if (m->cap == 0)
		return NULL;
	uint32_t mask = m->cap - 1;
	for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
		struct rmq_lnode *n = m->slots[i];
		if (n == NULL)
			return NULL;
		if (n != TOMBSTONE && same_key(n, s, len, h))
			return n;
	}
}

static void place(struct rmq_lnode **slots, uint32_t cap, struct rmq_lnode *n)
{
	uint32_t mask = cap - 1;
	uint32_t i = (uint32_t)n->hash & mask;
	while (slots[i] != NULL && slots[i] != TOMBSTONE)
		i = (i + 1) & mask;
	slots[i] = n;
}

/* Rebuilds at a size that keeps the load (live + tombstones) under 3/4 after one more insert. */
static int grow(struct rmq_level_map *m)
{
	uint32_t cap = MIN_CAP;
	while ((m->count + 1) * 4 >= cap * 3)
		cap *= 2;
	struct rmq_lnode **slots = calloc(cap, sizeof(*slots));
	if (slots == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->slots[i] != NULL && m->slots[i] != TOMBSTONE)
			place(slots, cap, m->slots[i]);
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	m->used = m->count;
	return 0;
}

int rmq_level_map_put(struct rmq_level_map *m, struct rmq_lnode *n)
{
	if ((m->used + 1) * 4 >= m->cap * 3) {
		int rc = grow(m);
		if (rc < 0)
			return rc;
	}
	uint32_t mask = m->cap - 1;
	uint32_t i = (uint32_t)n->hash & mask;
	while (m->slots[i] != NULL && m->slots[i] != TOMBSTONE)
		i = (i + 1) & mask;
	if (m->slots[i] == NULL)
		m->used++;
	m->slots[i] = n;
	m->count++;
	return 0;
}

void rmq_level_map_del(struct rmq_level_map *m, struct rmq_lnode *n)
{
	if (m->cap == 0)
		return;
	uint32_t mask = m->cap - 1;
	for (uint32_t i = (uint32_t)n->hash & mask; m->slots[i] != NULL; i = (i + 1) & mask) {
		if (m->slots[i] == n) {
			m->slots[i] = TOMBSTONE;
			m->count--;
			break;
		}
	}
	if (m->count == 0) {
		rmq_level_map_free(m);
		return;
	}
}

struct rmq_lnode *rmq_level_map_next(const struct rmq_level_map *m, uint32_t *pos)
{
	while (*pos < m->cap) {
		struct rmq_lnode *n = m->slots[(*pos)++];
		if (n != NULL && n != TOMBSTONE)
			return n;
	}
	return NULL;
}

void rmq_level_map_free(struct rmq_level_map *m)
{
	free(m->slots);
	m->slots = NULL;
	m->count = m->used = m->cap = 0;
}
