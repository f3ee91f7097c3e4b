/* String-keyed hash map (XXH3 hashed, chained, doubling): client id -> session.
 * Owned by one reactor thread; only that thread calls it. */
#include "index/strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void rmq_strmap_init(struct rmq_strmap *m)
{
	m->b = NULL;
	m->nb = m->n = 0;
}

void rmq_strmap_destroy(struct rmq_strmap *m)
{
	for (uint32_t i = 0; i < m->nb; i++) {
		struct rmq_strmap_ent *e = m->b[i];
		while (e) {
			struct rmq_strmap_ent *n = e->next;
			free(e);
			e = n;
		}
	}
	free(m->b);
	rmq_strmap_init(m);
}

static struct rmq_strmap_ent **slot(const struct rmq_strmap *m, const uint8_t *key, size_t len,
				    uint64_t h)
{
	struct rmq_strmap_ent **pp = &m->b[h & (m->nb - 1)];
	while (*pp && !((*pp)->hash == h && (*pp)->len == len && !memcmp((*pp)->key, key, len)))
		pp = &(*pp)->next;
	return pp;
}

void *rmq_strmap_get(const struct rmq_strmap *m, const uint8_t *key, size_t len)
{
	if (!m->nb)
		return NULL;
	struct rmq_strmap_ent *e = *slot(m, key, len, XXH3_64bits(key, len));
	return e ? e->val : NULL;
}

static int grow(struct rmq_strmap *m)
{
	uint32_t nb = m->nb ? m->nb * 2 : 16;
	struct rmq_strmap_ent **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->nb; i++) {
		struct rmq_strmap_ent *e = m->b[i];
		while (e) {
			struct rmq_strmap_ent *n = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
			e = n;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return 0;
}

int rmq_strmap_put(struct rmq_strmap *m, const uint8_t *key, size_t len, void *val)
{
	if (m->n >= m->nb && grow(m))
		return -ENOMEM;
	uint64_t h = XXH3_64bits(key, len);
	struct rmq_strmap_ent **pp = slot(m, key, len, h);
	if (*pp) {
		(*pp)->val = val;
		return 0;
	}
	struct rmq_strmap_ent *e = malloc(sizeof(*e) + len);
	if (!e)
		return -ENOMEM;
	e->next = NULL;
	e->hash = h;
	e->val = val;
	e->len = (uint32_t)len;
	memcpy(e->key, key, len);
	*pp = e;
	m->n++;
	return 0;
}

void *rmq_strmap_del(struct rmq_strmap *m, const uint8_t *key, size_t len)
{
	if (!m->nb)
		return NULL;
	struct rmq_strmap_ent **pp = slot(m, key, len, XXH3_64bits(key, len));
	struct rmq_strmap_ent *e = *pp;
	if (!e)
		return NULL;
	*pp = e->next;
	void *v = e->val;
	free(e);
	m->n--;
	return v;
}

void rmq_strmap_each(const struct rmq_strmap *m, void (*fn)(void *ud, void *val), void *ud)
{
	for (uint32_t i = 0; i < m->nb; i++)
		for (struct rmq_strmap_ent *e = m->b[i]; e; e = e->next)
			fn(ud, e->val);
}
