/* Unit tests for ringmq-bench's pure parts: the latency histogram, payload stamps and sequence tracking,
 * flag parsing, topic patterns/matching and the expected-delivery topology. Criterion, any thread. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "hist.h"
#include "stamp.h"

/* ---- histogram ---------------------------------------------------------------------------------- */

static struct rmq_hist *new_hist(void)
{
	struct rmq_hist *h = malloc(sizeof(*h));
	cr_assert_not_null(h);
	rmq_bench_hist_init(h);
	return h;
}

static struct rmq_hist_snap *snap_of(const struct rmq_hist *h)
{
	struct rmq_hist_snap *s = malloc(sizeof(*s));
	cr_assert_not_null(s);
	rmq_bench_hist_snap_clear(s);
	rmq_bench_hist_snap_add(s, h);
	return s;
}

Test(bench_hist, small_values_are_exact)
{
	for (uint64_t v = 0; v < RMQ_HIST_SUB; v++) {
		uint32_t i = rmq_bench_hist_index(v);
		cr_assert_eq(rmq_bench_hist_lowest(i), v);
		cr_assert_eq(rmq_bench_hist_highest(i), v);
	}
}

Test(bench_hist, buckets_are_contiguous_and_cover_every_value)
{
	/* Each bucket starts right after the previous one ends: no value falls between buckets. */
	for (uint32_t i = 1; i < RMQ_HIST_BUCKETS; i++)
		cr_assert_eq(rmq_bench_hist_lowest(i), rmq_bench_hist_highest(i - 1) + 1, "bucket %u", i);
	cr_assert_eq(rmq_bench_hist_index(RMQ_HIST_MAX_VALUE), RMQ_HIST_BUCKETS - 1);
	cr_assert_eq(rmq_bench_hist_highest(RMQ_HIST_BUCKETS - 1), RMQ_HIST_MAX_VALUE);
	/* Values above the maximum clamp into the last bucket instead of writing past the table. */
	cr_assert_eq(rmq_bench_hist_index(UINT64_MAX), RMQ_HIST_BUCKETS - 1);
}

Test(bench_hist, relative_error_is_bounded)
{
	uint64_t vals[] = {255, 256, 257, 1000, 4095, 4096, 123456, 999999, 1000000007ull, 77777777777ull};
	for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
		uint32_t i = rmq_bench_hist_index(vals[k]);
		uint64_t lo = rmq_bench_hist_lowest(i), hi = rmq_bench_hist_highest(i);
		cr_assert(lo <= vals[k] && vals[k] <= hi, "%llu not in [%llu, %llu]", (unsigned long long)vals[k],
			  (unsigned long long)lo, (unsigned long long)hi);
		cr_assert_leq((double)(hi - lo) / (double)lo, 1.0 / (RMQ_HIST_SUB / 2));
	}
}

Test(bench_hist, percentiles_of_a_uniform_distribution)
{
	struct rmq_hist *h = new_hist();
	for (uint64_t v = 1; v <= 100000; v++)
		rmq_bench_hist_record(h, v * 1000); /* 1 us .. 100 ms */
	struct rmq_hist_snap *s = snap_of(h);
	cr_assert_eq(s->count, 100000);
	cr_assert_eq(s->min, 1000);
	cr_assert_eq(s->max, 100000000);
	double want[][2] = {{50, 50e6}, {90, 90e6}, {99, 99e6}, {99.9, 99.9e6}, {100, 100e6}};
	for (size_t k = 0; k < 5; k++) {
		double got = (double)rmq_bench_hist_percentile(s, want[k][0]);
		cr_assert(got >= want[k][1] && got <= want[k][1] * 1.01, "p%g: %g, want %g", want[k][0], got,
			  want[k][1]);
	}
	cr_assert_float_eq(rmq_bench_hist_mean(s), 50000.5 * 1000, 1.0);
	free(s);
	free(h);
}

Test(bench_hist, a_single_outlier_shows_in_max_and_p100_only)
{
	struct rmq_hist *h = new_hist();
	for (int i = 0; i < 999; i++)
		rmq_bench_hist_record(h, 100);
	rmq_bench_hist_record(h, 5000000);
	struct rmq_hist_snap *s = snap_of(h);
	cr_assert_eq(rmq_bench_hist_percentile(s, 50), 100);
	cr_assert_eq(rmq_bench_hist_percentile(s, 99.9), 100);
	cr_assert_eq(rmq_bench_hist_percentile(s, 100), 5000000); /* clamped to the recorded max */
	cr_assert_eq(s->max, 5000000);
	free(s);
	free(h);
}

Test(bench_hist, empty_histogram_reports_zero)
{
	struct rmq_hist *h = new_hist();
	struct rmq_hist_snap *s = snap_of(h);
	cr_assert_eq(s->count, 0);
	cr_assert_eq(rmq_bench_hist_percentile(s, 99), 0);
	cr_assert_float_eq(rmq_bench_hist_mean(s), 0.0, 1e-9);
	free(s);
	free(h);
}

Test(bench_hist, merge_and_interval_diff)
{
	struct rmq_hist *a = new_hist(), *b = new_hist();
	for (int i = 0; i < 100; i++)
		rmq_bench_hist_record(a, 1000);
	struct rmq_hist_snap *before = snap_of(a);
	for (int i = 0; i < 100; i++)
		rmq_bench_hist_record(a, 9000);
	for (int i = 0; i < 50; i++)
		rmq_bench_hist_record(b, 20000);
	struct rmq_hist_snap *after = snap_of(a);
	rmq_bench_hist_snap_add(after, b);
	cr_assert_eq(after->count, 250);
	cr_assert_eq(after->max, 20000);
	cr_assert_eq(after->min, 1000);
	struct rmq_hist_snap *d = malloc(sizeof(*d));
	rmq_bench_hist_snap_diff(d, after, before);
	/* The interval holds only the later samples: its p50 is 9000, not the earlier 1000. */
	cr_assert_eq(d->count, 150);
	uint64_t p50 = rmq_bench_hist_percentile(d, 50);
	cr_assert(p50 >= 9000 && p50 <= 9000 * 1.01, "p50 %llu", (unsigned long long)p50);
	cr_assert(d->min >= 9000 * 0.99, "min %llu", (unsigned long long)d->min);
	cr_assert_eq(d->max, 20000);
	free(d);
	free(after);
	free(before);
	free(a);
	free(b);
}

/* ---- stamps and sequence tracking ----------------------------------------------------------------- */

Test(bench_stamp, round_trip)
{
	uint8_t buf[64];
	memset(buf, 0xAA, sizeof(buf));
	struct rmq_stamp in = {.run_id = 0xDEADBEEF, .send_ns = 0x0102030405060708ull, .pub_id = 4242,
			       .seq = 0xFFFFFFFE}, out;
	rmq_bench_stamp_write(buf, &in);
	cr_assert_eq(buf[RMQ_STAMP_LEN], 0xAA, "the stamp must not write past its 24 bytes");
	cr_assert(rmq_bench_stamp_read(buf, sizeof(buf), &out));
	cr_assert_eq(out.run_id, in.run_id);
	cr_assert_eq(out.send_ns, in.send_ns);
	cr_assert_eq(out.pub_id, in.pub_id);
	cr_assert_eq(out.seq, in.seq);
}

Test(bench_stamp, rejects_short_and_foreign_payloads)
{
	uint8_t buf[RMQ_STAMP_LEN];
	struct rmq_stamp in = {.run_id = 1, .send_ns = 2, .pub_id = 3, .seq = 4}, out;
	rmq_bench_stamp_write(buf, &in);
	cr_assert_not(rmq_bench_stamp_read(buf, RMQ_STAMP_LEN - 1, &out));
	cr_assert_not(rmq_bench_stamp_read(buf, 0, &out));
	buf[0] ^= 1;
	cr_assert_not(rmq_bench_stamp_read(buf, sizeof(buf), &out));
	const char *text = "hello from mosquitto_pub, not ours";
	cr_assert_not(rmq_bench_stamp_read((const uint8_t *)text, strlen(text), &out));
}

Test(bench_seq, in_order_stream_has_no_loss)
{
	struct rmq_seq_tracker t;
	rmq_bench_seq_init(&t, false);
	for (uint32_t s = 0; s < 1000; s++)
		cr_assert_eq(rmq_bench_seq_record(&t, 7, s), RMQ_SEQ_IN_ORDER);
	struct rmq_seq_totals tot;
	rmq_bench_seq_totals(&t, &tot);
	cr_assert_eq(tot.unique, 1000);
	cr_assert_eq(tot.gaps + tot.dup + tot.ooo, 0);
	cr_assert_eq(tot.publishers, 1);
	cr_assert_eq(rmq_bench_seq_unique(&t, 7), 1000);
	cr_assert_eq(rmq_bench_seq_unique(&t, 8), 0);
	rmq_bench_seq_free(&t);
}

Test(bench_seq, gap_late_arrival_and_duplicates)
{
	struct rmq_seq_tracker t;
	rmq_bench_seq_init(&t, false);
	cr_assert_eq(rmq_bench_seq_record(&t, 1, 0), RMQ_SEQ_IN_ORDER);
	cr_assert_eq(rmq_bench_seq_record(&t, 1, 3), RMQ_SEQ_GAP);   /* 1 and 2 missing so far */
	cr_assert_eq(rmq_bench_seq_record(&t, 1, 1), RMQ_SEQ_LATE);  /* 1 arrives out of order */
	cr_assert_eq(rmq_bench_seq_record(&t, 1, 1), RMQ_SEQ_DUP);   /* and again: a duplicate */
	cr_assert_eq(rmq_bench_seq_record(&t, 1, 3), RMQ_SEQ_DUP);
	cr_assert_eq(rmq_bench_seq_record(&t, 1, 0), RMQ_SEQ_DUP);
	struct rmq_seq_totals tot;
	rmq_bench_seq_totals(&t, &tot);
	cr_assert_eq(tot.unique, 3);
	cr_assert_eq(tot.ooo, 1);
	cr_assert_eq(tot.dup, 3);
	cr_assert_eq(tot.gaps, 1); /* 2 never came */
	rmq_bench_seq_free(&t);
}

Test(bench_seq, window_slides_across_word_boundaries)
{
	struct rmq_seq_tracker t;
	rmq_bench_seq_init(&t, false);
	/* Every even sequence first, then the odd ones still inside the 128-wide window arrive late. */
	for (uint32_t s = 0; s < 300; s += 2)
		rmq_bench_seq_record(&t, 0, s);
	uint64_t late = 0, dup = 0;
	for (uint32_t s = 1; s < 298; s += 2) {
		int v = rmq_bench_seq_record(&t, 0, s);
		late += v == RMQ_SEQ_LATE;
		dup += v == RMQ_SEQ_DUP;
	}
	/* Highest seen is 298; sequences >= 298 - 127 = 171 are inside the window. */
	cr_assert_eq(late, (297 - 171) / 2 + 1);
	cr_assert_eq(late + dup, 149);
	/* Evens re-sent inside the window are recognised as duplicates, not counted twice. */
	cr_assert_eq(rmq_bench_seq_record(&t, 0, 296), RMQ_SEQ_DUP);
	cr_assert_eq(rmq_bench_seq_record(&t, 0, 200), RMQ_SEQ_DUP);
	rmq_bench_seq_free(&t);
}

Test(bench_seq, many_publishers_are_tracked_apart)
{
	struct rmq_seq_tracker t;
	rmq_bench_seq_init(&t, false);
	for (uint32_t round = 0; round < 3; round++)
		for (uint32_t p = 0; p < 5000; p++)
			cr_assert_eq(rmq_bench_seq_record(&t, p * 7919, round), RMQ_SEQ_IN_ORDER);
	struct rmq_seq_totals tot;
	rmq_bench_seq_totals(&t, &tot);
	cr_assert_eq(tot.publishers, 5000);
	cr_assert_eq(tot.unique, 15000);
	cr_assert_eq(tot.gaps + tot.dup + tot.ooo, 0);
	cr_assert_eq(rmq_bench_seq_unique(&t, 4999 * 7919), 3);
	cr_assert_eq(rmq_bench_seq_record(&t, UINT32_MAX, 0), -ERANGE);
	rmq_bench_seq_free(&t);
}

Test(bench_seq, from_first_starts_at_the_first_sequence_seen)
{
	struct rmq_seq_tracker joined, strict;
	rmq_bench_seq_init(&joined, true);
	rmq_bench_seq_init(&strict, false);
	for (uint32_t s = 500; s < 600; s++) {
		rmq_bench_seq_record(&joined, 3, s);
		rmq_bench_seq_record(&strict, 3, s);
	}
	struct rmq_seq_totals a, b;
	rmq_bench_seq_totals(&joined, &a);
	rmq_bench_seq_totals(&strict, &b);
	cr_assert_eq(a.gaps, 0, "a subscriber that joined late lost nothing it could have seen");
	cr_assert_eq(b.gaps, 500, "a subscriber there from the start missed 0..499");
	rmq_bench_seq_free(&joined);
	rmq_bench_seq_free(&strict);
}

/* ---- flags ----------------------------------------------------------------------------------------- */

static int parse(struct rmq_bench_opts *o, char *err, const char *line)
{
	char buf[512], *argv[64];
	int argc = 0;
	snprintf(buf, sizeof(buf), "ringmq-bench %s", line);
	for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok && argc < 63; tok = strtok_r(NULL, " ", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	return rmq_bench_opts_parse(argc, argv, o, err, 256);
}

Test(bench_opts, defaults_for_pub)
{
	struct rmq_bench_opts o;
	char err[256];
	cr_assert_eq(parse(&o, err, "pub"), 0, "%s", err);
	cr_assert_eq(o.mode, RMQ_BENCH_PUB);
	cr_assert_str_eq(o.host, "127.0.0.1");
	cr_assert_eq(o.port, 1883);
	cr_assert_eq(o.threads, 1);
	cr_assert_eq(o.pubs, 10);
	cr_assert_eq(o.subs, 0);
	cr_assert_eq(o.qos, 0);
	cr_assert_eq(o.size, 64);
	cr_assert_float_eq(o.rate, 0, 1e-9);
	cr_assert_eq(rmq_bench_client_count(&o), 10);
}

Test(bench_opts, every_flag_of_pub_sub)
{
	struct rmq_bench_opts o;
	char err[256];
	cr_assert_eq(parse(&o, err, "pubsub --host localhost --port 18830 --mqtt 5 --threads 2 --duration 3.5 "
			 "--warmup 0 --drain 1 --pubs 7 --subs 3 --topic t/%i/x --filter t/+/x --qos 2 --sub-qos 1 "
			 "--size 128 --rate 250 --inflight 16 --keepalive 30 --client-prefix z- --json /tmp/x.json "
			 "--quiet"), 0, "%s", err);
	cr_assert_str_eq(o.host, "localhost");
	cr_assert_eq(o.port, 18830);
	cr_assert_eq(o.version, 5);
	cr_assert_eq(o.threads, 2);
	cr_assert_float_eq(o.duration, 3.5, 1e-9);
	cr_assert_eq(o.pubs, 7);
	cr_assert_eq(o.subs, 3);
	cr_assert_str_eq(o.topic, "t/%i/x");
	cr_assert_eq(o.qos, 2);
	cr_assert_eq(o.sub_qos, 1);
	cr_assert_eq(o.size, 128);
	cr_assert_float_eq(o.rate, 250, 1e-9);
	cr_assert_eq(o.inflight, 16);
	cr_assert_eq(o.keepalive, 30);
	cr_assert_str_eq(o.json, "/tmp/x.json");
	cr_assert(o.quiet);
	cr_assert_eq(rmq_bench_client_count(&o), 10);
}

Test(bench_opts, scenario_presets_and_overrides)
{
	struct rmq_bench_opts o;
	char err[256];
	cr_assert_eq(parse(&o, err, "pubsub --scenario fan-in"), 0, "%s", err);
	cr_assert_eq(o.pubs, 100);
	cr_assert_eq(o.subs, 1);
	cr_assert_str_eq(o.filter, "bench/+");
	/* A later flag overrides the preset; so does an earlier one (the preset is applied first). */
	cr_assert_eq(parse(&o, err, "pubsub --size 32 --scenario qos1-fan-in --pubs 20"), 0, "%s", err);
	cr_assert_eq(o.qos, 1);
	cr_assert_eq(o.sub_qos, 1);
	cr_assert_eq(o.pubs, 20);
	cr_assert_eq(o.size, 32);
	cr_assert_eq(parse(&o, err, "pubsub --scenario pairs --total-rate 100000"), 0, "%s", err);
	cr_assert_eq(o.pubs, 50);
	cr_assert_eq(o.subs, 50);
	cr_assert_float_eq(o.rate, 2000, 1e-9);
	cr_assert_eq(parse(&o, err, "pubsub --scenario nope"), -EINVAL);
	cr_assert(strstr(err, "fan-in"), "%s", err);
}

Test(bench_opts, fleet_and_conn)
{
	struct rmq_bench_opts o;
	char err[256];
	cr_assert_eq(parse(&o, err, "fleet --cars 1000 --hz 5 --backends 2 --qos 1 --size 300"), 0, "%s", err);
	cr_assert_eq(rmq_bench_client_count(&o), 1002);
	cr_assert_float_eq(o.rate, 5, 1e-9);
	cr_assert_eq(parse(&o, err, "conn --count 5000 --conn-rate 2500 --hold 3 --source-addrs 4"), 0, "%s", err);
	cr_assert_eq(rmq_bench_client_count(&o), 5000);
	cr_assert_float_eq(o.connect_rate, 2500, 1e-9);
	cr_assert_float_eq(o.duration, 3, 1e-9);
	cr_assert_eq(o.src_addrs, 4);
	cr_assert_str_empty(o.tls_cafile, "TCP unless --tls-cafile");
	cr_assert_eq(parse(&o, err, "conn --count 10 --tls-cafile /etc/ca.pem"), 0, "%s", err);
	cr_assert_str_eq(o.tls_cafile, "/etc/ca.pem");
}

Test(bench_opts, bad_flags_are_rejected_with_a_message)
{
	const char *bad[] = {
		"", "publish", "pub --qos 3", "pub --qos -1", "pub --qos 1x", "pub --rate -5", "pub --rate nan",
		"pub --size 23", "pub --size 2000000", "pub --port 0", "pub --port 65536", "pub --threads 0",
		"pub --threads 65", "pub --duration 0", "pub --mqtt 4.0", "pub --bogus", "pub --port",
		"pub extra", "pub -x", "sub --topic a", "pub --filter a", "conn --qos 1", "fleet --pubs 3",
		"pub --topic a/+/b", "pub --topic a/#", "sub --filter a/#/b", "sub --filter a%d",
		"pubsub --subs 0", "fleet --hz 0", "conn --source-addrs 255", "pub --host " ,
		"pub --clients 0", "pub --broker-pid 0", "pub --inflight 0", "kafka-verify --qos 1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rmq_bench_opts o;
		char err[256] = "";
		cr_assert_eq(parse(&o, err, bad[i]), -EINVAL, "'%s' was accepted", bad[i]);
		cr_assert(strlen(err) > 10, "'%s': no message", bad[i]);
	}
}

Test(bench_opts, help_is_not_an_error)
{
	struct rmq_bench_opts o;
	char err[256];
	FILE *saved = stdout;
	stdout = fopen("/dev/null", "w");
	int a = parse(&o, err, "--help"), b = parse(&o, err, "pub --help");
	fclose(stdout);
	stdout = saved;
	cr_assert_eq(a, 1);
	cr_assert_eq(b, 1);
}

/* ---- patterns, matching, topology ------------------------------------------------------------------ */

Test(bench_topic, pattern_expansion)
{
	char out[32];
	cr_assert_eq(rmq_bench_pattern(out, sizeof(out), "bench/%i", 42), 8);
	cr_assert_str_eq(out, "bench/42");
	cr_assert_eq(rmq_bench_pattern(out, sizeof(out), "%i/%i", 7), 3);
	cr_assert_str_eq(out, "7/7");
	cr_assert_eq(rmq_bench_pattern(out, sizeof(out), "plain", 7), 5);
	cr_assert_eq(rmq_bench_pattern(out, 8, "bench/%i", 123), -ENAMETOOLONG);
}

Test(bench_topic, match)
{
	cr_assert(rmq_bench_topic_match("a/b", "a/b"));
	cr_assert_not(rmq_bench_topic_match("a/b", "a/c"));
	cr_assert_not(rmq_bench_topic_match("a/b", "a/b/c"));
	cr_assert_not(rmq_bench_topic_match("a/b/c", "a/b"));
	cr_assert(rmq_bench_topic_match("a/+", "a/b"));
	cr_assert_not(rmq_bench_topic_match("a/+", "a/b/c"));
	cr_assert_not(rmq_bench_topic_match("a/+", "a"));
	cr_assert(rmq_bench_topic_match("a/+", "a/"));
	cr_assert(rmq_bench_topic_match("cars/+/telemetry", "cars/VIN1/telemetry"));
	cr_assert_not(rmq_bench_topic_match("cars/+/telemetry", "cars/VIN1/cmd"));
	cr_assert(rmq_bench_topic_match("a/#", "a"));
	cr_assert(rmq_bench_topic_match("a/#", "a/b/c"));
	cr_assert(rmq_bench_topic_match("#", "x/y"));
	cr_assert_not(rmq_bench_topic_match("#", "$SYS/broker"));
	cr_assert_not(rmq_bench_topic_match("+/broker", "$SYS/broker"));
	cr_assert(rmq_bench_topic_match("$SYS/#", "$SYS/broker"));
	cr_assert_not(rmq_bench_topic_match("bench/1", "bench/10"));
}

Test(bench_topology, expected_fanout)
{
	struct rmq_bench_opts o;
	char err[256];
	cr_assert_eq(parse(&o, err, "pubsub --scenario pairs"), 0, "%s", err);
	/* Subscribers come first: client 50 is publisher 0, matched only by subscriber 0. */
	struct rmq_bench_client c;
	cr_assert_eq(rmq_bench_client_describe(&o, 50, &c), 0);
	cr_assert(c.publishes && !c.subscribes);
	cr_assert_eq(c.pub_id, 0);
	cr_assert_str_eq(c.topic, "bench/0");
	cr_assert_eq(rmq_bench_fanout(&o, 50), 1);
	cr_assert_eq(rmq_bench_fanout(&o, 0), 0, "a subscriber publishes nothing");
	cr_assert_eq(parse(&o, err, "pubsub --pubs 4 --subs 3 --filter bench/#"), 0, "%s", err);
	cr_assert_eq(rmq_bench_fanout(&o, 3), 3);
	cr_assert_eq(parse(&o, err, "pubsub --pubs 4 --subs 3 --filter other/#"), 0, "%s", err);
	cr_assert_eq(rmq_bench_fanout(&o, 3), 0);
	cr_assert_eq(parse(&o, err, "fleet --cars 10 --backends 2 --vin-prefix WAUZZZ"), 0, "%s", err);
	cr_assert_eq(rmq_bench_client_describe(&o, 7, &c), 0);
	cr_assert_str_eq(c.client_id, "WAUZZZ00000000007");
	cr_assert_str_eq(c.topic, "cars/WAUZZZ00000000007/telemetry");
	cr_assert_str_eq(c.filter, "cars/WAUZZZ00000000007/cmd");
	cr_assert(c.publishes && c.subscribes);
	cr_assert_eq(rmq_bench_fanout(&o, 7), 2);
	cr_assert_eq(rmq_bench_client_describe(&o, 11, &c), 0);
	cr_assert(c.subscribes && !c.publishes);
	cr_assert_str_eq(c.filter, "cars/+/telemetry");
	/* With commands, the back-ends publish too: each command reaches exactly its one car. */
	cr_assert_eq(parse(&o, err, "fleet --cars 10 --backends 2 --cmd-rate 50 --vin-prefix WAUZZZ"), 0, "%s", err);
	cr_assert_eq(rmq_bench_client_describe(&o, 11, &c), 0);
	cr_assert(c.subscribes && c.publishes);
	cr_assert_eq(c.pub_id, 11);
	cr_assert_eq(rmq_bench_fanout(&o, 11), 1);
	cr_assert_eq(rmq_bench_fanout(&o, 3), 2);
	char t[64];
	cr_assert_eq(rmq_bench_fleet_cmd_topic(&o, 7, t, sizeof(t)), 26);
	cr_assert_str_eq(t, "cars/WAUZZZ00000000007/cmd");
	cr_assert(rmq_bench_topic_match("cars/WAUZZZ00000000007/cmd", t));
	cr_assert_eq(rmq_bench_fleet_cmd_topic(&o, 7, t, 10), -ENAMETOOLONG);
	cr_assert_eq(parse(&o, err, "fleet --backends 0 --cmd-rate 5"), -EINVAL);
	/* v5 cars may ask for topic aliases; 3.1.1 has none to ask for, and only fleet has cars. */
	cr_assert_eq(parse(&o, err, "fleet --mqtt 5 --cmd-rate 5 --topic-alias-max 8"), 0, "%s", err);
	cr_assert_eq(o.topic_alias_max, 8);
	cr_assert_eq(parse(&o, err, "fleet --cmd-rate 5 --topic-alias-max 8"), -EINVAL);
	cr_assert_eq(parse(&o, err, "pubsub --mqtt 5 --topic-alias-max 8"), -EINVAL);
}

Test(bench_topology, fan_in_subscriber_gets_a_worker_of_its_own)
{
	struct rmq_bench_opts o;
	char err[256];
	cr_assert_eq(parse(&o, err, "pubsub --scenario fan-in --threads 2"), 0, "%s", err);
	uint32_t n = rmq_bench_client_count(&o);
	uint64_t *load = calloc(n, sizeof(*load));
	uint32_t *wk = calloc(n, sizeof(*wk));
	for (uint32_t i = 0; i < n; i++)
		load[i] = rmq_bench_fanin(&o, i);
	cr_assert_eq(load[0], 100, "the wildcard subscriber hears all 100 publishers");
	cr_assert_eq(load[1], 0);
	cr_assert_eq(rmq_bench_assign(load, n, 2, wk), 0);
	uint32_t with_sub = 0;
	for (uint32_t i = 1; i < n; i++)
		with_sub += wk[i] == wk[0];
	cr_assert_eq(with_sub, 0, "%u publishers share the subscriber's thread", with_sub);
	/* Pairs: 50 subscribers of load 1 and 50 publishers spread evenly over 3 workers. */
	cr_assert_eq(parse(&o, err, "pubsub --scenario pairs --threads 3"), 0, "%s", err);
	n = rmq_bench_client_count(&o);
	for (uint32_t i = 0; i < n; i++)
		load[i] = rmq_bench_fanin(&o, i);
	cr_assert_eq(load[7], 1);
	cr_assert_eq(rmq_bench_assign(load, n, 3, wk), 0);
	uint32_t per[3] = {0};
	for (uint32_t i = 0; i < n; i++)
		per[wk[i]]++;
	cr_assert(per[0] >= 33 && per[0] <= 34 && per[1] >= 33 && per[1] <= 34 && per[2] >= 33 && per[2] <= 34);
	free(load);
	free(wk);
}
