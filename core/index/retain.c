/* Retained-message store: topic name -> one opaque value (the retained message), matched by topic filter
 * when a subscription is made. Owned by one reactor thread; values are owned and released by the caller. */
#include "index/retain.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "index/level_map.h"
#include "ringmq/proto.h"

struct rnode {
	struct rmq_lnode key;      /* first: level maps hold node pointers */
	struct rnode *parent;
	struct rmq_level_map kids;
	void *value;
};

/* The topic of the node being visited is rebuilt in buf as the walk descends. */
struct rmatch {
	rmq_retain_match_fn cb;
	void *ud;
	uint8_t buf[RMQ_MAX_TOPIC_LEN + 1];
};

struct rmq_retain {
	struct rnode root;
	size_t count;
	struct rmatch m;           /* scratch for rmq_retain_match: one reactor thread, no re-entry */
};

struct rmq_retain *rmq_retain_new(void)
{
	return calloc(1, sizeof(struct rmq_retain));
}

static void rnode_free_kids(struct rnode *n, void (*release)(void *))
{
	uint32_t pos = 0;
	struct rmq_lnode *k;
	while ((k = rmq_level_map_next(&n->kids, &pos)) != NULL) {
		struct rnode *c = (struct rnode *)k;
		rnode_free_kids(c, release);
		if (c->value && release)
			release(c->value);
		free(c);
	}
	rmq_level_map_free(&n->kids);
}

void rmq_retain_free(struct rmq_retain *r, void (*release)(void *value))
{
	if (r == NULL)
		return;
	rnode_free_kids(&r->root, release);
	free(r);
}

/* Splits off the next level of s[0..*len); returns its length and advances. */
static size_t take_level(const uint8_t **s, size_t *len, bool *more)
{
	const uint8_t *slash = memchr(*s, '/', *len);
	size_t l = slash ? (size_t)(slash - *s) : *len;
	*more = slash != NULL;
	*s += l + (slash ? 1 : 0);
	*len -= l + (slash ? 1 : 0);
	return l;
}

static struct rnode *walk(const struct rmq_retain *r, const uint8_t *topic, size_t len, bool create)
{
	struct rnode *n = (struct rnode *)&r->root;
	bool more = true;
	while (more) {
		const uint8_t *lvl = topic;
		size_t l = take_level(&topic, &len, &more);
		uint64_t h = rmq_level_hash(lvl, l);
		struct rnode *c = (struct rnode *)rmq_level_map_get(&n->kids, lvl, l, h);
		if (c == NULL) {
			if (!create)
				return NULL;
			c = calloc(1, sizeof(*c) + l);
			if (c == NULL)
				return NULL;
			c->key.name = (uint8_t *)(c + 1);
			memcpy(c->key.name, lvl, l);
			c->key.len = (uint32_t)l;
			c->key.hash = h;
			c->parent = n;
			if (rmq_level_map_put(&n->kids, &c->key) < 0) {
				free(c);
				return NULL;
			}
		}
		n = c;
	}
	return n;
}

static void prune(struct rnode *n)
{
	while (n->parent && n->value == NULL && n->kids.count == 0) {
		struct rnode *p = n->parent;
		rmq_level_map_del(&p->kids, &n->key);
		free(n);
		n = p;
	}
}

int rmq_retain_set(struct rmq_retain *r, const uint8_t *topic, size_t len, void *value, void **old)
{
	*old = NULL;
	struct rnode *n = walk(r, topic, len, value != NULL);
	if (n == NULL) {
		if (value == NULL)
			return 0;
		/* a partial path may have been created: walk() prunes nothing, so drop empty leaves now */
		struct rnode *p = walk(r, topic, len, false);
		if (p)
			prune(p);
		return -ENOMEM;
	}
	*old = n->value;
	n->value = value;
	if (*old == NULL && value)
		r->count++;
	else if (*old && value == NULL)
		r->count--;
	if (value == NULL)
		prune(n);
	return 0;
}

void *rmq_retain_get(const struct rmq_retain *r, const uint8_t *topic, size_t len)
{
	struct rnode *n = walk(r, topic, len, false);
	return n ? n->value : NULL;
}

size_t rmq_retain_count(const struct rmq_retain *r)
{
	return r->count;
}

static void visit_all(const struct rnode *n, size_t tlen, struct rmatch *m, bool first);

static void descend(const struct rnode *c, size_t tlen, bool first, struct rmatch *m, const uint8_t *flt,
		    size_t flen, bool fmore, bool all);

/* Appends c's level to buf at tlen; returns the new length, or SIZE_MAX if the topic cannot fit. */
static size_t push_level(struct rmatch *m, size_t tlen, bool first, const struct rnode *c)
{
	size_t need = tlen + (first ? 0 : 1) + c->key.len;
	if (need > RMQ_MAX_TOPIC_LEN)
		return SIZE_MAX;
	if (!first)
		m->buf[tlen++] = '/';
	memcpy(m->buf + tlen, c->key.name, c->key.len);
	return tlen + c->key.len;
}

static void visit_all(const struct rnode *n, size_t tlen, struct rmatch *m, bool first)
{
	if (n->value)
		m->cb(m->ud, m->buf, tlen, n->value);
	uint32_t pos = 0;
	struct rmq_lnode *k;
	while ((k = rmq_level_map_next(&n->kids, &pos)) != NULL) {
		const struct rnode *c = (const struct rnode *)k;
		if (first && c->key.len > 0 && c->key.name[0] == '$')
			continue;
		size_t l = push_level(m, tlen, first, c);
		if (l != SIZE_MAX)
			visit_all(c, l, m, false);
	}
}

static void match_level(const struct rnode *n, size_t tlen, bool first, const uint8_t *flt, size_t flen,
			struct rmatch *m)
{
	bool fmore;
	const uint8_t *lvl = flt;
	size_t l = take_level(&flt, &flen, &fmore);
	if (l == 1 && lvl[0] == '#') {
		/* "a/#" matches "a" itself too [MQTT-4.7.1-2] */
		if (!first && n->value)
			m->cb(m->ud, m->buf, tlen, n->value);
		uint32_t pos = 0;
		struct rmq_lnode *k;
		while ((k = rmq_level_map_next(&n->kids, &pos)) != NULL)
			descend((const struct rnode *)k, tlen, first, m, NULL, 0, false, true);
		return;
	}
	if (l == 1 && lvl[0] == '+') {
		uint32_t pos = 0;
		struct rmq_lnode *k;
		while ((k = rmq_level_map_next(&n->kids, &pos)) != NULL)
			descend((const struct rnode *)k, tlen, first, m, flt, flen, fmore, false);
		return;
	}
	const struct rnode *c = (const struct rnode *)rmq_level_map_get(&n->kids, lvl, l, rmq_level_hash(lvl, l));
	if (c) {
		size_t nl = push_level(m, tlen, first, c);
		if (nl == SIZE_MAX)
			return;
		if (fmore)
			match_level(c, nl, false, flt, flen, m);
		else if (c->value)
			m->cb(m->ud, m->buf, nl, c->value);
	}
}

/* Enters child c through a wildcard level: '$' children of the root are skipped [MQTT-4.7.2-1]. */
static void descend(const struct rnode *c, size_t tlen, bool first, struct rmatch *m, const uint8_t *flt,
		    size_t flen, bool fmore, bool all)
{
	if (first && c->key.len > 0 && c->key.name[0] == '$')
		return;
	size_t nl = push_level(m, tlen, first, c);
	if (nl == SIZE_MAX)
		return;
	if (all)
		visit_all(c, nl, m, false);
	else if (fmore)
		match_level(c, nl, false, flt, flen, m);
	else if (c->value)
		m->cb(m->ud, m->buf, nl, c->value);
}

void rmq_retain_match(struct rmq_retain *r, const uint8_t *filter, size_t len, rmq_retain_match_fn cb,
		      void *ud)
{
	struct rmatch *m = &r->m;
	m->cb = cb;
	m->ud = ud;
	match_level(&r->root, 0, true, filter, len, m);
}

void rmq_retain_each(struct rmq_retain *r, rmq_retain_match_fn cb, void *ud)
{
	struct rmatch *m = &r->m;
	m->cb = cb;
	m->ud = ud;
	uint32_t pos = 0;
	struct rmq_lnode *k;
	/* visit_all from the root would skip '$' children: enter each top level here instead. */
	while ((k = rmq_level_map_next(&r->root.kids, &pos)) != NULL) {
		const struct rnode *c = (const struct rnode *)k;
		size_t l = push_level(m, 0, true, c);
		if (l != SIZE_MAX)
			visit_all(c, l, m, false);
	}
}
