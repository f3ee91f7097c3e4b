"""Cross-node delivery through Kafka (--cluster-topic): three ringmq nodes on loopback share one ringmq-kafka-mock;
paho clients connect to the nodes directly. Exactly-once per subscriber across nodes (QoS 0/1, wildcards, v5
properties), nothing produced when no other node wants a topic, route summaries withdrawn on unsubscribe, retained
messages shared (set and clear, a node started later included), and a node killed mid-stream losing nothing that
was acknowledged for the subscribers of the surviving nodes. Each test runs on librdkafka's mock and on real
Apache Kafka (kafka_real.py: the routes and retained topics compacted, cleanup.policy=compact, and a tombstone
proven gone after compaction). Run by ctest under /usr/bin/python3; every process started here is stopped by pid."""
import os
import signal
import threading
import time
import urllib.request

import pytest

from test_kafka_e2e import RINGMQ, Ringmq, procs  # noqa: F401 (procs is a fixture)
from test_kafka_consume import Sub, subs, wait_assigned  # noqa: F401 (subs is a fixture)
from core_rawmqtt import free_port
from mqtt_util import wait_until
from kafka_real import KINDS, mock_only, side

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

class ClusterKafka:
    """The cluster topics of one test: TOPIC (4 partitions), TOPIC.routes and TOPIC.retained (2, compacted, as the
    README says to create them). On real Kafka the names and the node ids are unique to the test (a node's group
    is ringmq-cluster-ID), so no test meets another's records or group members."""

    def __init__(self, kafka, **compact):
        self.side, self.kind = kafka, kafka.kind
        self.cl = kafka.create(kafka.unique("cl"), 4)
        for t in (self.cl + ".routes", self.cl + ".retained"):
            kafka.create(t, 2, cleanup_policy="compact", **compact)
        # the nodes' default route (no --route given): real Kafka does not create it on first use
        kafka.create("mqtt.messages", 4)
        self.bootstrap = kafka.bootstrap
        self.group_args = kafka.group_args
        self.tag = kafka.unique("")[1:] if kafka.is_real else ""

    def node_id(self, name):
        return f"{name}-{self.tag}" if self.tag else name


def wait_err(r, needle, timeout=30):
    """Waits for a stderr line holding needle; fails at once if the process exits first."""
    def seen():
        if any(needle in ln for ln in list(r.err)):
            return True
        assert r.p.poll() is None, f"exited before a stderr line with {needle!r}: " + "".join(r.err)[-3000:]
        return False
    wait_until(seen, lambda: f"a stderr line with {needle!r}: " + "".join(r.err)[-3000:], timeout, 0.05)


def node(procs, k, name, *extra, cores=2):
    """A cluster node, ready: it read the route summaries to their end and its cluster consumers have partitions."""
    mport = free_port()
    r = Ringmq("--kafka-brokers", k.bootstrap, "--cluster-topic", k.cl, "--node-id", k.node_id(name),
               "--consume-delay-ms", "0", "--metrics", f"127.0.0.1:{mport}", *k.group_args, *extra, cores=cores)
    procs.append(r)
    r.mport, r.name = mport, name
    wait_err(r, f"node {k.node_id(name)} read {k.cl}.routes")
    wait_assigned(r, cores)          # one cluster consumer per core, settled (no rebalance during the test)
    return r


def metrics(r):
    with urllib.request.urlopen(f"http://127.0.0.1:{r.mport}/metrics", timeout=5) as f:
        text = f.read().decode()
    out = {}
    for ln in text.splitlines():
        if ln.startswith("ringmq_cluster_"):
            k, v = ln.rsplit(" ", 1)
            out[k] = int(v)
    return out


def wait_metric(r, key, want, timeout=15):
    wait_until(lambda: metrics(r).get(key) == want, lambda: f"{r.name}: {key} = {metrics(r).get(key)}, want {want}",
               timeout, 0.1)


def wait_count(items, n, timeout=30):
    """Waits until the list another thread appends to holds n items."""
    wait_until(lambda: len(items) >= n, lambda: f"{len(items)} of {n} items", timeout, 0.01)


PRODUCED = 'ringmq_cluster_produced_total{kind="message"}'
FILTERS = "ringmq_cluster_route_filters"
OWN = 'ringmq_cluster_skipped_total{reason="own"}'


class Pub:
    def __init__(self, port, cid, version=5):
        self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def publish(self, topic, payload, qos=1, retain=False, props=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(10)
        assert info.is_published(), "not acknowledged"

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def watched_pair(procs, subs, kafka, prefix, filters):
    """Nodes PREFIX1 and PREFIX2, a subscriber on PREFIX2 and PREFIX1 aware of its filters."""
    n1, n2 = node(procs, kafka, prefix + "1"), node(procs, kafka, prefix + "2")
    watch = Sub(n2.port, prefix + "-watch", filters)
    subs.append(watch)
    wait_metric(n1, FILTERS, len(filters))
    return n1, n2, watch


@pytest.fixture(params=KINDS)
def kafka(request, procs):
    for s in side(request, procs):
        yield ClusterKafka(s)


def payloads(msgs):
    return [m[2] for m in msgs]


def test_publisher_reaches_every_node_exactly_once(procs, subs, kafka):
    n1, n2, n3 = (node(procs, kafka, f"n{i}") for i in (1, 2, 3))
    s1 = Sub(n1.port, "s1", [("cars/+/telemetry", 1)])
    s2 = Sub(n2.port, "s2", [("cars/#", 1), ("cars/+/telemetry", 1)])   # overlapping: still one copy
    s3 = Sub(n3.port, "s3", [("cars/VIN1/telemetry", 0)])
    subs += [s1, s2, s3]
    wait_metric(n1, FILTERS, 3)      # n2's two filters, n3's one: the window closed before publishing
    pub = Pub(n1.port, "car-VIN1")
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("trip", "42")]
    props.ContentType = "application/x-test"
    sent = {}
    for i in range(40):
        qos = i % 2
        p = f"m{i}".encode()
        sent[p] = qos
        pub.publish("cars/VIN1/telemetry", p, qos=qos, props=props if i == 0 else None)
    pub.close()
    want = sorted(sent)
    for s in (s1, s2, s3):
        got = s.take(len(want), timeout=20) + s.quiet(1.0)
        assert sorted(payloads(got)) == want, f"{s.c._client_id}: lost or duplicated"
        for topic, qos, p, _ in got:
            assert topic == "cars/VIN1/telemetry"
            assert qos == (0 if s is s3 else sent[p]), "delivered QoS is min(published, granted)"
    # the v5 properties of the first message crossed the node boundary
    s2b = Sub(n2.port, "s2b", [("cars/VIN1/telemetry", 1)])
    subs.append(s2b)
    pub = Pub(n1.port, "car-VIN1b")
    pub.publish("cars/VIN1/telemetry", b"props", qos=1, props=props)
    pub.close()
    got = [m for m in s2b.take(1, timeout=10) if m[2] == b"props"]
    assert got and ("trip", "42") in got[0][3], got
    m1, m2, m3 = metrics(n1), metrics(n2), metrics(n3)
    assert m1[PRODUCED] == 41, "one cluster record per publish, whatever the number of nodes"
    assert m2[PRODUCED] == 0 and m3[PRODUCED] == 0, "a delivered record is never produced again"
    wait_metric(n1, OWN, 41)         # n1 reads its own records back and skips them
    assert metrics(n2)["ringmq_cluster_forwarded_total"] == 41 and m3[OWN] == 0
    # and the other way round: a publish on n3 reaches n1 and n2
    pub = Pub(n3.port, "car-VIN1c")
    pub.publish("cars/VIN1/telemetry", b"from-n3", qos=1)
    pub.close()
    for s in (s1, s2, s3):   # the "props" message too, once
        assert sorted(payloads(s.take(2, timeout=10) + s.quiet(0.7))) == [b"from-n3", b"props"]
    assert metrics(n1)[FILTERS] == 4   # n2: cars/#, cars/+/telemetry, cars/VIN1/telemetry (s2b); n3: one
    assert n3.stop() == 0            # SIGTERM: its sessions end, so it withdraws its filter
    wait_metric(n1, FILTERS, 3)
    for r in (n1, n2):
        r.stop_ok()


def test_nothing_produced_unless_another_node_wants_it(procs, subs, kafka):
    n1, n2 = node(procs, kafka, "a1"), node(procs, kafka, "a2")
    s1 = Sub(n1.port, "local", [("alerts/#", 1)])
    subs.append(s1)
    pub = Pub(n1.port, "p1")
    pub.publish("alerts/x", b"only-local", qos=1)
    pub.publish("other/x", b"nobody", qos=1)
    assert payloads(s1.take(1, timeout=10)) == [b"only-local"]
    assert metrics(n1)[PRODUCED] == 0 and metrics(n1)[FILTERS] == 0
    s2 = Sub(n2.port, "remote", [("alerts/+", 1)])
    wait_metric(n1, FILTERS, 1)
    pub.publish("alerts/y", b"both", qos=1)
    pub.publish("other/y", b"still-nobody", qos=1)
    assert payloads(s2.take(1, timeout=10) + s2.quiet(0.7)) == [b"both"]
    assert metrics(n1)[PRODUCED] == 1
    s2.c.unsubscribe("alerts/+")     # the last subscriber of the filter on a2: a tombstone, a1 forgets it
    wait_metric(n1, FILTERS, 0)
    pub.publish("alerts/z", b"local-again", qos=1)
    assert metrics(n1)[PRODUCED] == 1, "produced for a filter that was withdrawn"
    assert payloads(s2.quiet(1.0)) == []
    assert sorted(payloads(s1.take(2, timeout=10))) == [b"both", b"local-again"]
    s2.close()
    pub.close()
    for r in (n1, n2):
        r.stop_ok()


def test_retained_set_and_clear_seen_from_every_node(procs, subs, kafka):
    n1, n2 = node(procs, kafka, "r1"), node(procs, kafka, "r2")
    pub = Pub(n1.port, "state-pub")
    pub.publish("cars/VIN7/state", b"parked", qos=1, retain=True)
    pub.publish("cars/VIN8/state", b"driving", qos=1, retain=True)
    n3 = node(procs, kafka, "r3")    # started after the sets: reads them from the beginning of the topic
    for r in (n2, n3):
        wait_metric(r, "ringmq_cluster_retained_in_total", 2)
        s = Sub(r.port, f"late-{r.name}", [("cars/+/state", 1)])
        got = s.take(2, timeout=10) + s.quiet(0.5)
        s.close()
        assert sorted(payloads(got)) == [b"driving", b"parked"], r.name
    pub.publish("cars/VIN7/state", b"", qos=1, retain=True)   # clear, from n1
    for r in (n1, n2, n3):
        wait_metric(r, "ringmq_cluster_retained_in_total", 3)
        s = Sub(r.port, f"after-clear-{r.name}", [("cars/+/state", 1)])
        got = s.take(1, timeout=10) + s.quiet(0.7)
        s.close()
        assert payloads(got) == [b"driving"], f"{r.name}: cleared retained message still there"
    pub.close()
    for r in (n1, n2, n3):
        r.stop_ok()


@mock_only("the SIGKILLed node's records are Kafka-agnostic; real Kafka's own failures are the 3-broker tests")
def test_node_killed_mid_stream_acknowledged_messages_not_lost(procs, subs, kafka):
    n1, n2, n3 = (node(procs, kafka, f"k{i}") for i in (1, 2, 3))
    watch = Sub(n2.port, "watcher", [("fleet/#", 1)])
    car = Sub(n3.port, "car-on-k3", [("fleet/+/cmd", 1)], version=4, clean=False)
    subs.append(watch)
    wait_metric(n1, FILTERS, 2)
    pub = Pub(n1.port, "backend")
    acked, stop = [], threading.Event()

    def run():
        i = 0
        while not stop.is_set() and i < 400:
            p = f"c{i}".encode()
            pub.publish("fleet/VIN9/cmd", p, qos=1)
            acked.append(p)
            i += 1
            time.sleep(0.01)
    t = threading.Thread(target=run)
    t.start()
    wait_count(acked, 50)            # mid-stream
    n3.stop(signal.SIGKILL)          # the car's node dies mid-stream
    car.c.loop_stop()
    killed_at = len(acked)
    # HAProxy would send the car to a surviving node: it reconnects to k2 with its persistent session id
    car2 = Sub(n2.port, "car-on-k3", [], version=4, clean=False)
    subs.append(car2)
    car2.c.subscribe([("fleet/+/cmd", 1)])
    assert car2.subscribed.wait(5), "no SUBACK after the move"
    resubscribed_at = len(acked)
    wait_count(acked, resubscribed_at + 50)   # publishes acknowledged after the move
    stop.set()
    t.join(30)
    pub.close()
    assert killed_at > 0 and len(acked) > resubscribed_at
    got = payloads(watch.take(len(acked), timeout=20) + watch.quiet(1.0))
    assert sorted(got) == sorted(acked), "an acknowledged publish was lost for the surviving node's subscriber"
    got2 = set(payloads(car2.take(10 ** 6, timeout=3)))
    assert set(acked[resubscribed_at:]) <= got2, "the moved car missed publishes after its SUBACK"
    # the dead node comes back under its name: its stale filter is withdrawn, no old message is replayed
    n3b = node(procs, kafka, "k3")
    wait_err(n3b, "1 stale filter of its own removed")
    wait_metric(n1, FILTERS, 2)      # k2's two filters; k3's from before the kill is gone
    assert metrics(n3b)["ringmq_cluster_forwarded_total"] == 0
    for r in (n1, n2, n3b):
        r.stop_ok()


@mock_only("node-to-node QoS 2 hand-over: the same records as the real-Kafka tests")
def test_qos2_to_a_shared_subscription_member_on_another_node(procs, subs, kafka):
    """$share/G/F announces F; the node with members hands each message to one of them, at QoS 2 end to end."""
    n1, n2 = node(procs, kafka, "q1"), node(procs, kafka, "q2")
    members = [Sub(n2.port, f"worker{i}", [("$share/g/jobs/#", 2)]) for i in range(2)]
    subs += members
    wait_metric(n1, FILTERS, 1)      # one filter, jobs/#, however many members
    pub = Pub(n1.port, "dispatcher")
    for i in range(10):
        pub.publish(f"jobs/{i}", f"j{i}".encode(), qos=2)
    pub.close()
    got = []
    for m in members:
        got += m.take(10, timeout=3) + m.quiet(0.5)
    assert sorted(payloads(got)) == sorted(f"j{i}".encode() for i in range(10)), "each job once, to one member"
    assert {q for _, q, _, _ in got} == {2}
    for r in (n1, n2):
        r.stop_ok()


@mock_only("the spool with every real broker stopped: test_kafka_spool.py")
def test_spooled_publish_reaches_the_other_node_when_kafka_returns(procs, subs, kafka, tmp_path):
    """--spool: with Kafka down the PUBACK comes from the disk spool; the cluster record is spooled with the Kafka
    routes and replayed when Kafka returns, so the subscriber on the other node still gets every message once."""
    data = tmp_path / "sp1"
    data.mkdir()
    n1 = node(procs, kafka, "sp1", "--data-dir", str(data), "--spool", cores=1)
    n2 = node(procs, kafka, "sp2", cores=1)
    watch = Sub(n2.port, "sp-watch", [("spool/#", 1)])
    subs.append(watch)
    wait_metric(n1, FILTERS, 1)
    kafka.side.down()
    pub = Pub(n1.port, "sp-pub")
    want = [f"s{i}".encode() for i in range(8)]
    for p in want:
        pub.publish("spool/x", p, qos=1)   # acknowledged with Kafka down: from the spool
    pub.close()

    def spool(name):
        text = urllib.request.urlopen(f"http://127.0.0.1:{n1.mport}/metrics", timeout=5).read().decode()
        return sum(int(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name + "{"))
    wait_for = time.time() + 5
    while spool("ringmq_kafka_spool_spooled_total") == 0 and time.time() < wait_for:
        time.sleep(0.1)
    assert spool("ringmq_kafka_spool_spooled_total") > 0, "the spool was not used: the test proves nothing"
    kafka.side.up()
    got = watch.take(len(want), timeout=60) + watch.quiet(1.0)
    assert sorted(payloads(got)) == want
    for r in (n1, n2):
        r.stop_ok()


@mock_only("the same cluster record as the real-Kafka tests")
def test_will_reaches_a_subscriber_on_another_node(procs, subs, kafka):
    """A will is published by the broker itself (no PUBACK to wait for): it still crosses to the other node."""
    n1, n2, watch = watched_pair(procs, subs, kafka, "w", [("cars/+/status", 1)])
    car = mqtt.Client(client_id="car-W1", protocol=mqtt.MQTTv311)
    car.will_set("cars/W1/status", b"offline", qos=1)
    car.connect("127.0.0.1", n1.port)
    car.loop(1.0)
    car.socket().close()             # no DISCONNECT: the broker publishes the will
    got = watch.take(1, timeout=10) + watch.quiet(0.7)
    assert [(t, p) for t, _, p, _ in got] == [("cars/W1/status", b"offline")]
    assert metrics(n1)[PRODUCED] == 1
    for r in (n1, n2):
        r.stop_ok()


def test_foreign_and_malformed_records_are_skipped_and_counted(procs, subs, kafka):
    """Records ringmq did not write (a stray producer, a bad key) are counted and skipped; delivery goes on."""
    from test_kafka_consume import produce
    n1, n2, watch = watched_pair(procs, subs, kafka, "g", [("#", 1)])
    produce(kafka.bootstrap, kafka.cl, [(b"k", b"not an MQTT packet", None), (b"k", None, None),
                                    (b"k", b"\x30\x05\x00\x01a", [("ringmq.origin", b"elsewhere")])])
    produce(kafka.bootstrap, kafka.cl + ".routes", [(b"no-separator", b"1", None), (b"\x00a/b", b"1", None),
                                           (b"n9\x00a/#/b", b"1", None)])
    produce(kafka.bootstrap, kafka.cl + ".retained", [(b"a/+", None, None), (b"t", b"garbage", None)])
    end, m = time.time() + 15, {}
    while time.time() < end:
        m = metrics(n2)
        if m['ringmq_cluster_skipped_total{reason="invalid"}'] >= 3 + 3 + 2:
            break
        time.sleep(0.2)
    assert m['ringmq_cluster_skipped_total{reason="invalid"}'] == 8, m
    assert m[FILTERS] == 0 and metrics(n1)[FILTERS] == 1, "a bad route key added a filter"
    assert m["ringmq_cluster_forwarded_total"] == 0 and m["ringmq_cluster_retained_in_total"] == 0
    assert watch.quiet(0.5) == []
    pub = Pub(n1.port, "after-garbage")
    pub.publish("still/works", b"yes", qos=1)
    pub.close()
    assert payloads(watch.take(1, timeout=10)) == [b"yes"]
    for r in (n1, n2):
        r.stop_ok()


@mock_only("HAProxy routing: the same records as the real-Kafka tests")
def test_through_haproxy_exactly_once_wherever_the_cars_land(procs, subs, kafka, tmp_path):
    """The shipped tools/haproxy.cfg in front (client-id hashing, PROXY v2): cars and a back end connect to one
    address only; whichever nodes they land on, each car gets every command once."""
    from test_haproxy import HAPROXY, HAProxy
    if not os.path.exists(HAPROXY):
        pytest.skip("haproxy is not installed")
    nodes = [node(procs, kafka, f"h{i}", "--proxy-protocol") for i in (1, 2, 3)]
    h = HAProxy(tmp_path, "haproxy", nodes, "send-proxy-v2")
    try:
        cars = [Sub(h.port, f"car-{i}", [("fleet/all/cmd", 1)]) for i in range(8)]
        subs += cars
        with_cars = [n for n in nodes if metrics(n)["ringmq_cluster_local_filters"] == 1]
        assert len(with_cars) >= 2, "the cars all landed on one node: nothing crosses"
        for n in nodes:   # every node knows every other node that has cars
            wait_metric(n, FILTERS, len(with_cars) - (1 if n in with_cars else 0))
        pub = Pub(h.port, "backend-1")
        want = [f"cmd{i}".encode() for i in range(20)]
        for p in want:
            pub.publish("fleet/all/cmd", p, qos=1)
        pub.close()
        for car in cars:
            got = car.take(len(want), timeout=20) + car.quiet(0.5)
            assert sorted(payloads(got)) == sorted(want), f"{car.c._client_id}: lost or duplicated"
    finally:
        h.stop()
    for r in nodes:
        r.stop_ok()


@mock_only("a start-up line")
def test_node_id_defaults_to_host_and_port(procs, kafka):
    import socket
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--cluster-topic", kafka.cl, "--consume-delay-ms", "0",
               *kafka.group_args)
    procs.append(r)
    wait_err(r, f"kafka: cluster: node {socket.gethostname()}:{r.port}, messages {kafka.cl} (group ringmq-cluster-"
                f"{socket.gethostname()}:{r.port})")
    r.stop_ok()


@pytest.mark.parametrize("args, why", [
    (["--cluster-topic", "cl"], "needs --kafka-brokers"),
    (["--cluster-topic", "bad topic"], "cluster-topic"),
    (["--cluster-topic", "cl", "--node-id", "has space"], "node-id"),
    (["--cluster-topic", "cl", "--cluster-routes-topic", "a/b"], "cluster-routes-topic"),
])
def test_bad_cluster_options_refuse_to_start(args, why):
    import subprocess
    p = subprocess.run([RINGMQ, "--listen", f"127.0.0.1:{free_port()}", *args], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and why in p.stderr, p.stderr


def test_v5_no_matching_subscribers_counts_other_nodes(procs, subs, kafka):
    """PUBACK 0x10 (v5) only when no node wants the publish: a subscriber on another node is a match."""
    from mqtt_util import PUBACK, RawClient, parse_ack, publish_packet
    kafka.side.create("fleet", 1)    # the route's topic (real Kafka does not create it on first use)
    n1, n2 = (node(procs, kafka, f"z{i}", "--route", "fleet/# -> fleet") for i in (1, 2))
    s2 = Sub(n2.port, "z-remote", [("alerts/+", 1)])
    subs.append(s2)
    wait_metric(n1, FILTERS, 1)
    pub = RawClient("127.0.0.1", n1.port, 5)
    try:
        pub.connect("z-pub")
        reasons = []
        for pid, topic in ((1, "alerts/y"), (2, "other/y")):
            pub.send(publish_packet(topic, b"x", 1, pid=pid, version=5))
            reasons.append(parse_ack(pub.expect(PUBACK), PUBACK, 5))
        assert reasons == [(1, 0), (2, 0x10)]
        assert payloads(s2.take(1, timeout=10)) == [b"x"]
    finally:
        pub.close()
    for r in (n1, n2):
        r.stop_ok()


def route_keys(bootstrap, topic):
    """Every record of topic from the beginning to its end, as (key, value is a tombstone)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "route-reader", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])   # 0: from the earliest kept (after compaction)
        out, done, end = [], {p for p, e in ends.items() if e == 0}, time.time() + 20
        while len(done) < len(parts) and time.time() < end:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append((m.key(), m.value() is None))
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
        assert len(done) == len(parts), "the routes topic was not read to its end"
        return out
    finally:
        c.close()


@pytest.fixture
def compacting(request, procs):
    """Real Kafka only: cluster topics whose log cleaner runs within seconds (small segments, any dirty ratio,
    tombstones kept 100 ms)."""
    if "kafka" not in KINDS:
        pytest.skip("real Kafka variants off (RINGMQ_TEST_KAFKA)")
    for s in side(request, procs, "kafka"):
        yield ClusterKafka(s, segment_ms=100, min_cleanable_dirty_ratio="0.01", delete_retention_ms=100)


def test_withdrawn_route_tombstone_is_compacted_away_on_real_kafka(procs, subs, compacting):
    """The routes topic is compacted on real Kafka: a withdrawn filter's record and its tombstone are really
    deleted by the log cleaner, and a node started afterwards learns exactly the filters still announced."""
    kafka = compacting
    routes = kafka.cl + ".routes"
    n1, n2 = node(procs, kafka, "c1"), node(procs, kafka, "c2")
    gone = Sub(n2.port, "gone-sub", [("gone/#", 1)])
    subs.append(gone)
    wait_metric(n1, FILTERS, 1)
    gone.c.unsubscribe("gone/#")    # the last subscriber: a tombstone for n2's gone/#
    wait_metric(n1, FILTERS, 0)
    key = kafka.node_id("c2").encode() + b"\0gone/#"
    assert [t for k, t in route_keys(kafka.bootstrap, routes) if k == key] == [False, True], "record + tombstone"
    # The cleaner compacts only closed segments: each new announcement (a filter of its own) rolls the 100 ms
    # segment, until a read from the beginning finds neither the record nor its tombstone.
    fillers, end, left = [], time.time() + 120, None
    while time.time() < end and len(fillers) < 40:
        f = Sub(n2.port, f"filler{len(fillers)}", [(f"filler/{len(fillers)}", 1)])
        subs.append(f)
        fillers.append(f)
        wait_metric(n1, FILTERS, len(fillers))
        left = [t for k, t in route_keys(kafka.bootstrap, routes) if k == key]
        if not left:
            print(f"record and tombstone compacted away after {len(fillers)} more announcements")
            break
    assert left == [], f"the tombstone is still in the compacted topic after {len(fillers)} segments: {left}"
    n3 = node(procs, kafka, "c3")   # reads the compacted topic from its beginning
    wait_metric(n3, FILTERS, len(fillers))
    for r in (n1, n2, n3):
        r.stop_ok()
