# Integration tests of QoS 0/1/2 in both directions (issue 3): handshakes, packet ids, acknowledgement order,
# exactly-once for QoS 2, downgrade to the granted QoS. pytest main thread; paho/mosquitto_* as real clients.
import pytest

from mqtt_util import (PUBACK, PUBCOMP, PUBREC, PUBREL, P_RECEIVE_MAXIMUM, MosquittoSub, ack_packet,
                       cid_on_core, mosquitto_pub, parse_ack, publish_packet)


def pair(clients, broker, version=4, sub_filter=None, sub_qos=2):
    """A subscriber on core 0 and a publisher on core 1 (different cores when there are two)."""
    sub = clients.raw(broker, version)
    sub.connect(cid_on_core("qsub", 0, broker.cores))
    if sub_filter:
        assert sub.subscribe(sub_filter, sub_qos) == [sub_qos]
    pub = clients.raw(broker, version)
    _, _, props = pub.connect(cid_on_core("qpub", 1, broker.cores))
    pub.receive_maximum = props.get(P_RECEIVE_MAXIMUM, 65535)
    return sub, pub


@pytest.mark.parametrize("version", [4, 5])
def test_qos_delivered_at_min_of_published_and_granted(broker, clients, version):
    sub, pub = pair(clients, broker, version)
    assert sub.subscribe([("g/0", 0), ("g/1", 1), ("g/2", 2)]) == [0, 1, 2]
    for t in range(3):
        for q in range(3):
            pub.publish(f"g/{t}", f"{t}{q}".encode(), qos=q)
    got = {}
    for _ in range(9):
        m = sub.recv_publish()
        assert m.payload not in got, f"duplicate {m!r}"
        got[m.payload] = m
    sub.assert_silent(0.3)
    for t in range(3):
        for q in range(3):
            m = got[f"{t}{q}".encode()]
            assert m.qos == min(t, q), f"published q{q} to a q{t} subscription, delivered q{m.qos}"
            assert (m.pid is None) == (m.qos == 0)
            assert not m.dup and not m.retain


@pytest.mark.parametrize("version", [4, 5])
def test_qos1_both_directions(broker, clients, version):
    sub, pub = pair(clients, broker, version, "q1/t", 1)
    pub.send(publish_packet("q1/t", b"one", qos=1, pid=4242, version=version))
    pid, reason = parse_ack(pub.expect(PUBACK), PUBACK, version)
    assert (pid, reason) == (4242, 0)
    m = sub.recv_publish(ack=False)
    assert (m.topic, m.payload, m.qos, m.dup) == ("q1/t", b"one", 1, False)
    assert m.pid and m.pid != 0
    sub.send(ack_packet(PUBACK, m.pid, version))
    # a second message gets a packet id too, and the first ack did not confuse anything
    pub.publish("q1/t", b"two", qos=1)
    m2 = sub.recv_publish()
    assert (m2.payload, m2.qos) == (b"two", 1)
    sub.assert_silent(0.3)


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_inbound_exactly_once_despite_duplicate_publish(broker, clients, version):
    sub, pub = pair(clients, broker, version, "q2/t", 2)
    pub.send(publish_packet("q2/t", b"once", qos=2, pid=7, version=version))
    assert parse_ack(pub.expect(PUBREC), PUBREC, version) == (7, 0)
    # the client did not see the PUBREC (as far as it knows) and resends with DUP
    pub.send(publish_packet("q2/t", b"once", qos=2, pid=7, dup=True, version=version))
    assert parse_ack(pub.expect(PUBREC), PUBREC, version) == (7, 0)
    pub.send(ack_packet(PUBREL, 7, version))
    assert parse_ack(pub.expect(PUBCOMP), PUBCOMP, version) == (7, 0)
    m = sub.recv_publish()
    assert (m.payload, m.qos) == (b"once", 2)
    # the packet id is free again: the same id carries a new message
    pub.send(publish_packet("q2/t", b"again", qos=2, pid=7, version=version))
    assert parse_ack(pub.expect(PUBREC), PUBREC, version)[0] == 7
    pub.send(ack_packet(PUBREL, 7, version))
    pub.expect(PUBCOMP)
    m = sub.recv_publish()
    assert m.payload == b"again", f"expected the next message, got {m!r} (a duplicate of 'once'?)"
    sub.assert_silent(0.3)


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_outbound_pubrec_pubrel_pubcomp(broker, clients, version):
    sub, pub = pair(clients, broker, version, "q2o/t", 2)
    pub.publish("q2o/t", b"out", qos=2)
    m = sub.recv_publish(ack=False)
    assert (m.payload, m.qos, m.dup) == (b"out", 2, False)
    sub.send(ack_packet(PUBREC, m.pid, version))
    rel = sub.expect(PUBREL)
    assert parse_ack(rel, PUBREL, version) == (m.pid, 0)
    sub.send(ack_packet(PUBCOMP, m.pid, version))
    sub.assert_silent(0.3)   # no retransmission of a completed flow
    pub.publish("q2o/t", b"next", qos=2)
    assert sub.recv_publish().payload == b"next"


@pytest.mark.parametrize("version", [4, pytest.param(5, marks=pytest.mark.mosquitto_differs(
    "mosquitto 2.0.11 answers a PUBREL for an unknown id with PUBCOMP 0x00, not 0x92"))])
def test_pubrel_for_unknown_packet_id_gets_pubcomp(broker, clients, version):
    c = clients.raw(broker, version)
    c.connect(cid_on_core("strayrel", 1, broker.cores))
    c.send(ack_packet(PUBREL, 999, version))
    pid, reason = parse_ack(c.expect(PUBCOMP), PUBCOMP, version)
    assert pid == 999
    if version == 5:
        assert reason == 0x92, f"v5 PUBCOMP for an unknown id must carry 0x92, got {reason:#x}"
    c.ping()


def pipeline(clients, broker, version, qos, n, window):
    """Publish n messages with `window` in flight at once; check acks and deliveries keep publish order."""
    sub, pub = pair(clients, broker, version, "order/t", qos)
    window = min(window, pub.receive_maximum)
    ack_type = PUBACK if qos == 1 else PUBREC
    acked = []
    pid = 0
    while pid < n:
        batch = range(pid + 1, min(n, pid + window) + 1)
        pub.send(b"".join(publish_packet("order/t", str(i).encode(), qos, pid=i, version=version) for i in batch))
        acked += [parse_ack(pub.expect(ack_type), ack_type, version)[0] for _ in batch]
        if qos == 2:
            pub.send(b"".join(ack_packet(PUBREL, i, version) for i in batch))
            comps = [parse_ack(pub.expect(PUBCOMP), PUBCOMP, version)[0] for _ in batch]
            assert comps == list(batch), "PUBCOMPs out of order"
        pid = batch[-1]
    assert acked == list(range(1, n + 1)), "acknowledgements not in publish order"
    got = [int(sub.recv_publish().payload) for _ in range(n)]
    assert got == list(range(1, n + 1)), "messages from one publisher reordered"
    sub.assert_silent(0.3)


@pytest.mark.parametrize("qos,window", [(1, 100), (2, 20)])
@pytest.mark.parametrize("version", [4, 5])
def test_acks_in_publish_order_and_messages_in_order(broker, clients, version, qos, window):
    pipeline(clients, broker, version, qos, 100, window)


@pytest.mark.mosquitto_differs("mosquitto 2.0.11 stalls (and with paho loses acknowledged messages) when a 3.1.1 "
                               "client has more QoS 2 publishes in flight than max_inflight_messages")
def test_qos2_deep_pipeline_v311_exactly_once(broker, clients):
    pipeline(clients, broker, 4, 2, 100, 100)   # 3.1.1 has no receive maximum: 100 in flight is legal


def test_real_clients_all_qos_levels(broker, clients):
    # paho v5 subscriber at QoS 2, mosquitto_pub publishers at QoS 0/1/2 over 3.1, 3.1.1 and 5
    p = clients.paho(broker, cid_on_core("paho-q", 0, broker.cores), version=5)
    p.connect()
    assert p.subscribe("rq/#", 2) == [2]
    for q, v in ((0, 3), (1, 4), (2, 5)):
        mosquitto_pub(broker.host, broker.port, f"rq/{q}", f"m{q}", qos=q, version=v,
                      client_id=cid_on_core(f"mp{q}", 1, broker.cores))
    got = sorted((m.topic, m.payload, m.qos) for m in (p.get() for _ in range(3)))
    assert got == [("rq/0", b"m0", 0), ("rq/1", b"m1", 1), ("rq/2", b"m2", 2)]
    p.assert_no_message(0.3)
    # mosquitto_sub at QoS 1 gets paho's QoS 2 publish downgraded, exactly once
    s = clients.track(MosquittoSub(broker.host, broker.port, "rq2/#", qos=1, version=4, count=2,
                                   client_id=cid_on_core("ms", 1, broker.cores)))
    s.wait_subscribed()
    p.publish("rq2/a", b"A", qos=2)
    p.publish("rq2/b", b"B", qos=0)
    assert s.messages() == ["rq2/a A", "rq2/b B"]
    assert any("received PUBLISH (d0, q1" in ln for ln in s.all), f"QoS 2 not delivered as QoS 1: {s.all}"


@pytest.mark.parametrize("version", [4, 5])
def test_outbound_packet_ids_unique_while_inflight(broker, clients, version):
    sub, pub = pair(clients, broker, version, "ids/t", 1)
    for i in range(10):
        pub.publish("ids/t", str(i).encode(), qos=1)
    msgs = [sub.recv_publish(ack=False) for _ in range(10)]
    pids = [m.pid for m in msgs]
    assert len(set(pids)) == 10 and 0 not in pids, f"in-flight packet ids reused or zero: {pids}"
    assert [m.payload for m in msgs] == [str(i).encode() for i in range(10)]
    for m in msgs:
        sub.send(ack_packet(PUBACK, m.pid, version))
    sub.assert_silent(0.3)


def test_publish_qos1_without_subscribers_still_acked(broker, clients):
    pub = clients.raw(broker, 5)
    pub.connect("lonely")
    pub.send(publish_packet("nobody/home", b"x", qos=1, pid=3, version=5))
    pid, reason = parse_ack(pub.expect(PUBACK), PUBACK, 5)
    assert pid == 3 and reason in (0x00, 0x10), f"PUBACK reason {reason:#x}"
