/* ringmq-bench worker: one thread, one epoll, many MQTT client connections (connect, subscribe, publish on
 * a schedule, receive and measure). Everything here is owned by the worker thread; main reads only counters. */
#include "bench.h"
#include "stamp.h"
#include "tls_client.h"

#include <ringmq/proto.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define INC(x, n) ST(x, LD(x) + (n))
#define DEC(x, n) ST(x, LD(x) - (n))

/* One read fills this; packets are parsed in place, only a trailing partial packet is copied out.
 * Large enough for the biggest packet we accept (payload cap + topic + headers). */
#define SCRATCH (RMQ_BENCH_MAX_PAYLOAD + 2 * RMQ_MAX_TOPIC_LEN + 64)
#define MAX_PACKET ((uint32_t)SCRATCH)
/* Stop queueing publishes on a connection once this much is waiting for the socket: the kernel's send
 * buffer is full, more would only add loader-side latency. */
#define OUT_HWM (64u * 1024)
/* Unlimited rate: publishes queued per connection per loop iteration, so one connection cannot starve
 * the others or the receive path. */
#define UNLIMITED_BATCH 64
/* A rate schedule that fell behind by more than this is not caught up in one burst: the debt is
 * counted as skipped (offered but not sent) so that the report shows the loader could not keep up. */
#define MAX_LAG_NS (50ull * 1000 * 1000)
#define MAX_EVENTS 512
#define MAX_LOGGED_ERRORS 5

enum conn_state { C_IDLE = 0, C_CONNECTING, C_TLS_HANDSHAKE, C_WAIT_CONNACK, C_WAIT_SUBACK, C_READY, C_CLOSED };

struct conn {
	int fd;
	struct ssl_st *ssl;        /* --tls-cafile: the TLS session over fd (NULL: plain TCP) */
	uint8_t state;
	bool publishes, subscribes;
	bool dirty;                /* on the worker's flush list */
	bool pollout;              /* EPOLLOUT armed */
	bool blocked;              /* last write could not take everything */
	bool counted_ready;
	struct rmq_bench_client cl;
	uint16_t topic_len;
	uint8_t *out;
	uint32_t out_len, out_off, out_cap;
	uint8_t *part;             /* trailing partial packet from the last read */
	uint32_t part_len, part_cap;
	uint64_t t_connect, last_tx;
	/* publisher */
	bool commander;            /* fleet back-end: each publish goes to the next car's cmd topic */
	uint32_t cmd_next;
	uint32_t seq;
	uint32_t inflight, window;
	uint64_t issued, acked;    /* QoS 1/2 packet counters: packet id = counter % 65535 + 1 */
	uint64_t *ack_ts;          /* send time per inflight slot */
	/* subscriber */
	struct rmq_seq_tracker trk;
};

struct rmq_bench_worker {
	struct rmq_bench_run *run;
	const struct rmq_bench_opts *o;
	int index;
	pthread_t thread;
	bool started;
	int ep;
	struct conn *conns;
	uint32_t nconns, opened;
	struct conn **pubs;        /* publishing connections, round-robin order for the rate schedule */
	uint32_t npubs;
	uint64_t pub_events;       /* rate schedule: send events consumed so far */
	struct conn **cmds;        /* fleet back-ends sending commands: their own schedule (--cmd-rate) */
	uint32_t ncmds;
	uint64_t cmd_events;
	char cmd_topic[RMQ_BENCH_TOPIC_MAX];
	struct conn **flush;
	uint32_t nflush;
	uint8_t *scratch;
	uint8_t *payload;
	struct rmq_decode_ctx dctx;
	struct rmq_bench_counters ctr;
	struct rmq_hist lat, ack_lat, connack_lat;
	struct rmq_hist cmd_lat;   /* fleet: back-end command -> car, apart from telemetry -> back-end */
	uint64_t next_housekeeping;
	int logged;
	char err[512];
};

uint64_t rmq_bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Logs the worker's first few errors to stderr (later ones are only counted) and keeps the first. */
static void report_error(struct rmq_bench_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_error(struct rmq_bench_worker *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!w->err[0])
		snprintf(w->err, sizeof(w->err), "%s", msg);
	if (w->logged < MAX_LOGGED_ERRORS)
		fprintf(stderr, "ringmq-bench: %s\n", msg);
	else if (w->logged == MAX_LOGGED_ERRORS)
		fprintf(stderr, "ringmq-bench: (thread %d: further errors are only counted)\n", w->index);
	w->logged++;
}

static bool is_setup_fatal(const struct rmq_bench_worker *w)
{
	/* A storm measures failures; every other scenario is meaningless with a client missing. */
	return w->o->mode != RMQ_BENCH_CONN;
}

/* ---- output buffer ------------------------------------------------------------------------------ */

static int out_reserve(struct conn *c, uint32_t need)
{
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + need <= c->out_cap)
		return 0;
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_len + need <= c->out_cap)
			return 0;
	}
	uint32_t cap = c->out_cap ? c->out_cap : 4096;
	while (cap < c->out_len + need)
		cap *= 2;
	uint8_t *p = realloc(c->out, cap);
	if (!p)
		return -ENOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

static void mark_dirty(struct rmq_bench_worker *w, struct conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		w->flush[w->nflush++] = c;
	}
}

/* Encodes p at the end of c's out buffer. */
static int queue_packet(struct rmq_bench_worker *w, struct conn *c, const struct rmq_packet *p)
{
	ssize_t n = rmq_proto_encoded_len(w->o->version, p);
	if (n < 0)
		return (int)n;
	if (out_reserve(c, (uint32_t)n))
		return -ENOMEM;
	n = rmq_proto_encode(c->out + c->out_len, c->out_cap - c->out_len, w->o->version, p);
	if (n < 0)
		return (int)n;
	c->out_len += (uint32_t)n;
	mark_dirty(w, c);
	return 0;
}

static int queue_ack(struct rmq_bench_worker *w, struct conn *c, uint8_t type, uint16_t pid)
{
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = type;
	p.flags = type == RMQ_PUBREL ? 0x2 : 0;
	p.u.ack.packet_id = pid;
	return queue_packet(w, c, &p);
}

/* ---- connection life ----------------------------------------------------------------------------- */

static void conn_close(struct rmq_bench_worker *w, struct conn *c, bool dropped)
{
	if (c->state == C_CLOSED || c->state == C_IDLE)
		return;
	if (dropped && c->state == C_READY)
		INC(w->ctr.conn_dropped, 1);
	if (c->counted_ready) {
		DEC(w->ctr.ready, 1);
		c->counted_ready = false;
	}
	DEC(w->ctr.inflight, c->inflight);
	c->inflight = 0;
	epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
	rmq_bench_tls_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	c->state = C_CLOSED;
	c->out_len = c->out_off = 0;
	c->part_len = 0;
}

static void conn_fail(struct rmq_bench_worker *w, struct conn *c, const char *why)
{
	bool was_ready = c->state == C_READY;
	if (!was_ready)
		INC(w->ctr.conn_failed, 1);
	else
		INC(w->ctr.errors, 1);
	report_error(w, "client %s: %s", c->cl.client_id, why);
	conn_close(w, c, true);
	if (!was_ready && is_setup_fatal(w))
		ST(w->run->fatal, 1);
}

static int set_events(struct rmq_bench_worker *w, struct conn *c, bool out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
	c->pollout = out;
	return epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int conn_open(struct rmq_bench_worker *w, struct conn *c, uint64_t now)
{
	const struct rmq_bench_run *r = w->run;
	int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	/* Every message is its own small write burst; Nagle would hold them for the broker's ACK. A failure
	 * only costs latency, so it is not fatal. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (w->o->src_addrs && r->addr.ss_family == AF_INET) {
		/* Let connect() pick the port per 4-tuple, so each source address has its own port range. */
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one))) {
			int e = errno;
			close(fd);
			return -e;
		}
		struct sockaddr_in src = {.sin_family = AF_INET};
		src.sin_addr.s_addr = htonl(0x7f000001u + c->cl.index % w->o->src_addrs);
		if (bind(fd, (struct sockaddr *)&src, sizeof(src))) {
			int e = errno;
			close(fd);
			return -e;
		}
	}
	c->fd = fd;
	c->t_connect = now;
	c->state = C_CONNECTING;
	if (connect(fd, (const struct sockaddr *)&r->addr, r->addrlen) && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		c->fd = -1;
		c->state = C_IDLE;
		return -e;
	}
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev)) {
		int e = errno;
		close(fd);
		c->fd = -1;
		c->state = C_IDLE;
		return -e;
	}
	return 0;
}

static int send_connect(struct rmq_bench_worker *w, struct conn *c)
{
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_CONNECT;
	struct rmq_connect *k = &p.u.connect;
	k->version = w->o->version;
	k->clean_start = true;
	k->keep_alive = w->o->keepalive;
	k->protocol_name = (struct rmq_str){(const uint8_t *)"MQTT", 4};
	k->client_id = (struct rmq_str){(const uint8_t *)c->cl.client_id, (uint32_t)strlen(c->cl.client_id)};
	if (w->o->topic_alias_max && w->o->mode == RMQ_BENCH_FLEET && !c->commander) {
		k->props.present |= RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS_MAX);
		k->props.topic_alias_max = w->o->topic_alias_max;
	}
	return queue_packet(w, c, &p);
}

static int send_subscribe(struct rmq_bench_worker *w, struct conn *c)
{
	/* One entry in wire form: 2-byte length, filter, options byte. */
	uint8_t list[RMQ_BENCH_TOPIC_MAX + 3];
	size_t fl = strlen(c->cl.filter);
	list[0] = (uint8_t)(fl >> 8);
	list[1] = (uint8_t)fl;
	memcpy(list + 2, c->cl.filter, fl);
	list[2 + fl] = w->o->sub_qos;
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_SUBSCRIBE;
	p.flags = 0x2;
	p.u.subscribe.packet_id = 1;
	p.u.subscribe.count = 1;
	p.u.subscribe.list = (struct rmq_str){list, (uint32_t)(fl + 3)};
	return queue_packet(w, c, &p);
}

static void set_ready(struct rmq_bench_worker *w, struct conn *c)
{
	c->state = C_READY;
	if (!c->counted_ready) {
		c->counted_ready = true;
		INC(w->ctr.ready, 1);
	}
}

static void start_mqtt(struct rmq_bench_worker *w, struct conn *c)
{
	c->state = C_WAIT_CONNACK;
	if (set_events(w, c, false)) {
		conn_fail(w, c, "epoll_ctl failed");
		return;
	}
	if (send_connect(w, c))
		conn_fail(w, c, "cannot encode CONNECT");
}

/* The TLS handshake, driven by socket readiness; CONNECT follows it (the CONNACK latency includes it). */
static void tls_step(struct rmq_bench_worker *w, struct conn *c)
{
	char why[256];
	int r = rmq_bench_tls_handshake(c->ssl, why, sizeof(why));
	if (r < 0)
		conn_fail(w, c, why);
	else if (r == 1)
		start_mqtt(w, c);
	else if (set_events(w, c, r == 2))
		conn_fail(w, c, "epoll_ctl failed");
}

static void on_connected(struct rmq_bench_worker *w, struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
		char why[160];
		snprintf(why, sizeof(why), "connect to the broker: %s", strerror(err ? err : errno));
		conn_fail(w, c, why);
		return;
	}
	if (w->run->tls_ctx) {
		if (!(c->ssl = rmq_bench_tls_new(w->run->tls_ctx, c->fd))) {
			conn_fail(w, c, "out of memory (TLS session)");
			return;
		}
		c->state = C_TLS_HANDSHAKE;
		tls_step(w, c);
		return;
	}
	start_mqtt(w, c);
}

/* ---- receive ------------------------------------------------------------------------------------- */

static const char *reason_text(uint8_t version, uint8_t rc)
{
	if (version < RMQ_V5) {
		static const char *v3[] = {"accepted", "unacceptable protocol version", "identifier rejected",
					   "server unavailable", "bad user name or password", "not authorized"};
		return rc < 6 ? v3[rc] : "unknown return code";
	}
	switch (rc) {
	case RMQ_RC_UNSPECIFIED: return "unspecified error";
	case RMQ_RC_MALFORMED: return "malformed packet";
	case RMQ_RC_PROTOCOL_ERROR: return "protocol error";
	case RMQ_RC_UNSUPPORTED_VERSION: return "unsupported protocol version";
	case RMQ_RC_CLIENT_ID_INVALID: return "client identifier not valid";
	case RMQ_RC_NOT_AUTHORIZED: return "not authorized";
	case RMQ_RC_SERVER_UNAVAILABLE: return "server unavailable";
	case RMQ_RC_SERVER_BUSY: return "server busy";
	case RMQ_RC_QUOTA_EXCEEDED: return "quota exceeded";
	case RMQ_RC_SESSION_TAKEN_OVER: return "session taken over";
	case RMQ_RC_KEEPALIVE_TIMEOUT: return "keep alive timeout";
	case RMQ_RC_CONNECTION_RATE_EXCEEDED: return "connection rate exceeded";
	default: return "see the MQTT 5 reason code table";
	}
}

static void on_connack(struct rmq_bench_worker *w, struct conn *c, const struct rmq_connack *a, uint64_t now)
{
	if (c->state != C_WAIT_CONNACK) {
		INC(w->ctr.errors, 1);
		return;
	}
	if (a->reason != 0) {
		char why[160];
		snprintf(why, sizeof(why), "broker refused the connection: CONNACK code 0x%02x (%s)", a->reason,
			 reason_text(w->o->version, a->reason));
		INC(w->ctr.conn_refused, 1);
		report_error(w, "client %s: %s", c->cl.client_id, why);
		conn_close(w, c, false);
		if (is_setup_fatal(w))
			ST(w->run->fatal, 1);
		return;
	}
	INC(w->ctr.conn_ok, 1);
	rmq_bench_hist_record(&w->connack_lat, now - c->t_connect);
	/* MQTT 5: never exceed the broker's Receive Maximum with our QoS 1/2 window. */
	if ((a->props.present & RMQ_PBIT(RMQ_PROP_RECEIVE_MAX)) && a->props.receive_max < c->window)
		c->window = a->props.receive_max;
	if (c->subscribes) {
		c->state = C_WAIT_SUBACK;
		if (send_subscribe(w, c))
			conn_fail(w, c, "cannot encode SUBSCRIBE");
	} else {
		set_ready(w, c);
	}
}

static void on_suback(struct rmq_bench_worker *w, struct conn *c, const struct rmq_suback *s)
{
	if (c->state != C_WAIT_SUBACK || s->packet_id != 1 || s->count < 1) {
		INC(w->ctr.errors, 1);
		return;
	}
	if (s->reasons[0] >= 0x80) {
		char why[320];
		snprintf(why, sizeof(why), "broker refused the subscription to '%s': SUBACK code 0x%02x",
			 c->cl.filter, s->reasons[0]);
		conn_fail(w, c, why);
		return;
	}
	set_ready(w, c);
}

/* wire: the PUBLISH's bytes on the wire (a car's commands are summed: what topic aliases save). */
static void on_publish(struct rmq_bench_worker *w, struct conn *c, const struct rmq_publish *p, size_t wire,
		       uint64_t now)
{
	struct rmq_stamp st;
	if (p->qos && queue_ack(w, c, p->qos == 1 ? RMQ_PUBACK : RMQ_PUBREC, p->packet_id))
		INC(w->ctr.errors, 1);
	if (!rmq_bench_stamp_read(p->payload.p, p->payload.len, &st) ||
	    (w->o->run_id && st.run_id != w->o->run_id)) {
		INC(w->ctr.foreign, 1);
		return;
	}
	INC(w->ctr.received, 1);
	/* A car that receives is receiving a command; everyone else, telemetry or bench traffic. */
	bool cmd = w->o->mode == RMQ_BENCH_FLEET && c->publishes && !c->commander;
	if (cmd) {
		INC(w->ctr.cmd_received, 1);
		INC(w->ctr.cmd_bytes, (uint64_t)wire);
	}
	rmq_bench_hist_record(cmd ? &w->cmd_lat : &w->lat, now > st.send_ns ? now - st.send_ns : 0);
	int v = rmq_bench_seq_record(&c->trk, st.pub_id, st.seq);
	if (v == RMQ_SEQ_DUP)
		INC(w->ctr.dup, 1);
	else if (v == RMQ_SEQ_LATE)
		INC(w->ctr.ooo, 1);
	else if (v < 0)
		INC(w->ctr.errors, 1);
}

/* PUBACK (QoS 1) or PUBCOMP (QoS 2): the oldest outstanding publish is done. Brokers acknowledge in
 * order [MQTT-4.6.0-2,3]; an ack for anything else is counted as an error. */
static void on_pub_done(struct rmq_bench_worker *w, struct conn *c, const struct rmq_ack *a, uint64_t now)
{
	if (!c->inflight) {
		INC(w->ctr.errors, 1);
		return;
	}
	uint16_t expect = (uint16_t)(c->acked % 65535 + 1);
	if (a->packet_id != expect)
		INC(w->ctr.errors, 1);
	if (w->o->version >= RMQ_V5 && a->reason >= 0x80)
		INC(w->ctr.errors, 1);
	rmq_bench_hist_record(&w->ack_lat, now - c->ack_ts[c->acked % c->window]);
	c->acked++;
	c->inflight--;
	INC(w->ctr.acked, 1);
	DEC(w->ctr.inflight, 1);
}

static int handle_packet(struct rmq_bench_worker *w, struct conn *c, const struct rmq_packet *p, size_t wire,
			 uint64_t now)
{
	switch (p->type) {
	case RMQ_CONNACK:
		on_connack(w, c, &p->u.connack, now);
		break;
	case RMQ_SUBACK:
		on_suback(w, c, &p->u.suback);
		break;
	case RMQ_PUBLISH:
		on_publish(w, c, &p->u.publish, wire, now);
		break;
	case RMQ_PUBACK:
	case RMQ_PUBCOMP:
		on_pub_done(w, c, &p->u.ack, now);
		break;
	case RMQ_PUBREC:
		if (w->o->version >= RMQ_V5 && p->u.ack.reason >= 0x80) {
			/* The broker refused it: no PUBREL, the exchange ends here. */
			on_pub_done(w, c, &p->u.ack, now);
			break;
		}
		if (queue_ack(w, c, RMQ_PUBREL, p->u.ack.packet_id))
			INC(w->ctr.errors, 1);
		break;
	case RMQ_PUBREL:
		if (queue_ack(w, c, RMQ_PUBCOMP, p->u.ack.packet_id))
			INC(w->ctr.errors, 1);
		break;
	case RMQ_PINGRESP:
	case RMQ_UNSUBACK:
		break;
	case RMQ_DISCONNECT: {
		char why[160];
		snprintf(why, sizeof(why), "broker sent DISCONNECT, reason 0x%02x (%s)", p->u.disconnect.reason,
			 reason_text(RMQ_V5, p->u.disconnect.reason));
		conn_fail(w, c, why);
		return -1;
	}
	default:
		INC(w->ctr.errors, 1);
		break;
	}
	return c->state == C_CLOSED ? -1 : 0;
}

/* Parses every complete packet in buf[0..len); returns bytes consumed or -1 if the connection closed. */
static ssize_t parse(struct rmq_bench_worker *w, struct conn *c, const uint8_t *buf, size_t len, uint64_t now)
{
	size_t off = 0;
	while (off < len) {
		size_t total;
		int rc = rmq_proto_frame(buf + off, len - off, MAX_PACKET, &total);
		if (rc == RMQ_E_INCOMPLETE || (rc == RMQ_OK && total > len - off))
			break;
		struct rmq_packet p;
		if (rc == RMQ_OK)
			rc = rmq_proto_decode(buf + off, total, &w->dctx, &p);
		if (rc != RMQ_OK) {
			char why[160];
			snprintf(why, sizeof(why), "malformed packet from the broker: %s", rmq_proto_err_str(rc));
			conn_fail(w, c, why);
			return -1;
		}
		if (handle_packet(w, c, &p, total, now))
			return -1;
		off += total;
	}
	return (ssize_t)off;
}

static void on_readable(struct rmq_bench_worker *w, struct conn *c)
{
	/* Bounded: a connection flooding us must not starve the others on this thread. TLS reads go on until
	 * EAGAIN (bounded far higher): bytes OpenSSL read ahead into its buffer would not wake epoll again. */
	for (int round = 0; round < (c->ssl ? 1024 : 4) && c->state != C_CLOSED; round++) {
		size_t have = c->part_len;
		if (have)
			memcpy(w->scratch, c->part, have);
		c->part_len = 0;
		ssize_t n = c->ssl ? rmq_bench_tls_read(c->ssl, w->scratch + have, SCRATCH - have)
				   : read(c->fd, w->scratch + have, SCRATCH - have);
		INC(w->ctr.reads, 1);
		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				if (have) {
					memcpy(c->part, w->scratch, have);
					c->part_len = (uint32_t)have;
				}
				return;
			}
			char why[160];
			snprintf(why, sizeof(why), "%s",
				 n == 0 ? "connection closed by the broker" : strerror(errno));
			bool storm_hold = w->o->mode == RMQ_BENCH_CONN && c->state == C_READY;
			if (storm_hold)
				INC(w->ctr.errors, 1);
			conn_fail(w, c, why);
			return;
		}
		INC(w->ctr.bytes_in, (uint64_t)n);
		size_t total = have + (size_t)n;
		uint64_t now = rmq_bench_now_ns();
		ssize_t used = parse(w, c, w->scratch, total, now);
		if (used < 0)
			return;
		size_t rest = total - (size_t)used;
		if (rest) {
			if (rest > c->part_cap) {
				uint8_t *p = realloc(c->part, rest);
				if (!p) {
					conn_fail(w, c, "out of memory");
					return;
				}
				c->part = p;
				c->part_cap = (uint32_t)rest;
			}
			memcpy(c->part, w->scratch + used, rest);
			c->part_len = (uint32_t)rest;
		}
		if ((size_t)n < SCRATCH - have && !c->ssl)
			return; /* short read: the socket is drained (TLS returns one record per read: go on) */
	}
}

/* ---- send ---------------------------------------------------------------------------------------- */

static void flush_conn(struct rmq_bench_worker *w, struct conn *c, uint64_t now)
{
	c->dirty = false;
	if (c->state == C_CLOSED || c->state == C_CONNECTING || c->state == C_TLS_HANDSHAKE)
		return;
	uint32_t pending = c->out_len - c->out_off;
	if (!pending)
		return;
	ssize_t n = c->ssl ? rmq_bench_tls_write(c->ssl, c->out + c->out_off, pending)
			   : write(c->fd, c->out + c->out_off, pending);
	INC(w->ctr.writes, 1);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			n = 0;
		} else {
			char why[160];
			snprintf(why, sizeof(why), "write: %s", strerror(errno));
			conn_fail(w, c, why);
			return;
		}
	}
	INC(w->ctr.bytes_out, (uint64_t)n);
	c->out_off += (uint32_t)n;
	c->last_tx = now;
	bool rest = c->out_off < c->out_len;
	if (!rest)
		c->out_off = c->out_len = 0;
	c->blocked = rest;
	if (rest != c->pollout && set_events(w, c, rest))
		conn_fail(w, c, "epoll_ctl failed");
}

static bool can_publish(const struct rmq_bench_worker *w, const struct conn *c)
{
	if (c->state != C_READY || c->out_len - c->out_off >= OUT_HWM)
		return false;
	return w->o->qos == 0 || c->inflight < c->window;
}

static int publish_one(struct rmq_bench_worker *w, struct conn *c, uint64_t now)
{
	const struct rmq_bench_opts *o = w->o;
	struct rmq_stamp st = {.run_id = o->run_id, .send_ns = now, .pub_id = c->cl.pub_id, .seq = c->seq};
	rmq_bench_stamp_write(w->payload, &st);
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_PUBLISH;
	p.flags = (uint8_t)(o->qos << 1);
	p.u.publish.qos = o->qos;
	p.u.publish.topic = (struct rmq_str){(const uint8_t *)c->cl.topic, c->topic_len};
	if (c->commander) {
		/* Back-end b commands cars b, b + B, b + 2B, ...: every car hears from exactly one back-end. */
		uint32_t b = c->cl.index - o->cars;
		uint32_t car = (b + o->backends * c->cmd_next++) % o->cars;
		int n = rmq_bench_fleet_cmd_topic(o, car, w->cmd_topic, sizeof(w->cmd_topic));
		if (n < 0)
			return n;
		p.u.publish.topic = (struct rmq_str){(const uint8_t *)w->cmd_topic, (uint32_t)n};
	}
	p.u.publish.payload = (struct rmq_str){w->payload, o->size};
	if (o->qos) {
		p.u.publish.packet_id = (uint16_t)(c->issued % 65535 + 1);
		c->ack_ts[c->issued % c->window] = now;
	}
	int rc = queue_packet(w, c, &p);
	if (rc)
		return rc;
	if (o->qos) {
		c->issued++;
		c->inflight++;
		INC(w->ctr.inflight, 1);
	}
	c->seq++;
	INC(w->ctr.sent, 1);
	INC(w->ctr.expected, w->run->fanout[c->cl.index]);
	return 0;
}

/* Rated publishing: the worker's publishers share one schedule of send events at rate x npubs,
 * taken round-robin, so publishers are evenly staggered and a tick costs O(messages due). */
static void publish_rated(struct rmq_bench_worker *w, struct conn **pubs, uint32_t npubs, double each,
			  uint64_t *events, uint64_t now)
{
	double rate = each * npubs;
	uint64_t start = w->run->run_start_ns;
	if (now < start)
		return;
	uint64_t due = (uint64_t)((double)(now - start) * rate / 1e9) + 1;
	uint64_t lag_max = (uint64_t)(rate * (double)MAX_LAG_NS / 1e9) + 1;
	if (due > *events + lag_max) {
		INC(w->ctr.skipped, due - lag_max - *events);
		*events = due - lag_max;
	}
	for (; *events < due; (*events)++) {
		struct conn *c = pubs[*events % npubs];
		if (!can_publish(w, c) || publish_one(w, c, now))
			INC(w->ctr.skipped, 1);
	}
}

/* Unlimited: fill every writable publisher up to its batch; true if anyone could send more. */
static bool publish_unlimited(struct rmq_bench_worker *w, uint64_t now)
{
	bool more = false;
	for (uint32_t i = 0; i < w->npubs; i++) {
		struct conn *c = w->pubs[i];
		if (c->blocked)
			continue;
		int k = 0;
		while (k < UNLIMITED_BATCH && can_publish(w, c) && !publish_one(w, c, now))
			k++;
		if (k == UNLIMITED_BATCH)
			more = true;
	}
	return more;
}

/* ---- housekeeping: connect schedule, timeouts, keep alive -------------------------------------------- */

static void open_due(struct rmq_bench_worker *w, uint64_t now, uint64_t setup_start)
{
	double rate = w->o->connect_rate > 0 ? w->o->connect_rate / w->run->nworkers : 0;
	uint64_t due = rate > 0 ? (uint64_t)((double)(now - setup_start) * rate / 1e9) + 1 : w->nconns;
	/* Bound one burst so the epoll loop keeps turning even without a rate. */
	uint32_t budget = 256;
	while (w->opened < w->nconns && w->opened < due && budget--) {
		struct conn *c = &w->conns[w->opened++];
		int rc = conn_open(w, c, now);
		if (rc) {
			INC(w->ctr.conn_failed, 1);
			report_error(w, "client %s: connect to the broker: %s", c->cl.client_id, strerror(-rc));
			c->state = C_CLOSED;
			if (is_setup_fatal(w))
				ST(w->run->fatal, 1);
		}
	}
}

static void housekeeping(struct rmq_bench_worker *w, uint64_t now)
{
	uint64_t ct = (uint64_t)(w->o->connect_timeout * 1e9);
	uint64_t ka = (uint64_t)w->o->keepalive * 1000000000ull / 2;
	for (uint32_t i = 0; i < w->opened; i++) {
		struct conn *c = &w->conns[i];
		if ((c->state == C_CONNECTING || c->state == C_WAIT_CONNACK || c->state == C_WAIT_SUBACK) &&
		    now - c->t_connect > ct) {
			conn_fail(w, c, c->state == C_CONNECTING ? "TCP connect timed out"
				  : c->state == C_WAIT_CONNACK ? "no CONNACK within --connect-timeout"
				  : "no SUBACK within --connect-timeout");
		} else if (c->state == C_READY && ka && now - c->last_tx > ka) {
			struct rmq_packet p = {.type = RMQ_PINGREQ};
			if (queue_packet(w, c, &p))
				INC(w->ctr.errors, 1);
		}
	}
}

static void disconnect_all(struct rmq_bench_worker *w)
{
	uint64_t now = rmq_bench_now_ns();
	for (uint32_t i = 0; i < w->opened; i++) {
		struct conn *c = &w->conns[i];
		if (c->state == C_READY) {
			struct rmq_packet p;
			memset(&p, 0, sizeof(p));
			p.type = RMQ_DISCONNECT;
			if (!queue_packet(w, c, &p))
				flush_conn(w, c, now);
		}
		if (c->state != C_CLOSED && c->state != C_IDLE) {
			if (c->counted_ready) {
				DEC(w->ctr.ready, 1);
				c->counted_ready = false;
			}
			rmq_bench_tls_free(c->ssl);
			c->ssl = NULL;
			close(c->fd);
			c->state = C_CLOSED;
		}
	}
	w->nflush = 0;
}

/* ---- the loop ------------------------------------------------------------------------------------ */

static void handle_events(struct rmq_bench_worker *w, struct epoll_event *ev, int n)
{
	for (int i = 0; i < n; i++) {
		struct conn *c = ev[i].data.ptr;
		if (c->state == C_CLOSED)
			continue;
		if (c->state == C_CONNECTING) {
			on_connected(w, c);
			continue;
		}
		if (c->state == C_TLS_HANDSHAKE) {
			tls_step(w, c);
			continue;
		}
		if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			on_readable(w, c);
		if (c->state != C_CLOSED && (ev[i].events & EPOLLOUT)) {
			c->blocked = false;
			mark_dirty(w, c);
		}
	}
}

static void *worker_main(void *arg)
{
	struct rmq_bench_worker *w = arg;
	struct epoll_event ev[MAX_EVENTS];
	uint64_t setup_start = rmq_bench_now_ns();
	w->next_housekeeping = setup_start + 100000000ull;
	for (;;) {
		int phase = atomic_load(&w->run->phase);
		uint64_t now = rmq_bench_now_ns();
		if (phase == PH_STOP)
			break;
		if (w->opened < w->nconns)
			open_due(w, now, setup_start);
		bool busy = false;
		if (phase == PH_RUN && w->npubs) {
			if (w->o->rate > 0)
				publish_rated(w, w->pubs, w->npubs, w->o->rate, &w->pub_events, now);
			else
				busy = publish_unlimited(w, now);
		}
		if (phase == PH_RUN && w->ncmds)
			publish_rated(w, w->cmds, w->ncmds, w->o->cmd_rate / w->o->backends, &w->cmd_events, now);
		for (uint32_t i = 0; i < w->nflush; i++)
			flush_conn(w, w->flush[i], now);
		w->nflush = 0;
		/* Sleep 1 ms at most while a schedule runs (the rate's granularity), 20 ms otherwise
		 * (how quickly a phase change is noticed). */
		int timeout = busy ? 0 : ((phase == PH_RUN && (w->npubs || w->ncmds)) || w->opened < w->nconns ? 1 : 20);
		int n = epoll_wait(w->ep, ev, MAX_EVENTS, timeout);
		if (n > 0)
			handle_events(w, ev, n);
		now = rmq_bench_now_ns();
		if (now >= w->next_housekeeping) {
			housekeeping(w, now);
			w->next_housekeeping = now + 100000000ull;
		}
		for (uint32_t i = 0; i < w->nflush; i++)
			flush_conn(w, w->flush[i], now);
		w->nflush = 0;
	}
	disconnect_all(w);
	return NULL;
}

/* ---- construction and results -------------------------------------------------------------------- */

struct rmq_bench_worker *rmq_bench_worker_new(struct rmq_bench_run *run, int index)
{
	const struct rmq_bench_opts *o = run->o;
	struct rmq_bench_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->run = run;
	w->o = o;
	w->index = index;
	w->ep = -1;
	w->dctx.version = o->version;
	w->dctx.role = RMQ_ROLE_CLIENT;
	rmq_bench_hist_init(&w->lat);
	rmq_bench_hist_init(&w->ack_lat);
	rmq_bench_hist_init(&w->connack_lat);
	rmq_bench_hist_init(&w->cmd_lat);
	/* This worker's clients, as main assigned them (balanced by message load). */
	uint32_t n = 0;
	for (uint32_t i = 0; i < run->nclients; i++)
		n += run->worker_of[i] == (uint32_t)index;
	w->nconns = n;
	w->conns = calloc(n ? n : 1, sizeof(*w->conns));
	w->pubs = calloc(n ? n : 1, sizeof(*w->pubs));
	w->cmds = calloc(n ? n : 1, sizeof(*w->cmds));
	w->flush = calloc(n ? n : 1, sizeof(*w->flush));
	w->scratch = malloc(SCRATCH);
	w->payload = malloc(o->size > RMQ_STAMP_LEN ? o->size : RMQ_STAMP_LEN);
	if (!w->conns || !w->pubs || !w->cmds || !w->flush || !w->scratch || !w->payload)
		goto fail;
	/* Filler after the stamp: not all zero, so a compressing path cannot flatter the numbers. */
	for (uint32_t i = 0; i < o->size; i++)
		w->payload[i] = (uint8_t)('a' + i % 26);
	for (uint32_t i = 0, k = 0; i < run->nclients; i++) {
		if (run->worker_of[i] != (uint32_t)index)
			continue;
		struct conn *c = &w->conns[k++];
		c->fd = -1;
		if (rmq_bench_client_describe(o, i, &c->cl))
			goto fail;
		c->publishes = c->cl.publishes;
		c->subscribes = c->cl.subscribes;
		c->topic_len = (uint16_t)strlen(c->cl.topic);
		c->window = o->qos ? o->inflight : 1;
		rmq_bench_seq_init(&c->trk, o->mode == RMQ_BENCH_SUB);
		if (c->publishes) {
			if (o->qos && !(c->ack_ts = calloc(c->window, sizeof(uint64_t))))
				goto fail;
			c->commander = o->mode == RMQ_BENCH_FLEET && i >= o->cars;
			if (c->commander)
				w->cmds[w->ncmds++] = c;
			else
				w->pubs[w->npubs++] = c;
		}
	}
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->ep < 0)
		goto fail;
	return w;
fail:
	rmq_bench_worker_free(w);
	return NULL;
}

int rmq_bench_worker_start(struct rmq_bench_worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc)
		return -rc;
	w->started = true;
	return 0;
}

void rmq_bench_worker_join(struct rmq_bench_worker *w)
{
	if (w->started)
		pthread_join(w->thread, NULL);
	w->started = false;
}

void rmq_bench_worker_free(struct rmq_bench_worker *w)
{
	if (!w)
		return;
	for (uint32_t k = 0; w->conns && k < w->nconns; k++) {
		struct conn *c = &w->conns[k];
		if (c->state != C_IDLE && c->state != C_CLOSED && c->fd >= 0)
			close(c->fd);
		free(c->out);
		free(c->part);
		free(c->ack_ts);
		rmq_bench_seq_free(&c->trk);
	}
	if (w->ep >= 0)
		close(w->ep);
	free(w->conns);
	free(w->pubs);
	free(w->cmds);
	free(w->flush);
	free(w->scratch);
	free(w->payload);
	free(w);
}

const struct rmq_bench_counters *rmq_bench_worker_counters(const struct rmq_bench_worker *w)
{
	return &w->ctr;
}

const struct rmq_hist *rmq_bench_worker_latency(const struct rmq_bench_worker *w)
{
	return &w->lat;
}

const struct rmq_hist *rmq_bench_worker_ack_latency(const struct rmq_bench_worker *w)
{
	return &w->ack_lat;
}

const struct rmq_hist *rmq_bench_worker_connack_latency(const struct rmq_bench_worker *w)
{
	return &w->connack_lat;
}

const struct rmq_hist *rmq_bench_worker_cmd_latency(const struct rmq_bench_worker *w)
{
	return &w->cmd_lat;
}

const char *rmq_bench_worker_error(const struct rmq_bench_worker *w)
{
	return w->err;
}

void rmq_bench_worker_totals(const struct rmq_bench_worker *w, const struct rmq_bench_opts *o,
			     struct rmq_bench_totals *acc)
{
	(void)o;
	for (uint32_t k = 0; k < w->nconns; k++) {
		const struct conn *c = &w->conns[k];
		if (c->publishes) {
			acc->sent += c->seq;
			acc->expected += (uint64_t)c->seq * w->run->fanout[c->cl.index];
		}
		if (c->subscribes) {
			struct rmq_seq_totals t;
			rmq_bench_seq_totals(&c->trk, &t);
			acc->unique += t.unique;
			acc->dup += t.dup;
			acc->ooo += t.ooo;
			acc->gaps += t.gaps;
		}
	}
}
