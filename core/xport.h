/* Connection transport stacking TLS and/or WebSocket under MQTT: socket bytes in, MQTT bytes out, and back,
 * so conn.c plugs TLS, WS and WSS listeners in at two points (recv, send). Owning reactor thread only. */
#ifndef RMQ_XPORT_H
#define RMQ_XPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls.h"
#include "ws.h"

/* WebSocket-only output waiting to be sent: past this rmq_xport_write() takes nothing more (same role as
 * RMQ_TLS_MAX_OUT, which bounds the TLS case). */
#define RMQ_XPORT_MAX_OUT (256 * 1024)

struct rmq_xport;

/* A transport for one accepted socket: TLS when tls != NULL, WebSocket (subprotocol mqtt) when ws, both for
 * WSS. max_frame bounds one incoming WebSocket data frame (the broker's max packet size is a good value).
 * NULL when out of memory. */
struct rmq_xport *rmq_xport_new(struct rmq_tls_ctx *tls, bool ws, uint64_t max_frame);
void rmq_xport_free(struct rmq_xport *x);

/* Receives MQTT bytes: called zero or more times per rmq_xport_input(), in order. */
typedef void (*rmq_xport_data_fn)(void *ud, const uint8_t *p, size_t n);

/* Takes bytes received from the socket (modified in place: WebSocket unmasking), runs the TLS handshake and
 * WebSocket Upgrade as needed and hands every MQTT byte to cb. Returns 0 (all consumed), -EPIPE when the
 * peer closed cleanly (TLS close_notify, WebSocket close), or an error: -EACCES (client certificate),
 * -EPROTO (TLS or WebSocket protocol), -EINVAL/-ENOPROTOOPT/-EPROTONOSUPPORT/-EMSGSIZE (bad Upgrade),
 * -ENOTSUP (text frame), -EILSEQ, -ENOMEM. After any return, send rmq_xport_pending(): it may hold a
 * handshake answer, a pong, an alert, an HTTP error or a close frame. After a negative return, send it and
 * close the socket. */
int rmq_xport_input(struct rmq_xport *x, uint8_t *in, size_t len, rmq_xport_data_fn cb, void *ud);

/* True once MQTT bytes may flow both ways (TLS handshake done, WebSocket upgraded). */
bool rmq_xport_ready(const struct rmq_xport *x);

/* Takes MQTT bytes to send (framed and/or encrypted into the pending output). Returns the bytes taken,
 * fewer than len (possibly 0) when the output bound is reached (keep the rest, retry after a send
 * completes), -EAGAIN before rmq_xport_ready(), or a negative error once the transport has failed. */
int rmq_xport_write(struct rmq_xport *x, const uint8_t *p, size_t len);

/* The bytes to send now; they stay valid and in place until rmq_xport_consume(), whatever else happens
 * meanwhile, so one io_uring send may be in flight on them. */
void rmq_xport_pending(struct rmq_xport *x, const uint8_t **p, size_t *len);
void rmq_xport_consume(struct rmq_xport *x, size_t n);

/* Starts a clean close: WebSocket close frame (1000) and/or TLS close_notify join the pending output. */
void rmq_xport_shutdown(struct rmq_xport *x);

/* mTLS identity (see rmq_tls_peer_name); -ENOENT without TLS or certificate. */
int rmq_xport_peer_name(const struct rmq_xport *x, char *out, size_t cap);
/* One-line reason for the last error, "" if none. */
const char *rmq_xport_error(const struct rmq_xport *x);

#endif
