"""Cross-node delivery (--cluster-topic) with --data-dir: a node that comes back with its data dir resumes its cluster
group at the committed offsets, so what other nodes published for its persistent sessions while it was down (all of
it PUBACKed to the publisher) reaches them once they reconnect: after SIGKILL and after SIGTERM, directly and
through the shipped tools/haproxy.cfg. Clean sessions' filters are withdrawn, persistent sessions' are kept; a new
node with an empty data dir still gets no history. On librdkafka's mock and on real Apache Kafka (kafka_real.py;
the HAProxy test on the mock only). Run by ctest under /usr/bin/python3; every process started here is stopped by
pid."""
import os
import signal
import time

import pytest

from test_kafka_e2e import RINGMQ, Proc, procs  # noqa: F401 (procs is a fixture)
from test_kafka_consume import Sub, subs, wait_assigned, wait_committed  # noqa: F401 (subs is a fixture)
from test_cluster import FILTERS, PRODUCED, Pub, kafka, metrics, payloads, wait_err, wait_metric  # noqa: F401
from core_rawmqtt import free_port
from kafka_real import mock_only
from mqtt_util import wait_until

FORWARDED = "ringmq_cluster_forwarded_total"
STALE = 'ringmq_cluster_skipped_total{reason="stale"}'
LOCALS = "ringmq_cluster_local_filters"


class NodeAt(Proc):
    """A cluster node on a given port (a restarted node keeps its address, as behind HAProxy), ready: it read the
    route summaries to their end and its cluster consumers are settled."""

    def __init__(self, procs, kafka, name, data, port=None, cores=2, extra=()):
        self.port, self.mport, self.name, self.data, self.cores = port or free_port(), free_port(), name, data, cores
        self.extra = tuple(extra)
        super().__init__([RINGMQ, "--listen", f"127.0.0.1:{self.port}", "--cores", str(cores), "--kafka-brokers",
                          kafka.bootstrap, "--cluster-topic", kafka.cl, "--node-id", kafka.node_id(name),
                          "--consume-delay-ms", "0", "--metrics", f"127.0.0.1:{self.mport}", "--data-dir", str(data),
                          *kafka.group_args, *extra])
        procs.append(self)
        self.group = "ringmq-cluster-" + kafka.node_id(name)
        self.wait_line("listening on")
        wait_err(self, "--data-dir: resuming at the committed offsets")
        wait_err(self, f"node {kafka.node_id(name)} read {kafka.cl}.routes")
        wait_assigned(self, cores)

    def again(self, procs, kafka):
        """The same node (id, port, data dir, cores) started again."""
        return NodeAt(procs, kafka, self.name, self.data, self.port, self.cores, self.extra)


def wait_at_least(r, key, want, timeout=20):
    wait_until(lambda: metrics(r).get(key, 0) >= want,
               lambda: f"{r.name}: {key} = {metrics(r).get(key, 0)}, want at least {want}", timeout, 0.1)


def drop(sub):
    """The subscriber's connection is gone with its node: stop paho's loop (no reconnect of its own)."""
    sub.c.loop_stop()
    try:
        sub.c.socket().close()
    except Exception:
        pass


def backend_not_on(h, nodes, home):
    """A publisher through HAProxy whose client id hashes to a node other than `home`, and that node."""
    for i in range(40):
        cid = f"backend-{i}"
        pub = Pub(h.port, cid)
        end = time.time() + 5
        while time.time() < end:
            on = [n for n in nodes if any(f"client '{cid}' connected (" in ln for ln in list(n.err))]
            if on:
                break
            time.sleep(0.05)
        assert len(on) == 1, f"{cid} seen on {len(on)} nodes"
        if on[0] is not nodes[home]:
            return pub, on[0]
        pub.close()
    raise AssertionError("no back-end id for another node among 40")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_restarted_node_gets_what_was_published_while_it_was_down(procs, subs, kafka, tmp_path, how):
    """Node b's persistent subscriber (3.1.1 clean_session=0 for SIGKILL, v5 Session Expiry for SIGTERM) gets every
    message node a acknowledged while b was down, exactly once and in order, after b returns with its data dir."""
    a = NodeAt(procs, kafka, "da", tmp_path / "a")
    b = NodeAt(procs, kafka, "db", tmp_path / "b")
    v5 = how == "SIGTERM"
    car = Sub(b.port, "car-1", [("fleet/+/cmd", 1)], version=5 if v5 else 4, clean=False, expiry=3600 if v5 else None)
    visitor = Sub(b.port, "visitor", [("visit/#", 1)])          # clean session: its filter must not outlive it
    subs.append(visitor)
    wait_metric(a, FILTERS, 2)
    pub = Pub(a.port, "backend")
    before = [f"b{i}".encode() for i in range(5)]
    for p in before:
        pub.publish("fleet/V1/cmd", p)
    assert payloads(car.take(len(before), timeout=15)) == before
    wait_committed(kafka.bootstrap, kafka.cl, b.group, len(before))   # b commits them (at most every 100 ms)
    if v5:
        car.close()                                             # DISCONNECT: the session stays, offline
        assert b.stop(signal.SIGTERM) == 0
        # a SIGTERMed node withdraws the clean session's filter, keeps the persistent session's
        wait_metric(a, FILTERS, 1)
    else:
        b.stop(signal.SIGKILL)
        drop(car)
    visitor.close()
    # SIGKILL withdraws nothing: the clean session's filter too stays until b returns (the PRODUCED count below
    # proves a still produced for b's filters after this)
    assert metrics(a)[FILTERS] == (1 if v5 else 2), "the persistent session's filter was withdrawn"
    produced = metrics(a)[PRODUCED]
    down = [f"d{i}".encode() for i in range(30)]
    for p in down:
        pub.publish("fleet/V1/cmd", p)                          # asserts the PUBACK
    pub.publish("visit/x", b"nobody")                           # b's visitor is gone: only SIGKILL still produces it
    assert metrics(a)[PRODUCED] == produced + len(down) + (0 if v5 else 1), "not produced for the node that is down"

    b2 = b.again(procs, kafka)
    if not v5:   # the SIGKILLed node withdraws the clean session's filter after reading cl.routes, keeps the other
        wait_err(b2, "1 stale filter of its own removed")
    wait_metric(a, FILTERS, 1)
    # visit/x (SIGKILL) is read and forwarded to nobody; SIGKILL may also repeat uncommitted `before` records
    wait_at_least(b2, FORWARDED, len(down) + (0 if v5 else 1))
    assert metrics(b2)[STALE] == 0, "records for the restored session were skipped as too old"
    car2 = Sub(b2.port, "car-1", [], version=5 if v5 else 4, clean=False, expiry=3600 if v5 else None)
    subs.append(car2)
    got = payloads(car2.take(len(down), timeout=20) + car2.quiet(1.0))
    # SIGKILL: the records b had delivered but not yet committed may come again (at-least-once); those are the
    # `before` ones only, ahead of the rest. SIGTERM commits before stopping: nothing comes twice.
    extra = [p for p in got if p not in down]
    assert set(extra) <= set(before) and (not v5 or not extra), f"unexpected: {extra}"
    assert [p for p in got if p in down] == down, "lost, duplicated or reordered while the node was down"
    # still live afterwards, and a later message is not held behind anything
    pub.publish("fleet/V1/cmd", b"after")
    assert payloads(car2.take(1, timeout=10)) == [b"after"]
    pub.close()
    for r in (a, b2):
        r.stop_ok()


def test_new_node_with_empty_data_dir_gets_no_history(procs, subs, kafka, tmp_path):
    """--data-dir does not mean "replay the topic": a node whose data dir is new skips what predates it."""
    a = NodeAt(procs, kafka, "ha", tmp_path / "a", cores=1)
    b = NodeAt(procs, kafka, "hb", tmp_path / "b", cores=1)
    watch = Sub(b.port, "watch", [("old/#", 1)])
    subs.append(watch)
    wait_metric(a, FILTERS, 1)
    pub = Pub(a.port, "old-pub")
    for i in range(5):
        pub.publish("old/x", f"o{i}".encode())
    pub.close()
    assert len(watch.take(5, timeout=15)) == 5
    c = NodeAt(procs, kafka, "hc", tmp_path / "c", cores=1)
    late = Sub(c.port, "late", [("old/#", 1)], clean=False, expiry=600)
    subs.append(late)
    assert late.quiet(1.5) == []
    m = metrics(c)
    assert m[FORWARDED] == 0 and m[STALE] == 5, m
    for r in (a, b, c):
        r.stop_ok()


@mock_only("HAProxy's routing of cars is Kafka-agnostic; the resume at committed offsets runs on real Kafka above")
def test_through_haproxy_car_returns_home_and_gets_what_it_missed(procs, subs, kafka, tmp_path):
    """The shipped tools/haproxy.cfg in front: the car's home node is SIGKILLed, the car reconnects through HAProxy
    and lands on another node (a new session there), subscribes again and gets what is published from then on; its
    home comes back with its data dir, HAProxy's consistent hash sends the car home, and its persistent session
    there hands over everything published while home was down. Every PUBACKed message reaches the car."""
    from test_haproxy import HAPROXY, HAProxy
    if not os.path.exists(HAPROXY):
        pytest.skip("haproxy is not installed")
    nodes = [NodeAt(procs, kafka, f"x{i}", tmp_path / f"x{i}", cores=1, extra=("--proxy-protocol", "-v"))
             for i in (1, 2, 3)]
    h = HAProxy(tmp_path, "haproxy", nodes, "send-proxy-v2")
    try:
        cid, topic = "car-VIN77", "cars/VIN77/cmd"
        car = Sub(h.port, cid, [(topic, 1)], version=4, clean=False)
        home = next(i for i, n in enumerate(nodes) if metrics(n)[LOCALS] == 1)
        pub, other = backend_not_on(h, nodes, home)             # a back end on a node that stays up
        wait_metric(other, FILTERS, 1)
        first = [f"p{i}".encode() for i in range(5)]
        for p in first:
            pub.publish(topic, p)
        assert payloads(car.take(len(first), timeout=15)) == first
        wait_committed(kafka.bootstrap, kafka.cl, nodes[home].group, len(first))
        nodes[home].stop(signal.SIGKILL)
        drop(car)
        away = [f"q{i}".encode() for i in range(10)]            # the car is on no node at all
        for p in away:
            pub.publish(topic, p)
        # the car reconnects once HAProxy has taken its home out (test_haproxy.py covers the redispatch before that)
        end = time.time() + 20
        while h.servers_up() != 2 and time.time() < end:
            time.sleep(0.2)
        assert h.servers_up() == 2, "HAProxy did not take the dead node out"
        car2 = Sub(h.port, cid, [(topic, 1)], version=4, clean=False)
        subs.append(car2)
        host = next(n for i, n in enumerate(nodes) if i != home and metrics(n)[LOCALS] == 1)
        if host is not other:
            wait_metric(other, FILTERS, 2)                      # home's kept filter and the temporary node's
        there = [f"r{i}".encode() for i in range(10)]           # the car is on its temporary node
        for p in there:
            pub.publish(topic, p)
        got_there = payloads(car2.take(len(there), timeout=15))
        assert got_there == there, "the car missed publishes after its SUBACK on the temporary node"
        car2.close()
        nodes[home] = nodes[home].again(procs, kafka)
        end = time.time() + 30
        while h.servers_up() < 3 and time.time() < end:
            time.sleep(0.2)
        assert h.servers_up() == 3, "HAProxy did not take the home node back"
        car3 = Sub(h.port, cid, [], version=4, clean=False)
        subs.append(car3)
        back = payloads(car3.take(len(away) + len(there), timeout=20) + car3.quiet(1.0))
        pub.close()
        assert metrics(nodes[home])[LOCALS] == 1
        # home's session was subscribed all along: it queued both what came while the car was nowhere and what
        # the car also got on the temporary node (a second copy, in another session); the SIGKILL may repeat
        # what home had delivered but not committed (`first`)
        assert [p for p in back if p in away] == away, "lost or reordered while the car's home was down"
        assert [p for p in back if p in there] == there
        assert set(back) - set(away) - set(there) <= set(first)
        assert set(first + away + there) <= set(back) | set(first), "a PUBACKed message never reached the car"
    finally:
        h.stop()
    for r in nodes:
        r.stop_ok()
