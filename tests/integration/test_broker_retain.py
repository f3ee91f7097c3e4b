# Integration tests of retained messages (issue 3): set, replace, clear with an empty payload, delivery on subscribe
# (with wildcards, across cores, at the granted QoS), retain flag only on subscribe-time delivery. pytest main thread.

import pytest

from mqtt_util import MosquittoSub, cid_on_core, fence, mosquitto_pub


def client(clients, broker, name, core, version=4):
    c = clients.raw(broker, version)
    c.connect(cid_on_core(name, core, broker.cores))
    return c


def drain(c, n):
    got = [c.recv_publish() for _ in range(n)]
    c.assert_silent(0.4)
    return got


@pytest.mark.parametrize("version", [4, 5])
def test_retained_set_then_delivered_on_subscribe_with_retain_flag(broker, clients, version):
    p = client(clients, broker, "rp", 1, version)
    p.publish("rt/a", b"kept", qos=1, retain=True)
    p.publish("rt/b", b"not-kept", qos=1, retain=False)
    s = client(clients, broker, "rs", 0, version)
    s.subscribe("rt/+", 1)
    [m] = drain(s, 1)
    assert (m.topic, m.payload, m.retain, m.qos) == ("rt/a", b"kept", True, 1)


def test_live_delivery_of_retained_publish_has_retain_0(broker, clients):
    s = client(clients, broker, "rs", 0)
    s.subscribe("rl/t", 1)
    p = client(clients, broker, "rp", 1)
    p.publish("rl/t", b"live", qos=1, retain=True)
    [m] = drain(s, 1)
    assert (m.payload, m.retain) == (b"live", False), "[MQTT-3.3.1-9] retain must be 0 on live delivery"


def test_retained_replace_keeps_only_latest(broker, clients):
    p = client(clients, broker, "rp", 1)
    for v in (b"v1", b"v2", b"v3"):
        p.publish("rr/t", v, qos=1, retain=True)
    p.publish("rr/t", b"plain", qos=1, retain=False)   # a non-retained publish leaves the retained one alone
    s = client(clients, broker, "rs", 0)
    s.subscribe("rr/t", 0)
    [m] = drain(s, 1)
    assert (m.payload, m.retain) == (b"v3", True)


def test_retained_cleared_by_empty_payload_which_is_still_delivered_live(broker, clients):
    p = client(clients, broker, "rp", 1)
    p.publish("rc/t", b"soon-gone", qos=1, retain=True)
    p.publish("rc/keep", b"stays", qos=1, retain=True)
    live = client(clients, broker, "live", 0)
    live.subscribe("rc/t", 1)
    [m] = drain(live, 1)
    assert m.payload == b"soon-gone" and m.retain
    p.publish("rc/t", b"", qos=1, retain=True)
    # [MQTT-3.3.1-10] the empty retained publish is forwarded to current subscribers as a normal message
    [m] = drain(live, 1)
    assert (m.topic, m.payload, m.retain) == ("rc/t", b"", False)
    late = client(clients, broker, "late", 1)
    late.subscribe("rc/#", 1)
    got = drain(late, 1)
    assert [(m.topic, m.payload) for m in got] == [("rc/keep", b"stays")], "cleared retained message delivered"


def test_retained_qos_is_min_of_stored_and_granted(broker, clients):
    p = client(clients, broker, "rp", 1)
    p.publish("rq/two", b"2", qos=2, retain=True)
    p.publish("rq/zero", b"0", qos=0, retain=True)
    for granted, want in ((0, {b"2": 0, b"0": 0}), (1, {b"2": 1, b"0": 0}), (2, {b"2": 2, b"0": 0})):
        s = client(clients, broker, f"rs{granted}", granted)
        s.subscribe("rq/+", granted)
        got = {m.payload: m.qos for m in drain(s, 2)}
        assert got == want, f"granted {granted}: {got}"


def test_retained_wildcard_subscribe_gets_exactly_the_matching_set(broker, clients):
    topics = ["w/a", "w/b", "w/a/deep", "x/a", "w", "$w/a"]
    for i, t in enumerate(topics):   # set from clients on both cores: retained state is spread over shards
        client(clients, broker, f"rp{i}", i, 4).publish(t, t.encode(), qos=1, retain=True)
    cases = {"w/+": {"w/a", "w/b"}, "w/#": {"w", "w/a", "w/b", "w/a/deep"}, "+/a": {"w/a", "x/a"},
             "#": {"w", "w/a", "w/b", "w/a/deep", "x/a"}, "$w/#": {"$w/a"}}
    for i, (flt, want) in enumerate(cases.items()):
        s = client(clients, broker, f"rs{i}", i, 4)
        s.subscribe(flt, 1)
        got = drain(s, len(want))
        assert {m.topic for m in got} == want, f"filter {flt}"
        assert all(m.retain and m.payload == m.topic.encode() for m in got)


def test_resubscribe_resends_retained(broker, clients):
    p = client(clients, broker, "rp", 1)
    p.publish("rsub/t", b"again", qos=1, retain=True)
    s = client(clients, broker, "rs", 0)
    s.subscribe("rsub/t", 1)
    assert drain(s, 1)[0].payload == b"again"
    s.subscribe("rsub/t", 1)   # [MQTT-3.8.4-3] a replaced subscription re-sends retained messages
    [m] = drain(s, 1)
    assert (m.payload, m.retain) == (b"again", True)


@pytest.mark.parametrize("version", [4, 5])
def test_retained_with_mosquitto_cli_clients(broker, clients, version):
    mosquitto_pub(broker.host, broker.port, "cli/r", "from-cli", qos=1, version=version, retain=True,
                  client_id=cid_on_core("cp", 1, broker.cores))
    s = clients.track(MosquittoSub(broker.host, broker.port, "cli/#", qos=1, version=version, count=1,
                                   client_id=cid_on_core("cs", 0, broker.cores)))
    assert s.messages() == ["cli/r from-cli"]
    assert any("r1" in ln and "received PUBLISH" in ln for ln in s.all), f"retain flag not set: {s.all}"
    # clear with an empty payload (-n): a new subscriber gets nothing retained, but the next message
    mosquitto_pub(broker.host, broker.port, "cli/r", None, qos=1, version=version, retain=True)
    s2 = clients.track(MosquittoSub(broker.host, broker.port, "cli/#", qos=1, version=version, count=1))
    s2.wait_subscribed()
    mosquitto_pub(broker.host, broker.port, "cli/r2", "fresh", qos=1, version=version)
    assert s2.messages() == ["cli/r2 fresh"]


def test_retained_survives_publisher_disconnect_and_serves_many(broker, clients):
    p = client(clients, broker, "rp", 1)
    p.publish("rm/t", b"state", qos=1, retain=True)
    p.disconnect()
    subs = [client(clients, broker, f"rs{i}", i) for i in range(4)]
    for s in subs:
        s.subscribe("rm/t", 1)
        m = s.recv_publish()
        assert (m.payload, m.retain) == (b"state", True)
    fence(client(clients, broker, "rf", 1), subs)   # exactly one copy each


def test_retained_replace_and_clear_across_cores(broker, clients):
    # the retained store is sharded by core: a replace or clear from another core must still win
    a = client(clients, broker, "ra", 0)
    b = client(clients, broker, "rb", 1)
    a.publish("rx/t", b"from-core-a", qos=1, retain=True)
    b.publish("rx/t", b"from-core-b", qos=1, retain=True)
    for i in range(2):
        s = client(clients, broker, f"rxs{i}", i)
        s.subscribe("rx/#", 1)
        got = drain(s, 1)
        assert [m.payload for m in got] == [b"from-core-b"], f"subscriber on core {i}: {got}"
    a.publish("rx/t", b"", qos=1, retain=True)   # cleared from the first core
    for i in range(2):
        s = client(clients, broker, f"rxc{i}", i)
        s.subscribe("rx/#", 1)
        s.assert_silent(0.5)
