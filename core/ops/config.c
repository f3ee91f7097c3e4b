/* Broker configuration: defaults, --flags and the `key value` config file, with one clear error each.
 * Called only from main (before the reactors start). */
#include "ops/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ringmq/bridge.h"
#include "ringmq/proto.h"
#include "store/wal.h"

/* Defaults sized for a small node: 4096 x 4 KiB receive buffers per core is 16 MiB of ring memory,
 * well inside Debian's default memlock once buffers are plain malloc'd memory. */
#define DEF_RING_ENTRIES 4096u
#define DEF_BUFS 4096u
#define DEF_BUF_SIZE 4096u
#define DEF_MAX_CONNECTIONS 100000u
/* A reactor that sleeps gathers completions for up to this long before it wakes for one: about a third of the
 * wake-ups at 30k msg/s, and at most this much latency per core a message crosses (bench/README.md, the curve). */
#define DEF_BATCH_WAIT_US 50u
#define DEF_MAX_PACKET (1u << 20)     /* 1 MiB: a car's telemetry frame is far smaller */
#define DEF_MAX_INFLIGHT 64u          /* announced as v5 Receive Maximum */
/* Per session, offline or behind a full inflight window. 10x mosquitto's default: a car's commands
 * survive a long tunnel, and a QoS 1 subscriber survives a stall of a few hundred ms at 30k msg/s
 * without loss; each entry is 16 bytes plus a share of the message. */
#define DEF_MAX_QUEUED 10000u
#define DEF_MAX_KEEPALIVE 65535u
/* Operators' dashboards poll $SYS at about this rate (mosquitto's default is 10 s too). */
#define DEF_SYS_INTERVAL 10u
/* Per core: an hour of a 1,000-car core at 1 KiB/s each is 3.4 GiB; 1 GiB rides out a broker upgrade and
 * keeps a full disk from surprising the operator. */
#define DEF_SPOOL_MAX_BYTES (1ull << 30)
/* Hardening defaults (limits.c says how each is enforced). A car sends a PINGREQ per keep-alive and a few
 * SUBSCRIBEs at connect; a dashboard may send hundreds of SUBSCRIBEs at start, which the 5 s burst of the
 * bucket absorbs. 100/s is far above any honest client and still cuts a flood (each SUBSCRIBE costs a route
 * update on every core) within seconds. */
#define DEF_MAX_CONTROL_RATE 100u
/* Fleet topics are 4-8 levels (cars/{vin}/telemetry/{sensor}; AWS IoT stops at 8). 32 is 4x that, and a
 * quarter of the codec's hard bound (RMQ_MAX_TOPIC_LEVELS): trie depth and '+'-matching cost grow with it. */
#define DEF_MAX_TOPIC_LEVELS 32u
/* A car holds a handful of filters, a backend or dashboard a few hundred; each costs ~100-200 B of session
 * and trie memory plus a route entry on every core. */
#define DEF_MAX_SUBSCRIPTIONS 1024u
/* Tracing headers and app metadata are a handful; every user property is copied to every subscriber and
 * into Kafka headers, so a PUBLISH with thousands of them multiplies its cost by its fan-out. */
#define DEF_MAX_USER_PROPERTIES 64u
/* A telemetry frame over a slow cellular link (50 kbit/s) arrives in well under a second; 30 s leaves
 * room for a 1 MiB packet at ~300 kbit/s and bounds how long a trickling client holds a slot. */
#define DEF_PACKET_TIMEOUT 30u

void rmq_config_defaults(struct rmq_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cores = 0;  /* rmq_config_finish: the CPUs in the affinity mask */
	cfg->ring_entries = DEF_RING_ENTRIES;
	cfg->bufs_per_core = DEF_BUFS;
	cfg->buf_size = DEF_BUF_SIZE;
	cfg->batch_wait_us = DEF_BATCH_WAIT_US;
	cfg->max_connections = DEF_MAX_CONNECTIONS;
	cfg->max_packet_size = DEF_MAX_PACKET;
	cfg->max_inflight = DEF_MAX_INFLIGHT;
	cfg->max_queued = DEF_MAX_QUEUED;
	cfg->max_keepalive = DEF_MAX_KEEPALIVE;
	cfg->sys_interval = DEF_SYS_INTERVAL;
	cfg->max_control_rate = DEF_MAX_CONTROL_RATE;
	cfg->max_topic_levels = DEF_MAX_TOPIC_LEVELS;
	cfg->max_subscriptions = DEF_MAX_SUBSCRIPTIONS;
	cfg->max_user_properties = DEF_MAX_USER_PROPERTIES;
	cfg->packet_timeout = DEF_PACKET_TIMEOUT;
	cfg->fsync_policy = RMQ_WAL_FSYNC_BATCH;
	cfg->spool_max_bytes = DEF_SPOOL_MAX_BYTES;
	rmq_security_cfg_init(&cfg->sec);
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* "N", "Nk", "NM", "NG" (binary multiples). */
static int parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	if (*end == 'k' || *end == 'K')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (errno || *end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static bool is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

/* "HOST:PORT", "[V6]:PORT"; host must be numeric (no resolver at start-up: a fleet node binds IPs). */
static int parse_listen(const char *s, struct rmq_listen_addr *a)
{
	const char *colon, *host = s;
	size_t hlen;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		host = s + 1;
		hlen = (size_t)(rb - host);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(a->host))
		return -EINVAL;
	memcpy(a->host, host, hlen);
	a->host[hlen] = 0;
	uint32_t port;
	if (parse_u32(colon + 1, 0, 65535, &port))
		return -EINVAL;
	a->port = (uint16_t)port;
	unsigned char tmp[16];
	if (inet_pton(AF_INET, a->host, tmp) != 1 && inet_pton(AF_INET6, a->host, tmp) != 1)
		return -EINVAL;
	return 0;
}

bool rmq_listen_sockaddr(const struct rmq_listen_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	bool v6 = strchr(a->host, ':') != NULL;
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(a->port);
		inet_pton(AF_INET6, a->host, &s6->sin6_addr);
		*len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(a->port);
		inet_pton(AF_INET, a->host, &s4->sin_addr);
		*len = sizeof(*s4);
	}
	return v6;
}

static int parse_cpu_list(const char *s, struct rmq_config *cfg)
{
	cfg->ncpus = 0;
	while (*s) {
		char *end;
		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		long a = strtol(s, &end, 10), b = a;
		if (*end == '-') {
			if (!isdigit((unsigned char)end[1]))
				return -EINVAL;
			b = strtol(end + 1, &end, 10);
		}
		if (b < a || b > 4095)
			return -EINVAL;
		for (long c = a; c <= b; c++) {
			if (cfg->ncpus == RMQ_MAX_CORES)
				return -EINVAL;
			cfg->cpus[cfg->ncpus++] = (int)c;
		}
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return cfg->ncpus ? 0 : -EINVAL;
}

/* One row per core option: parsing (flag and config file), validation, --help and the man page all read it.
 * Security and bridge options live in their own modules' tables (rmq_security_option, rmq_bridge_option). */
enum opt_kind {
	OPT_U32,       /* uint32_t field within [lo, hi] */
	OPT_INT,       /* int field within [lo, hi] */
	OPT_BOOL,      /* bool field; on the command line the bare flag means true */
	OPT_PATH,      /* char[] field: a non-empty path shorter than hi bytes */
	OPT_LISTEN,    /* appends a listener of transport bits lo (repeatable) */
	OPT_ADDR,      /* one HOST:PORT into an rmq_listen_addr field; sets the bool at set_off */
	OPT_BYTES,     /* uint64_t field, k/M/G suffixes, at least lo MiB */
	OPT_FSYNC,     /* int field: enum rmq_wal_fsync by name */
	OPT_CPU_LIST,  /* cpus[] / ncpus */
};

#define OPT_POW2 0x01   /* OPT_U32: must be a power of 2 */

struct opt {
	const char *name;
	const char *arg;     /* how --help names the value; NULL for a switch */
	enum opt_kind kind;
	uint8_t flags;
	size_t off;          /* the field in struct rmq_config */
	size_t set_off;      /* a bool set when the option is given (0: none) */
	uint32_t lo, hi;
	const char *help;
};

#define F(field) offsetof(struct rmq_config, field)
static const struct opt opts[] = {
	{"listen", "HOST:PORT", OPT_LISTEN, 0, 0, 0, 0, 0,
	 "plain MQTT listen address, repeatable (default 127.0.0.1:1883; [::1]:PORT for IPv6)"},
	{"listen-tls", "HOST:PORT", OPT_LISTEN, 0, 0, 0, RMQ_LISTEN_TLS, 0,
	 "MQTT over TLS 1.2/1.3, repeatable (needs --cert and --key)"},
	{"listen-ws", "HOST:PORT", OPT_LISTEN, 0, 0, 0, RMQ_LISTEN_WS, 0,
	 "MQTT over WebSocket (subprotocol mqtt), repeatable"},
	{"listen-wss", "HOST:PORT", OPT_LISTEN, 0, 0, 0, RMQ_LISTEN_TLS | RMQ_LISTEN_WS, 0,
	 "MQTT over WebSocket over TLS, repeatable (needs --cert and --key)"},
	{"cert", "FILE", OPT_PATH, 0, F(tls_cert), 0, 0, sizeof(((struct rmq_config *)0)->tls_cert),
	 "TLS server certificate chain (PEM, leaf first)"},
	{"key", "FILE", OPT_PATH, 0, F(tls_key), 0, 0, sizeof(((struct rmq_config *)0)->tls_key),
	 "TLS server private key (PEM)"},
	{"cafile", "FILE", OPT_PATH, 0, F(tls_cafile), 0, 0, sizeof(((struct rmq_config *)0)->tls_cafile),
	 "CAs (PEM) client certificates are verified against"},
	{"require-certificate", NULL, OPT_BOOL, 0, F(require_certificate), 0, 0, 0,
	 "mTLS: TLS clients need a certificate valid under --cafile; its CN (else SAN) is the username"},
	/* No default shown for cores (0 until rmq_config_finish): the help says where it comes from. */
	{"cores", "N", OPT_INT, 0, F(cores), 0, 1, RMQ_MAX_CORES,
	 "reactor threads, one per CPU (default: the CPUs in the process's affinity mask, or in --cpu-list)"},
	{"cpu-list", "LIST", OPT_CPU_LIST, 0, 0, 0, 0, 0,
	 "CPUs to pin the reactors to, e.g. 0-3,6 (default: the affinity mask)"},
	{"metrics", "HOST:PORT", OPT_ADDR, 0, F(metrics), F(metrics_on), 0, 0,
	 "serve Prometheus metrics at http://HOST:PORT/metrics (off by default)"},
	/* 32 bytes of room for "/core-NNN/spool/..." below the directory. */
	{"data-dir", "DIR", OPT_PATH, 0, F(data_dir), 0, 0, sizeof(((struct rmq_config *)0)->data_dir) - 32,
	 "persist retained messages and persistent sessions in DIR/core-N (off by default: state lives in "
	 "memory only)"},
	{"fsync", "POLICY", OPT_FSYNC, 0, F(fsync_policy), 0, 0, 0,
	 "always | batch | never: when a logged record counts as durable (default batch: group commit every 2 ms)"},
	{"spool", NULL, OPT_BOOL, 0, F(spool), 0, 0, 0,
	 "spool QoS 1/2 Kafka-bound messages to DIR/core-N/spool while Kafka is down or the producer queue is "
	 "full (needs --data-dir)"},
	{"spool-max-bytes", "N", OPT_BYTES, 0, F(spool_max_bytes), 0, 1, 0,
	 "per-core spool bound; past it, backpressure (k/M/G suffix)"},
	{"proxy-protocol", NULL, OPT_BOOL, 0, F(proxy_protocol), 0, 0, 0,
	 "every listener expects a PROXY protocol v1/v2 header (behind HAProxy)"},
	{"ring-entries", "N", OPT_U32, OPT_POW2, F(ring_entries), 0, 64, 32768,
	 "submission queue entries per core (power of 2)"},
	{"bufs-per-core", "N", OPT_U32, OPT_POW2, F(bufs_per_core), 0, 16, 32768,
	 "receive buffers in each core's ring (power of 2)"},
	{"buf-size", "N", OPT_U32, 0, F(buf_size), 0, 256, 1u << 20, "size of one receive buffer in bytes"},
	{"batch-wait-us", "N", OPT_U32, 0, F(batch_wait_us), 0, 0, 10000,
	 "microseconds an idle core gathers completions before it wakes (0 = wake per completion)"},
	{"max-connections", "N", OPT_U32, 0, F(max_connections), F(max_connections_set), 1, RMQ_MAX_CONNECTIONS_LIMIT,
	 "connections accepted in total"},
	{"max-packet-size", "N", OPT_U32, 0, F(max_packet_size), 0, 64, 268435460u,
	 "largest MQTT packet accepted, bytes"},
	{"max-inflight", "N", OPT_U32, 0, F(max_inflight), 0, 1, RMQ_MAX_INFLIGHT_LIMIT,
	 "unacknowledged QoS 1/2 per direction (receive max)"},
	{"max-queued", "N", OPT_U32, 0, F(max_queued), 0, 0, 10000000, "QoS 1/2 messages kept per offline session"},
	{"max-keepalive", "N", OPT_U32, 0, F(max_keepalive), 0, 1, 65535, "largest keep-alive granted, seconds"},
	{"sys-interval", "N", OPT_U32, 0, F(sys_interval), 0, 0, 86400,
	 "$SYS/broker/... publish period, seconds (0 = off)"},
	{"max-control-rate", "N", OPT_U32, 0, F(max_control_rate), 0, 0, 100000,
	 "PINGREQ/SUBSCRIBE/UNSUBSCRIBE per second per connection, 5 s burst (0 = off)"},
	{"max-topic-levels", "N", OPT_U32, 0, F(max_topic_levels), 0, 1, RMQ_MAX_TOPIC_LEVELS,
	 "levels in a topic name or filter"},
	{"max-subscriptions", "N", OPT_U32, 0, F(max_subscriptions), 0, 0, 10000000,
	 "topic filters per session (0 = off)"},
	{"max-user-properties", "N", OPT_U32, 0, F(max_user_properties), 0, 0, 65535,
	 "MQTT 5 user properties in one packet"},
	{"packet-timeout", "N", OPT_U32, 0, F(packet_timeout), 0, 0, 86400,
	 "seconds a started packet may take to arrive (0 = off)"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const struct opt *opt_find(const char *name)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (!strcmp(opts[i].name, name))
			return &opts[i];
	return NULL;
}

/* The default an option shows in --help ("" when it has none worth printing). */
static void opt_default(const struct opt *o, const struct rmq_config *def, char *buf, size_t len)
{
	const char *f = (const char *)def + o->off;
	buf[0] = 0;
	if (o->kind == OPT_U32) {
		uint32_t v;
		memcpy(&v, f, sizeof(v));
		snprintf(buf, len, "%u", v);
	} else if (o->kind == OPT_INT) {
		int v;
		memcpy(&v, f, sizeof(v));
		if (v)
			snprintf(buf, len, "%d", v);
	} else if (o->kind == OPT_BYTES) {
		uint64_t v;
		memcpy(&v, f, sizeof(v));
		snprintf(buf, len, "%llu", (unsigned long long)v);
	}
}

/* Prints `text` from column `col`, wrapped before `width`; the first line continues the current one. */
static void wrap(FILE *out, const char *text, int col, int width)
{
	int at = col;
	while (*text) {
		const char *sp = strchr(text, ' ');
		int n = sp ? (int)(sp - text) : (int)strlen(text);
		if (at > col && at + 1 + n > width) {
			fprintf(out, "\n%*s", col, "");
			at = col;
		} else if (at > col) {
			fputc(' ', out);
			at++;
		}
		fwrite(text, 1, (size_t)n, out);
		at += n;
		text += n;
		while (*text == ' ')
			text++;
	}
	fputc('\n', out);
}

void rmq_config_usage(FILE *out)
{
	enum { COL = 25, WIDTH = 110 };
	struct rmq_config def;
	rmq_config_defaults(&def);   /* the defaults shown are the ones set, so --help cannot drift from them */
	fprintf(out, "usage: ringmq [options]\n");
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];
		char flag[64], dflt[32], help[512];
		int n = snprintf(flag, sizeof(flag), "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		opt_default(o, &def, dflt, sizeof(dflt));
		snprintf(help, sizeof(help), "%s%s%s%s", o->help, dflt[0] ? " (default " : "", dflt,
			 dflt[0] ? ")" : "");
		fputs(flag, out);
		if (n + 2 > COL)  /* two spaces at least: the man page generator splits there */
			fprintf(out, "\n%*s", COL, "");
		else
			fprintf(out, "%*s", COL - n, "");
		wrap(out, help, COL, WIDTH);
	}
	fprintf(out,
		"  -c FILE                config file: `key value` lines with the long option names, # comments\n"
		"  -v                     verbose: log connections and errors to stderr\n"
		"  -h, --help             this text\n"
		"  --version              version, git revision, library versions and the io_uring features found\n");
	rmq_security_usage(out);
	rmq_bridge_usage(out);
}

static int opt_set(struct rmq_config *cfg, const struct opt *o, const char *value, char *err, size_t errlen)
{
	char *f = (char *)cfg + o->off;
	const char *v = value ? value : "";
	uint32_t u;
	switch (o->kind) {
	case OPT_U32: {
		bool pow2 = o->flags & OPT_POW2;
		if (parse_u32(value, o->lo, o->hi, &u) || (pow2 && !is_pow2(u))) {
			snprintf(err, errlen, "bad --%s '%s': want %s%u..%u", o->name, v,
				 pow2 ? "a power of 2 in " : "", o->lo, o->hi);
			return -EINVAL;
		}
		memcpy(f, &u, sizeof(u));
		break;
	}
	case OPT_INT:
		if (parse_u32(value, o->lo, o->hi, &u)) {
			snprintf(err, errlen, "bad --%s '%s': want %u..%u", o->name, v, o->lo, o->hi);
			return -EINVAL;
		}
		*(int *)f = (int)u;
		break;
	case OPT_BOOL:
		if (!value || (strcmp(value, "true") && strcmp(value, "false"))) {
			snprintf(err, errlen, "bad --%s '%s': want true or false (or no value)", o->name, v);
			return -EINVAL;
		}
		*(bool *)f = !strcmp(value, "true");
		break;
	case OPT_PATH:
		if (!value || !*value || strlen(value) >= o->hi) {
			snprintf(err, errlen, "bad --%s '%s': want a %s path", o->name, v,
				 !strcmp(o->arg, "DIR") ? "directory" : "file");
			return -EINVAL;
		}
		memcpy(f, value, strlen(value) + 1);
		break;
	case OPT_LISTEN:
		if (cfg->nlisten == RMQ_MAX_LISTEN) {
			snprintf(err, errlen, "too many --%s addresses (at most %d listeners)", o->name, RMQ_MAX_LISTEN);
			return -EINVAL;
		}
		if (!value || parse_listen(value, &cfg->listen[cfg->nlisten])) {
			snprintf(err, errlen, "bad --%s '%s': want IP:PORT or [IPv6]:PORT", o->name, v);
			return -EINVAL;
		}
		cfg->listen[cfg->nlisten++].kind = (uint8_t)o->lo;
		break;
	case OPT_ADDR:
		if (!value || parse_listen(value, (struct rmq_listen_addr *)f)) {
			snprintf(err, errlen, "bad --%s '%s': want IP:PORT or [IPv6]:PORT", o->name, v);
			return -EINVAL;
		}
		break;
	case OPT_BYTES: {
		uint64_t b;
		if (parse_bytes(value, &b) || b < ((uint64_t)o->lo << 20)) {
			snprintf(err, errlen, "bad --%s '%s': want bytes >= %uM (k, M, G suffixes)", o->name, v, o->lo);
			return -EINVAL;
		}
		memcpy(f, &b, sizeof(b));
		break;
	}
	case OPT_FSYNC: {
		enum rmq_wal_fsync p;
		if (!value || rmq_wal_parse_fsync(value, &p)) {
			snprintf(err, errlen, "bad --%s '%s': want always, batch or never", o->name, v);
			return -EINVAL;
		}
		*(int *)f = (int)p;
		break;
	}
	case OPT_CPU_LIST:
		if (!value || parse_cpu_list(value, cfg)) {
			snprintf(err, errlen, "bad --%s '%s': want e.g. 0-3,6", o->name, v);
			return -EINVAL;
		}
		break;
	}
	if (o->set_off)
		*(bool *)((char *)cfg + o->set_off) = true;
	return 0;
}

int rmq_config_set(struct rmq_config *cfg, struct rmq_bridge_cfg *bcfg, const char *key,
		   const char *value, char *err, size_t errlen)
{
	const struct opt *o = opt_find(key);
	if (o)
		return opt_set(cfg, o, value, err, errlen);
	int src = rmq_security_option(&cfg->sec, key, value, err, errlen);
	if (src != -ENOENT)
		return src;
	if (!bcfg || !value)
		return -ENOENT;
	int rc = rmq_bridge_option(bcfg, key, value, err, errlen);
	if (rc == -ENOENT || rc == 0)
		return rc;
	if (!err[0])
		snprintf(err, errlen, "bad --%s '%s'", key, value);
	return -EINVAL;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

int rmq_config_load(struct rmq_config *cfg, struct rmq_bridge_cfg *bcfg, const char *path, char *err,
		    size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "config %s: %s", path, strerror(e));
		return -e;
	}
	char line[4096], msg[512];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *key = trim(line);
		if (!*key)
			continue;
		char *value = key;
		while (*value && !isspace((unsigned char)*value))
			value++;
		if (*value)
			*value++ = 0;
		value = trim(value);
		if (!*value) {
			snprintf(err, errlen, "config %s:%d: '%s' needs a value", path, lineno, key);
			rc = -EINVAL;
			break;
		}
		msg[0] = 0;
		rc = rmq_config_set(cfg, bcfg, key, value, msg, sizeof(msg));
		if (rc == -ENOENT) {
			snprintf(err, errlen, "config %s:%d: unknown key '%s'", path, lineno, key);
			rc = -EINVAL;
			break;
		}
		if (rc) {
			snprintf(err, errlen, "config %s:%d: %s", path, lineno, msg);
			break;
		}
	}
	fclose(f);
	return rc;
}

int rmq_config_parse_args(struct rmq_config *cfg, struct rmq_bridge_cfg *bcfg, int argc, char **argv,
			  char *err, size_t errlen)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			return RMQ_CONFIG_HELP;
		if (!strcmp(a, "--version"))
			return RMQ_CONFIG_VERSION;
		if (!strcmp(a, "--help-man"))  /* hidden: the build writes ringmq.1 with it */
			return RMQ_CONFIG_HELP_MAN;
		if (!strcmp(a, "-v")) {
			cfg->verbose++;
			continue;
		}
		/* A switch given bare on the command line means true (as mosquitto's require_certificate reads);
		 * the config file and --flag=false take a value. */
		const struct opt *sw = a[0] == '-' && a[1] == '-' ? opt_find(a + 2) : NULL;
		if (sw && sw->kind == OPT_BOOL) {
			if (opt_set(cfg, sw, "true", err, errlen))
				return -EINVAL;
			continue;
		}
		char key[64];
		const char *value = NULL;
		if (!strcmp(a, "-c") || !strcmp(a, "-X")) {
			snprintf(key, sizeof(key), "%s", a + 1);
		} else if (a[0] == '-' && a[1] == '-' && a[2]) {
			const char *eq = strchr(a, '=');
			size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			if (n >= sizeof(key)) {
				snprintf(err, errlen, "unknown option '%s' (see --help)", a);
				return -EINVAL;
			}
			memcpy(key, a + 2, n);
			key[n] = 0;
			if (eq)
				value = eq + 1;
		} else {
			snprintf(err, errlen, "unknown option '%s' (see --help)", a);
			return -EINVAL;
		}
		if (!value) {
			if (i + 1 >= argc) {
				/* Known to the core (refuses NULL with -EINVAL) or not known at all. */
				bool known = !strcmp(key, "c") || !strcmp(key, "X") ||
					     rmq_config_set(cfg, NULL, key, NULL, err, errlen) != -ENOENT;
				snprintf(err, errlen, known ? "option '%s' needs a value (see --help)"
							    : "unknown option '%s' (see --help)", a);
				return -EINVAL;
			}
			value = argv[++i];
		}
		err[0] = 0;
		if (!strcmp(key, "c")) {
			if (rmq_config_load(cfg, bcfg, value, err, errlen))
				return -EINVAL;
			continue;
		}
		int rc = rmq_config_set(cfg, bcfg, key, value, err, errlen);
		if (rc == -ENOENT) {
			snprintf(err, errlen, "unknown option '%s' (see --help)", a);
			return -EINVAL;
		}
		if (rc)
			return -EINVAL;
	}
	return 0;
}

bool rmq_config_has_tls(const struct rmq_config *cfg)
{
	for (int i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].kind & RMQ_LISTEN_TLS)
			return true;
	return false;
}

/* Fills cfg->cpus with the CPUs this process may run on (taskset, a cgroup cpuset, systemd's CPUAffinity=),
 * so that a reactor is never pinned outside them. 0, or -errno when the mask cannot be read. */
static int affinity_cpus(struct rmq_config *cfg)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set))
		return -errno;
	cfg->ncpus = 0;
	for (int cpu = 0; cpu < CPU_SETSIZE && cfg->ncpus < RMQ_MAX_CORES; cpu++)
		if (CPU_ISSET(cpu, &set))
			cfg->cpus[cfg->ncpus++] = cpu;
	return cfg->ncpus ? 0 : -ESRCH;
}

void rmq_config_finish(struct rmq_config *cfg)
{
	/* One reactor per CPU the process may use: the design's point. A mask that cannot be read (never on
	 * Linux) leaves one core and pinning by core id. */
	if (!cfg->ncpus && affinity_cpus(cfg))
		cfg->ncpus = 0;
	if (cfg->cores == 0) {
		cfg->cores = cfg->ncpus ? cfg->ncpus : 1;
		cfg->cores_default = true;
	}
	/* Any listener given (plain, TLS or WebSocket) replaces the default: a TLS-only node must not
	 * silently open plain 1883 as well. */
	if (cfg->nlisten == 0) {
		snprintf(cfg->listen[0].host, sizeof(cfg->listen[0].host), "127.0.0.1");
		cfg->listen[0].port = 1883;
		cfg->listen[0].kind = 0;
		cfg->nlisten = 1;
	}
}

int rmq_config_check(const struct rmq_config *cfg, char *err, size_t errlen)
{
	if (rmq_config_has_tls(cfg) && (!cfg->tls_cert[0] || !cfg->tls_key[0])) {
		snprintf(err, errlen, "--listen-tls/--listen-wss need --cert FILE and --key FILE");
		return -EINVAL;
	}
	if (cfg->spool && !cfg->data_dir[0]) {
		snprintf(err, errlen, "--spool needs --data-dir DIR (the spool lives in DIR/core-N/spool)");
		return -EINVAL;
	}
	if (cfg->require_certificate && !cfg->tls_cafile[0]) {
		snprintf(err, errlen, "--require-certificate needs --cafile FILE (the CAs client certificates are "
			 "verified against)");
		return -EINVAL;
	}
	return 0;
}
