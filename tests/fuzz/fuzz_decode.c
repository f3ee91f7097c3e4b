/* libFuzzer target: frame the input as a stream, decode each packet for every version and role,
 * re-encode what decoded, decode that again and require an equivalent packet. Fuzzer thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringmq/proto.h"

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "fuzz_decode: %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

static bool str_eq(struct rmq_str a, struct rmq_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static unsigned count_users(const struct rmq_props *p)
{
	uint32_t pos = 0;
	unsigned n = 0;
	struct rmq_str k, v;
	while (rmq_props_user_next(p, &pos, &k, &v)) {
		CHECK(rmq_proto_utf8_valid(k.p, k.len) && rmq_proto_utf8_valid(v.p, v.len));
		n++;
	}
	return n;
}

static bool users_eq(const struct rmq_props *a, const struct rmq_props *b)
{
	uint32_t pa = 0, pb = 0;
	struct rmq_str ka, va, kb, vb;
	for (;;) {
		bool na = rmq_props_user_next(a, &pa, &ka, &va), nb = rmq_props_user_next(b, &pb, &kb, &vb);
		if (na != nb)
			return false;
		if (!na)
			return true;
		if (!str_eq(ka, kb) || !str_eq(va, vb))
			return false;
	}
}

static void props_eq(const struct rmq_props *a, const struct rmq_props *b)
{
	CHECK(a->present == b->present);
	CHECK(a->user_count == b->user_count && count_users(a) == a->user_count && users_eq(a, b));
	CHECK(a->sub_id_count == b->sub_id_count);
	CHECK(memcmp(a->sub_ids, b->sub_ids, a->sub_id_count * sizeof a->sub_ids[0]) == 0);
#define SAME(f, id) CHECK(!(a->present & RMQ_PBIT(id)) || a->f == b->f)
#define SAME_STR(f, id) CHECK(!(a->present & RMQ_PBIT(id)) || str_eq(a->f, b->f))
	SAME(payload_format, RMQ_PROP_PAYLOAD_FORMAT);
	SAME(message_expiry, RMQ_PROP_MESSAGE_EXPIRY);
	SAME_STR(content_type, RMQ_PROP_CONTENT_TYPE);
	SAME_STR(response_topic, RMQ_PROP_RESPONSE_TOPIC);
	SAME_STR(correlation_data, RMQ_PROP_CORRELATION_DATA);
	SAME(session_expiry, RMQ_PROP_SESSION_EXPIRY);
	SAME_STR(assigned_client_id, RMQ_PROP_ASSIGNED_CLIENT_ID);
	SAME(server_keep_alive, RMQ_PROP_SERVER_KEEP_ALIVE);
	SAME_STR(auth_method, RMQ_PROP_AUTH_METHOD);
	SAME_STR(auth_data, RMQ_PROP_AUTH_DATA);
	SAME(request_problem_info, RMQ_PROP_REQUEST_PROBLEM_INFO);
	SAME(will_delay, RMQ_PROP_WILL_DELAY);
	SAME(request_response_info, RMQ_PROP_REQUEST_RESPONSE_INFO);
	SAME_STR(response_info, RMQ_PROP_RESPONSE_INFO);
	SAME_STR(server_reference, RMQ_PROP_SERVER_REFERENCE);
	SAME_STR(reason_string, RMQ_PROP_REASON_STRING);
	SAME(receive_max, RMQ_PROP_RECEIVE_MAX);
	SAME(topic_alias_max, RMQ_PROP_TOPIC_ALIAS_MAX);
	SAME(topic_alias, RMQ_PROP_TOPIC_ALIAS);
	SAME(max_qos, RMQ_PROP_MAX_QOS);
	SAME(retain_available, RMQ_PROP_RETAIN_AVAILABLE);
	SAME(max_packet_size, RMQ_PROP_MAX_PACKET_SIZE);
	SAME(wildcard_available, RMQ_PROP_WILDCARD_AVAILABLE);
	SAME(sub_id_available, RMQ_PROP_SUB_ID_AVAILABLE);
	SAME(shared_available, RMQ_PROP_SHARED_AVAILABLE);
#undef SAME
#undef SAME_STR
}

/* A decoded filter is valid but may be deeper than RMQ_MAX_TOPIC_LEVELS (the broker refuses it per filter). */
static bool filter_too_deep(struct rmq_str f)
{
	size_t levels = 1;
	for (uint32_t i = 0; i < f.len; i++)
		levels += f.p[i] == '/';
	return levels > RMQ_MAX_TOPIC_LEVELS;
}

static void subs_eq(const struct rmq_subscribe *a, const struct rmq_subscribe *b)
{
	CHECK(a->packet_id == b->packet_id && a->count == b->count && a->is_unsubscribe == b->is_unsubscribe);
	props_eq(&a->props, &b->props);
	uint32_t pa = 0, pb = 0;
	struct rmq_sub_entry ea, eb;
	unsigned n = 0;
	while (rmq_sub_next(a, &pa, &ea)) {
		CHECK(rmq_sub_next(b, &pb, &eb));
		CHECK(str_eq(ea.filter, eb.filter) && ea.options == eb.options);
		CHECK(rmq_proto_topic_filter_check(ea.filter.p, ea.filter.len) == RMQ_OK || filter_too_deep(ea.filter));
		n++;
	}
	CHECK(n == a->count);
}

static void packets_eq(const struct rmq_packet *a, const struct rmq_packet *b)
{
	CHECK(a->type == b->type);
	switch (a->type) {
	case RMQ_CONNECT: {
		const struct rmq_connect *x = &a->u.connect, *y = &b->u.connect;
		CHECK(x->version == y->version && x->clean_start == y->clean_start && x->will == y->will);
		CHECK(x->will_retain == y->will_retain && x->will_qos == y->will_qos);
		CHECK(x->has_username == y->has_username && x->has_password == y->has_password);
		CHECK(x->keep_alive == y->keep_alive && str_eq(x->protocol_name, y->protocol_name));
		CHECK(str_eq(x->client_id, y->client_id) && str_eq(x->will_topic, y->will_topic));
		CHECK(str_eq(x->will_payload, y->will_payload) && str_eq(x->username, y->username));
		CHECK(str_eq(x->password, y->password));
		props_eq(&x->props, &y->props);
		props_eq(&x->will_props, &y->will_props);
		break;
	}
	case RMQ_CONNACK:
		CHECK(a->u.connack.session_present == b->u.connack.session_present);
		CHECK(a->u.connack.reason == b->u.connack.reason);
		props_eq(&a->u.connack.props, &b->u.connack.props);
		break;
	case RMQ_PUBLISH: {
		const struct rmq_publish *x = &a->u.publish, *y = &b->u.publish;
		CHECK(a->flags == b->flags && x->qos == y->qos && x->dup == y->dup && x->retain == y->retain);
		CHECK(x->packet_id == y->packet_id && str_eq(x->topic, y->topic) && str_eq(x->payload, y->payload));
		props_eq(&x->props, &y->props);
		int pf = rmq_proto_check_payload_format(x);
		CHECK(pf == RMQ_OK || pf == RMQ_E_PAYLOAD_FORMAT);
		break;
	}
	case RMQ_PUBACK: case RMQ_PUBREC: case RMQ_PUBREL: case RMQ_PUBCOMP:
		CHECK(a->u.ack.packet_id == b->u.ack.packet_id && a->u.ack.reason == b->u.ack.reason);
		props_eq(&a->u.ack.props, &b->u.ack.props);
		break;
	case RMQ_SUBSCRIBE: case RMQ_UNSUBSCRIBE:
		subs_eq(&a->u.subscribe, &b->u.subscribe);
		break;
	case RMQ_SUBACK: case RMQ_UNSUBACK:
		CHECK(a->u.suback.packet_id == b->u.suback.packet_id && a->u.suback.count == b->u.suback.count);
		CHECK(a->u.suback.count == 0 || memcmp(a->u.suback.reasons, b->u.suback.reasons, a->u.suback.count) == 0);
		props_eq(&a->u.suback.props, &b->u.suback.props);
		break;
	case RMQ_DISCONNECT: case RMQ_AUTH:
		CHECK(a->u.disconnect.reason == b->u.disconnect.reason);
		props_eq(&a->u.disconnect.props, &b->u.disconnect.props);
		break;
	default:
		break;
	}
}

/* Decode one framed packet (in an exact-size heap copy so ASan sees any over-read), re-encode,
 * decode again, compare. */
static void check_packet(const uint8_t *data, size_t len, uint8_t version, uint8_t role)
{
	uint8_t *pkt = malloc(len ? len : 1);
	CHECK(pkt);
	memcpy(pkt, data, len);
	struct rmq_decode_ctx ctx = {.version = version, .role = role};
	struct rmq_packet a, b;
	int rc = rmq_proto_decode(pkt, len, &ctx, &a);
	CHECK(rc <= 0 && rc != RMQ_E_INCOMPLETE);
	CHECK(rmq_proto_err_str(rc) != NULL);
	if (rc == RMQ_OK) {
		uint8_t ver = a.type == RMQ_CONNECT ? a.u.connect.version : version;
		ssize_t n = rmq_proto_encoded_len(ver, &a);
		CHECK(n > 0);
		uint8_t *re = malloc((size_t)n);
		CHECK(re);
		CHECK(rmq_proto_encode(re, (size_t)n, ver, &a) == n);
		CHECK(rmq_proto_encode(re, (size_t)n - 1, ver, &a) == RMQ_E_BUF_TOO_SMALL);
		size_t total = 0;
		CHECK(rmq_proto_frame(re, (size_t)n, 0, &total) == RMQ_OK && total == (size_t)n);
		ctx.version = ver;
		rc = rmq_proto_decode(re, (size_t)n, &ctx, &b);
		if (rc != RMQ_OK)
			fprintf(stderr, "re-decode v%u role %u type %u: %d %s\n", ver, role, a.type, rc,
				rmq_proto_err_str(rc));
		CHECK(rc == RMQ_OK);
		packets_eq(&a, &b);
		free(re);
	}
	free(pkt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (uint8_t version = RMQ_V31; version <= RMQ_V5; version++) {
		for (uint8_t role = RMQ_ROLE_SERVER; role <= RMQ_ROLE_CLIENT; role++) {
			const uint8_t *p = data;
			size_t left = size;
			while (left) {
				size_t total = 0;
				int rc = rmq_proto_frame(p, left, 0, &total);
				if (rc != RMQ_OK) {
					CHECK(rc == RMQ_E_INCOMPLETE || rc == RMQ_E_VARINT ||
					      rc == RMQ_E_VARINT_NONMINIMAL);
					/* an unframed tail still goes through decode's own length checks */
					check_packet(p, left, version, role);
					break;
				}
				if (total > left) {
					check_packet(p, left, version, role);
					break;
				}
				check_packet(p, total, version, role);
				p += total;
				left -= total;
			}
		}
	}
	/* the standalone validators on the raw bytes */
	rmq_proto_utf8_valid(data, size);
	rmq_proto_topic_name_check(data, size);
	rmq_proto_topic_filter_check(data, size);
	return 0;
}
