/* ringmq-bench shared types: parsed options, the run's phase, per-thread counters, worker handles.
 * Options are written by main before the workers start and only read afterwards; counters are single-writer. */
#ifndef RMQ_BENCH_H
#define RMQ_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "hist.h"

enum rmq_bench_mode {
	RMQ_BENCH_PUB = 1,
	RMQ_BENCH_SUB,
	RMQ_BENCH_PUBSUB,
	RMQ_BENCH_FLEET,
	RMQ_BENCH_CONN,
	RMQ_BENCH_KAFKA_VERIFY,
};

#define RMQ_BENCH_TOPIC_MAX 200
#define RMQ_BENCH_PATH_MAX 512
/* Payloads above this would need a reassembly buffer per connection larger than a loader should hold. */
#define RMQ_BENCH_MAX_PAYLOAD (1u << 20)
#define RMQ_BENCH_MAX_THREADS 64
#define RMQ_BENCH_MAX_CLIENTS 1000000u

struct rmq_bench_opts {
	int mode;
	char host[64];
	uint16_t port;
	int threads;
	uint8_t version;           /* RMQ_V311 or RMQ_V5 */
	double duration, warmup;   /* seconds: measured interval follows the warm-up */
	double drain;              /* max seconds to wait for in-flight messages after publishing stops */
	double connect_timeout;    /* seconds to get every client connected (and subscribed) */
	double connect_rate;       /* new connections per second during set-up; 0: as fast as possible */
	uint32_t pubs, subs;
	char topic[RMQ_BENCH_TOPIC_MAX];   /* publish topic pattern, %i = client index */
	char filter[RMQ_BENCH_TOPIC_MAX];  /* subscription filter pattern, %i = client index */
	uint8_t qos;               /* publish QoS */
	uint8_t sub_qos;           /* subscription QoS */
	uint32_t size;             /* payload bytes (>= RMQ_STAMP_LEN) */
	double rate;               /* per publisher msg/s; 0: unlimited */
	uint32_t inflight;         /* QoS 1/2 window per publisher */
	uint16_t keepalive;
	char client_prefix[32];
	uint32_t run_id;           /* 0: any (standalone sub); set at start otherwise */
	char scenario[32];
	/* fleet */
	uint32_t cars, backends;
	double hz;
	double cmd_rate;           /* commands/s the back-ends send in all, round-robin over the cars */
	char vin_prefix[16];
	uint16_t topic_alias_max;  /* v5 cars announce this Topic Alias Maximum (0: none, the broker sends topics) */
	/* conn */
	uint32_t count;
	uint32_t src_addrs;        /* bind to 127.0.0.1 .. 127.0.0.N (round robin); 0: no bind */
	double hold;               /* seconds to hold connections after the storm */
	/* report */
	int broker_pid;
	char json[RMQ_BENCH_PATH_MAX], plot[RMQ_BENCH_PATH_MAX];
	bool quiet;
	/* kafka-verify (hook, see kafka_verify.c) */
	char kafka_brokers[256], kafka_topic[128];
	uint64_t expect;           /* kafka-verify: unique records the scenario sent (0: not checked) */
	char tls_cafile[RMQ_BENCH_PATH_MAX];  /* TLS to the broker, its certificate checked against this ("": TCP) */
};

/* Parses argv (argv[1] is the sub-command). Returns 0, 1 when --help was printed (exit 0), or -EINVAL
 * with a one-line message in err (exit 2). */
int rmq_bench_opts_parse(int argc, char **argv, struct rmq_bench_opts *o, char *err, size_t errlen);
void rmq_bench_usage(FILE *f);
/* Expands a %i pattern with the client index into out (capacity cap). Returns length or -ENAMETOOLONG. */
int rmq_bench_pattern(char *out, size_t cap, const char *pattern, uint32_t index);
/* MQTT topic filter match (+ and #; $-topics not matched by leading wildcards). */
bool rmq_bench_topic_match(const char *filter, const char *topic);

/* Phases, advanced only by the main thread; workers poll the atomic each loop iteration. */
enum rmq_bench_phase {
	PH_CONNECT = 0,   /* open connections, CONNECT, SUBSCRIBE */
	PH_RUN,           /* publish */
	PH_DRAIN,         /* stop publishing; keep receiving and acknowledging */
	PH_STOP,          /* DISCONNECT, close, exit */
};

/* Per-worker counters: written by the worker only (relaxed load+store), read live by main. */
struct rmq_bench_counters {
	_Atomic uint64_t sent;        /* PUBLISH queued for the socket */
	_Atomic uint64_t expected;    /* deliveries the sent messages owe to this run's subscribers */
	_Atomic uint64_t acked;       /* PUBACK / PUBCOMP received */
	_Atomic uint64_t received;    /* stamped PUBLISH received from this run */
	_Atomic uint64_t dup, ooo;
	_Atomic uint64_t foreign;     /* PUBLISH without our stamp or run id */
	_Atomic uint64_t inflight;    /* gauge: QoS 1/2 unacknowledged */
	_Atomic uint64_t skipped;     /* sends the rate schedule owed but the socket/window refused */
	_Atomic uint64_t errors;      /* protocol errors, unexpected acks, failed reads/writes */
	_Atomic uint64_t conn_ok, conn_refused, conn_failed, conn_dropped;
	_Atomic uint64_t ready;       /* connected and subscribed */
	_Atomic uint64_t bytes_out, bytes_in;
	_Atomic uint64_t writes, reads; /* syscalls: how well the loader batches */
	_Atomic uint64_t cmd_received, cmd_bytes;  /* fleet: commands cars got, their PUBLISH bytes on the wire */
};

struct rmq_bench_worker;  /* opaque, worker.c */
struct ssl_ctx_st;        /* OpenSSL's SSL_CTX (tls_client.h) */

/* The run shared by main and workers. */
struct rmq_bench_run {
	const struct rmq_bench_opts *o;
	_Atomic int phase;
	_Atomic int fatal;            /* a worker hit an unrecoverable error: main stops the run */
	uint64_t run_start_ns;        /* monotonic, set before PH_RUN: the publish schedule's origin */
	uint32_t nclients;            /* total connections across workers */
	struct sockaddr_storage addr; /* the broker, resolved once by main */
	socklen_t addrlen;
	const uint64_t *fanout;       /* per client index: copies each of its publishes should reach */
	const uint32_t *worker_of;    /* per client index: the worker that owns it */
	int nworkers;
	struct rmq_bench_worker **workers;
	struct ssl_ctx_st *tls_ctx;   /* --tls-cafile: the client context every worker's sessions share */
};

/* worker.c */
struct rmq_bench_worker *rmq_bench_worker_new(struct rmq_bench_run *run, int index);
int rmq_bench_worker_start(struct rmq_bench_worker *w);
void rmq_bench_worker_join(struct rmq_bench_worker *w);
void rmq_bench_worker_free(struct rmq_bench_worker *w);
const struct rmq_bench_counters *rmq_bench_worker_counters(const struct rmq_bench_worker *w);
const struct rmq_hist *rmq_bench_worker_latency(const struct rmq_bench_worker *w);
const struct rmq_hist *rmq_bench_worker_ack_latency(const struct rmq_bench_worker *w);
const struct rmq_hist *rmq_bench_worker_connack_latency(const struct rmq_bench_worker *w);
const struct rmq_hist *rmq_bench_worker_cmd_latency(const struct rmq_bench_worker *w);
/* After join: the worker's first fatal error message (empty if none). */
const char *rmq_bench_worker_error(const struct rmq_bench_worker *w);

/* Client roles, derived from the mode and the client index (shared by workers and the report). */
struct rmq_bench_client {
	uint32_t index;
	bool publishes, subscribes;
	uint32_t pub_id;              /* stamp publisher id */
	char client_id[64];
	char topic[RMQ_BENCH_TOPIC_MAX];
	char filter[RMQ_BENCH_TOPIC_MAX];
};
uint32_t rmq_bench_client_count(const struct rmq_bench_opts *o);
/* Fills c for client i; returns 0 or -ENAMETOOLONG. */
int rmq_bench_client_describe(const struct rmq_bench_opts *o, uint32_t i, struct rmq_bench_client *c);
/* Per-publisher copies each published message should reach (subscriptions matching its topic). */
uint64_t rmq_bench_fanout(const struct rmq_bench_opts *o, uint32_t pub_client);
/* cars/{vin}/cmd of car `car` into out; returns its length or -ENAMETOOLONG. */
int rmq_bench_fleet_cmd_topic(const struct rmq_bench_opts *o, uint32_t car, char *out, size_t cap);
/* Publishers a subscriber client hears from (0 when unknown: a standalone sub). */
uint64_t rmq_bench_fanin(const struct rmq_bench_opts *o, uint32_t sub_client);
/* Spreads clients over workers by message load (a publisher: its own messages; a subscriber: everything it
 * hears), heaviest first onto the least loaded worker, so that a fan-in subscriber gets a thread of its own
 * rather than sharing one with half the publishers. Returns 0 or -ENOMEM. */
int rmq_bench_assign(const uint64_t *load, uint32_t nclients, int nworkers, uint32_t *worker_of);

/* worker.c: after join, aggregates over the run's subscriber trackers and publishers. */
struct rmq_bench_totals {
	uint64_t sent, expected, unique, dup, ooo, gaps, published_to_matching;
};
void rmq_bench_worker_totals(const struct rmq_bench_worker *w, const struct rmq_bench_opts *o,
			     struct rmq_bench_totals *acc);

uint64_t rmq_bench_now_ns(void);

#endif
