/* Hardening limits: what one connection may cost everyone else (control-packet budget, topic depth,
 * subscriptions per session, user properties per packet, time to finish a started packet), each counted.
 * Reactor thread of the connection. */
#include <errno.h>
#include <string.h>

#include "io/reactor.h"
#include "mqtt/mqtt.h"

/* The control-packet bucket holds this many seconds of --max-control-rate: a client subscribing to a few
 * hundred topics one SUBSCRIBE at a time at start-up gets through, a sustained flood is cut within seconds. */
#define CONTROL_BURST_S 5u
#define MILLI 1000u

/* ---- counting and refusing ----------------------------------------------------------------------- */

/* v5 DISCONNECT with `reason` (3.x has no way to say why: close). Always -EPROTO. */
static int refuse(struct core *c, struct conn *cn, uint64_t *counter, uint8_t reason, const char *what)
{
	(*counter)++;
	VLOG(c, "ringmq: core %d: %s: disconnecting (reason %#x)\n", c->id, what, reason);
	rmq_conn_disconnect(c, cn, reason);
	return -EPROTO;
}

/* ---- control-packet token bucket ----------------------------------------------------------------- */

/* Why per connection and not per address: behind a load balancer every car shares one address. The
 * bucket lives in 12 bytes of the connection (idle-connection RSS is a target) in milli-tokens, so a
 * rate of a few per second still refills smoothly at the 100 ms tick resolution of now_ms. */
static bool control_allowed(struct core *c, struct conn *cn)
{
	uint32_t rate = c->b->cfg.max_control_rate;
	if (!rate)
		return true;
	uint64_t cap = (uint64_t)rate * CONTROL_BURST_S * MILLI;
	uint32_t now = (uint32_t)c->now_ms;
	uint64_t tokens = mqtt_conn(cn)->ctl_tokens;
	if (!mqtt_conn(cn)->ctl_started) {
		mqtt_conn(cn)->ctl_started = true;
		tokens = cap;
	} else {
		/* rate tokens per second = rate milli-tokens per ms */
		tokens += (uint64_t)(uint32_t)(now - mqtt_conn(cn)->ctl_ms) * rate;
		if (tokens > cap)
			tokens = cap;
	}
	mqtt_conn(cn)->ctl_ms = now;
	if (tokens < MILLI) {
		mqtt_conn(cn)->ctl_tokens = (uint32_t)tokens;
		return false;
	}
	mqtt_conn(cn)->ctl_tokens = (uint32_t)(tokens - MILLI);
	return true;
}

/* ---- topic depth --------------------------------------------------------------------------------- */

static uint32_t levels(const uint8_t *s, size_t len)
{
	uint32_t n = 1;
	for (size_t i = 0; i < len; i++)
		n += s[i] == '/';
	return n;
}

/* A shared subscription is judged by its inner filter: "$share/group/" adds no depth to the trie. */
static bool filter_too_deep(const struct core *c, const uint8_t *f, size_t len)
{
	if (len >= 7 && !memcmp(f, "$share/", 7)) {
		const uint8_t *slash = memchr(f + 7, '/', len - 7);
		if (slash) {
			len -= (size_t)(slash + 1 - f);
			f = slash + 1;
		}
	}
	return levels(f, len) > c->b->cfg.max_topic_levels;
}

static bool topic_too_deep(const struct core *c, const struct rmq_str *t)
{
	return t->len && levels(t->p, t->len) > c->b->cfg.max_topic_levels;
}

/* ---- properties ---------------------------------------------------------------------------------- */

/* User properties are the one list the codec leaves unbounded (every other property may appear at most
 * once, Subscription Identifier at most once from a client). */
static bool too_many_user_props(const struct core *c, const struct rmq_props *pr)
{
	return pr && pr->user_count > c->b->cfg.max_user_properties;
}

/* ---- checks -------------------------------------------------------------------------------------- */

int rmq_limits_check_connect(struct core *c, struct conn *cn, const struct rmq_connect *ck)
{
	uint8_t reason = 0;
	uint64_t *counter = NULL;
	if (too_many_user_props(c, &ck->props) || (ck->will && too_many_user_props(c, &ck->will_props))) {
		reason = RMQ_RC_PACKET_TOO_LARGE;
		counter = &c->st.rej_user_props;
	} else if (ck->will && topic_too_deep(c, &ck->will_topic)) {
		reason = RMQ_RC_TOPIC_NAME_INVALID;
		counter = &c->st.rej_topic_levels;
	} else {
		return 0;
	}
	(*counter)++;
	VLOG(c, "ringmq: core %d: CONNECT over a limit (reason %#x), refused\n", c->id, reason);
	if (ck->version == RMQ_V5) {
		/* 0x95 and 0x90 are CONNACK reason codes too; 3.1.1 has no code that fits: a plain close. */
		struct rmq_packet r;
		memset(&r, 0, sizeof(r));
		r.type = RMQ_CONNACK;
		r.u.connack.reason = reason;
		cn->version = RMQ_V5;
		rmq_conn_write_packet(c, cn, &r);
	}
	rmq_conn_close(c, cn, false);
	return -EPROTO;
}

/* Reason codes: MQTT 5 has none for "too many user properties"; 0x95 (Packet too large) names the kind of
 * limit, a size the server will not take, where 0x81 (Malformed) would call a valid packet broken. */
int rmq_limits_check_packet(struct core *c, struct conn *cn, const struct rmq_packet *p)
{
	if (cn->version == RMQ_V5 && too_many_user_props(c, rmq_proto_props_of(p)))
		return refuse(c, cn, &c->st.rej_user_props, RMQ_RC_PACKET_TOO_LARGE, "too many user properties");
	switch (p->type) {
	case RMQ_PUBLISH:
		if (topic_too_deep(c, &p->u.publish.topic))
			return refuse(c, cn, &c->st.rej_topic_levels, RMQ_RC_TOPIC_NAME_INVALID, "topic too deep");
		return 0;
	case RMQ_PINGREQ:
	case RMQ_SUBSCRIBE:
	case RMQ_UNSUBSCRIBE:
		if (!control_allowed(c, cn))
			return refuse(c, cn, &c->st.rej_control_rate, RMQ_RC_MESSAGE_RATE_TOO_HIGH,
				      "control packet flood");
		return 0;
	default:
		return 0;
	}
}

static bool has_sub(const struct session *s, const uint8_t *f, uint16_t len)
{
	for (uint32_t i = 0; i < s->nsubs; i++)
		if (s->subs[i].len == len && !memcmp(s->subs[i].filter, f, len))
			return true;
	return false;
}

uint8_t rmq_limits_subscribe_refusal(struct core *c, struct conn *cn, const uint8_t *f, uint16_t len)
{
	bool v5 = cn->version == RMQ_V5;
	if (filter_too_deep(c, f, len)) {
		c->st.rej_topic_levels++;
		return v5 ? RMQ_RC_TOPIC_FILTER_INVALID : RMQ_V3_SUBACK_FAILURE;
	}
	uint32_t max = c->b->cfg.max_subscriptions;
	struct session *s = mqtt_conn(cn)->sess;
	if (max && s && s->nsubs >= max && !has_sub(s, f, len)) {
		/* Replacing an existing subscription costs nothing new: only a new filter is refused. */
		c->st.rej_subscriptions++;
		return v5 ? RMQ_RC_QUOTA_EXCEEDED : RMQ_V3_SUBACK_FAILURE;
	}
	return 0;
}

/* ---- slowloris: a started packet must arrive within --packet-timeout ------------------------------ */

static uint64_t partial_deadline(const struct core *c, const struct conn *cn)
{
	/* now_ms minus the 32-bit age gives the 64-bit start back */
	uint64_t start = c->now_ms - (uint32_t)((uint32_t)c->now_ms - mqtt_conn(cn)->partial_ms);
	return start + (uint64_t)c->b->cfg.packet_timeout * 1000u;
}

static void partial_start(struct core *c, struct conn *cn)
{
	mqtt_conn(cn)->partial = true;
	mqtt_conn(cn)->partial_ms = (uint32_t)c->now_ms;
	uint64_t due = partial_deadline(c, cn);
	if (cn->ka_ms && cn->last_rx_ms + cn->ka_ms < due)
		due = cn->last_rx_ms + cn->ka_ms;
	rmq_wheel_add(&c->wheel, &cn->timer, due);
}

void rmq_limits_track_partial(struct core *c, struct conn *cn, bool consumed, bool leftover)
{
	if (!c->b->cfg.packet_timeout || cn->state != CS_ACTIVE || cn->pause || !leftover) {
		/* Paused input is held, not trickling: its clock starts again when parsing resumes. */
		mqtt_conn(cn)->partial = false;
		return;
	}
	if (!mqtt_conn(cn)->partial || consumed)
		partial_start(c, cn);  /* else the same packet is still arriving */
}

void rmq_limits_track_transport(struct core *c, struct conn *cn, bool xp_partial)
{
	if (cn->released || cn->state != CS_ACTIVE || !c->b->cfg.packet_timeout)
		return;
	if (xp_partial && !mqtt_conn(cn)->partial && !cn->pause)
		partial_start(c, cn);
	else if (!xp_partial && !cn->rlen)
		mqtt_conn(cn)->partial = false;  /* e.g. a whole WebSocket ping: nothing is left half-way */
}

bool rmq_limits_conn_timer(struct core *c, struct conn *cn)
{
	if (mqtt_conn(cn)->partial && partial_deadline(c, cn) <= c->now_ms) {
		/* 0x8D (Keep Alive timeout): the link is too slow or stalled to finish a packet, the failure an
		 * honest client on a dying link would also see reported by the keep-alive. */
		refuse(c, cn, &c->st.rej_slow_packet, RMQ_RC_KEEPALIVE_TIMEOUT, "packet not finished in time");
		return true;
	}
	uint64_t due = UINT64_MAX;
	if (mqtt_conn(cn)->partial)
		due = partial_deadline(c, cn);
	if (cn->ka_ms) {
		uint64_t ka = cn->last_rx_ms + cn->ka_ms;
		if (ka <= c->now_ms)
			return false;  /* keep-alive expired: the caller closes */
		if (ka < due)
			due = ka;
	}
	if (due != UINT64_MAX)
		rmq_wheel_add(&c->wheel, &cn->timer, due);
	return true;
}

void rmq_limits_handshake_failed(struct core *c, struct conn *cn)
{
	(void)cn;
	c->st.rej_handshake++;
}
