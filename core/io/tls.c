/* TLS server sessions over memory BIOs: handshake, record encryption/decryption, client-certificate
 * identity. Contexts: any thread (OpenSSL makes SSL_CTX use thread-safe); a connection: its reactor only. */
#include "io/tls.h"
#include "ringmq/errbuf.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Smallest out buffer allocated: one full TLS record plus header and tag. Freed again when drained, so an
 * idle connection holds no out buffer at all. */
#define OUT_MIN 17408
#define ERR_LEN 160

struct rmq_tls_ctx {
	SSL_CTX *ssl;
	_Atomic int refs;
};

struct rmq_tls_conn {
	SSL *ssl;
	BIO *rbio; /* ciphertext from the socket, read by OpenSSL */
	BIO *wbio; /* ciphertext from OpenSSL, drained into out[] */
	enum rmq_tls_state state;
	int fail_rc;
	/* Ciphertext for the socket: [head, tail) of out. While busy (handed out by pending_out and not yet
	 * consumed) those bytes never move, because the kernel may be reading them for an io_uring send. */
	uint8_t *out;
	size_t head, tail, cap;
	bool busy;
	char err[ERR_LEN];
};

/* "what: OpenSSL's reason for the most recent error". */
static void ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char reason[128] = "unknown error";
	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	rmq_errbuf_printf(err, errlen, "%s: %s", what, reason);
	ERR_clear_error();
}

/* ---- context ----------------------------------------------------------------------------------- */

static int ctx_setup(SSL_CTX *s, const char *cert, const char *key, const char *cafile, bool require, char *err,
		     size_t errlen)
{
	if (require && !cafile) {
		rmq_errbuf_printf(err, errlen, "client certificates required but no CA file to verify them");
		return -EINVAL;
	}
	SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
	SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
	/* Session resumption with client certificates needs an id context, else resumed handshakes fail. */
	static const unsigned char sid[] = "ringmq";
	SSL_CTX_set_session_id_context(s, sid, sizeof(sid) - 1);
	if (SSL_CTX_use_certificate_chain_file(s, cert) != 1) {
		ssl_err(err, errlen, cert);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1) {
		ssl_err(err, errlen, key);
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(s) != 1) {
		ssl_err(err, errlen, "private key does not match the certificate");
		return -EINVAL;
	}
	if (!cafile) {
		SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
		return 0;
	}
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cafile);
	if (SSL_CTX_load_verify_locations(s, cafile, NULL) != 1 || !names) {
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		ssl_err(err, errlen, cafile);
		return -EINVAL;
	}
	SSL_CTX_set_client_CA_list(s, names);
	SSL_CTX_set_verify(s, SSL_VERIFY_PEER | (require ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	return 0;
}

struct rmq_tls_ctx *rmq_tls_ctx_new(const char *cert, const char *key, const char *cafile, bool require_client_cert,
				    char *err, size_t errlen)
{
	struct rmq_tls_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		rmq_errbuf_printf(err, errlen, "out of memory");
		return NULL;
	}
	ERR_clear_error();
	atomic_init(&ctx->refs, 1);
	ctx->ssl = SSL_CTX_new(TLS_server_method());
	if (!ctx->ssl) {
		ssl_err(err, errlen, "SSL_CTX_new");
		free(ctx);
		return NULL;
	}
	if (ctx_setup(ctx->ssl, cert, key, cafile, require_client_cert, err, errlen) < 0) {
		rmq_tls_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

struct rmq_tls_ctx *rmq_tls_ctx_ref(struct rmq_tls_ctx *ctx)
{
	if (ctx)
		atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
	return ctx;
}

void rmq_tls_ctx_free(struct rmq_tls_ctx *ctx)
{
	/* acq_rel: whatever a holder did with the context happens before the last one frees it */
	if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

/* ---- connection -------------------------------------------------------------------------------- */

struct rmq_tls_conn *rmq_tls_conn_new(struct rmq_tls_ctx *ctx)
{
	struct rmq_tls_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ssl = SSL_new(ctx->ssl);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->rbio || !c->wbio) {
		SSL_free(c->ssl);
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		free(c);
		ERR_clear_error();
		return NULL;
	}
	/* An empty read BIO means "wait for more", not end of file. */
	BIO_set_mem_eof_return(c->rbio, -1);
	BIO_set_mem_eof_return(c->wbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both BIOs from here */
	SSL_set_accept_state(c->ssl);
	return c;
}

void rmq_tls_conn_free(struct rmq_tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c->out);
	free(c);
}

static int fail(struct rmq_tls_conn *c, int rc, const char *what)
{
	long v = SSL_get_verify_result(c->ssl);
	if (v != X509_V_OK) {
		rc = -EACCES;
		rmq_errbuf_printf(c->err, sizeof(c->err), "client certificate: %s", X509_verify_cert_error_string(v));
		ERR_clear_error();
	} else {
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
			rc = -EACCES;
		ssl_err(c->err, sizeof(c->err), what);
	}
	c->state = RMQ_TLS_FAILED;
	c->fail_rc = rc;
	return rc;
}

static int closed_rc(const struct rmq_tls_conn *c)
{
	return c->state == RMQ_TLS_FAILED ? c->fail_rc : -EPIPE;
}

static int handshake(struct rmq_tls_conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->state = RMQ_TLS_OPEN;
		return 0;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	return fail(c, -EPROTO, "handshake");
}

int rmq_tls_feed(struct rmq_tls_conn *c, const uint8_t *in, size_t len)
{
	if (c->state == RMQ_TLS_FAILED || c->state == RMQ_TLS_CLOSED)
		return closed_rc(c);
	size_t pend = BIO_ctrl_pending(c->rbio);
	size_t take = pend >= RMQ_TLS_MAX_IN ? 0 : RMQ_TLS_MAX_IN - pend;
	if (take > len)
		take = len;
	if (take && BIO_write(c->rbio, in, (int)take) != (int)take)
		return fail(c, -EPROTO, "buffering input");
	if (c->state == RMQ_TLS_HANDSHAKE) {
		int rc = handshake(c);
		if (rc < 0)
			return rc;
	}
	return (int)take;
}

int rmq_tls_read(struct rmq_tls_conn *c, uint8_t *out, size_t cap)
{
	if (c->state == RMQ_TLS_HANDSHAKE)
		return -EAGAIN;
	if (c->state != RMQ_TLS_OPEN)
		return closed_rc(c);
	ERR_clear_error();
	int r = SSL_read(c->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		c->state = RMQ_TLS_CLOSED;
		rmq_errbuf_printf(c->err, sizeof(c->err), "peer sent close_notify");
		return -EPIPE;
	default:
		return fail(c, -EPROTO, "read");
	}
}

static size_t out_pending(const struct rmq_tls_conn *c)
{
	return c->tail - c->head + BIO_ctrl_pending(c->wbio);
}

size_t rmq_tls_write_room(const struct rmq_tls_conn *c)
{
	size_t pend = out_pending(c);
	return c->state != RMQ_TLS_OPEN || pend >= RMQ_TLS_MAX_OUT ? 0 : RMQ_TLS_MAX_OUT - pend;
}

int rmq_tls_write(struct rmq_tls_conn *c, const uint8_t *plain, size_t len)
{
	if (c->state == RMQ_TLS_HANDSHAKE)
		return -EAGAIN;
	if (c->state != RMQ_TLS_OPEN)
		return closed_rc(c);
	size_t take = rmq_tls_write_room(c);
	if (take > len)
		take = len;
	if (take == 0)
		return 0;
	ERR_clear_error();
	int r = SSL_write(c->ssl, plain, (int)take);
	if (r > 0)
		return r;
	return fail(c, -EPROTO, "write");
}

/* Moves ciphertext from the write BIO into out[], without ever moving bytes that are busy. */
static void drain_wbio(struct rmq_tls_conn *c)
{
	size_t pend = BIO_ctrl_pending(c->wbio);
	if (!pend)
		return;
	if (!c->busy && c->head) {
		memmove(c->out, c->out + c->head, c->tail - c->head);
		c->tail -= c->head;
		c->head = 0;
	}
	if (!c->busy && c->tail + pend > c->cap) {
		size_t ncap = c->tail + pend < OUT_MIN ? OUT_MIN : c->tail + pend;
		uint8_t *n = realloc(c->out, ncap);
		if (n) {
			c->out = n;
			c->cap = ncap;
		}
	}
	size_t room = c->cap - c->tail;
	size_t n = pend < room ? pend : room;
	if (n && BIO_read(c->wbio, c->out + c->tail, (int)n) == (int)n)
		c->tail += n;
}

void rmq_tls_pending_out(struct rmq_tls_conn *c, const uint8_t **ptr, size_t *len)
{
	if (!c->busy)
		drain_wbio(c);
	*ptr = c->out + c->head;
	*len = c->tail - c->head;
	c->busy = *len > 0;
}

void rmq_tls_consume_out(struct rmq_tls_conn *c, size_t n)
{
	if (n > c->tail - c->head)
		n = c->tail - c->head;
	c->head += n;
	c->busy = false;
	if (c->head == c->tail) {
		c->head = c->tail = 0;
		if (BIO_ctrl_pending(c->wbio) == 0) {
			free(c->out);
			c->out = NULL;
			c->cap = 0;
		}
	}
}

void rmq_tls_shutdown(struct rmq_tls_conn *c)
{
	if (c->state == RMQ_TLS_OPEN) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	if (c->state != RMQ_TLS_FAILED)
		c->state = RMQ_TLS_CLOSED;
}

bool rmq_tls_input_partial(const struct rmq_tls_conn *c)
{
	/* Without read-ahead OpenSSL takes a record's header out of the BIO before its body has come:
	 * SSL_has_pending sees that half, the BIO the rest. */
	return BIO_ctrl_pending(c->rbio) > 0 || SSL_has_pending(c->ssl);
}

enum rmq_tls_state rmq_tls_state(const struct rmq_tls_conn *c)
{
	return c->state;
}

const char *rmq_tls_error(const struct rmq_tls_conn *c)
{
	return c->err;
}

const char *rmq_tls_version(const struct rmq_tls_conn *c)
{
	return c->state == RMQ_TLS_HANDSHAKE ? "" : SSL_get_version(c->ssl);
}

/* ---- client identity --------------------------------------------------------------------------- */

static int copy_name(const unsigned char *s, int n, char *out, size_t cap)
{
	if (n <= 0)
		return -ENOENT;
	if (memchr(s, '\0', (size_t)n))
		return -EINVAL; /* "car-1\0.evil" must not pass as "car-1" */
	if ((size_t)n >= cap)
		return -ENOSPC;
	memcpy(out, s, (size_t)n);
	out[n] = '\0';
	return n;
}

static int first_san(const GENERAL_NAMES *gens, int type, char *out, size_t cap)
{
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == type) {
			const ASN1_IA5STRING *s = type == GEN_DNS ? g->d.dNSName : g->d.rfc822Name;
			return copy_name(ASN1_STRING_get0_data(s), ASN1_STRING_length(s), out, cap);
		}
	}
	return -ENOENT;
}

static int san_name(X509 *cert, char *out, size_t cap)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (!gens)
		return -ENOENT;
	int rc = first_san(gens, GEN_DNS, out, cap);
	if (rc == -ENOENT)
		rc = first_san(gens, GEN_EMAIL, out, cap);
	GENERAL_NAMES_free(gens);
	return rc;
}

int rmq_tls_peer_name(const struct rmq_tls_conn *c, char *out, size_t cap)
{
	if (c->state != RMQ_TLS_OPEN || SSL_get_verify_result(c->ssl) != X509_V_OK)
		return -ENOENT;
	X509 *cert = SSL_get0_peer_certificate(c->ssl);
	if (!cert)
		return -ENOENT;
	X509_NAME *subj = X509_get_subject_name(cert);
	int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
	if (idx < 0)
		return san_name(cert, out, cap);
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
	int rc = n < 0 ? -EINVAL : copy_name(utf8, n, out, cap);
	OPENSSL_free(utf8);
	return rc;
}
