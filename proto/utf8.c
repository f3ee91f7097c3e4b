/* UTF-8 validation as MQTT requires: well-formed, no U+0000, no surrogates, no overlong forms.
 * Pure functions, callable from any thread. */
#include "internal.h"

/* Validates one multi-byte sequence starting at s[i] (s[i] >= 0x80); returns its length or 0. */
static size_t utf8_seq(const uint8_t *s, size_t i, size_t len)
{
	uint8_t c = s[i];
	size_t n;
	uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* U+D800..U+DFFF surrogates [MQTT-1.5.4-1] */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		return 0; /* continuation byte, C0/C1 overlong, F5..FF */
	}
	if (len - i < n || s[i + 1] < lo || s[i + 1] > hi)
		return 0;
	for (size_t k = 2; k < n; k++)
		if ((s[i + k] & 0xC0) != 0x80)
			return 0;
	return n;
}

/* allow_nul: payloads with format indicator 1 follow RFC 3629, where U+0000 is well-formed;
 * MQTT strings forbid it. */
static inline bool utf8_valid(const uint8_t *s, size_t len, bool allow_nul)
{
	size_t i = 0;
	while (i < len) {
		if (len - i >= 8) {
			uint64_t w = load64(s + i);
			if (allow_nul ? !(w & SWAR_HIGHS) : ascii8_nonzero(w)) {
				i += 8;
				continue;
			}
		}
		uint8_t c = s[i];
		if (c == 0 && !allow_nul)
			return false; /* U+0000 [MQTT-1.5.4-2] */
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n = utf8_seq(s, i, len);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

bool rmq_utf8_valid_inline(const uint8_t *s, size_t len)
{
	return utf8_valid(s, len, false);
}

bool rmq_utf8_valid_payload(const uint8_t *s, size_t len)
{
	return utf8_valid(s, len, true);
}

bool rmq_proto_utf8_valid(const uint8_t *s, size_t len)
{
	return utf8_valid(s, len, false);
}
