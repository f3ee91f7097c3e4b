/* Unit tests for core/index/trie.c: MQTT matching rules, $-topics, add/remove/prune, large subscriber lists, and a
 * randomized comparison against a brute-force matcher written from the spec text. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "index/trie.h"

#define S(x) (const uint8_t *)(x), strlen(x)

struct hits {
	uintptr_t subs[4096];
	uint8_t opts[4096];
	uint32_t ids[4096];
	int n;
};

static void collect(void *ud, void *sub, uint8_t options, uint32_t sub_id)
{
	struct hits *h = ud;
	cr_assert_lt(h->n, 4096);
	h->subs[h->n] = (uintptr_t)sub;
	h->opts[h->n] = options;
	h->ids[h->n++] = sub_id;
}

static int count_matches(struct rmq_trie *t, const char *topic)
{
	static struct hits h;
	h.n = 0;
	rmq_trie_match(t, S(topic), collect, &h);
	return h.n;
}

/* Brute force from the spec: levels compared one by one; '+' one level; '#' the rest (and the parent);
 * leading wildcards never match '$' topics. */
static int spec_match(const char *f, const char *t)
{
	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return 0;
	for (;;) {
		const char *fe = strchr(f, '/'), *te = strchr(t, '/');
		size_t fl = fe ? (size_t)(fe - f) : strlen(f), tl = te ? (size_t)(te - t) : strlen(t);
		if (fl == 1 && f[0] == '#')
			return 1;
		if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
			return 0;
		if (!fe && !te)
			return 1;
		if (!te)  /* topic ended: "a/#" matches "a" */
			return fe && strcmp(fe + 1, "#") == 0;
		if (!fe)
			return 0;
		f = fe + 1;
		t = te + 1;
	}
}

Test(trie, spec_examples)
{
	struct { const char *filter, *topic; int match; } cases[] = {
		{ "sport/tennis/player1/#", "sport/tennis/player1", 1 },
		{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", 1 },
		{ "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", 1 },
		{ "sport/#", "sport", 1 },
		{ "#", "sport/tennis", 1 },
		{ "sport/tennis/+", "sport/tennis/player1", 1 },
		{ "sport/tennis/+", "sport/tennis/player1/ranking", 0 },
		{ "sport/+", "sport", 0 },
		{ "sport/+", "sport/", 1 },
		{ "+/+", "/finance", 1 },
		{ "/+", "/finance", 1 },
		{ "+", "/finance", 0 },
		{ "#", "$SYS/broker", 0 },
		{ "+/monitor/Clients", "$SYS/monitor/Clients", 0 },
		{ "$SYS/#", "$SYS/monitor/Clients", 1 },
		{ "$SYS/monitor/+", "$SYS/monitor/Clients", 1 },
		{ "a/b", "a/b", 1 },
		{ "a/b", "a/bc", 0 },
		{ "a//c", "a//c", 1 },
		{ "a/+/c", "a//c", 1 },
		{ "cars/+/telemetry", "cars/VIN1/telemetry", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rmq_trie *t = rmq_trie_new();
		cr_assert_eq(rmq_trie_add(t, S(cases[i].filter), (void *)1, 1, 7), 1);
		cr_expect_eq(count_matches(t, cases[i].topic), cases[i].match, "filter %s topic %s",
			     cases[i].filter, cases[i].topic);
		cr_expect_eq(spec_match(cases[i].filter, cases[i].topic), cases[i].match, "reference disagrees: %s %s",
			     cases[i].filter, cases[i].topic);
		rmq_trie_free(t);
	}
}

Test(trie, add_update_remove)
{
	struct rmq_trie *t = rmq_trie_new();
	cr_assert_eq(rmq_trie_add(t, S("a/+/c"), (void *)1, 1, 0), 1);
	cr_assert_eq(rmq_trie_add(t, S("a/+/c"), (void *)1, 2, 9), 0, "same pair again updates");
	cr_assert_eq(rmq_trie_add(t, S("a/+/c"), (void *)2, 0, 0), 1);
	cr_assert_eq(rmq_trie_count(t), 2);
	cr_assert_eq(rmq_trie_filter_subs(t, S("a/+/c")), 2);
	cr_assert_eq(rmq_trie_filter_subs(t, S("a/+")), 0);

	struct hits h = { .n = 0 };
	rmq_trie_match(t, S("a/b/c"), collect, &h);
	cr_assert_eq(h.n, 2);
	int i1 = h.subs[0] == 1 ? 0 : 1;
	cr_assert_eq(h.opts[i1], 2);
	cr_assert_eq(h.ids[i1], 9);

	cr_assert_eq(rmq_trie_remove(t, S("a/+/c"), (void *)3), -ENOENT);
	cr_assert_eq(rmq_trie_remove(t, S("a/x/c"), (void *)1), -ENOENT);
	cr_assert_eq(rmq_trie_remove(t, S("a/+/c"), (void *)1), 0);
	cr_assert_eq(count_matches(t, "a/b/c"), 1);
	cr_assert_eq(rmq_trie_remove(t, S("a/+/c"), (void *)2), 0);
	cr_assert_eq(count_matches(t, "a/b/c"), 0);
	cr_assert_eq(rmq_trie_count(t), 0);
	cr_assert_eq(rmq_trie_remove(t, S("a/+/c"), (void *)2), -ENOENT);
	/* pruned: adding again works from a clean branch */
	cr_assert_eq(rmq_trie_add(t, S("a/+/c"), (void *)2, 0, 0), 1);
	rmq_trie_free(t);
}

Test(trie, too_deep_refused)
{
	char f[2 * (RMQ_TRIE_MAX_LEVELS + 1) + 1];
	size_t n = 0;
	for (int i = 0; i < RMQ_TRIE_MAX_LEVELS + 1; i++) {
		f[n++] = 'a';
		f[n++] = '/';
	}
	f[n - 1] = 0;
	struct rmq_trie *t = rmq_trie_new();
	cr_assert_eq(rmq_trie_add(t, S(f), (void *)1, 0, 0), -E2BIG);
	cr_assert_eq(rmq_trie_count(t), 0);
	f[2 * RMQ_TRIE_MAX_LEVELS - 1] = 0;  /* exactly the maximum */
	cr_assert_eq(rmq_trie_add(t, S(f), (void *)1, 0, 0), 1);
	rmq_trie_free(t);
}

Test(trie, many_subscribers_on_one_filter)
{
	enum { N = 3000 };
	struct rmq_trie *t = rmq_trie_new();
	for (uintptr_t i = 1; i <= N; i++)
		cr_assert_eq(rmq_trie_add(t, S("fleet/broadcast"), (void *)i, (uint8_t)(i & 3), (uint32_t)i), 1);
	for (uintptr_t i = 1; i <= N; i++)
		cr_assert_eq(rmq_trie_add(t, S("fleet/broadcast"), (void *)i, 1, 0), 0);
	cr_assert_eq(count_matches(t, "fleet/broadcast"), N);
	/* remove every odd one, in a scattered order */
	for (uintptr_t k = 0; k < N; k++) {
		uintptr_t i = (k * 7919) % N + 1;
		if (i & 1)
			cr_assert_eq(rmq_trie_remove(t, S("fleet/broadcast"), (void *)i), 0, "i=%lu", (unsigned long)i);
	}
	static struct hits h;
	h.n = 0;
	rmq_trie_match(t, S("fleet/broadcast"), collect, &h);
	cr_assert_eq(h.n, N / 2);
	for (int i = 0; i < h.n; i++)
		cr_assert_eq(h.subs[i] & 1, 0);
	for (uintptr_t i = 2; i <= N; i += 2)
		cr_assert_eq(rmq_trie_remove(t, S("fleet/broadcast"), (void *)i), 0);
	cr_assert_eq(rmq_trie_count(t), 0);
	rmq_trie_free(t);
}

/* Random filters and topics over a small alphabet, so that matches are frequent. */
static void rand_levels(char *out, int levels, int wild, unsigned *seed)
{
	static const char *words[] = { "a", "b", "$x", "", "cars", "c" };
	out[0] = 0;
	for (int i = 0; i < levels; i++) {
		const char *w = words[rand_r(seed) % 6];
		if (wild && rand_r(seed) % 4 == 0)
			w = "+";
		if (wild && i == levels - 1 && rand_r(seed) % 4 == 0)
			w = "#";
		if (strcmp(w, "$x") == 0 && i > 0)
			w = "x";
		if (i)
			strcat(out, "/");
		strcat(out, w);
	}
}

Test(trie, randomized_against_reference)
{
	unsigned seed = 12345;
	enum { NF = 200, NT = 400 };
	static char filters[NF][64], topics[NT][64];
	struct rmq_trie *t = rmq_trie_new();
	for (int i = 0; i < NF; i++) {
		rand_levels(filters[i], 1 + rand_r(&seed) % 4, 1, &seed);
		rmq_trie_add(t, S(filters[i]), (void *)(uintptr_t)(i + 1), 0, 0);
	}
	for (int j = 0; j < NT; j++) {
		rand_levels(topics[j], 1 + rand_r(&seed) % 4, 0, &seed);
		static struct hits h;
		h.n = 0;
		rmq_trie_match(t, S(topics[j]), collect, &h);
		int expect = 0;
		for (int i = 0; i < NF; i++) {
			/* duplicate filter strings collapse into distinct subs on one node: count each */
			if (spec_match(filters[i], topics[j]))
				expect++;
		}
		cr_assert_eq(h.n, expect, "topic '%s'", topics[j]);
	}
	rmq_trie_free(t);
}
