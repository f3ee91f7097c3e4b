/* Shared helpers for the codec's Criterion tests (test_proto*.c): encode/frame/decode round trips and
 * decoding raw byte vectors. Test-only; single-threaded. */
#ifndef TEST_PROTO_HELPERS_H
#define TEST_PROTO_HELPERS_H

#include <criterion/criterion.h>
#include <string.h>

#include "ringmq/proto.h"

#define S(lit) ((struct rmq_str){(const uint8_t *)(lit), (uint32_t)(sizeof(lit) - 1)})
#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})
#define ALL_VERSIONS {RMQ_V31, RMQ_V311, RMQ_V5}

static inline bool str_eq(struct rmq_str a, struct rmq_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Decodes raw bytes as `role` speaking `version`. */
static inline int dec(uint8_t version, uint8_t role, const uint8_t *b, size_t n, struct rmq_packet *out)
{
	struct rmq_decode_ctx ctx = {.version = version, .role = role};
	return rmq_proto_decode(b, n, &ctx, out);
}

static inline int dec_srv(uint8_t version, const uint8_t *b, size_t n)
{
	struct rmq_packet p;
	return dec(version, RMQ_ROLE_SERVER, b, n, &p);
}

static inline int dec_cli(uint8_t version, const uint8_t *b, size_t n)
{
	struct rmq_packet p;
	return dec(version, RMQ_ROLE_CLIENT, b, n, &p);
}

/* Encodes `in`, checks encoded_len agrees and framing finds exactly the packet, decodes into `out`
 * as `role`. Returns the encoded length; fails the test on any error. */
static inline size_t roundtrip(uint8_t version, uint8_t role, const struct rmq_packet *in, struct rmq_packet *out,
			       uint8_t *buf, size_t cap)
{
	ssize_t want = rmq_proto_encoded_len(version, in);
	cr_assert_gt(want, 0, "encoded_len: %zd (%s)", want, rmq_proto_err_str((int)want));
	ssize_t n = rmq_proto_encode(buf, cap, version, in);
	cr_assert_eq(n, want, "encode returned %zd, encoded_len %zd", n, want);
	size_t total = 0;
	cr_assert_eq(rmq_proto_frame(buf, (size_t)n, 0, &total), RMQ_OK);
	cr_assert_eq(total, (size_t)n);
	int rc = dec(version, role, buf, (size_t)n, out);
	cr_assert_eq(rc, RMQ_OK, "decode: %d %s", rc, rmq_proto_err_str(rc));
	cr_assert_eq(out->type, in->type);
	return (size_t)n;
}

#endif
