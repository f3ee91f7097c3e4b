/* Unit tests for core/ops/config.c: every flag, its bounds, the config file with line-numbered errors,
 * and the unknown-option path through the bridge. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/config.h"
#include "store/wal.h"
#include "ringmq/bridge.h"

static int parse(struct rmq_config *cfg, char *err, int argc, char **argv)
{
	rmq_config_defaults(cfg);
	struct rmq_bridge_cfg *b = rmq_bridge_cfg_new();
	int rc = rmq_config_parse_args(cfg, b, argc, argv, err, 512);
	rmq_bridge_cfg_free(b);
	return rc;
}

#define ARGV(...) ((char *[]){"ringmq", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"ringmq", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(cfg, err, ...) parse(cfg, err, ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

Test(core_config, defaults)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(parse(&cfg, err, 1, (char *[]){"ringmq", NULL}), 0);
	rmq_config_finish(&cfg);
	/* --cores defaults to the CPUs this process may run on, and the reactors are pinned to exactly those. */
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	cr_assert_eq(cfg.cores, CPU_COUNT(&set));
	cr_assert(cfg.cores_default);
	cr_assert_eq(cfg.ncpus, CPU_COUNT(&set));
	for (int i = 0; i < cfg.ncpus; i++)
		cr_assert(CPU_ISSET(cfg.cpus[i], &set), "cpu %d is outside the affinity mask", cfg.cpus[i]);
	cr_assert_eq(cfg.nlisten, 1);
	cr_assert_str_eq(cfg.listen[0].host, "127.0.0.1");
	cr_assert_eq(cfg.listen[0].port, 1883);
	cr_assert_eq(cfg.max_connections_set, false);
}

Test(core_config, cpu_list_sets_the_default_core_count)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(PARSE(&cfg, err, "--cpu-list", "0,0"), 0, "%s", err);
	rmq_config_finish(&cfg);
	cr_assert_eq(cfg.cores, 2);
	cr_assert_eq(PARSE(&cfg, err, "--cores", "1"), 0, "%s", err);
	rmq_config_finish(&cfg);
	cr_assert_eq(cfg.cores, 1, "--cores 1 stays available");
}

Test(core_config, version_and_man_requests)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(PARSE(&cfg, err, "--listen", "127.0.0.1:1", "--version"), RMQ_CONFIG_VERSION);
	cr_assert_eq(PARSE(&cfg, err, "--help-man"), RMQ_CONFIG_HELP_MAN);
	cr_assert_eq(PARSE(&cfg, err, "-h"), RMQ_CONFIG_HELP);
}

Test(core_config, every_flag)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(PARSE(&cfg, err, "--listen", "127.0.0.1:1999", "--listen=[::1]:2000", "--cores", "3",
			   "--cpu-list", "0-1,3", "--ring-entries", "512", "--bufs-per-core", "256", "--buf-size",
			   "2048", "--max-connections", "77", "--max-packet-size", "4096", "--max-inflight", "10",
			   "--max-queued", "5", "--max-keepalive", "30", "--batch-wait-us", "250", "-v"),
		     0, "%s", err);
	cr_assert_eq(cfg.nlisten, 2);
	cr_assert_eq(cfg.listen[0].port, 1999);
	cr_assert_str_eq(cfg.listen[1].host, "::1");
	cr_assert_eq(cfg.listen[1].port, 2000);
	cr_assert_eq(cfg.cores, 3);
	cr_assert_eq(cfg.ncpus, 3);
	cr_assert_eq(cfg.cpus[2], 3);
	rmq_config_finish(&cfg);
	cr_assert_eq(cfg.cores, 3, "an explicit --cores stays");
	cr_assert(!cfg.cores_default);
	cr_assert_eq(cfg.ncpus, 3, "--cpu-list is not replaced by the affinity mask");
	cr_assert_eq(cfg.ring_entries, 512);
	cr_assert_eq(cfg.bufs_per_core, 256);
	cr_assert_eq(cfg.buf_size, 2048);
	cr_assert_eq(cfg.max_connections, 77);
	cr_assert(cfg.max_connections_set);
	cr_assert_eq(cfg.max_packet_size, 4096);
	cr_assert_eq(cfg.max_inflight, 10);
	cr_assert_eq(cfg.max_queued, 5);
	cr_assert_eq(cfg.max_keepalive, 30);
	cr_assert_eq(cfg.batch_wait_us, 250);
	cr_assert_eq(cfg.verbose, 1);
}

Test(core_config, help)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(PARSE(&cfg, err, "--help"), 1);
	cr_assert_eq(PARSE(&cfg, err, "-h"), 1);
}

Test(core_config, bad_values_are_rejected_with_a_reason)
{
	struct rmq_config cfg;
	char err[512];
	const char *bad[][2] = {
		{"--cores", "0"}, {"--cores", "x"}, {"--cores", "-1"}, {"--cores", "99999"},
		{"--listen", "localhost"}, {"--listen", "1.2.3.4:99999"}, {"--listen", "[::1:80"},
		{"--listen", "nothost:80"}, {"--listen", ":80"}, {"--ring-entries", "100"},
		{"--bufs-per-core", "3"}, {"--buf-size", "1"}, {"--max-inflight", "0"},
		{"--max-inflight", "70000"}, {"--cpu-list", "3-1"}, {"--cpu-list", "a"}, {"--cpu-list", ""},
		{"--max-keepalive", "12abc"}, {"--batch-wait-us", "10001"}, {"--batch-wait-us", "-5"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_assert_eq(PARSE(&cfg, err, (char *)bad[i][0], (char *)bad[i][1]), -EINVAL, "%s %s", bad[i][0],
			     bad[i][1]);
		cr_assert(strstr(err, bad[i][0] + 2) != NULL, "error names the option: %s", err);
	}
}

Test(core_config, unknown_and_missing)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(PARSE(&cfg, err, "--no-such-flag", "1"), -EINVAL);
	cr_assert(strstr(err, "unknown option '--no-such-flag'"), "%s", err);
	cr_assert_eq(PARSE(&cfg, err, "stray"), -EINVAL);
	cr_assert(strstr(err, "unknown option 'stray'"), "%s", err);
	cr_assert_eq(PARSE(&cfg, err, "--cores"), -EINVAL);
	cr_assert(strstr(err, "needs a value"), "%s", err);
}

static char *write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/ringmq-cfg-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

Test(core_config, file)
{
	struct rmq_config cfg;
	char err[512];
	char *path = write_tmp("# a comment\n\ncores 2   # trailing comment\n  listen 127.0.0.1:2883\n"
			       "max-queued 42\n");
	cr_assert_eq(PARSE(&cfg, err, "-c", path), 0, "%s", err);
	unlink(path);
	cr_assert_eq(cfg.cores, 2);
	cr_assert_eq(cfg.nlisten, 1);
	cr_assert_eq(cfg.listen[0].port, 2883);
	cr_assert_eq(cfg.max_queued, 42);
}

Test(core_config, file_errors_name_the_line)
{
	struct rmq_config cfg;
	char err[512];
	char *path = write_tmp("cores 2\n# ok\nbogus-key 1\n");
	cr_assert_eq(PARSE(&cfg, err, "-c", path), -EINVAL);
	unlink(path);
	cr_assert(strstr(err, ":3: unknown key 'bogus-key'"), "%s", err);

	path = write_tmp("cores\n");
	cr_assert_eq(PARSE(&cfg, err, "-c", path), -EINVAL);
	unlink(path);
	cr_assert(strstr(err, ":1: 'cores' needs a value"), "%s", err);

	path = write_tmp("max-inflight 0\n");
	cr_assert_eq(PARSE(&cfg, err, "-c", path), -EINVAL);
	unlink(path);
	cr_assert(strstr(err, ":1: bad --max-inflight"), "%s", err);

	cr_assert_eq(PARSE(&cfg, err, "-c", "/nonexistent/ringmq.conf"), -EINVAL);
	cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(core_config, durability_and_proxy_flags)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(PARSE(&cfg, err, "--cores", "1"), 0, "%s", err);
	cr_assert_eq(cfg.data_dir[0], 0);
	cr_assert_eq(cfg.fsync_policy, RMQ_WAL_FSYNC_BATCH);
	cr_assert_not(cfg.spool);
	cr_assert_eq(cfg.spool_max_bytes, 1ull << 30);
	cr_assert_not(cfg.proxy_protocol);

	cr_assert_eq(PARSE(&cfg, err, "--data-dir", "/tmp/x", "--fsync", "always", "--spool", "--spool-max-bytes",
			   "64M", "--proxy-protocol"),
		     0, "%s", err);
	cr_assert_str_eq(cfg.data_dir, "/tmp/x");
	cr_assert_eq(cfg.fsync_policy, RMQ_WAL_FSYNC_ALWAYS);
	cr_assert(cfg.spool);
	cr_assert_eq(cfg.spool_max_bytes, 64ull << 20);
	cr_assert(cfg.proxy_protocol);
	rmq_config_finish(&cfg);
	cr_assert_eq(rmq_config_check(&cfg, err, 512), 0, "%s", err);

	cr_assert_eq(PARSE(&cfg, err, "--fsync=never", "--spool-max-bytes=2G", "--spool=false"), 0, "%s", err);
	cr_assert_eq(cfg.fsync_policy, RMQ_WAL_FSYNC_NEVER);
	cr_assert_eq(cfg.spool_max_bytes, 2ull << 30);
	cr_assert_not(cfg.spool);

	cr_assert_eq(PARSE(&cfg, err, "--fsync", "sometimes"), -EINVAL);
	cr_assert(strstr(err, "always, batch or never"), "%s", err);
	cr_assert_eq(PARSE(&cfg, err, "--spool-max-bytes", "12"), -EINVAL);
	cr_assert(strstr(err, ">= 1M"), "%s", err);
	cr_assert_eq(PARSE(&cfg, err, "--spool-max-bytes", "5T"), -EINVAL);
	cr_assert_eq(PARSE(&cfg, err, "--data-dir", ""), -EINVAL);

	/* The spool lives in the data dir: asking for one without the other is a start-up error. */
	cr_assert_eq(PARSE(&cfg, err, "--spool"), 0, "%s", err);
	rmq_config_finish(&cfg);
	cr_assert_eq(rmq_config_check(&cfg, err, 512), -EINVAL);
	cr_assert(strstr(err, "--data-dir"), "%s", err);
}

Test(core_config, hardening_limits)
{
	struct rmq_config cfg;
	char err[512];
	cr_assert_eq(parse(&cfg, err, 1, (char *[]){"ringmq", NULL}), 0);
	cr_assert_eq(cfg.max_control_rate, 100);
	cr_assert_eq(cfg.max_topic_levels, 32);
	cr_assert_eq(cfg.max_subscriptions, 1024);
	cr_assert_eq(cfg.max_user_properties, 64);
	cr_assert_eq(cfg.packet_timeout, 30);
	cr_assert_eq(PARSE(&cfg, err, "--max-control-rate", "0", "--max-topic-levels", "128", "--max-subscriptions", "0",
			   "--max-user-properties", "0", "--packet-timeout", "0"), 0, "%s", err);
	cr_assert_eq(cfg.max_control_rate, 0);
	cr_assert_eq(cfg.max_topic_levels, 128);
	cr_assert_eq(cfg.max_user_properties, 0);
	/* The codec refuses deeper topics anyway: the flag cannot promise more. */
	cr_assert_eq(PARSE(&cfg, err, "--max-topic-levels", "129"), -EINVAL);
	cr_assert(strstr(err, "max-topic-levels"), "%s", err);
	cr_assert_eq(PARSE(&cfg, err, "--max-topic-levels", "0"), -EINVAL);
	cr_assert_eq(PARSE(&cfg, err, "--max-user-properties", "65536"), -EINVAL);
	cr_assert_eq(PARSE(&cfg, err, "--max-control-rate", "-1"), -EINVAL);
}
