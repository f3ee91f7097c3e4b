# MQTT 5 subscription options (No Local, Retain As Published, Retain Handling 0/1/2) and Subscription
# Identifiers (issue 4), with raw v5 clients and paho, publisher and subscriber on different cores.
import pytest

from mqtt5_util import NO_LOCAL, P_SUB_ID_AVAILABLE, P_SUBSCRIPTION_ID, RAP, recv5, rh, v5
from mqtt_util import RC_PROTOCOL_ERROR, cid_on_core, disconnect_packet, parse_disconnect, subscribe_packet

pytestmark = pytest.mark.timeout(60)


def test_no_local_suppresses_own_messages_only(broker, clients):
    a, _ = v5(clients, broker, "nl-a", 0)
    b, _ = v5(clients, broker, "nl-b", 1)
    assert a.subscribe([("nl/t", 1 | NO_LOCAL)]) == [1]
    assert b.subscribe([("nl/t", 1)]) == [1]
    a.publish("nl/t", b"from-a", qos=1)
    assert recv5(b).payload == b"from-a"      # b has no No Local: gets a's message
    a.assert_silent(0.5)                      # a's own message is not sent back to it
    b.publish("nl/t", b"from-b", qos=1)
    assert recv5(a).payload == b"from-b"
    assert recv5(b).payload == b"from-b"      # without No Local a client gets its own messages


def test_no_local_with_overlapping_subscription_without_it(broker, clients):
    a, _ = v5(clients, broker, "nl2", 0)
    assert a.subscribe([("nl2/#", 1 | NO_LOCAL), ("nl2/+", 1)]) == [1, 1]
    a.publish("nl2/x", b"own", qos=1)
    # one matching subscription lacks No Local: one copy is delivered
    assert recv5(a).payload == b"own"
    a.assert_silent(0.3)


def test_retain_as_published(broker, clients):
    sub, _ = v5(clients, broker, "rap-s", 0)
    pub, _ = v5(clients, broker, "rap-p", 1)
    assert sub.subscribe([("rap/keep", 1 | RAP), ("rap/clear", 1)]) == [1, 1]
    pub.publish("rap/keep", b"k", qos=1, retain=True)
    pub.publish("rap/clear", b"c", qos=1, retain=True)
    got = {m.topic: m for m in (recv5(sub), recv5(sub))}
    assert got["rap/keep"].retain is True     # Retain As Published: flag kept on a live delivery
    assert got["rap/clear"].retain is False   # [MQTT-3.3.1-12] cleared otherwise
    pub.publish("rap/keep", b"", qos=1, retain=True)
    pub.publish("rap/clear", b"", qos=1, retain=True)


def test_retain_handling_0_1_2(broker, clients):
    pub, _ = v5(clients, broker, "rh-p", 1)
    pub.publish("rh/t", b"state", qos=1, retain=True)
    s, _ = v5(clients, broker, "rh-s", 0)
    # 0: sent at every subscribe, new or not
    assert s.subscribe([("rh/t", 1 | rh(0))]) == [1]
    m = recv5(s)
    assert (m.payload, m.retain) == (b"state", True)
    assert s.subscribe([("rh/t", 1 | rh(0))]) == [1]
    assert recv5(s).payload == b"state"
    # 1: only when the subscription is new
    assert s.subscribe([("rh/+", 1 | rh(1))]) == [1]
    assert recv5(s).payload == b"state"
    assert s.subscribe([("rh/+", 1 | rh(1))]) == [1]
    s.assert_silent(0.5)
    # 2: never
    assert s.subscribe([("rh/#", 1 | rh(2))]) == [1]
    s.assert_silent(0.5)
    # the subscriptions still receive live messages (one copy for the three overlapping ones)
    pub.publish("rh/t", b"live", qos=1)
    m = recv5(s)
    assert (m.payload, m.retain) == (b"live", False)
    s.assert_silent(0.3)
    pub.publish("rh/t", b"", qos=1, retain=True)


def test_retain_handling_3_is_protocol_error(broker, clients):
    s, _ = v5(clients, broker, "rh3", 0)
    s.send(subscribe_packet(1, [("rh3/t", 0x30)], 5))
    got = s.wait_closed()
    assert got and parse_disconnect(got[-1])[0] in (RC_PROTOCOL_ERROR, 0x81)


def test_subscription_ids_forwarded_all_matching(broker, clients):
    sub, props = v5(clients, broker, "sid-s", 0)
    assert props.get(P_SUB_ID_AVAILABLE, 1) == 1
    pub, _ = v5(clients, broker, "sid-p", 1)
    assert sub.subscribe([("sid/#", 1)], props=[(P_SUBSCRIPTION_ID, 7)]) == [1]
    assert sub.subscribe([("sid/+", 0)], props=[(P_SUBSCRIPTION_ID, 268435455)]) == [0]
    assert sub.subscribe([("sid/a", 1)]) == [1]             # no identifier on this one
    pub.publish("sid/a", b"x", qos=1)
    m = recv5(sub)
    assert m.payload == b"x" and m.qos == 1
    assert m.ids() == [7, 268435455]                         # one copy carrying both identifiers
    sub.assert_silent(0.3)
    pub.publish("sid/b/c", b"y", qos=1)
    assert recv5(sub).ids() == [7]
    # replacing a subscription replaces its identifier; removing the identifier removes it
    assert sub.subscribe([("sid/#", 1)], props=[(P_SUBSCRIPTION_ID, 8)]) == [1]
    assert sub.subscribe([("sid/+", 0)]) == [0]
    pub.publish("sid/a", b"z", qos=0)
    assert recv5(sub).ids() == [8]


def test_subscription_id_on_retained_and_queued(broker, clients):
    pub, _ = v5(clients, broker, "sidq-p", 1)
    pub.publish("sidq/r", b"ret", qos=1, retain=True)
    sub, _ = v5(clients, broker, "sidq-s", 0, clean=False, props=[(0x11, 60)])
    assert sub.subscribe([("sidq/#", 1)], props=[(P_SUBSCRIPTION_ID, 42)]) == [1]
    m = recv5(sub)
    assert (m.payload, m.retain, m.ids()) == (b"ret", True, [42])
    sub.send(disconnect_packet(5, 0))
    sub.wait_closed()
    pub.publish("sidq/q", b"queued", qos=1)
    sub2 = clients.raw(broker, 5)
    sp, _, _ = sub2.connect(cid_on_core("sidq-s", 0, broker.cores), clean=False, props=[(0x11, 60)])
    assert sp
    m = recv5(sub2)
    assert (m.payload, m.ids()) == (b"queued", [42])
    pub.publish("sidq/r", b"", qos=1, retain=True)


def test_subscription_id_zero_is_protocol_error(broker, clients):
    s, _ = v5(clients, broker, "sid0", 0)
    s.send(subscribe_packet(1, [("sid0/t", 0)], 5, props=[(P_SUBSCRIPTION_ID, 0)]))
    got = s.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == RC_PROTOCOL_ERROR


def test_paho_v5_subscription_identifier_and_no_local(broker, clients):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
    p = clients.paho(broker, cid_on_core("paho-sid", 0, broker.cores), version=5)
    p.connect()
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 99
    rc, mid = p.c.subscribe("psid/t", options=SubscribeOptions(qos=1, noLocal=True), properties=props)
    assert rc == 0
    import queue as _q
    p.subacks.setdefault(mid, _q.Queue()).get(timeout=5)
    p.publish("psid/t", b"self", qos=1)
    other = clients.paho(broker, cid_on_core("paho-sid-o", 1, broker.cores), version=5)
    other.connect()
    other.publish("psid/t", b"other", qos=1)
    m = p.get()
    assert m.payload == b"other"
    assert m.properties.SubscriptionIdentifier == [99]
    p.assert_no_message(0.3)
