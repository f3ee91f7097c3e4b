/* Connection transport stacking TLS and/or WebSocket under MQTT: socket bytes in, MQTT bytes out, and back,
 * so conn.c plugs TLS, WS and WSS listeners in at two points (recv, send). Owning reactor thread only. */
#ifndef RMQ_XPORT_H
#define RMQ_XPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/tls.h"
#include "io/ws.h"

/* WebSocket-only output waiting to be sent: past this rmq_xport_write() takes nothing more (same role as
 * RMQ_TLS_MAX_OUT, which bounds the TLS case). */
#define RMQ_XPORT_MAX_OUT (256 * 1024)

/* Plugging it into the reactor (conn.c), for TLS/WS/WSS listeners:
 *  - accept on such a listener: cn->xp = rmq_xport_new(ctx, ws, max_packet_size);
 *  - recv completion: rmq_xport_input(cn->xp, buf, res, cb, cn) instead of parse(); cb does what the
 *    plain path does with its bytes (parse, or append to rbuf while paused/handing off); afterwards mark
 *    the connection dirty if rmq_xport_pending() is non-empty (handshake answers); < 0: flush, close;
 *  - start_send: rmq_xport_write(cn->xp, out) (keep what it did not take), then send the region from
 *    rmq_xport_pending() instead of the swapped obuf; send completion: rmq_xport_consume(res);
 *  - CONNECT: rmq_xport_peer_name() is the mTLS identity (rmq_security_login.cert_name, and the username
 *    ACLs see); handoff: the xport pointer travels with the fd (it is not tied to a thread);
 *  - close: rmq_xport_shutdown(), flush, then rmq_xport_free(). */
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

/* True when the transport holds the start of a TLS record or WebSocket frame header it cannot use yet (after
 * rmq_xport_input): bytes that trickle in below MQTT, which the packet deadline must see too. */
bool rmq_xport_partial(const struct rmq_xport *x);

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
