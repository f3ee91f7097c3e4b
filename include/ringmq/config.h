/* The broker's configuration as data: what main fills from the command line and the config file (ops/config.c) and
 * every room reads. Written by the main thread before any reactor starts; read-only afterwards, from any thread. */
#ifndef RINGMQ_CONFIG_H
#define RINGMQ_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

/* The options the security module owns, filled by the broker's option parser through
 * rmq_security_option() (so config.c needs no knowledge of them, as with the bridge's options). */
#define RMQ_SECURITY_PATH_MAX 1024
struct rmq_security_cfg {
	char password_file[RMQ_SECURITY_PATH_MAX]; /* "" = none */
	char acl_file[RMQ_SECURITY_PATH_MAX];      /* "" = none */
	int allow_anonymous;                       /* -1 = default (see rmq_security_load) */
	uint32_t fail_burst;                       /* failed logins per address before refusing; 0 = no limit */
	uint32_t fail_per_minute;                  /* tokens regained per minute */
};

#define RMQ_MAX_LISTEN 16   /* --listen* may repeat; a handful of addresses is plenty for one node */
#define RMQ_MAX_CORES 256   /* bounds --cores and --cpu-list (a per-core table is sized by it) */
/* Upper bounds of --max-connections and --max-inflight: the completion cookie (mqtt/cookie.h) sizes its
 * connection-slot and ack-window fields by them. */
#define RMQ_MAX_CONNECTIONS_LIMIT 10000000u
#define RMQ_MAX_INFLIGHT_LIMIT 65535u

/* Transport of a listener: bits, so WSS is TLS | WS. */
#define RMQ_LISTEN_TLS 0x01
#define RMQ_LISTEN_WS 0x02

struct rmq_listen_addr {
	char host[64];          /* numeric IPv4 or IPv6 (without brackets) */
	uint16_t port;
	uint8_t kind;           /* 0 plain MQTT over TCP, else RMQ_LISTEN_* bits */
};

struct rmq_config {
	struct rmq_listen_addr listen[RMQ_MAX_LISTEN];
	int nlisten;            /* 0 until a --listen is given; defaults applied by rmq_config_finish() */
	int cores;              /* 0 until rmq_config_finish: then --cores, else the CPUs of the affinity mask */
	bool cores_default;     /* cores came from the affinity mask (the start line says so) */
	bool cores_from_data_dir;  /* not given: taken from --data-dir's meta file (the start line says so) */
	int cpus[RMQ_MAX_CORES];
	int ncpus;              /* core i runs on cpus[i % ncpus]: --cpu-list, else the affinity mask */
	uint32_t ring_entries;
	uint32_t bufs_per_core;
	uint32_t batch_wait_us;     /* --batch-wait-us: how long a reactor waits to gather completions */
	uint32_t buf_size;
	uint32_t max_connections;
	uint32_t max_packet_size;
	uint32_t max_inflight;
	uint32_t max_queued;
	uint32_t max_keepalive;
	uint32_t sys_interval;  /* $SYS/broker/... publish period in seconds; 0 = off (sys_topics.c) */
	/* Hardening (limits.c): what one connection may cost the broker. */
	uint32_t max_control_rate;     /* PINGREQ/SUBSCRIBE/UNSUBSCRIBE per second per connection; 0 = no limit */
	uint32_t max_topic_levels;     /* levels in a PUBLISH topic, will topic or subscription filter */
	uint32_t max_subscriptions;    /* filters one session holds; 0 = no limit */
	uint32_t max_user_properties;  /* v5 User Properties in one packet (a will's counted apart) */
	uint32_t packet_timeout;       /* seconds a started packet may take to arrive in full; 0 = no limit */
	int verbose;
	bool max_connections_set;   /* given explicitly: the nofile check is then fatal */
	char tls_cert[512], tls_key[512], tls_cafile[512];  /* --cert, --key, --cafile ("" = not given) */
	bool require_certificate;   /* --require-certificate: mTLS, the certificate's CN/SAN is the username */
	struct rmq_security_cfg sec; /* --password-file, --acl-file, --allow-anonymous (security.c parses them) */
	struct rmq_listen_addr metrics;  /* --metrics: Prometheus endpoint (metrics_http.c) */
	bool metrics_on;
	/* Durability (#9): persist.c and spool wiring read these; "" = in memory only. */
	char data_dir[512];         /* --data-dir: DIR/core-N/{state,spool} */
	int fsync_policy;           /* --fsync: enum rmq_wal_fsync (batch by default) */
	bool spool;                 /* --spool: Kafka spool in DIR/core-N/spool (needs --data-dir) */
	uint64_t spool_max_bytes;   /* --spool-max-bytes: per core; past it, backpressure */
	bool proxy_protocol;        /* --proxy-protocol: listeners expect a PROXY v1/v2 header first */
};

#endif
