/* Unit tests for core/io/xport.c: WebSocket streams split at every byte, control frames, errors and output bounds
 * in memory; then real clients through the stack: mosquitto_pub over TLS, paho over WS and over WSS with mTLS. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sec_stub.h"
#include "io/xport.h"

static char dir[64];
static char path_buf[4][160];

static const char *P(int slot, const char *name)
{
	snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s", dir, name);
	return path_buf[slot];
}

struct sink {
	uint8_t buf[1 << 20];
	size_t len;
};

static void collect(void *ud, const uint8_t *p, size_t n)
{
	struct sink *s = ud;
	cr_assert_leq(s->len + n, sizeof(s->buf));
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

/* Everything pending, consumed. */
static size_t take_out(struct rmq_xport *x, uint8_t *out, size_t cap)
{
	size_t total = 0;
	for (;;) {
		const uint8_t *p;
		size_t n;
		rmq_xport_pending(x, &p, &n);
		if (!n)
			return total;
		cr_assert_leq(total + n, cap);
		memcpy(out + total, p, n);
		total += n;
		rmq_xport_consume(x, n);
	}
}

#define REQ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n"

static const uint8_t key[4] = { 0xa1, 0x02, 0x7f, 0x33 };

/* Upgrade, a fragmented binary message around a ping, a 300-byte frame, then close 1000. */
static size_t client_stream(uint8_t *w, uint8_t *mqtt, size_t *mlen)
{
	size_t n = strlen(REQ);
	memcpy(w, REQ, n);
	static uint8_t big[300];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13);
	n += stub_ws_client_frame(w + n, 0x02, "MQTT", 4, key);
	n += stub_ws_client_frame(w + n, 0x89, "hb", 2, key);
	n += stub_ws_client_frame(w + n, 0x80, "-bytes", 6, key);
	n += stub_ws_client_frame(w + n, 0x82, big, sizeof(big), key);
	n += stub_ws_client_frame(w + n, 0x88, "\x03\xe8", 2, key);
	memcpy(mqtt, "MQTT-bytes", 10);
	memcpy(mqtt + 10, big, sizeof(big));
	*mlen = 10 + sizeof(big);
	return n;
}

static bool contains(const uint8_t *h, size_t hn, const void *needle, size_t nn)
{
	return memmem(h, hn, needle, nn) != NULL;
}

Test(xport, ws_stream_split_anywhere)
{
	static uint8_t wire[1024], copy[1024], want[512], out[4096];
	static struct sink got;
	size_t wl, ml;
	wl = client_stream(wire, want, &ml);
	for (size_t k = 0; k <= wl; k++) {
		for (size_t j = k; j <= wl; j += (j < k + 20 ? 1 : 97)) {
			struct rmq_xport *x = rmq_xport_new(NULL, true, 1 << 16);
			memcpy(copy, wire, wl); /* input is unmasked in place */
			got.len = 0;
			cr_assert_eq(rmq_xport_input(x, copy, k, collect, &got), k == wl ? -EPIPE : 0, "split %zu", k);
			if (k < wl)
				cr_assert_eq(rmq_xport_input(x, copy + k, j - k, collect, &got), j == wl ? -EPIPE : 0);
			if (j < wl)
				cr_assert_eq(rmq_xport_input(x, copy + j, wl - j, collect, &got), -EPIPE, "split %zu/%zu", k, j);
			cr_assert_eq(got.len, ml, "split %zu/%zu: %zu bytes", k, j, got.len);
			cr_assert_eq(memcmp(got.buf, want, ml), 0, "split %zu/%zu", k, j);
			size_t on = take_out(x, out, sizeof(out));
			cr_assert(on > 12 && memcmp(out, "HTTP/1.1 101 ", 13) == 0);
			cr_assert(contains(out, on, "\x8a\x02hb", 4), "pong echoes the ping");
			cr_assert(contains(out, on, "\x88\x02\x03\xe8", 4), "close answered with 1000");
			cr_assert_not(rmq_xport_ready(x));
			rmq_xport_free(x);
		}
	}
}

Test(xport, ws_errors_leave_an_answer_to_send)
{
	static uint8_t buf[1024], out[1024];
	struct sink *got = malloc(sizeof(*got));
	got->len = 0;
	/* no mqtt subprotocol: 400, nothing upgraded */
	struct rmq_xport *x = rmq_xport_new(NULL, true, 1 << 16);
	const char *bad = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
	memcpy(buf, bad, strlen(bad));
	cr_assert_eq(rmq_xport_input(x, buf, strlen(bad), collect, got), -ENOPROTOOPT);
	size_t on = take_out(x, out, sizeof(out));
	cr_assert(on > 13 && memcmp(out, "HTTP/1.1 400 ", 13) == 0);
	cr_assert(strstr(rmq_xport_error(x), "mqtt"), "%s", rmq_xport_error(x));
	cr_assert_eq(rmq_xport_input(x, buf, 1, collect, got), -ENOPROTOOPT, "a failed transport stays failed");
	cr_assert_eq(rmq_xport_write(x, buf, 1), -ENOPROTOOPT);
	rmq_xport_free(x);
	/* a text frame after the upgrade: close 1003 */
	x = rmq_xport_new(NULL, true, 1 << 16);
	size_t n = strlen(REQ);
	memcpy(buf, REQ, n);
	n += stub_ws_client_frame(buf + n, 0x81, "text", 4, key);
	cr_assert_eq(rmq_xport_input(x, buf, n, collect, got), -ENOTSUP);
	on = take_out(x, out, sizeof(out));
	cr_assert_eq(memcmp(out + on - 4, "\x88\x02\x03\xeb", 4), 0, "close 1003 goes last");
	rmq_xport_free(x);
	/* an oversized request never completes */
	x = rmq_xport_new(NULL, true, 1 << 16);
	static uint8_t junk[RMQ_WS_MAX_REQUEST + 10];
	memset(junk, 'a', sizeof(junk));
	cr_assert_eq(rmq_xport_input(x, junk, sizeof(junk), collect, got), -EMSGSIZE);
	on = take_out(x, out, sizeof(out));
	cr_assert(on > 13 && memcmp(out, "HTTP/1.1 431 ", 13) == 0);
	rmq_xport_free(x);
	cr_assert_eq(got->len, 0);
	free(got);
}

/* Server frames are unmasked: walk them and collect the payload. */
static size_t unframe(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t o = 0;
	while (n) {
		cr_assert_eq(p[0], 0x82);
		uint64_t len = p[1] & 0x7f;
		size_t h = 2;
		if (len == 126) {
			len = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (len == 127) {
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[2 + i];
			h = 10;
		}
		cr_assert_leq(h + len, n);
		memcpy(out + o, p + h, len);
		o += len;
		p += h + len;
		n -= h + len;
	}
	return o;
}

Test(xport, ws_output_frames_bounds_and_stability)
{
	struct rmq_xport *x = rmq_xport_new(NULL, true, 1 << 16);
	static uint8_t data[1 << 20], out[1 << 21], back[1 << 20];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	cr_assert_eq(rmq_xport_write(x, data, 10), -EAGAIN, "nothing before the upgrade");
	uint8_t req[sizeof(REQ)];
	memcpy(req, REQ, sizeof(REQ) - 1);
	struct sink *got = malloc(sizeof(*got));
	got->len = 0;
	cr_assert_eq(rmq_xport_input(x, req, sizeof(REQ) - 1, collect, got), 0);
	cr_assert(rmq_xport_ready(x));
	size_t on = take_out(x, out, sizeof(out));
	cr_assert(on > 0 && memcmp(out + on - 4, "\r\n\r\n", 4) == 0, "only the 101 response so far");
	/* more than the bound: partial acceptance */
	int took = rmq_xport_write(x, data, sizeof(data));
	cr_assert_gt(took, 0);
	cr_assert_leq((size_t)took, RMQ_XPORT_MAX_OUT);
	cr_assert_eq(rmq_xport_write(x, data + took, sizeof(data) - (size_t)took), 0, "full until sent");
	/* the handed-out bytes stay put while more output arrives */
	const uint8_t *p1;
	size_t l1;
	rmq_xport_pending(x, &p1, &l1);
	static uint8_t snap[RMQ_XPORT_MAX_OUT + 64];
	memcpy(snap, p1, l1);
	rmq_xport_consume(x, 0); /* a send that moved nothing: the same bytes are handed out again */
	rmq_xport_pending(x, &p1, &l1);
	cr_assert_eq(memcmp(p1, snap, l1), 0);
	size_t sent = 0, total = 0;
	while ((size_t)took + sent < sizeof(data) || l1) {
		cr_assert_leq(total + l1, sizeof(out));
		memcpy(out + total, p1, l1);
		total += l1;
		rmq_xport_consume(x, l1);
		if ((size_t)took + sent < sizeof(data)) {
			int t = rmq_xport_write(x, data + took + sent, sizeof(data) - (size_t)took - sent);
			cr_assert_geq(t, 0);
			sent += (size_t)t;
		}
		rmq_xport_pending(x, &p1, &l1);
	}
	cr_assert_eq(unframe(out, total, back), sizeof(data));
	cr_assert_eq(memcmp(back, data, sizeof(data)), 0);
	rmq_xport_shutdown(x);
	on = take_out(x, out, sizeof(out));
	cr_assert_eq(on, 4);
	cr_assert_eq(memcmp(out, "\x88\x02\x03\xe8", 4), 0);
	cr_assert_eq(rmq_xport_write(x, data, 1), -EPIPE);
	rmq_xport_free(x);
	free(got);
}

/* ---- real clients through the whole stack ---- */

static void to_stub(void *ud, const uint8_t *p, size_t n)
{
	stub_mqtt(ud, p, n);
}

/* Serves one client through the transport; returns its first error (0: clean end). */
static int serve(int lfd, struct rmq_xport *x, struct stub *st, char *peer, size_t peercap)
{
	int fd = stub_accept(lfd);
	static uint8_t buf[1 << 16];
	int rc = 0;
	peer[0] = '\0';
	while (!st->disconnected && rc == 0 && stub_wait(fd, STUB_TIMEOUT_MS)) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		rc = rmq_xport_input(x, buf, (size_t)n, to_stub, st);
		if (rmq_xport_ready(x) && !peer[0] && rmq_xport_peer_name(x, peer, peercap) < 0)
			peer[0] = '\0';
		if (st->outlen && rmq_xport_ready(x)) {
			cr_assert_eq(rmq_xport_write(x, st->out, st->outlen), (int)st->outlen);
			st->outlen = 0;
		}
		const uint8_t *p;
		size_t len;
		rmq_xport_pending(x, &p, &len);
		stub_send_all(fd, p, len);
		rmq_xport_consume(x, len);
	}
	close(fd);
	return rc == -EPIPE ? 0 : rc;
}

struct run {
	struct stub st;
	char peer[64];
	int server_rc, client_rc;
};

static void run_client(struct rmq_tls_ctx *tls, bool ws, char **argv, int port_arg, struct run *r)
{
	uint16_t port;
	int lfd = stub_listen(&port);
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	argv[port_arg] = portstr;
	memset(r, 0, sizeof(*r));
	struct rmq_xport *x = rmq_xport_new(tls, ws, 1 << 16);
	pid_t pid = stub_spawn(argv);
	r->server_rc = serve(lfd, x, &r->st, r->peer, sizeof(r->peer));
	r->client_rc = stub_reap(pid);
	rmq_xport_free(x);
	close(lfd);
}

static void setup(void)
{
	stub_certs_make(dir, "/tmp/rmq-xport-XXXXXX");
}

static void teardown(void)
{
	stub_rmdir(dir);
}

Test(xport, paho_over_ws_and_wss_with_client_certificate, .init = setup, .fini = teardown, .timeout = 60)
{
	struct run *r = malloc(sizeof(*r));
	char *ws_argv[] = { "/usr/bin/python3", "-c", (char *)stub_paho_ws_script, NULL, "MQTTv311", "-", "-", "-", NULL };
	run_client(NULL, true, ws_argv, 3, r);
	cr_assert_eq(r->server_rc, 0);
	cr_assert_eq(r->client_rc, 0, "paho over ws exited %d", r->client_rc);
	cr_assert_eq(r->st.publishes, 1);
	cr_assert_eq(r->st.payload_len, 320);

	char err[256];
	struct rmq_tls_ctx *ctx = rmq_tls_ctx_new(P(0, "server.pem"), P(1, "server.key"), P(2, "ca.pem"), true, err,
						  sizeof(err));
	cr_assert_not_null(ctx, "%s", err);
	char *wss_argv[] = { "/usr/bin/python3", "-c", (char *)stub_paho_ws_script, NULL, "MQTTv5",
			     (char *)P(2, "ca.pem"), (char *)P(3, "client.pem"), (char *)P(1, "client.key"), NULL };
	run_client(ctx, true, wss_argv, 3, r);
	cr_assert_eq(r->server_rc, 0);
	cr_assert_eq(r->client_rc, 0, "paho over wss exited %d", r->client_rc);
	cr_assert_str_eq(r->peer, "car-42");
	cr_assert_str_eq(r->st.username, "dash");
	cr_assert_eq(r->st.publishes, 1);
	/* the same over WSS with a certificate from the rogue CA: refused in the TLS handshake */
	char *rogue_argv[] = { "/usr/bin/python3", "-c", (char *)stub_paho_ws_script, NULL, "MQTTv5",
			       (char *)P(2, "ca.pem"), (char *)P(3, "intruder.pem"), (char *)P(1, "intruder.key"), NULL };
	run_client(ctx, true, rogue_argv, 3, r);
	cr_assert_eq(r->server_rc, -EACCES);
	cr_assert_neq(r->client_rc, 0);
	cr_assert_not(r->st.connected);
	rmq_tls_ctx_free(ctx);
	free(r);
}

Test(xport, mosquitto_pub_over_tls, .init = setup, .fini = teardown, .timeout = 60)
{
	char err[256];
	struct rmq_tls_ctx *ctx = rmq_tls_ctx_new(P(0, "server.pem"), P(1, "server.key"), NULL, false, err, sizeof(err));
	cr_assert_not_null(ctx, "%s", err);
	struct run *r = malloc(sizeof(*r));
	char *argv[] = { "/usr/bin/mosquitto_pub", "-h", "127.0.0.1", "-p", NULL, "--cafile", (char *)P(2, "ca.pem"),
			 "-i", "x-1", "-t", "t/x", "-m", "via xport", "-q", "1", NULL };
	run_client(ctx, false, argv, 4, r);
	cr_assert_eq(r->server_rc, 0);
	cr_assert_eq(r->client_rc, 0);
	cr_assert_eq(r->st.publishes, 1);
	cr_assert_eq(r->st.payload_len, 9);
	cr_assert_eq(memcmp(r->st.payload, "via xport", 9), 0);
	rmq_tls_ctx_free(ctx);
	free(r);
}
