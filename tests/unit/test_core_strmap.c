/* Unit tests for core/index/strmap.c: insert, replace, delete, growth across many keys, binary keys. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "index/strmap.h"

static void count(void *ud, void *val)
{
	(void)val;
	(*(int *)ud)++;
}

Test(core_strmap, put_get_replace_delete)
{
	struct rmq_strmap m;
	rmq_strmap_init(&m);
	int a = 1, b = 2;
	cr_assert_null(rmq_strmap_get(&m, (const uint8_t *)"x", 1), "empty map");
	cr_assert_eq(rmq_strmap_put(&m, (const uint8_t *)"car-1", 5, &a), 0);
	cr_assert_eq(rmq_strmap_get(&m, (const uint8_t *)"car-1", 5), &a);
	cr_assert_null(rmq_strmap_get(&m, (const uint8_t *)"car-", 4), "prefix is another key");
	cr_assert_eq(rmq_strmap_put(&m, (const uint8_t *)"car-1", 5, &b), 0);
	cr_assert_eq(rmq_strmap_get(&m, (const uint8_t *)"car-1", 5), &b, "replaced");
	cr_assert_eq(m.n, 1);
	cr_assert_eq(rmq_strmap_del(&m, (const uint8_t *)"car-1", 5), &b);
	cr_assert_null(rmq_strmap_del(&m, (const uint8_t *)"car-1", 5), "deleted twice");
	cr_assert_eq(m.n, 0);
	rmq_strmap_destroy(&m);
}

Test(core_strmap, many_keys_and_binary)
{
	struct rmq_strmap m;
	rmq_strmap_init(&m);
	char key[32];
	static int vals[5000];
	for (int i = 0; i < 5000; i++) {
		int n = snprintf(key, sizeof(key), "vin%d", i);
		cr_assert_eq(rmq_strmap_put(&m, (const uint8_t *)key, (size_t)n, &vals[i]), 0);
	}
	const uint8_t bin[3] = {0, 1, 0};
	cr_assert_eq(rmq_strmap_put(&m, bin, 3, &vals[0]), 0);
	cr_assert_eq(rmq_strmap_put(&m, (const uint8_t *)"", 0, &vals[1]), 0);
	for (int i = 0; i < 5000; i++) {
		int n = snprintf(key, sizeof(key), "vin%d", i);
		cr_assert_eq(rmq_strmap_get(&m, (const uint8_t *)key, (size_t)n), &vals[i]);
	}
	cr_assert_eq(rmq_strmap_get(&m, bin, 3), &vals[0]);
	cr_assert_null(rmq_strmap_get(&m, bin, 2));
	cr_assert_eq(rmq_strmap_get(&m, (const uint8_t *)"", 0), &vals[1]);
	int seen = 0;
	rmq_strmap_each(&m, count, &seen);
	cr_assert_eq(seen, 5002);
	rmq_strmap_destroy(&m);
}
