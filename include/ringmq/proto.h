/* ringmq MQTT codec (3.1, 3.1.1, 5.0): packet structs, decode and encode, error codes.
 * Pure functions: bytes in, structs or error codes out; no I/O, no allocation; callable from any thread. */
#ifndef RINGMQ_PROTO_H
#define RINGMQ_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- versions, packet types -------------------------------------------------------------- */

enum rmq_version {
	RMQ_V31 = 3,   /* "MQIsdp" */
	RMQ_V311 = 4,  /* "MQTT" level 4 */
	RMQ_V5 = 5,    /* "MQTT" level 5 */
};

enum rmq_ptype {
	RMQ_CONNECT = 1, RMQ_CONNACK, RMQ_PUBLISH, RMQ_PUBACK, RMQ_PUBREC, RMQ_PUBREL, RMQ_PUBCOMP,
	RMQ_SUBSCRIBE, RMQ_SUBACK, RMQ_UNSUBSCRIBE, RMQ_UNSUBACK, RMQ_PINGREQ, RMQ_PINGRESP,
	RMQ_DISCONNECT, RMQ_AUTH,
};

/* Which side of the connection is decoding: some rules depend on the sender
 * (e.g. [MQTT-3.3.4-6] a client's PUBLISH must not carry a Subscription Identifier). */
enum rmq_role {
	RMQ_ROLE_SERVER = 0, /* we are the broker: decoding what a client sent */
	RMQ_ROLE_CLIENT = 1, /* we are a client (bench, tests): decoding what a broker sent */
};

/* ---- errors -------------------------------------------------------------------------------
 * Every rejection is a distinct negative value; rmq_proto_err_reason() gives the MQTT 5 reason code
 * the broker sends (DISCONNECT or CONNACK), rmq_proto_err_str() a one-line human text naming the rule. */
enum rmq_err {
	RMQ_OK = 0,
	RMQ_E_INCOMPLETE = -1,        /* not an error: more bytes are needed */
	RMQ_E_BUF_TOO_SMALL = -2,     /* encoder: output buffer too small */
	RMQ_E_FIELD_TOO_LONG = -3,    /* encoder: a string or binary field longer than 65535 bytes */
	/* 0x81 Malformed Packet */
	RMQ_E_VARINT = -10,           /* variable byte integer longer than 4 bytes */
	RMQ_E_VARINT_NONMINIMAL = -11,/* non-minimal varint where the spec requires minimal */
	RMQ_E_TRUNCATED = -12,        /* a field runs past the remaining length */
	RMQ_E_TRAILING = -13,         /* bytes left over after the last field */
	RMQ_E_BAD_FLAGS = -14,        /* reserved fixed-header flag bits wrong [MQTT-2.1.3-1] */
	RMQ_E_BAD_QOS = -15,          /* QoS 3 [MQTT-3.3.1-4] */
	RMQ_E_UTF8 = -16,             /* ill-formed UTF-8, U+0000, or surrogate [MQTT-1.5.4-1/2] */
	RMQ_E_BAD_PROP = -17,         /* unknown property identifier */
	RMQ_E_PROP_LEN = -18,         /* property length inconsistent */
	RMQ_E_BAD_PACKET_TYPE = -19,  /* type 0 or a type this role must never receive */
	RMQ_E_CONNECT_FLAGS = -20,    /* reserved bit set, will flags inconsistent [MQTT-3.1.2-3,11,13,15] */
	RMQ_E_PASSWORD_NO_USER = -21, /* 3.1.1: password flag without username [MQTT-3.1.2-22] */
	RMQ_E_SUB_OPTIONS = -22,      /* reserved subscription option bits, retain handling 3 */
	RMQ_E_NO_TOPICS = -23,        /* SUBSCRIBE/UNSUBSCRIBE with no filter [MQTT-3.8.3-3] */
	RMQ_E_CONNACK_FLAGS = -24,    /* CONNACK acknowledge flags bits 7-1 set [MQTT-3.2.2-1] */
	/* 0x82 Protocol Error */
	RMQ_E_DUP_PROP = -30,         /* property present twice where only once is allowed */
	RMQ_E_PROP_NOT_ALLOWED = -31, /* property not allowed in this packet */
	RMQ_E_PROP_VALUE = -32,       /* property value out of range (receive max 0, max packet 0, ...) */
	RMQ_E_PACKET_ID_ZERO = -33,   /* packet identifier 0 [MQTT-2.2.1-3] */
	RMQ_E_QOS0_DUP = -34,         /* DUP set on QoS 0 [MQTT-3.3.1-2] */
	RMQ_E_PROTOCOL_NAME = -35,    /* neither "MQTT" nor "MQIsdp" */
	RMQ_E_SUB_ID_ZERO = -36,      /* subscription identifier 0 */
	RMQ_E_REASON_CODE = -37,      /* reason code not defined for this packet type */
	RMQ_E_SHARED_NO_LOCAL = -38,  /* No Local on a shared subscription [MQTT-3.8.3-4] */
	RMQ_E_TOPIC_ALIAS_ZERO = -39,  /* topic alias 0 [MQTT-3.3.2-8] */
	RMQ_E_TOPIC_EMPTY = -52,      /* v5 PUBLISH with empty topic and no topic alias [MQTT-3.3.2-1]; 0x82 */
	RMQ_E_AUTH_DATA_NO_METHOD = -29, /* Authentication Data without Authentication Method [MQTT-3.1.2.11.10] */
	/* 0x84 Unsupported Protocol Version */
	RMQ_E_PROTOCOL_VERSION = -40,
	/* 0x85 Client Identifier not valid */
	RMQ_E_CLIENT_ID = -41,        /* 3.1: client id longer than 23 bytes or empty */
	/* 0x8F Topic Filter invalid */
	RMQ_E_TOPIC_FILTER = -50,
	/* 0x90 Topic Name invalid */
	RMQ_E_TOPIC_NAME = -51,
	/* 0x95 Packet too large */
	RMQ_E_TOO_LARGE = -60,
	RMQ_E_TOO_MANY_FILTERS = -61,   /* more than 65535 entries in one SUBSCRIBE/UNSUBSCRIBE/SUBACK */
	RMQ_E_TOO_MANY_USER_PROPS = -62,/* more than 65535 user properties in one property block */
	/* 0x83 Implementation specific error */
	RMQ_E_TOO_MANY_SUB_IDS = -63,   /* client role: more than RMQ_MAX_SUB_IDS in one PUBLISH */
	/* 0x99 Payload format invalid (payload format indicator 1 but payload not UTF-8) */
	RMQ_E_PAYLOAD_FORMAT = -70,
};

uint8_t rmq_proto_err_reason(int err);
const char *rmq_proto_err_str(int err);

/* ---- reason codes (MQTT 5 section 2.4) ----------------------------------------------------- */
enum rmq_reason {
	RMQ_RC_SUCCESS = 0x00, RMQ_RC_GRANTED_QOS1 = 0x01, RMQ_RC_GRANTED_QOS2 = 0x02,
	RMQ_RC_DISCONNECT_WITH_WILL = 0x04, RMQ_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
	RMQ_RC_NO_SUBSCRIPTION_EXISTED = 0x11, RMQ_RC_CONTINUE_AUTH = 0x18, RMQ_RC_REAUTH = 0x19,
	RMQ_RC_UNSPECIFIED = 0x80, RMQ_RC_MALFORMED = 0x81, RMQ_RC_PROTOCOL_ERROR = 0x82,
	RMQ_RC_IMPL_SPECIFIC = 0x83, RMQ_RC_UNSUPPORTED_VERSION = 0x84, RMQ_RC_CLIENT_ID_INVALID = 0x85,
	RMQ_RC_BAD_USER_PASS = 0x86, RMQ_RC_NOT_AUTHORIZED = 0x87, RMQ_RC_SERVER_UNAVAILABLE = 0x88,
	RMQ_RC_SERVER_BUSY = 0x89, RMQ_RC_BANNED = 0x8A, RMQ_RC_SERVER_SHUTTING_DOWN = 0x8B,
	RMQ_RC_BAD_AUTH_METHOD = 0x8C, RMQ_RC_KEEPALIVE_TIMEOUT = 0x8D, RMQ_RC_SESSION_TAKEN_OVER = 0x8E,
	RMQ_RC_TOPIC_FILTER_INVALID = 0x8F, RMQ_RC_TOPIC_NAME_INVALID = 0x90,
	RMQ_RC_PACKET_ID_IN_USE = 0x91, RMQ_RC_PACKET_ID_NOT_FOUND = 0x92,
	RMQ_RC_RECEIVE_MAX_EXCEEDED = 0x93, RMQ_RC_TOPIC_ALIAS_INVALID = 0x94,
	RMQ_RC_PACKET_TOO_LARGE = 0x95, RMQ_RC_MESSAGE_RATE_TOO_HIGH = 0x96, RMQ_RC_QUOTA_EXCEEDED = 0x97,
	RMQ_RC_ADMIN_ACTION = 0x98, RMQ_RC_PAYLOAD_FORMAT_INVALID = 0x99,
	RMQ_RC_RETAIN_NOT_SUPPORTED = 0x9A, RMQ_RC_QOS_NOT_SUPPORTED = 0x9B,
	RMQ_RC_USE_ANOTHER_SERVER = 0x9C, RMQ_RC_SERVER_MOVED = 0x9D,
	RMQ_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E, RMQ_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
	RMQ_RC_MAX_CONNECT_TIME = 0xA0, RMQ_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
	RMQ_RC_WILDCARD_SUB_NOT_SUPPORTED = 0xA2,
};

/* 3.1/3.1.1 CONNACK return codes. */
enum rmq_connack_v3 {
	RMQ_V3_ACCEPTED = 0, RMQ_V3_BAD_VERSION = 1, RMQ_V3_ID_REJECTED = 2, RMQ_V3_SERVER_UNAVAILABLE = 3,
	RMQ_V3_BAD_USER_PASS = 4, RMQ_V3_NOT_AUTHORIZED = 5,
};

/* 3.1.1 SUBACK return code for a refused filter ([MQTT-3.9.3], the only failure code 3.1.1 has). */
#define RMQ_V3_SUBACK_FAILURE 0x80

/* ---- limits ---------------------------------------------------------------------------------- */
#define RMQ_MAX_REMAINING_LEN 268435455u   /* largest 4-byte variable byte integer */
#define RMQ_MAX_FIXED_HEADER 5u
#define RMQ_MAX_TOPIC_LEN 65535u
#define RMQ_MAX_SUB_IDS 16                 /* sub ids carried in one decoded PUBLISH (client role) */
/* Topic levels in one name or filter: bounds the depth of the core's subscription trie and matcher.
 * Fleet topics are a handful of levels deep; 128 leaves plenty of room. */
#define RMQ_MAX_TOPIC_LEVELS 128u
#define RMQ_V31_MAX_CLIENT_ID 23u          /* MQTT 3.1: client id 1..23 bytes */

/* ---- strings and binary data: views into the caller's buffer (never copied) ------------------ */
struct rmq_str {
	const uint8_t *p;
	uint32_t len;
};

/* ---- MQTT 5 properties ----------------------------------------------------------------------- */
enum rmq_prop_id {
	RMQ_PROP_PAYLOAD_FORMAT = 0x01, RMQ_PROP_MESSAGE_EXPIRY = 0x02, RMQ_PROP_CONTENT_TYPE = 0x03,
	RMQ_PROP_RESPONSE_TOPIC = 0x08, RMQ_PROP_CORRELATION_DATA = 0x09, RMQ_PROP_SUB_ID = 0x0B,
	RMQ_PROP_SESSION_EXPIRY = 0x11, RMQ_PROP_ASSIGNED_CLIENT_ID = 0x12, RMQ_PROP_SERVER_KEEP_ALIVE = 0x13,
	RMQ_PROP_AUTH_METHOD = 0x15, RMQ_PROP_AUTH_DATA = 0x16, RMQ_PROP_REQUEST_PROBLEM_INFO = 0x17,
	RMQ_PROP_WILL_DELAY = 0x18, RMQ_PROP_REQUEST_RESPONSE_INFO = 0x19, RMQ_PROP_RESPONSE_INFO = 0x1A,
	RMQ_PROP_SERVER_REFERENCE = 0x1C, RMQ_PROP_REASON_STRING = 0x1F, RMQ_PROP_RECEIVE_MAX = 0x21,
	RMQ_PROP_TOPIC_ALIAS_MAX = 0x22, RMQ_PROP_TOPIC_ALIAS = 0x23, RMQ_PROP_MAX_QOS = 0x24,
	RMQ_PROP_RETAIN_AVAILABLE = 0x25, RMQ_PROP_USER = 0x26, RMQ_PROP_MAX_PACKET_SIZE = 0x27,
	RMQ_PROP_WILDCARD_AVAILABLE = 0x28, RMQ_PROP_SUB_ID_AVAILABLE = 0x29, RMQ_PROP_SHARED_AVAILABLE = 0x2A,
};

/* Presence bit of property `id` in rmq_props.present. */
#define RMQ_PBIT(id) (1ull << (id))

/* Decoded properties of one packet (or of the will). Only fields whose RMQ_PBIT is set in `present`
 * are meaningful. User properties stay in their wire encoding (`user`, `user_count` pairs, order kept):
 * iterate with rmq_props_user_next(); the encoder copies them back out as they are. */
struct rmq_props {
	uint64_t present;
	uint32_t message_expiry, session_expiry, will_delay, max_packet_size;
	uint16_t server_keep_alive, receive_max, topic_alias_max, topic_alias;
	uint8_t payload_format, request_problem_info, request_response_info, max_qos, retain_available;
	uint8_t wildcard_available, sub_id_available, shared_available;
	struct rmq_str content_type, response_topic, correlation_data, assigned_client_id;
	struct rmq_str auth_method, auth_data, response_info, server_reference, reason_string;
	/* User properties in property wire form (0x26, 2-byte len + key, 2-byte len + value), from the
	 * first to the last user property; when decoded, other properties may sit in between, so read it
	 * only through rmq_props_user_next(). The decoder sets RMQ_PBIT(RMQ_PROP_USER) when count > 0. */
	struct rmq_str user;
	uint16_t user_count;
	/* PUBLISH (client role) may carry several; SUBSCRIBE at most one. The decoder also sets
	 * RMQ_PBIT(RMQ_PROP_SUB_ID); the encoder goes by sub_id_count alone. */
	uint8_t sub_id_count;
	uint32_t sub_ids[RMQ_MAX_SUB_IDS];
};

/* Iterates user properties in order. `*pos` starts at 0. Returns true and fills key/value, or false at
 * the end. Only valid on props produced by the decoder or built with rmq_props_user_add(). */
bool rmq_props_user_next(const struct rmq_props *props, uint32_t *pos, struct rmq_str *key,
			 struct rmq_str *value);

/* Appends one user property, in property wire form (0x26, 2-byte len + key, 2-byte len + value), to
 * `buf` (capacity `cap`, `*used` bytes already used) and points props->user at buf. Returns 0,
 * RMQ_E_BUF_TOO_SMALL or RMQ_E_FIELD_TOO_LONG. For building packets in tests, the bench and the bridge.
 * Use one buf per rmq_props (the pairs of one packet must be contiguous). */
int rmq_props_user_add(struct rmq_props *props, uint8_t *buf, size_t cap, size_t *used,
		       struct rmq_str key, struct rmq_str value);

/* ---- packets ---------------------------------------------------------------------------------- */
struct rmq_connect {
	uint8_t version;           /* enum rmq_version */
	bool clean_start;          /* "clean session" in 3.1/3.1.1 */
	bool will, will_retain, has_username, has_password;
	uint8_t will_qos;
	uint16_t keep_alive;
	struct rmq_str protocol_name; /* as sent: "MQTT" or "MQIsdp" */
	struct rmq_str client_id, will_topic, will_payload, username, password;
	struct rmq_props props, will_props;
};

struct rmq_connack {
	bool session_present;
	uint8_t reason;            /* v5 reason code, or 3.1.1 return code */
	struct rmq_props props;
};

struct rmq_publish {
	uint8_t qos;
	bool dup, retain;
	uint16_t packet_id;        /* 0 for QoS 0 */
	struct rmq_str topic;      /* may be empty in v5 when a topic alias is used */
	struct rmq_props props;
	struct rmq_str payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
struct rmq_ack {
	uint16_t packet_id;
	uint8_t reason;            /* v5; 0 in 3.1.1 */
	struct rmq_props props;
};

/* Subscription options byte: QoS bits 0-1, No Local bit 2, Retain As Published bit 3,
 * Retain Handling bits 4-5 (v5). */
#define RMQ_SUBOPT_QOS(o) ((o) & 0x03)
#define RMQ_SUBOPT_NO_LOCAL 0x04
#define RMQ_SUBOPT_RAP 0x08
#define RMQ_SUBOPT_RH(o) (((o) >> 4) & 0x03)

/* SUBSCRIBE and UNSUBSCRIBE: the topic filter list stays in wire form; the decoder has validated
 * every entry. Iterate with rmq_sub_next(). */
struct rmq_subscribe {
	uint16_t packet_id;
	uint16_t count;            /* number of filters */
	struct rmq_props props;
	struct rmq_str list;       /* raw entries */
	bool is_unsubscribe;       /* UNSUBSCRIBE entries have no options byte */
};

struct rmq_sub_entry {
	struct rmq_str filter;
	uint8_t options;           /* 0 for UNSUBSCRIBE */
};

bool rmq_sub_next(const struct rmq_subscribe *s, uint32_t *pos, struct rmq_sub_entry *out);

/* Appends one entry (filter, plus the options byte unless s->is_unsubscribe) in wire form to `buf`
 * (capacity `cap`, `*used` already used), points s->list at buf and counts it. Returns 0,
 * RMQ_E_BUF_TOO_SMALL, RMQ_E_FIELD_TOO_LONG or RMQ_E_TOO_MANY_FILTERS. Set is_unsubscribe first. */
int rmq_sub_add(struct rmq_subscribe *s, uint8_t *buf, size_t cap, size_t *used, struct rmq_str filter,
		uint8_t options);

/* SUBACK and UNSUBACK: one reason code per filter (UNSUBACK 3.1.1 has none: count 0). */
struct rmq_suback {
	uint16_t packet_id;
	uint16_t count;
	const uint8_t *reasons;
	struct rmq_props props;
};

/* DISCONNECT and AUTH. */
struct rmq_disconnect {
	uint8_t reason;
	struct rmq_props props;
};

struct rmq_packet {
	uint8_t type;              /* enum rmq_ptype */
	uint8_t flags;             /* low nibble of the fixed header */
	union {
		struct rmq_connect connect;
		struct rmq_connack connack;
		struct rmq_publish publish;
		struct rmq_ack ack;               /* PUBACK PUBREC PUBREL PUBCOMP */
		struct rmq_subscribe subscribe;   /* SUBSCRIBE UNSUBSCRIBE */
		struct rmq_suback suback;         /* SUBACK UNSUBACK */
		struct rmq_disconnect disconnect; /* DISCONNECT AUTH */
	} u;
};

/* The properties of packet p (NULL for a type without any: PINGREQ, PINGRESP). */
const struct rmq_props *rmq_proto_props_of(const struct rmq_packet *p);

/* ---- framing ---------------------------------------------------------------------------------- */

/* Reads the fixed header at buf[0..len). On RMQ_OK sets *total to the whole packet's length (fixed
 * header + remaining length). RMQ_E_INCOMPLETE: need more bytes. RMQ_E_VARINT / RMQ_E_VARINT_NONMINIMAL:
 * malformed length (close the connection: the stream cannot be resynchronised).
 * RMQ_E_TOO_LARGE: *total would exceed max_packet_size (0 = the protocol maximum). */
int rmq_proto_frame(const uint8_t *buf, size_t len, uint32_t max_packet_size, size_t *total);

/* ---- decode ----------------------------------------------------------------------------------- */

struct rmq_decode_ctx {
	uint8_t version;           /* session's version; ignored for CONNECT (read from the packet) */
	uint8_t role;              /* enum rmq_role */
};

/* Decodes exactly one complete packet buf[0..len) (len as given by rmq_proto_frame: a shorter buffer is
 * RMQ_E_TRUNCATED, a longer one RMQ_E_TRAILING). Every view in `out` points into buf. Returns RMQ_OK or a
 * negative enum rmq_err. For CONNECT, out->u.connect.version is set as soon as the protocol level has
 * been read, even if a later check fails, so the broker can answer with a CONNACK in the right format.
 * 3.1.1 empty client id with clean session 0 is rejected here (RMQ_E_CLIENT_ID, [MQTT-3.1.3-8]). Does not validate topic names
 * against wildcards beyond what the packet type requires (PUBLISH topic: no wildcards; SUBSCRIBE:
 * valid filters), and does not check payload format (see rmq_proto_check_payload_format). */
int rmq_proto_decode(const uint8_t *buf, size_t len, const struct rmq_decode_ctx *ctx,
		     struct rmq_packet *out);

/* ---- encode ----------------------------------------------------------------------------------- */

/* Exact encoded length of `p` for `version` (properties omitted below v5), or negative error. */
ssize_t rmq_proto_encoded_len(uint8_t version, const struct rmq_packet *p);

/* Encodes `p` into buf[0..cap). Returns bytes written, or RMQ_E_BUF_TOO_SMALL / other negative error.
 * For PUBLISH, props.sub_ids (sub_id_count of them) are written as Subscription Identifiers. */
ssize_t rmq_proto_encode(uint8_t *buf, size_t cap, uint8_t version, const struct rmq_packet *p);

/* ---- validation helpers ----------------------------------------------------------------------- */

/* Well-formed UTF-8 with no U+0000 and no surrogates [MQTT-1.5.4]. */
bool rmq_proto_utf8_valid(const uint8_t *s, size_t len);
/* Topic name for PUBLISH: non-empty, <= 65535 bytes, valid UTF-8, no '+' or '#'. RMQ_OK or error. */
int rmq_proto_topic_name_check(const uint8_t *s, size_t len);
/* Topic filter: '#' only last and alone in its level, '+' alone in its level, $share/{group}/{filter}
 * form checked (group non-empty, no wildcards). RMQ_OK or RMQ_E_TOPIC_FILTER. */
int rmq_proto_topic_filter_check(const uint8_t *s, size_t len);
/* Payload format indicator 1 requires UTF-8 payload: RMQ_OK or RMQ_E_PAYLOAD_FORMAT. */
int rmq_proto_check_payload_format(const struct rmq_publish *p);

/* Variable byte integer: encode returns bytes written (1-4; value must be <= RMQ_MAX_REMAINING_LEN);
 * decode returns bytes read, or RMQ_E_INCOMPLETE / RMQ_E_VARINT / RMQ_E_VARINT_NONMINIMAL
 * ([MQTT-1.5.5-1]; enforced in every version: no real client pads a length). */
int rmq_proto_varint_encode(uint8_t *buf, uint32_t value);
int rmq_proto_varint_decode(const uint8_t *buf, size_t len, uint32_t *value);
int rmq_proto_varint_len(uint32_t value);

#endif
