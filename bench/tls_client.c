/* ringmq-bench TLS client: context set-up (main thread) and non-blocking client sessions (the worker thread
 * that owns the socket). OpenSSL reads and writes the socket itself here: the loader's epoll loop only needs
 * to know whether to wait for readability or writability. */
#include "tls_client.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct ssl_ctx_st *rmq_bench_tls_ctx_new(const char *cafile, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "SSL_CTX_new failed");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A publisher keeps appending to its out buffer while a record write waits for room. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* One read(2) takes whatever the socket holds, not a record header and then its body: two system calls
	 * per small MQTT packet would make the loader, not the broker, the thing measured. The worker reads a
	 * TLS connection until EAGAIN, so nothing stays buffered in OpenSSL unseen by epoll. */
	SSL_CTX_set_read_ahead(ctx, 1);
	/* Every connection does a full handshake, as a car after a reboot does: no session resumption. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
		char reason[128] = "";
		ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
		snprintf(err, errlen, "--tls-cafile %s: %s", cafile, reason);
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

void rmq_bench_tls_ctx_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}

struct ssl_st *rmq_bench_tls_new(struct ssl_ctx_st *ctx, int fd)
{
	SSL *s = SSL_new(ctx);
	if (!s)
		return NULL;
	if (SSL_set_fd(s, fd) != 1) {
		SSL_free(s);
		return NULL;
	}
	SSL_set_connect_state(s);
	return s;
}

void rmq_bench_tls_free(struct ssl_st *s)
{
	SSL_free(s);
}

int rmq_bench_tls_handshake(struct ssl_st *s, char *err, size_t errlen)
{
	ERR_clear_error();
	int r = SSL_do_handshake(s);
	if (r == 1)
		return 1;
	int e = SSL_get_error(s, r);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE)
		return 2;
	char reason[160] = "connection closed";
	unsigned long code = ERR_get_error();
	if (code)
		ERR_error_string_n(code, reason, sizeof(reason));
	long v = SSL_get_verify_result(s);
	snprintf(err, errlen, "TLS handshake: %s%s%s", reason, v != X509_V_OK ? ": " : "",
		 v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
	return -1;
}

/* Maps an SSL_read/SSL_write result onto the read(2)/write(2) convention. */
static ssize_t io_result(SSL *s, int r)
{
	if (r > 0)
		return r;
	switch (SSL_get_error(s, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (!errno)
			return 0;  /* EOF without close_notify */
		return -1;
	default:
		errno = EPROTO;
		return -1;
	}
}

ssize_t rmq_bench_tls_read(struct ssl_st *s, void *buf, size_t n)
{
	ERR_clear_error();
	errno = 0;
	return io_result(s, SSL_read(s, buf, n > INT_MAX ? INT_MAX : (int)n));
}

ssize_t rmq_bench_tls_write(struct ssl_st *s, const void *buf, size_t n)
{
	ERR_clear_error();
	errno = 0;
	return io_result(s, SSL_write(s, buf, n > INT_MAX ? INT_MAX : (int)n));
}
