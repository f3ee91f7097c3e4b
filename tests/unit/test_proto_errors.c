/* Error table: every enum rmq_err has its own text and the MQTT 5 reason code the broker sends.
 * Test-only; single-threaded. */
#include "test_proto_helpers.h"

static const struct {
	int err;
	uint8_t reason;
} expected[] = {
	{RMQ_E_VARINT, 0x81}, {RMQ_E_VARINT_NONMINIMAL, 0x81}, {RMQ_E_TRUNCATED, 0x81}, {RMQ_E_TRAILING, 0x81},
	{RMQ_E_BAD_FLAGS, 0x81}, {RMQ_E_BAD_QOS, 0x81}, {RMQ_E_UTF8, 0x81}, {RMQ_E_BAD_PROP, 0x81},
	{RMQ_E_PROP_LEN, 0x81}, {RMQ_E_BAD_PACKET_TYPE, 0x81}, {RMQ_E_CONNECT_FLAGS, 0x81},
	{RMQ_E_PASSWORD_NO_USER, 0x81}, {RMQ_E_SUB_OPTIONS, 0x81}, {RMQ_E_NO_TOPICS, 0x81},
	{RMQ_E_CONNACK_FLAGS, 0x81}, {RMQ_E_DUP_PROP, 0x82}, {RMQ_E_PROP_NOT_ALLOWED, 0x82},
	{RMQ_E_PROP_VALUE, 0x82}, {RMQ_E_PACKET_ID_ZERO, 0x82}, {RMQ_E_QOS0_DUP, 0x82},
	{RMQ_E_PROTOCOL_NAME, 0x82}, {RMQ_E_SUB_ID_ZERO, 0x82}, {RMQ_E_REASON_CODE, 0x82},
	{RMQ_E_SHARED_NO_LOCAL, 0x82}, {RMQ_E_TOPIC_ALIAS_ZERO, 0x82}, {RMQ_E_TOPIC_EMPTY, 0x82},
	{RMQ_E_AUTH_DATA_NO_METHOD, 0x82},
	{RMQ_E_PROTOCOL_VERSION, 0x84}, {RMQ_E_CLIENT_ID, 0x85}, {RMQ_E_TOPIC_FILTER, 0x8F},
	{RMQ_E_TOPIC_NAME, 0x90}, {RMQ_E_TOO_LARGE, 0x95}, {RMQ_E_TOO_MANY_FILTERS, 0x95},
	{RMQ_E_TOO_MANY_USER_PROPS, 0x95}, {RMQ_E_TOO_MANY_SUB_IDS, 0x83}, {RMQ_E_PAYLOAD_FORMAT, 0x99},
	{RMQ_E_BUF_TOO_SMALL, 0x83}, {RMQ_E_FIELD_TOO_LONG, 0x83},
};
#define NEXP (sizeof expected / sizeof expected[0])

Test(proto_errors, reason_codes)
{
	for (size_t i = 0; i < NEXP; i++)
		cr_assert_eq(rmq_proto_err_reason(expected[i].err), expected[i].reason, "err %d", expected[i].err);
	cr_assert_eq(rmq_proto_err_reason(RMQ_OK), RMQ_RC_SUCCESS);
	cr_assert_eq(rmq_proto_err_reason(-999), RMQ_RC_UNSPECIFIED);
}

Test(proto_errors, distinct_texts)
{
	for (size_t i = 0; i < NEXP; i++) {
		const char *a = rmq_proto_err_str(expected[i].err);
		cr_assert_neq(strcmp(a, rmq_proto_err_str(-999)), 0, "err %d has no text", expected[i].err);
		for (size_t j = i + 1; j < NEXP; j++)
			cr_assert_neq(strcmp(a, rmq_proto_err_str(expected[j].err)), 0, "%d and %d share a text",
				      expected[i].err, expected[j].err);
	}
}
