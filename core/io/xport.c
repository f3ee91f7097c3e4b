/* Connection transport: TLS (core/io/tls.c) and/or WebSocket (core/io/ws.c) stacked under MQTT, with one output
 * queue whose bytes stay put while a send is in flight. Owning reactor thread only. */
#include "io/xport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ringmq/errbuf.h"

/* A partial frame header or control frame is carried over to the next input: 14 header bytes plus a
 * 125-byte control payload at most. */
#define CARRY_MAX (2 + 8 + 4 + RMQ_WS_MAX_CONTROL)
/* Plaintext is taken out of TLS and framed for TLS in pieces of one record. */
#define CHUNK 16384

struct xbuf {
	uint8_t *p;
	size_t len, off, cap;
};

struct rmq_xport {
	struct rmq_tls_conn *tls; /* NULL: plain TCP below */
	bool ws;
	bool upgraded;            /* WebSocket handshake done */
	bool closed;              /* a close was received or started: no more data either way */
	int fail_rc;              /* != 0: failed */
	struct rmq_ws_rx rx;
	uint8_t *req;             /* Upgrade request so far (RMQ_WS_MAX_REQUEST bytes, freed once upgraded) */
	size_t reqlen;
	uint8_t carry[CARRY_MAX];
	size_t carrylen;
	/* Output without TLS: `send` is handed out (busy) while `next` collects what comes meanwhile. */
	struct xbuf send, next;
	bool busy;
	char err[128];
};

struct rmq_xport *rmq_xport_new(struct rmq_tls_ctx *tls, bool ws, uint64_t max_frame)
{
	struct rmq_xport *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	if (tls && !(x->tls = rmq_tls_conn_new(tls))) {
		free(x);
		return NULL;
	}
	x->ws = ws;
	rmq_ws_rx_init(&x->rx, max_frame, true);
	return x;
}

void rmq_xport_free(struct rmq_xport *x)
{
	if (!x)
		return;
	rmq_tls_conn_free(x->tls);
	free(x->req);
	free(x->send.p);
	free(x->next.p);
	free(x);
}

static int fail(struct rmq_xport *x, int rc)
{
	if (!x->fail_rc)
		x->fail_rc = rc;
	return x->fail_rc;
}

static int raw_append(struct rmq_xport *x, const uint8_t *p, size_t n)
{
	struct xbuf *b = &x->next;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* Transport-level output of our own (101 response, pong, close): best effort once the output is full,
 * where a lost pong or close frame costs nothing the close that follows does not. */
static void emit(struct rmq_xport *x, const uint8_t *p, size_t n)
{
	if (x->tls) {
		if (rmq_tls_write_room(x->tls) >= n)
			rmq_tls_write(x->tls, p, n);
	} else if (raw_append(x, p, n) < 0) {
		fail(x, -ENOMEM);
	}
}

static void emit_close(struct rmq_xport *x, uint16_t code)
{
	uint8_t f[2 + 2 + RMQ_WS_MAX_CONTROL];
	int n = rmq_ws_encode_close(f, sizeof(f), code, NULL);
	if (n > 0)
		emit(x, f, (size_t)n);
	x->closed = true;
}

/* One decoded WebSocket item. Returns 0, or -EPIPE after a close frame. */
static int on_frame(struct rmq_xport *x, const struct rmq_ws_frame *f, rmq_xport_data_fn cb, void *ud)
{
	uint8_t out[RMQ_WS_MAX_HEADER + RMQ_WS_MAX_CONTROL];
	int n;
	switch (f->opcode) {
	case RMQ_WS_BINARY:
		if (f->len)
			cb(ud, f->payload, f->len);
		return 0;
	case RMQ_WS_PING:
		if ((n = rmq_ws_encode(out, sizeof(out), RMQ_WS_PONG, f->payload, f->len)) > 0)
			emit(x, out, (size_t)n);
		return 0;
	case RMQ_WS_CLOSE:
		/* RFC 6455 5.5.1: answer with a close frame, echoing the code when there was one */
		emit_close(x, f->close_code == RMQ_WS_CLOSE_NO_STATUS ? RMQ_WS_CLOSE_NORMAL : f->close_code);
		rmq_errbuf_printf(x->err, sizeof(x->err), "websocket closed by peer (%u)", f->close_code);
		return -EPIPE;
	default: /* PONG; TEXT is refused by the decoder (binary_only) */
		return 0;
	}
}

static int frame_error(struct rmq_xport *x, int rc, uint16_t code)
{
	emit_close(x, code);
	rmq_errbuf_printf(x->err, sizeof(x->err), "websocket protocol error (close %u)", code);
	return fail(x, rc);
}

/* Decodes what completes the carried-over bytes; returns the bytes of p used, or a negative result. */
static int finish_carry(struct rmq_xport *x, const uint8_t *p, size_t n, rmq_xport_data_fn cb, void *ud)
{
	size_t had = x->carrylen, add = n < CARRY_MAX - had ? n : CARRY_MAX - had;
	memcpy(x->carry + had, p, add);
	struct rmq_ws_frame f;
	int rc = rmq_ws_decode(&x->rx, x->carry, had + add, &f);
	if (rc == -EAGAIN) {
		x->carrylen = had + add; /* still short: everything taken (CARRY_MAX always suffices) */
		return (int)add;
	}
	if (rc < 0)
		return frame_error(x, rc, f.close_code);
	x->carrylen = 0;
	int r = on_frame(x, &f, cb, ud);
	return r < 0 ? r : rc - (int)had; /* the carry could not be decoded alone, so rc > had */
}

static int frames(struct rmq_xport *x, uint8_t *p, size_t n, rmq_xport_data_fn cb, void *ud)
{
	while (n && !x->closed) {
		if (x->carrylen) {
			int used = finish_carry(x, p, n, cb, ud);
			if (used < 0)
				return used;
			p += used;
			n -= (size_t)used;
			continue;
		}
		struct rmq_ws_frame f;
		int rc = rmq_ws_decode(&x->rx, p, n, &f);
		if (rc == -EAGAIN) {
			/* only a header or a control frame can be incomplete, and both fit the carry */
			memcpy(x->carry, p, n);
			x->carrylen = n;
			return 0;
		}
		if (rc < 0)
			return frame_error(x, rc, f.close_code);
		int r = on_frame(x, &f, cb, ud);
		if (r < 0)
			return r;
		p += rc;
		n -= (size_t)rc;
	}
	return 0;
}

/* Collects the Upgrade request; once complete answers it and decodes what followed it. Returns the bytes
 * of p taken, or a negative result. */
static int upgrade(struct rmq_xport *x, const uint8_t *p, size_t n, rmq_xport_data_fn cb, void *ud)
{
	if (!x->req && !(x->req = malloc(RMQ_WS_MAX_REQUEST)))
		return fail(x, -ENOMEM);
	size_t take = n < RMQ_WS_MAX_REQUEST - x->reqlen ? n : RMQ_WS_MAX_REQUEST - x->reqlen;
	memcpy(x->req + x->reqlen, p, take);
	x->reqlen += take;
	struct rmq_ws_upgrade u;
	int hs = rmq_ws_parse_upgrade(x->req, x->reqlen, &u, x->err, sizeof(x->err));
	if (hs == -EAGAIN)
		return (int)take;
	char resp[RMQ_WS_RESPONSE_MAX];
	int rn = hs > 0 ? rmq_ws_build_accept(&u, resp, sizeof(resp)) : rmq_ws_build_error(hs, resp, sizeof(resp));
	if (rn > 0)
		emit(x, (const uint8_t *)resp, (size_t)rn);
	if (hs < 0)
		return fail(x, hs);
	x->upgraded = true;
	int rc = frames(x, x->req + hs, x->reqlen - (size_t)hs, cb, ud);
	free(x->req);
	x->req = NULL;
	x->reqlen = 0;
	return rc < 0 ? rc : (int)take;
}

/* MQTT-side bytes from below (the socket, or TLS plaintext); p is scratch the WebSocket decoder may unmask. */
static int above(struct rmq_xport *x, uint8_t *p, size_t n, rmq_xport_data_fn cb, void *ud)
{
	if (!x->ws) {
		cb(ud, p, n);
		return 0;
	}
	if (!x->upgraded) {
		int took = upgrade(x, p, n, cb, ud);
		if (took < 0)
			return took;
		p += took;
		n -= (size_t)took;
	}
	return frames(x, p, n, cb, ud);
}

static int tls_input(struct rmq_xport *x, const uint8_t *in, size_t len, rmq_xport_data_fn cb, void *ud)
{
	uint8_t plain[CHUNK];
	size_t off = 0;
	do {
		int fed = rmq_tls_feed(x->tls, in + off, len - off);
		if (fed < 0)
			return fail(x, fed);
		off += (size_t)fed;
		int r;
		while ((r = rmq_tls_read(x->tls, plain, sizeof(plain))) > 0) {
			int rc = above(x, plain, (size_t)r, cb, ud);
			if (rc < 0)
				return rc;
		}
		if (r == -EPIPE)
			return -EPIPE;
		if (r != -EAGAIN)
			return fail(x, r);
		if (fed == 0 && off < len) /* cannot happen: all plaintext was just read out */
			return fail(x, -ENOBUFS);
	} while (off < len);
	return 0;
}

int rmq_xport_input(struct rmq_xport *x, uint8_t *in, size_t len, rmq_xport_data_fn cb, void *ud)
{
	if (x->fail_rc)
		return x->fail_rc;
	if (x->closed)
		return -EPIPE;
	return x->tls ? tls_input(x, in, len, cb, ud) : above(x, in, len, cb, ud);
}

bool rmq_xport_partial(const struct rmq_xport *x)
{
	return x->carrylen > 0 || (x->tls && rmq_tls_input_partial(x->tls));
}

bool rmq_xport_ready(const struct rmq_xport *x)
{
	return !x->fail_rc && !x->closed && (!x->tls || rmq_tls_state(x->tls) == RMQ_TLS_OPEN) &&
	       (!x->ws || x->upgraded);
}

static size_t raw_pending(const struct rmq_xport *x)
{
	return x->send.len - x->send.off + x->next.len;
}

int rmq_xport_write(struct rmq_xport *x, const uint8_t *p, size_t len)
{
	if (x->fail_rc)
		return x->fail_rc;
	if (!rmq_xport_ready(x))
		return x->closed ? -EPIPE : -EAGAIN;
	if (!x->ws)
		return x->tls ? rmq_tls_write(x->tls, p, len) : (raw_append(x, p, len) < 0 ? -ENOMEM : (int)len);
	size_t done = 0;
	while (done < len) {
		size_t room = x->tls ? rmq_tls_write_room(x->tls)
				     : raw_pending(x) >= RMQ_XPORT_MAX_OUT ? 0 : RMQ_XPORT_MAX_OUT - raw_pending(x);
		if (room <= RMQ_WS_MAX_HEADER)
			break;
		size_t n = len - done;
		if (n > room - RMQ_WS_MAX_HEADER)
			n = room - RMQ_WS_MAX_HEADER;
		if (x->tls && n > CHUNK - RMQ_WS_MAX_HEADER)
			n = CHUNK - RMQ_WS_MAX_HEADER; /* one frame, one TLS record */
		uint8_t frame[CHUNK];
		size_t h = rmq_ws_header(frame, RMQ_WS_BINARY, n);
		if (x->tls) {
			memcpy(frame + h, p + done, n);
			rmq_tls_write(x->tls, frame, h + n);
		} else if (raw_append(x, frame, h) < 0 || raw_append(x, p + done, n) < 0) {
			return fail(x, -ENOMEM);
		}
		done += n;
	}
	return (int)done;
}

void rmq_xport_pending(struct rmq_xport *x, const uint8_t **p, size_t *len)
{
	if (x->tls) {
		rmq_tls_pending_out(x->tls, p, len);
		return;
	}
	if (!x->busy && x->send.off == x->send.len) {
		struct xbuf t = x->send;
		x->send = x->next;
		x->next = t;
		x->next.len = x->next.off = 0;
	}
	*p = x->send.p + x->send.off;
	*len = x->send.len - x->send.off;
	x->busy = *len > 0;
}

void rmq_xport_consume(struct rmq_xport *x, size_t n)
{
	if (x->tls) {
		rmq_tls_consume_out(x->tls, n);
		return;
	}
	size_t left = x->send.len - x->send.off;
	x->send.off += n < left ? n : left;
	x->busy = false;
	if (x->send.off == x->send.len) {
		/* idle connections keep no output memory */
		free(x->send.p);
		memset(&x->send, 0, sizeof(x->send));
	}
}

void rmq_xport_shutdown(struct rmq_xport *x)
{
	if (x->ws && x->upgraded && !x->closed && !x->fail_rc)
		emit_close(x, RMQ_WS_CLOSE_NORMAL);
	x->closed = true;
	if (x->tls)
		rmq_tls_shutdown(x->tls);
}

int rmq_xport_peer_name(const struct rmq_xport *x, char *out, size_t cap)
{
	return x->tls ? rmq_tls_peer_name(x->tls, out, cap) : -ENOENT;
}

const char *rmq_xport_error(const struct rmq_xport *x)
{
	if (x->err[0])
		return x->err;
	return x->tls ? rmq_tls_error(x->tls) : "";
}
