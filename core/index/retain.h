/* Retained-message store: topic name -> one opaque value (the retained message), matched by topic filter
 * when a subscription is made. Owned by one reactor thread; values are owned and released by the caller. */
#ifndef RMQ_RETAIN_H
#define RMQ_RETAIN_H

#include <stddef.h>
#include <stdint.h>

struct rmq_retain;

typedef void (*rmq_retain_match_fn)(void *ud, const uint8_t *topic, size_t len, void *value);

struct rmq_retain *rmq_retain_new(void);
/* Frees the tree; calls release(value) for every value still held (release may be NULL). */
void rmq_retain_free(struct rmq_retain *r, void (*release)(void *value));

/* Sets (value != NULL) or clears (value == NULL) the retained message of `topic`. *old receives the
 * previous value (or NULL) for the caller to release. Returns 0 or -ENOMEM (then nothing changed). */
int rmq_retain_set(struct rmq_retain *r, const uint8_t *topic, size_t len, void *value, void **old);
void *rmq_retain_get(const struct rmq_retain *r, const uint8_t *topic, size_t len);
/* Calls cb for every retained topic matching `filter` (validated by proto); '$' topics are not matched by a
 * leading wildcard. The topic passed to cb is a temporary buffer valid during the call; cb must not
 * modify the store. */
void rmq_retain_match(struct rmq_retain *r, const uint8_t *filter, size_t len, rmq_retain_match_fn cb,
		      void *ud);
size_t rmq_retain_count(const struct rmq_retain *r);
/* Calls cb for every retained topic, '$' topics included (the state log's snapshot). Same rules for cb. */
void rmq_retain_each(struct rmq_retain *r, rmq_retain_match_fn cb, void *ud);

#endif
