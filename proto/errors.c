/* enum rmq_err -> MQTT 5 reason code the broker sends, and a one-line text naming the spec rule.
 * Pure functions, callable from any thread. */
#include "internal.h"

struct err_info {
	int err;
	uint8_t reason;
	const char *text;
};

static const struct err_info errs[] = {
	{RMQ_OK, RMQ_RC_SUCCESS, "success"},
	{RMQ_E_INCOMPLETE, RMQ_RC_SUCCESS, "incomplete: more bytes needed"},
	{RMQ_E_BUF_TOO_SMALL, RMQ_RC_IMPL_SPECIFIC, "encoder: output buffer too small"},
	{RMQ_E_FIELD_TOO_LONG, RMQ_RC_IMPL_SPECIFIC, "encoder: string or binary field longer than 65535 bytes [MQTT-1.5.4]"},
	{RMQ_E_VARINT, RMQ_RC_MALFORMED, "variable byte integer longer than 4 bytes [MQTT-1.5.5]"},
	{RMQ_E_VARINT_NONMINIMAL, RMQ_RC_MALFORMED, "variable byte integer not minimally encoded [MQTT-1.5.5-1]"},
	{RMQ_E_TRUNCATED, RMQ_RC_MALFORMED, "field runs past the remaining length"},
	{RMQ_E_TRAILING, RMQ_RC_MALFORMED, "bytes left after the last field"},
	{RMQ_E_BAD_FLAGS, RMQ_RC_MALFORMED, "reserved fixed header flags wrong [MQTT-2.1.3-1]"},
	{RMQ_E_BAD_QOS, RMQ_RC_MALFORMED, "QoS 3 [MQTT-3.3.1-4]"},
	{RMQ_E_UTF8, RMQ_RC_MALFORMED, "ill-formed UTF-8, U+0000 or surrogate [MQTT-1.5.4-1/2]"},
	{RMQ_E_BAD_PROP, RMQ_RC_MALFORMED, "unknown property identifier [MQTT-2.2.2]"},
	{RMQ_E_PROP_LEN, RMQ_RC_MALFORMED, "property length inconsistent with its properties [MQTT-2.2.2]"},
	{RMQ_E_BAD_PACKET_TYPE, RMQ_RC_MALFORMED, "packet type reserved or not valid in this direction [MQTT-2.1.2]"},
	{RMQ_E_CONNECT_FLAGS, RMQ_RC_MALFORMED, "CONNECT reserved flag or will flags inconsistent [MQTT-3.1.2-3/11/13/15]"},
	{RMQ_E_PASSWORD_NO_USER, RMQ_RC_MALFORMED, "password flag without username flag [MQTT-3.1.2-22]"},
	{RMQ_E_SUB_OPTIONS, RMQ_RC_MALFORMED, "subscription options reserved bits or retain handling 3 [MQTT-3.8.3-5]"},
	{RMQ_E_NO_TOPICS, RMQ_RC_MALFORMED, "no topic filter / reason code in the list [MQTT-3.8.3-3] [MQTT-3.10.3-2]"},
	{RMQ_E_CONNACK_FLAGS, RMQ_RC_MALFORMED, "CONNACK reserved acknowledge flags set [MQTT-3.2.2-1]"},
	{RMQ_E_DUP_PROP, RMQ_RC_PROTOCOL_ERROR, "property included more than once [MQTT-2.2.2]"},
	{RMQ_E_PROP_NOT_ALLOWED, RMQ_RC_PROTOCOL_ERROR, "property not allowed in this packet [MQTT-2.2.2] [MQTT-3.3.4-6]"},
	{RMQ_E_PROP_VALUE, RMQ_RC_PROTOCOL_ERROR, "property value out of range [MQTT-3.1.2.11] [MQTT-3.2.2.3]"},
	{RMQ_E_PACKET_ID_ZERO, RMQ_RC_PROTOCOL_ERROR, "packet identifier 0 [MQTT-2.2.1-3]"},
	{RMQ_E_QOS0_DUP, RMQ_RC_PROTOCOL_ERROR, "DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]"},
	{RMQ_E_PROTOCOL_NAME, RMQ_RC_PROTOCOL_ERROR, "protocol name neither MQTT nor MQIsdp [MQTT-3.1.2-1]"},
	{RMQ_E_SUB_ID_ZERO, RMQ_RC_PROTOCOL_ERROR, "subscription identifier 0 [MQTT-3.8.2.1.2]"},
	{RMQ_E_REASON_CODE, RMQ_RC_PROTOCOL_ERROR, "reason code not defined for this packet [MQTT-2.4]"},
	{RMQ_E_SHARED_NO_LOCAL, RMQ_RC_PROTOCOL_ERROR, "No Local on a shared subscription [MQTT-3.8.3-4]"},
	{RMQ_E_TOPIC_ALIAS_ZERO, RMQ_RC_PROTOCOL_ERROR, "topic alias 0 [MQTT-3.3.2-8]"},
	{RMQ_E_AUTH_DATA_NO_METHOD, RMQ_RC_PROTOCOL_ERROR, "authentication data without authentication method [MQTT-3.1.2.11.10]"},
	{RMQ_E_TOPIC_EMPTY, RMQ_RC_PROTOCOL_ERROR, "empty topic name without topic alias [MQTT-3.3.2-1]"},
	{RMQ_E_PROTOCOL_VERSION, RMQ_RC_UNSUPPORTED_VERSION, "unsupported protocol level [MQTT-3.1.2-2]"},
	{RMQ_E_CLIENT_ID, RMQ_RC_CLIENT_ID_INVALID, "client identifier not valid [MQTT-3.1.3-8] (3.1: 1..23 bytes)"},
	{RMQ_E_TOPIC_FILTER, RMQ_RC_TOPIC_FILTER_INVALID, "topic filter invalid [MQTT-4.7.1] [MQTT-4.8.2]"},
	{RMQ_E_TOPIC_NAME, RMQ_RC_TOPIC_NAME_INVALID, "topic name invalid: empty, wildcard or too many levels [MQTT-3.3.2-2]"},
	{RMQ_E_TOO_LARGE, RMQ_RC_PACKET_TOO_LARGE, "packet larger than the maximum packet size [MQTT-3.1.2-24]"},
	{RMQ_E_TOO_MANY_FILTERS, RMQ_RC_PACKET_TOO_LARGE, "more than 65535 entries in one list"},
	{RMQ_E_TOO_MANY_USER_PROPS, RMQ_RC_PACKET_TOO_LARGE, "more than 65535 user properties"},
	{RMQ_E_TOO_MANY_SUB_IDS, RMQ_RC_IMPL_SPECIFIC, "more subscription identifiers than RMQ_MAX_SUB_IDS"},
	{RMQ_E_PAYLOAD_FORMAT, RMQ_RC_PAYLOAD_FORMAT_INVALID, "payload format indicator 1 but payload not UTF-8 [MQTT-3.3.2-4]"},
};

static const struct err_info *find(int err)
{
	for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
		if (errs[i].err == err)
			return &errs[i];
	return NULL;
}

uint8_t rmq_proto_err_reason(int err)
{
	const struct err_info *e = find(err);
	return e ? e->reason : RMQ_RC_UNSPECIFIED;
}

const char *rmq_proto_err_str(int err)
{
	const struct err_info *e = find(err);
	return e ? e->text : "unknown codec error";
}
