# MQTT 5 topic aliases from clients (issue 4): Topic Alias Maximum in CONNACK, set / use / remap, and the
# negative cases (0 or above the maximum: DISCONNECT 0x94; unknown alias with an empty topic: 0x82).
import pytest

from mqtt5_util import P_TOPIC_ALIAS, P_TOPIC_ALIAS_MAX, recv5, v5
from mqtt_util import PUBACK, RC_PROTOCOL_ERROR, parse_ack, parse_disconnect, publish_packet

pytestmark = pytest.mark.timeout(60)
RC_TOPIC_ALIAS_INVALID = 0x94


def test_alias_set_use_remap(broker, clients):
    sub, _ = v5(clients, broker, "al-s", 0)
    assert sub.subscribe([("al/#", 1)]) == [1]
    pub, props = v5(clients, broker, "al-p", 1)
    amax = props.get(P_TOPIC_ALIAS_MAX, 0)
    assert amax >= 1
    pub.publish("al/one", b"1", qos=1, props=[(P_TOPIC_ALIAS, 1)])
    pub.publish("", b"2", qos=1, props=[(P_TOPIC_ALIAS, 1)])
    pub.publish("al/max", b"3", qos=0, props=[(P_TOPIC_ALIAS, amax)])
    pub.publish("", b"4", qos=0, props=[(P_TOPIC_ALIAS, amax)])
    pub.publish("al/two", b"5", qos=1, props=[(P_TOPIC_ALIAS, 1)])   # remap alias 1
    pub.publish("", b"6", qos=1, props=[(P_TOPIC_ALIAS, 1)])
    got = [recv5(sub) for _ in range(6)]
    assert [(m.topic, m.payload) for m in got] == [("al/one", b"1"), ("al/one", b"2"), ("al/max", b"3"),
                                                   ("al/max", b"4"), ("al/two", b"5"), ("al/two", b"6")]
    assert all(m.get(P_TOPIC_ALIAS) is None for m in got)   # aliases are per hop: none forwarded


# alias 0: [MQTT-3.3.2-8] forbids sending it; the codec treats it as a protocol error (0x82). 0x94 is
# the spec's code for an alias above the announced maximum.
@pytest.mark.parametrize("alias,topic,rc", [(0, "al/x", RC_PROTOCOL_ERROR),
                                            ("max+1", "al/x", RC_TOPIC_ALIAS_INVALID),
                                            (65535, "", RC_TOPIC_ALIAS_INVALID),
                                            (3, "", RC_PROTOCOL_ERROR)])
def test_alias_errors(broker, clients, alias, topic, rc):
    sub, _ = v5(clients, broker, "ale-s", 0)
    assert sub.subscribe([("#", 1)]) == [1]
    pub, props = v5(clients, broker, "ale-p", 1)
    if alias == "max+1":
        alias = props[P_TOPIC_ALIAS_MAX] + 1
    pub.send(publish_packet(topic, b"x", qos=1, pid=1, version=5, props=[(P_TOPIC_ALIAS, alias)]))
    got = pub.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == rc
    sub.assert_silent(0.5)


def test_alias_is_per_connection(broker, clients):
    a, _ = v5(clients, broker, "alc-a", 0)
    a.publish("alc/t", b"1", qos=1, props=[(P_TOPIC_ALIAS, 2)])
    b, _ = v5(clients, broker, "alc-b", 1)
    b.send(publish_packet("", b"x", qos=1, pid=1, version=5, props=[(P_TOPIC_ALIAS, 2)]))
    got = b.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == RC_PROTOCOL_ERROR
    # a's alias survives b's error, but not a reconnect of a
    a.send(publish_packet("", b"2", qos=1, pid=9, version=5, props=[(P_TOPIC_ALIAS, 2)]))
    assert parse_ack(a.expect(PUBACK), PUBACK, 5) == (9, 0)


def test_paho_alias(broker, clients):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from mqtt_util import cid_on_core
    sub = clients.paho(broker, cid_on_core("alp-s", 0, broker.cores), version=5)
    sub.connect()
    assert sub.subscribe("alp/#", 1) == [1]
    pub = clients.paho(broker, cid_on_core("alp-p", 1, broker.cores), version=5)
    _, _, cprops = pub.connect()
    assert cprops.TopicAliasMaximum >= 1
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 1
    pub.c.publish("alp/car/1", b"a", 1, properties=props).wait_for_publish(5)
    pub.c.publish("", b"b", 1, properties=props).wait_for_publish(5)
    assert [(m.topic, m.payload) for m in (sub.get(), sub.get())] == [("alp/car/1", b"a"), ("alp/car/1", b"b")]
