/* ringmq-bench's TLS client side: one shared client context (main thread builds it before the workers start,
 * read-only afterwards) and per-connection sessions over non-blocking sockets (the worker owning the socket). */
#ifndef RMQ_BENCH_TLS_CLIENT_H
#define RMQ_BENCH_TLS_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

struct ssl_ctx_st;
struct ssl_st;

/* A TLS 1.2+ client context that verifies the broker's certificate chain against cafile (PEM). The host
 * name is not checked: the loader connects to an address it was given, and what it measures is the cost
 * of the handshake and the records, which the name check does not change. NULL with err filled. */
struct ssl_ctx_st *rmq_bench_tls_ctx_new(const char *cafile, char *err, size_t errlen);
void rmq_bench_tls_ctx_free(struct ssl_ctx_st *ctx);

/* A client session on a connected non-blocking socket; NULL when out of memory. */
struct ssl_st *rmq_bench_tls_new(struct ssl_ctx_st *ctx, int fd);
void rmq_bench_tls_free(struct ssl_st *s);

/* Advances the handshake: 1 done, 0 waiting to read, 2 waiting to write, -1 failed (reason in err). */
int rmq_bench_tls_handshake(struct ssl_st *s, char *err, size_t errlen);

/* read(2)/write(2) with TLS records: bytes (> 0); 0 when the peer closed (read); -1 with errno EAGAIN when
 * the socket has nothing / no room (poll and retry; a write retried later must include the bytes it
 * offered before, which an append-only out buffer does), or another errno on failure. */
ssize_t rmq_bench_tls_read(struct ssl_st *s, void *buf, size_t n);
ssize_t rmq_bench_tls_write(struct ssl_st *s, const void *buf, size_t n);

#endif
