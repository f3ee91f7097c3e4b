/* Unit tests for core/index/retain.c: set/replace/clear, filter matching with wildcards and $-topics, pruning. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "index/retain.h"

#define S(x) (const uint8_t *)(x), strlen(x)

struct seen {
	char topics[64][64];
	uintptr_t values[64];
	int n;
};

static void collect(void *ud, const uint8_t *topic, size_t len, void *value)
{
	struct seen *s = ud;
	cr_assert_lt(s->n, 64);
	snprintf(s->topics[s->n], 64, "%.*s", (int)len, (const char *)topic);
	s->values[s->n++] = (uintptr_t)value;
}

static int has(const struct seen *s, const char *topic)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->topics[i], topic) == 0)
			return 1;
	return 0;
}

static struct rmq_retain *fill(void)
{
	const char *topics[] = { "a", "a/b", "a/b/c", "a/x/c", "$SYS/up", "b/", "/lead", "cars/V1/state" };
	struct rmq_retain *r = rmq_retain_new();
	for (uintptr_t i = 0; i < sizeof(topics) / sizeof(*topics); i++) {
		void *old;
		cr_assert_eq(rmq_retain_set(r, S(topics[i]), (void *)(i + 1), &old), 0);
		cr_assert_null(old);
	}
	return r;
}

Test(retain, match_filters)
{
	struct rmq_retain *r = fill();
	struct { const char *filter; int n; const char *must; } cases[] = {
		{ "#", 7, "/lead" },            /* everything but $SYS/up */
		{ "a/#", 4, "a" },              /* a, a/b, a/b/c, a/x/c */
		{ "a/+/c", 2, "a/x/c" },
		{ "+", 1, "a" },
		{ "+/+", 3, "b/" },             /* a/b, b/, /lead */
		{ "$SYS/#", 1, "$SYS/up" },
		{ "+/up", 0, NULL },
		{ "cars/V1/state", 1, "cars/V1/state" },
		{ "cars/V2/state", 0, NULL },
		{ "a/b/c/d", 0, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct seen s = { .n = 0 };
		rmq_retain_match(r, S(cases[i].filter), collect, &s);
		cr_expect_eq(s.n, cases[i].n, "filter %s: %d", cases[i].filter, s.n);
		if (cases[i].must)
			cr_expect(has(&s, cases[i].must), "filter %s misses %s", cases[i].filter, cases[i].must);
	}
	rmq_retain_free(r, NULL);
}

Test(retain, replace_and_clear)
{
	struct rmq_retain *r = fill();
	void *old;
	cr_assert_eq(rmq_retain_count(r), 8);
	cr_assert_eq(rmq_retain_set(r, S("a/b"), (void *)100, &old), 0);
	cr_assert_eq((uintptr_t)old, 2);
	cr_assert_eq((uintptr_t)rmq_retain_get(r, S("a/b")), 100);
	cr_assert_eq(rmq_retain_count(r), 8);
	cr_assert_eq(rmq_retain_set(r, S("a/b"), NULL, &old), 0);
	cr_assert_eq((uintptr_t)old, 100);
	cr_assert_null(rmq_retain_get(r, S("a/b")));
	cr_assert_eq((uintptr_t)rmq_retain_get(r, S("a/b/c")), 3, "children survive a cleared parent");
	cr_assert_eq(rmq_retain_count(r), 7);
	cr_assert_eq(rmq_retain_set(r, S("never/set"), NULL, &old), 0);
	cr_assert_null(old);
	cr_assert_eq(rmq_retain_set(r, S("a/b/c"), NULL, &old), 0);
	struct seen s = { .n = 0 };
	rmq_retain_match(r, S("a/#"), collect, &s);
	cr_assert_eq(s.n, 2);  /* a, a/x/c */
	rmq_retain_free(r, NULL);
}

static int released;
static void count_release(void *v)
{
	(void)v;
	released++;
}

Test(retain, free_releases_values)
{
	released = 0;
	struct rmq_retain *r = fill();
	rmq_retain_free(r, count_release);
	cr_assert_eq(released, 8);
}
