/* Connections: the slab (slot + generation), multishot recv into provided buffers, a small reassembly area and
 * framing for c->proto, staged output flushed with one send in flight, pause/resume, close. Reactor thread. */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/reactor.h"
#include "io/xport.h"
#include "ringmq/proto.h"
#include "io/proxy_proto.h"

/* A client must send CONNECT within this long after the TCP handshake (slowloris guard). */
#define CONNECT_TIMEOUT_MS 10000
/* Grace for a final DISCONNECT/CONNACK to leave before the socket is shut anyway. */
#define CLOSE_LINGER_MS 1000
/* While input is paused we keep reading into the reassembly area up to this many receive buffers,
 * then stop reading (cancel the recv) so TCP pushes back on the client. */
#define PAUSED_READ_BUFS 4
/* Beside a partial packet, the reassembly area holds the rest of the buffer it came in and PAUSED_READ_BUFS
 * while paused (rbuf_limit). */
#define HELD_SLACK_BUFS (PAUSED_READ_BUFS + 2)
/* rbuf_limit's ceiling: the area's capacity doubles up to it and stays within rcap's 32 bits. */
#define HELD_MAX (UINT32_MAX / 2 + 1)

/* ---- slab ---------------------------------------------------------------------------------- */

static int slab_grow(struct core *c)
{
	uint32_t cap = c->slots_cap ? c->slots_cap * 2 : 64;
	struct conn **s = realloc(c->slots, cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	c->slots = s;
	uint32_t *g = realloc(c->gens, cap * sizeof(*g));
	if (!g)
		return -ENOMEM;
	c->gens = g;
	uint32_t *h = realloc(c->holds, cap * sizeof(*h));
	if (!h)
		return -ENOMEM;
	c->holds = h;
	uint32_t *f = realloc(c->free_slots, cap * sizeof(*f));
	if (!f)
		return -ENOMEM;
	c->free_slots = f;
	for (uint32_t i = c->slots_cap; i < cap; i++) {
		c->slots[i] = NULL;
		c->gens[i] = 0;
		c->holds[i] = 0;
	}
	c->slots_cap = cap;
	return 0;
}

struct conn *rmq_conn_new(struct core *c, int fd)
{
	uint32_t slot;
	if (c->nfree) {
		slot = c->free_slots[--c->nfree];
	} else {
		if (c->nslots == RMQ_CONN_SLOTS_MAX || (c->nslots == c->slots_cap && slab_grow(c)))
			return NULL;
		slot = c->nslots++;
	}
	assert(slot < c->nslots && !c->slots[slot] && !c->holds[slot]);
	assert(c->proto->conn_size >= sizeof(struct conn));
	struct conn *cn = calloc(1, c->proto->conn_size);
	if (!cn) {
		c->free_slots[c->nfree++] = slot;
		return NULL;
	}
	cn->fd = fd;
	cn->slot = slot;
	cn->gen = c->gens[slot];
	cn->last_rx_ms = c->now_ms;
	c->slots[slot] = cn;
	c->proto->opened(c, cn);
	c->nconns++;
	/* MQTT packets are small and latency matters more than coalescing: we batch ourselves. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rmq_wheel_add(&c->wheel, &cn->timer, c->now_ms + CONNECT_TIMEOUT_MS);
	return cn;
}

struct conn *rmq_conn_lookup(struct core *c, uint32_t slot, uint32_t gen)
{
	if (slot >= c->nslots)
		return NULL;
	struct conn *cn = c->slots[slot];
	return cn && (cn->gen & RMQ_CONN_GEN_MASK) == (gen & RMQ_CONN_GEN_MASK) ? cn : NULL;
}

void rmq_conn_hold(struct core *c, const struct conn *cn, uint32_t n)
{
	/* Open, or closed while an earlier hold kept its slot (the slot is then still its own). */
	assert(cn->slot < c->nslots && (c->slots[cn->slot] == cn || (cn->released && c->holds[cn->slot])));
	c->holds[cn->slot] += n;
}

void rmq_conn_unhold(struct core *c, uint32_t slot)
{
	assert(slot < c->nslots && c->holds[slot] > 0);
	if (--c->holds[slot] == 0 && !c->slots[slot]) {
		assert(c->nfree < c->slots_cap);
		c->free_slots[c->nfree++] = slot;  /* the connection is gone and nothing can name it any more */
	}
}

void rmq_conn_release(struct core *c, struct conn *cn)
{
	if (cn->released)
		return;
	assert(c->slots[cn->slot] == cn && c->nconns > 0);
	cn->released = true;
	c->slots[cn->slot] = NULL;
	c->gens[cn->slot]++;
	/* A Kafka delivery report or a durability completion may still name this slot (with Kafka down it can
	 * take any time: message.timeout.ms is 0): the last rmq_conn_unhold frees it then, no generation can wrap. */
	if (!c->holds[cn->slot])
		c->free_slots[c->nfree++] = cn->slot;
	c->nconns--;
	rmq_wheel_del(&c->wheel, &cn->timer);
	cn->next_grave = c->graveyard;
	c->graveyard = cn;
}

void rmq_conn_reap(struct core *c)
{
	while (c->graveyard) {
		struct conn *cn = c->graveyard;
		if (cn->dirty || cn->in_paused)
			return;  /* still linked in a list walked this iteration; freed next time */
		c->graveyard = cn->next_grave;
		c->proto->reap(c, cn);
		free(cn->rbuf);
		free(cn->out.p);
		free(cn->sending.p);
		free(cn->peer);
		rmq_xport_free(cn->xp);
		free(cn);
	}
}

/* ---- input --------------------------------------------------------------------------------- */

void rmq_conn_arm_recv(struct core *c, struct conn *cn)
{
	if (cn->recv_armed || cn->state == CS_CLOSING)
		return;
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	io_uring_prep_recv_multishot(sqe, cn->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, cn->gen, cn->slot));
	cn->recv_armed = true;
	cn->recv_cancelled = false;
	cn->rearm = false;
}

static void cancel_recv(struct core *c, struct conn *cn)
{
	cn->recv_cancelled = true;
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	io_uring_prep_cancel64(sqe, ud_pack(OP_RECV, cn->gen, cn->slot), 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_NONE, 0, 0));
}

static void mark_dirty(struct core *c, struct conn *cn)
{
	if (cn->dirty)
		return;
	cn->dirty = true;
	cn->next_dirty = c->dirty;
	c->dirty = cn;
}

/* What the reassembly area may hold. Reading: a partial packet and the buffer it came in with. Paused (or
 * handing off): also what the kernel had received when the cancel of the receive was decided. A multishot
 * receive fills buffers until the cancel reaches it at the next io_uring_enter, and one wait may run its task
 * work many times (a batched wait made that over 1 MiB in one batch of completions); each of those completions
 * owns one of the ring's buffers, so together they hold at most the whole ring. Those bytes have left the car's
 * socket: refusing them would cut off a car that only sent faster than Kafka took. */
static size_t rbuf_limit(const struct core *c, const struct conn *cn)
{
	size_t limit = (size_t)c->b->cfg.max_packet_size + (size_t)HELD_SLACK_BUFS * c->buf_size;
	if (cn->pause || cn->state == CS_HANDOFF)
		limit += (size_t)c->nbufs * c->buf_size;
	return limit < HELD_MAX ? limit : HELD_MAX;
}

static int rbuf_append(struct core *c, struct conn *cn, const uint8_t *p, size_t n)
{
	if (cn->rlen + n > rbuf_limit(c, cn))
		return -E2BIG;
	if (cn->rlen + n > cn->rcap) {
		size_t cap = cn->rcap ? cn->rcap : 256;
		while (cap < cn->rlen + n)
			cap *= 2;
		uint8_t *r = realloc(cn->rbuf, cap);
		if (!r)
			return -ENOMEM;
		cn->rbuf = r;
		cn->rcap = (uint32_t)cap;
	}
	memcpy(cn->rbuf + cn->rlen, p, n);
	cn->rlen += (uint32_t)n;
	return 0;
}

/* Frames and handles whole packets in p[0..n); returns the bytes consumed. Stops early when the
 * connection pauses or closes. */
static size_t parse_packets(struct core *c, struct conn *cn, const uint8_t *p, size_t n);

static size_t parse(struct core *c, struct conn *cn, const uint8_t *p, size_t n)
{
	cn->in_parse = true;
	size_t used = parse_packets(c, cn, p, n);
	cn->in_parse = false;
	c->proto->parsed(c, cn, used > 0, used < n);  /* slowloris: a started packet has a deadline */
	return used;
}

static size_t parse_packets(struct core *c, struct conn *cn, const uint8_t *p, size_t n)
{
	size_t off = 0;
	while (off < n && !cn->pause && cn->state != CS_CLOSING && cn->state != CS_HANDOFF) {
		if (cn->state == CS_NEW && !c->proto->may_start(p[off])) {
			c->st.malformed++;
			rmq_conn_close(c, cn, false);
			return n;
		}
		size_t total;
		int rc = rmq_proto_frame(p + off, n - off, c->b->cfg.max_packet_size, &total);
		if (rc == RMQ_E_INCOMPLETE)
			break;
		if (rc < 0) {
			c->st.malformed++;
			VLOG(c, "ringmq: core %d: bad packet header: %s\n", c->id, rmq_proto_err_str(rc));
			if (cn->state == CS_ACTIVE && cn->version == RMQ_V5)
				rmq_conn_disconnect(c, cn, rmq_proto_err_reason(rc));
			else
				rmq_conn_close(c, cn, true);
			return n;
		}
		if (total > n - off)
			break;
		if (c->proto->frame(c, cn, p + off, total) == 1)
			break;  /* not consumed: retried when the connection resumes */
		off += total;
	}
	return off;
}

void rmq_conn_process_input(struct core *c, struct conn *cn)
{
	if (!cn->rlen)
		return;
	size_t used = parse(c, cn, cn->rbuf, cn->rlen);
	if (cn->state == CS_CLOSING) {
		cn->rlen = 0;
		return;
	}
	memmove(cn->rbuf, cn->rbuf + used, cn->rlen - used);
	cn->rlen -= (uint32_t)used;
	if (!cn->rlen && cn->rcap > c->buf_size) {
		/* Idle connections keep no reassembly memory. */
		free(cn->rbuf);
		cn->rbuf = NULL;
		cn->rcap = 0;
	}
}

static void return_buffer(struct core *c, uint16_t bid)
{
	io_uring_buf_ring_add(c->br, c->bufs + (size_t)bid * c->buf_size, c->buf_size, bid,
			      io_uring_buf_ring_mask(c->nbufs), c->buf_returns++);
}

static void on_recv_end(struct core *c, struct conn *cn, int res)
{
	cn->recv_armed = false;
	if (cn->state == CS_HANDOFF) {
		/* A TLS handshake answer still being sent must finish first: its bytes live in the transport,
		 * which moves to the owner core (rmq_conn_on_send then hands off). */
		if (!cn->send_inflight)
			c->proto->handoff(c, cn);
		return;
	}
	if (cn->state == CS_CLOSING) {
		rmq_conn_close(c, cn, false);  /* re-checks whether the slot can go */
		return;
	}
	if (res == -ENOBUFS || (res > 0) || (res == -ECANCELED && cn->pause)) {
		/* Ring ran dry (or a cancel for flow control): re-arm after buffers are returned, unless
		 * input is paused, in which case rmq_conn_resume re-arms. */
		if (res == -ENOBUFS)
			c->st.enobufs++;
		if (!cn->pause) {
			cn->rearm = true;
			mark_dirty(c, cn);
		}
		return;
	}
	/* EOF or error: the client went away without DISCONNECT (the will goes out). */
	if (cn->proxy_wait && cn->rlen)
		c->st.proxy_refused++;  /* left in the middle of its PROXY header */
	rmq_conn_close(c, cn, !cn->got_disconnect);
}

/* Protocol bytes from the socket (plain TCP) or out of the transport (TLS/WebSocket plaintext). */
static void proto_input(struct core *c, struct conn *cn, const uint8_t *p, size_t n, bool more)
{
	if (cn->state == CS_CLOSING) {
		/* ignore */
	} else if (cn->pause || cn->state == CS_HANDOFF || cn->rlen) {
		if (rbuf_append(c, cn, p, n)) {
			c->st.malformed++;
			rmq_conn_close(c, cn, true);
		} else if (cn->pause || cn->state == CS_HANDOFF) {
			/* Once per receive: the completions still to come in this batch need no cancel of their own. */
			if (cn->recv_armed && more && !cn->recv_cancelled && cn->rlen > PAUSED_READ_BUFS * c->buf_size)
				cancel_recv(c, cn);
		} else {
			rmq_conn_process_input(c, cn);
		}
	} else {
		size_t used = parse(c, cn, p, n);
		if (used < n && cn->state != CS_CLOSING && rbuf_append(c, cn, p + used, n - used))
			rmq_conn_close(c, cn, true);
	}
}

struct xp_input {
	struct core *c;
	struct conn *cn;
	bool more;
};

static void xp_data(void *ud, const uint8_t *p, size_t n)
{
	struct xp_input *in = ud;
	proto_input(in->c, in->cn, p, n, in->more);
}

/* Socket bytes of a TLS/WebSocket connection: the transport decrypts/unframes them (in place) and hands
 * the MQTT bytes on; its handshake answers, pongs and alerts go out through the normal send path. */
static void xport_input(struct core *c, struct conn *cn, uint8_t *p, size_t n, bool more)
{
	struct xp_input in = {c, cn, more};
	int rc = rmq_xport_input(cn->xp, p, n, xp_data, &in);
	if (cn->released)
		return;
	if (rc < 0) {
		if (rc != -EPIPE && !rmq_xport_ready(cn->xp))
			c->proto->handshake_failed(c, cn);  /* TLS garbage, plain MQTT or HTTP on a TLS port, bad cert */
		if (rc != -EPIPE) {
			c->st.malformed++;
			VLOG(c, "ringmq: core %d: transport: %s\n", c->id, rmq_xport_error(cn->xp));
		}
		/* The alert, HTTP error or close frame in the pending output leaves before the socket shuts. */
		rmq_conn_close(c, cn, rc == -EPIPE ? !cn->got_disconnect : true);
		return;
	}
	c->proto->transport_input(c, cn, rmq_xport_partial(cn->xp));  /* a record trickling below MQTT */
	const uint8_t *out;
	size_t olen;
	rmq_xport_pending(cn->xp, &out, &olen);
	if (olen)
		mark_dirty(c, cn);
}

/* Bytes that follow the PROXY header (or all of them without --proxy-protocol). */
static void socket_input(struct core *c, struct conn *cn, uint8_t *p, size_t n, bool more)
{
	if (cn->xp && cn->state != CS_CLOSING)
		xport_input(c, cn, p, n, more);
	else
		proto_input(c, cn, p, n, more);
}

static void proxy_refuse(struct core *c, struct conn *cn, int rc)
{
	c->st.proxy_refused++;
	VLOG(c, "ringmq: core %d: connection refused: %s\n", c->id, rmq_proxy_strerror(rc));
	rmq_conn_close(c, cn, false);
}

/* --proxy-protocol: a connection starts with the load balancer's PROXY header, before any TLS, WebSocket or
 * MQTT byte. A header split over reads collects in the reassembly area (bounded by RMQ_PROXY_MAX_LEN: the
 * parser refuses anything longer); what follows it in the same read goes on as if it had come alone. */
static void proxy_input(struct core *c, struct conn *cn, uint8_t *p, size_t n, bool more)
{
	if (cn->rlen) {
		if (rbuf_append(c, cn, p, n)) {
			rmq_conn_close(c, cn, false);  /* out of memory: the parser bounds what is held far below the limit */
			return;
		}
		p = cn->rbuf;
		n = cn->rlen;
	}
	struct rmq_proxy_hdr h;
	int rc = rmq_proxy_parse(p, n, &h);
	if (rc < 0) {
		proxy_refuse(c, cn, rc);
		return;
	}
	if (rc == 0) {
		if (!cn->rlen && rbuf_append(c, cn, p, n))
			rmq_conn_close(c, cn, false);
		return;
	}
	if (h.has_addr) {
		/* Without the client's address every car would share the balancer's login-failure budget. */
		if (!(cn->peer = malloc(sizeof(*cn->peer)))) {
			rmq_conn_close(c, cn, false);
			return;
		}
		*cn->peer = h.src;
	}
	cn->proxy_wait = false;
	uint8_t *held = NULL;  /* the reassembly area now holds only input for the layers above: take it out */
	if (cn->rlen) {
		held = cn->rbuf;
		cn->rbuf = NULL;
		cn->rlen = cn->rcap = 0;
	}
	if ((size_t)rc < n)
		socket_input(c, cn, p + rc, n - (size_t)rc, more);
	free(held);
}

void rmq_conn_on_recv(struct core *c, struct conn *cn, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (res <= 0) {
		on_recv_end(c, cn, res);
		return;
	}
	uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	uint8_t *p = c->bufs + (size_t)bid * c->buf_size;
	cn->last_rx_ms = c->now_ms;
	c->st.bytes_in += (uint64_t)res;
	if (cn->proxy_wait && cn->state != CS_CLOSING)
		proxy_input(c, cn, p, (size_t)res, more);
	else
		socket_input(c, cn, p, (size_t)res, more);
	return_buffer(c, bid);
	if (!more)
		on_recv_end(c, cn, res);
}

void rmq_conn_touch_keepalive(struct core *c, struct conn *cn)
{
	if (cn->ka_ms)
		rmq_wheel_add(&c->wheel, &cn->timer, c->now_ms + cn->ka_ms);
	else
		rmq_wheel_del(&c->wheel, &cn->timer);
}

void rmq_conn_pause(struct core *c, struct conn *cn, uint8_t why)
{
	cn->pause |= why;
	if (why == PAUSE_BRIDGE && !cn->in_paused) {
		cn->in_paused = true;
		cn->next_paused = c->paused;
		c->paused = cn;
	}
	if (why == PAUSE_HANDOFF && cn->recv_armed)
		cancel_recv(c, cn);
}

void rmq_conn_resume(struct core *c, struct conn *cn, uint8_t why)
{
	cn->pause &= (uint8_t)~why;
	if (cn->pause || cn->state == CS_CLOSING || cn->in_parse)
		return;  /* in_parse: the running parse loop simply goes on */
	rmq_conn_process_input(c, cn);
	if (!cn->recv_armed && !cn->pause && cn->state != CS_CLOSING) {
		cn->rearm = true;
		mark_dirty(c, cn);
	}
}

/* ---- output -------------------------------------------------------------------------------- */

uint8_t *rmq_conn_reserve(struct core *c, struct conn *cn, size_t n)
{
	if (cn->state == CS_CLOSING || cn->shut || cn->doomed)
		return NULL;
	struct obuf *o = &cn->out;
	size_t unsent = (size_t)o->len + (cn->sending.len - cn->sending.off);
	if (unsent + n > c->b->out_limit) {
		/* The client does not read fast enough: disconnecting it protects everyone else. The close
		 * happens at flush time, never in the middle of a fan-out loop. */
		c->st.slow_consumer++;
		VLOG(c, "ringmq: core %d: slow consumer disconnected\n", c->id);
		cn->doomed = true;
		mark_dirty(c, cn);
		return NULL;
	}
	if ((size_t)o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 512;
		while (cap < (size_t)o->len + n)
			cap *= 2;
		uint8_t *p = realloc(o->p, cap);
		if (!p)
			return NULL;
		o->p = p;
		o->cap = (uint32_t)cap;
	}
	return o->p + o->len;
}

void rmq_conn_commit(struct core *c, struct conn *cn, size_t n)
{
	cn->out.len += (uint32_t)n;
	mark_dirty(c, cn);
}

/* Encodes p (n bytes) into the connection's out buffer. */
static int stage(struct core *c, struct conn *cn, const struct rmq_packet *p, size_t n)
{
	uint8_t *dst = rmq_conn_reserve(c, cn, n);
	if (!dst)
		return -ENOBUFS;
	ssize_t w = rmq_proto_encode(dst, n, cn->version, p);
	if (w < 0)
		return (int)w;
	rmq_conn_commit(c, cn, (size_t)w);
	return 0;
}

/* [MQTT-3.1.2-24] a packet over the client's Maximum Packet Size never leaves. What the spec lets a sender
 * drop goes first: the reason string and user properties of acknowledgements, DISCONNECT and AUTH
 * ([MQTT-3.2.2-19/20], [MQTT-3.4.2-2/3], [MQTT-3.9.2-1/2], [MQTT-3.14.2-3/4], ...); a PUBLISH keeps its user
 * properties, they are part of the message. Still too large, the packet is not sent, counted: a PUBLISH as
 * delivered ([MQTT-3.1.2-25]), any other packet in too_large_ctl. Kept out of line: the common path pays
 * one comparison. */
static __attribute__((noinline)) int write_over_limit(struct core *c, struct conn *cn, const struct rmq_packet *p)
{
	struct rmq_packet trim = *p;
	struct rmq_props *pr = p->type == RMQ_PUBLISH ? NULL : (struct rmq_props *)rmq_proto_props_of(&trim);
	if (pr && (pr->present & (RMQ_PBIT(RMQ_PROP_REASON_STRING) | RMQ_PBIT(RMQ_PROP_USER)))) {
		pr->present &= ~(RMQ_PBIT(RMQ_PROP_REASON_STRING) | RMQ_PBIT(RMQ_PROP_USER));
		pr->reason_string = (struct rmq_str){0};
		pr->user = (struct rmq_str){0};
		pr->user_count = 0;
		ssize_t n = rmq_proto_encoded_len(cn->version, &trim);
		if (n > 0 && (size_t)n <= cn->client_max_packet) {
			c->st.too_large_trimmed++;
			return stage(c, cn, &trim, (size_t)n);
		}
	}
	if (p->type == RMQ_PUBLISH) {
		c->st.too_large_out++;
	} else {
		c->st.too_large_ctl++;
		VLOG(c, "ringmq: core %d: packet type %u over the client's Maximum Packet Size %u: not sent\n", c->id,
		     p->type, cn->client_max_packet);
	}
	return -E2BIG;
}

int rmq_conn_write_packet(struct core *c, struct conn *cn, const struct rmq_packet *p)
{
	ssize_t n = rmq_proto_encoded_len(cn->version, p);
	if (n < 0)
		return (int)n;
	if (cn->client_max_packet && (size_t)n > cn->client_max_packet)
		return write_over_limit(c, cn, p);
	return stage(c, cn, p, (size_t)n);
}

int rmq_conn_write_ack(struct core *c, struct conn *cn, uint8_t type, uint16_t pid, uint8_t reason)
{
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = type;
	p.u.ack.packet_id = pid;
	p.u.ack.reason = reason;
	return rmq_conn_write_packet(c, cn, &p);
}

static void submit_send(struct core *c, struct conn *cn)
{
	struct obuf *s = &cn->sending;
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	io_uring_prep_send(sqe, cn->fd, s->p + s->off, s->len - s->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, cn->gen, cn->slot));
	cn->send_inflight = true;
}

static bool has_output(struct conn *cn)
{
	if (cn->out.len)
		return true;
	if (!cn->xp)
		return false;
	const uint8_t *p;
	size_t n;
	rmq_xport_pending(cn->xp, &p, &n);
	return n > 0;
}

/* TLS/WebSocket: staged MQTT bytes go through the transport (encrypted/framed into its pending output,
 * as much as its bound takes; the rest stays staged), then its pending output is sent in place. */
static void start_xsend(struct core *c, struct conn *cn)
{
	if (cn->send_inflight || cn->shut || cn->state == CS_HANDOFF)
		return;
	if (cn->out.len && rmq_xport_ready(cn->xp)) {
		int w = rmq_xport_write(cn->xp, cn->out.p, cn->out.len);
		if (w < 0) {
			cn->out.len = 0;  /* the transport failed: nothing staged can leave any more */
			if (cn->state != CS_CLOSING)
				rmq_conn_close(c, cn, true);
			return;
		}
		memmove(cn->out.p, cn->out.p + w, cn->out.len - (uint32_t)w);
		cn->out.len -= (uint32_t)w;
		c->st.bytes_out += (uint64_t)w;
	}
	const uint8_t *p;
	size_t n;
	rmq_xport_pending(cn->xp, &p, &n);
	if (!n)
		return;
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	io_uring_prep_send(sqe, cn->fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, cn->gen, cn->slot));
	cn->send_inflight = true;
}

static void start_send(struct core *c, struct conn *cn)
{
	if (cn->xp) {
		start_xsend(c, cn);
		return;
	}
	if (cn->send_inflight || !cn->out.len || cn->shut)
		return;
	/* Swap: the staged buffer goes out whole, new replies accumulate in the other one. */
	struct obuf t = cn->sending;
	cn->sending = cn->out;
	cn->out = t;
	cn->out.len = cn->out.off = 0;
	cn->sending.off = 0;
	c->st.bytes_out += cn->sending.len;
	submit_send(c, cn);
}

void rmq_conn_flush_all(struct core *c)
{
	while (c->dirty) {
		struct conn *cn = c->dirty;
		c->dirty = cn->next_dirty;
		cn->dirty = false;
		if (cn->released)
			continue;
		if (cn->doomed && cn->state != CS_CLOSING) {
			rmq_conn_close(c, cn, true);
			continue;
		}
		if (cn->rearm && !cn->pause && cn->state != CS_HANDOFF)
			rmq_conn_arm_recv(c, cn);
		start_send(c, cn);
	}
}

static void do_shutdown(struct core *c, struct conn *cn)
{
	if (!cn->shut) {
		cn->shut = true;
		shutdown(cn->fd, SHUT_RDWR);
		/* shutdown() does not always end a multishot recv parked in poll: cancel it too. */
		if (cn->recv_armed)
			cancel_recv(c, cn);
	}
	if (!cn->recv_armed && !cn->send_inflight && !cn->released) {
		if (cn->doomed) {
			/* Abortive close (RST): what is still queued for a client that stopped reading is
			 * worthless, and a FIN queued behind megabytes would keep the socket alive. */
			struct linger lg = {1, 0};
			setsockopt(cn->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(cn->fd);
		cn->fd = -1;
		atomic_fetch_sub_explicit(&c->b->nconns, 1, memory_order_relaxed);
		c->st.closed++;
		rmq_conn_release(c, cn);
	}
}

void rmq_conn_on_send(struct core *c, struct conn *cn, int res)
{
	cn->send_inflight = false;
	if (res <= 0) {
		if (cn->state != CS_CLOSING)
			rmq_conn_close(c, cn, true);
		do_shutdown(c, cn);
		return;
	}
	if (cn->state == CS_HANDOFF) {
		/* The send that delayed the handoff (see on_recv_end) is done; what is still pending in the
		 * transport is sent by the owner core. */
		if (cn->xp)
			rmq_xport_consume(cn->xp, (size_t)res);
		if (!cn->recv_armed)
			c->proto->handoff(c, cn);
		return;
	}
	if (cn->xp) {
		rmq_xport_consume(cn->xp, (size_t)res);
		if (!cn->out.len && cn->out.p) {
			free(cn->out.p);
			cn->out.p = NULL;
			cn->out.cap = 0;
		}
		if (has_output(cn) && !cn->shut)
			mark_dirty(c, cn);
		if (cn->state == CS_CLOSING && (!has_output(cn) || cn->shut))
			do_shutdown(c, cn);
		return;
	}
	struct obuf *s = &cn->sending;
	s->off += (uint32_t)res;
	if (s->off < s->len && !cn->shut) {
		submit_send(c, cn);
		return;
	}
	s->len = s->off = 0;
	/* Idle connections hold no output memory (RSS per idle connection is a target). */
	free(s->p);
	s->p = NULL;
	s->cap = 0;
	if (cn->out.len) {
		mark_dirty(c, cn);
	} else if (cn->out.p) {
		free(cn->out.p);
		cn->out.p = NULL;
		cn->out.cap = 0;
	}
	if (cn->state == CS_CLOSING && (!cn->out.len || cn->shut))
		do_shutdown(c, cn);
}

/* ---- closing ------------------------------------------------------------------------------- */

/* The final packets (CONNACK refusal, DISCONNECT) go into the transport ahead of its own goodbye (TLS
 * close_notify, WebSocket close 1000); whatever the transport cannot take any more is dropped. */
static void xport_close(struct core *c, struct conn *cn)
{
	if (cn->out.len && rmq_xport_ready(cn->xp) && !cn->doomed) {
		int w = rmq_xport_write(cn->xp, cn->out.p, cn->out.len);
		if (w > 0)
			c->st.bytes_out += (uint64_t)w;
	}
	cn->out.len = 0;
	rmq_xport_shutdown(cn->xp);
}

void rmq_conn_close(struct core *c, struct conn *cn, bool abnormal)
{
	if (cn->released)
		return;
	if (cn->state != CS_CLOSING) {
		bool was_active = cn->state == CS_ACTIVE;
		cn->state = CS_CLOSING;
		c->proto->closed(c, cn, was_active && abnormal);
		if (cn->xp)
			xport_close(c, cn);
		if (has_output(cn) || cn->send_inflight)
			rmq_wheel_add(&c->wheel, &cn->timer, c->now_ms + CLOSE_LINGER_MS);
		else
			rmq_wheel_del(&c->wheel, &cn->timer);
	}
	if ((!has_output(cn) && !cn->send_inflight) || cn->shut)
		do_shutdown(c, cn);  /* once shut, staged bytes can never leave: do not wait for them */
	else if (!cn->send_inflight)
		mark_dirty(c, cn);  /* the final packet still goes out, then we shut */
}

void rmq_conn_force_close(struct core *c, struct conn *cn)
{
	cn->doomed = true;  /* the final packets did not leave within the linger time */
	do_shutdown(c, cn);
}

void rmq_conn_disconnect(struct core *c, struct conn *cn, uint8_t reason)
{
	if (cn->state == CS_CLOSING)
		return;
	if (cn->version == RMQ_V5 && cn->state == CS_ACTIVE) {
		struct rmq_packet p;
		memset(&p, 0, sizeof(p));
		p.type = RMQ_DISCONNECT;
		p.u.disconnect.reason = reason;
		rmq_conn_write_packet(c, cn, &p);
	}
	rmq_conn_close(c, cn, true);
}
