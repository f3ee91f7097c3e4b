/* TLS 1.2/1.3 server sessions over OpenSSL memory BIOs: the io_uring reactor keeps all socket I/O and batching.
 * A context may be shared by every reactor thread; a connection belongs to the reactor that owns its socket. */
#ifndef RMQ_TLS_H
#define RMQ_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ciphertext accepted by rmq_tls_feed() but not yet turned into plaintext: past this the caller must read
 * plaintext out before feeding more (it stops reading the socket meanwhile). Four full TLS records. */
#define RMQ_TLS_MAX_IN (4 * 16709)
/* Ciphertext waiting to be sent: past this rmq_tls_write() accepts nothing more until the reactor has
 * sent some (the slow-consumer policy then applies as for plain TCP). */
#define RMQ_TLS_MAX_OUT (256 * 1024)

struct rmq_tls_ctx;
struct rmq_tls_conn;

enum rmq_tls_state {
	RMQ_TLS_HANDSHAKE = 0, /* handshake in progress: feed ciphertext, send pending output */
	RMQ_TLS_OPEN,          /* read/write plaintext */
	RMQ_TLS_CLOSED,        /* the peer sent close_notify; send what is pending, then close */
	RMQ_TLS_FAILED,        /* fatal error (reason in rmq_tls_error); send pending output (the alert), close */
};

/* Builds a server context: certificate chain (PEM, leaf first) and private key (PEM); cafile (PEM, may be
 * NULL) holds the CAs client certificates are verified against. With require_client_cert (mTLS) a client
 * without a certificate valid under cafile fails the handshake; without it, a certificate is requested when
 * cafile is set and verified if sent. TLS 1.2 is the minimum; client-initiated renegotiation and compression
 * are off; idle connections release their record buffers (cars idle most of the time). Returns NULL with
 * a one-line reason in err (unreadable file, key not matching the certificate, require_client_cert without
 * cafile). Start-up or SIGHUP, any thread: connections keep a reference, so a context replaced on reload may
 * be freed while its connections live on. */
struct rmq_tls_ctx *rmq_tls_ctx_new(const char *cert, const char *key, const char *cafile, bool require_client_cert,
				    char *err, size_t errlen);
/* Contexts are reference counted (atomically: main and the reactors hold references): a new one has one
 * reference; rmq_tls_ctx_ref adds one and returns ctx, rmq_tls_ctx_free drops one and frees on the last. */
struct rmq_tls_ctx *rmq_tls_ctx_ref(struct rmq_tls_ctx *ctx);
void rmq_tls_ctx_free(struct rmq_tls_ctx *ctx);

/* A server session for one accepted socket, in RMQ_TLS_HANDSHAKE. NULL when out of memory. */
struct rmq_tls_conn *rmq_tls_conn_new(struct rmq_tls_ctx *ctx);
void rmq_tls_conn_free(struct rmq_tls_conn *c);

/* Hands ciphertext received from the socket to the session and advances the handshake. Returns the bytes
 * taken (fewer than len only when RMQ_TLS_MAX_IN is reached: keep the rest and read plaintext first; 0 then
 * means "read plaintext before feeding more"), or
 *   -EPROTO  the handshake or record layer failed (garbage, version or cipher mismatch, bad MAC)
 *   -EACCES  the client certificate was missing or not valid under cafile (mTLS)
 * After an error the state is RMQ_TLS_FAILED: send rmq_tls_pending_out() (it holds the alert) and close.
 * After any call, check rmq_tls_pending_out(): the handshake produces output in response to input. */
int rmq_tls_feed(struct rmq_tls_conn *c, const uint8_t *in, size_t len);

/* Plaintext from the peer into out. Returns bytes (> 0), -EAGAIN when no whole record is buffered (feed
 * more), -EPIPE when the peer sent close_notify (state RMQ_TLS_CLOSED), -EPROTO on a fatal error.
 * Call until -EAGAIN after each feed: one feed may carry several records. */
int rmq_tls_read(struct rmq_tls_conn *c, uint8_t *out, size_t cap);

/* Encrypts plaintext for the peer; the ciphertext joins the pending output. Returns the bytes taken (fewer
 * than len, possibly 0, when RMQ_TLS_MAX_OUT of ciphertext is already waiting), -EAGAIN before the handshake
 * has finished, -EPROTO / -EPIPE once the session has failed / closed. */
int rmq_tls_write(struct rmq_tls_conn *c, const uint8_t *plain, size_t len);

/* Plaintext bytes rmq_tls_write() would take right now (0 when RMQ_TLS_MAX_OUT is reached or the session
 * is not open): lets a caller that frames its data (WebSocket) write only whole frames. */
size_t rmq_tls_write_room(const struct rmq_tls_conn *c);

/* The ciphertext to send now, in *ptr and *len (len 0: nothing). The bytes stay valid and in place until
 * rmq_tls_consume_out(), whatever other rmq_tls_* calls happen meanwhile, so the reactor may keep one
 * io_uring send in flight on them while it goes on reading. Output produced meanwhile is appended behind
 * them (or, when the buffer is full, held back inside OpenSSL) and shows up after the consume. */
void rmq_tls_pending_out(struct rmq_tls_conn *c, const uint8_t **ptr, size_t *len);
/* The first n bytes of the last rmq_tls_pending_out() were sent (n <= that len). */
void rmq_tls_consume_out(struct rmq_tls_conn *c, size_t n);

/* Queues close_notify (when open) and moves to RMQ_TLS_CLOSED; send the pending output, then close. */
void rmq_tls_shutdown(struct rmq_tls_conn *c);

enum rmq_tls_state rmq_tls_state(const struct rmq_tls_conn *c);
/* True when ciphertext of an unfinished record is buffered (after rmq_tls_read returned -EAGAIN): the peer
 * has started a record and not finished it (the broker bounds how long that may take). */
bool rmq_tls_input_partial(const struct rmq_tls_conn *c);
/* Last error reason (OpenSSL's text or ours), "" when none. Valid until the next call on c. */
const char *rmq_tls_error(const struct rmq_tls_conn *c);
/* Negotiated protocol, e.g. "TLSv1.3"; "" during the handshake. */
const char *rmq_tls_version(const struct rmq_tls_conn *c);

/* The verified client certificate's identity for mTLS usernames: the subject CN, else the first DNS SAN,
 * else the first email SAN. Copies it NUL-terminated into out and returns its length; -ENOENT when there
 * is no verified certificate or it has none of these, -EINVAL when the name holds a NUL byte, -ENOSPC when
 * cap is too small. Only in RMQ_TLS_OPEN. */
int rmq_tls_peer_name(const struct rmq_tls_conn *c, char *out, size_t cap);

#endif
