/* Topic name and topic filter rules: wildcards, $share/{group}/{filter}, length and level limits.
 * Pure functions, callable from any thread. */
#include "internal.h"


static inline bool has_wildcard(uint64_t w)
{
	return (has_zero(w ^ (SWAR_ONES * '+')) | has_zero(w ^ (SWAR_ONES * '#'))) != 0;
}

/* Levels = '/' count + 1. Only a name of at least RMQ_MAX_TOPIC_LEVELS bytes can exceed the limit,
 * so short names (the hot path) skip the count. */
static bool too_many_levels(const uint8_t *s, size_t len)
{
	if (len < RMQ_MAX_TOPIC_LEVELS)
		return false;
	size_t slashes = 0;
	for (size_t i = 0; i < len; i++)
		slashes += s[i] == '/';
	return slashes + 1 > RMQ_MAX_TOPIC_LEVELS;
}

int rmq_proto_topic_name_validate(const uint8_t *s, size_t len)
{
	if (len == 0 || len > RMQ_MAX_TOPIC_LEN)
		return RMQ_E_TOPIC_NAME; /* [MQTT-4.7.3-1] at least one character */
	size_t i = 0;
	/* Fast path: 8 ASCII bytes with no NUL, '+' or '#'. */
	while (len - i >= 8) {
		uint64_t w = load64(s + i);
		if (!ascii8_nonzero(w) || has_wildcard(w))
			break;
		i += 8;
	}
	while (i < len) {
		uint8_t c = s[i];
		if (c == 0)
			return RMQ_E_UTF8; /* [MQTT-1.5.4-2] */
		if (c == '+' || c == '#')
			return RMQ_E_TOPIC_NAME; /* [MQTT-3.3.2-2] no wildcards in a topic name */
		if (c < 0x80) {
			i++;
			continue;
		}
		/* Non-ASCII: hand the rest to the full validator, then finish the wildcard scan. */
		if (!rmq_utf8_valid_inline(s + i, len - i))
			return RMQ_E_UTF8;
		for (; i < len; i++)
			if (s[i] == '+' || s[i] == '#')
				return RMQ_E_TOPIC_NAME;
	}
	return too_many_levels(s, len) ? RMQ_E_TOPIC_NAME : RMQ_OK;
}

/* Wildcard placement of a plain (non-shared) filter. Words without a wildcard are skipped 8 bytes at a
 * time; each wildcard is checked against its neighbours. The level count is not judged here: a SUBSCRIBE
 * with a deep filter is well formed, and the broker answers that one filter with a SUBACK refusal
 * ([MQTT-3.8.4-1]) instead of treating the whole packet as malformed. */
static int filter_levels_check(const uint8_t *s, size_t len)
{
	if (len == 0)
		return RMQ_E_TOPIC_FILTER; /* [MQTT-4.7.3-1] */
	size_t i = 0;
	while (i < len) {
		if (len - i >= 8 && !has_wildcard(load64(s + i))) {
			i += 8;
			continue;
		}
		uint8_t c = s[i];
		bool level_start = i == 0 || s[i - 1] == '/';
		/* [MQTT-4.7.1-2] '+' occupies an entire level */
		if (c == '+' && (!level_start || (i + 1 < len && s[i + 1] != '/')))
			return RMQ_E_TOPIC_FILTER;
		/* [MQTT-4.7.1-1] '#' alone in the last level */
		if (c == '#' && (!level_start || i + 1 != len))
			return RMQ_E_TOPIC_FILTER;
		i++;
	}
	return RMQ_OK;
}

int rmq_proto_topic_filter_check_utf8ok(const uint8_t *s, size_t len)
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
	return rmq_proto_topic_name_validate(s, len);
}

int rmq_proto_topic_filter_check(const uint8_t *s, size_t len)
{
	if (len == 0 || len > RMQ_MAX_TOPIC_LEN || !rmq_utf8_valid_inline(s, len))
		return RMQ_E_TOPIC_FILTER;
	int rc = rmq_proto_topic_filter_check_utf8ok(s, len);
	return rc == RMQ_OK && too_many_levels(s, len) ? RMQ_E_TOPIC_FILTER : rc;
}
