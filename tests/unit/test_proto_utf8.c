/* UTF-8 validation [MQTT-1.5.4]: overlong forms, surrogates, U+0000, > U+10FFFF, stray and truncated
 * sequences fail, in and out of the ASCII fast path. Test-only; single-threaded. */
#include "test_proto_helpers.h"

static bool ok(const char *s, size_t n)
{
	return rmq_proto_utf8_valid((const uint8_t *)s, n);
}
#define OK(lit) ok(lit, sizeof(lit) - 1)

Test(proto_utf8, valid)
{
	cr_assert(OK(""));
	cr_assert(OK("plain ascii topic/with/levels"));
	cr_assert(OK("\x7F"));
	cr_assert(OK("\xC2\x80"));              /* U+0080 */
	cr_assert(OK("\xDF\xBF"));              /* U+07FF */
	cr_assert(OK("\xE0\xA0\x80"));          /* U+0800 */
	cr_assert(OK("\xED\x9F\xBF"));          /* U+D7FF, just below the surrogates */
	cr_assert(OK("\xEE\x80\x80"));          /* U+E000, just above */
	cr_assert(OK("\xEF\xBF\xBF"));          /* U+FFFF (noncharacter: allowed, SHOULD NOT) */
	cr_assert(OK("\xF0\x90\x80\x80"));      /* U+10000 */
	cr_assert(OK("\xF4\x8F\xBF\xBF"));      /* U+10FFFF */
	cr_assert(OK("A\xF0\xAA\x9B\x94"));     /* MQTT 5 1.5.4 example: U+2A6D4 */
	cr_assert(OK("caf\xC3\xA9/\xE8\xBB\x8A/\xF0\x9F\x9A\x97 long enough for the word loop"));
}

Test(proto_utf8, invalid)
{
	cr_assert_not(OK("\x00"), "U+0000 [MQTT-1.5.4-2]");
	cr_assert_not(OK("abc\x00"));
	cr_assert_not(OK("\xC0\x80"), "overlong NUL");
	cr_assert_not(OK("\xC1\xBF"), "overlong");
	cr_assert_not(OK("\xE0\x80\x80"), "overlong 3-byte");
	cr_assert_not(OK("\xE0\x9F\xBF"), "overlong 3-byte");
	cr_assert_not(OK("\xF0\x80\x80\x80"), "overlong 4-byte");
	cr_assert_not(OK("\xF0\x8F\xBF\xBF"), "overlong 4-byte");
	cr_assert_not(OK("\xED\xA0\x80"), "U+D800 surrogate [MQTT-1.5.4-1]");
	cr_assert_not(OK("\xED\xBF\xBF"), "U+DFFF surrogate");
	cr_assert_not(OK("\xF4\x90\x80\x80"), "U+110000");
	cr_assert_not(OK("\xF5\x80\x80\x80"));
	cr_assert_not(OK("\xFF"));
	cr_assert_not(OK("\x80"), "stray continuation");
	cr_assert_not(OK("\xBF"));
	cr_assert_not(OK("\xC3"), "truncated 2-byte");
	cr_assert_not(OK("\xE8\xBB"), "truncated 3-byte");
	cr_assert_not(OK("\xF0\x9F\x9A"), "truncated 4-byte");
	cr_assert_not(OK("\xC3\x41"), "bad continuation");
	cr_assert_not(OK("\xE8\x41\x8A"));
	cr_assert_not(OK("\xF0\x9F\x41\x97"));
	cr_assert_not(OK("\xF0\x9F\x9A\x41"));
}

/* A bad byte at every position of a long ASCII string: the 8-byte fast path must not skip it. */
Test(proto_utf8, bad_byte_at_every_offset)
{
	const uint8_t bad[] = {0x00, 0x80, 0xC0, 0xFF, 0xED};
	char s[40];
	for (size_t b = 0; b < sizeof bad; b++) {
		for (size_t i = 0; i < sizeof s; i++) {
			memset(s, 'a', sizeof s);
			s[i] = (char)bad[b];
			cr_assert_not(ok(s, sizeof s), "byte 0x%02x at %zu", bad[b], i);
			cr_assert_not(ok(s, i + 1), "byte 0x%02x at the end (%zu)", bad[b], i);
		}
	}
	memset(s, 'a', sizeof s);
	cr_assert(ok(s, sizeof s));
}

Test(proto_utf8, payload_format_check)
{
	struct rmq_publish p = {.payload = S("caf\xC3\xA9\x00ok")};
	cr_assert_eq(rmq_proto_check_payload_format(&p), RMQ_OK, "no indicator: anything goes");
	p.props.present = RMQ_PBIT(RMQ_PROP_PAYLOAD_FORMAT);
	p.props.payload_format = 1;
	cr_assert_eq(rmq_proto_check_payload_format(&p), RMQ_OK, "RFC 3629 allows U+0000 in a payload");
	p.payload = S("\xC3(");
	cr_assert_eq(rmq_proto_check_payload_format(&p), RMQ_E_PAYLOAD_FORMAT);
	cr_assert_eq(rmq_proto_err_reason(RMQ_E_PAYLOAD_FORMAT), RMQ_RC_PAYLOAD_FORMAT_INVALID);
	p.payload = S("\xED\xA0\x80 surrogate in a long payload");
	cr_assert_eq(rmq_proto_check_payload_format(&p), RMQ_E_PAYLOAD_FORMAT);
	p.props.payload_format = 0;
	cr_assert_eq(rmq_proto_check_payload_format(&p), RMQ_OK);
}
