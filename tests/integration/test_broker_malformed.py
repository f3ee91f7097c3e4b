# Integration tests of bad input (issue 3): each malformed or forbidden packet gets the spec's answer (3.1.1: close;
# 5: DISCONNECT with reason, then close), the offender's will is sent, and every other client keeps working.
import itertools

import pytest

from conftest import IS_MOSQUITTO
from mqtt_util import (CONNACK, DISCONNECT, RC_MALFORMED, RC_PACKET_TOO_LARGE, RC_PROTOCOL_ERROR,
                       RC_TOPIC_NAME_INVALID, cid_on_core, connect_packet, mqtt_bytes, packet,
                       parse_connack, parse_disconnect, varint)

MAL, PROTO = {RC_MALFORMED}, {RC_MALFORMED, RC_PROTOCOL_ERROR}
TOPIC_BAD = {RC_MALFORMED, RC_PROTOCOL_ERROR, RC_TOPIC_NAME_INVALID}


def props(v):
    return b"\x00" if v == 5 else b""


def pub(topic, flags=0x02, pid=b"\x00\x01", payload=b"x"):
    """PUBLISH with a raw topic (bytes) and raw fixed-header flags; pid omitted for QoS 0 flags."""
    def build(v):
        body = mqtt_bytes(topic) + (pid if flags & 0x06 else b"") + props(v) + payload
        return packet(3, flags, body)
    return build


def sub(options=0x01, flags=0x02, filters=True):
    def build(v):
        body = b"\x00\x05" + props(v) + ((mqtt_bytes("s/t") + bytes([options])) if filters else b"")
        return packet(8, flags, body)
    return build


def unsub(flags=0x02, filters=True):
    def build(v):
        return packet(10, flags, b"\x00\x06" + props(v) + (mqtt_bytes("s/t") if filters else b""))
    return build


def raw(data):
    return lambda v: data


# Where Debian's mosquitto 2.0.11 answers differently (checked; strict xfail when run against it).
ACCEPTS = "mosquitto 2.0.11 accepts this packet instead of closing the connection"
IGNORES = "mosquitto 2.0.11 ignores this packet and keeps the connection open"
NO_DISC = "mosquitto 2.0.11 closes the v5 connection without sending DISCONNECT with a reason code"

# (name, builder(version) -> bytes sent after a successful CONNECT, versions, acceptable v5 DISCONNECT reasons
#  [, {version: how mosquitto differs}])
AFTER_CONNECT = [
    ("publish_qos3", pub(b"t", flags=0x06), (4, 5), MAL),
    ("publish_qos0_with_dup", pub(b"t", flags=0x08), (4, 5), PROTO, {4: ACCEPTS, 5: ACCEPTS}),
    ("publish_wildcard_plus_in_topic", pub(b"a/+", flags=0x00), (4, 5), TOPIC_BAD),
    ("publish_wildcard_hash_in_topic", pub(b"a/#", flags=0x00), (4, 5), TOPIC_BAD),
    ("publish_invalid_utf8_topic", pub(b"a/\xff", flags=0x00), (4, 5), MAL),
    ("publish_nul_in_topic", pub(b"a\x00b", flags=0x00), (4, 5), MAL),
    ("publish_utf16_surrogate_in_topic", pub(b"a\xed\xa0\x80", flags=0x00), (4, 5), MAL),
    ("publish_overlong_utf8_in_topic", pub(b"a\xc0\xaf", flags=0x00), (4, 5), MAL),
    ("publish_qos1_packet_id_0", pub(b"t", flags=0x02, pid=b"\x00\x00"), (4, 5), PROTO),
    ("publish_topic_length_past_end", raw(b"\x30\x05\x00\x32abc"), (4, 5), MAL),
    ("publish_empty_topic", pub(b"", flags=0x00), (4, 5), PROTO),
    ("publish_v5_property_length_past_end", raw(packet(3, 0, mqtt_bytes("t") + b"\x32\x01\x00")), (5,), MAL),
    ("publish_v5_unknown_property", raw(packet(3, 0, mqtt_bytes("t") + b"\x02\x7f\x00x")), (5,), MAL),
    ("publish_v5_property_twice", raw(packet(3, 0, mqtt_bytes("t") + b"\x04\x01\x00\x01\x00x")), (5,), PROTO,
     {5: NO_DISC}),
    ("publish_v5_connect_only_property", raw(packet(3, 0, mqtt_bytes("t") + b"\x05\x11\x00\x00\x00\x0ax")), (5,),
     PROTO),
    ("subscribe_filter_length_past_end", lambda v: packet(8, 2, b"\x00\x05" + props(v) + b"\x00\x10ab\x01"), (4, 5),
     MAL),
    ("subscribe_flags_not_0010", sub(flags=0x00), (4, 5), MAL),
    ("subscribe_qos3", sub(options=0x03), (4, 5), MAL),
    ("subscribe_reserved_option_bits", sub(options=0xC1), (4, 5), MAL),
    ("subscribe_without_filters", sub(filters=False), (4, 5), PROTO),
    ("unsubscribe_flags_not_0010", unsub(flags=0x00), (4, 5), MAL),
    ("unsubscribe_without_filters", unsub(filters=False), (4, 5), PROTO),
    ("pubrel_flags_not_0010", raw(b"\x60\x02\x00\x01"), (4, 5), MAL, {5: NO_DISC}),
    ("pingreq_flags_set", raw(b"\xc1\x00"), (4, 5), MAL, {4: ACCEPTS, 5: ACCEPTS}),
    ("pingreq_with_body", raw(b"\xc0\x01\x00"), (4, 5), MAL, {4: ACCEPTS, 5: ACCEPTS}),
    ("reserved_packet_type_0", raw(b"\x00\x00"), (4, 5), PROTO),
    ("auth_in_3_1_1", raw(b"\xf0\x00"), (4,), PROTO),
    ("second_connect", lambda v: connect_packet("again", v), (4, 5), {RC_PROTOCOL_ERROR}, {4: IGNORES, 5: IGNORES}),
    ("connack_from_client", raw(b"\x20\x02\x00\x00"), (4, 5), PROTO, {5: NO_DISC}),
    ("suback_from_client", raw(b"\x90\x03\x00\x01\x00"), (4, 5), PROTO, {4: IGNORES, 5: IGNORES}),
    ("remaining_length_5_bytes", raw(b"\x30\xff\xff\xff\xff\x7f"), (4, 5), MAL, {5: NO_DISC}),
]

# (name, bytes sent as the first packet, versions); the answer is a close (a CONNACK, if any, must refuse)
BEFORE_CONNECT = [
    ("publish_before_connect", lambda v: pub(b"t", flags=0x00)(v), (4, 5)),
    ("pingreq_before_connect", raw(b"\xc0\x00"), (4, 5)),
    ("connect_reserved_flag", lambda v: connect_packet("rsv", v, reserved_flag=True), (4, 5)),
    ("connect_fixed_header_flags", lambda v: b"\x11" + connect_packet("fh", v)[1:], (4, 5)),
    ("connect_will_qos3", lambda v: patch_flags(connect_packet("wq3", v, will=WILL), 0x18), (4, 5)),
    ("connect_will_qos_without_will", lambda v: patch_flags(connect_packet("wq", v), 0x08, clear=0x04), (4, 5)),
    ("connect_will_retain_without_will", lambda v: patch_flags(connect_packet("wr", v), 0x20), (4, 5)),
    ("connect_password_without_username", lambda v: connect_packet("pw", v, password=b"secret"), (4,)),
    ("connect_invalid_utf8_client_id", lambda v: connect_packet(b"id\xff", v), (4, 5)),
    ("connect_client_id_past_end", lambda v: truncate_connect(v), (4, 5)),
    ("connect_v5_unknown_property", lambda v: connect_packet("up", v, props=[]).replace(
        b"\x00\x3c\x00", b"\x00\x3c\x02\x7f\x00", 1), (5,)),
    # 'G' reads as a PUBACK with flags 7 and 'E' as 69 bytes to follow: send them all so any broker must decide
    ("http_request", raw(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n" + b"X: y\r\n" * 6
                         + b"\r\n"), (4, 5)),
]
WILL = {"topic": "w", "payload": b"p", "qos": 1}


def patch_flags(pkt, set_bits, clear=0):
    """Rewrite the CONNECT flags byte (after fixed header, name, level)."""
    pos = 2 + 6 + 1
    b = bytearray(pkt)
    b[pos] = (b[pos] | set_bits) & ~clear & 0xFF
    return bytes(b)


def truncate_connect(v):
    body = mqtt_bytes("MQTT") + bytes([v, 0x02]) + b"\x00\x3c" + props(v) + b"\x00\x40" + b"short"
    return packet(1, 0, body)


class Bystanders:
    """A subscriber on core 0 and a publisher on core 1, connected before the bad client (fresh ids each time:
    the tests share one broker)."""
    serial = itertools.count()

    def __init__(self, clients, broker):
        n = next(self.serial)
        self.sub = clients.raw(broker)
        self.sub.connect(cid_on_core(f"by-sub{n}", 0, broker.cores))
        self.topic = f"by{n}"   # a late will from an earlier test's client cannot reach this subscriber
        self.will = {"topic": f"by{n}/will", "payload": b"bad-client-will", "qos": 1}
        assert self.sub.subscribe(f"by{n}/#", 1) == [1]
        self.pub = clients.raw(broker, 5)
        self.pub.connect(cid_on_core(f"by-pub{n}", 1, broker.cores))
        self.broker = broker
        self.bad_id = cid_on_core(f"bad{n}", 1, broker.cores)

    def check(self, expect_will=False):
        assert self.broker.alive(), "broker died"
        self.pub.publish(f"{self.topic}/t", b"still-served", qos=1)
        want = {b"still-served"} | ({b"bad-client-will"} if expect_will else set())
        got = {self.sub.recv_publish().payload for _ in want}
        assert got == want, f"bystander got {got}, expected {want}"
        self.sub.assert_silent(0.2)
        self.pub.ping()


def after_connect_params():
    for name, build, versions, reasons, *differs in AFTER_CONNECT:
        differs = differs[0] if differs else {}
        for v in versions:
            marks = [pytest.mark.mosquitto_differs(differs[v])] if v in differs else []
            yield pytest.param(v, build, reasons, id=f"{name}-v{v}", marks=marks)


@pytest.mark.parametrize("version,build,reasons", list(after_connect_params()))
def test_malformed_after_connect(shared_broker, clients, version, build, reasons):
    by = Bystanders(clients, shared_broker)
    bad = clients.raw(shared_broker, version)
    bad.connect(by.bad_id, will=by.will)
    bad.send(build(version))
    expect_disconnect(bad.wait_closed(3.0), version, reasons)
    by.check(expect_will=True)


def before_connect_params():
    for name, build, versions in BEFORE_CONNECT:
        for v in versions:
            yield pytest.param(v, build, id=f"{name}-v{v}")


@pytest.mark.parametrize("version,build", list(before_connect_params()))
def test_malformed_first_packet_refused(shared_broker, clients, version, build):
    by = Bystanders(clients, shared_broker)
    bad = clients.raw(shared_broker, version)
    bad.send(build(version))
    got = bad.wait_closed()
    assert all(p.type == CONNACK for p in got) and len(got) <= 1, f"unexpected answer {got!r}"
    if got:
        _, rc, _ = parse_connack(got[0], version)
        assert rc != 0, "a malformed CONNECT was accepted"
        if version == 5:
            assert rc >= 0x80, f"v5 refusal reason {rc:#x}"
    by.check()


# ---- --max-packet-size

@pytest.mark.parametrize("version", [4, 5])
def test_packet_size_limit(broker_factory, cores, clients, version):
    b = broker_factory(cores, max_packet_size=1024)
    by = Bystanders(clients, b)
    ok = clients.raw(b, version)
    ok.connect(cid_on_core("fits", 1, b.cores))
    ok.publish(f"{by.topic}/t", b"f" * 900, qos=1)             # under the limit: delivered
    assert by.sub.recv_publish().payload == b"f" * 900
    bad = clients.raw(b, version)
    bad.connect(cid_on_core("big", 1, b.cores), will=by.will)
    bad.send(packet(3, 0x02, mqtt_bytes(f"{by.topic}/t") + b"\x00\x01" + props(version) + b"B" * 2000))
    got = bad.wait_closed()
    expect_disconnect(got, version, {RC_PACKET_TOO_LARGE})
    by.check(expect_will=True)
    ok.ping()


@pytest.mark.parametrize("version", [4, 5])
def test_oversize_refused_from_header_without_waiting_for_body(broker_factory, cores, clients, version):
    b = broker_factory(cores, max_packet_size=1024)
    by = Bystanders(clients, b)
    bad = clients.raw(b, version)
    bad.connect(cid_on_core("huge", 1, b.cores))
    # claims 1 MB and sends only the start: the broker must not buffer a megabyte to find out
    bad.send(b"\x30" + varint(1_000_000) + mqtt_bytes(f"{by.topic}/t") + b"x" * 100)
    got = bad.wait_closed(timeout=5)
    expect_disconnect(got, version, {RC_PACKET_TOO_LARGE})
    by.check()


def expect_disconnect(got, version, reasons):
    """v5: exactly one DISCONNECT with one of `reasons` before the close; 3.1.1: a plain close."""
    if version == 5:
        assert len(got) == 1 and got[0].type == DISCONNECT, f"v5 expects one DISCONNECT before the close: {got!r}"
        reason, _ = parse_disconnect(got[0])
        assert reason in reasons, f"DISCONNECT reason {reason:#x}, expected one of {sorted(map(hex, reasons))}"
    else:
        assert got == [], f"3.1.1 expects a plain close, got {got!r}"


def test_connect_itself_oversize_is_refused(broker_factory, cores, clients):
    b = broker_factory(cores, max_packet_size=1024)
    by = Bystanders(clients, b)
    bad = clients.raw(b, 4)
    bad.send(connect_packet("bigwill", 4, will={"topic": f"{by.topic}/w", "payload": b"W" * 3000, "qos": 0}))
    got = bad.wait_closed()
    assert all(p.type == CONNACK and parse_connack(p, 4)[1] != 0 for p in got), got
    by.check()


def test_many_bad_clients_in_a_row_cost_nothing(broker, clients):
    by = Bystanders(clients, broker)   # a fresh broker: nothing but this series happened to it
    for i, (name, build, versions, _, *differs) in enumerate(AFTER_CONNECT):
        if IS_MOSQUITTO and differs:
            continue
        bad = clients.raw(broker, versions[-1])
        bad.connect(cid_on_core(f"serial-bad{i}", i, broker.cores))
        bad.send(build(versions[-1]))
        bad.wait_closed()
    by.check()
