/* Unit tests of the bridge's spool encoding of a rendered message's headers and timestamp (bridge/spool_codec.c):
 * round trip, null values, empty and absent header sets, and every kind of truncated or foreign blob. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../bridge/bridge_internal.h"

TestSuite(bridge_spool);

struct hdr_want {
	const char *name, *value;  /* value NULL: null */
};

static void expect(const struct rmq_bbuf *b, int64_t ts, bool headers, const struct hdr_want *w, int n)
{
	int64_t got_ts;
	bool got_h;
	size_t pos;
	cr_assert_eq(rmq_bridge_hblob_open((const uint8_t *)b->p, b->len, &got_ts, &got_h, &pos), 0);
	cr_assert_eq(got_ts, ts);
	cr_assert_eq(got_h, headers);
	struct rmq_bridge_hdr h;
	for (int i = 0; i < n; i++) {
		cr_assert_eq(rmq_bridge_hblob_next((const uint8_t *)b->p, b->len, &pos, &h), 1, "header %d", i);
		cr_assert_eq(h.namelen, strlen(w[i].name));
		cr_assert_eq(memcmp(h.name, w[i].name, h.namelen), 0);
		if (!w[i].value) {
			cr_assert_null(h.value, "header %d is null", i);
			cr_assert_eq(h.vlen, 0);
		} else {
			cr_assert_not_null(h.value);
			cr_assert_eq(h.vlen, strlen(w[i].value));
			cr_assert_eq(memcmp(h.value, w[i].value, h.vlen), 0);
		}
	}
	cr_assert_eq(rmq_bridge_hblob_next((const uint8_t *)b->p, b->len, &pos, &h), 0, "then the end");
	cr_assert_eq(pos, b->len);
}

Test(bridge_spool, round_trip_keeps_order_nulls_empties_and_timestamp)
{
	struct rmq_bbuf b = {0};
	const struct hdr_want w[] = {{"trip", "42"}, {"mqtt.topic", "cars/VIN7/status"}, {"empty", ""},
				     {"nothing", NULL}, {"trip", "43"}};
	int64_t ts = 1795634829646;
	cr_assert_eq(rmq_bridge_hblob_begin(&b, ts, true), 0);
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		cr_assert_eq(rmq_bridge_hblob_add(&b, w[i].name, strlen(w[i].name), w[i].value,
						  w[i].value ? strlen(w[i].value) : 0), 0);
	expect(&b, ts, true, w, 5);
	/* begin empties the buffer: it is reused across messages */
	cr_assert_eq(rmq_bridge_hblob_begin(&b, -1, false), 0);
	expect(&b, -1, false, NULL, 0);
	cr_assert_eq(rmq_bridge_hblob_begin(&b, 0, true), 0);
	expect(&b, 0, true, NULL, 0);  /* a route with headers on, and none to send */
	rmq_bridge_buf_free(&b);
}

Test(bridge_spool, binary_names_and_values_pass_unchanged)
{
	struct rmq_bbuf b = {0};
	const char name[] = {'a', 0, 'b'}, val[] = {0, (char)0xff, 0x13, 0};
	cr_assert_eq(rmq_bridge_hblob_begin(&b, 7, true), 0);
	cr_assert_eq(rmq_bridge_hblob_add(&b, name, sizeof(name), val, sizeof(val)), 0);
	int64_t ts;
	bool has;
	size_t pos;
	struct rmq_bridge_hdr h;
	cr_assert_eq(rmq_bridge_hblob_open((const uint8_t *)b.p, b.len, &ts, &has, &pos), 0);
	cr_assert_eq(rmq_bridge_hblob_next((const uint8_t *)b.p, b.len, &pos, &h), 1);
	cr_assert_eq(h.namelen, sizeof(name));
	cr_assert_eq(memcmp(h.name, name, sizeof(name)), 0);
	cr_assert_eq(h.vlen, sizeof(val));
	cr_assert_eq(memcmp(h.value, val, sizeof(val)), 0);
	rmq_bridge_buf_free(&b);
}

Test(bridge_spool, refuses_what_it_cannot_encode)
{
	struct rmq_bbuf b = {0};
	static char big[70000];
	cr_assert_eq(rmq_bridge_hblob_begin(&b, 0, true), 0);
	size_t len = b.len;
	cr_assert_eq(rmq_bridge_hblob_add(&b, big, sizeof(big), "v", 1), -EINVAL, "a name over 65535 bytes");
	cr_assert_eq(b.len, len, "nothing appended");
	cr_assert_eq(rmq_bridge_hblob_add(&b, big, 65535, "v", 1), 0, "65535 is the limit");
	rmq_bridge_buf_free(&b);
}

Test(bridge_spool, every_truncation_and_foreign_blob_is_refused)
{
	struct rmq_bbuf b = {0};
	cr_assert_eq(rmq_bridge_hblob_begin(&b, 99, true), 0);
	cr_assert_eq(rmq_bridge_hblob_add(&b, "k", 1, "value", 5), 0);
	cr_assert_eq(rmq_bridge_hblob_add(&b, "n", 1, NULL, 0), 0);
	const uint8_t *p = (const uint8_t *)b.p;
	int64_t ts;
	bool has;
	size_t pos;
	struct rmq_bridge_hdr h;
	/* Cut anywhere: the fixed part fails to open, or some header fails to parse; never a read past len. */
	for (size_t cut = 0; cut < b.len; cut++) {
		if (rmq_bridge_hblob_open(p, cut, &ts, &has, &pos)) {
			cr_assert_lt(cut, 10, "only a cut fixed part fails to open (cut %zu)", cut);
			continue;
		}
		int rc;
		while ((rc = rmq_bridge_hblob_next(p, cut, &pos, &h)) == 1)
			cr_assert_leq(pos, cut);
		/* a cut right between two headers is a valid shorter blob: nothing else may parse */
		bool boundary = cut == 10 || cut == 10 + 2 + 1 + 4 + 5;
		cr_assert_eq(rc, boundary ? 0 : -EINVAL, "cut at %zu", cut);
	}
	uint8_t bad[16];
	memcpy(bad, p, 10);
	bad[0] = 2;
	cr_assert_eq(rmq_bridge_hblob_open(bad, 10, &ts, &has, &pos), -EINVAL, "unknown version");
	bad[0] = 1;
	bad[1] = 0x80;
	cr_assert_eq(rmq_bridge_hblob_open(bad, 10, &ts, &has, &pos), -EINVAL, "unknown flags");
	rmq_bridge_buf_free(&b);
}
