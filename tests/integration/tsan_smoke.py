"""Multi-core smoke run for `make tsan` (not part of `make test`: the name does not match test_*.py): two ringmq
nodes built with ThreadSanitizer (RINGMQ_BUILD_DIR=build-tsan), --cores 2 and 4, exercised with real clients:
QoS 0/1/2 across cores, shared subscriptions, retained messages set on one core and read on another, Kafka
producer routes and a consumer route (ringmq-kafka-mock), --data-dir with a restart, and cluster records
(--cluster-topic) to a second node. Passes when every message arrives and each broker exits 0 with no
ThreadSanitizer report (TSAN_OPTIONS exitcode makes a report a non-zero exit)."""
import signal
import time

import pytest

from mqtt_util import RawClient, cid_on_core
from kafka_real import Side
from test_cluster import ClusterKafka, node, wait_metric, FILTERS
from test_kafka_consume import CMD, produce
from test_kafka_e2e import consume, procs  # noqa: F401 (procs is a fixture)

ROUTE = "fleet/# -> t"
N = 20


def client(r, cid, version=5, clean=True, props=None):
    c = RawClient("127.0.0.1", r.port, version, timeout=30)
    c.connect(cid, clean=clean, props=props)
    return c


def take(c, n, timeout=30):
    return [c.recv_publish(timeout=timeout) for _ in range(n)]


def take_shared(members, n, timeout=60):
    """Messages of one shared group, whichever member each went to."""
    got, end = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        for m in members:
            try:
                got.append(m.recv_publish(timeout=0.2).payload)
            except TimeoutError:
                pass
    return got


def stop_clean(r):
    rc = r.stop(signal.SIGTERM, timeout=60)
    err = "".join(r.err)
    assert "ThreadSanitizer" not in err, err[-8000:]
    assert rc == 0, f"exit {rc}: {err[-4000:]}"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cores", [2, 4], ids=["cores2", "cores4"])
def test_multicore_smoke(procs, tmp_path, cores):  # noqa: F811 (procs is the fixture)
    mock = Side("mock", procs)                       # one ringmq-kafka-mock shared by both nodes
    mock.create("t", 4)
    mock.create("commands", 2)
    k = ClusterKafka(mock)
    data = str(tmp_path / "data")
    n1 = node(procs, k, "n1", "--route", ROUTE, "--consume", CMD, "--data-dir", data, cores=cores)
    n2 = node(procs, k, "n2", cores=2)
    far = client(n2, "far")                          # another node: reached through cluster records
    assert far.subscribe([("fleet/#", 1)]) == [1]
    wait_metric(n1, FILTERS, 1)
    subs = [client(n1, cid_on_core("sub", i, cores), props=[(0x11, 3600)]) for i in range(cores)]
    for s in subs:
        assert s.subscribe([("fleet/#", 2), ("cars/+/cmd", 1)]) == [2, 1]
    members = [client(n1, cid_on_core("mem", i, cores)) for i in range(2)]
    for m in members:
        assert m.subscribe([("$share/g/fleet/#", 1)]) == [1]
    pubs = [client(n1, cid_on_core("pub", i, cores)) for i in range(cores)]
    for i in range(N):
        pubs[i % cores].publish(f"fleet/{i % cores}/x", f"m{i}", qos=i % 3)
    for s in subs:
        assert sorted(p.payload for p in take(s, N)) == sorted(f"m{i}".encode() for i in range(N))
    shared = take_shared(members, N)
    assert sorted(shared) == sorted(f"m{i}".encode() for i in range(N)), "each message to one member"
    assert sorted(p.payload for p in take(far, N)) == sorted(f"m{i}".encode() for i in range(N))
    assert len(consume(k.bootstrap, "t", N)) == N

    # Retained, set on the first core, read by a new subscriber on the last one.
    pubs[0].publish("state/ret", "kept", qos=1, retain=True)
    late = client(n1, cid_on_core("late", cores - 1, cores))
    late.subscribe([("state/ret", 1)])
    assert late.recv_publish(timeout=30).payload == b"kept"

    # Kafka -> MQTT: a command record reaches every core's subscriber.
    produce(k.bootstrap, "commands", [(b"VIN9", b"unlock", None)])
    for s in subs:
        p = s.recv_publish(timeout=30)
        assert (p.topic, p.payload) == ("cars/VIN9/cmd", b"unlock")
    for c in subs + members + pubs + [late, far]:
        c.disconnect()
    stop_clean(n1)

    # --data-dir: the persistent sessions come back on every core, then a clean exit again.
    n1b = node(procs, k, "n1", "--route", ROUTE, "--consume", CMD, "--data-dir", data, cores=cores)
    for i in range(cores):
        c = RawClient("127.0.0.1", n1b.port, 5, timeout=30)
        assert c.connect(cid_on_core("sub", i, cores), clean=False, props=[(0x11, 3600)])[0]
        c.disconnect()
    stop_clean(n1b)
    stop_clean(n2)
