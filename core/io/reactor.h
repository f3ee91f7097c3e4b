/* One core (struct core: its ring, connection slab, cross-core queues, and the per-core state of the rooms above,
 * held as index structures or pointers to types they own) and the broker (process-wide). Each core's own thread
 * touches its struct core, other threads only the fields marked atomic; struct broker is read-only after start. */
#ifndef RMQ_CORE_IO_REACTOR_H
#define RMQ_CORE_IO_REACTOR_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "index/strmap.h"
#include "io/counters.h"
#include "io/io.h"
#include "io/timer.h"
#include "io/xq.h"
#include "ringmq/config.h"

struct rmq_trie;
struct rmq_retain;
struct mqtt_core;
struct rmq_sys;
struct rmq_bridge;
struct rmq_bridge_core;
struct rmq_metrics_srv;
struct rmq_security;
struct rmq_persist;
struct kspool;
struct rmq_tls_ctx;

_Static_assert(RMQ_MAX_CONNECTIONS_LIMIT < RMQ_CONN_SLOTS_MAX, "--max-connections must fit the slot field");

/* ---- cross-core queue entry kinds: the protocol's, declared here because the reactor tells the droppable data kinds
 * (XK_PUBLISH, XK_RETAIN) apart when an outbox is full; io passes the others up unread (c->proto->xentry). */
enum xkind {
	XK_HANDOFF = 1,  /* ptr: struct handoff (fd + CONNECT + unread bytes) */
	XK_PUBLISH,      /* ptr: struct rmq_msg, one ref for the receiver */
	XK_RETAIN,       /* ptr: struct rmq_msg to store as retained (one ref) */
	XK_ROUTE_ADD,    /* ptr: struct route_upd; arg: origin core; receiver answers XK_ROUTE_ACK */
	XK_ROUTE_DEL,    /* same, removal */
	XK_ROUTE_ACK,    /* ptr: the origin's struct route_upd coming back */
	XK_DURABLE,      /* ptr: an ack-window cookie of the receiver (persist.c); arg: 1 if the log failed */
};

/* ---- one core: its thread touches everything here, except the fields marked otherwise ---------------------- */
struct core {
	int id;
	struct broker *b;
	const struct rmq_proto_ops *proto;  /* the protocol above io (io/io.h), set by main before the thread starts */
	const struct rmq_store_hooks *store_hooks;  /* the store's calls up (store/store.h), set by main likewise */
	const struct rmq_io_hooks *io_hooks;        /* io's calls to store and ops (io/io.h), set by main likewise */
	pthread_t thread;
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint32_t nbufs, buf_size;
	int buf_returns;         /* buffers added since the last advance */
	uint32_t bufs_used;      /* receives into buffers since the last trim (reactor.c trim_bufs) */
	uint64_t bufs_trim_ms;   /* when the tick looks again */
	bool bufs_trim;          /* hand the receive buffers' pages back once no completion is waiting */
	int *listen_fds;
	/* connection slab */
	struct conn **slots;
	uint32_t *gens;
	uint32_t *holds;         /* completions still to come for the slot (rmq_conn_hold): not reused before 0 */
	uint32_t nslots, slots_cap;
	uint32_t *free_slots;
	uint32_t nfree;
	uint32_t nconns;
	struct conn *dirty, *paused, *graveyard;
	/* state */
	struct rmq_trie *subs, *routes;
	struct rmq_retain *retained;
	struct rmq_strmap sessions;
	struct rmq_wheel wheel;
	struct mqtt_core *mq;        /* the mqtt room's per-core state (mqtt/mqtt.h); io never reads it */
	struct rmq_sys *sys;         /* $SYS publishing (ops/sys_topics.h), core 0 only, else NULL; io never reads it */
	uint64_t now_ms;
	/* cross-core */
	struct rmq_xq_wake wake;
	int efd;
	uint64_t efd_val;
	struct outbox *outboxes;     /* one per destination core */
	bool outbox_pending;
	struct rmq_bridge_core *bc;
	struct kspool *kspool;       /* --spool (kafka_spool.c); NULL when off */
	struct __kernel_timespec tick_ts;
	atomic_bool stop;
	bool stopping;
	struct counters st;
	struct rmq_metrics_snap snap;   /* st and the gauges as of the last tick: /metrics, $SYS (core 0) */
	struct rmq_persist *persist;  /* durable state log (persist.c); NULL without --data-dir */
	struct rmq_tls_ctx *tls;     /* this core's reference to the context of new TLS connections (tls_reload.c) */
	struct rmq_tls_ctx *_Atomic tls_next;  /* a reloaded context main hands over; the core takes it */
};

/* ---- the process: written by main before the reactors start, read-only afterwards except the atomics ---- */
struct broker {
	struct rmq_config cfg;
	int ncores;
	struct core *cores;
	struct rmq_xq *xq;           /* xq[from * ncores + to] */
	struct rmq_bridge *bridge;
	struct rmq_security *sec;    /* password db, ACL, anonymous policy (security room; main owns it, read-only while
	                             * running) */
	struct rmq_tls_ctx *tls;     /* server context for TLS/WSS listeners (NULL: none configured) */
	bool use_msg_ring;
	unsigned ring_flags;         /* the setup flags the probe found working */
	bool min_wait;               /* the kernel bounds batched waits (--batch-wait-us; 6.12+) */
	int nlisten_fds;
	int *listen_fds;             /* [core * nlisten + i] */
	_Atomic uint32_t nconns;     /* process-wide, to enforce --max-connections */
	_Atomic uint64_t stamp;      /* retained-message order across cores */
	uint32_t out_limit;          /* slow consumer: staged bytes beyond this disconnect */
	_Atomic int ready, failed;   /* cores done with set-up / failed it */
	_Atomic int go;              /* listeners are listening: cores may arm their accepts */
	struct rmq_metrics_srv *metrics;  /* --metrics server (main thread), NULL when off */
	_Atomic int quiesced;        /* cores that stopped reading clients at SIGTERM (reactor.c quiesce) */
};


/* A line on stderr when --verbose is on (any thread that holds a core). */
#define VLOG(c, ...) do { if ((c)->b->cfg.verbose) fprintf(stderr, __VA_ARGS__); } while (0)

#endif
