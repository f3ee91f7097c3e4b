/* Unit tests for core/io/tls.c: in-memory OpenSSL client (TLS 1.3/1.2, 1.1 refused, data, bounds, mTLS, garbage,
 * close_notify) and mosquitto_pub over loopback, with certificates made at test time by the openssl CLI. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sec_stub.h"
#include "io/tls.h"

static char dir[64];
static char path_buf[8][160];

static const char *P(int slot, const char *name)
{
	snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s", dir, name);
	return path_buf[slot];
}

static void setup(void)
{
	stub_certs_make(dir, "/tmp/rmq-tls-XXXXXX");
}

static void teardown(void)
{
	stub_rmdir(dir);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

/* ---- an in-memory OpenSSL client ---- */

struct cli {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rb, *wb;
};

static struct cli cli_new(const char *cert, const char *key, int max_version)
{
	struct cli c = { 0 };
	c.ctx = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(c.ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(c.ctx, P(7, "ca.pem"), NULL), 1);
	SSL_CTX_set_verify(c.ctx, SSL_VERIFY_PEER, NULL);
	if (max_version) {
		SSL_CTX_set_security_level(c.ctx, 0); /* let the client offer what the server must refuse */
		SSL_CTX_set_min_proto_version(c.ctx, 0);
		SSL_CTX_set_max_proto_version(c.ctx, max_version);
	}
	if (cert) {
		cr_assert_eq(SSL_CTX_use_certificate_file(c.ctx, cert, SSL_FILETYPE_PEM), 1);
		cr_assert_eq(SSL_CTX_use_PrivateKey_file(c.ctx, key, SSL_FILETYPE_PEM), 1);
	}
	c.ssl = SSL_new(c.ctx);
	c.rb = BIO_new(BIO_s_mem());
	c.wb = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(c.rb, -1);
	SSL_set_bio(c.ssl, c.rb, c.wb);
	SSL_set_connect_state(c.ssl);
	SSL_set_tlsext_host_name(c.ssl, "localhost");
	SSL_set1_host(c.ssl, "localhost");
	return c;
}

static void cli_free(struct cli *c)
{
	SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
	ERR_clear_error();
}

/* Moves bytes both ways until neither side has anything to say. Returns the first negative feed result
 * (0 if none). The client handshake runs along; its failure is the caller's to check. */
static int pump(struct rmq_tls_conn *s, struct cli *c)
{
	static uint8_t buf[1 << 16];
	int first_err = 0;
	for (int round = 0; round < 10000; round++) {
		bool moved = false;
		if (!SSL_is_init_finished(c->ssl))
			SSL_do_handshake(c->ssl);
		int n = BIO_read(c->wb, buf, sizeof(buf));
		for (int off = 0; n > 0 && off < n && !first_err;) {
			int rc = rmq_tls_feed(s, buf + off, (size_t)(n - off));
			if (rc < 0)
				first_err = rc;
			else
				off += rc;
			cr_assert(rc != 0, "feed made no progress: the test must read plaintext first");
			moved = true;
		}
		const uint8_t *p;
		size_t len;
		rmq_tls_pending_out(s, &p, &len);
		if (len) {
			cr_assert_eq(BIO_write(c->rb, p, (int)len), (int)len);
			rmq_tls_consume_out(s, len);
			moved = true;
		}
		if (!moved)
			return first_err;
	}
	cr_assert_fail("pump did not settle");
	return 0;
}

static struct rmq_tls_ctx *server(bool with_ca, bool require)
{
	char err[256] = "";
	struct rmq_tls_ctx *ctx = rmq_tls_ctx_new(P(0, "server.pem"), P(1, "server.key"), with_ca ? P(2, "ca.pem") : NULL,
						  require, err, sizeof(err));
	cr_assert_not_null(ctx, "%s", err);
	return ctx;
}

/* Sends len bytes client->server and checks they arrive, across as many records and pumps as needed. */
static void client_to_server(struct rmq_tls_conn *s, struct cli *c, const uint8_t *data, size_t len)
{
	static uint8_t got[1 << 20];
	size_t sent = 0, recv = 0;
	while (recv < len) {
		if (sent < len) {
			size_t chunk = len - sent > 16384 ? 16384 : len - sent;
			cr_assert_eq(SSL_write(c->ssl, data + sent, (int)chunk), (int)chunk);
			sent += chunk;
		}
		cr_assert_eq(pump(s, c), 0);
		int n;
		while ((n = rmq_tls_read(s, got + recv, sizeof(got) - recv)) > 0)
			recv += (size_t)n;
		cr_assert_eq(n, -EAGAIN);
	}
	cr_assert_eq(recv, len);
	cr_assert_eq(memcmp(got, data, len), 0);
}

static void server_to_client(struct rmq_tls_conn *s, struct cli *c, const uint8_t *data, size_t len)
{
	static uint8_t got[1 << 20];
	size_t sent = 0, recv = 0;
	while (recv < len) {
		if (sent < len) {
			int n = rmq_tls_write(s, data + sent, len - sent);
			cr_assert_geq(n, 0);
			cr_assert_leq((size_t)n, RMQ_TLS_MAX_OUT);
			sent += (size_t)n;
		}
		cr_assert_eq(pump(s, c), 0);
		int n;
		while ((n = SSL_read(c->ssl, got + recv, (int)(sizeof(got) - recv))) > 0)
			recv += (size_t)n;
	}
	cr_assert_eq(recv, len);
	cr_assert_eq(memcmp(got, data, len), 0);
}

static void handshake_ok(struct rmq_tls_conn *s, struct cli *c)
{
	cr_assert_eq(rmq_tls_state(s), RMQ_TLS_HANDSHAKE);
	cr_assert_eq(pump(s, c), 0, "server: %s", rmq_tls_error(s));
	cr_assert_eq(rmq_tls_state(s), RMQ_TLS_OPEN, "server: %s", rmq_tls_error(s));
	cr_assert(SSL_is_init_finished(c->ssl), "client handshake did not finish");
}

Test(tls, tls13_handshake_and_data_both_ways)
{
	struct rmq_tls_ctx *ctx = server(false, false);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(NULL, NULL, 0);
	uint8_t tmp[16];
	cr_assert_eq(rmq_tls_write(s, (const uint8_t *)"x", 1), -EAGAIN);
	cr_assert_eq(rmq_tls_read(s, tmp, sizeof(tmp)), -EAGAIN);
	cr_assert_str_eq(rmq_tls_version(s), "");
	handshake_ok(s, &c);
	cr_assert_str_eq(rmq_tls_version(s), "TLSv1.3");
	cr_assert_eq(rmq_tls_peer_name(s, (char *)tmp, sizeof(tmp)), -ENOENT);
	client_to_server(s, &c, (const uint8_t *)"\x10\x0c\x00\x04MQTT", 8);
	server_to_client(s, &c, (const uint8_t *)"\x20\x02\x00\x00", 4);
	static uint8_t big[700000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31 + 7);
	client_to_server(s, &c, big, sizeof(big));
	server_to_client(s, &c, big, sizeof(big));
	rmq_tls_conn_free(s);
	rmq_tls_ctx_free(ctx);
	cli_free(&c);
}

Test(tls, tls12_negotiated_tls11_refused)
{
	struct rmq_tls_ctx *ctx = server(false, false);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(NULL, NULL, TLS1_2_VERSION);
	handshake_ok(s, &c);
	cr_assert_str_eq(rmq_tls_version(s), "TLSv1.2");
	client_to_server(s, &c, (const uint8_t *)"ping", 4);
	server_to_client(s, &c, (const uint8_t *)"pong", 4);
	rmq_tls_conn_free(s);
	cli_free(&c);

	s = rmq_tls_conn_new(ctx);
	c = cli_new(NULL, NULL, TLS1_1_VERSION);
	cr_assert_eq(pump(s, &c), -EPROTO);
	cr_assert_eq(rmq_tls_state(s), RMQ_TLS_FAILED);
	cr_assert(strstr(rmq_tls_error(s), "handshake"), "%s", rmq_tls_error(s));
	cr_assert_not(SSL_is_init_finished(c.ssl));
	rmq_tls_conn_free(s);
	cli_free(&c);
	rmq_tls_ctx_free(ctx);
}

static int mtls_name(const char *cert, const char *key, char *name, size_t cap)
{
	struct rmq_tls_ctx *ctx = server(true, true);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	rmq_tls_ctx_free(ctx); /* connections keep the context alive (reload case) */
	struct cli c = cli_new(cert, key, 0);
	handshake_ok(s, &c);
	int rc = rmq_tls_peer_name(s, name, cap);
	client_to_server(s, &c, (const uint8_t *)"after mTLS", 10);
	rmq_tls_conn_free(s);
	cli_free(&c);
	return rc;
}

Test(tls, mtls_identity_from_cn_then_san)
{
	char name[64];
	cr_assert_eq(mtls_name(P(3, "client.pem"), P(4, "client.key"), name, sizeof(name)), 6);
	cr_assert_str_eq(name, "car-42", "the CN wins over SANs");
	cr_assert_eq(mtls_name(P(3, "client_san.pem"), P(4, "client_san.key"), name, sizeof(name)), 11);
	cr_assert_str_eq(name, "car-7.fleet", "no CN: first DNS SAN before email");
	cr_assert_eq(mtls_name(P(3, "client_email.pem"), P(4, "client_email.key"), name, sizeof(name)), 19);
	cr_assert_str_eq(name, "car-9@fleet.example");
	cr_assert_eq(mtls_name(P(3, "client.pem"), P(4, "client.key"), name, 6), -ENOSPC);
}

static void mtls_refused(const char *cert, const char *key)
{
	struct rmq_tls_ctx *ctx = server(true, true);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(cert, key, 0);
	cr_assert_eq(pump(s, &c), -EACCES, "server: %s", rmq_tls_error(s));
	cr_assert_eq(rmq_tls_state(s), RMQ_TLS_FAILED);
	cr_assert(strstr(rmq_tls_error(s), "certificate"), "%s", rmq_tls_error(s));
	/* the alert reached the client, which now fails too */
	uint8_t b[8];
	cr_assert_leq(SSL_read(c.ssl, b, sizeof(b)), 0);
	char name[32];
	cr_assert_eq(rmq_tls_peer_name(s, name, sizeof(name)), -ENOENT);
	cr_assert_eq(rmq_tls_feed(s, b, 1), -EACCES, "a failed session stays failed");
	cr_assert_eq(rmq_tls_read(s, b, sizeof(b)), -EACCES);
	cr_assert_eq(rmq_tls_write(s, b, 1), -EACCES);
	rmq_tls_conn_free(s);
	rmq_tls_ctx_free(ctx);
	cli_free(&c);
}

Test(tls, mtls_unknown_certificate_refused)
{
	mtls_refused(P(3, "intruder.pem"), P(4, "intruder.key"));
}

Test(tls, mtls_missing_certificate_refused)
{
	mtls_refused(NULL, NULL);
}

Test(tls, optional_client_certificate)
{
	struct rmq_tls_ctx *ctx = server(true, false);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(NULL, NULL, 0);
	handshake_ok(s, &c);
	char name[32];
	cr_assert_eq(rmq_tls_peer_name(s, name, sizeof(name)), -ENOENT);
	rmq_tls_conn_free(s);
	cli_free(&c);
	/* a certificate that is sent must still verify */
	s = rmq_tls_conn_new(ctx);
	c = cli_new(P(3, "intruder.pem"), P(4, "intruder.key"), 0);
	cr_assert_eq(pump(s, &c), -EACCES);
	rmq_tls_conn_free(s);
	cli_free(&c);
	rmq_tls_ctx_free(ctx);
}

Test(tls, garbage_is_a_clean_error)
{
	struct rmq_tls_ctx *ctx = server(true, false);
	const char *junk[] = { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c",
			       "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", "\x16\x03\x03\xff\xff" };
	for (size_t i = 0; i < sizeof(junk) / sizeof(*junk); i++) {
		struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
		int rc = rmq_tls_feed(s, (const uint8_t *)junk[i], strlen(junk[i]));
		if (rc >= 0) /* a plausible record header: the failure comes with the rest of the record */
			rc = rmq_tls_feed(s, (const uint8_t *)"\x00\x00\x00\x00\x00\x00\x00\x00", 8);
		cr_assert_eq(rc, -EPROTO, "junk %zu: rc %d", i, rc);
		cr_assert_eq(rmq_tls_state(s), RMQ_TLS_FAILED);
		cr_assert_neq(rmq_tls_error(s)[0], '\0');
		const uint8_t *p;
		size_t len;
		rmq_tls_pending_out(s, &p, &len); /* an alert (or nothing); must be safe to send */
		rmq_tls_consume_out(s, len);
		rmq_tls_conn_free(s);
	}
	/* a corrupted record after the handshake: bad MAC */
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(NULL, NULL, 0);
	handshake_ok(s, &c);
	cr_assert_eq(SSL_write(c.ssl, "secret", 6), 6);
	uint8_t rec[256];
	int n = BIO_read(c.wb, rec, sizeof(rec));
	cr_assert_gt(n, 6);
	rec[n - 1] ^= 0x55;
	cr_assert_eq(rmq_tls_feed(s, rec, (size_t)n), n);
	uint8_t out[64];
	cr_assert_eq(rmq_tls_read(s, out, sizeof(out)), -EPROTO);
	cr_assert_eq(rmq_tls_state(s), RMQ_TLS_FAILED);
	rmq_tls_conn_free(s);
	cli_free(&c);
	rmq_tls_ctx_free(ctx);
}

Test(tls, close_notify_both_directions)
{
	struct rmq_tls_ctx *ctx = server(false, false);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(NULL, NULL, 0);
	handshake_ok(s, &c);
	SSL_shutdown(c.ssl);
	cr_assert_eq(pump(s, &c), 0);
	uint8_t b[16];
	cr_assert_eq(rmq_tls_read(s, b, sizeof(b)), -EPIPE);
	cr_assert_eq(rmq_tls_state(s), RMQ_TLS_CLOSED);
	cr_assert_eq(rmq_tls_write(s, b, 1), -EPIPE);
	rmq_tls_conn_free(s);
	cli_free(&c);

	s = rmq_tls_conn_new(ctx);
	c = cli_new(NULL, NULL, 0);
	handshake_ok(s, &c);
	rmq_tls_shutdown(s);
	cr_assert_eq(rmq_tls_state(s), RMQ_TLS_CLOSED);
	cr_assert_eq(pump(s, &c), 0);
	cr_assert_eq(SSL_read(c.ssl, b, sizeof(b)), 0);
	cr_assert_eq(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN, "client must see close_notify");
	rmq_tls_conn_free(s);
	cli_free(&c);
	rmq_tls_ctx_free(ctx);
}

Test(tls, pending_out_stays_put_while_a_send_is_in_flight)
{
	struct rmq_tls_ctx *ctx = server(false, false);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(NULL, NULL, 0);
	handshake_ok(s, &c);
	static uint8_t a[20000], b[60000], snap[100000];
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	cr_assert_eq(rmq_tls_write(s, a, sizeof(a)), (int)sizeof(a));
	const uint8_t *p1;
	size_t l1;
	rmq_tls_pending_out(s, &p1, &l1);
	cr_assert_gt(l1, sizeof(a));
	memcpy(snap, p1, l1);
	/* "send in flight": more output must not move or change those bytes */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rmq_tls_write(s, b, sizeof(b)), (int)sizeof(b));
	cr_assert_eq(memcmp(p1, snap, l1), 0, "in-flight ciphertext was overwritten");
	const uint8_t *again;
	size_t l2;
	rmq_tls_pending_out(s, &again, &l2);
	cr_assert_eq(again, p1);
	cr_assert_eq(l2, l1);
	/* a partial send, then the rest, then everything that queued up behind */
	cr_assert_eq(BIO_write(c.rb, p1, 100), 100);
	rmq_tls_consume_out(s, 100);
	size_t total = 100;
	static uint8_t got[300000];
	size_t recv = 0;
	for (;;) {
		const uint8_t *p;
		size_t l;
		rmq_tls_pending_out(s, &p, &l);
		if (!l)
			break;
		cr_assert_eq(BIO_write(c.rb, p, (int)l), (int)l);
		rmq_tls_consume_out(s, l);
		total += l;
	}
	int n;
	while ((n = SSL_read(c.ssl, got + recv, (int)(sizeof(got) - recv))) > 0)
		recv += (size_t)n;
	cr_assert_eq(recv, sizeof(a) + 3 * sizeof(b));
	cr_assert_eq(memcmp(got, a, sizeof(a)), 0);
	cr_assert_eq(memcmp(got + sizeof(a), b, sizeof(b)), 0);
	cr_assert_gt(total, recv);
	rmq_tls_conn_free(s);
	cli_free(&c);
	rmq_tls_ctx_free(ctx);
}

Test(tls, buffers_are_bounded)
{
	struct rmq_tls_ctx *ctx = server(false, false);
	struct rmq_tls_conn *s = rmq_tls_conn_new(ctx);
	struct cli c = cli_new(NULL, NULL, 0);
	handshake_ok(s, &c);
	/* output: nothing is sent, so writes stop at the bound */
	static uint8_t blob[1 << 16];
	size_t taken = 0;
	int n;
	cr_assert_eq(rmq_tls_write_room(s), RMQ_TLS_MAX_OUT);
	while ((n = rmq_tls_write(s, blob, sizeof(blob))) > 0)
		taken += (size_t)n;
	cr_assert_eq(n, 0);
	cr_assert_eq(rmq_tls_write_room(s), 0);
	cr_assert_leq(taken, RMQ_TLS_MAX_OUT);
	cr_assert_geq(taken, RMQ_TLS_MAX_OUT - 2 * 16384);
	/* input: plaintext is never read, so feeding stops at the bound */
	for (int i = 0; i < 8; i++)
		cr_assert_eq(SSL_write(c.ssl, blob, 16384), 16384);
	static uint8_t wire[1 << 18];
	int w = BIO_read(c.wb, wire, sizeof(wire));
	cr_assert_gt(w, RMQ_TLS_MAX_IN);
	int fed = rmq_tls_feed(s, wire, (size_t)w);
	cr_assert_eq(fed, RMQ_TLS_MAX_IN);
	cr_assert_eq(rmq_tls_feed(s, wire + fed, (size_t)(w - fed)), 0);
	/* reading plaintext makes room again */
	static uint8_t plain[1 << 18];
	size_t got = 0;
	while ((n = rmq_tls_read(s, plain + got, sizeof(plain) - got)) > 0)
		got += (size_t)n;
	cr_assert_eq(n, -EAGAIN);
	cr_assert_gt(got, 0);
	cr_assert_gt(rmq_tls_feed(s, wire + fed, (size_t)(w - fed)), 0);
	rmq_tls_conn_free(s);
	cli_free(&c);
	rmq_tls_ctx_free(ctx);
}

Test(tls, context_errors)
{
	char err[256];
	struct { const char *cert, *key, *ca; bool req; const char *why; } cases[] = {
		{ "missing.pem", "server.key", NULL, false, "missing.pem" },
		{ "server.pem", "missing.key", NULL, false, "missing.key" },
		{ "server.pem", "client.key", NULL, false, "mismatch" },
		{ "server.pem", "server.key", NULL, true, "no CA file" },
		{ "server.pem", "server.key", "missing-ca.pem", true, "missing-ca.pem" },
		{ "server.key", "server.key", NULL, false, "server.key" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		err[0] = '\0';
		struct rmq_tls_ctx *ctx = rmq_tls_ctx_new(P(0, cases[i].cert), P(1, cases[i].key),
							  cases[i].ca ? P(2, cases[i].ca) : NULL, cases[i].req, err, sizeof(err));
		cr_assert_null(ctx, "case %zu loaded", i);
		cr_assert(strstr(err, cases[i].why), "case %zu: '%s' lacks '%s'", i, err, cases[i].why);
	}
}

/* ---- real clients over loopback: mosquitto_pub with --cafile, --cert/--key ---- */

/* Serves one TLS client on lfd with the MQTT stub. Returns the first TLS error (0: none, clean close). */
static int serve_tls(int lfd, struct rmq_tls_ctx *ctx, struct stub *st, char *peer, size_t peercap)
{
	int fd = stub_accept(lfd);
	struct rmq_tls_conn *c = rmq_tls_conn_new(ctx);
	static uint8_t buf[1 << 16], plain[1 << 16];
	int err = 0;
	peer[0] = '\0';
	while (!st->disconnected && !err && stub_wait(fd, STUB_TIMEOUT_MS)) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		for (size_t off = 0; off < (size_t)n && !err;) {
			int rc = rmq_tls_feed(c, buf + off, (size_t)n - off);
			if (rc < 0) {
				err = rc;
				break;
			}
			off += (size_t)rc;
			int r;
			while ((r = rmq_tls_read(c, plain, sizeof(plain))) > 0)
				stub_mqtt(st, plain, (size_t)r);
			if (r != -EAGAIN)
				err = r;
		}
		if (rmq_tls_state(c) == RMQ_TLS_OPEN && !peer[0] && rmq_tls_peer_name(c, peer, peercap) < 0)
			peer[0] = '\0';
		if (st->outlen && rmq_tls_state(c) == RMQ_TLS_OPEN) {
			cr_assert_eq(rmq_tls_write(c, st->out, st->outlen), (int)st->outlen);
			st->outlen = 0;
		}
		const uint8_t *p;
		size_t len;
		rmq_tls_pending_out(c, &p, &len); /* after an error: the alert */
		stub_send_all(fd, p, len);
		rmq_tls_consume_out(c, len);
	}
	rmq_tls_conn_free(c);
	close(fd);
	return err == -EPIPE ? 0 : err;
}

struct pub_run {
	int client_rc, server_rc;
	struct stub st;
	char peer[64];
};

/* Runs mosquitto_pub (QoS 1, user "fleet") against the stub with the given TLS options. */
static void run_mosquitto_pub(struct rmq_tls_ctx *ctx, const char *cafile, const char *cert, const char *key,
			      struct pub_run *r)
{
	uint16_t port;
	int lfd = stub_listen(&port);
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	char *argv[24] = { "/usr/bin/mosquitto_pub", "-h", "127.0.0.1", "-p", portstr, "--cafile", (char *)cafile,
			   "-i", "tls-pub-1", "-u", "fleet", "-P", "pw", "-t", "cars/1/state", "-m", "hello over tls",
			   "-q", "1" };
	int argc = 19;
	if (cert) {
		argv[argc++] = "--cert";
		argv[argc++] = (char *)cert;
		argv[argc++] = "--key";
		argv[argc++] = (char *)key;
	}
	argv[argc] = NULL;
	memset(r, 0, sizeof(*r));
	pid_t pid = stub_spawn(argv);
	r->server_rc = serve_tls(lfd, ctx, &r->st, r->peer, sizeof(r->peer));
	r->client_rc = stub_reap(pid);
	close(lfd);
}

Test(tls, mosquitto_pub_with_cafile)
{
	struct rmq_tls_ctx *ctx = server(false, false);
	struct pub_run *r = malloc(sizeof(*r));
	run_mosquitto_pub(ctx, P(5, "ca.pem"), NULL, NULL, r);
	cr_assert_eq(r->server_rc, 0);
	cr_assert_eq(r->client_rc, 0, "mosquitto_pub failed");
	cr_assert(r->st.connected);
	cr_assert_str_eq(r->st.client_id, "tls-pub-1");
	cr_assert_str_eq(r->st.username, "fleet");
	cr_assert_eq(r->st.publishes, 1);
	cr_assert_str_eq(r->st.topic, "cars/1/state");
	cr_assert_eq(r->st.payload_len, 14);
	cr_assert_eq(memcmp(r->st.payload, "hello over tls", 14), 0);
	cr_assert_str_eq(r->peer, "");
	/* a client trusting another CA refuses our certificate: the handshake fails on both sides */
	run_mosquitto_pub(ctx, P(5, "rogue.pem"), NULL, NULL, r);
	cr_assert_eq(r->server_rc, -EPROTO);
	cr_assert_neq(r->client_rc, 0);
	cr_assert_not(r->st.connected);
	free(r);
	rmq_tls_ctx_free(ctx);
}

Test(tls, mosquitto_pub_mtls)
{
	struct rmq_tls_ctx *ctx = server(true, true);
	struct pub_run *r = malloc(sizeof(*r));
	run_mosquitto_pub(ctx, P(5, "ca.pem"), P(3, "client.pem"), P(4, "client.key"), r);
	cr_assert_eq(r->server_rc, 0);
	cr_assert_eq(r->client_rc, 0, "mosquitto_pub failed");
	cr_assert_str_eq(r->peer, "car-42");
	cr_assert_eq(r->st.publishes, 1);
	/* unknown certificate, and none at all: refused before any MQTT byte */
	run_mosquitto_pub(ctx, P(5, "ca.pem"), P(3, "intruder.pem"), P(4, "intruder.key"), r);
	cr_assert_eq(r->server_rc, -EACCES);
	cr_assert_neq(r->client_rc, 0);
	cr_assert_not(r->st.connected);
	run_mosquitto_pub(ctx, P(5, "ca.pem"), NULL, NULL, r);
	cr_assert_eq(r->server_rc, -EACCES);
	cr_assert_neq(r->client_rc, 0);
	cr_assert_not(r->st.connected);
	free(r);
	rmq_tls_ctx_free(ctx);
}
