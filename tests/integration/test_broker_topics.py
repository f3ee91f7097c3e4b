# Integration tests of topic matching (issue 3): + and #, $-topics excluded from wildcards, overlapping
# subscriptions (one copy, highest QoS), UNSUBSCRIBE, invalid filters, cross-core routing. pytest main thread.

import pytest

from mqtt_util import (DISCONNECT, RC_NO_SUBSCRIPTION_EXISTED, SUBACK, cid_on_core, fence, mqtt_bytes, packet,
                       parse_disconnect, parse_suback)

MATCH_CASES = {
    "a/+/c": {"a/b/c": 1, "a//c": 1, "a/c": 0, "a/b/d/c": 0, "a/b/c/d": 0, "b/b/c": 0},
    "a/#": {"a": 1, "a/b": 1, "a/b/c": 1, "a/": 1, "ab": 0, "b/a": 0},
    "+": {"a": 1, "/a": 0, "a/b": 0},
    "+/+": {"/a": 1, "a/b": 1, "a/": 1, "a": 0, "a/b/c": 0},
    "a/+": {"a/": 1, "a/b": 1, "a": 0, "a/b/c": 0},
    "a/b": {"a/b": 1, "a/b/": 0, "A/b": 0, "a/bb": 0, "/a/b": 0},
    "#": {"a": 1, "/": 1, "a/b/c": 1, "$a/b": 0},
    "+/b/#": {"a/b": 1, "x/b/c/d": 1, "a/c": 0, "$a/b": 0},
    "$a/#": {"$a/b": 1, "$a": 1, "a/b": 0},
    "$a/+": {"$a/b": 1, "$a/b/c": 0},
}


def client(clients, broker, name, core, version=4):
    c = clients.raw(broker, version)
    c.connect(cid_on_core(name, core, broker.cores))
    return c


def test_wildcard_matching_table(broker, clients):
    subs = {}
    for i, flt in enumerate(MATCH_CASES):
        s = client(clients, broker, f"m{i}", i, 4)
        assert s.subscribe(flt, 0) == [0]
        subs[flt] = s
    topics = sorted({t for case in MATCH_CASES.values() for t in case})
    p = client(clients, broker, "mp", 1)
    for t in topics:
        p.publish(t, t.encode(), qos=1)
    for flt, s in subs.items():
        want = {t for t, hit in MATCH_CASES[flt].items() if hit}
        want |= {t for t in topics if t not in MATCH_CASES[flt] and matches(flt, t)}
        got = {s.recv_publish().topic for _ in range(len(want))}
        assert got == want, f"filter {flt!r}: got {sorted(got)}, expected {sorted(want)}"
    fence(p, list(subs.values()))   # and no extra delivery


def matches(flt, topic):
    """Reference matcher (MQTT 4.7) for the topics a case does not list explicitly."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    f, t = flt.split("/"), topic.split("/")
    for i, lvl in enumerate(f):
        if lvl == "#":
            return True
        if i >= len(t) or (lvl != "+" and lvl != t[i]):
            return False
    return len(f) == len(t)


@pytest.mark.parametrize("version", [4, 5])
def test_dollar_topics_excluded_from_leading_wildcards(broker, clients, version):
    wild = []
    for i, flt in enumerate(("#", "+/x", "+/#")):
        w = client(clients, broker, f"w{i}", i, version)
        w.subscribe(flt, 0)
        wild.append(w)
    dollar = client(clients, broker, "d", 1, version)
    dollar.subscribe("$ringtest/#", 0)
    p = client(clients, broker, "p", 1, version)
    p.publish("$ringtest/x", b"dollar", qos=1)
    p.publish("plain/x", b"plain", qos=1)
    m = dollar.recv_publish()
    assert (m.topic, m.payload) == ("$ringtest/x", b"dollar")
    for w in wild:
        m = w.recv_publish()
        assert m.topic == "plain/x", f"a leading wildcard matched a $-topic: {m!r}"
    fence(p, wild + [dollar])


@pytest.mark.parametrize("version", [4, pytest.param(5, marks=pytest.mark.mosquitto_differs(
    "mosquitto 2.0.11 sends v5 clients one copy per matching subscription (MQTT 5 3.3.4 allows it)"))])
def test_overlapping_subscriptions_deliver_one_copy_at_highest_qos(broker, clients, version):
    s = client(clients, broker, "ov", 0, version)
    assert s.subscribe([("ov/#", 0), ("ov/+", 1), ("ov/x", 2)]) == [0, 1, 2]
    assert s.subscribe("+/x", 1) == [1]   # a fourth, in a separate SUBSCRIBE
    p = client(clients, broker, "ovp", 1)
    p.publish("ov/x", b"x", qos=2)        # matches all four: one copy at QoS 2
    p.publish("ov/y", b"y", qos=2)        # ov/# (0) and ov/+ (1): QoS 1
    p.publish("ov/y/z", b"z", qos=2)      # only ov/# (0): QoS 0
    p.publish("ov/x", b"x1", qos=1)       # all four, but published at QoS 1
    got = [s.recv_publish() for _ in range(4)]
    s.assert_silent(0.5)
    assert [(m.payload, m.qos) for m in got] == [(b"x", 2), (b"y", 1), (b"z", 0), (b"x1", 1)], got


def test_resubscribe_replaces_qos_without_duplicating(broker, clients):
    s = client(clients, broker, "rs", 0)
    assert s.subscribe("rs/t", 0) == [0]
    assert s.subscribe("rs/t", 2) == [2]
    p = client(clients, broker, "rsp", 1)
    p.publish("rs/t", b"one", qos=2)
    m = s.recv_publish()
    assert (m.payload, m.qos) == (b"one", 2)
    s.assert_silent(0.4)


@pytest.mark.parametrize("version", [4, 5])
def test_unsubscribe_stops_delivery_and_is_literal(broker, clients, version):
    s = client(clients, broker, "us", 0, version)
    s.subscribe([("un/a", 1), ("un/+/x", 1), ("un/keep", 1)])
    p = client(clients, broker, "usp", 1)
    codes = s.unsubscribe(["un/a", "un/b/x"])    # un/b/x is not the filter un/+/x: must not remove it
    if version == 5:
        assert codes[0] == 0x00
        assert codes[1] == RC_NO_SUBSCRIPTION_EXISTED, f"UNSUBACK codes {codes}"
    else:
        assert codes == [], "3.1.1 UNSUBACK has no payload"
    p.publish("un/a", b"gone", qos=1)
    p.publish("un/b/x", b"still", qos=1)
    p.publish("un/keep", b"sentinel", qos=1)
    got = [s.recv_publish().payload for _ in range(2)]
    assert got == [b"still", b"sentinel"], got
    s.assert_silent(0.4)
    assert s.unsubscribe("un/+/x") == ([0] if version == 5 else [])
    p.publish("un/b/x", b"now-gone", qos=1)
    p.publish("un/keep", b"sentinel2", qos=1)
    assert s.recv_publish().payload == b"sentinel2"
    s.assert_silent(0.4)


def test_unsubscribe_one_of_overlapping_keeps_the_other(broker, clients):
    s = client(clients, broker, "uo", 0)
    s.subscribe([("uo/#", 1), ("uo/x", 2)])
    s.unsubscribe("uo/x")
    p = client(clients, broker, "uop", 1)
    p.publish("uo/x", b"via-hash", qos=2)
    m = s.recv_publish()
    assert (m.payload, m.qos) == (b"via-hash", 1)
    s.assert_silent(0.4)


def test_unsubscribe_of_unknown_filter_still_acked_v311(shared_broker, clients):
    broker = shared_broker   # stateless: one broker serves the whole module
    s = client(clients, broker, "uu", 0)
    assert s.unsubscribe("never/subscribed") == []   # [MQTT-3.10.4-5] UNSUBACK even if nothing was removed
    s.ping()


def test_suback_means_routed_on_every_core(broker, clients):
    # a publish sent right after SUBACK, from a client on the other core, must be delivered
    pubs = [client(clients, broker, f"sp{i}", i, 4) for i in range(2)]
    for rnd in range(10):
        s = client(clients, broker, f"sr{rnd}", rnd, 4)
        s.subscribe(f"route/{rnd}/+", 1)
        pubs[(rnd + 1) % 2].publish(f"route/{rnd}/x", b"right-after-suback", qos=1)
        assert s.recv_publish().payload == b"right-after-suback", f"round {rnd}"


def test_fan_out_to_subscribers_on_every_core_one_copy_each(broker, clients):
    subs = [client(clients, broker, f"fo{i}", i, 4) for i in range(6)]
    for s in subs:
        s.subscribe("fo/t", 1)
    p = client(clients, broker, "fop", 1)
    for i in range(5):
        p.publish("fo/t", str(i).encode(), qos=1)
    for s in subs:
        assert [s.recv_publish().payload for _ in range(5)] == [str(i).encode() for i in range(5)]
    fence(p, subs)


@pytest.mark.parametrize("flt", ["a/#/b", "a/b#", "a/+b", "a+/b", ""])
@pytest.mark.parametrize("version", [4, 5])
def test_invalid_topic_filter_never_granted(shared_broker, clients, version, flt):
    broker = shared_broker   # stateless: one broker serves the whole module
    s = client(clients, broker, "bad", 0, version)
    pid = 77
    body = pid.to_bytes(2, "big") + (b"\x00" if version == 5 else b"") + mqtt_bytes(flt) + b"\x01"
    s.send(packet(8, 0x02, body))
    try:
        pkt = s.recv_packet()
    except Exception:
        pkt = None   # closed without a SUBACK: a valid answer
    if pkt is not None and pkt.type == SUBACK:
        got_pid, codes = parse_suback(pkt, version)
        assert got_pid == pid and len(codes) == 1 and codes[0] >= 0x80, f"invalid filter {flt!r} granted: {codes}"
        if version == 5:
            assert codes[0] in (0x8F, 0x80), f"v5 SUBACK reason {codes[0]:#x} for invalid filter"
    elif pkt is not None:
        assert version == 5 and pkt.type == DISCONNECT, f"unexpected {pkt!r}"
        assert parse_disconnect(pkt)[0] in (0x81, 0x82, 0x8F)
        s.wait_closed()
    # whatever the answer, the broker still serves everyone else
    other = client(clients, broker, "other", 1, version)
    other.subscribe("ok/t", 1)
    other.publish("ok/t", b"fine", qos=1)
    assert other.recv_publish().payload == b"fine"


def test_route_survives_while_any_core_still_subscribes(broker, clients):
    # two subscribers on different cores share a filter; one leaves, the other must keep receiving
    a = client(clients, broker, "ra", 0)
    b = client(clients, broker, "rb", 1)
    a.subscribe("shared/+", 1)
    b.subscribe("shared/+", 1)
    p = client(clients, broker, "rp", 1)
    p.publish("shared/x", b"both", qos=1)
    assert a.recv_publish().payload == b"both" and b.recv_publish().payload == b"both"
    a.unsubscribe("shared/+")
    p.publish("shared/x", b"only-b", qos=1)
    assert b.recv_publish().payload == b"only-b"
    a.assert_silent(0.3)
    b.disconnect()      # a clean-session disconnect removes b's subscription too
    a.subscribe("shared/+", 1)
    p.publish("shared/x", b"a-again", qos=1)
    assert a.recv_publish().payload == b"a-again"
    a.assert_silent(0.3)
