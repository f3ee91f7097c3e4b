/* Room io: the reactor loop, connections (bytes, buffers, sends, close), transports, cross-core queues, timers,
 * the start-up probe, TLS reload. Every function runs on the thread of the core it is given, unless its comment says. */
#ifndef RMQ_CORE_IO_IO_H
#define RMQ_CORE_IO_IO_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct core;
struct conn;
struct session;
struct handoff;
struct rmq_packet;
struct rmq_tls_ctx;

/* probe.c: start-up checks; fills ring_flags/use_msg_ring. 0 or -1 with err filled. */
int rmq_probe(struct broker *b, char *err, size_t errlen);

/* reactor.c */
int rmq_core_run(struct core *c);                 /* thread body */
struct io_uring_sqe *core_sqe(struct core *c);    /* never NULL: submits to make room */
void core_xpush(struct core *c, int to, uint32_t kind, uint32_t arg, void *ptr);
/* rmq_wal_foreign_fn for the state log and the spool: while one drains, the other's completions reach it. */
void core_log_foreign(void *core, struct io_uring_cqe *cqe);
/* conn.c */
struct conn *conn_new(struct core *c, int fd);
struct conn *conn_lookup(struct core *c, uint32_t slot, uint32_t gen);
void conn_arm_recv(struct core *c, struct conn *cn);
void conn_on_recv(struct core *c, struct conn *cn, struct io_uring_cqe *cqe);
void conn_on_send(struct core *c, struct conn *cn, int res);
uint8_t *conn_reserve(struct core *c, struct conn *cn, size_t n);  /* NULL: slow consumer, closing */
void conn_commit(struct core *c, struct conn *cn, size_t n);
int conn_write_packet(struct core *c, struct conn *cn, const struct rmq_packet *p);
int conn_write_ack(struct core *c, struct conn *cn, uint8_t type, uint16_t pid, uint8_t reason);
void conn_flush_all(struct core *c);
void conn_close(struct core *c, struct conn *cn, bool abnormal);
void conn_disconnect(struct core *c, struct conn *cn, uint8_t reason);
void conn_pause(struct core *c, struct conn *cn, uint8_t why);
void conn_resume(struct core *c, struct conn *cn, uint8_t why);
void conn_process_input(struct core *c, struct conn *cn);
void conn_release(struct core *c, struct conn *cn);   /* frees the slot without touching the fd */
void conn_touch_keepalive(struct core *c, struct conn *cn);
void conn_force_close(struct core *c, struct conn *cn);  /* linger expired */
void conn_reap(struct core *c);                       /* frees released connections */

/* tls_reload.c: SIGHUP certificate reload. init/reload/free: main thread (init before the reactors start,
 * free after they stopped); core_tls_ctx: the core's own thread, at a TLS accept. rmq_tls_reload returns 0,
 * or -EINVAL with the reason in err (the running context stays). */
void core_tls_init(struct broker *b);
struct rmq_tls_ctx *core_tls_ctx(struct core *c);
int rmq_tls_reload(struct broker *b, char *err, size_t errlen);
void core_tls_free(struct broker *b);

#endif
