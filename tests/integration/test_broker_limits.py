# Integration tests of the broker's bounds (issue 3): --max-connections, --max-inflight, --max-queued, and that
# hitting a bound costs the other clients nothing. pytest main thread.
import pytest

from mqtt_util import (CONNACK, PUBACK, Closed, ack_packet, cid_on_core, connect_packet, parse_connack, witness,
                       wait_until, witness_saw)


def try_connect(b, cid, version=4):
    """(client, accepted): accepted False if the broker closed or refused it."""
    c = b.raw(version)
    try:
        c.send(connect_packet(cid, version))
        pkt = c.expect(CONNACK, 3.0)
    except (Closed, ConnectionError, OSError):
        c.close()
        return None, False
    _, rc, _ = parse_connack(pkt, version)
    if rc != 0:
        if version == 5:
            assert rc in (0x89, 0x97, 0x9F), f"v5 refusal reason {rc:#x} (expected server busy/quota exceeded)"
        else:
            assert rc == 0x03, f"3.1.1 refusal code {rc:#x} (expected 0x03 server unavailable)"
        c.wait_closed()
        c.close()
        return None, False
    return c, True


@pytest.mark.parametrize("version", [4, 5])
def test_max_connections(broker_factory, cores, clients, version):
    b = broker_factory(cores, max_connections=4)
    held = []
    for i in range(4):
        c, ok = try_connect(b, cid_on_core(f"mc{i}", i, b.cores), version)
        assert ok, f"connection {i + 1} of 4 refused"
        held.append(clients.track(c))
    for i in range(3):   # past the limit, whatever core accepts it
        c, ok = try_connect(b, cid_on_core(f"over{i}", i, b.cores), version)
        assert not ok, "a connection past --max-connections was accepted"
    for c in held:        # refusing others cost the admitted clients nothing
        c.ping()
    held[0].subscribe("mc/t", 1)
    held[1].publish("mc/t", b"fine", qos=1)
    assert held[0].recv_publish().payload == b"fine"
    held[2].disconnect()  # a freed slot can be used again
    def reconnected():
        c, ok = try_connect(b, cid_on_core("again", 1, b.cores), version)
        return c if ok else None
    clients.track(wait_until(reconnected, "a slot reusable after a client left", 5, 0.1)).ping()


@pytest.mark.mosquitto_differs("mosquitto 2.0.11 refills past max_inflight_messages: one PUBACK with a limit of 3 "
                               "releases 3 more (5 unacknowledged)")
def test_max_inflight_bounds_unacked_deliveries(broker_factory, cores, clients):
    b = broker_factory(cores, max_inflight=3)
    s = clients.raw(b)
    s.connect(cid_on_core("inf-sub", 0, b.cores))
    s.subscribe("inf/t", 1)
    p = clients.raw(b)
    p.connect(cid_on_core("inf-pub", 1, b.cores))
    for i in range(10):
        p.publish("inf/t", str(i).encode(), qos=1)   # the publisher is acked although the subscriber lags
    first = [s.recv_publish(ack=False) for _ in range(3)]
    s.assert_silent(0.5)                             # the window is full
    got = list(first)
    s.send(ack_packet(PUBACK, first[0].pid))
    got.append(s.recv_publish(ack=False))            # one ack opens one slot
    s.assert_silent(0.3)
    for m in got[1:]:
        s.send(ack_packet(PUBACK, m.pid))
    while len(got) < 10:
        m = s.recv_publish(ack=False)
        s.send(ack_packet(PUBACK, m.pid))
        got.append(m)
    assert [m.payload for m in got] == [str(i).encode() for i in range(10)], "order lost through the window"
    s.assert_silent(0.3)


def test_max_queued_bounds_offline_queue(broker_factory, cores, clients):
    b = broker_factory(cores, max_queued=5, max_inflight=2)
    cap = b.queue_capacity
    cid = cid_on_core("mq-sub", 0, b.cores)
    s = clients.raw(b)
    s.connect(cid, clean=False)
    s.subscribe("mq/t", 1)
    s.disconnect()
    p = clients.raw(b)
    p.connect(cid_on_core("mq-pub", 1, b.cores))
    w = clients.track(witness(b.host, b.port, cid_on_core("mq-witness", 0, b.cores), "mq/t"))
    n = cap + 10
    for i in range(n):
        pid = p.publish("mq/t", str(i).encode(), qos=1)   # each one acknowledged to the publisher
        assert pid
        # in step, so the witness itself never hits the limits: each reached the offline session's core
        assert witness_saw(w, 1) == [str(i).encode()]
    s = clients.raw(b)
    assert s.connect(cid, clean=False)[0] is True
    got = [int(s.recv_publish().payload) for _ in range(cap)]
    s.assert_silent(0.6)
    assert len(set(got)) == cap and got == sorted(got), f"queue kept {got}"
    assert all(0 <= g < n for g in got)
    # the session is healthy afterwards: live messages flow again
    p.publish("mq/t", b"live", qos=1)
    assert s.recv_publish().payload == b"live"


def test_max_queued_is_per_session(broker_factory, cores, clients):
    b = broker_factory(cores, max_queued=3, max_inflight=1)
    cap = b.queue_capacity
    cids = [cid_on_core(f"mqs{i}", i, b.cores) for i in range(2)]
    for cid in cids:
        s = clients.raw(b)
        s.connect(cid, clean=False)
        s.subscribe(f"mqs/{cid}", 1)
        s.disconnect()
    p = clients.raw(b)
    p.connect("mqs-pub")
    for cid in cids:
        for i in range(cap):
            p.publish(f"mqs/{cid}", str(i).encode(), qos=1)
    for cid in cids:   # one full queue does not eat into another's
        s = clients.raw(b)
        s.connect(cid, clean=False)
        assert [int(s.recv_publish().payload) for _ in range(cap)] == list(range(cap))
        s.assert_silent(0.3)


def test_puback_for_unknown_id_is_harmless(broker, clients):
    c = clients.raw(broker)
    c.connect("stray-ack")
    c.send(ack_packet(PUBACK, 4321))
    c.ping()
    c.subscribe("sa/t", 1)
    c.publish("sa/t", b"ok", qos=1)
    m = c.recv_publish()
    assert m.payload == b"ok"
