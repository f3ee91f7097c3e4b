/* Topic name and topic filter rules: wildcards, $share/{group}/{filter}, length and level limits.
 * Pure functions, callable from any thread. */
#include "internal.h"

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
#define LOWS 0x7F7F7F7F7F7F7F7Full
#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7u

static inline uint64_t load64(const uint8_t *s)
{
	uint64_t w;
	memcpy(&w, s, sizeof w);
	return w;
}

/* Nonzero when some byte of w is zero (no false negatives; used only as a yes/no). */
static inline uint64_t has_zero(uint64_t w)
{
	return (w - ONES) & ~w & HIGHS;
}

/* Exactly one 0x80 per byte of w equal to c, for counting. */
static inline uint64_t eq_mask(uint64_t w, uint8_t c)
{
	uint64_t x = w ^ (ONES * c);
	return ~(((x & LOWS) + LOWS) | x | LOWS);
}

int topic_name_validate(const uint8_t *s, size_t len)
{
	if (len == 0 || len > RMQ_MAX_TOPIC_LEN)
		return RMQ_E_TOPIC_NAME; /* [MQTT-4.7.3-1] at least one character */
	size_t i = 0, slashes = 0;
	/* Fast path: 8 ASCII bytes with no NUL, '+' or '#'. */
	while (len - i >= 8) {
		uint64_t w = load64(s + i);
		if ((w | has_zero(w) | has_zero(w ^ (ONES * '+')) | has_zero(w ^ (ONES * '#'))) & HIGHS)
			break;
		slashes += (size_t)__builtin_popcountll(eq_mask(w, '/'));
		i += 8;
	}
	while (i < len) {
		uint8_t c = s[i];
		if (c == 0)
			return RMQ_E_UTF8; /* [MQTT-1.5.4-2] */
		if (c == '+' || c == '#')
			return RMQ_E_TOPIC_NAME; /* [MQTT-3.3.2-2] no wildcards in a topic name */
		if (c < 0x80) {
			slashes += c == '/';
			i++;
			continue;
		}
		/* Non-ASCII: hand the rest to the full validator, then finish the wildcard scan. */
		if (!rmq_utf8_valid_inline(s + i, len - i))
			return RMQ_E_UTF8;
		for (; i < len; i++) {
			if (s[i] == '+' || s[i] == '#')
				return RMQ_E_TOPIC_NAME;
			slashes += s[i] == '/';
		}
	}
	if (slashes + 1 > RMQ_MAX_TOPIC_LEVELS)
		return RMQ_E_TOPIC_NAME;
	return RMQ_OK;
}

bool topic_is_shared(const uint8_t *s, size_t len)
{
	return len >= SHARE_PREFIX_LEN && memcmp(s, SHARE_PREFIX, SHARE_PREFIX_LEN) == 0;
}

/* Wildcard placement and level count of a plain (non-shared) filter. */
static int filter_levels_check(const uint8_t *s, size_t len)
{
	if (len == 0)
		return RMQ_E_TOPIC_FILTER; /* [MQTT-4.7.3-1] */
	size_t level_start = 0, levels = 1;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];
		if (c == '/') {
			levels++;
			level_start = i + 1;
		} else if (c == '+') {
			/* [MQTT-4.7.1-2] '+' occupies an entire level */
			if (i != level_start || (i + 1 < len && s[i + 1] != '/'))
				return RMQ_E_TOPIC_FILTER;
		} else if (c == '#') {
			/* [MQTT-4.7.1-1] '#' alone in the last level */
			if (i != level_start || i + 1 != len)
				return RMQ_E_TOPIC_FILTER;
		}
	}
	return levels > RMQ_MAX_TOPIC_LEVELS ? RMQ_E_TOPIC_FILTER : RMQ_OK;
}

int topic_filter_check_utf8ok(const uint8_t *s, size_t len)
{
	if (len == 0 || len > RMQ_MAX_TOPIC_LEN)
		return RMQ_E_TOPIC_FILTER;
	if (!topic_is_shared(s, len))
		return filter_levels_check(s, len);
	/* [MQTT-4.8.2-1/2] $share/{ShareName}/{filter}: ShareName non-empty, no wildcards, no '/' */
	const uint8_t *group = s + SHARE_PREFIX_LEN;
	size_t rest = len - SHARE_PREFIX_LEN;
	const uint8_t *slash = memchr(group, '/', rest);
	if (!slash || slash == group)
		return RMQ_E_TOPIC_FILTER;
	for (const uint8_t *g = group; g < slash; g++)
		if (*g == '+' || *g == '#')
			return RMQ_E_TOPIC_FILTER;
	const uint8_t *filter = slash + 1;
	return filter_levels_check(filter, (size_t)(s + len - filter));
}

int rmq_proto_topic_name_check(const uint8_t *s, size_t len)
{
	return topic_name_validate(s, len);
}

int rmq_proto_topic_filter_check(const uint8_t *s, size_t len)
{
	if (len == 0 || len > RMQ_MAX_TOPIC_LEN || !rmq_utf8_valid_inline(s, len))
		return RMQ_E_TOPIC_FILTER;
	return topic_filter_check_utf8ok(s, len);
}
