/* Unit tests of route matching, template rendering, the JSON envelope (escaping, base64) and user properties.
 * Runs in the ringmq-unit binary (pure functions; no Kafka needed). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../bridge/bridge_internal.h"

TestSuite(bridge_render);

static bool m(const char *filter, const char *topic)
{
	return rmq_bridge_filter_match(filter, (const uint8_t *)topic, strlen(topic));
}

Test(bridge_render, filter_match)
{
	cr_assert(m("cars/+/telemetry", "cars/VIN1/telemetry"));
	cr_assert(m("cars/+/telemetry", "cars//telemetry"), "'+' matches an empty level");
	cr_assert(m("#", "a"));
	cr_assert(m("#", "a/b/c"));
	cr_assert(m("a/#", "a"), "'#' also matches the parent level");
	cr_assert(m("a/#", "a/b/c"));
	cr_assert(m("a/+", "a/"));
	cr_assert(m("+/+", "/x"));
	cr_assert(m("a/b", "a/b"));
	cr_assert(m("+", "x"));
	cr_assert(m("$SYS/#", "$SYS/broker/load"));

	cr_assert_not(m("cars/+/telemetry", "cars/VIN1/status"));
	cr_assert_not(m("cars/+/telemetry", "cars/VIN1/telemetry/x"));
	cr_assert_not(m("cars/+/telemetry", "cars/telemetry"));
	cr_assert_not(m("a/b", "a/bc"));
	cr_assert_not(m("a/bc", "a/b"));
	cr_assert_not(m("a/b", "a"));
	cr_assert_not(m("a/+", "a"));
	cr_assert_not(m("a/#", "ab"));
	cr_assert_not(m("#", "$SYS/x"), "[MQTT-4.7.2-1]");
	cr_assert_not(m("+/x", "$SYS/x"), "[MQTT-4.7.2-1]");
	cr_assert_not(m("+", "a/b"));
}

/* A message with user properties built by the codec (rmq_props_user_add). */
struct msg_fixture {
	uint8_t props[512];
	size_t used;
	struct rmq_publish pub;
	struct rmq_bridge_msg msg;
};

static void add_user(struct msg_fixture *f, const char *k, size_t kl, const char *v, size_t vl)
{
	struct rmq_str key = {(const uint8_t *)k, (uint32_t)kl}, val = {(const uint8_t *)v, (uint32_t)vl};
	cr_assert_eq(rmq_props_user_add(&f->pub.props, f->props, sizeof(f->props), &f->used, key, val), 0);
}

static struct rmq_str S(const char *s)
{
	return (struct rmq_str){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static void fixture(struct msg_fixture *f, const char *topic, const char *cid, const char *user,
		    const void *payload, size_t plen)
{
	memset(f, 0, sizeof(*f));
	f->pub.topic = S(topic);
	f->pub.qos = 1;
	f->pub.payload = (struct rmq_str){payload, (uint32_t)plen};
	f->msg = (struct rmq_bridge_msg){.pub = &f->pub, .client_id = S(cid), .version = 5};
	if (user)
		f->msg.username = S(user);
}

/* Copies b into a static C string and frees b. */
static char *take(struct rmq_bbuf *b)
{
	static char out[1024];
	cr_assert_lt(b->len, sizeof(out));
	if (b->len)
		memcpy(out, b->p, b->len);
	out[b->len] = 0;
	rmq_bridge_buf_free(b);
	return out;
}

static char *render(const char *tmpl, const struct rmq_bridge_msg *msg)
{
	struct rmq_bridge_tmpl t;
	struct rmq_bbuf b = {0};
	char err[128];
	cr_assert_eq(rmq_bridge_tmpl_parse(&t, tmpl, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rmq_bridge_render(&t, msg, &b), 0);
	rmq_bridge_tmpl_free(&t);
	return take(&b);
}

Test(bridge_render, templates)
{
	struct msg_fixture f;
	fixture(&f, "cars/VIN42/telemetry", "car-42", "fleet", "x", 1);
	cr_assert_str_eq(render("${topic[0]}", &f.msg), "cars");
	cr_assert_str_eq(render("${topic[1]}", &f.msg), "VIN42");
	cr_assert_str_eq(render("vehicle-${topic[2]}", &f.msg), "vehicle-telemetry");
	cr_assert_str_eq(render("${topic[3]}", &f.msg), "", "a level past the end renders empty");
	cr_assert_str_eq(render("${topic[31]}x", &f.msg), "x");
	cr_assert_str_eq(render("${topic}", &f.msg), "cars/VIN42/telemetry");
	cr_assert_str_eq(render("${client_id}", &f.msg), "car-42");
	cr_assert_str_eq(render("${username}:${client_id}", &f.msg), "fleet:car-42");
	cr_assert_str_eq(render("a$b{c}", &f.msg), "a$b{c}", "no ${ : literal");

	fixture(&f, "/lead//trail/", "c", NULL, "", 0);
	cr_assert_str_eq(render("<${topic[0]}>", &f.msg), "<>");
	cr_assert_str_eq(render("<${topic[1]}>", &f.msg), "<lead>");
	cr_assert_str_eq(render("<${topic[2]}>", &f.msg), "<>");
	cr_assert_str_eq(render("<${topic[3]}>", &f.msg), "<trail>");
	cr_assert_str_eq(render("<${topic[4]}>", &f.msg), "<>");
	cr_assert_str_eq(render("<${username}>", &f.msg), "<>", "no user name renders empty");
}

Test(bridge_render, template_parse_limits)
{
	struct rmq_bridge_tmpl t;
	char err[128], big[256] = "";
	for (int i = 0; i < RMQ_BRIDGE_MAX_TMPL_PARTS; i++)
		strcat(big, "${topic}");
	cr_assert_eq(rmq_bridge_tmpl_parse(&t, big, false, err, sizeof(err)), 0, "%s", err);
	rmq_bridge_tmpl_free(&t);
	strcat(big, "x");
	cr_assert_eq(rmq_bridge_tmpl_parse(&t, big, false, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_bridge_tmpl_parse(&t, "${topic[]}", false, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_bridge_tmpl_parse(&t, "${topic[123]}", false, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_bridge_tmpl_parse(&t, "${Topic}", false, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmq_bridge_tmpl_parse(&t, "ok/${topic}", true, err, sizeof(err)), -EINVAL,
		     "'/' is not legal in a Kafka topic");
}

Test(bridge_render, kafka_topic_names)
{
	cr_assert(rmq_bridge_kafka_topic_valid("mqtt.messages", 13));
	cr_assert(rmq_bridge_kafka_topic_valid("A-z_0.9", 7));
	cr_assert_not(rmq_bridge_kafka_topic_valid("", 0));
	cr_assert_not(rmq_bridge_kafka_topic_valid(".", 1));
	cr_assert_not(rmq_bridge_kafka_topic_valid("..", 2));
	cr_assert_not(rmq_bridge_kafka_topic_valid("a b", 3));
	cr_assert_not(rmq_bridge_kafka_topic_valid("a/b", 3));
	cr_assert_not(rmq_bridge_kafka_topic_valid("caf\xc3\xa9", 5));
	char long_name[251];
	memset(long_name, 'a', sizeof(long_name));
	cr_assert(rmq_bridge_kafka_topic_valid(long_name, 249));
	cr_assert_not(rmq_bridge_kafka_topic_valid(long_name, 250));
}

static char *json_str(const void *s, size_t n)
{
	struct rmq_bbuf b = {0};
	cr_assert_eq(rmq_bridge_json_str(&b, s, n), 0);
	return take(&b);
}

Test(bridge_render, json_escaping)
{
	cr_assert_str_eq(json_str("", 0), "\"\"");
	cr_assert_str_eq(json_str("plain", 5), "\"plain\"");
	cr_assert_str_eq(json_str("q\"b\\s/", 6), "\"q\\\"b\\\\s/\"");
	cr_assert_str_eq(json_str("\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
	cr_assert_str_eq(json_str("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\x7f\"");
	cr_assert_str_eq(json_str("a\0b", 3), "\"a\\u0000b\"");
	cr_assert_str_eq(json_str("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x97", 14),
			 "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x97\"", "valid UTF-8 passes through");
	cr_assert_str_eq(json_str("a\xffz", 3), "\"a\\ufffdz\"", "stray byte");
	cr_assert_str_eq(json_str("\xc0\xaf", 2), "\"\\ufffd\\ufffd\"", "overlong");
	cr_assert_str_eq(json_str("\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\"", "surrogate");
	cr_assert_str_eq(json_str("x\xe2\x82", 3), "\"x\\ufffd\\ufffd\"", "truncated at the end");
	cr_assert_str_eq(json_str("\xf4\x90\x80\x80", 4), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"", "> U+10FFFF");
}

Test(bridge_render, utf8_and_base64)
{
	cr_assert(rmq_bridge_utf8_valid((const uint8_t *)"", 0));
	cr_assert(rmq_bridge_utf8_valid((const uint8_t *)"a\0b", 3));
	cr_assert(rmq_bridge_utf8_valid((const uint8_t *)"\xf0\x9f\x9a\x97", 4));
	cr_assert_not(rmq_bridge_utf8_valid((const uint8_t *)"\xf0\x9f\x9a", 3));
	cr_assert_not(rmq_bridge_utf8_valid((const uint8_t *)"\x80", 1));
	static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (int i = 0; i < 7; i++) { /* RFC 4648 section 10 vectors */
		struct rmq_bbuf b = {0};
		cr_assert_eq(rmq_bridge_base64(&b, (const uint8_t *)in[i], strlen(in[i])), 0);
		cr_assert_eq(b.len, strlen(out[i]));
		cr_assert(b.len == 0 || memcmp(b.p, out[i], b.len) == 0, "base64(%s)", in[i]);
		rmq_bridge_buf_free(&b);
	}
	struct rmq_bbuf b = {0};
	cr_assert_eq(rmq_bridge_base64(&b, (const uint8_t *)"\xff\xfe\x00", 3), 0);
	cr_assert_eq(memcmp(b.p, "//4A", 4), 0);
	rmq_bridge_buf_free(&b);
}

static char *envelope(const struct rmq_bridge_msg *msg)
{
	struct rmq_bbuf b = {0};
	cr_assert_eq(rmq_bridge_render_json(msg, 1732550000123, &b), 0);
	return take(&b);
}

Test(bridge_render, json_envelope_utf8_payload)
{
	struct msg_fixture f;
	fixture(&f, "cars/\"q\"/t", "car\n1", "u\\ser", "{\"speed\":42}", 12);
	f.pub.retain = true;
	f.pub.props.present |= RMQ_PBIT(RMQ_PROP_CONTENT_TYPE);
	f.pub.props.content_type = S("application/json");
	add_user(&f, "trip", 4, "7\t", 2);
	add_user(&f, "trip", 4, "8", 1);
	cr_assert_str_eq(envelope(&f.msg),
			 "{\"topic\":\"cars/\\\"q\\\"/t\",\"client_id\":\"car\\n1\",\"username\":\"u\\\\ser\","
			 "\"qos\":1,\"retain\":true,\"timestamp\":1732550000123,"
			 "\"content_type\":\"application/json\","
			 "\"user_properties\":[[\"trip\",\"7\\t\"],[\"trip\",\"8\"]],"
			 "\"payload_encoding\":\"utf8\",\"payload\":\"{\\\"speed\\\":42}\"}");
}

Test(bridge_render, json_envelope_binary_payload_no_user)
{
	struct msg_fixture f;
	static const uint8_t bin[] = {0xde, 0xad, 0xbe, 0xef, 0x00};
	fixture(&f, "t", "c", NULL, bin, sizeof(bin));
	f.pub.qos = 0;
	cr_assert_str_eq(envelope(&f.msg),
			 "{\"topic\":\"t\",\"client_id\":\"c\",\"username\":null,\"qos\":0,\"retain\":false,"
			 "\"timestamp\":1732550000123,\"user_properties\":[],"
			 "\"payload_encoding\":\"base64\",\"payload\":\"3q2+7wA=\"}");
	fixture(&f, "t", "c", NULL, "", 0);
	cr_assert(strstr(envelope(&f.msg), "\"payload_encoding\":\"utf8\",\"payload\":\"\"}"), "empty payload");
}

Test(bridge_render, json_envelope_of_a_decoded_publish)
{
	/* Through the real codec: the decoder leaves other properties between the user properties. */
	struct msg_fixture f;
	fixture(&f, "cars/9/t", "car-9", "u", "hi", 2);
	add_user(&f, "a", 1, "1", 1);
	f.pub.props.present |= RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY) | RMQ_PBIT(RMQ_PROP_CONTENT_TYPE);
	f.pub.props.message_expiry = 60;
	f.pub.props.content_type = S("text/plain");
	add_user(&f, "b", 1, "2", 1);
	struct rmq_packet pk = {.type = RMQ_PUBLISH, .u.publish = f.pub};
	pk.flags = 0x02; /* QoS 1 */
	pk.u.publish.packet_id = 7;
	uint8_t wire[256];
	ssize_t n = rmq_proto_encode(wire, sizeof(wire), RMQ_V5, &pk);
	cr_assert_gt(n, 0);
	struct rmq_packet out;
	struct rmq_decode_ctx ctx = {.version = RMQ_V5, .role = RMQ_ROLE_SERVER};
	cr_assert_eq(rmq_proto_decode(wire, (size_t)n, &ctx, &out), 0);
	f.msg.pub = &out.u.publish;
	char *j = envelope(&f.msg);
	cr_assert(strstr(j, "\"content_type\":\"text/plain\",\"user_properties\":[[\"a\",\"1\"],[\"b\",\"2\"]]"), "%s", j);
	cr_assert(strstr(j, "\"qos\":1"), "%s", j);
}
