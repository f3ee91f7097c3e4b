# MQTT 5 message properties (issue 4): Message Expiry Interval (live, offline queue, retained; remaining
# interval forwarded), properties passed through untouched, Payload Format Indicator with UTF-8 check (0x99).
import time

import pytest

from mqtt5_util import recv5, v5
from mqtt_util import (PUBACK, PUBREC, P_CONTENT_TYPE, P_CORRELATION, P_MESSAGE_EXPIRY, P_PAYLOAD_FORMAT,
                       P_RESPONSE_TOPIC, P_SESSION_EXPIRY, P_USER_PROPERTY, cid_on_core, disconnect_packet,
                       parse_ack, parse_disconnect, publish_packet)

pytestmark = pytest.mark.timeout(60)
RC_PAYLOAD_FORMAT_INVALID = 0x99


def test_live_message_forwards_expiry(broker, clients):
    sub, _ = v5(clients, broker, "mx-s", 0)
    pub, _ = v5(clients, broker, "mx-p", 1)
    assert sub.subscribe([("mx/#", 1)]) == [1]
    pub.publish("mx/a", b"q1", qos=1, props=[(P_MESSAGE_EXPIRY, 30)])
    pub.publish("mx/b", b"q0", qos=0, props=[(P_MESSAGE_EXPIRY, 30)])
    pub.publish("mx/c", b"none", qos=1)
    got = {m.topic: m for m in (recv5(sub), recv5(sub), recv5(sub))}
    assert 29 <= got["mx/a"].get(P_MESSAGE_EXPIRY) <= 30
    assert 29 <= got["mx/b"].get(P_MESSAGE_EXPIRY) <= 30
    assert got["mx/c"].get(P_MESSAGE_EXPIRY) is None       # none given, none invented


def offline_sub(clients, broker, prefix):
    cid = cid_on_core(prefix, 0, broker.cores)
    s = clients.raw(broker, 5)
    s.connect(cid, clean=True, props=[(P_SESSION_EXPIRY, 120)])
    assert s.subscribe([("mxq/#", 1)]) == [1]
    s.send(disconnect_packet(5, 0))
    s.wait_closed()
    return cid


def test_offline_queue_drops_expired_and_forwards_remaining(broker, clients):
    cid = offline_sub(clients, broker, "mxq-s")
    pub, _ = v5(clients, broker, "mxq-p", 1)
    pub.publish("mxq/short", b"short", qos=1, props=[(P_MESSAGE_EXPIRY, 1)])
    pub.publish("mxq/long", b"long", qos=1, props=[(P_MESSAGE_EXPIRY, 60)])
    pub.publish("mxq/never", b"never", qos=2)
    time.sleep(2.5)   # the subject: the 1 s message expiry passes while the session is offline
    s = clients.raw(broker, 5)
    sp, _, _ = s.connect(cid, clean=False, props=[(P_SESSION_EXPIRY, 120)])
    assert sp
    a, b = recv5(s), recv5(s)
    assert [a.payload, b.payload] == [b"long", b"never"]   # the expired one is gone, order kept
    assert 56 <= a.get(P_MESSAGE_EXPIRY) <= 58             # about 2.5 s spent waiting
    assert b.get(P_MESSAGE_EXPIRY) is None
    s.assert_silent(0.5)


def test_unacked_inflight_expires_while_offline(broker, clients):
    cid = cid_on_core("mxi-s", 0, broker.cores)
    s = clients.raw(broker, 5)
    s.connect(cid, props=[(P_SESSION_EXPIRY, 120)])
    assert s.subscribe([("mxi/#", 1)]) == [1]
    pub, _ = v5(clients, broker, "mxi-p", 1)
    pub.publish("mxi/t", b"unacked", qos=1, props=[(P_MESSAGE_EXPIRY, 1)])
    m = recv5(s, ack=False)                                  # received, never acknowledged
    assert m.payload == b"unacked"
    s.abort()
    time.sleep(2.2)   # the subject: the 1 s message expiry passes while the session is offline
    s2 = clients.raw(broker, 5)
    assert s2.connect(cid, clean=False, props=[(P_SESSION_EXPIRY, 120)])[0]
    pub.publish("mxi/t", b"fence", qos=1)
    assert recv5(s2).payload == b"fence"                     # not redelivered before it: it expired


def test_retained_expiry(broker, clients):
    pub, _ = v5(clients, broker, "mxr-p", 1)
    pub.publish("mxr/short", b"s", qos=1, retain=True, props=[(P_MESSAGE_EXPIRY, 1)])
    pub.publish("mxr/long", b"l", qos=1, retain=True, props=[(P_MESSAGE_EXPIRY, 100)])
    time.sleep(2.2)   # the subject: the 1 s expiry of the retained message passes
    s, _ = v5(clients, broker, "mxr-s", 0)
    assert s.subscribe([("mxr/#", 1)]) == [1]
    m = recv5(s)
    assert (m.topic, m.retain) == ("mxr/long", True)
    assert 96 <= m.get(P_MESSAGE_EXPIRY) <= 98
    s.assert_silent(0.5)
    pub.publish("mxr/long", b"", qos=1, retain=True)


def test_properties_pass_through_untouched(broker, clients):
    sub, _ = v5(clients, broker, "pt-s", 0)
    pub, _ = v5(clients, broker, "pt-p", 1)
    assert sub.subscribe([("pt/t", 2)]) == [2]
    users = [(P_USER_PROPERTY, ("b", "2")), (P_USER_PROPERTY, ("a", "1")), (P_USER_PROPERTY, ("b", "0")),
             (P_USER_PROPERTY, ("", "empty-key"))]
    props = [(P_CONTENT_TYPE, "application/json"), users[0], (P_RESPONSE_TOPIC, "pt/reply/42"), users[1],
             (P_CORRELATION, b"\x00\x01corr\xff"), users[2], (P_PAYLOAD_FORMAT, 1), users[3]]
    for qos in (0, 1, 2):
        pub.publish("pt/t", '{"ü": %d}' % qos, qos=qos, props=props)
        m = recv5(sub)
        assert m.payload == ('{"ü": %d}' % qos).encode()
        assert m.get(P_CONTENT_TYPE) == b"application/json"
        assert m.get(P_RESPONSE_TOPIC) == b"pt/reply/42"
        assert m.get(P_CORRELATION) == b"\x00\x01corr\xff"
        assert m.get(P_PAYLOAD_FORMAT) == 1
        assert [v for k, v in m.plist if k == P_USER_PROPERTY] == [
            (b"b", b"2"), (b"a", b"1"), (b"b", b"0"), (b"", b"empty-key")]   # order and repeats kept


def test_paho_request_response(broker, clients):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    sub = clients.paho(broker, cid_on_core("ptp-s", 0, broker.cores), version=5)
    sub.connect()
    assert sub.subscribe("ptp/cmd", 1) == [1]
    pub = clients.paho(broker, cid_on_core("ptp-p", 1, broker.cores), version=5)
    pub.connect()
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "ptp/resp/car7"
    props.CorrelationData = b"req-1"
    props.ContentType = "text/plain"
    props.UserProperty = [("vin", "WVW123"), ("vin", "again")]
    info = pub.c.publish("ptp/cmd", b"unlock", 1, properties=props)
    info.wait_for_publish(5)
    m = sub.get()
    assert m.payload == b"unlock"
    assert m.properties.ResponseTopic == "ptp/resp/car7"
    assert m.properties.CorrelationData == b"req-1"
    assert m.properties.ContentType == "text/plain"
    assert m.properties.UserProperty == [("vin", "WVW123"), ("vin", "again")]


@pytest.mark.parametrize("qos,ack", [(1, PUBACK), (2, PUBREC)])
def test_payload_format_invalid_utf8_refused(broker, clients, qos, ack):
    sub, _ = v5(clients, broker, "pf-s", 0)
    assert sub.subscribe([("pf/#", 2)]) == [2]
    pub, _ = v5(clients, broker, "pf-p", 1)
    pub.send(publish_packet("pf/bad", b"\xff\xfe", qos=qos, pid=5, version=5, props=[(P_PAYLOAD_FORMAT, 1)]))
    assert parse_ack(pub.expect(ack), ack, 5) == (5, RC_PAYLOAD_FORMAT_INVALID)
    # the same bytes are fine without the indicator (or with 0), and the connection lives on
    pub.publish("pf/ok", b"\xff\xfe", qos=1, props=[(P_PAYLOAD_FORMAT, 0)])
    m = recv5(sub)
    assert (m.topic, m.payload) == ("pf/ok", b"\xff\xfe")
    sub.assert_silent(0.3)


def test_payload_format_invalid_qos0_disconnects(broker, clients):
    sub, _ = v5(clients, broker, "pf0-s", 0)
    assert sub.subscribe([("pf0/#", 0)]) == [0]
    pub, _ = v5(clients, broker, "pf0-p", 1)
    pub.send(publish_packet("pf0/bad", b"ok\xc0\xafno", qos=0, version=5, props=[(P_PAYLOAD_FORMAT, 1)]))
    got = pub.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == RC_PAYLOAD_FORMAT_INVALID
    sub.assert_silent(0.5)
