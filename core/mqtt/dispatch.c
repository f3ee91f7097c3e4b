/* Packet dispatch: decodes one framed packet and hands it to the handler for its type; malformed input
 * gets the spec's answer (v5 DISCONNECT with the reason code, close for 3.x). Reactor thread. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "index/msg.h"
#include "io/reactor.h"
#include "mqtt/mqtt.h"

/* The protocol level byte of a CONNECT, read without trusting the rest, so a rejected CONNECT can
 * be answered in the client's own version. */
static uint8_t peek_version(const uint8_t *pkt, size_t len)
{
	size_t i = 1;
	while (i < len && i < 5 && (pkt[i] & 0x80))
		i++;
	i++;
	if (i + 2 > len)
		return 0;
	size_t nlen = (size_t)pkt[i] << 8 | pkt[i + 1];
	i += 2 + nlen;
	return i < len ? pkt[i] : 0;
}

static void reject_connect(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len, int err)
{
	uint8_t v = peek_version(pkt, len);
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_CONNACK;
	if (v == RMQ_V5) {
		cn->version = RMQ_V5;
		p.u.connack.reason = rmq_proto_err_reason(err);
		rmq_conn_write_packet(c, cn, &p);
	} else if (v == RMQ_V31 || v == RMQ_V311 || err == RMQ_E_PROTOCOL_VERSION) {
		/* [MQTT-3.1.2-2] unsupported level: return code 1; 3.1 bad client id: 2. */
		cn->version = RMQ_V311;
		if (err == RMQ_E_PROTOCOL_VERSION)
			p.u.connack.reason = RMQ_V3_BAD_VERSION;
		else if (err == RMQ_E_CLIENT_ID)
			p.u.connack.reason = RMQ_V3_ID_REJECTED;
		else
			p.type = 0;
		if (p.type)
			rmq_conn_write_packet(c, cn, &p);
	}
	rmq_conn_close(c, cn, false);
}

static int on_disconnect(struct core *c, struct conn *cn, const struct rmq_disconnect *d)
{
	bool sets_expiry = cn->version == RMQ_V5 && (d->props.present & RMQ_PBIT(RMQ_PROP_SESSION_EXPIRY));
	if (sets_expiry && mqtt_conn(cn)->sess && mqtt_conn(cn)->sess->clean && d->props.session_expiry != 0) {
		/* [MQTT-3.14.2-2] a session that began with expiry 0 cannot be made persistent at the end. */
		c->st.malformed++;
		rmq_conn_disconnect(c, cn, RMQ_RC_PROTOCOL_ERROR);
		return -EPROTO;
	}
	cn->got_disconnect = true;
	/* v5 0x04 "disconnect with will message" asks for the will; every other normal reason drops it. */
	bool with_will = cn->version == RMQ_V5 && d->reason == RMQ_RC_DISCONNECT_WITH_WILL;
	if (!with_will && mqtt_conn(cn)->will) {
		rmq_msg_unref(mqtt_conn(cn)->will);
		mqtt_conn(cn)->will = NULL;
	}
	if (sets_expiry && mqtt_conn(cn)->sess) {
		mqtt_conn(cn)->sess->expiry = d->props.session_expiry;
		mqtt_conn(cn)->sess->clean = d->props.session_expiry == 0;
	}
	rmq_conn_close(c, cn, with_will);
	return 0;
}

int rmq_mqtt_handle(struct core *c, struct conn *cn, const uint8_t *pkt, size_t len)
{
	/* A connection is only ever handled by the core whose slab holds it. */
	assert(cn->slot < c->nslots && c->slots[cn->slot] == cn);
	struct rmq_packet p;
	struct rmq_decode_ctx ctx = {.version = cn->version ? cn->version : RMQ_V311, .role = RMQ_ROLE_SERVER};
	int rc = rmq_proto_decode(pkt, len, &ctx, &p);
	if (rc < 0) {
		c->st.malformed++;
		VLOG(c, "ringmq: core %d: malformed packet: %s\n", c->id, rmq_proto_err_str(rc));
		if (cn->state == CS_NEW)
			reject_connect(c, cn, pkt, len, rc);
		else if (cn->version == RMQ_V5)
			rmq_conn_disconnect(c, cn, rmq_proto_err_reason(rc));
		else
			rmq_conn_close(c, cn, true);
		return rc;
	}
	if (cn->state == CS_NEW) {
		if (p.type != RMQ_CONNECT) {
			/* [MQTT-3.1.0-1] the first packet must be CONNECT. */
			c->st.malformed++;
			rmq_conn_close(c, cn, false);
			return -EPROTO;
		}
		if (rmq_limits_check_connect(c, cn, &p.u.connect))
			return -EPROTO;
		return rmq_mqtt_on_connect(c, cn, pkt, len, &p.u.connect);
	}
	if (rmq_limits_check_packet(c, cn, &p))
		return -EPROTO;  /* over a hardening limit: refused, counted, disconnected */
	switch (p.type) {
	case RMQ_PUBLISH:
		return rmq_mqtt_on_publish(c, cn, &p.u.publish);
	case RMQ_PUBACK:
	case RMQ_PUBREC:
	case RMQ_PUBREL:
	case RMQ_PUBCOMP:
		return rmq_mqtt_on_ack(c, cn, p.type, &p.u.ack);
	case RMQ_SUBSCRIBE:
		return rmq_mqtt_on_subscribe(c, cn, &p.u.subscribe);
	case RMQ_UNSUBSCRIBE:
		return rmq_mqtt_on_unsubscribe(c, cn, &p.u.subscribe);
	case RMQ_PINGREQ: {
		struct rmq_packet r = {.type = RMQ_PINGRESP};
		return rmq_conn_write_packet(c, cn, &r);
	}
	case RMQ_DISCONNECT:
		return on_disconnect(c, cn, &p.u.disconnect);
	case RMQ_AUTH:
		/* No enhanced authentication yet, so no CONNECT was accepted with an Authentication Method
		 * (those get CONNACK 0x8C): an AUTH is then a protocol error (MQTT 5 4.12), and 0x8C is not
		 * a DISCONNECT reason code (table 2-6; the encoder refused it, the client saw a bare close). */
		c->st.malformed++;
		rmq_conn_disconnect(c, cn, RMQ_RC_PROTOCOL_ERROR);
		return -EPROTO;
	default:
		/* [MQTT-3.1.0-2] a second CONNECT, or a packet only a server sends. */
		c->st.malformed++;
		rmq_conn_disconnect(c, cn, RMQ_RC_PROTOCOL_ERROR);
		return -EPROTO;
	}
}
