/* MQTT 5 properties: every property x every packet (byte-exact re-encode or the exact error), duplicates,
 * value ranges, lengths, user property iteration. Test-only; single-threaded. */
#include "test_proto_helpers.h"

#define WILL 0   /* pseudo packet type: CONNECT's will properties */

/* Oracle, written from MQTT 5 table 2-4 independently of proto/props.c. */
static const struct {
	uint8_t id;
	const uint8_t *where;
	size_t n;
} allowed[] = {
#define A(id, ...) {id, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})}
	A(0x01, RMQ_PUBLISH, WILL), A(0x02, RMQ_PUBLISH, WILL), A(0x03, RMQ_PUBLISH, WILL),
	A(0x08, RMQ_PUBLISH, WILL), A(0x09, RMQ_PUBLISH, WILL), A(0x0B, RMQ_PUBLISH, RMQ_SUBSCRIBE),
	A(0x11, RMQ_CONNECT, RMQ_CONNACK, RMQ_DISCONNECT), A(0x12, RMQ_CONNACK), A(0x13, RMQ_CONNACK),
	A(0x15, RMQ_CONNECT, RMQ_CONNACK, RMQ_AUTH), A(0x16, RMQ_CONNECT, RMQ_CONNACK, RMQ_AUTH),
	A(0x17, RMQ_CONNECT), A(0x18, WILL), A(0x19, RMQ_CONNECT), A(0x1A, RMQ_CONNACK),
	A(0x1C, RMQ_CONNACK, RMQ_DISCONNECT),
	A(0x1F, RMQ_CONNACK, RMQ_PUBACK, RMQ_PUBREC, RMQ_PUBREL, RMQ_PUBCOMP, RMQ_SUBACK, RMQ_UNSUBACK,
	  RMQ_DISCONNECT, RMQ_AUTH),
	A(0x21, RMQ_CONNECT, RMQ_CONNACK), A(0x22, RMQ_CONNECT, RMQ_CONNACK), A(0x23, RMQ_PUBLISH),
	A(0x24, RMQ_CONNACK), A(0x25, RMQ_CONNACK),
	A(0x26, RMQ_CONNECT, RMQ_CONNACK, RMQ_PUBLISH, WILL, RMQ_PUBACK, RMQ_PUBREC, RMQ_PUBREL, RMQ_PUBCOMP,
	  RMQ_SUBSCRIBE, RMQ_SUBACK, RMQ_UNSUBSCRIBE, RMQ_UNSUBACK, RMQ_DISCONNECT, RMQ_AUTH),
	A(0x27, RMQ_CONNECT, RMQ_CONNACK), A(0x28, RMQ_CONNACK), A(0x29, RMQ_CONNACK), A(0x2A, RMQ_CONNACK),
#undef A
};
#define NALLOWED (sizeof allowed / sizeof allowed[0])

/* A valid value of each property, as wire bytes after the identifier. */
static size_t value_of(uint8_t id, uint8_t *out)
{
	switch (id) {
	case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
		out[0] = 1;
		return 1;
	case 0x13: case 0x21: case 0x22: case 0x23:
		memcpy(out, "\x00\x05", 2);
		return 2;
	case 0x02: case 0x11: case 0x18: case 0x27:
		memcpy(out, "\x00\x01\x00\x05", 4);
		return 4;
	case 0x0B:
		memcpy(out, "\x81\x01", 2); /* 129 */
		return 2;
	case 0x26:
		memcpy(out, "\x00\x01k\x00\x02vv", 7);
		return 7;
	default: /* UTF-8 string or binary data */
		memcpy(out, "\x00\x03x/y", 5);
		return 5;
	}
}

static bool is_allowed(uint8_t id, uint8_t where)
{
	for (size_t i = 0; i < NALLOWED; i++)
		if (allowed[i].id == id)
			return memchr(allowed[i].where, where, allowed[i].n) != NULL;
	return false;
}

static uint8_t role_for(uint8_t where)
{
	return where == RMQ_CONNACK || where == RMQ_SUBACK || where == RMQ_UNSUBACK ? RMQ_ROLE_CLIENT
										     : RMQ_ROLE_SERVER;
}

/* Builds a minimal v5 packet of type `where` (WILL: a CONNECT with a will) whose property block is
 * `props`. Returns its length. */
static size_t build(uint8_t where, const uint8_t *props, size_t plen, uint8_t *out)
{
	uint8_t body[512];
	size_t n = 0;
#define PUT(...) do { const uint8_t b_[] = {__VA_ARGS__}; memcpy(body + n, b_, sizeof b_); n += sizeof b_; } while (0)
#define PROPS() do { body[n++] = (uint8_t)plen; memcpy(body + n, props, plen); n += plen; } while (0)
	uint8_t type = where == WILL ? RMQ_CONNECT : where;
	cr_assert_lt(plen, 128);
	switch (where) {
	case WILL:
		PUT(0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 60, 0, 0, 1, 'c');
		PROPS();
		PUT(0, 1, 't', 0, 0);
		break;
	case RMQ_CONNECT:
		PUT(0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60);
		PROPS();
		PUT(0, 1, 'c');
		break;
	case RMQ_CONNACK:
		PUT(0, 0);
		PROPS();
		break;
	case RMQ_PUBLISH:
		PUT(0, 1, 't');
		PROPS();
		PUT('x');
		break;
	case RMQ_PUBACK: case RMQ_PUBREC: case RMQ_PUBREL: case RMQ_PUBCOMP:
		PUT(0, 1, 0);
		PROPS();
		break;
	case RMQ_SUBSCRIBE:
		PUT(0, 1);
		PROPS();
		PUT(0, 1, 'a', 0);
		break;
	case RMQ_UNSUBSCRIBE:
		PUT(0, 1);
		PROPS();
		PUT(0, 1, 'a');
		break;
	case RMQ_SUBACK: case RMQ_UNSUBACK:
		PUT(0, 1);
		PROPS();
		PUT(0);
		break;
	default: /* DISCONNECT, AUTH */
		PUT(0);
		PROPS();
		break;
	}
#undef PUT
#undef PROPS
	uint8_t flags = (type == RMQ_PUBREL || type == RMQ_SUBSCRIBE || type == RMQ_UNSUBSCRIBE) ? 2 : 0;
	out[0] = (uint8_t)(type << 4 | flags);
	int h = rmq_proto_varint_encode(out + 1, (uint32_t)n);
	memcpy(out + 1 + h, body, n);
	return 1 + (size_t)h + n;
}

static const uint8_t wheres[] = {WILL, RMQ_CONNECT, RMQ_CONNACK, RMQ_PUBLISH, RMQ_PUBACK, RMQ_PUBREC,
				 RMQ_PUBREL, RMQ_PUBCOMP, RMQ_SUBSCRIBE, RMQ_SUBACK, RMQ_UNSUBSCRIBE,
				 RMQ_UNSUBACK, RMQ_DISCONNECT, RMQ_AUTH};

static const struct rmq_props *props_of(uint8_t where, const struct rmq_packet *p)
{
	switch (where) {
	case WILL: return &p->u.connect.will_props;
	case RMQ_CONNECT: return &p->u.connect.props;
	case RMQ_CONNACK: return &p->u.connack.props;
	case RMQ_PUBLISH: return &p->u.publish.props;
	case RMQ_SUBSCRIBE: case RMQ_UNSUBSCRIBE: return &p->u.subscribe.props;
	case RMQ_SUBACK: case RMQ_UNSUBACK: return &p->u.suback.props;
	case RMQ_DISCONNECT: case RMQ_AUTH: return &p->u.disconnect.props;
	default: return &p->u.ack.props;
	}
}

Test(proto_props, every_property_in_every_packet)
{
	for (size_t a = 0; a < NALLOWED; a++) {
		uint8_t id = allowed[a].id;
		for (size_t w = 0; w < sizeof wheres; w++) {
			uint8_t where = wheres[w];
			uint8_t props[64], pkt[600], re[600];
			size_t plen = 0;
			/* authentication data needs its method beside it [MQTT-3.1.2.11.10] */
			if (id == RMQ_PROP_AUTH_DATA && is_allowed(id, where)) {
				memcpy(props, "\x15\x00\x01m", 4);
				plen = 4;
			}
			props[plen] = id;
			plen += 1 + value_of(id, props + plen + 1);
			size_t n = build(where, props, plen, pkt);
			struct rmq_packet p;
			uint8_t role = role_for(where);
			/* the broker receives PUBLISH without subscription ids; a client receives them */
			if (id == RMQ_PROP_SUB_ID && where == RMQ_PUBLISH)
				role = RMQ_ROLE_CLIENT;
			int rc = dec(RMQ_V5, role, pkt, n, &p);
			if (!is_allowed(id, where)) {
				cr_assert_eq(rc, RMQ_E_PROP_NOT_ALLOWED, "prop 0x%02x in %u: %d", id, where, rc);
				continue;
			}
			cr_assert_eq(rc, RMQ_OK, "prop 0x%02x in %u: %d %s", id, where, rc, rmq_proto_err_str(rc));
			cr_assert(props_of(where, &p)->present & RMQ_PBIT(id), "prop 0x%02x in %u not present", id, where);
			ssize_t e = rmq_proto_encode(re, sizeof re, RMQ_V5, &p);
			cr_assert_eq(e, (ssize_t)n, "prop 0x%02x in %u: re-encoded %zd bytes, want %zu", id, where, e, n);
			cr_assert_eq(memcmp(re, pkt, n), 0, "prop 0x%02x in %u: re-encoding differs", id, where);
		}
	}
}

Test(proto_props, decoded_values)
{
	uint8_t pkt[256];
	struct rmq_packet p;
	const uint8_t props[] = {0x11, 0, 0, 1, 0, 0x21, 0x01, 0x00, 0x27, 0, 0, 0x10, 0, 0x15, 0, 2, 'm', '1',
				 0x16, 0, 1, 0xFF, 0x17, 0, 0x19, 1, 0x22, 0, 9};
	size_t n = build(RMQ_CONNECT, props, sizeof props, pkt);
	cr_assert_eq(dec(RMQ_V5, RMQ_ROLE_SERVER, pkt, n, &p), RMQ_OK);
	const struct rmq_props *o = &p.u.connect.props;
	cr_assert_eq(o->session_expiry, 256);
	cr_assert_eq(o->receive_max, 256);
	cr_assert_eq(o->max_packet_size, 4096);
	cr_assert(str_eq(o->auth_method, S("m1")));
	cr_assert(str_eq(o->auth_data, S("\xFF")));
	cr_assert_eq(o->request_problem_info, 0);
	cr_assert_eq(o->request_response_info, 1);
	cr_assert_eq(o->topic_alias_max, 9);
	cr_assert_eq(o->user_count, 0);
}

Test(proto_props, unknown_identifiers_are_malformed)
{
	const uint8_t known[] = {0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18,
				 0x19, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A};
	for (unsigned id = 0; id < 256; id++) {
		if (memchr(known, (int)id, sizeof known))
			continue;
		uint8_t props[] = {(uint8_t)id, 0, 0, 0, 0}, pkt[64];
		size_t n = build(RMQ_PUBLISH, props, sizeof props, pkt);
		cr_assert_eq(dec_srv(RMQ_V5, pkt, n), RMQ_E_BAD_PROP, "id 0x%02x", id);
	}
}

Test(proto_props, duplicates_rejected_except_user_and_publish_sub_id)
{
	for (size_t a = 0; a < NALLOWED; a++) {
		uint8_t id = allowed[a].id, where = allowed[a].where[0];
		uint8_t props[64], pkt[256];
		props[0] = id;
		size_t vl = value_of(id, props + 1);
		memcpy(props + 1 + vl, props, 1 + vl);
		size_t n = build(where, props, 2 * (1 + vl), pkt);
		struct rmq_packet p;
		uint8_t role = id == RMQ_PROP_SUB_ID ? RMQ_ROLE_CLIENT : role_for(where);
		int rc = dec(RMQ_V5, role, pkt, n, &p);
		if (id == RMQ_PROP_USER || (id == RMQ_PROP_SUB_ID && where == RMQ_PUBLISH))
			cr_assert_eq(rc, RMQ_OK, "0x%02x twice in %u: %d", id, where, rc);
		else
			cr_assert_eq(rc, RMQ_E_DUP_PROP, "0x%02x twice in %u: %d", id, where, rc);
	}
	/* a second subscription identifier in SUBSCRIBE */
	uint8_t props[] = {0x0B, 1, 0x0B, 2}, pkt[64];
	size_t n = build(RMQ_SUBSCRIBE, props, sizeof props, pkt);
	cr_assert_eq(dec_srv(RMQ_V5, pkt, n), RMQ_E_DUP_PROP);
}

Test(proto_props, role_specific_rules)
{
	uint8_t pkt[64];
	const uint8_t sub_id[] = {0x0B, 0x05};
	size_t n = build(RMQ_PUBLISH, sub_id, sizeof sub_id, pkt);
	cr_assert_eq(dec_srv(RMQ_V5, pkt, n), RMQ_E_PROP_NOT_ALLOWED, "[MQTT-3.3.4-6]");
	cr_assert_eq(dec_cli(RMQ_V5, pkt, n), RMQ_OK);
	const uint8_t sess[] = {0x11, 0, 0, 0, 1};
	n = build(RMQ_DISCONNECT, sess, sizeof sess, pkt);
	cr_assert_eq(dec_srv(RMQ_V5, pkt, n), RMQ_OK);
	cr_assert_eq(dec_cli(RMQ_V5, pkt, n), RMQ_E_PROP_NOT_ALLOWED, "[MQTT-3.14.2-2]");
}

Test(proto_props, value_ranges)
{
	const uint8_t bools[][2] = {{0x01, RMQ_PUBLISH}, {0x17, RMQ_CONNECT}, {0x19, RMQ_CONNECT},
				    {0x24, RMQ_CONNACK}, {0x25, RMQ_CONNACK}, {0x28, RMQ_CONNACK},
				    {0x29, RMQ_CONNACK}, {0x2A, RMQ_CONNACK}};
	uint8_t pkt[64];
	for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
		for (unsigned v = 0; v < 256; v += 1) {
			uint8_t props[] = {bools[i][0], (uint8_t)v};
			size_t n = build(bools[i][1], props, sizeof props, pkt);
			struct rmq_packet p;
			int rc = dec(RMQ_V5, role_for(bools[i][1]), pkt, n, &p);
			cr_assert_eq(rc, v <= 1 ? RMQ_OK : RMQ_E_PROP_VALUE, "prop 0x%02x value %u: %d", bools[i][0], v, rc);
		}
	}
	struct {
		uint8_t where;
		uint8_t props[6];
		size_t n;
		int want;
	} cases[] = {
		{RMQ_CONNECT, {0x21, 0, 0}, 3, RMQ_E_PROP_VALUE},           /* receive maximum 0 */
		{RMQ_CONNACK, {0x21, 0, 0}, 3, RMQ_E_PROP_VALUE},
		{RMQ_CONNECT, {0x27, 0, 0, 0, 0}, 5, RMQ_E_PROP_VALUE},     /* maximum packet size 0 */
		{RMQ_CONNACK, {0x27, 0, 0, 0, 0}, 5, RMQ_E_PROP_VALUE},
		{RMQ_CONNECT, {0x22, 0, 0}, 3, RMQ_OK},                     /* topic alias maximum 0 is fine */
		{RMQ_PUBLISH, {0x23, 0, 0}, 3, RMQ_E_TOPIC_ALIAS_ZERO},
		{RMQ_SUBSCRIBE, {0x0B, 0}, 2, RMQ_E_SUB_ID_ZERO},
		{RMQ_SUBSCRIBE, {0x0B, 0xFF, 0xFF, 0xFF, 0x7F}, 5, RMQ_OK}, /* 268435455 */
		{RMQ_SUBSCRIBE, {0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 6, RMQ_E_VARINT},
		{RMQ_SUBSCRIBE, {0x0B, 0x81, 0x00}, 3, RMQ_E_VARINT_NONMINIMAL},
		{RMQ_PUBLISH, {0x08, 0, 1, '#'}, 4, RMQ_E_TOPIC_NAME},      /* response topic with a wildcard */
		{RMQ_PUBLISH, {0x08, 0, 0}, 3, RMQ_E_TOPIC_NAME},           /* empty response topic */
		{RMQ_PUBLISH, {0x03, 0, 1, 0x00}, 4, RMQ_E_UTF8},           /* content type with U+0000 */
		{RMQ_PUBLISH, {0x26, 0, 1, 0xC0, 0, 0}, 6, RMQ_E_UTF8},     /* user key overlong */
		{RMQ_PUBLISH, {0x09, 0, 1, 0x00}, 4, RMQ_OK},               /* binary data may hold 0 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = build(cases[i].where, cases[i].props, cases[i].n, pkt);
		struct rmq_packet p;
		int rc = dec(RMQ_V5, role_for(cases[i].where), pkt, n, &p);
		cr_assert_eq(rc, cases[i].want, "case %zu: %d, want %d", i, rc, cases[i].want);
	}
}

Test(proto_props, auth_data_needs_auth_method)
{
	const uint8_t wheres_auth[] = {RMQ_CONNECT, RMQ_CONNACK, RMQ_AUTH};
	const uint8_t data_only[] = {0x16, 0, 1, 0xAB};
	const uint8_t both[] = {0x16, 0, 1, 0xAB, 0x15, 0, 1, 'm'};
	uint8_t pkt[64];
	for (size_t i = 0; i < sizeof wheres_auth; i++) {
		struct rmq_packet p;
		size_t n = build(wheres_auth[i], data_only, sizeof data_only, pkt);
		cr_assert_eq(dec(RMQ_V5, role_for(wheres_auth[i]), pkt, n, &p), RMQ_E_AUTH_DATA_NO_METHOD, "type %u",
			     wheres_auth[i]);
		n = build(wheres_auth[i], both, sizeof both, pkt);
		cr_assert_eq(dec(RMQ_V5, role_for(wheres_auth[i]), pkt, n, &p), RMQ_OK, "type %u", wheres_auth[i]);
	}
}

Test(proto_props, lengths)
{
	uint8_t pkt[64];
	/* property length runs past the packet */
	static const uint8_t past[] = {0x30, 0x05, 0, 1, 't', 0x09, 0x01};
	cr_assert_eq(dec_srv(RMQ_V5, past, sizeof past), RMQ_E_PROP_LEN);
	/* a value runs past the property block (but not past the packet) */
	const uint8_t cut[] = {0x02, 0, 0, 1};
	size_t n = build(RMQ_PUBLISH, cut, sizeof cut, pkt);
	cr_assert_eq(dec_srv(RMQ_V5, pkt, n), RMQ_E_PROP_LEN);
	const uint8_t cut_str[] = {0x03, 0, 5, 'a'};
	n = build(RMQ_PUBLISH, cut_str, sizeof cut_str, pkt);
	cr_assert_eq(dec_srv(RMQ_V5, pkt, n), RMQ_E_PROP_LEN);
	/* property length itself missing */
	static const uint8_t nolen[] = {0x30, 0x03, 0, 1, 't'};
	cr_assert_eq(dec_srv(RMQ_V5, nolen, sizeof nolen), RMQ_E_TRUNCATED);
	/* non-minimal property length */
	static const uint8_t nonmin[] = {0x30, 0x05, 0, 1, 't', 0x80, 0x00};
	cr_assert_eq(dec_srv(RMQ_V5, nonmin, sizeof nonmin), RMQ_E_VARINT_NONMINIMAL);
}

Test(proto_props, user_properties_interleaved_keep_order)
{
	const uint8_t props[] = {0x26, 0, 1, 'a', 0, 1, '1', 0x02, 0, 0, 0, 9, 0x26, 0, 1, 'b', 0, 0,
				 0x03, 0, 1, 't', 0x26, 0, 0, 0, 1, '3'};
	uint8_t pkt[128], re[128];
	size_t n = build(RMQ_PUBLISH, props, sizeof props, pkt);
	struct rmq_packet p;
	cr_assert_eq(dec(RMQ_V5, RMQ_ROLE_SERVER, pkt, n, &p), RMQ_OK);
	const struct rmq_props *o = &p.u.publish.props;
	cr_assert_eq(o->user_count, 3);
	cr_assert_eq(o->message_expiry, 9);
	uint32_t pos = 0;
	struct rmq_str k, v;
	cr_assert(rmq_props_user_next(o, &pos, &k, &v) && str_eq(k, S("a")) && str_eq(v, S("1")));
	cr_assert(rmq_props_user_next(o, &pos, &k, &v) && str_eq(k, S("b")) && v.len == 0);
	cr_assert(rmq_props_user_next(o, &pos, &k, &v) && k.len == 0 && str_eq(v, S("3")));
	cr_assert_not(rmq_props_user_next(o, &pos, &k, &v));
	/* re-encoding groups user properties after the others, order among them kept */
	ssize_t e = rmq_proto_encode(re, sizeof re, RMQ_V5, &p);
	cr_assert_eq(e, (ssize_t)n);
	struct rmq_packet q;
	cr_assert_eq(dec(RMQ_V5, RMQ_ROLE_SERVER, re, (size_t)e, &q), RMQ_OK);
	pos = 0;
	cr_assert(rmq_props_user_next(&q.u.publish.props, &pos, &k, &v) && str_eq(k, S("a")));
	cr_assert(rmq_props_user_next(&q.u.publish.props, &pos, &k, &v) && str_eq(k, S("b")));
	cr_assert(rmq_props_user_next(&q.u.publish.props, &pos, &k, &v) && str_eq(v, S("3")));
}

Test(proto_props, user_add_limits)
{
	struct rmq_props props = {0};
	uint8_t small[8];
	size_t used = 0;
	cr_assert_eq(rmq_props_user_add(&props, small, sizeof small, &used, S("key"), S("value")),
		     RMQ_E_BUF_TOO_SMALL);
	cr_assert_eq(used, 0);
	cr_assert_eq(props.user_count, 0);
	static uint8_t big[70000];
	struct rmq_str huge = {big, 65536};
	cr_assert_eq(rmq_props_user_add(&props, big, sizeof big, &used, huge, S("")), RMQ_E_FIELD_TOO_LONG);
	cr_assert_eq(rmq_props_user_add(&props, small, sizeof small, &used, S("k"), S("v")), RMQ_OK);
	cr_assert_eq(used, 7);
	cr_assert_eq(props.user_count, 1);
	cr_assert(props.present & RMQ_PBIT(RMQ_PROP_USER));
}

Test(proto_props, encoder_rejects_misplaced_and_bad_properties)
{
	uint8_t buf[256];
	struct rmq_packet p = {.type = RMQ_PUBLISH, .u.publish = {.topic = S("t")}};
	p.u.publish.props.present = RMQ_PBIT(RMQ_PROP_SESSION_EXPIRY);
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &p), RMQ_E_PROP_NOT_ALLOWED);
	cr_assert_eq(rmq_proto_encoded_len(RMQ_V5, &p), RMQ_E_PROP_NOT_ALLOWED);
	/* below v5 properties are simply not on the wire */
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V311, &p), 5);
	p.u.publish.props.present = RMQ_PBIT(0x04);
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &p), RMQ_E_BAD_PROP);
	p.u.publish.props.present = 0;
	p.u.publish.props.sub_id_count = 1;
	p.u.publish.props.sub_ids[0] = 0;
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &p), RMQ_E_SUB_ID_ZERO);
	p.u.publish.props.sub_ids[0] = RMQ_MAX_REMAINING_LEN + 1;
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &p), RMQ_E_PROP_VALUE);
	p.u.publish.props.sub_id_count = RMQ_MAX_SUB_IDS + 1;
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &p), RMQ_E_TOO_MANY_SUB_IDS);

	struct rmq_packet s = {.type = RMQ_SUBSCRIBE, .u.subscribe = {.packet_id = 1, .count = 1,
								       .list = S("\x00\x01" "a\x00")}};
	s.u.subscribe.props.sub_id_count = 2;
	s.u.subscribe.props.sub_ids[0] = s.u.subscribe.props.sub_ids[1] = 1;
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &s), RMQ_E_DUP_PROP);
	struct rmq_packet ack = {.type = RMQ_PUBACK, .u.ack = {.packet_id = 1}};
	ack.u.ack.props.sub_id_count = 1;
	ack.u.ack.props.sub_ids[0] = 1;
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &ack), RMQ_E_PROP_NOT_ALLOWED);
	ack.u.ack.props.sub_id_count = 0;
	ack.u.ack.props.user_count = 2; /* claims more pairs than `user` holds */
	cr_assert_eq(rmq_proto_encode(buf, sizeof buf, RMQ_V5, &ack), RMQ_E_PROP_LEN);
}

Test(proto_props, too_many_sub_ids_in_publish)
{
	uint8_t props[2 * (RMQ_MAX_SUB_IDS + 1)], pkt[128];
	for (size_t i = 0; i <= RMQ_MAX_SUB_IDS; i++) {
		props[2 * i] = 0x0B;
		props[2 * i + 1] = (uint8_t)(i + 1);
	}
	size_t n = build(RMQ_PUBLISH, props, sizeof props - 2, pkt);
	cr_assert_eq(dec_cli(RMQ_V5, pkt, n), RMQ_OK);
	n = build(RMQ_PUBLISH, props, sizeof props, pkt);
	cr_assert_eq(dec_cli(RMQ_V5, pkt, n), RMQ_E_TOO_MANY_SUB_IDS);
}
