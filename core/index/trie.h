/* Subscription trie: topic filter -> subscribers, matched against topic names on every publish.
 * One per reactor core (its local subscribers) and one per core as the replicated route table; single-threaded. */
#ifndef RMQ_TRIE_H
#define RMQ_TRIE_H

#include <stddef.h>
#include <stdint.h>

/* Filters deeper than this are refused (-E2BIG); it also bounds the matcher's recursion. */
#define RMQ_TRIE_MAX_LEVELS 128

struct rmq_trie;

typedef void (*rmq_trie_match_fn)(void *ud, void *sub, uint8_t options, uint32_t sub_id);

struct rmq_trie *rmq_trie_new(void);
void rmq_trie_free(struct rmq_trie *t);

/* Adds `sub` under `filter` (already validated by proto; "$share/..." is the caller's business).
 * Returns 1 if the (filter, sub) pair is new, 0 if it existed (options and sub_id replaced), -ENOMEM, -E2BIG. */
int rmq_trie_add(struct rmq_trie *t, const uint8_t *filter, size_t len, void *sub, uint8_t options,
		 uint32_t sub_id);
/* Removes (filter, sub). Returns 0 or -ENOENT. Empty branches are pruned. */
int rmq_trie_remove(struct rmq_trie *t, const uint8_t *filter, size_t len, void *sub);
/* Number of subscribers on exactly this filter (0 when absent): tells when a route appears or goes. */
uint32_t rmq_trie_filter_subs(const struct rmq_trie *t, const uint8_t *filter, size_t len);
/* Calls cb once per (filter, sub) pair whose filter matches `topic`; a sub on several matching filters is
 * reported once per filter (the caller merges). Topics starting with '$' do not match a leading + or #
 * [MQTT-4.7.2-1]. */
void rmq_trie_match(const struct rmq_trie *t, const uint8_t *topic, size_t len, rmq_trie_match_fn cb, void *ud);
/* Number of (filter, sub) pairs held. */
size_t rmq_trie_count(const struct rmq_trie *t);

#endif
