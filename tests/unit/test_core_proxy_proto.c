/* Unit tests for core/io/proxy_proto.c: PROXY v1/v2 headers that HAProxy sends, TLVs, byte-at-a-time input,
 * every malformed case with its error code, and random truncations/mutations against the prefix rules. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/proxy_proto.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
/* the start of an MQTT CONNECT, as it follows the header in the same read */
static const uint8_t MQTT_AFTER[] = {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T'};

struct buf {
	uint8_t b[4096];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	cr_assert_leq(b->n + n, sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void put_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(b, x, 2);
}

/* v2 header: signature, ver/cmd, fam, length, then `body` (addresses + TLVs) */
static void v2(struct buf *b, uint8_t vercmd, uint8_t fam, const void *body, size_t blen)
{
	b->n = 0;
	put(b, SIG, sizeof(SIG));
	put(b, &vercmd, 1);
	put(b, &fam, 1);
	put_u16(b, (uint16_t)blen);
	if (blen)
		put(b, body, blen);
}

static void v2_tcp4(struct buf *b, const char *src, const char *dst, uint16_t sp, uint16_t dp, const void *tlv,
		    size_t tlen)
{
	uint8_t a[12 + 512];
	inet_pton(AF_INET, src, a);
	inet_pton(AF_INET, dst, a + 4);
	a[8] = (uint8_t)(sp >> 8), a[9] = (uint8_t)sp, a[10] = (uint8_t)(dp >> 8), a[11] = (uint8_t)dp;
	cr_assert_leq(tlen, 512);
	if (tlen)
		memcpy(a + 12, tlv, tlen);
	v2(b, 0x21, 0x11, a, 12 + tlen);
}

static void v2_tcp6(struct buf *b, const char *src, const char *dst, uint16_t sp, uint16_t dp)
{
	uint8_t a[36];
	inet_pton(AF_INET6, src, a);
	inet_pton(AF_INET6, dst, a + 16);
	a[32] = (uint8_t)(sp >> 8), a[33] = (uint8_t)sp, a[34] = (uint8_t)(dp >> 8), a[35] = (uint8_t)dp;
	v2(b, 0x21, 0x21, a, sizeof(a));
}

static void text(struct buf *b, const char *s)
{
	b->n = 0;
	put(b, s, strlen(s));
}

static int parse(const struct buf *b, struct rmq_proxy_hdr *h)
{
	memset(h, 0xA5, sizeof(*h));  /* no field may be left over from before */
	return rmq_proxy_parse(b->b, b->n, h);
}

static void assert_addr(const union rmq_proxy_sa *a, const char *want)
{
	char s[64];
	rmq_proxy_addr_str(a, s, sizeof(s));
	cr_assert_str_eq(s, want);
}

/* A valid header followed by MQTT bytes: every shorter prefix wants more, the full header parses to its own
 * length whatever follows it, and the result never depends on how the bytes were split. */
static void assert_prefixes(const struct buf *hdr)
{
	struct buf b = *hdr;
	put(&b, MQTT_AFTER, sizeof(MQTT_AFTER));
	struct rmq_proxy_hdr h;
	for (size_t k = 0; k < hdr->n; k++)
		cr_assert_eq(rmq_proxy_parse(b.b, k, &h), 0, "prefix of %zu/%zu bytes must want more", k, hdr->n);
	for (size_t k = hdr->n; k <= b.n; k++)
		cr_assert_eq(rmq_proxy_parse(b.b, k, &h), (int)hdr->n, "with %zu bytes", k);
}

/* ---- v1 ----------------------------------------------------------------------------------- */

Test(core_proxy_proto, v1_tcp4)
{
	struct buf b;
	struct rmq_proxy_hdr h;
	text(&b, "PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\r\n");
	cr_assert_eq(parse(&b, &h), (int)b.n);
	cr_assert_eq(h.version, 1);
	cr_assert(h.has_addr);
	cr_assert_eq(h.src.sa.sa_family, AF_INET);
	assert_addr(&h.src, "192.0.2.7:56324");
	assert_addr(&h.dst, "198.51.100.1:1883");
	assert_prefixes(&b);
}

Test(core_proxy_proto, v1_tcp6)
{
	struct buf b;
	struct rmq_proxy_hdr h;
	text(&b, "PROXY TCP6 2001:db8::7 ::1 0 65535\r\n");
	cr_assert_eq(parse(&b, &h), (int)b.n);
	cr_assert(h.has_addr);
	cr_assert_eq(h.src.sa.sa_family, AF_INET6);
	assert_addr(&h.src, "[2001:db8::7]:0");
	assert_addr(&h.dst, "[::1]:65535");
	assert_prefixes(&b);
}

Test(core_proxy_proto, v1_unknown_has_no_address)
{
	struct buf b;
	struct rmq_proxy_hdr h;
	text(&b, "PROXY UNKNOWN\r\n");
	cr_assert_eq(parse(&b, &h), 15);
	cr_assert_not(h.has_addr);
	assert_prefixes(&b);
	/* whatever follows UNKNOWN is ignored, as the spec asks of receivers */
	text(&b, "PROXY UNKNOWN ffff:f::1 whatever 1 2\r\n");
	cr_assert_eq(parse(&b, &h), (int)b.n);
	cr_assert_not(h.has_addr);
}

Test(core_proxy_proto, v1_longest_line_is_107_bytes)
{
	/* the spec's worst case: "PROXY UNKNOWN" + two 39-char addresses + two ports = 107 */
	const char *ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
	char line[256];
	int n = snprintf(line, sizeof(line), "PROXY UNKNOWN %s %s 65535 65535\r\n", ip, ip);
	cr_assert_eq(n, RMQ_PROXY_V1_MAX);
	struct buf b;
	struct rmq_proxy_hdr h;
	text(&b, line);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_V1_MAX);
	/* one byte more: the CRLF ends at 108 */
	snprintf(line, sizeof(line), "PROXY UNKNOWN %s %s 65535 655355\r\n", ip, ip);
	text(&b, line);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V1_TOO_LONG);
	/* 107 bytes without any CR: refused without waiting for more */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY ", 6);
	b.n = 0;
	put(&b, line, RMQ_PROXY_V1_MAX - 1);
	cr_assert_eq(parse(&b, &h), 0, "106 bytes may still end in CRLF");
	put(&b, "x", 1);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V1_TOO_LONG);
	/* the CR at byte 107 (index 106) cannot be followed by its LF within the bound */
	b.n = RMQ_PROXY_V1_MAX - 1;
	put(&b, "\r", 1);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V1_TOO_LONG);
}

Test(core_proxy_proto, v1_malformed)
{
	static const struct {
		const char *s;
		int rc;
	} cases[] = {
		{"PROXY\r\n", RMQ_PROXY_E_SIGNATURE},                 /* no space after PROXY */
		{"PROXY \r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXY TCP4\r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", RMQ_PROXY_E_V1_SYNTAX},      /* four fields, trailing space */
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", RMQ_PROXY_E_V1_SYNTAX},   /* six fields */
		{"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_SYNTAX},    /* double space */
		{"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", RMQ_PROXY_E_V1_SYNTAX},    /* trailing space */
		{"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_SYNTAX},     /* case matters */
		{"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXY UNKNOWNX\r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_ADDR},
		{"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_ADDR},
		{"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", RMQ_PROXY_E_V1_ADDR},            /* family mismatch */
		{"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", RMQ_PROXY_E_V1_ADDR},
		{"PROXY TCP6 ::1 2001:db8:::1 1 2\r\n", RMQ_PROXY_E_V1_ADDR},
		{"PROXY TCP4 host.example 5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_ADDR},
		{"PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0 ::1 1 2\r\n", RMQ_PROXY_E_V1_ADDR}, /* nine groups */
		{"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", RMQ_PROXY_E_V1_PORT},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", RMQ_PROXY_E_V1_PORT},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", RMQ_PROXY_E_V1_PORT},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", RMQ_PROXY_E_V1_PORT},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", RMQ_PROXY_E_V1_PORT},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 12a 2\r\n", RMQ_PROXY_E_V1_PORT},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", RMQ_PROXY_E_V1_PORT},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", RMQ_PROXY_E_V1_SYNTAX},      /* LF without CR */
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", RMQ_PROXY_E_V1_SYNTAX},     /* CR without LF */
		{"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", RMQ_PROXY_E_V1_SYNTAX},   /* control character */
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1\x7f 2\r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", RMQ_PROXY_E_V1_SYNTAX},
		{"PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n", RMQ_PROXY_E_SIGNATURE},
		{"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", RMQ_PROXY_E_SIGNATURE},
		{"GET / HTTP/1.1\r\n", RMQ_PROXY_E_SIGNATURE},
		{"POST / HTTP/1.1\r\n", RMQ_PROXY_E_SIGNATURE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		struct rmq_proxy_hdr h;
		text(&b, cases[i].s);
		int rc = parse(&b, &h);
		cr_assert_eq(rc, cases[i].rc, "case %zu \"%s\": got %d (%s), want %d", i, cases[i].s, rc,
			     rmq_proxy_strerror(rc), cases[i].rc);
		cr_assert_str_neq(rmq_proxy_strerror(rc), "ok");
	}
	/* a NUL inside an address must not cut it short into a valid one */
	struct buf b;
	struct rmq_proxy_hdr h;
	b.n = 0;
	put(&b, "PROXY TCP4 1.2.3.4\0x 5.6.7.8 1 2\r\n", 34);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V1_SYNTAX);
}

Test(core_proxy_proto, bad_first_bytes_are_refused_at_once)
{
	struct rmq_proxy_hdr h;
	/* MQTT CONNECT, TLS ClientHello, HTTP: refused on their first byte, no waiting for a timeout */
	static const uint8_t firsts[] = {0x10, 0x16, 'G', 0x00, 0xff, 'p', '\n'};
	for (size_t i = 0; i < sizeof(firsts); i++)
		cr_assert_eq(rmq_proxy_parse(&firsts[i], 1, &h), RMQ_PROXY_E_SIGNATURE, "first byte 0x%02x", firsts[i]);
	cr_assert_eq(rmq_proxy_parse((const uint8_t *)"PR0", 3, &h), RMQ_PROXY_E_SIGNATURE);
	cr_assert_eq(rmq_proxy_parse((const uint8_t *)"", 0, &h), 0, "nothing yet: wait");
	/* each byte of the v2 signature, changed, is caught at that byte */
	for (size_t i = 1; i < sizeof(SIG); i++) {
		uint8_t s[12];
		memcpy(s, SIG, sizeof(s));
		s[i] ^= 0x20;
		cr_assert_eq(rmq_proxy_parse(s, i, &h), 0, "good prefix of %zu", i);
		cr_assert_eq(rmq_proxy_parse(s, i + 1, &h), RMQ_PROXY_E_SIGNATURE, "byte %zu changed", i);
	}
}

/* ---- v2 ----------------------------------------------------------------------------------- */

Test(core_proxy_proto, v2_tcp4)
{
	struct buf b;
	struct rmq_proxy_hdr h;
	v2_tcp4(&b, "203.0.113.9", "10.0.0.2", 40000, 1883, NULL, 0);
	cr_assert_eq(b.n, 28);
	cr_assert_eq(parse(&b, &h), 28);
	cr_assert_eq(h.version, 2);
	cr_assert(h.has_addr);
	cr_assert_eq(h.tlv_len, 0);
	assert_addr(&h.src, "203.0.113.9:40000");
	assert_addr(&h.dst, "10.0.0.2:1883");
	assert_prefixes(&b);
}

Test(core_proxy_proto, v2_tcp6)
{
	struct buf b;
	struct rmq_proxy_hdr h;
	v2_tcp6(&b, "2001:db8:1::42", "fe80::1", 1, 8883);
	cr_assert_eq(parse(&b, &h), 16 + 36);
	cr_assert(h.has_addr);
	cr_assert_eq(h.src.sa.sa_family, AF_INET6);
	assert_addr(&h.src, "[2001:db8:1::42]:1");
	assert_addr(&h.dst, "[fe80::1]:8883");
	assert_prefixes(&b);
}

Test(core_proxy_proto, v2_tlvs_are_skipped)
{
	/* what HAProxy may add: ALPN (0x01), authority (0x02), unique id (0x05), NOOP padding (0x04, empty),
	 * CRC32C (0x03) */
	struct buf t = {.n = 0};
	put(&t, "\x01\x00\x04mqtt", 7);
	put(&t, "\x02\x00\x0f" "car.example.com", 18);
	put(&t, "\x04\x00\x00", 3);
	put(&t, "\x05\x00\x08" "abcdefgh", 11);
	put(&t, "\x03\x00\x04\x01\x02\x03\x04", 7);
	struct buf b;
	struct rmq_proxy_hdr h;
	v2_tcp4(&b, "192.0.2.1", "192.0.2.2", 1000, 1883, t.b, t.n);
	cr_assert_eq(parse(&b, &h), (int)(28 + t.n));
	cr_assert_eq(h.tlv_len, t.n);
	assert_addr(&h.src, "192.0.2.1:1000");
	assert_prefixes(&b);
	/* the last TLV's length runs one byte past the header */
	t.b[t.n - 5] = 5;  /* CRC32C says 5, carries 4 */
	v2_tcp4(&b, "192.0.2.1", "192.0.2.2", 1000, 1883, t.b, t.n);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_TLV);
	/* a TLV header cut short (2 of its 3 bytes) */
	v2_tcp4(&b, "192.0.2.1", "192.0.2.2", 1000, 1883, "\x04\x00", 2);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_TLV);
	v2_tcp4(&b, "192.0.2.1", "192.0.2.2", 1000, 1883, "\x04", 1);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_TLV);
}

Test(core_proxy_proto, v2_local_unspec_unix_keep_the_socket_address)
{
	struct buf b;
	struct rmq_proxy_hdr h;
	/* LOCAL (HAProxy's health checks): the block is skipped unread, family and all */
	v2(&b, 0x20, 0x00, NULL, 0);
	cr_assert_eq(parse(&b, &h), 16);
	cr_assert_not(h.has_addr);
	assert_prefixes(&b);
	v2(&b, 0x20, 0xff, "junk", 4);
	cr_assert_eq(parse(&b, &h), 20, "LOCAL ignores the family byte and the block");
	cr_assert_not(h.has_addr);
	/* PROXY with AF_UNSPEC */
	v2(&b, 0x21, 0x00, "\x01\x02\x03", 3);
	cr_assert_eq(parse(&b, &h), 19);
	cr_assert_not(h.has_addr);
	/* PROXY with AF_UNIX stream: two 108-byte paths, no IP to key anything on */
	uint8_t u[216] = "/run/car.sock";
	v2(&b, 0x21, 0x31, u, sizeof(u));
	cr_assert_eq(parse(&b, &h), 16 + 216);
	cr_assert_not(h.has_addr);
	assert_prefixes(&b);
}

Test(core_proxy_proto, v2_malformed)
{
	struct buf b;
	struct rmq_proxy_hdr h;
	uint8_t zero[64] = {0};
	static const uint8_t bad_versions[] = {0x01, 0x11, 0x31, 0xf1, 0x00};
	for (size_t i = 0; i < sizeof(bad_versions); i++) {
		v2(&b, bad_versions[i], 0x11, zero, 12);
		cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_VERSION, "ver/cmd 0x%02x", bad_versions[i]);
		cr_assert_eq(rmq_proxy_parse(b.b, 13, &h), RMQ_PROXY_E_V2_VERSION, "caught on byte 13");
	}
	for (uint8_t cmd = 2; cmd < 16; cmd++) {
		v2(&b, (uint8_t)(0x20 | cmd), 0x11, zero, 12);
		cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_COMMAND, "command %u", cmd);
	}
	/* families: datagram transports, unspecified transport with a family, unknown families */
	static const uint8_t bad_fams[] = {0x12, 0x22, 0x32, 0x10, 0x20, 0x30, 0x01, 0x02, 0x41, 0x13, 0xff};
	for (size_t i = 0; i < sizeof(bad_fams); i++) {
		v2(&b, 0x21, bad_fams[i], zero, 36);
		cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_FAMILY, "family 0x%02x", bad_fams[i]);
		cr_assert_eq(rmq_proxy_parse(b.b, 14, &h), RMQ_PROXY_E_V2_FAMILY, "caught on byte 14");
	}
	/* address block shorter than the family needs: known as soon as the length arrives */
	v2(&b, 0x21, 0x11, zero, 11);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_SHORT);
	cr_assert_eq(rmq_proxy_parse(b.b, 16, &h), RMQ_PROXY_E_V2_SHORT);
	v2(&b, 0x21, 0x21, zero, 35);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_SHORT);
	v2(&b, 0x21, 0x31, zero, 0);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_SHORT);
	/* announced length beyond the bound: refused from the 16 fixed bytes, nothing more is awaited */
	b.n = 0;
	put(&b, SIG, 12);
	put(&b, "\x21\x11", 2);
	put_u16(&b, RMQ_PROXY_MAX_LEN - 16 + 1);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_TOO_LONG);
	b.n = 14;
	put_u16(&b, 0xffff);
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_E_V2_TOO_LONG);
	/* exactly at the bound is fine (a NOOP TLV pads it) */
	uint8_t big[RMQ_PROXY_MAX_LEN - 16];
	memset(big, 0, sizeof(big));
	size_t pad = sizeof(big) - 12 - 3;
	big[12] = 0x04, big[13] = (uint8_t)(pad >> 8), big[14] = (uint8_t)pad;
	v2(&b, 0x21, 0x11, big, sizeof(big));
	cr_assert_eq(parse(&b, &h), RMQ_PROXY_MAX_LEN);
}

/* ---- properties over random inputs ---------------------------------------------------------- */

/* The parser's contract on any input, checked for every prefix length: once a prefix is refused every
 * longer one is too; once one parses, every longer one gives the same length; a length is never more than
 * the bytes given or the bound; "want more" never comes with RMQ_PROXY_MAX_LEN bytes in hand. */
static void assert_contract(const uint8_t *p, size_t n)
{
	struct rmq_proxy_hdr h;
	int first = 0;
	for (size_t k = 0; k <= n; k++) {
		int rc = rmq_proxy_parse(p, k, &h);
		if (rc > 0) {
			cr_assert_leq((size_t)rc, k);
			cr_assert_leq(rc, RMQ_PROXY_MAX_LEN);
		}
		if (rc == 0)
			cr_assert_lt(k, (size_t)RMQ_PROXY_MAX_LEN);
		if (first == 0)
			first = rc;
		else
			cr_assert(first > 0 ? rc == first : rc < 0, "prefix %zu: %d after %d", k, rc, first);
	}
}

Test(core_proxy_proto, random_truncations_and_mutations)
{
	srandom(1883);
	struct buf seeds[6];
	text(&seeds[0], "PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\r\n");
	text(&seeds[1], "PROXY TCP6 2001:db8::7 ::1 0 65535\r\n");
	text(&seeds[2], "PROXY UNKNOWN\r\n");
	v2_tcp4(&seeds[3], "203.0.113.9", "10.0.0.2", 40000, 1883, "\x05\x00\x02id", 5);
	v2_tcp6(&seeds[4], "2001:db8:1::42", "fe80::1", 1, 8883);
	v2(&seeds[5], 0x20, 0x00, NULL, 0);
	for (int iter = 0; iter < 4000; iter++) {
		struct buf b = seeds[random() % 6];
		put(&b, MQTT_AFTER, sizeof(MQTT_AFTER));
		int flips = (int)(random() % 4);
		for (int f = 0; f < flips; f++)
			b.b[random() % b.n] = (uint8_t)random();
		size_t cut = (size_t)random() % (b.n + 1);
		assert_contract(b.b, cut);
	}
	/* unmutated seeds, cut anywhere: a cut inside the header always wants more */
	for (int s = 0; s < 6; s++)
		for (size_t cut = 0; cut < seeds[s].n; cut++) {
			struct rmq_proxy_hdr h;
			cr_assert_eq(rmq_proxy_parse(seeds[s].b, cut, &h), 0, "seed %d cut %zu", s, cut);
		}
	/* pure noise, and noise behind each signature */
	for (int iter = 0; iter < 2000; iter++) {
		uint8_t r[300];
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (uint8_t)random();
		if (iter % 3 == 1)
			memcpy(r, "PROXY ", 6);
		else if (iter % 3 == 2)
			memcpy(r, SIG, sizeof(SIG)), r[12] = 0x21;
		assert_contract(r, sizeof(r));
	}
}

Test(core_proxy_proto, addr_str_cuts_to_the_buffer)
{
	union rmq_proxy_sa a;
	memset(&a, 0, sizeof(a));
	a.in.sin_family = AF_INET;
	inet_pton(AF_INET, "255.255.255.255", &a.in.sin_addr);
	a.in.sin_port = htons(65535);
	char s[8];
	cr_assert_eq(rmq_proxy_addr_str(&a, s, sizeof(s)), 7);
	cr_assert_str_eq(s, "255.255");
	char full[64];
	cr_assert_eq(rmq_proxy_addr_str(&a, full, sizeof(full)), strlen("255.255.255.255:65535"));
	a.sa.sa_family = AF_UNIX;
	rmq_proxy_addr_str(&a, full, sizeof(full));
	cr_assert_str_eq(full, "?");
}
