# Integration tests of persistent and clean sessions (issue 3): subscriptions kept, QoS 1/2 queued offline (QoS 0
# not), redelivery with DUP and original packet ids on resume, in both directions. pytest main thread.
import pytest

from mqtt_util import (PUBCOMP, PUBLISH, PUBREC, PUBREL, P_SESSION_EXPIRY, Publish, ack_packet, cid_on_core,
                       parse_ack, publish_packet, witness, witness_saw)

KEEP = [(P_SESSION_EXPIRY, 3600)]


def persistent(clients, broker, version, cid, expect_sp=None):
    """Connect with a session that survives the connection (clean 0; v5: session expiry 1 h)."""
    c = clients.raw(broker, version)
    sp, _, _ = c.connect(cid, clean=False, props=KEEP if version == 5 else None)
    if expect_sp is not None:
        assert sp == expect_sp, f"session present {sp}, expected {expect_sp}"
    return c


def publisher(clients, broker, version=4):
    p = clients.raw(broker, version)
    p.connect(cid_on_core("spub", 1, broker.cores))
    return p


@pytest.mark.parametrize("version", [4, 5])
def test_persistent_session_keeps_subscription_and_queues_qos1_qos2_not_qos0(broker, clients, version):
    cid = cid_on_core("psub", 0, broker.cores)
    s = persistent(clients, broker, version, cid, expect_sp=False)
    assert s.subscribe("ps/#", 2) == [2]
    s.disconnect()
    w = clients.track(witness(broker.host, broker.port, cid_on_core("ps-witness", 0, broker.cores), "ps/#"))
    p = publisher(clients, broker)
    p.publish("ps/a", b"zero", qos=0)
    p.publish("ps/a", b"one", qos=1)
    p.publish("ps/b", b"two", qos=2)
    p.publish("ps/a", b"zero-again", qos=0)
    assert witness_saw(w, 4) == [b"zero", b"one", b"two", b"zero-again"]   # the session's core saw them all
    s = persistent(clients, broker, version, cid, expect_sp=True)
    got = [s.recv_publish() for _ in range(2)]
    assert [(m.payload, m.qos) for m in got] == [(b"one", 1), (b"two", 2)], got
    s.assert_silent(0.5)   # QoS 0 is not queued for an offline session
    # the subscription is live again without re-subscribing
    p.publish("ps/c", b"live", qos=0)
    assert s.recv_publish().payload == b"live"


@pytest.mark.parametrize("version", [4, 5])
def test_clean_session_discards_subscriptions_and_queue(broker, clients, version):
    cid = cid_on_core("csub", 0, broker.cores)
    s = persistent(clients, broker, version, cid)
    s.subscribe("cs/#", 1)
    s.disconnect()
    p = publisher(clients, broker)
    p.publish("cs/a", b"queued", qos=1)
    c = clients.raw(broker, version)
    sp, _, _ = c.connect(cid, clean=True)
    assert not sp
    c.assert_silent(0.5)   # the queued message died with the session
    p.publish("cs/a", b"after-clean", qos=1)
    c.assert_silent(0.3)   # and so did the subscription
    c.disconnect()
    s = persistent(clients, broker, version, cid, expect_sp=False)
    s.assert_silent(0.3)


def test_clean_session_subscription_ends_with_connection(broker, clients):
    cid = cid_on_core("cs2", 0, broker.cores)
    s = clients.raw(broker)
    s.connect(cid, clean=True)
    s.subscribe("cs2/t", 1)
    s.disconnect()
    p = publisher(clients, broker)
    p.publish("cs2/t", b"nobody", qos=1)
    s = clients.raw(broker)
    assert s.connect(cid, clean=True)[0] is False
    s.assert_silent(0.5)


def test_v5_session_expiry_zero_is_not_persistent(broker, clients):
    cid = cid_on_core("exp0", 0, broker.cores)
    s = clients.raw(broker, 5)
    s.connect(cid, clean=False)   # no Session Expiry Interval: the session ends with the connection
    s.subscribe("e0/t", 1)
    s.disconnect()
    publisher(clients, broker).publish("e0/t", b"x", qos=1)
    s = clients.raw(broker, 5)
    assert s.connect(cid, clean=False)[0] is False
    s.assert_silent(0.5)


@pytest.mark.parametrize("version", [4, 5])
def test_unacked_qos1_redelivered_with_dup_and_same_ids(broker, clients, version):
    cid = cid_on_core("redel1", 0, broker.cores)
    s = persistent(clients, broker, version, cid)
    s.subscribe("rd1/t", 1)
    p = publisher(clients, broker)
    p.publish("rd1/t", b"m1", qos=1)
    p.publish("rd1/t", b"m2", qos=1)
    first = [s.recv_publish(ack=False) for _ in range(2)]
    assert [m.dup for m in first] == [False, False]
    s.abort()
    s = persistent(clients, broker, version, cid, expect_sp=True)
    again = [s.recv_publish(ack=False) for _ in range(2)]
    assert [(m.payload, m.pid, m.qos) for m in again] == [(m.payload, m.pid, 1) for m in first], \
        f"redelivered {again}, first sent {first}"
    assert all(m.dup for m in again), f"redelivery without DUP: {again}"
    for m in again:
        s.ack(m)
    s.disconnect()
    s = persistent(clients, broker, version, cid, expect_sp=True)
    s.assert_silent(0.5)   # acknowledged messages are not sent again


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_resume_resends_publish_and_pubrel_by_state(broker, clients, version):
    cid = cid_on_core("redel2", 0, broker.cores)
    s = persistent(clients, broker, version, cid)
    s.subscribe("rd2/t", 2)
    p = publisher(clients, broker)
    p.publish("rd2/t", b"A", qos=2)
    p.publish("rd2/t", b"B", qos=2)
    a = s.recv_publish(ack=False)
    b = s.recv_publish(ack=False)
    assert (a.payload, b.payload) == (b"A", b"B")
    s.send(ack_packet(PUBREC, b.pid, version))       # B reaches the PUBREL stage; A stays unacknowledged
    assert parse_ack(s.expect(PUBREL), PUBREL, version)[0] == b.pid
    s.abort()
    s = persistent(clients, broker, version, cid, expect_sp=True)
    got = [s.recv_packet() for _ in range(2)]
    pubs = [Publish(g, version) for g in got if g.type == PUBLISH]
    rels = [parse_ack(g, PUBREL, version)[0] for g in got if g.type == PUBREL]
    assert len(pubs) == 1 and len(rels) == 1, f"expected one PUBLISH (A) and one PUBREL (B), got {got!r}"
    assert (pubs[0].payload, pubs[0].pid, pubs[0].dup, pubs[0].qos) == (b"A", a.pid, True, 2)
    assert rels == [b.pid], "B must be resumed with PUBREL, not re-published"
    s.send(ack_packet(PUBCOMP, b.pid, version))
    s.ack(pubs[0])
    s.assert_silent(0.5)   # B not delivered twice, A complete


@pytest.mark.parametrize("version", [4, 5])
def test_inbound_qos2_state_survives_publisher_reconnect(broker, clients, version):
    sub = clients.raw(broker, version)
    sub.connect(cid_on_core("in2sub", 0, broker.cores))
    sub.subscribe("in2/t", 2)
    pcid = cid_on_core("in2pub", 1, broker.cores)
    p = persistent(clients, broker, version, pcid)
    p.send(publish_packet("in2/t", b"exactly-once", qos=2, pid=11, version=version))
    assert parse_ack(p.expect(PUBREC), PUBREC, version)[0] == 11
    p.abort()   # the PUBREC was "lost": the publisher resends PUBLISH with DUP after reconnecting
    p = persistent(clients, broker, version, pcid, expect_sp=True)
    p.send(publish_packet("in2/t", b"exactly-once", qos=2, pid=11, dup=True, version=version))
    assert parse_ack(p.expect(PUBREC), PUBREC, version)[0] == 11
    p.send(ack_packet(PUBREL, 11, version))
    assert parse_ack(p.expect(PUBCOMP), PUBCOMP, version)[0] == 11
    assert sub.recv_publish().payload == b"exactly-once"
    sub.assert_silent(0.5)


@pytest.mark.parametrize("version", [4, 5])
def test_takeover_keeps_persistent_session(broker, clients, version):
    cid = cid_on_core("tkp", 1, broker.cores)
    old = persistent(clients, broker, version, cid)
    old.subscribe("tkp/t", 1)
    p = clients.raw(broker)
    p.connect(cid_on_core("tkp-pub", 0, broker.cores))
    for _ in range(3 if broker.cores > 1 else 1):
        new = persistent(clients, broker, version, cid, expect_sp=True)
        old.wait_closed()
        p.publish("tkp/t", b"to-new", qos=1)
        m = new.recv_publish()
        assert m.payload == b"to-new"
        old = new


def test_many_persistent_sessions_across_cores(broker, clients):
    cids = [cid_on_core(f"many{i}", i, broker.cores) for i in range(6)]
    for cid in cids:
        s = persistent(clients, broker, 4, cid)
        s.subscribe(f"many/{cid}", 1)
        s.subscribe("many/all", 1)
        s.disconnect()
    p = publisher(clients, broker)
    p.publish("many/all", b"everyone", qos=1)
    for cid in cids:
        p.publish(f"many/{cid}", cid.encode(), qos=1)
    for cid in cids:
        s = persistent(clients, broker, 4, cid, expect_sp=True)
        got = [s.recv_publish().payload for _ in range(2)]
        assert got == [b"everyone", cid.encode()], f"{cid}: {got}"
        s.assert_silent(0.1)


@pytest.mark.parametrize("version", [4, 5])
def test_takeover_while_connected_redelivers_inflight_with_dup(broker, clients, version):
    cid = cid_on_core("tki", 1, broker.cores)
    old = persistent(clients, broker, version, cid)
    old.subscribe("tki/t", 1)
    p = publisher(clients, broker)
    p.publish("tki/t", b"unacked", qos=1)
    first = old.recv_publish(ack=False)
    new = persistent(clients, broker, version, cid, expect_sp=True)   # the old connection is still open
    old.wait_closed()
    m = new.recv_publish()
    assert (m.payload, m.pid, m.dup) == (b"unacked", first.pid, True), f"after takeover: {m!r}"
    new.assert_silent(0.3)


def test_unsubscribe_in_persistent_session_is_kept(broker, clients):
    cid = cid_on_core("unsp", 0, broker.cores)
    s = persistent(clients, broker, 4, cid)
    s.subscribe([("unsp/gone", 1), ("unsp/kept", 1)])
    s.unsubscribe("unsp/gone")
    s.disconnect()
    w = clients.track(witness(broker.host, broker.port, cid_on_core("unsp-w", 0, broker.cores), "unsp/+"))
    p = publisher(clients, broker)
    p.publish("unsp/gone", b"no", qos=1)
    p.publish("unsp/kept", b"yes", qos=1)
    assert witness_saw(w, 2) == [b"no", b"yes"]
    s = persistent(clients, broker, 4, cid, expect_sp=True)
    assert s.recv_publish().payload == b"yes"
    s.assert_silent(0.5)
