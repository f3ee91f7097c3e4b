# Acknowledgement rules (issue 19): an ack of the wrong type for the QoS of a PUBLISH is a protocol error
# (items 4), a 3.1.1 SUBSCRIBE with a filter deeper than the level limit gets SUBACK 0x80 for that filter and
# keeps its connection (item 5), and a v5 QoS 1/2 publish that nobody takes is acknowledged with 0x10
# "No matching subscribers" (item 6). Raw sockets, so the exact bytes are checked; ringmq only.
import pytest

from conftest import IS_MOSQUITTO
from mqtt_util import (DISCONNECT, P_SESSION_EXPIRY, PUBACK, PUBCOMP, PUBREC, PUBREL, RC_PROTOCOL_ERROR, RC_TOPIC_FILTER_INVALID,
                       ack_packet, cid_on_core, parse_ack, parse_disconnect, publish_packet)
from test_metrics import start, total, wait_for

pytestmark = pytest.mark.skipif(IS_MOSQUITTO, reason="ringmq's counters and flags")

RC_NO_MATCHING_SUBSCRIBERS = 0x10
V3_SUBACK_FAILURE = 0x80
WRONG = [(1, PUBREC), (1, PUBCOMP), (2, PUBACK)]   # (QoS of the PUBLISH, the ack a broken client answers)


def wait_rejected(b, reason, n):
    wait_for(b, lambda s: total(s, "ringmq_rejected_total", reason=reason) == n, f"rejected {reason} == {n}")


@pytest.mark.parametrize("version", [4, 5])
def test_wrong_ack_type_is_a_protocol_error(broker_factory, clients, cores, version):
    b = start(broker_factory, cores, "--kafka", "off", sys_interval=1)
    pub = clients.raw(b, version)
    pub.connect(cid_on_core("wa-pub", 0, cores))
    keep = [(P_SESSION_EXPIRY, 300)] if version == 5 else None
    for n, (qos, wrong) in enumerate(WRONG):
        sub = clients.raw(b, version)
        sub.connect(cid_on_core(f"wa-sub-{n}", n + 1, cores), clean=False, props=keep)
        assert sub.subscribe(f"wa/{n}", qos=qos) == [qos]
        pub.publish(f"wa/{n}", b"m", qos=qos)
        got = sub.recv_publish(ack=False)
        assert got.qos == qos
        sub.send(ack_packet(wrong, got.pid, version))
        pkts = sub.wait_closed()
        if version == 5:
            assert [p.type for p in pkts] == [DISCONNECT], pkts
            assert parse_disconnect(pkts[0])[0] == RC_PROTOCOL_ERROR
        else:
            assert pkts == [], pkts
        # The message is still unacknowledged: the session's next connection gets it again.
        again = clients.raw(b, version)
        again.connect(cid_on_core(f"wa-sub-{n}", n + 1, cores), clean=False, props=keep)
        dup = again.recv_publish()
        assert (dup.topic, dup.payload, dup.dup) == (f"wa/{n}", b"m", True)
    wait_rejected(b, "wrong_ack", len(WRONG))
    logged = [ln for ln in b.stderr().splitlines() if "wrong_ack" in ln]
    assert 1 <= len(logged) <= cores, logged   # once per core, not once per packet
    watch = clients.raw(b, 4)
    watch.connect("wa-sys")
    watch.subscribe("$SYS/broker/rejected/wrong_ack", 0)
    while watch.recv_publish(timeout=5).payload != str(len(WRONG)).encode():
        pass


@pytest.mark.parametrize("version", [4, 5])
def test_filter_past_the_codec_level_limit_gets_a_suback_refusal(broker_factory, clients, cores, version):
    b = start(broker_factory, cores, "--kafka", "off", max_topic_levels=128)
    cl = clients.raw(b, version)
    cl.connect(cid_on_core("deep129", 0, cores))
    bad = RC_TOPIC_FILTER_INVALID if version == 5 else V3_SUBACK_FAILURE
    deep = "/".join(["d"] * 129)
    assert cl.subscribe([(deep, 1), ("ok/+", 1), ("$share/g/" + deep, 0)]) == [bad, 1, bad]
    assert cl.is_open(0.2)
    cl.unsubscribe(deep)
    wait_rejected(b, "topic_levels", 2)
    pub = clients.raw(b, version)
    pub.connect(cid_on_core("deep129-pub", 1, cores))
    pub.publish("ok/1", b"still here", qos=1)
    assert cl.recv_publish().payload == b"still here"


def publish_reasons(cl, topic, qos):
    """Sends one QoS 1/2 PUBLISH; returns the reason of its PUBACK/PUBREC (completing QoS 2) and the raw body."""
    pid = cl.alloc_pid()
    cl.send(publish_packet(topic, b"x", qos, pid=pid, version=cl.version))
    pkt = cl.expect(PUBACK if qos == 1 else PUBREC)
    got, reason = parse_ack(pkt, pkt.type, cl.version)
    assert got == pid
    if qos == 2:
        cl.send(ack_packet(PUBREL, pid, cl.version))
        assert parse_ack(cl.expect(PUBCOMP), PUBCOMP, cl.version) == (pid, 0)
    return reason, pkt.body


@pytest.mark.parametrize("kafka", ["off", "route"])
def test_no_matching_subscribers(broker_factory, clients, cores, kafka):
    extra = ["--kafka", "off"] if kafka == "off" else ["--route", "fleet/# -> fleet"]
    b = broker_factory(cores, args=extra)
    v5 = clients.raw(b, 5)
    v5.connect(cid_on_core("nm-pub", 0, cores))
    v3 = clients.raw(b, 4)
    v3.connect(cid_on_core("nm-pub3", 0, cores))
    for qos in (1, 2):
        assert publish_reasons(v5, "nobody/home", qos)[0] == RC_NO_MATCHING_SUBSCRIBERS
        assert len(publish_reasons(v3, "nobody/home", qos)[1]) == 2   # 3.1.1: no reason byte at all
    if kafka == "route":
        # A Kafka route takes it: not "no subscribers".
        assert publish_reasons(v5, "fleet/car1", 1)[0] == 0
    # A subscriber owned by the other core (cross-core route), a plain one and a shared group.
    sub = clients.raw(b, 5)
    sub.connect(cid_on_core("nm-sub", 1, cores))
    sub.subscribe([("here/+", 1), ("$share/g/shared/+", 1)])
    for topic in ("here/1", "shared/1"):
        for qos in (1, 2):
            assert publish_reasons(v5, topic, qos)[0] == 0, topic
            assert sub.recv_publish().topic == topic
    # A retained message with no subscriber is stored, but nobody took it now.
    pid = v5.alloc_pid()
    v5.send(publish_packet("nobody/retained", b"r", 1, retain=True, pid=pid, version=5))
    assert parse_ack(v5.expect(PUBACK), PUBACK, 5) == (pid, RC_NO_MATCHING_SUBSCRIBERS)
