/* Subscription trie: topic filter -> subscribers, matched against topic names on every publish.
 * One per reactor core (its local subscribers) and one per core as the replicated route table; single-threaded. */
#include "index/trie.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "index/level_map.h"

struct sub_entry {
	void *sub;
	uint32_t sub_id;
	uint8_t options;
};

/* A node with many subscribers on one filter (say every car on "fleet/broadcast") gets an index from sub
 * pointer to array position, so that add and remove stay O(1) instead of scanning 100k entries. */
#define INDEX_FROM 16u

struct node {
	struct rmq_lnode key;          /* first: level maps hold node pointers */
	struct node *parent;
	struct node *plus, *hash;      /* "+" and "#" children */
	struct rmq_level_map kids;     /* literal children */
	struct sub_entry *subs;
	uint32_t nsubs, scap;
	uint32_t *index;               /* open addressing: position + 1, 0 = empty; icap slots */
	uint32_t icap;
	uint8_t kind;                  /* LITERAL, PLUS, HASH, ROOT */
};

enum { ROOT, LITERAL, PLUS, HASH };

struct rmq_trie {
	struct node root;
	size_t count;
};

struct rmq_trie *rmq_trie_new(void)
{
	struct rmq_trie *t = calloc(1, sizeof(*t));
	if (t)
		t->root.kind = ROOT;
	return t;
}

static void node_free_children(struct node *n);

static void node_free(struct node *n)
{
	node_free_children(n);
	free(n->subs);
	free(n->index);
	free(n);
}

static void node_free_children(struct node *n)
{
	uint32_t pos = 0;
	struct rmq_lnode *k;
	while ((k = rmq_level_map_next(&n->kids, &pos)) != NULL)
		node_free((struct node *)k);
	rmq_level_map_free(&n->kids);
	if (n->plus)
		node_free(n->plus);
	if (n->hash)
		node_free(n->hash);
}

void rmq_trie_free(struct rmq_trie *t)
{
	if (t == NULL)
		return;
	node_free_children(&t->root);
	free(t->root.subs);
	free(t->root.index);
	free(t);
}

/* ---- subscriber list of one node ---- */

static uint32_t ptr_slot(const void *p, uint32_t cap)
{
	uintptr_t v = (uintptr_t)p;
	v ^= v >> 17;
	v *= 0x9E3779B97F4A7C15ull;
	return (uint32_t)(v >> 32) & (cap - 1);
}

static void index_put(struct node *n, uint32_t pos)
{
	uint32_t i = ptr_slot(n->subs[pos].sub, n->icap);
	while (n->index[i] != 0)
		i = (i + 1) & (n->icap - 1);
	n->index[i] = pos + 1;
}

static int index_rebuild(struct node *n)
{
	uint32_t cap = 64;
	while (cap < n->scap * 2)
		cap *= 2;
	uint32_t *idx = calloc(cap, sizeof(*idx));
	if (idx == NULL)
		return -ENOMEM;
	free(n->index);
	n->index = idx;
	n->icap = cap;
	for (uint32_t i = 0; i < n->nsubs; i++)
		index_put(n, i);
	return 0;
}

/* Returns the slot in n->index holding sub (index mode) or the array position (scan mode), or -1. */
static int64_t find_sub(const struct node *n, const void *sub, uint32_t *islot)
{
	if (n->index == NULL) {
		for (uint32_t i = 0; i < n->nsubs; i++)
			if (n->subs[i].sub == sub)
				return i;
		return -1;
	}
	for (uint32_t i = ptr_slot(sub, n->icap); n->index[i] != 0; i = (i + 1) & (n->icap - 1)) {
		uint32_t pos = n->index[i] - 1;
		if (n->subs[pos].sub == sub) {
			*islot = i;
			return pos;
		}
	}
	return -1;
}

static int sub_add(struct node *n, void *sub, uint8_t options, uint32_t sub_id)
{
	uint32_t islot;
	int64_t pos = find_sub(n, sub, &islot);
	if (pos >= 0) {
		n->subs[pos].options = options;
		n->subs[pos].sub_id = sub_id;
		return 0;
	}
	if (n->nsubs == n->scap) {
		uint32_t cap = n->scap ? n->scap * 2 : 2;
		struct sub_entry *s = realloc(n->subs, cap * sizeof(*s));
		if (s == NULL)
			return -ENOMEM;
		n->subs = s;
		n->scap = cap;
	}
	n->subs[n->nsubs++] = (struct sub_entry){ .sub = sub, .sub_id = sub_id, .options = options };
	if (n->nsubs >= INDEX_FROM) {
		if (n->index == NULL || n->nsubs * 2 > n->icap)
			return index_rebuild(n) < 0 ? -ENOMEM : 1;
		index_put(n, n->nsubs - 1);
	}
	return 1;
}

/* Deletes index slot `i` and re-seats the cluster after it (linear probing without tombstones). */
static void index_del(struct node *n, uint32_t i)
{
	uint32_t mask = n->icap - 1;
	n->index[i] = 0;
	for (uint32_t j = (i + 1) & mask; n->index[j] != 0; j = (j + 1) & mask) {
		uint32_t pos = n->index[j] - 1;
		n->index[j] = 0;
		index_put(n, pos);
	}
}

static int sub_remove(struct node *n, const void *sub)
{
	uint32_t islot = 0;
	int64_t pos = find_sub(n, sub, &islot);
	if (pos < 0)
		return -ENOENT;
	uint32_t last = n->nsubs - 1;
	if (n->index)
		index_del(n, islot);
	if ((uint32_t)pos != last) {
		n->subs[pos] = n->subs[last];
		if (n->index) {
			uint32_t mslot = 0;
			/* the moved entry's index slot still says last + 1: point it at pos */
			for (mslot = ptr_slot(n->subs[pos].sub, n->icap); n->index[mslot] != last + 1;
			     mslot = (mslot + 1) & (n->icap - 1))
				;
			n->index[mslot] = (uint32_t)pos + 1;
		}
	}
	n->nsubs--;
	if (n->index && n->nsubs < INDEX_FROM / 2) {
		free(n->index);
		n->index = NULL;
		n->icap = 0;
	}
	return 0;
}

/* ---- tree walk ---- */

static bool is_level(const uint8_t *s, size_t len, char c)
{
	return len == 1 && s[0] == (uint8_t)c;
}

static struct node *child_get(const struct node *n, const uint8_t *s, size_t len)
{
	if (is_level(s, len, '+'))
		return n->plus;
	if (is_level(s, len, '#'))
		return n->hash;
	return (struct node *)rmq_level_map_get(&n->kids, s, len, rmq_level_hash(s, len));
}

static struct node *child_make(struct node *n, const uint8_t *s, size_t len)
{
	struct node *c = child_get(n, s, len);
	if (c)
		return c;
	c = calloc(1, sizeof(*c) + len);
	if (c == NULL)
		return NULL;
	c->parent = n;
	c->key.name = (uint8_t *)(c + 1);
	memcpy(c->key.name, s, len);
	c->key.len = (uint32_t)len;
	c->key.hash = rmq_level_hash(s, len);
	if (is_level(s, len, '+')) {
		c->kind = PLUS;
		n->plus = c;
	} else if (is_level(s, len, '#')) {
		c->kind = HASH;
		n->hash = c;
	} else {
		c->kind = LITERAL;
		if (rmq_level_map_put(&n->kids, &c->key) < 0) {
			free(c);
			return NULL;
		}
	}
	return c;
}

/* Iterates the levels of a topic or filter: `*s`/`*len` hold the rest; returns the next level. */
static bool next_level(const uint8_t **s, size_t *len, bool *more, const uint8_t **lvl, size_t *lvl_len)
{
	if (!*more)
		return false;
	const uint8_t *slash = memchr(*s, '/', *len);
	*lvl = *s;
	if (slash) {
		*lvl_len = (size_t)(slash - *s);
		*len -= *lvl_len + 1;
		*s = slash + 1;
	} else {
		*lvl_len = *len;
		*more = false;
	}
	return true;
}

static struct node *find_node(const struct rmq_trie *t, const uint8_t *filter, size_t len)
{
	const struct node *n = &t->root;
	const uint8_t *lvl;
	size_t lvl_len;
	bool more = true;
	while (n && next_level(&filter, &len, &more, &lvl, &lvl_len))
		n = child_get(n, lvl, lvl_len);
	return (struct node *)n;
}

static void prune(struct node *n)
{
	while (n->kind != ROOT && n->nsubs == 0 && n->kids.count == 0 && !n->plus && !n->hash) {
		struct node *p = n->parent;
		if (n->kind == PLUS)
			p->plus = NULL;
		else if (n->kind == HASH)
			p->hash = NULL;
		else
			rmq_level_map_del(&p->kids, &n->key);
		free(n->subs);
		free(n->index);
		free(n);
		n = p;
	}
}

int rmq_trie_add(struct rmq_trie *t, const uint8_t *filter, size_t len, void *sub, uint8_t options,
		 uint32_t sub_id)
{
	struct node *n = &t->root;
	const uint8_t *lvl;
	size_t lvl_len;
	bool more = true;
	int depth = 0;
	while (next_level(&filter, &len, &more, &lvl, &lvl_len)) {
		if (++depth > RMQ_TRIE_MAX_LEVELS) {
			prune(n);
			return -E2BIG;
		}
		struct node *c = child_make(n, lvl, lvl_len);
		if (c == NULL) {
			prune(n);
			return -ENOMEM;
		}
		n = c;
	}
	int rc = sub_add(n, sub, options, sub_id);
	if (rc == 1)
		t->count++;
	else if (rc < 0)
		prune(n);
	return rc;
}

int rmq_trie_remove(struct rmq_trie *t, const uint8_t *filter, size_t len, void *sub)
{
	struct node *n = find_node(t, filter, len);
	if (n == NULL || sub_remove(n, sub) < 0)
		return -ENOENT;
	t->count--;
	prune(n);
	return 0;
}

uint32_t rmq_trie_filter_subs(const struct rmq_trie *t, const uint8_t *filter, size_t len)
{
	const struct node *n = find_node(t, filter, len);
	return n ? n->nsubs : 0;
}

size_t rmq_trie_count(const struct rmq_trie *t)
{
	return t->count;
}

struct match_ctx {
	rmq_trie_match_fn cb;
	void *ud;
};

static void emit(const struct node *n, const struct match_ctx *m)
{
	for (uint32_t i = 0; i < n->nsubs; i++)
		m->cb(m->ud, n->subs[i].sub, n->subs[i].options, n->subs[i].sub_id);
}

/* `rest` is the topic after the level that led to n; `done` says no level remains. Recursion depth is
 * bounded by the trie's depth (RMQ_TRIE_MAX_LEVELS), not by the topic's. */
static void match(const struct node *n, const uint8_t *rest, size_t len, bool done, bool first,
		  const struct match_ctx *m)
{
	/* "a/#" also matches "a" [MQTT-4.7.1-2]; a leading wildcard never matches a '$' topic. */
	bool dollar = first && len > 0 && rest[0] == '$';
	if (n->hash && !dollar)
		emit(n->hash, m);
	if (done) {
		emit(n, m);
		return;
	}
	const uint8_t *lvl;
	size_t lvl_len;
	bool more = true;
	next_level(&rest, &len, &more, &lvl, &lvl_len);
	if (n->kids.count) {
		const struct node *c = (const struct node *)rmq_level_map_get(&n->kids, lvl, lvl_len,
									       rmq_level_hash(lvl, lvl_len));
		if (c)
			match(c, rest, len, !more, false, m);
	}
	if (n->plus && !dollar)
		match(n->plus, rest, len, !more, false, m);
}

void rmq_trie_match(const struct rmq_trie *t, const uint8_t *topic, size_t len, rmq_trie_match_fn cb, void *ud)
{
	struct match_ctx m = { .cb = cb, .ud = ud };
	match(&t->root, topic, len, false, true, &m);
}
