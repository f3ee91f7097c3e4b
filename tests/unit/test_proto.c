/* Codec basics: one round trip per packet type and version, and known wire vectors from real clients.
 * Test-only; single-threaded. */
#include "test_proto_helpers.h"

static uint8_t buf[4096];

Test(proto, publish_roundtrip_all_versions_and_qos)
{
	const uint8_t versions[] = ALL_VERSIONS;
	for (size_t v = 0; v < 3; v++) {
		for (uint8_t qos = 0; qos <= 2; qos++) {
			struct rmq_packet in = {.type = RMQ_PUBLISH}, out;
			in.u.publish = (struct rmq_publish){.qos = qos, .retain = true, .dup = qos > 0,
							    .packet_id = qos ? 7 : 0, .topic = S("cars/42/gps"),
							    .payload = S("{\"lat\":1}")};
			roundtrip(versions[v], RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf);
			struct rmq_publish *p = &out.u.publish;
			cr_assert_eq(p->qos, qos);
			cr_assert_eq(p->dup, qos > 0);
			cr_assert(p->retain);
			cr_assert_eq(p->packet_id, qos ? 7 : 0);
			cr_assert(str_eq(p->topic, S("cars/42/gps")));
			cr_assert(str_eq(p->payload, S("{\"lat\":1}")));
			cr_assert_eq(p->props.present, 0);
		}
	}
}

Test(proto, publish_v5_properties_roundtrip)
{
	uint8_t ub[128];
	size_t used = 0;
	struct rmq_packet in = {.type = RMQ_PUBLISH}, out;
	struct rmq_publish *p = &in.u.publish;
	*p = (struct rmq_publish){.qos = 1, .packet_id = 9, .topic = S("a/b"), .payload = S("x")};
	p->props.present = RMQ_PBIT(RMQ_PROP_PAYLOAD_FORMAT) | RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY) |
			   RMQ_PBIT(RMQ_PROP_CONTENT_TYPE) | RMQ_PBIT(RMQ_PROP_RESPONSE_TOPIC) |
			   RMQ_PBIT(RMQ_PROP_CORRELATION_DATA) | RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS);
	p->props.payload_format = 1;
	p->props.message_expiry = 3600;
	p->props.content_type = S("application/json");
	p->props.response_topic = S("reply/1");
	p->props.correlation_data = S("\x01\x02");
	p->props.topic_alias = 5;
	cr_assert_eq(rmq_props_user_add(&p->props, ub, sizeof ub, &used, S("k1"), S("v1")), RMQ_OK);
	cr_assert_eq(rmq_props_user_add(&p->props, ub, sizeof ub, &used, S("k2"), S("v2")), RMQ_OK);
	p->props.sub_id_count = 2;
	p->props.sub_ids[0] = 1;
	p->props.sub_ids[1] = 268435455;
	roundtrip(RMQ_V5, RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
	struct rmq_props *o = &out.u.publish.props;
	cr_assert_eq(o->payload_format, 1);
	cr_assert_eq(o->message_expiry, 3600);
	cr_assert(str_eq(o->content_type, S("application/json")));
	cr_assert(str_eq(o->response_topic, S("reply/1")));
	cr_assert(str_eq(o->correlation_data, S("\x01\x02")));
	cr_assert_eq(o->topic_alias, 5);
	cr_assert_eq(o->sub_id_count, 2);
	cr_assert_eq(o->sub_ids[1], 268435455);
	cr_assert_eq(o->user_count, 2);
	uint32_t pos = 0;
	struct rmq_str k, v;
	cr_assert(rmq_props_user_next(o, &pos, &k, &v));
	cr_assert(str_eq(k, S("k1")) && str_eq(v, S("v1")));
	cr_assert(rmq_props_user_next(o, &pos, &k, &v));
	cr_assert(str_eq(k, S("k2")) && str_eq(v, S("v2")));
	cr_assert_not(rmq_props_user_next(o, &pos, &k, &v));
}

Test(proto, connect_roundtrip_all_versions)
{
	const uint8_t versions[] = ALL_VERSIONS;
	for (size_t v = 0; v < 3; v++) {
		struct rmq_packet in = {.type = RMQ_CONNECT}, out;
		struct rmq_connect *c = &in.u.connect;
		*c = (struct rmq_connect){.clean_start = true, .will = true, .will_qos = 1, .will_retain = true,
					  .has_username = true, .has_password = true, .keep_alive = 60,
					  .client_id = S("car-0001"), .will_topic = S("cars/0001/status"),
					  .will_payload = S("offline"), .username = S("u"), .password = S("p\0w")};
		if (versions[v] == RMQ_V5) {
			c->props.present = RMQ_PBIT(RMQ_PROP_SESSION_EXPIRY) | RMQ_PBIT(RMQ_PROP_RECEIVE_MAX);
			c->props.session_expiry = 120;
			c->props.receive_max = 32;
			c->will_props.present = RMQ_PBIT(RMQ_PROP_WILL_DELAY);
			c->will_props.will_delay = 10;
		}
		roundtrip(versions[v], RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf);
		struct rmq_connect *o = &out.u.connect;
		cr_assert_eq(o->version, versions[v]);
		cr_assert(str_eq(o->protocol_name, versions[v] == RMQ_V31 ? S("MQIsdp") : S("MQTT")));
		cr_assert(o->clean_start && o->will && o->will_retain && o->has_username && o->has_password);
		cr_assert_eq(o->will_qos, 1);
		cr_assert_eq(o->keep_alive, 60);
		cr_assert(str_eq(o->client_id, S("car-0001")));
		cr_assert(str_eq(o->will_topic, S("cars/0001/status")));
		cr_assert(str_eq(o->will_payload, S("offline")));
		cr_assert(str_eq(o->username, S("u")));
		cr_assert(str_eq(o->password, S("p\0w")));
		if (versions[v] == RMQ_V5) {
			cr_assert_eq(o->props.session_expiry, 120);
			cr_assert_eq(o->props.receive_max, 32);
			cr_assert_eq(o->will_props.will_delay, 10);
		}
	}
}

Test(proto, connack_roundtrip_all_versions)
{
	const uint8_t versions[] = ALL_VERSIONS;
	for (size_t v = 0; v < 3; v++) {
		struct rmq_packet in = {.type = RMQ_CONNACK}, out;
		in.u.connack.session_present = true;
		in.u.connack.reason = versions[v] == RMQ_V5 ? RMQ_RC_SUCCESS : RMQ_V3_ACCEPTED;
		if (versions[v] == RMQ_V5) {
			in.u.connack.props.present = RMQ_PBIT(RMQ_PROP_ASSIGNED_CLIENT_ID) | RMQ_PBIT(RMQ_PROP_MAX_QOS);
			in.u.connack.props.assigned_client_id = S("auto-1");
			in.u.connack.props.max_qos = 1;
		}
		size_t n = roundtrip(versions[v], RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
		cr_assert_eq(out.u.connack.session_present, versions[v] != RMQ_V31); /* 3.1: byte unused */
		if (versions[v] != RMQ_V5)
			cr_assert_eq(n, 4);
		else
			cr_assert(str_eq(out.u.connack.props.assigned_client_id, S("auto-1")));
	}
}

Test(proto, acks_roundtrip_and_short_forms)
{
	const uint8_t versions[] = ALL_VERSIONS;
	const uint8_t types[] = {RMQ_PUBACK, RMQ_PUBREC, RMQ_PUBREL, RMQ_PUBCOMP};
	for (size_t v = 0; v < 3; v++) {
		for (size_t t = 0; t < 4; t++) {
			struct rmq_packet in = {.type = types[t]}, out;
			in.u.ack.packet_id = 0x1234;
			size_t n = roundtrip(versions[v], RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf);
			cr_assert_eq(n, 4, "success with no properties: remaining length 2");
			cr_assert_eq(buf[0], types[t] << 4 | (types[t] == RMQ_PUBREL ? 2 : 0));
			cr_assert_eq(out.u.ack.packet_id, 0x1234);
			if (versions[v] != RMQ_V5)
				continue;
			in.u.ack.reason = types[t] >= RMQ_PUBREL ? RMQ_RC_PACKET_ID_NOT_FOUND : RMQ_RC_NOT_AUTHORIZED;
			n = roundtrip(RMQ_V5, RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
			cr_assert_eq(n, 5, "reason without properties: remaining length 3");
			cr_assert_eq(out.u.ack.reason, in.u.ack.reason);
			in.u.ack.props.present = RMQ_PBIT(RMQ_PROP_REASON_STRING);
			in.u.ack.props.reason_string = S("no");
			n = roundtrip(RMQ_V5, RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
			cr_assert_eq(n, 2 + 2 + 1 + 1 + 1 + 2 + 2);
			cr_assert(str_eq(out.u.ack.props.reason_string, S("no")));
		}
	}
}

Test(proto, subscribe_unsubscribe_roundtrip)
{
	const uint8_t versions[] = ALL_VERSIONS;
	const char *filters[] = {"cars/+/gps", "fleet/#", "$share/g1/cars/#", "a"};
	for (size_t v = 0; v < 3; v++) {
		for (int unsub = 0; unsub <= 1; unsub++) {
			uint8_t lb[256];
			size_t used = 0;
			struct rmq_packet in = {.type = unsub ? RMQ_UNSUBSCRIBE : RMQ_SUBSCRIBE}, out;
			struct rmq_subscribe *s = &in.u.subscribe;
			s->is_unsubscribe = unsub;
			s->packet_id = 3;
			for (size_t i = 0; i < 4; i++) {
				struct rmq_str f = {(const uint8_t *)filters[i], (uint32_t)strlen(filters[i])};
				cr_assert_eq(rmq_sub_add(s, lb, sizeof lb, &used, f, (uint8_t)(i % 3)), RMQ_OK);
			}
			if (versions[v] == RMQ_V5 && !unsub) {
				s->props.sub_id_count = 1;
				s->props.sub_ids[0] = 77;
			}
			roundtrip(versions[v], RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf);
			struct rmq_subscribe *o = &out.u.subscribe;
			cr_assert_eq(o->count, 4);
			cr_assert_eq(o->packet_id, 3);
			cr_assert_eq(o->is_unsubscribe, unsub);
			uint32_t pos = 0;
			struct rmq_sub_entry e;
			for (size_t i = 0; i < 4; i++) {
				cr_assert(rmq_sub_next(o, &pos, &e));
				cr_assert_eq(e.filter.len, strlen(filters[i]));
				cr_assert_eq(memcmp(e.filter.p, filters[i], e.filter.len), 0);
				cr_assert_eq(e.options, unsub ? 0 : i % 3);
			}
			cr_assert_not(rmq_sub_next(o, &pos, &e));
			if (versions[v] == RMQ_V5 && !unsub)
				cr_assert_eq(o->props.sub_ids[0], 77);
		}
	}
}

Test(proto, suback_unsuback_roundtrip)
{
	const uint8_t versions[] = ALL_VERSIONS;
	const uint8_t codes[] = {0, 1, 2, 0x80};
	for (size_t v = 0; v < 3; v++) {
		struct rmq_packet in = {.type = RMQ_SUBACK}, out;
		in.u.suback = (struct rmq_suback){.packet_id = 11, .count = 4, .reasons = codes};
		roundtrip(versions[v], RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
		cr_assert_eq(out.u.suback.count, 4);
		cr_assert_eq(memcmp(out.u.suback.reasons, codes, 4), 0);

		const uint8_t ucodes[] = {0x00, 0x11};
		in.type = RMQ_UNSUBACK;
		in.u.suback = (struct rmq_suback){.packet_id = 12, .count = 2, .reasons = ucodes};
		size_t n = roundtrip(versions[v], RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
		cr_assert_eq(out.u.suback.packet_id, 12);
		if (versions[v] == RMQ_V5) {
			cr_assert_eq(out.u.suback.count, 2);
			cr_assert_eq(out.u.suback.reasons[1], 0x11);
		} else {
			cr_assert_eq(n, 4, "3.1.1 UNSUBACK carries no reason codes");
			cr_assert_eq(out.u.suback.count, 0);
		}
	}
}

Test(proto, ping_disconnect_auth_roundtrip)
{
	const uint8_t versions[] = ALL_VERSIONS;
	for (size_t v = 0; v < 3; v++) {
		struct rmq_packet in = {.type = RMQ_PINGREQ}, out;
		cr_assert_eq(roundtrip(versions[v], RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf), 2);
		in.type = RMQ_PINGRESP;
		cr_assert_eq(roundtrip(versions[v], RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf), 2);
		in.type = RMQ_DISCONNECT;
		cr_assert_eq(roundtrip(versions[v], RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf), 2);
	}
	struct rmq_packet in = {.type = RMQ_DISCONNECT}, out;
	in.u.disconnect.reason = RMQ_RC_DISCONNECT_WITH_WILL;
	cr_assert_eq(roundtrip(RMQ_V5, RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf), 3);
	cr_assert_eq(out.u.disconnect.reason, RMQ_RC_DISCONNECT_WITH_WILL);
	in.u.disconnect.reason = RMQ_RC_SERVER_MOVED;
	in.u.disconnect.props.present = RMQ_PBIT(RMQ_PROP_SERVER_REFERENCE);
	in.u.disconnect.props.server_reference = S("other:1883");
	roundtrip(RMQ_V5, RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
	cr_assert(str_eq(out.u.disconnect.props.server_reference, S("other:1883")));

	in = (struct rmq_packet){.type = RMQ_AUTH};
	cr_assert_eq(roundtrip(RMQ_V5, RMQ_ROLE_SERVER, &in, &out, buf, sizeof buf), 2);
	in.u.disconnect.reason = RMQ_RC_CONTINUE_AUTH;
	in.u.disconnect.props.present = RMQ_PBIT(RMQ_PROP_AUTH_METHOD) | RMQ_PBIT(RMQ_PROP_AUTH_DATA);
	in.u.disconnect.props.auth_method = S("SCRAM-SHA-1");
	in.u.disconnect.props.auth_data = S("\x00\x01");
	roundtrip(RMQ_V5, RMQ_ROLE_CLIENT, &in, &out, buf, sizeof buf);
	cr_assert_eq(out.u.disconnect.reason, RMQ_RC_CONTINUE_AUTH);
	cr_assert(str_eq(out.u.disconnect.props.auth_method, S("SCRAM-SHA-1")));
	cr_assert(str_eq(out.u.disconnect.props.auth_data, S("\x00\x01")));
}

/* Bytes as mosquitto_pub 2.0 sends them (-V 311 -q 1 -t a/b -m hi) and a v5 CONNECT from paho. */
Test(proto, known_wire_vectors)
{
	struct rmq_packet p;
	static const uint8_t pub[] = {0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 'h', 'i'};
	cr_assert_eq(dec(RMQ_V311, RMQ_ROLE_SERVER, pub, sizeof pub, &p), RMQ_OK);
	cr_assert_eq(p.u.publish.qos, 1);
	cr_assert_eq(p.u.publish.packet_id, 1);
	cr_assert(str_eq(p.u.publish.payload, S("hi")));

	cr_assert_eq(dec(0, RMQ_ROLE_SERVER,
			 BYTES(0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x03, 0x21, 0x00,
			       0x14, 0x00, 0x00),
			 &p), RMQ_OK);
	cr_assert_eq(p.u.connect.version, RMQ_V5);
	cr_assert_eq(p.u.connect.keep_alive, 60);
	cr_assert_eq(p.u.connect.props.receive_max, 20);
	cr_assert_eq(p.u.connect.client_id.len, 0);

	uint8_t out[16];
	struct rmq_packet ack = {.type = RMQ_PUBACK, .u.ack = {.packet_id = 1}};
	cr_assert_eq(rmq_proto_encode(out, sizeof out, RMQ_V311, &ack), 4);
	cr_assert_eq(memcmp(out, (uint8_t[]){0x40, 0x02, 0x00, 0x01}, 4), 0);
}
