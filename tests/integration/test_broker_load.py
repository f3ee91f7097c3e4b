# Small fan-in / fan-out loads through the broker (issue 3) with real clients: every message exactly once, each
# publisher's order kept, with 1 and 2 cores. Correctness only; speed belongs to bench/. pytest + paho threads.
import threading
import time

import pytest

from mqtt_util import MosquittoSub, cid_on_core

# Python subscribers are slower than the broker: a queue big enough for the whole load, so that a bounded
# queue's drop policy (mosquitto's default bound is 1000) is not what the test measures.
QUEUE = 100000


def run_publishers(pubs, count, qos, topic_of):
    """Each paho publisher sends `count` messages 'name:seq' from its own thread; returns errors."""
    errors = []

    def work(name, p):
        try:
            infos = [p.c.publish(topic_of(name), f"{name}:{i}".encode(), qos) for i in range(count)]
            for info in infos:
                info.wait_for_publish(30)
                if not info.is_published():
                    errors.append(f"{name}: message {info.mid} not acknowledged")
                    return
        except Exception as e:   # reported by the main thread
            errors.append(f"{name}: {e!r}")
    threads = [threading.Thread(target=work, args=(name, p), daemon=True) for name, p in pubs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors + [f"publisher thread still running after 60 s" for t in threads if t.is_alive()]


def check_stream(payloads, names, count):
    """Exactly once and in order per publisher."""
    seen = {n: [] for n in names}
    for pl in payloads:
        name, seq = pl.decode().rsplit(":", 1)
        seen[name].append(int(seq))
    for name, seqs in seen.items():
        assert seqs == list(range(count)), (f"{name}: {len(seqs)} messages, first problems: "
                                            f"{[s for i, s in enumerate(seqs) if s != i][:5]}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("qos,npub,count", [(1, 20, 200), (2, 10, 50)])
def test_fan_in_to_one_wildcard_subscriber(broker_factory, cores, clients, qos, npub, count):
    broker = broker_factory(cores, max_queued=QUEUE)
    sub = clients.paho(broker, cid_on_core("fanin-sub", 0, broker.cores), version=5)
    sub.connect()
    assert sub.subscribe("fanin/+/data", qos) == [qos]
    pubs = {}
    for i in range(npub):
        name = cid_on_core(f"fanin-pub{i}", i, broker.cores)
        p = clients.paho(broker, name, version=4 if i % 2 else 5)
        p.connect()
        pubs[name] = p
    errors = run_publishers(pubs, count, qos, lambda name: f"fanin/{name}/data")
    assert not errors, errors
    total = npub * count
    got = []
    deadline = time.monotonic() + 60
    while len(got) < total:
        try:
            m = sub.get(timeout=max(0.1, deadline - time.monotonic()))
        except AssertionError:
            raise AssertionError(f"only {len(got)} of {total} delivered in 60 s") from None
        assert m.qos == qos
        got.append(m.payload)
    sub.assert_no_message(0.5)
    check_stream(got, pubs, count)


@pytest.mark.timeout(120)
def test_fan_out_to_subscribers_on_every_core(broker_factory, cores, clients):
    broker = broker_factory(cores, max_queued=QUEUE)
    count = 300
    subs = []
    for i in range(6):
        s = clients.paho(broker, cid_on_core(f"fanout-sub{i}", i, broker.cores), version=4 if i % 2 else 5)
        s.connect()
        assert s.subscribe("fanout/#" if i % 3 else "fanout/stream", 1) == [1]
        subs.append(s)
    cli = [clients.track(MosquittoSub(broker.host, broker.port, "fanout/+", qos=1, version=v, count=count,
                                      client_id=cid_on_core(f"fanout-cli{v}", v, broker.cores), wait_s=60))
           for v in (4, 5)]
    for c in cli:
        c.wait_subscribed()
    name = cid_on_core("fanout-pub", 1, broker.cores)
    pub = clients.paho(broker, name, version=5)
    pub.connect()
    errors = run_publishers({name: pub}, count, 1, lambda n: "fanout/stream")
    assert not errors, errors
    for s in subs:
        got = [s.get(timeout=30).payload for _ in range(count)]
        check_stream(got, [name], count)
    for s in subs:
        s.assert_no_message(0.05)
    for c in cli:
        lines = c.messages(timeout=60)
        check_stream([ln.split(" ", 1)[1].encode() for ln in lines], [name], count)


@pytest.mark.timeout(120)
def test_pairs_across_cores(broker_factory, cores, clients):
    broker = broker_factory(cores, max_queued=QUEUE)
    # 10 publisher/subscriber pairs, each pair split across cores, QoS 1, no cross-talk
    n, count = 10, 100
    pairs = []
    for i in range(n):
        s = clients.paho(broker, cid_on_core(f"pair-sub{i}", i, broker.cores), version=4)
        s.connect()
        s.subscribe(f"pair/{i}", 1)
        pname = cid_on_core(f"pair-pub{i}", i + 1, broker.cores)
        p = clients.paho(broker, pname, version=5)
        p.connect()
        pairs.append((i, s, pname, p))
    errors = run_publishers({pname: p for _, _, pname, p in pairs}, count, 1,
                            lambda name: f"pair/{[i for i, _, pn, _ in pairs if pn == name][0]}")
    assert not errors, errors
    for i, s, pname, _ in pairs:
        got = [s.get(timeout=30).payload for _ in range(count)]
        check_stream(got, [pname], count)
        s.assert_no_message(0.05)


@pytest.mark.timeout(120)
def test_connection_burst_all_served(broker, clients):
    # 200 CONNECTs written at once (handoffs to both cores under load): every one gets CONNACK 0 and a PINGRESP
    from mqtt_util import CONNACK, PINGREQ_BYTES, PINGRESP, connect_packet, parse_connack
    conns = [clients.raw(broker, 4 if i % 2 else 5, timeout=15) for i in range(200)]
    for i, c in enumerate(conns):
        c.send(connect_packet(f"burst-{i}", c.version) + PINGREQ_BYTES)
    for i, c in enumerate(conns):
        assert parse_connack(c.expect(CONNACK, 15), c.version)[1] == 0, f"burst-{i}"
        c.expect(PINGRESP, 15)
