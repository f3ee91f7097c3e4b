/* Unit tests for core/io/timer.c: never early, fires once, re-arm and delete, long timers over several
 * turns, a stall longer than a turn, and callbacks that re-arm. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "io/timer.h"

struct rec {
	int fired[16];
	int n;
	struct rmq_timer *base;
	struct rmq_wheel *w;
	int rearm_idx;
	uint64_t rearm_at;
};

static void on_fire(void *ud, struct rmq_timer *t)
{
	struct rec *r = ud;
	int idx = (int)(t - r->base);
	r->fired[r->n++] = idx;
	if (idx == r->rearm_idx) {
		r->rearm_idx = -1;
		rmq_wheel_add(r->w, t, r->rearm_at);
	}
}

static struct rmq_wheel *new_wheel(uint64_t now)
{
	struct rmq_wheel *w = malloc(sizeof(*w));
	rmq_wheel_init(w, now, 100);
	return w;
}

Test(core_timer, never_early_and_once)
{
	struct rmq_wheel *w = new_wheel(1000);
	struct rmq_timer t[2] = {0};
	struct rec r = {.base = t, .w = w, .rearm_idx = -1};
	rmq_wheel_add(w, &t[0], 1250);
	cr_assert(rmq_timer_armed(&t[0]));
	cr_assert_eq(rmq_wheel_advance(w, 1100, on_fire, &r), 0);
	cr_assert_eq(rmq_wheel_advance(w, 1249, on_fire, &r), 0, "must not fire before its due time");
	cr_assert_eq(rmq_wheel_advance(w, 1300, on_fire, &r), 1);
	cr_assert_eq(r.fired[0], 0);
	cr_assert(!rmq_timer_armed(&t[0]));
	cr_assert_eq(rmq_wheel_advance(w, 5000, on_fire, &r), 0, "fires once");
	cr_assert_eq(w->armed, 0);
	free(w);
}

Test(core_timer, delete_and_rearm)
{
	struct rmq_wheel *w = new_wheel(0);
	struct rmq_timer t[3] = {0};
	struct rec r = {.base = t, .w = w, .rearm_idx = -1};
	rmq_wheel_add(w, &t[0], 500);
	rmq_wheel_add(w, &t[1], 500);
	rmq_wheel_add(w, &t[2], 500);
	rmq_wheel_del(w, &t[1]);
	rmq_wheel_del(w, &t[1]);  /* deleting twice is harmless */
	rmq_wheel_add(w, &t[2], 900);  /* re-arm moves it */
	cr_assert_eq(rmq_wheel_advance(w, 600, on_fire, &r), 1);
	cr_assert_eq(r.fired[0], 0);
	cr_assert_eq(rmq_wheel_advance(w, 900, on_fire, &r), 1);
	cr_assert_eq(r.fired[1], 2);
	cr_assert_eq(w->armed, 0);
	free(w);
}

Test(core_timer, longer_than_one_turn)
{
	struct rmq_wheel *w = new_wheel(0);
	struct rmq_timer t[1] = {0};
	struct rec r = {.base = t, .w = w, .rearm_idx = -1};
	uint64_t due = (uint64_t)RMQ_WHEEL_SLOTS * 100 * 2 + 50;  /* two and a bit turns */
	rmq_wheel_add(w, &t[0], due);
	for (uint64_t now = 100; now < due; now += 100)
		cr_assert_eq(rmq_wheel_advance(w, now, on_fire, &r), 0, "early at %llu", (unsigned long long)now);
	cr_assert_eq(rmq_wheel_advance(w, due + 100, on_fire, &r), 1);
	free(w);
}

Test(core_timer, stall_longer_than_a_turn_fires_everything_due)
{
	struct rmq_wheel *w = new_wheel(0);
	struct rmq_timer t[3] = {0};
	struct rec r = {.base = t, .w = w, .rearm_idx = -1};
	rmq_wheel_add(w, &t[0], 300);
	rmq_wheel_add(w, &t[1], 70000);
	rmq_wheel_add(w, &t[2], 10000000);  /* far future: stays */
	cr_assert_eq(rmq_wheel_advance(w, 500000, on_fire, &r), 2);
	cr_assert_eq(w->armed, 1);
	free(w);
}

Test(core_timer, callback_rearms_into_same_slot)
{
	struct rmq_wheel *w = new_wheel(0);
	struct rmq_timer t[2] = {0};
	struct rec r = {.base = t, .w = w, .rearm_idx = 0, .rearm_at = 300 + RMQ_WHEEL_SLOTS * 100};
	rmq_wheel_add(w, &t[0], 300);
	rmq_wheel_add(w, &t[1], 300);
	cr_assert_eq(rmq_wheel_advance(w, 300, on_fire, &r), 2);
	cr_assert(rmq_timer_armed(&t[0]), "re-armed from its own callback");
	cr_assert_eq(rmq_wheel_advance(w, 400, on_fire, &r), 0, "not again in the same turn");
	cr_assert_eq(rmq_wheel_advance(w, 300 + RMQ_WHEEL_SLOTS * 100, on_fire, &r), 1);
	free(w);
}
