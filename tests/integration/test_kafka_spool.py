"""The Kafka disk spool (--spool): Kafka down -> QoS 1 PUBACKs come from the spool, replay in order when Kafka
returns, also after kill -9; --spool-max-bytes backpressure; a corrupt spool tail. Real MQTT clients (raw sockets),
ringmq-kafka-mock with fault commands, confluent-kafka reading Kafka back. The first test also runs on real Apache
Kafka with every broker stopped and started again (kafka_real.py); the others use the mock's exact faults.
Every process is stopped by pid."""
import glob
import os
import queue
import re
import signal
import threading
import time
import urllib.request

import pytest

from test_kafka_e2e import MOCK, RINGMQ, MockKafka, Raw, Ringmq, check_stream, consume, read_pubacks
from kafka_real import KINDS, private, side

pytestmark = pytest.mark.skipif(not (os.path.exists(RINGMQ) and os.path.exists(MOCK)),
                                reason="ringmq / ringmq-kafka-mock not built")

SMALL_QUEUE = ("-X", "queue.buffering.max.messages=16")


class SpoolRingmq(Ringmq):
    """ringmq with --spool in data_dir, its stdout lines kept (the spool's start-up line says its backlog)."""

    def __init__(self, data_dir, kafka, *args, cores=1):
        self.seen = []
        super().__init__("--kafka-brokers", kafka.bootstrap, "--data-dir", data_dir, "--spool", "--metrics",
                         "127.0.0.1:0", *args, cores=cores)

    def wait_line(self, needle, timeout=20):
        """As Proc.wait_line, but every line read is kept, so a line that came before another one waited for
        (the spool's line comes before "listening on") can still be found."""
        for line in self.seen:
            if needle in line:
                return line
        end = time.time() + timeout
        while time.time() < end:
            try:
                line = self.lines.get(timeout=0.2).strip()
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r}; stderr: {''.join(self.err)[-2000:]}")

    def metric(self, name):
        """Sum over the cores of a /metrics family."""
        url = self.wait_line("metrics on http://").split(" on ", 1)[1]
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        return sum(float(ln.split()[-1]) for ln in body.splitlines() if ln.startswith(name + "{"))


def backlog_of(line):
    """Records to replay, from the spool's start-up line."""
    return int(re.search(r"(\d+) records", line).group(1))


def all_down(k):
    for b in (1, 2, 3):
        k.cmd(f"down {b}")


def all_up(k):
    for b in (1, 2, 3):
        k.cmd(f"up {b}")


def wait_for(pred, timeout=15, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def send_and_ack(car, cid, topic, seqs, pid_of, acked, timeout=10):
    """Publishes cid:SEQ for each seq, then reads one PUBACK each (raises if one does not come)."""
    for seq in seqs:
        car.publish(topic, f"{cid}:{seq}", pid_of(seq))
    for _ in seqs:
        pid, rc = car.puback(timeout=timeout)
        assert rc == 0
        acked.add(pid)


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        if p.p.poll() is None:
            p.stop(signal.SIGKILL)
        if isinstance(p, SpoolRingmq):  # shown by pytest when the test failed
            print("".join(ln for ln in p.err if not ln.startswith("%"))[-3000:])


@pytest.fixture(params=KINDS)
def kafka(request, procs):
    yield from side(request, procs)


def delivered_past(r, n):
    """Waits until /metrics counts more than n records acknowledged by Kafka: the metrics snapshot is then newer
    than those deliveries (metrics are a 100 ms tick behind), so the spool counters beside it are too."""
    wait_for(lambda: r.metric("ringmq_kafka_delivered_total") > n, what=f"more than {n} delivered")


@private  # stops every broker
def test_kafka_down_spool_acks_then_replays_exactly_once_in_order(procs, tmp_path, kafka):
    """Kafka down far longer than a 16-message producer queue: every QoS 1 publish is acknowledged from the
    spool; when Kafka returns every one is in Kafka once, in order per car, templated topics included."""
    k = kafka
    t = k.topic("t", 2)
    status = k.unique("status")
    k.create(f"{status}-VIN7", 1)
    r = SpoolRingmq(str(tmp_path), k, "--route", f"cars/+/telemetry -> {t}", "--route",
                    f"cars/+/status -> {status}-${{topic[1]}} key=${{topic[1]}}", *SMALL_QUEUE, cores=2)
    procs.append(r)
    cars = {f"car-{i}": Raw(r.port, f"car-{i}", version=5 if i % 2 else 4) for i in range(3)}
    acked = {cid: set() for cid in cars}
    for cid, c in cars.items():  # Kafka not proven up yet: the first ones may go through the spool
        send_and_ack(c, cid, "cars/x/telemetry", range(3), lambda s: s + 1, acked[cid])
    wait_for(lambda: r.metric("ringmq_kafka_spool_backlog_records") == 0 and r.metric(
        "ringmq_kafka_spool_replayed_total") == r.metric("ringmq_kafka_spool_spooled_total"), what="spool drained")
    spooled = r.metric("ringmq_kafka_spool_spooled_total")
    delivered = r.metric("ringmq_kafka_delivered_total")
    for cid, c in cars.items():  # Kafka up: the direct path, the spool idle
        send_and_ack(c, cid, "cars/x/telemetry", range(3, 5), lambda s: s + 1, acked[cid])
    delivered_past(r, delivered + 5)
    assert r.metric("ringmq_kafka_spool_spooled_total") == spooled, "Kafka up: the spool stays idle"

    k.down()
    n = 150  # per car: ~30x the producer queue per core
    t0 = time.time()
    for chunk in range(5, n, 29):
        for cid, c in cars.items():
            send_and_ack(c, cid, "cars/x/telemetry", range(chunk, min(chunk + 29, n)), lambda s: s % 65000 + 1,
                         acked[cid])
    # the templated route while Kafka is still down: status-VIN7 does not exist yet
    st = Raw(r.port, "car-status", version=5)
    status_acked = set()
    send_and_ack(st, "car-status", "cars/VIN7/status", range(40), lambda s: s + 1, status_acked)
    assert time.time() - t0 < 30
    # every one was acknowledged from the spool; /metrics shows it at its next tick (a loaded core ticks late)
    wait_for(lambda: r.metric("ringmq_kafka_spool_backlog_records") > 0, what="Kafka down: the spool holds them")
    assert r.metric("ringmq_kafka_delivered_total") <= 3 * 5 + 16 * 2

    k.up()
    # while the spool drains: accepted at half the replay rate, queued behind the spooled ones
    m = n + 20
    for cid, c in cars.items():
        send_and_ack(c, cid, "cars/x/telemetry", range(n, m), lambda s: s % 65000 + 1, acked[cid], timeout=30)
    got = consume(k.bootstrap, t, 3 * m, timeout=60)
    check_stream(got, {cid: m for cid in cars})
    gs = consume(k.bootstrap, f"{status}-VIN7", 40, timeout=30)
    assert [int(m.value().decode().rsplit(":", 1)[1]) for m in gs] == list(range(40))
    assert {m.key() for m in gs} == {b"VIN7"}
    assert dict(gs[0].headers())["mqtt.topic"] == b"cars/VIN7/status", "headers survive the spool"
    # a snapshot counting every message sent so far as delivered is newer than the last write to the spool
    delivered_past(r, 3 * m + 40 - 1)
    wait_for(lambda: r.metric("ringmq_kafka_spool_backlog_records") == 0, what="spool empty")
    assert r.metric("ringmq_kafka_spool_replayed_total") >= 3 * (n - 5) - 3 * 16

    # spool empty again: new messages go straight to Kafka, behind the replayed ones
    spooled = r.metric("ringmq_kafka_spool_spooled_total")
    delivered = r.metric("ringmq_kafka_delivered_total")
    for cid, c in cars.items():
        send_and_ack(c, cid, "cars/x/telemetry", range(m, m + 5), lambda s: s % 65000 + 1, acked[cid])
    delivered_past(r, delivered + 14)
    assert r.metric("ringmq_kafka_spool_spooled_total") == spooled
    for c in list(cars.values()) + [st]:
        c.close()
    check_stream(consume(k.bootstrap, t, 3 * (m + 5), timeout=30), {cid: m + 5 for cid in cars})
    assert r.stop() == 0, "".join(r.err)


def test_messages_waiting_in_the_producer_move_to_the_spool_when_kafka_goes_down(procs, tmp_path):
    """linger 4 s holds the car's messages in librdkafka's queue (no PUBACK yet); Kafka goes down: they are taken
    back into the spool, so the PUBACKs come without Kafka; later every one is in Kafka once, in order."""
    k = MockKafka("t:1")
    procs.append(k)
    r = SpoolRingmq(str(tmp_path), k, "--route", "# -> t", "--kafka-linger-ms", "4000")
    procs.append(r)
    c = Raw(r.port, "car-0", version=5)
    c.publish("x", "car-0:0", 1)
    assert c.puback(timeout=15) == (1, 0)  # Kafka reachable, producer id known, spool idle
    for seq in range(1, 21):
        c.publish("x", f"car-0:{seq}", seq + 1)
    with pytest.raises(TimeoutError):
        c.read(timeout=0.5)  # lingering in librdkafka: no PUBACK yet
    all_down(k)
    assert [c.puback(timeout=3) for _ in range(20)] == [(i, 0) for i in range(2, 22)]
    time.sleep(0.3)
    assert r.metric("ringmq_kafka_spool_reclaimed_total") == 20
    assert r.metric("ringmq_kafka_delivered_total") == 1
    assert any("moved from the producer queue to the spool" in ln for ln in r.err)
    all_up(k)
    check_stream(consume(k.bootstrap, "t", 21, timeout=60), {"car-0": 21})
    c.close()
    assert r.stop() == 0, "".join(r.err)


def publish_while_down(r, cid, n, topic="cars/x/telemetry", version=4):
    c = Raw(r.port, cid, version=version)
    acked = set()
    send_and_ack(c, cid, topic, range(n), lambda s: s + 1, acked)
    return c, acked


def test_kill9_fsync_always_spool_replays_after_restart(procs, tmp_path):
    """kill -9 while Kafka is down and the spool holds PUBACKed messages: the restarted ringmq replays them."""
    k = MockKafka("t:2")
    procs.append(k)
    all_down(k)
    r = SpoolRingmq(str(tmp_path), k, "--route", "# -> t", "--fsync", "always", *SMALL_QUEUE)
    procs.append(r)
    c, acked = publish_while_down(r, "car-0", 100)
    assert len(acked) == 100
    r.stop(signal.SIGKILL)
    c.close()
    all_up(k)
    time.sleep(0.5)
    assert consume(k.bootstrap, "t", 1, timeout=2) == [], "nothing reached Kafka before the kill"
    r2 = SpoolRingmq(str(tmp_path), k, "--route", "# -> t", "--fsync", "always")
    procs.append(r2)
    line = r2.wait_line("to replay")
    backlog = backlog_of(line)
    assert backlog >= 100 - 16, line  # at most the producer queue was held in memory (not PUBACKed)
    got = consume(k.bootstrap, "t", backlog, timeout=60)
    seqs = [int(m.value().decode().rsplit(":", 1)[1]) for m in got]
    assert len(seqs) == len(set(seqs)), "exactly once"
    assert seqs == sorted(seqs), "in order"
    assert {s + 1 for s in seqs} >= acked, "every PUBACKed message is in Kafka"
    wait_for(lambda: r2.metric("ringmq_kafka_spool_backlog_records") == 0, what="spool empty")
    assert r2.stop() == 0, "".join(r2.err)
    # replayed and marked delivered: a third start has nothing to replay
    r3 = SpoolRingmq(str(tmp_path), k, "--route", "# -> t")
    procs.append(r3)
    assert " 0 records" in r3.wait_line("to replay")
    assert r3.stop() == 0


def test_sigterm_keeps_the_spool_for_the_next_start(procs, tmp_path):
    """SIGTERM while Kafka is down: the spool is drained to disk and closed (exit 0, the backlog is said); the
    next start replays it, exactly once."""
    k = MockKafka("t:1")
    procs.append(k)
    all_down(k)
    r = SpoolRingmq(str(tmp_path), k, "--route", "# -> t", "--fsync", "never")
    procs.append(r)
    c, acked = publish_while_down(r, "car-0", 50, version=5)
    assert r.stop() == 0, "".join(r.err)
    assert backlog_of(r.wait_line("spool keeps")) == 50
    c.close()
    all_up(k)
    r2 = SpoolRingmq(str(tmp_path), k, "--route", "# -> t")
    procs.append(r2)
    assert backlog_of(r2.wait_line("to replay")) == 50
    check_stream(consume(k.bootstrap, "t", 50, timeout=60), {"car-0": 50})
    assert r2.stop() == 0, "".join(r2.err)


def test_spool_max_bytes_backpressure_then_nothing_lost(procs, tmp_path):
    """Past --spool-max-bytes the car is paused (no PUBACK) as without the spool; when Kafka returns every
    message arrives once, in order, and the car is read again."""
    k = MockKafka("t:1")
    procs.append(k)
    all_down(k)
    r = SpoolRingmq(str(tmp_path), k, "--route", "# -> t", "--spool-max-bytes", "1M", *SMALL_QUEUE)
    procs.append(r)
    c = Raw(r.port, "car-0", version=4)
    n, pad = 400, "x" * 4000  # 1.6 MB: well past the 1 MiB bound
    th, acks, errors = read_pubacks(c, n)

    def sender():
        for seq in range(n):
            c.publish("x", f"car-0:{seq}:{pad}", seq + 1)

    ts = threading.Thread(target=sender, daemon=True)
    ts.start()
    # 1 MiB of ASan-built spool writes on a loaded machine: the bound is generous, the event is the counter
    wait_for(lambda: r.metric("ringmq_kafka_spool_refused_total") > 0, timeout=90, what="spool full")
    time.sleep(1.0)
    stalled = len(acks)
    assert 100 < stalled < n, stalled  # ~1 MiB worth acknowledged, then backpressure
    time.sleep(1.0)
    assert len(acks) == stalled, "no PUBACK while the spool is full"
    assert r.metric("ringmq_kafka_spool_backlog_bytes") <= 1 << 20
    all_up(k)
    th.join(60)
    ts.join(10)
    assert not errors and [a for a in acks] == [(i, 0) for i in range(1, n + 1)]
    got = consume(k.bootstrap, "t", n, timeout=60)
    seqs = [int(m.value().decode().split(":")[1]) for m in got]
    assert seqs == list(range(n))
    c.close()
    assert r.stop() == 0, "".join(r.err)


def test_corrupt_spool_tail_is_cut_with_a_warning(procs, tmp_path):
    k = MockKafka("t:1")
    procs.append(k)
    all_down(k)
    r = SpoolRingmq(str(tmp_path), k, "--route", "# -> t", "--fsync", "always")
    procs.append(r)
    c, acked = publish_while_down(r, "car-0", 30)
    r.stop(signal.SIGKILL)
    c.close()
    segs = sorted(glob.glob(os.path.join(str(tmp_path), "core-0", "spool", "*.wal")))
    assert segs
    with open(segs[-1], "ab") as f:
        f.write(b"\x13\x37" * 50)  # a torn record: garbage after the last good one
    all_up(k)
    r2 = SpoolRingmq(str(tmp_path), k, "--route", "# -> t")
    procs.append(r2)
    backlog = backlog_of(r2.wait_line("to replay"))
    assert backlog >= 30 - 16
    got = consume(k.bootstrap, "t", backlog, timeout=60)
    seqs = [int(m.value().decode().rsplit(":", 1)[1]) for m in got]
    assert seqs == sorted(set(seqs)) and {s + 1 for s in seqs} >= acked
    assert r2.stop() == 0, "".join(r2.err)
    assert any("trunc" in ln or "corrupt" in ln or "torn" in ln for ln in r2.err), r2.err


def test_spool_needs_data_dir(procs):
    k = MockKafka("t:1")
    procs.append(k)
    import subprocess
    out = subprocess.run([RINGMQ, "--listen", "127.0.0.1:0", "--kafka-brokers", k.bootstrap, "--spool"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 and "--data-dir" in out.stderr


def test_state_log_and_spool_together_sigterm_then_both_recover(procs, tmp_path):
    """--data-dir with --spool: one core, two logs on one ring. Kafka down, an offline persistent subscriber
    and a retained message: every QoS 1 publish is both queued for the subscriber (state log) and spooled
    (Kafka log). SIGTERM must drain both (neither may swallow the other's completions) and exit 0; the next
    start replays the spool into Kafka and gives the subscriber its queue and the retained message."""
    from mqtt_util import RawClient
    k = MockKafka("t:1")
    procs.append(k)
    route = ("--route", "cars/# -> t")
    r = SpoolRingmq(str(tmp_path), k, *route, "--fsync", "batch")
    procs.append(r)
    sub = RawClient("127.0.0.1", r.port)
    sub.connect("fleet-app", clean=False)
    assert sub.subscribe("cars/#", qos=1) == [1]
    sub.disconnect()
    sub.close()
    all_down(k)
    pub = RawClient("127.0.0.1", r.port)
    pub.connect("car-0")
    pub.publish("cars/car-0/state", b"parked", qos=1, retain=True)
    for i in range(60):
        pub.publish("cars/car-0/telemetry", f"car-0:{i}".encode(), qos=1)
    pub.close()
    assert r.stop() == 0, "".join(r.err)
    assert backlog_of(r.wait_line("spool keeps")) == 61
    all_up(k)
    r2 = SpoolRingmq(str(tmp_path), k, *route)
    procs.append(r2)
    assert backlog_of(r2.wait_line("to replay")) == 61
    got = consume(k.bootstrap, "t", 61, timeout=60)
    assert [m.value() for m in got] == [b"parked"] + [f"car-0:{i}".encode() for i in range(60)]
    sub = RawClient("127.0.0.1", r2.port)
    sp, rc, _ = sub.connect("fleet-app", clean=False)
    assert (sp, rc) == (True, 0)
    payloads = [sub.recv_publish(timeout=10).payload for _ in range(61)]
    assert payloads == [b"parked"] + [f"car-0:{i}".encode() for i in range(60)]
    sub.close()
    late = RawClient("127.0.0.1", r2.port)
    late.connect("late-app")
    late.subscribe("cars/+/state", qos=1)
    m = late.recv_publish(timeout=5)
    assert (m.payload, m.retain) == (b"parked", True)
    late.close()
    assert r2.stop() == 0, "".join(r2.err)
