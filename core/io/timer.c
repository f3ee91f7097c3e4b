/* Hashed timer wheel: O(1) arm/disarm, advance walks only the slots of elapsed ticks.
 * Owned by one reactor; only that thread calls it. */
#include "io/timer.h"

#include <stddef.h>

void rmq_wheel_init(struct rmq_wheel *w, uint64_t now_ms, uint32_t tick_ms)
{
	for (uint32_t i = 0; i < RMQ_WHEEL_SLOTS; i++)
		w->slots[i].next = w->slots[i].prev = &w->slots[i];
	w->tick_ms = tick_ms ? tick_ms : 1;
	w->tick = now_ms / w->tick_ms;
	w->armed = 0;
}

static void link_slot(struct rmq_wheel *w, struct rmq_timer *t)
{
	struct rmq_timer *head = &w->slots[t->due_tick % RMQ_WHEEL_SLOTS];
	t->next = head->next;
	t->prev = head;
	head->next->prev = t;
	head->next = t;
}

void rmq_wheel_del(struct rmq_wheel *w, struct rmq_timer *t)
{
	if (!t->next)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = NULL;
	w->armed--;
}

void rmq_wheel_add(struct rmq_wheel *w, struct rmq_timer *t, uint64_t due_ms)
{
	rmq_wheel_del(w, t);
	/* Round up so a timer never fires early; never schedule into an already processed tick. */
	uint64_t due = (due_ms + w->tick_ms - 1) / w->tick_ms;
	t->due_tick = due > w->tick ? due : w->tick + 1;
	link_slot(w, t);
	w->armed++;
}

int rmq_wheel_advance(struct rmq_wheel *w, uint64_t now_ms, rmq_timer_fn fn, void *ud)
{
	uint64_t target = now_ms / w->tick_ms;
	int fired = 0;
	if (target <= w->tick)
		return 0;
	/* After a long stall one pass over every slot sees every timer. */
	uint64_t from = target - w->tick > RMQ_WHEEL_SLOTS ? target - RMQ_WHEEL_SLOTS + 1 : w->tick + 1;
	w->tick = target;
	for (uint64_t tk = from; tk <= target; tk++) {
		struct rmq_timer *head = &w->slots[tk % RMQ_WHEEL_SLOTS];
		/* Detach the slot first: callbacks may re-arm into this very slot. */
		struct rmq_timer *t = head->next;
		head->next = head->prev = head;
		while (t != head) {
			struct rmq_timer *next = t->next;
			if (t->due_tick <= target) {
				t->next = t->prev = NULL;
				w->armed--;
				fired++;
				fn(ud, t);
			} else {
				link_slot(w, t);
			}
			t = next;
		}
	}
	return fired;
}
