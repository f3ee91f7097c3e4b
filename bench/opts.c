/* ringmq-bench command line: sub-commands, flags, scenario presets, topic patterns and matching.
 * Called by main before any worker starts (and by the unit tests); no shared state. */
#include "bench.h"
#include "stamp.h"

#include <ringmq/proto.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void rmq_bench_usage(FILE *f)
{
	fputs(
"usage: ringmq-bench COMMAND [flags]\n"
"\n"
"commands:\n"
"  pub           N clients publish to --topic (pattern, %i = client index)\n"
"  sub           N clients subscribe to --filter and measure what arrives (latency, gaps, duplicates)\n"
"  pubsub        publishers and subscribers in one run: exact loss against what was sent;\n"
"                --scenario fan-in | pairs | qos1-fan-in presets the issue-3 benchmarks\n"
"  fleet         N cars publish telemetry at --hz to cars/{vin}/telemetry, each subscribed to\n"
"                cars/{vin}/cmd; --backends B subscribers on cars/+/telemetry\n"
"  conn          connection storm: --count N connections at --conn-rate C/s, held for --hold s\n"
"  kafka-verify  consume the Kafka topic a scenario feeds (start it first, then the scenario): every stamped\n"
"                message exactly once, in per-car order; MQTT-publish-to-Kafka latency\n"
"\n"
"broker and run:\n"
"  --host HOST            broker address (default 127.0.0.1)\n"
"  --port PORT            broker port (default 1883)\n"
"  --mqtt 3.1.1|5         protocol version (default 3.1.1)\n"
"  --threads N            loader threads, each with its own epoll (default 1)\n"
"  --duration S           measured seconds (default 10)\n"
"  --warmup S             seconds of load before measuring (default 1)\n"
"  --drain S              max seconds to wait for in-flight messages after publishing stops (default 5)\n"
"  --connect-timeout S    max seconds to connect and subscribe every client (default 10)\n"
"  --connect-rate N       new connections per second during set-up (default 0: no limit)\n"
"  --keepalive S          MQTT keep alive (default 60)\n"
"  --tls-cafile FILE      MQTT over TLS (1.2+, full handshake per connection, no resumption); the broker's\n"
"                         certificate chain is verified against FILE\n"
"  --client-prefix STR    client id prefix (default rmqb<pid>-)\n"
"\n"
"pub / sub / pubsub:\n"
"  --clients N            publishers (pub) or subscribers (sub) (default 10)\n"
"  --pubs N, --subs N     pubsub: publishers and subscribers (default 10 and 1)\n"
"  --topic PATTERN        publish topic (default bench/%i)\n"
"  --filter PATTERN       subscription filter (default sub: bench/#, pubsub: bench/+)\n"
"  --qos 0|1|2            publish QoS (default 0)\n"
"  --sub-qos 0|1|2        subscription QoS (default: --qos)\n"
"  --size BYTES           payload size, at least 24: the stamp (default 64)\n"
"  --rate R               messages/s per publisher, 0 = unlimited (default 0)\n"
"  --total-rate R         messages/s over all publishers (sets --rate to R / publishers)\n"
"  --inflight N           QoS 1/2 unacknowledged window per publisher (default 64)\n"
"  --scenario NAME        pubsub presets: fan-in (100 -> 1 on bench/+, QoS 0, 64 B), pairs (50 -> 50),\n"
"                         qos1-fan-in (50 -> 1, QoS 1, 256 B); later flags override\n"
"  --run-id N             pub/pubsub/fleet: stamp this run id (default: random, printed in the report);\n"
"                         sub: count only messages stamped with it (default: any)\n"
"\n"
"fleet:\n"
"  --cars N (default 100) --hz R (default 1) --backends B (default 1) --vin-prefix STR (default WRMQ)\n"
"  --cmd-rate R           the back-ends also send R commands/s in all to cars/{vin}/cmd, round-robin\n"
"  --topic-alias-max N    --mqtt 5 cars announce Topic Alias Maximum N (the broker may then send their\n"
"                         commands as aliases; the report gives the bytes per command either way)\n"
"  --size, --qos, --inflight as above\n"
"\n"
"conn:\n"
"  --count N              connections to open (default 1000)\n"
"  --conn-rate C          new connections per second (default 1000)\n"
"  --hold S               seconds to hold them once all are up (default 5)\n"
"  --source-addrs K       bind connection i to 127.0.0.(1 + i mod K): beyond one address's port range\n"
"\n"
"kafka-verify:\n"
"  --kafka-brokers H:P,.. bootstrap servers (default 127.0.0.1:9092)\n"
"  --kafka-topic NAME     topic to consume (default mqtt.messages, ringmq's default route)\n"
"  --duration S           how long to consume (default 10)\n"
"  --expect N             unique records the scenario sent (its report's 'sent'): checked exactly\n"
"  --run-id N             count only this run's stamps\n"
"\n"
"report:\n"
"  --broker-pid PID       report the broker's CPU seconds (utime+stime) and RSS over the measured interval\n"
"  --json FILE            write the final report as JSON\n"
"  --plot FILE.svg        throughput and latency over time (needs gnuplot: Debian's gnuplot-nox)\n"
"  --quiet                no progress line on stderr\n"
"\n"
"exit status: 0 ok, 1 run failed (broker refused or dropped connections, lost messages at QoS 1/2),\n"
"2 bad flags; kafka-verify: 1 when not exactly once in per-car order.\n", f);
}

enum {
	O_HOST = 256, O_PORT, O_MQTT, O_THREADS, O_DURATION, O_WARMUP, O_DRAIN, O_CTIMEOUT, O_CRATE,
	O_KEEPALIVE, O_PREFIX, O_CLIENTS, O_PUBS, O_SUBS, O_TOPIC, O_FILTER, O_QOS, O_SUBQOS, O_SIZE,
	O_RATE, O_TOTAL_RATE, O_INFLIGHT, O_SCENARIO, O_RUNID, O_CARS, O_HZ, O_BACKENDS, O_VIN, O_COUNT,
	O_CONNRATE, O_HOLD, O_SRCADDRS, O_CMDRATE, O_ALIASMAX, O_PID, O_JSON, O_PLOT, O_QUIET, O_KBROKERS, O_KTOPIC, O_EXPECT, O_TLSCA, O_HELP,
};

static const struct option longopts[] = {
	{"host", required_argument, 0, O_HOST}, {"port", required_argument, 0, O_PORT},
	{"mqtt", required_argument, 0, O_MQTT}, {"threads", required_argument, 0, O_THREADS},
	{"duration", required_argument, 0, O_DURATION}, {"warmup", required_argument, 0, O_WARMUP},
	{"drain", required_argument, 0, O_DRAIN}, {"connect-timeout", required_argument, 0, O_CTIMEOUT},
	{"connect-rate", required_argument, 0, O_CRATE}, {"keepalive", required_argument, 0, O_KEEPALIVE},
	{"client-prefix", required_argument, 0, O_PREFIX}, {"clients", required_argument, 0, O_CLIENTS},
	{"pubs", required_argument, 0, O_PUBS}, {"subs", required_argument, 0, O_SUBS},
	{"topic", required_argument, 0, O_TOPIC}, {"filter", required_argument, 0, O_FILTER},
	{"qos", required_argument, 0, O_QOS}, {"sub-qos", required_argument, 0, O_SUBQOS},
	{"size", required_argument, 0, O_SIZE}, {"rate", required_argument, 0, O_RATE},
	{"total-rate", required_argument, 0, O_TOTAL_RATE}, {"inflight", required_argument, 0, O_INFLIGHT},
	{"scenario", required_argument, 0, O_SCENARIO}, {"run-id", required_argument, 0, O_RUNID},
	{"cars", required_argument, 0, O_CARS}, {"hz", required_argument, 0, O_HZ},
	{"backends", required_argument, 0, O_BACKENDS}, {"vin-prefix", required_argument, 0, O_VIN},
	{"cmd-rate", required_argument, 0, O_CMDRATE}, {"topic-alias-max", required_argument, 0, O_ALIASMAX},
	{"count", required_argument, 0, O_COUNT}, {"conn-rate", required_argument, 0, O_CONNRATE},
	{"hold", required_argument, 0, O_HOLD}, {"source-addrs", required_argument, 0, O_SRCADDRS},
	{"broker-pid", required_argument, 0, O_PID}, {"json", required_argument, 0, O_JSON},
	{"plot", required_argument, 0, O_PLOT}, {"quiet", no_argument, 0, O_QUIET},
	{"kafka-brokers", required_argument, 0, O_KBROKERS}, {"kafka-topic", required_argument, 0, O_KTOPIC},
	{"expect", required_argument, 0, O_EXPECT}, {"tls-cafile", required_argument, 0, O_TLSCA},
	{"help", no_argument, 0, O_HELP},
	{0, 0, 0, 0},
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Strict unsigned integer in [lo, hi]: digits only, no sign, no trailing bytes. */
static int parse_u(const char *s, unsigned long long lo, unsigned long long hi, unsigned long long *out)
{
	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Strict finite number in [lo, hi]. */
static int parse_d(const char *s, double lo, double hi, double *out)
{
	if (!s || !*s || *s == ' ')
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		return -ENAMETOOLONG;
	memcpy(dst, src, n + 1);
	return 0;
}

static int apply_scenario(struct rmq_bench_opts *o, const char *name)
{
	if (!strcmp(name, "fan-in")) {
		o->pubs = 100, o->subs = 1, o->qos = 0, o->size = 64;
		strcpy(o->topic, "bench/%i"), strcpy(o->filter, "bench/+");
	} else if (!strcmp(name, "pairs")) {
		o->pubs = 50, o->subs = 50, o->qos = 0, o->size = 64;
		strcpy(o->topic, "bench/%i"), strcpy(o->filter, "bench/%i");
	} else if (!strcmp(name, "qos1-fan-in")) {
		o->pubs = 50, o->subs = 1, o->qos = 1, o->size = 256;
		strcpy(o->topic, "bench/%i"), strcpy(o->filter, "bench/+");
	} else {
		return -EINVAL;
	}
	snprintf(o->scenario, sizeof(o->scenario), "%s", name);
	return 0;
}

static void defaults(struct rmq_bench_opts *o, int mode)
{
	memset(o, 0, sizeof(*o));
	o->mode = mode;
	strcpy(o->host, "127.0.0.1");
	o->port = 1883;
	o->threads = 1;
	o->version = RMQ_V311;
	o->duration = 10;
	o->warmup = 1;
	o->drain = 5;
	o->connect_timeout = 10;
	o->keepalive = 60;
	snprintf(o->client_prefix, sizeof(o->client_prefix), "rmqb%d-", (int)getpid());
	o->pubs = mode == RMQ_BENCH_SUB ? 0 : 10;
	o->subs = mode == RMQ_BENCH_PUB ? 0 : (mode == RMQ_BENCH_SUB ? 10 : 1);
	strcpy(o->topic, "bench/%i");
	strcpy(o->filter, mode == RMQ_BENCH_SUB ? "bench/#" : "bench/+");
	o->size = 64;
	o->inflight = 64;
	o->cars = 100;
	o->hz = 1;
	o->backends = 1;
	strcpy(o->vin_prefix, "WRMQ");
	strcpy(o->kafka_brokers, "127.0.0.1:9092");
	strcpy(o->kafka_topic, "mqtt.messages"); /* ringmq's default route: '# -> mqtt.messages' */
	o->count = 1000;
	o->hold = 5;
	if (mode == RMQ_BENCH_FLEET)
		o->subs = 0, o->pubs = 0;
	if (mode == RMQ_BENCH_CONN)
		o->connect_rate = 1000;
}

static int mode_of(const char *cmd)
{
	static const struct { const char *name; int mode; } cmds[] = {
		{"pub", RMQ_BENCH_PUB}, {"sub", RMQ_BENCH_SUB}, {"pubsub", RMQ_BENCH_PUBSUB},
		{"fleet", RMQ_BENCH_FLEET}, {"conn", RMQ_BENCH_CONN}, {"kafka-verify", RMQ_BENCH_KAFKA_VERIFY},
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmd, cmds[i].name))
			return cmds[i].mode;
	return 0;
}

/* Flags that only make sense for some commands: reject them elsewhere rather than silently ignore. */
static bool flag_allowed(int mode, int opt)
{
	switch (opt) {
	case O_CLIENTS:
		return mode == RMQ_BENCH_PUB || mode == RMQ_BENCH_SUB;
	case O_PUBS: case O_SUBS: case O_SCENARIO:
		return mode == RMQ_BENCH_PUBSUB;
	case O_TOPIC: case O_TOTAL_RATE: case O_RATE:
		return mode == RMQ_BENCH_PUB || mode == RMQ_BENCH_PUBSUB;
	case O_FILTER: case O_SUBQOS:
		return mode == RMQ_BENCH_SUB || mode == RMQ_BENCH_PUBSUB;
	case O_CARS: case O_HZ: case O_BACKENDS: case O_VIN: case O_CMDRATE: case O_ALIASMAX:
		return mode == RMQ_BENCH_FLEET;
	case O_COUNT: case O_CONNRATE: case O_HOLD: case O_SRCADDRS:
		return mode == RMQ_BENCH_CONN;
	case O_QOS: case O_SIZE: case O_INFLIGHT:
		return mode != RMQ_BENCH_CONN && mode != RMQ_BENCH_KAFKA_VERIFY;
	case O_KBROKERS: case O_KTOPIC: case O_EXPECT:
		return mode == RMQ_BENCH_KAFKA_VERIFY;
	case O_RUNID:
		return mode != RMQ_BENCH_CONN;
	case O_WARMUP: case O_DRAIN: case O_CTIMEOUT: case O_CRATE: case O_KEEPALIVE: case O_PREFIX: case O_PID:
	case O_PLOT: case O_MQTT: case O_THREADS:
		return mode != RMQ_BENCH_KAFKA_VERIFY;
	default:
		return true;
	}
}

static int set_flag(struct rmq_bench_opts *o, int opt, const char *arg, const char *name, double *total_rate,
		    bool *sub_qos_set, char *err, size_t errlen)
{
	unsigned long long u;
	double d;
#define U(lo, hi, dst) do { if (parse_u(arg, lo, hi, &u)) \
		return fail(err, errlen, "--%s: expected an integer in [%llu, %llu], got '%s'", name, \
			    (unsigned long long)(lo), (unsigned long long)(hi), arg); (dst) = u; } while (0)
#define D(lo, hi, dst) do { if (parse_d(arg, lo, hi, &d)) \
		return fail(err, errlen, "--%s: expected a number in [%g, %g], got '%s'", name, \
			    (double)(lo), (double)(hi), arg); (dst) = d; } while (0)
#define S(dst) do { if (copy_str(dst, sizeof(dst), arg)) \
		return fail(err, errlen, "--%s: longer than %zu bytes", name, sizeof(dst) - 1); } while (0)
	switch (opt) {
	case O_HOST: S(o->host); break;
	case O_PORT: U(1, 65535, o->port); break;
	case O_MQTT:
		if (!strcmp(arg, "3.1.1") || !strcmp(arg, "4"))
			o->version = RMQ_V311;
		else if (!strcmp(arg, "5") || !strcmp(arg, "5.0"))
			o->version = RMQ_V5;
		else
			return fail(err, errlen, "--mqtt: expected 3.1.1 or 5, got '%s'", arg);
		break;
	case O_THREADS: U(1, RMQ_BENCH_MAX_THREADS, o->threads); break;
	case O_DURATION: D(0.1, 86400, o->duration); break;
	case O_WARMUP: D(0, 3600, o->warmup); break;
	case O_DRAIN: D(0, 600, o->drain); break;
	case O_CTIMEOUT: D(0.1, 600, o->connect_timeout); break;
	case O_CRATE: D(0, 1e7, o->connect_rate); break;
	case O_KEEPALIVE: U(0, 65535, o->keepalive); break;
	case O_PREFIX: S(o->client_prefix); break;
	case O_CLIENTS:
		if (o->mode == RMQ_BENCH_PUB)
			U(1, RMQ_BENCH_MAX_CLIENTS, o->pubs);
		else
			U(1, RMQ_BENCH_MAX_CLIENTS, o->subs);
		break;
	case O_PUBS: U(0, RMQ_BENCH_MAX_CLIENTS, o->pubs); break;
	case O_SUBS: U(0, RMQ_BENCH_MAX_CLIENTS, o->subs); break;
	case O_TOPIC: S(o->topic); break;
	case O_FILTER: S(o->filter); break;
	case O_QOS: U(0, 2, o->qos); break;
	case O_SUBQOS: U(0, 2, o->sub_qos); *sub_qos_set = true; break;
	case O_SIZE: U(RMQ_STAMP_LEN, RMQ_BENCH_MAX_PAYLOAD, o->size); break;
	case O_RATE: D(0, 1e8, o->rate); *total_rate = 0; break;
	case O_TOTAL_RATE: D(0, 1e9, *total_rate); break;
	case O_INFLIGHT: U(1, 65535, o->inflight); break;
	case O_SCENARIO: break; /* applied before the other flags */
	case O_RUNID: U(0, UINT32_MAX, o->run_id); break;
	case O_CARS: U(1, RMQ_BENCH_MAX_CLIENTS, o->cars); break;
	case O_HZ: D(0, 1e6, o->hz); break;
	case O_BACKENDS: U(0, 1000, o->backends); break;
	case O_VIN: S(o->vin_prefix); break;
	case O_CMDRATE: D(0, 1e8, o->cmd_rate); break;
	case O_ALIASMAX: U(0, 65535, o->topic_alias_max); break;
	case O_COUNT: U(1, RMQ_BENCH_MAX_CLIENTS, o->count); break;
	case O_CONNRATE: D(0, 1e7, o->connect_rate); break;
	case O_HOLD: D(0, 86400, o->hold); break;
	case O_SRCADDRS: U(1, 254, o->src_addrs); break;
	case O_PID: U(1, 4194304, o->broker_pid); break;
	case O_JSON: S(o->json); break;
	case O_PLOT: S(o->plot); break;
	case O_QUIET: o->quiet = true; break;
	case O_KBROKERS: S(o->kafka_brokers); break;
	case O_KTOPIC: S(o->kafka_topic); break;
	case O_EXPECT: U(0, UINT64_MAX, o->expect); break;
	case O_TLSCA: S(o->tls_cafile); break;
	default:
		return fail(err, errlen, "internal: unhandled flag --%s", name);
	}
#undef U
#undef D
#undef S
	return 0;
}

static int check_pattern(const char *what, const char *p, bool filter, char *err, size_t errlen)
{
	char buf[RMQ_BENCH_TOPIC_MAX + 16];
	if (rmq_bench_pattern(buf, sizeof(buf), p, 4294967295u) < 0)
		return fail(err, errlen, "--%s: '%s' is too long once %%i is expanded", what, p);
	for (const char *c = p; *c; c++)
		if (*c == '%' && c[1] != 'i')
			return fail(err, errlen, "--%s: only %%i is expanded, got '%s'", what, p);
	size_t n = strlen(buf);
	int rc = filter ? rmq_proto_topic_filter_check((const uint8_t *)buf, n)
			: rmq_proto_topic_name_check((const uint8_t *)buf, n);
	if (rc)
		return fail(err, errlen, "--%s: '%s' is not a valid MQTT topic %s", what, p,
			    filter ? "filter" : "name (no + or #)");
	return 0;
}

static int validate(struct rmq_bench_opts *o, double total_rate, char *err, size_t errlen)
{
	if (o->mode == RMQ_BENCH_PUBSUB && (!o->pubs || !o->subs) )
		return fail(err, errlen, "pubsub: needs at least one publisher and one subscriber (--pubs, --subs)");
	if (total_rate > 0) {
		uint32_t n = o->mode == RMQ_BENCH_FLEET ? o->cars : o->pubs;
		o->rate = total_rate / n;
	}
	if (o->mode == RMQ_BENCH_FLEET) {
		o->rate = o->hz;
		if (o->hz <= 0)
			return fail(err, errlen, "--hz: must be above 0");
		if (o->cmd_rate > 0 && !o->backends)
			return fail(err, errlen, "--cmd-rate: the back-ends send the commands: needs --backends 1 or more");
		if (o->topic_alias_max && o->version != RMQ_V5)
			return fail(err, errlen, "--topic-alias-max: topic aliases are MQTT 5 (add --mqtt 5)");
	}
	if (o->mode != RMQ_BENCH_CONN && o->mode != RMQ_BENCH_KAFKA_VERIFY) {
		if ((o->pubs || o->mode == RMQ_BENCH_FLEET) &&
		    check_pattern("topic", o->topic, false, err, errlen))
			return -EINVAL;
		if (o->subs && check_pattern("filter", o->filter, true, err, errlen))
			return -EINVAL;
	}
	uint64_t clients = rmq_bench_client_count(o);
	if (clients > RMQ_BENCH_MAX_CLIENTS)
		return fail(err, errlen, "too many clients (%llu): at most %u", (unsigned long long)clients,
			    RMQ_BENCH_MAX_CLIENTS);
	if ((uint64_t)o->threads > clients && clients)
		o->threads = (int)clients; /* an idle thread would only add noise */
	if (o->mode == RMQ_BENCH_CONN)
		o->duration = o->hold;
	return 0;
}

int rmq_bench_opts_parse(int argc, char **argv, struct rmq_bench_opts *o, char *err, size_t errlen)
{
	err[0] = 0;
	if (argc < 2)
		return fail(err, errlen, "missing command: pub, sub, pubsub, fleet, conn or kafka-verify");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		rmq_bench_usage(stdout);
		return 1;
	}
	int mode = mode_of(argv[1]);
	if (!mode)
		return fail(err, errlen, "unknown command '%s': expected pub, sub, pubsub, fleet, conn or kafka-verify",
			    argv[1]);
	defaults(o, mode);

	/* The preset goes first so that any other flag overrides it, wherever it appears. */
	for (int i = 2; i < argc; i++) {
		const char *v = NULL;
		if (!strcmp(argv[i], "--scenario") && i + 1 < argc)
			v = argv[i + 1];
		else if (!strncmp(argv[i], "--scenario=", 11))
			v = argv[i] + 11;
		if (v && mode == RMQ_BENCH_PUBSUB && apply_scenario(o, v))
			return fail(err, errlen, "--scenario: expected fan-in, pairs or qos1-fan-in, got '%s'", v);
	}

	double total_rate = 0;
	bool sub_qos_set = false;
	/* getopt sees the command as its argv[0]; optind = 0 fully resets GNU getopt between calls (tests
	 * parse many command lines in one process). '+' stops at the first non-flag, ':' reports a missing
	 * value apart from an unknown flag. */
	char **av = argv + 1;
	int ac = argc - 1;
	opterr = 0;
	optind = 0;
	for (;;) {
		int li = -1;
		int c = getopt_long(ac, av, "+:", longopts, &li);
		if (c == -1)
			break;
		if (c == '?')
			return fail(err, errlen, "unknown flag '%s' (see --help)", av[optind - 1]);
		if (c == ':')
			return fail(err, errlen, "flag '%s' needs a value", av[optind - 1]);
		if (c == O_HELP) {
			rmq_bench_usage(stdout);
			return 1;
		}
		const char *name = longopts[li].name;
		if (!flag_allowed(mode, c))
			return fail(err, errlen, "--%s does not apply to '%s'", name, argv[1]);
		int rc = set_flag(o, c, optarg, name, &total_rate, &sub_qos_set, err, errlen);
		if (rc)
			return rc;
	}
	if (optind < ac)
		return fail(err, errlen, "unexpected argument '%s'", av[optind]);
	if (!sub_qos_set)
		o->sub_qos = o->qos;
	return validate(o, total_rate, err, errlen);
}

int rmq_bench_pattern(char *out, size_t cap, const char *pattern, uint32_t index)
{
	size_t n = 0;
	for (const char *p = pattern; *p; p++) {
		char num[16];
		const char *ins = p;
		size_t len = 1;
		if (p[0] == '%' && p[1] == 'i') {
			len = (size_t)snprintf(num, sizeof(num), "%u", index);
			ins = num;
			p++;
		}
		if (n + len >= cap)
			return -ENAMETOOLONG;
		memcpy(out + n, ins, len);
		n += len;
	}
	if (cap == 0)
		return -ENAMETOOLONG;
	out[n] = 0;
	return (int)n;
}

bool rmq_bench_topic_match(const char *f, const char *t)
{
	/* [MQTT-4.7.2-1] a filter starting with a wildcard does not match $-topics. */
	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		if (f[0] == '#')
			return true; /* '#' also matches the parent level ("a/#" matches "a") */
		const char *fe = strchr(f, '/'), *te = strchr(t, '/');
		size_t fl = fe ? (size_t)(fe - f) : strlen(f), tl = te ? (size_t)(te - t) : strlen(t);
		if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl)))
			return false;
		if (!fe && !te)
			return true;
		if (!te)
			return fe && !strcmp(fe + 1, "#");
		if (!fe)
			return false;
		f = fe + 1;
		t = te + 1;
	}
}

/* ---- topology: which client index does what ------------------------------------------------------ */

uint32_t rmq_bench_client_count(const struct rmq_bench_opts *o)
{
	uint64_t n;
	switch (o->mode) {
	case RMQ_BENCH_PUB: n = o->pubs; break;
	case RMQ_BENCH_SUB: n = o->subs; break;
	case RMQ_BENCH_PUBSUB: n = (uint64_t)o->pubs + o->subs; break;
	case RMQ_BENCH_FLEET: n = (uint64_t)o->cars + o->backends; break;
	case RMQ_BENCH_CONN: n = o->count; break;
	default: n = 0; break;
	}
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* A VIN is 17 characters: the prefix, then the car index zero-padded. */
static void vin_of(const struct rmq_bench_opts *o, uint32_t car, char *out, size_t cap)
{
	char digits[16];
	int nd = snprintf(digits, sizeof(digits), "%u", car);
	int pad = 17 - (int)strlen(o->vin_prefix) - nd;
	size_t n = (size_t)snprintf(out, cap, "%s", o->vin_prefix);
	for (; pad > 0 && n + 1 < cap; pad--)
		out[n++] = '0';
	snprintf(out + n, cap - n, "%s", digits);
}

int rmq_bench_fleet_cmd_topic(const struct rmq_bench_opts *o, uint32_t car, char *out, size_t cap)
{
	char vin[32];
	vin_of(o, car, vin, sizeof(vin));
	int n = snprintf(out, cap, "cars/%s/cmd", vin);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : n;
}

int rmq_bench_client_describe(const struct rmq_bench_opts *o, uint32_t i, struct rmq_bench_client *c)
{
	memset(c, 0, sizeof(*c));
	c->index = i;
	int rc = 0;
	const char *p = o->client_prefix;
	switch (o->mode) {
	case RMQ_BENCH_PUB:
		c->publishes = true, c->pub_id = i;
		snprintf(c->client_id, sizeof(c->client_id), "%sp%u", p, i);
		rc = rmq_bench_pattern(c->topic, sizeof(c->topic), o->topic, i);
		break;
	case RMQ_BENCH_SUB:
		c->subscribes = true;
		snprintf(c->client_id, sizeof(c->client_id), "%ss%u", p, i);
		rc = rmq_bench_pattern(c->filter, sizeof(c->filter), o->filter, i);
		break;
	case RMQ_BENCH_PUBSUB:
		/* Subscribers first, so they are connected before the first publisher is. */
		if (i < o->subs) {
			c->subscribes = true;
			snprintf(c->client_id, sizeof(c->client_id), "%ss%u", p, i);
			rc = rmq_bench_pattern(c->filter, sizeof(c->filter), o->filter, i);
		} else {
			c->publishes = true, c->pub_id = i - o->subs;
			snprintf(c->client_id, sizeof(c->client_id), "%sp%u", p, c->pub_id);
			rc = rmq_bench_pattern(c->topic, sizeof(c->topic), o->topic, c->pub_id);
		}
		break;
	case RMQ_BENCH_FLEET:
		if (i < o->cars) {
			char vin[32];
			vin_of(o, i, vin, sizeof(vin));
			c->publishes = c->subscribes = true, c->pub_id = i;
			snprintf(c->client_id, sizeof(c->client_id), "%s", vin);
			snprintf(c->topic, sizeof(c->topic), "cars/%s/telemetry", vin);
			snprintf(c->filter, sizeof(c->filter), "cars/%s/cmd", vin);
		} else {
			c->subscribes = true;
			c->publishes = o->cmd_rate > 0;
			c->pub_id = i; /* after every car's id */
			snprintf(c->client_id, sizeof(c->client_id), "%sbackend%u", p, i - o->cars);
			snprintf(c->filter, sizeof(c->filter), "cars/+/telemetry");
		}
		break;
	case RMQ_BENCH_CONN:
		snprintf(c->client_id, sizeof(c->client_id), "%sc%u", p, i);
		break;
	default:
		return -EINVAL;
	}
	return rc < 0 ? rc : 0;
}

uint64_t rmq_bench_fanout(const struct rmq_bench_opts *o, uint32_t pub_client)
{
	struct rmq_bench_client pc, sc;
	if (rmq_bench_client_describe(o, pub_client, &pc) || !pc.publishes)
		return 0;
	if (o->mode == RMQ_BENCH_FLEET)
		/* Telemetry reaches every back-end (cars/+/telemetry; a car's cmd filter never matches it);
		 * a command reaches the one car it is addressed to. */
		return pub_client < o->cars ? o->backends : 1;
	if (o->mode != RMQ_BENCH_PUBSUB)
		return 0;           /* pub alone: nobody in this run listens */
	if (!strstr(o->filter, "%i"))
		return rmq_bench_topic_match(o->filter, pc.topic) ? o->subs : 0;
	uint64_t n = 0;
	for (uint32_t s = 0; s < o->subs; s++)
		if (!rmq_bench_client_describe(o, s, &sc) && rmq_bench_topic_match(sc.filter, pc.topic))
			n++;
	return n;
}

uint64_t rmq_bench_fanin(const struct rmq_bench_opts *o, uint32_t sub_client)
{
	struct rmq_bench_client sc, pc;
	if (rmq_bench_client_describe(o, sub_client, &sc) || !sc.subscribes)
		return 0;
	if (o->mode == RMQ_BENCH_FLEET)
		return sub_client >= o->cars ? o->cars : 0; /* a back-end hears every car; cmds are few */
	if (o->mode != RMQ_BENCH_PUBSUB)
		return 0;
	uint64_t n = 0;
	for (uint32_t p = o->subs; p < o->subs + o->pubs; p++)
		if (!rmq_bench_client_describe(o, p, &pc) && rmq_bench_topic_match(sc.filter, pc.topic))
			n++;
	return n;
}

struct load_item {
	uint64_t load;
	uint32_t client;
};

static int by_load_desc(const void *a, const void *b)
{
	const struct load_item *x = a, *y = b;
	if (x->load != y->load)
		return x->load < y->load ? 1 : -1;
	return x->client < y->client ? -1 : x->client > y->client;
}

int rmq_bench_assign(const uint64_t *load, uint32_t nclients, int nworkers, uint32_t *worker_of)
{
	struct load_item *items = malloc((nclients ? nclients : 1) * sizeof(*items));
	uint64_t sum[RMQ_BENCH_MAX_THREADS] = {0};
	if (!items)
		return -ENOMEM;
	for (uint32_t i = 0; i < nclients; i++)
		items[i] = (struct load_item){load[i] ? load[i] : 1, i};
	qsort(items, nclients, sizeof(*items), by_load_desc);
	for (uint32_t i = 0; i < nclients; i++) {
		int best = 0;
		for (int w = 1; w < nworkers; w++)
			if (sum[w] < sum[best])
				best = w;
		worker_of[items[i].client] = (uint32_t)best;
		sum[best] += items[i].load;
	}
	free(items);
	return 0;
}
