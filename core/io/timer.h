/* Hashed timer wheel with intrusive timers (keep-alive, later session expiry and will delay).
 * Each reactor owns one wheel; only the owning reactor thread calls these. */
#ifndef RMQ_CORE_TIMER_H
#define RMQ_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

/* 1024 slots x 100 ms covers 102 s per turn: a keep-alive of 1.5 x 60 s fires in the first turn;
 * longer timers simply stay in their slot for more turns. */
#define RMQ_WHEEL_SLOTS 1024u

struct rmq_timer {
	struct rmq_timer *next, *prev;  /* NULL when not armed */
	uint64_t due_tick;
	uint8_t kind;                   /* the owner's tag: which struct embeds this timer */
};

struct rmq_wheel {
	struct rmq_timer slots[RMQ_WHEEL_SLOTS];  /* list heads (sentinels) */
	uint64_t tick;                            /* last tick processed */
	uint32_t tick_ms;
	uint32_t armed;
};

typedef void (*rmq_timer_fn)(void *ud, struct rmq_timer *t);

void rmq_wheel_init(struct rmq_wheel *w, uint64_t now_ms, uint32_t tick_ms);
/* Arms `t` (re-arms when already armed) to fire at the first advance with now_ms >= due_ms. */
void rmq_wheel_add(struct rmq_wheel *w, struct rmq_timer *t, uint64_t due_ms);
void rmq_wheel_del(struct rmq_wheel *w, struct rmq_timer *t);
static inline bool rmq_timer_armed(const struct rmq_timer *t) { return t->next != 0; }
/* Fires (unlinks, then calls fn) every timer due by now_ms; fn may re-arm or free its timer.
 * Returns how many fired. */
int rmq_wheel_advance(struct rmq_wheel *w, uint64_t now_ms, rmq_timer_fn fn, void *ud);

#endif
