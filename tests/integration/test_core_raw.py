"""Raw-socket tests of the broker core: malformed input gets the spec's answer and costs nothing else,
limits (packet size, receive maximum, connections, keep-alive), CONNECT edge cases, QoS 2 duplicates,
handoff with pipelined bytes, takeover, wills, persistent sessions. Each runs with --cores 1 and 2."""
import socket
import struct
import time

import pytest

from conftest import close_and_wait
from core_rawmqtt import (DISCONNECT, PINGREQ, Broker, Client, ack, connack, connect, id_on_core,
                          open_session, packet, parse_publish, props, publish, subscribe)

CORES = [1, 2]


@pytest.fixture(params=CORES, ids=lambda n: f"cores{n}")
def broker(request):
    b = Broker(cores=request.param)
    yield b
    rc = b.stop()
    assert rc == 0, b.stderr
    assert "Sanitizer" not in b.stderr, b.stderr


def limited(request, *args):
    return Broker(*args, cores=request.param)


def ids(broker, prefix):
    """One client id per core (both cores are exercised with --cores 2)."""
    return [id_on_core(prefix, k, broker.cores) for k in range(broker.cores)]


def sub_and_pub(broker, prefix, topic, qos):
    """A subscriber on the first core and a publisher on the last (different cores with --cores 2)."""
    sub = open_session(broker.port, ids(broker, prefix + "s")[0])
    sub.send(subscribe(1, [(topic, qos)]))
    sub.expect(9)
    return sub, open_session(broker.port, ids(broker, prefix + "p")[-1])


def expect_disconnect(cl, reason):
    f, body = cl.expect(14)
    assert body[0] == reason, f"DISCONNECT reason {body[0]:#x}, want {reason:#x}"
    assert cl.closed()


# ---- CONNECT ---------------------------------------------------------------------------------

def test_connack_v311_and_v5(broker):
    for cid in ids(broker, "c"):
        for v in (3, 4, 5):
            cl = Client(broker.port)
            cl.send(connect(cid if v != 3 else cid[:23], version=v))
            present, rc, rest = connack(cl)
            assert (present, rc) == (0, 0)
            if v == 5:
                assert b"\x21" in rest  # receive maximum announced
                assert b"\x27" in rest  # maximum packet size announced
            cl.send(DISCONNECT)
            assert cl.closed()
            cl.close()


def test_first_packet_must_be_connect(broker):
    cl = Client(broker.port)
    cl.send(PINGREQ)
    assert cl.closed()


def test_unsupported_protocol_level_gets_return_code_1(broker):
    cl = Client(broker.port)
    body = b"\x00\x04MQTT" + bytes([7, 2]) + b"\x00\x3c" + b"\x00\x01x"
    cl.send(packet(0x10, body))
    f, b = cl.expect(2)
    assert b == b"\x00\x01"
    assert cl.closed()


def test_empty_client_id(broker):
    cl = Client(broker.port)
    cl.send(connect("", version=4, clean=False))
    present, rc, _ = connack(cl)
    assert rc == 0x02, "3.1.1 empty id without clean session is rejected"
    assert cl.closed()

    cl = Client(broker.port)
    cl.send(connect("", version=4, clean=True))
    assert connack(cl)[1] == 0
    cl.close()

    cl = Client(broker.port)
    cl.send(connect("", version=5))
    present, rc, rest = connack(cl)
    assert rc == 0
    i = rest.find(b"\x12")
    assert i >= 0, "v5 assigned client identifier property"
    n = struct.unpack("!H", rest[i + 1:i + 3])[0]
    assert n > 0
    cl.close()


def test_server_keep_alive_lowers_v5_request(request):
    b = Broker("--max-keepalive", "10", cores=1)
    try:
        cl = Client(b.port)
        cl.send(connect("ka", version=5, keepalive=100))
        _, rc, rest = connack(cl)
        assert rc == 0
        assert b"\x13\x00\x0a" in rest
        cl.close()
    finally:
        assert b.stop() == 0


@pytest.mark.parametrize("version", [4, 5])
def test_keepalive_timeout_closes(broker, version):
    cl = open_session(broker.port, ids(broker, "ka")[-1], version=version, keepalive=1)
    t0 = time.time()
    if version == 5:
        f, body = cl.expect(14, timeout=5)
        assert body[0] == 0x8D
    assert cl.closed(timeout=5)
    dt = time.time() - t0
    assert 1.3 <= dt <= 4.0, dt


def test_pingreq_keeps_connection_alive(broker):
    cl = open_session(broker.port, "pinger", keepalive=1)
    for _ in range(4):
        time.sleep(0.5)   # the subject: 2 s of pings at half the 1 s keep-alive keep the connection up
        cl.send(PINGREQ)
        cl.expect(13)
    cl.close()


def test_second_connect_is_protocol_error(broker):
    cl = open_session(broker.port, "twice", version=5)
    cl.send(connect("twice", version=5))
    expect_disconnect(cl, 0x82)


# ---- malformed input and limits ---------------------------------------------------------------

def test_v5_malformed_publish_gets_disconnect_0x81(broker):
    cl = open_session(broker.port, "bad5", version=5)
    cl.send(packet(0x36, b"\x00\x01a\x00\x01\x00"))  # QoS 3
    expect_disconnect(cl, 0x81)


def test_v311_malformed_publish_closes(broker):
    cl = open_session(broker.port, "bad4", version=4)
    cl.send(packet(0x36, b"\x00\x01a\x00\x01"))
    assert cl.closed()


def test_varint_longer_than_4_bytes(broker):
    cl = open_session(broker.port, "varint", version=5)
    cl.send(b"\x30\xff\xff\xff\xff\x01")
    expect_disconnect(cl, 0x81)


def test_wildcard_in_publish_topic_v5(broker):
    cl = open_session(broker.port, "wild", version=5)
    cl.send(publish("a/+/b", "x", version=5))
    expect_disconnect(cl, 0x90)


def test_topic_alias_above_maximum_refused(broker):
    # The broker announces Topic Alias Maximum 64 (test_mqtt5_alias.py has the full set).
    cl = open_session(broker.port, "alias", version=5)
    cl.send(publish("a/b", "x", version=5, v5props=b"\x23\x00\x41"))
    expect_disconnect(cl, 0x94)


@pytest.fixture(params=CORES, ids=lambda n: f"cores{n}")
def small_broker(request):
    b = Broker("--max-packet-size", "1024", "--max-inflight", "2", "--max-connections", "3",
               cores=request.param)
    yield b
    assert b.stop() == 0, b.stderr


def test_packet_too_large_v5_0x95(small_broker):
    cl = open_session(small_broker.port, "big", version=5)
    cl.send(publish("t", b"x" * 2000, version=5))
    expect_disconnect(cl, 0x95)


def test_receive_maximum_exceeded_0x93(small_broker):
    cl = open_session(small_broker.port, "flood", version=5)
    for pid in (1, 2, 3):
        cl.send(publish("t", "x", qos=2, pid=pid, version=5))
    # The first two may be PUBREC'd first (or still wait for Kafka); the third is one too many.
    recs = 0
    while True:
        t, f, body = cl.read()
        if t != 5:
            break
        recs += 1
    assert recs <= 2
    assert (t, body[0]) == (14, 0x93)
    assert cl.closed()


def test_connections_past_the_limit_are_refused(small_broker):
    keep = [open_session(small_broker.port, f"keep{i}") for i in range(3)]
    extra = Client(small_broker.port)
    extra.send(connect("extra"))
    assert extra.closed()
    for cl in keep:  # the admitted ones still work
        cl.send(PINGREQ)
        cl.expect(13)
        close_and_wait(cl.sock, small_broker.port)
    again = open_session(small_broker.port, "again")  # slots come back
    again.close()


def test_bad_client_does_not_hurt_others(broker):
    sub, pub = sub_and_pub(broker, "bad", "keep/going", 0)
    for junk in (b"\x00\x00", b"\xf0\x00", b"\x30\xff\xff\xff\xff\x01", packet(0x36, b"\x00\x01a")):
        bad = open_session(broker.port, "junk")
        bad.send(junk)
        assert bad.closed()
        pub.send(publish("keep/going", "alive"))
        f, body = sub.expect(3)
        assert parse_publish(f, body)["payload"] == b"alive"


# ---- QoS ---------------------------------------------------------------------------------------

def test_qos2_resent_publish_is_not_delivered_twice(broker):
    sub, pub = sub_and_pub(broker, "q2", "q2/t", 2)
    pub.send(publish("q2/t", "once", qos=2, pid=7))
    _, body = pub.expect(5)
    assert body[:2] == b"\x00\x07"
    pub.send(publish("q2/t", "once", qos=2, pid=7, dup=True))
    _, body = pub.expect(5)
    pub.send(ack("pubrel", 7))
    _, body = pub.expect(7)
    assert body[:2] == b"\x00\x07"
    f, body = sub.expect(3)
    m = parse_publish(f, body)
    assert m["payload"] == b"once" and m["qos"] == 2
    sub.send(ack("pubrec", m["pid"]))
    sub.expect(6)  # PUBREL
    sub.send(ack("pubcomp", m["pid"]))
    with pytest.raises((TimeoutError, OSError)):
        sub.read(timeout=0.5)


def test_pubrel_for_unknown_id_v5_0x92(broker):
    cl = open_session(broker.port, "relx", version=5)
    cl.send(ack("pubrel", 99, version=5, reason=0))
    _, body = cl.expect(7)
    assert body == b"\x00\x63\x92" or body[:3] == b"\x00\x63\x92"


def test_acks_in_order_qos1_and_qos2_mixed(broker):
    cl = open_session(broker.port, "order")
    pkts = b"".join(publish("o/t", str(i), qos=1 + (i % 2), pid=i + 1) for i in range(20))
    cl.send(pkts)
    for i in range(20):
        t, f, body = cl.read()
        assert t == (4 if i % 2 == 0 else 5)
        assert struct.unpack("!H", body[:2])[0] == i + 1


# ---- handoff, takeover -----------------------------------------------------------------------

def test_pipelined_bytes_survive_the_handoff(broker):
    # CONNECT, SUBSCRIBE and PUBLISH in one write: whichever core accepts, the owner sees them all.
    for cid in ids(broker, "pipe"):
        cl = Client(broker.port)
        cl.send(connect(cid) + subscribe(1, [(f"p/{cid}", 1)]) + publish(f"p/{cid}", "self", qos=1, pid=2))
        assert connack(cl)[1] == 0
        got = {}
        for _ in range(3):
            t, f, body = cl.read()
            got[t] = (f, body)
        assert 9 in got and 4 in got and 3 in got
        assert parse_publish(*got[3])["payload"] == b"self"
        cl.close()


def test_takeover_v5_gets_0x8e(broker):
    for cid in ids(broker, "take"):
        old = open_session(broker.port, cid, version=5)
        new = open_session(broker.port, cid, version=5)
        expect_disconnect(old, 0x8E)
        new.send(PINGREQ)
        new.expect(13)
        new.close()


# ---- will, sessions ------------------------------------------------------------------------------

def test_will_on_abnormal_close_not_on_disconnect(broker):
    w_ids = ids(broker, "will")
    sub = open_session(broker.port, ids(broker, "wsub")[0])
    sub.send(subscribe(1, [("will/#", 0)]))
    sub.expect(9)
    for cid in w_ids:
        cl = open_session(broker.port, cid, will=(f"will/{cid}", b"gone", 0, False))
        cl.send(DISCONNECT)
        cl.close()
        with pytest.raises((TimeoutError, OSError)):
            sub.read(timeout=0.5)
        cl = open_session(broker.port, cid, will=(f"will/{cid}", b"gone", 0, False))
        cl.close()  # no DISCONNECT
        f, body = sub.expect(3)
        assert parse_publish(f, body)["payload"] == b"gone"


def test_v5_disconnect_0x04_sends_the_will(broker):
    sub = open_session(broker.port, "w4sub")
    sub.send(subscribe(1, [("w4", 0)]))
    sub.expect(9)
    cl = open_session(broker.port, "w4", version=5, will=("w4", b"asked", 0, False))
    cl.send(packet(0xE0, b"\x04"))
    f, body = sub.expect(3)
    assert parse_publish(f, body)["payload"] == b"asked"


def test_persistent_session_queue_and_dup_redelivery(broker):
    sub_id, pub_id = ids(broker, "ps")[0], ids(broker, "pp")[-1]
    sub = open_session(broker.port, sub_id, clean=False)
    sub.send(subscribe(1, [("ps/t", 1)]))
    sub.expect(9)
    pub = open_session(broker.port, pub_id)
    pub.send(publish("ps/t", "m0", qos=1, pid=1))
    pub.expect(4)
    f, body = sub.expect(3)
    assert parse_publish(f, body)["payload"] == b"m0"
    close_and_wait(sub.sock, broker.port)  # never acknowledged; the session is offline once the broker closed
    for i in (1, 2):
        pub.send(publish("ps/t", f"m{i}", qos=1, pid=1 + i))
        pub.expect(4)
    sub = Client(broker.port)
    sub.send(connect(sub_id, clean=False))
    present, rc, _ = connack(sub)
    assert (present, rc) == (1, 0)
    got = []
    for _ in range(3):
        f, body = sub.expect(3)
        m = parse_publish(f, body)
        got.append((m["payload"], m["dup"]))
        sub.send(ack("puback", m["pid"]))
    assert got == [(b"m0", True), (b"m1", False), (b"m2", False)]
    sub.close()
    # clean start discards it
    sub = Client(broker.port)
    sub.send(connect(sub_id, clean=True))
    assert connack(sub)[:2] == (0, 0)
    sub.close()


def test_offline_queue_is_bounded(request):
    b = Broker("--max-queued", "2", cores=1)
    try:
        sub = open_session(b.port, "bounded", clean=False)
        sub.send(subscribe(1, [("bq", 1)]))
        sub.expect(9)
        sub.send(DISCONNECT)
        sub.close()
        pub = open_session(b.port, "bqpub")
        for i in range(5):
            pub.send(publish("bq", str(i), qos=1, pid=i + 1))
            pub.expect(4)
        sub = Client(b.port)
        sub.send(connect("bounded", clean=False))
        assert connack(sub)[0] == 1
        got = []
        for _ in range(2):
            f, body = sub.expect(3)
            m = parse_publish(f, body)
            got.append(m["payload"])
            sub.send(ack("puback", m["pid"]))
        assert got == [b"0", b"1"]
        with pytest.raises((TimeoutError, OSError)):
            sub.read(timeout=0.5)
    finally:
        assert b.stop() == 0


# ---- topics --------------------------------------------------------------------------------------

def test_retained_set_replace_clear(broker):
    pub = open_session(broker.port, ids(broker, "rp")[-1])
    pub.send(publish("r/a", "one", retain=True))
    pub.send(publish("r/a", "two", retain=True))
    pub.send(publish("r/b", "bee", qos=1, pid=3, retain=True))
    pub.expect(4)
    for cid in ids(broker, "rs"):
        sub = open_session(broker.port, cid)
        sub.send(subscribe(1, [("r/#", 1)]))
        sub.expect(9)
        got = {}
        for _ in range(2):
            f, body = sub.expect(3)
            m = parse_publish(f, body)
            assert m["retain"]
            got[m["topic"]] = m["payload"]
        assert got == {"r/a": b"two", "r/b": b"bee"}
        # live delivery: retain flag clear
        pub.send(publish("r/a", "live"))
        f, body = sub.expect(3)
        assert not parse_publish(f, body)["retain"]
        sub.close()
    pub.send(publish("r/a", "", retain=True))  # clear
    pub.send(publish("r/b", "", qos=1, pid=4, retain=True))
    pub.expect(4)
    sub = open_session(broker.port, "rs-after")
    sub.send(subscribe(1, [("r/#", 0)]))
    sub.expect(9)
    with pytest.raises((TimeoutError, OSError)):
        sub.read(timeout=0.5)


def test_dollar_topics_not_matched_by_leading_wildcard(broker):
    sub = open_session(broker.port, "dollar")
    sub.send(subscribe(1, [("#", 0), ("+/x", 0), ("$SYS/x", 0)]))
    _, body = sub.expect(9)
    assert body[2:] == b"\x00\x00\x00"
    pub = open_session(broker.port, "dpub")
    pub.send(publish("$SYS/x", "direct"))
    f, body = sub.expect(3)
    assert parse_publish(f, body)["payload"] == b"direct"
    with pytest.raises((TimeoutError, OSError)):
        sub.read(timeout=0.5)  # only once: # and +/x did not match


def test_overlapping_subscriptions_one_copy_highest_qos(broker):
    sub_id = ids(broker, "ov")[0]
    sub = open_session(broker.port, sub_id)
    sub.send(subscribe(1, [("ov/#", 0), ("ov/+", 1), ("ov/t", 0)]))
    _, body = sub.expect(9)
    assert body[2:] == b"\x00\x01\x00"
    pub = open_session(broker.port, ids(broker, "ovp")[-1])
    pub.send(publish("ov/t", "x", qos=2, pid=1))
    pub.expect(5)
    f, body = sub.expect(3)
    assert parse_publish(f, body)["qos"] == 1
    with pytest.raises((TimeoutError, OSError)):
        sub.read(timeout=0.5)


def test_unsubscribe_v5_reason_codes(broker):
    sub = open_session(broker.port, "unsub", version=5)
    sub.send(subscribe(1, [("u/t", 0)], version=5))
    sub.expect(9)
    body = struct.pack("!H", 2) + props() + b"\x00\x03u/t" + b"\x00\x04none"
    sub.send(packet(0xA2, body))
    _, body = sub.expect(11)
    assert body[-2:] == b"\x00\x11"
    pub = open_session(broker.port, "unsubpub")
    pub.send(publish("u/t", "x"))
    with pytest.raises((TimeoutError, OSError)):
        sub.read(timeout=0.5)


def test_shared_subscription_granted_v5(broker):
    # Shared subscriptions are served (test_mqtt5_shared.py has the semantics and the negative cases).
    sub = open_session(broker.port, "share", version=5)
    sub.send(subscribe(1, [("$share/g/t", 1)], version=5))
    _, body = sub.expect(9)
    assert body[-1] == 0x01


def test_slow_consumer_is_disconnected_others_keep_going(broker):
    # A subscriber that never reads: once its staged output passes the bound (8 MiB) it is dropped,
    # and a healthy subscriber of the same topic still gets everything.
    slow, pub = sub_and_pub(broker, "slow", "slow/t", 0)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    fast = open_session(broker.port, "slow-fast")
    fast.send(subscribe(1, [("slow/t", 0)]))
    fast.expect(9)
    payload = b"x" * 65000
    n = 400  # 26 MB: more than the bound plus what the kernel buffers
    for i in range(n):
        pub.send(publish("slow/t", payload))
        f, body = fast.expect(3)
        assert len(parse_publish(f, body)["payload"]) == len(payload)
    pub.send(PINGREQ)
    pub.expect(13)
    assert slow.closed(timeout=10)


@pytest.mark.parametrize("doorbell", ["eventfd", "msg_ring"])
def test_cross_core_doorbells(doorbell, monkeypatch):
    # Both wake-up paths between cores: MSG_RING (default) and the eventfd fallback.
    monkeypatch.setenv("RINGMQ_DOORBELL", doorbell)
    b = Broker(cores=2)
    try:
        for round_ in range(3):
            sub, pub = sub_and_pub(b, f"db{round_}", f"db/{round_}", 1)
            for i in range(50):
                pub.send(publish(f"db/{round_}", str(i), qos=1, pid=i + 1))
            got = []
            for _ in range(50):
                f, body = sub.expect(3)
                m = parse_publish(f, body)
                got.append(int(m["payload"]))
                sub.send(ack("puback", m["pid"]))
            assert got == list(range(50))
            time.sleep(0.2)  # let both cores go idle: the next message needs a real wake-up
            pub.send(publish(f"db/{round_}", "late"))
            f, body = sub.expect(3)
            assert parse_publish(f, body)["payload"] == b"late"
            sub.close()
            pub.close()
    finally:
        assert b.stop() == 0, b.stderr


def test_random_garbage_never_hurts_the_broker(broker):
    # Seeded random bytes after a valid CONNECT (and without one), some cut mid-packet, some clients
    # vanishing without a word: the broker must keep serving and exit cleanly (ASan checks the rest).
    import random
    rnd = random.Random(1234)
    sub, pub = sub_and_pub(broker, "rg", "rg/t", 1)
    for i in range(120):
        cl = Client(broker.port)
        try:
            head = connect(f"rg{i}", version=rnd.choice([3, 4, 5])) if i % 3 else b""
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
            if i % 4 == 0:  # a plausible header with a random body
                junk = bytes([rnd.choice([0x30, 0x32, 0x34, 0x62, 0x82, 0xA2, 0xC0, 0xE0])]) + junk
            cl.send(head + junk)
            if i % 5 == 0:
                cl.closed(timeout=0.2)
        except OSError:
            pass
        finally:
            cl.close()
        if i % 20 == 0:
            pub.send(publish("rg/t", str(i), qos=1, pid=i + 1))
            pub.expect(4)
            f, body = sub.expect(3)
            m = parse_publish(f, body)
            assert m["payload"] == str(i).encode()
            sub.send(ack("puback", m["pid"]))
    assert broker.alive()


def test_server_keep_alive_replaces_zero_when_bounded():
    b = Broker("--max-keepalive", "2", cores=1)
    try:
        cl = Client(b.port)
        cl.send(connect("ka0", version=5, keepalive=0))
        _, rc, rest = connack(cl)
        assert rc == 0 and b"\x13\x00\x02" in rest
        f, body = cl.expect(14, timeout=6)  # and it is enforced: 1.5 x 2 s
        assert body[0] == 0x8D
        cl.close()
        cl = Client(b.port)
        cl.send(connect("ka0v4", version=4, keepalive=0))
        assert connack(cl)[1] == 0
        assert not cl.closed(timeout=3.5), "3.1.1 keep-alive 0 means no timeout"
        cl.close()
    finally:
        assert b.stop() == 0


def test_v5_disconnect_cannot_make_a_zero_expiry_session_persistent(broker):
    cl = open_session(broker.port, "exp0", version=5)  # no Session Expiry Interval: 0
    cl.send(packet(0xE0, b"\x00" + props(b"\x11\x00\x00\x00\x3c")))
    expect_disconnect(cl, 0x82)
    # with an expiry given at CONNECT, DISCONNECT may change it: 0 ends the session now
    cl = open_session(broker.port, "exp1", version=5, v5props=b"\x11\x00\x00\x00\x3c")
    cl.send(packet(0xE0, b"\x00" + props(b"\x11\x00\x00\x00\x00")))
    assert cl.closed()
    cl = Client(broker.port)
    cl.send(connect("exp1", version=5, clean=False, v5props=b"\x11\x00\x00\x00\x3c"))
    assert connack(cl)[0] == 0, "session ended at DISCONNECT with expiry 0"
    cl.close()


def test_v5_session_expiry_interval(broker):
    exp1 = b"\x11\x00\x00\x00\x01"  # 1 s

    def reconnect_and_leave(cid):
        cl = Client(broker.port)
        cl.send(connect(cid, version=5, clean=False, v5props=exp1))
        present = connack(cl)[0]
        cl.send(DISCONNECT)
        cl.close()
        return present

    for cid in ids(broker, "sexp"):   # the 1 s expiry window is the subject: sleeps on either side of it
        assert reconnect_and_leave(cid) == 0
        time.sleep(0.3)
        assert reconnect_and_leave(cid) == 1, "resumed within the interval"
        time.sleep(1.6)
        assert reconnect_and_leave(cid) == 0, "expired after the interval"
