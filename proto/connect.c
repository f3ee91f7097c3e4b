/* CONNECT and CONNACK: protocol name/level, connect flags, client id rules per version, will.
 * Pure functions, callable from any thread. */
#include "internal.h"

#define CF_RESERVED 0x01
#define CF_CLEAN 0x02
#define CF_WILL 0x04
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20
#define CF_PASSWORD 0x40
#define CF_USERNAME 0x80

static bool str_is(struct rmq_str s, const char *lit, uint32_t n)
{
	return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* [MQTT-3.1.2-1/2] "MQTT" with level 4 or 5, or MQTT 3.1's "MQIsdp" with level 3. */
static int read_protocol(struct rd *r, struct rmq_connect *c)
{
	uint8_t level;
	int rc;
	if ((rc = rd_bin(r, &c->protocol_name)) < 0 || (rc = rd_u8(r, &level)) < 0)
		return rc;
	bool mqtt = str_is(c->protocol_name, "MQTT", 4);
	if (!mqtt && !str_is(c->protocol_name, "MQIsdp", 6))
		return RMQ_E_PROTOCOL_NAME;
	if (mqtt ? (level != RMQ_V311 && level != RMQ_V5) : level != RMQ_V31)
		return RMQ_E_PROTOCOL_VERSION;
	c->version = level;
	return RMQ_OK;
}

static int read_flags(struct rd *r, struct rmq_connect *c)
{
	uint8_t f;
	int rc = rd_u8(r, &f);
	if (rc < 0)
		return rc;
	if (f & CF_RESERVED)
		return RMQ_E_CONNECT_FLAGS; /* [MQTT-3.1.2-3] */
	c->clean_start = f & CF_CLEAN;
	c->will = f & CF_WILL;
	c->will_qos = (f >> CF_WILL_QOS_SHIFT) & 3;
	c->will_retain = f & CF_WILL_RETAIN;
	c->has_password = f & CF_PASSWORD;
	c->has_username = f & CF_USERNAME;
	if (!c->will && (c->will_qos || c->will_retain))
		return RMQ_E_CONNECT_FLAGS; /* [MQTT-3.1.2-11/13/15] */
	if (c->will_qos == 3)
		return RMQ_E_BAD_QOS; /* [MQTT-3.1.2-14] */
	if (c->version < RMQ_V5 && c->has_password && !c->has_username)
		return RMQ_E_PASSWORD_NO_USER; /* [MQTT-3.1.2-22]; 5.0 allows a password alone */
	return RMQ_OK;
}

/* Client id rules that need no broker state. The 3.1.1 "empty id needs clean session" rule is checked
 * here rather than in core so every caller gets it; v5 lets the server assign an id instead. */
static int check_client_id(const struct rmq_connect *c)
{
	if (c->version == RMQ_V31 && (c->client_id.len == 0 || c->client_id.len > RMQ_V31_MAX_CLIENT_ID))
		return RMQ_E_CLIENT_ID;
	if (c->version == RMQ_V311 && c->client_id.len == 0 && !c->clean_start)
		return RMQ_E_CLIENT_ID; /* [MQTT-3.1.3-8] */
	return RMQ_OK;
}

static int read_will(struct rd *r, struct rmq_connect *c)
{
	int rc;
	if (c->version == RMQ_V5 && (rc = rmq_proto_props_decode(r, PROPS_WILL, RMQ_ROLE_SERVER, &c->will_props)) < 0)
		return rc;
	if ((rc = rd_bin(r, &c->will_topic)) < 0)
		return rc;
	/* [MQTT-3.1.3-11] UTF-8; a will is published, so it must be a valid topic name */
	if ((rc = rmq_proto_topic_name_validate(c->will_topic.p, c->will_topic.len)) < 0)
		return rc;
	return rd_bin(r, &c->will_payload);
}

int rmq_proto_connect_decode(struct rd *r, struct rmq_connect *c)
{
	int rc;
	memset(c, 0, sizeof *c);
	if ((rc = read_protocol(r, c)) < 0 || (rc = read_flags(r, c)) < 0 || (rc = rd_u16(r, &c->keep_alive)) < 0)
		return rc;
	if (c->version == RMQ_V5 && (rc = rmq_proto_props_decode(r, RMQ_CONNECT, RMQ_ROLE_SERVER, &c->props)) < 0)
		return rc;
	if ((rc = rd_utf8(r, &c->client_id)) < 0 || (rc = check_client_id(c)) < 0)
		return rc;
	if (c->will && (rc = read_will(r, c)) < 0)
		return rc;
	if (c->has_username && (rc = rd_utf8(r, &c->username)) < 0) /* [MQTT-3.1.3-11] */
		return rc;
	if (c->has_password && (rc = rd_bin(r, &c->password)) < 0)
		return rc;
	return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
}

int rmq_proto_connect_encode(struct wr *w, uint8_t version, const struct rmq_connect *c)
{
	int rc;
	if (c->will_qos > 2)
		return RMQ_E_BAD_QOS;
	if (!c->will && (c->will_qos || c->will_retain))
		return RMQ_E_CONNECT_FLAGS;
	if (version < RMQ_V5 && c->has_password && !c->has_username)
		return RMQ_E_PASSWORD_NO_USER;
	struct rmq_str name = version == RMQ_V31 ? (struct rmq_str){(const uint8_t *)"MQIsdp", 6}
						 : (struct rmq_str){(const uint8_t *)"MQTT", 4};
	wr_bin(w, name);
	wr_u8(w, version);
	wr_u8(w, (uint8_t)((c->clean_start ? CF_CLEAN : 0) | (c->will ? CF_WILL : 0) |
			   c->will_qos << CF_WILL_QOS_SHIFT | (c->will_retain ? CF_WILL_RETAIN : 0) |
			   (c->has_password ? CF_PASSWORD : 0) | (c->has_username ? CF_USERNAME : 0)));
	wr_u16(w, c->keep_alive);
	if (version == RMQ_V5 && (rc = rmq_proto_props_encode(w, RMQ_CONNECT, &c->props)) < 0)
		return rc;
	if ((rc = wr_bin(w, c->client_id)) < 0)
		return rc;
	if (c->will) {
		if (version == RMQ_V5 && (rc = rmq_proto_props_encode(w, PROPS_WILL, &c->will_props)) < 0)
			return rc;
		if ((rc = wr_bin(w, c->will_topic)) < 0 || (rc = wr_bin(w, c->will_payload)) < 0)
			return rc;
	}
	if (c->has_username && (rc = wr_bin(w, c->username)) < 0)
		return rc;
	if (c->has_password && (rc = wr_bin(w, c->password)) < 0)
		return rc;
	return RMQ_OK;
}

#define CONNACK_SESSION_PRESENT 0x01

int rmq_proto_connack_decode(struct rd *r, uint8_t version, struct rmq_connack *c)
{
	uint8_t f;
	int rc;
	memset(c, 0, sizeof *c);
	if ((rc = rd_u8(r, &f)) < 0 || (rc = rd_u8(r, &c->reason)) < 0)
		return rc;
	/* 3.1 leaves the first byte unused; 3.1.1 and 5.0 reserve bits 7-1 [MQTT-3.2.2-1] */
	if (version != RMQ_V31) {
		if (f & ~CONNACK_SESSION_PRESENT)
			return RMQ_E_CONNACK_FLAGS;
		c->session_present = f & CONNACK_SESSION_PRESENT;
	}
	if (!rmq_proto_reason_valid(RMQ_CONNACK, version, c->reason))
		return RMQ_E_REASON_CODE;
	if (version == RMQ_V5 && (rc = rmq_proto_props_decode(r, RMQ_CONNACK, RMQ_ROLE_CLIENT, &c->props)) < 0)
		return rc;
	return rd_left(r) ? RMQ_E_TRAILING : RMQ_OK;
}

int rmq_proto_connack_encode(struct wr *w, uint8_t version, const struct rmq_connack *c)
{
	if (!rmq_proto_reason_valid(RMQ_CONNACK, version, c->reason))
		return RMQ_E_REASON_CODE;
	wr_u8(w, version != RMQ_V31 && c->session_present ? CONNACK_SESSION_PRESENT : 0);
	wr_u8(w, c->reason);
	return version == RMQ_V5 ? rmq_proto_props_encode(w, RMQ_CONNACK, &c->props) : RMQ_OK;
}
