"""MQTT -> ringmq -> Kafka end to end: real MQTT clients (paho, mosquitto_pub, raw sockets) publish, a
librdkafka consumer (confluent-kafka) reads Kafka back. Tests with the `kafka` fixture run twice: on librdkafka's
mock (embedded cluster, or ringmq-kafka-mock) and on real Apache Kafka (kafka_real.py); the others need the mock
(fault injection at exact requests, single brokers of three taken down, the embedded cluster's own behaviour).
Run by ctest under /usr/bin/python3; every process started here is stopped by pid."""
import json
import os
import queue
import re
import signal
import struct
import subprocess
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

BUILD = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build-asan"))
RINGMQ = os.path.join(BUILD, "ringmq")
MOCK = os.path.join(BUILD, "ringmq-kafka-mock")

pytestmark = pytest.mark.skipif(not os.path.exists(RINGMQ), reason="ringmq binary not built (core not merged)")
mqtt = pytest.importorskip("paho.mqtt.client")
import core_rawmqtt as rawmqtt  # noqa: E402 (the core's test helpers, same directory)
from core_rawmqtt import free_port  # noqa: E402
from kafka_real import KINDS, private, side  # noqa: E402


class Proc:
    """A child process whose stdout lines a reader thread collects (select() on a buffered pipe misses lines)."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, bufsize=1)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in self.p.stdout], daemon=True).start()
        self._err_reader = threading.Thread(target=lambda: [self.err.append(ln) for ln in self.p.stderr], daemon=True)
        self._err_reader.start()

    def wait_line(self, needle, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            if needle in line:
                return line.strip()
        raise AssertionError(f"no line with {needle!r}; stderr: {''.join(self.err)[-2000:]}")

    def started(self, ready):
        """Runs ready() (the waits for the start-up lines); if it raises, the process is killed first: a test that
        fails there has not appended it to its procs yet, and it would outlive the test run."""
        try:
            ready()
        except BaseException:
            if self.p.poll() is None:
                self.p.kill()
            self.p.wait()
            raise

    def stop_ok(self, sig=signal.SIGTERM, timeout=20):
        """stop(), asserting exit status 0 (an ASan/UBSan report at exit is 1), with the end of stderr if not."""
        rc = self.stop(sig, timeout)
        self._err_reader.join(5)   # stderr to its end: the lines that say why
        assert rc == 0, f"exit status {rc}; stderr: {''.join(self.err)[-4000:]}"

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise


class MockKafka(Proc):
    def __init__(self, *topics):
        super().__init__([MOCK, *sum((["--topic", t] for t in topics), [])])
        self.started(lambda: setattr(self, "bootstrap", self.wait_line("mock cluster at").split(" at ", 1)[1]))

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        assert self.wait_line("ok", 5) == "ok"


class Ringmq(Proc):
    def __init__(self, *args, cores=1):
        # port 0: the kernel picks a free port, read back from the ready line (a port picked by the test could be
        # picked by a parallel test too, and SO_REUSEPORT would let both brokers share it)
        super().__init__([RINGMQ, "--listen", "127.0.0.1:0", "--cores", str(cores), *args])
        self.started(lambda: self._ready(args))

    def _ready(self, args):
        if "--kafka-brokers" in args:
            self.bootstrap = args[args.index("--kafka-brokers") + 1]
        else:
            self.bootstrap = self.wait_line("kafka: embedded cluster at").split(" at ", 1)[1]
            self.keeps = self.wait_line("kafka: embedded cluster keeps")
        self.port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", self.wait_line("listening on")).group(1))


def kafka_and_ringmq(procs, partitions, *args, down=(), cores=1):
    """ringmq-kafka-mock with topic t (brokers in `down` taken down first), and ringmq routing '#' to it."""
    k = MockKafka(f"t:{partitions}")
    procs.append(k)
    for b in down:
        k.cmd(f"down {b}")
    r = Ringmq("--route", "# -> t", "--kafka-brokers", k.bootstrap, *args, cores=cores)
    procs.append(r)
    return k, r


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        if p.p.poll() is None:
            p.stop(signal.SIGKILL)


@pytest.fixture(params=KINDS)
def kafka(request, procs):
    """The test's Kafka: librdkafka's mock or real Apache Kafka (kafka_real.Side)."""
    yield from side(request, procs)


def fence(c):
    """A PINGREQ answered proves ringmq has read and handled everything sent before it: a PUBACK it gave for an
    earlier PUBLISH would come first. Returns what came before the PINGRESP."""
    c.c.send(rawmqtt.PINGREQ)
    before = []
    while True:
        t, body = c.read(timeout=20)
        if t == 13:
            return before
        before.append((t, body))


def consume(bootstrap, topic, want, timeout=20):
    """Everything in topic from the start, up to want records, then 0.7 s more for duplicates (the
    expected count is known, so the wait ends at an event; the extra time only looks for surplus)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e", "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10)
    parts = len(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, i, 0) for i in range(parts)])
    got, end = [], time.time() + timeout
    while len(got) < want and time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m)
    end = time.time() + 0.7  # duplicates would show up here
    while time.time() < end:
        m = c.poll(0.1)
        if m is not None and not m.error():
            got.append(m)
    c.close()
    return got


def check_stream(msgs, per_car):
    """Every car's messages 'CAR:SEQ' exactly once, in order, in one partition, keyed by the client id."""
    nxt, part = {}, {}
    for m in msgs:
        car, seq = m.value().decode().rsplit(":", 1)
        assert int(seq) == nxt.get(car, 0), f"{car}: got {seq}, expected {nxt.get(car, 0)}"
        nxt[car] = int(seq) + 1
        assert m.key() == car.encode()
        assert part.setdefault(car, m.partition()) == m.partition()
    assert nxt == per_car, (nxt, per_car)


# ---- raw MQTT (the core's packet helpers): exact control over PUBACK reason codes ---------------------------

class Raw:
    def __init__(self, port, cid, version=5):
        self.v = version
        self.c = rawmqtt.open_session(port, cid, version=version)

    def publish(self, topic, payload, pid, qos=1):
        self.c.send(rawmqtt.publish(topic, payload, qos=qos, pid=pid, version=self.v))

    def read(self, timeout=5.0):
        """(type, body), or raises TimeoutError / ConnectionError."""
        t, _, body = self.c.read(timeout)
        return t, body

    def puback(self, timeout=5.0):
        """(packet id, reason)"""
        t, body = self.read(timeout)
        assert t == 4, (t, body)
        return struct.unpack("!H", body[:2])[0], (body[2] if len(body) > 2 else 0)

    def close(self):
        self.c.close()


def read_pubacks(c, n, timeout=60):
    """A thread reading n PUBACKs from Raw c: (thread, acks, errors); acks fills with (packet id, reason) as they
    come, errors with what ended the reading early (the broker closed the connection, a timeout)."""
    acks, errors = [], []

    def reader():
        try:
            while len(acks) < n:
                acks.append(c.puback(timeout=timeout))
        except Exception as e:  # noqa: BLE001 (the caller asserts on it)
            errors.append(e)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    return th, acks, errors


# ---- tests -------------------------------------------------------------------------------------------------

def test_paho_v5_and_v311_qos1_exactly_once_in_order(procs, kafka):
    t = kafka.topic("telemetry")
    r = Ringmq(*kafka.args(), "--route", f"cars/+/telemetry -> {t}", cores=2)
    procs.append(r)
    clients, per_car = [], {}
    for i in range(6):
        cid = f"car-{i}"
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if i % 2 else mqtt.MQTTv311)
        c.connect("127.0.0.1", r.port)
        c.loop_start()
        clients.append((cid, c))
    infos = []
    for seq in range(40):
        for cid, c in clients:
            props = None
            if c._protocol == mqtt.MQTTv5:
                from paho.mqtt.properties import Properties
                from paho.mqtt.packettypes import PacketTypes
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = [("trip", "7")]
            infos.append(c.publish(f"cars/{cid}/telemetry", f"{cid}:{seq}", qos=1, properties=props))
            per_car[cid] = seq + 1
    for info in infos:
        info.wait_for_publish(20)
        assert info.is_published()
    for _, c in clients:
        c.disconnect()
        c.loop_stop()
    got = consume(r.bootstrap, t, len(infos))
    assert len(got) == len(infos)
    check_stream(got, per_car)
    for m in got:
        h = dict(m.headers())
        car = m.key().decode()
        assert h["mqtt.topic"] == f"cars/{car}/telemetry".encode()
        assert h["mqtt.client_id"] == m.key() and h["mqtt.qos"] == b"1"
        assert h.get("trip") == (b"7" if int(car[-1]) % 2 else None)
    assert r.stop() == 0, "".join(r.err)


def test_mosquitto_pub_json_envelope_templated_topic(procs, kafka):
    prefix = kafka.unique("status")
    kafka.create(f"{prefix}-VIN9")
    r = Ringmq(*kafka.args(), "--route", f"cars/+/status -> {prefix}-${{topic[1]}} key=${{topic[1]}} value=json")
    procs.append(r)
    out = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(r.port), "-V", "5", "-q", "1",
                          "-i", "car-9", "-u", "fleet", "-t", "cars/VIN9/status", "-m", 'He said "hi"\n',
                          "-D", "publish", "user-property", "trip", "42",
                          "-D", "publish", "content-type", "text/plain"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    got = consume(r.bootstrap, f"{prefix}-VIN9", 1)
    assert len(got) == 1
    m = got[0]
    assert m.key() == b"VIN9"
    env = json.loads(m.value())
    assert env["topic"] == "cars/VIN9/status" and env["client_id"] == "car-9" and env["username"] == "fleet"
    assert env["qos"] == 1 and env["retain"] is False and env["content_type"] == "text/plain"
    assert env["user_properties"] == [["trip", "42"]]
    assert env["payload_encoding"] == "utf8" and env["payload"] == 'He said "hi"\n'
    assert abs(env["timestamp"] - time.time() * 1000) < 60000
    assert dict(m.headers())["content-type"] == b"text/plain"
    r.stop_ok()


def test_default_route_is_announced_and_used(procs):
    """Mock only: the embedded cluster and its auto-created default topic."""
    r = Ringmq()
    procs.append(r)
    out = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(r.port), "-q", "1", "-i", "car-1",
                          "-t", "any/topic", "-m", "car-1:0"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    got = consume(r.bootstrap, "mqtt.messages", 1)
    assert [m.value() for m in got] == [b"car-1:0"]
    r.stop_ok()
    assert any("no route given" in line for line in r.err), r.err
    # the mock keeps only the last few MB of each partition: said at start, so nobody takes it for loss
    assert "keeps only the last ~5 MB of each partition" in r.keeps and "make kafka" in r.keeps, r.keeps


@private  # stops every broker
def test_puback_waits_for_kafka_unreachable_at_start(procs, kafka):
    t = kafka.topic("t", 2)
    kafka.down()
    r = Ringmq("--route", f"# -> {t}", *kafka.args(shared=True))
    procs.append(r)
    c = Raw(r.port, "car-0")
    c.publish("x", "car-0:0", 1)
    c.publish("x", "car-0:1", 2)
    assert fence(c) == [], "no PUBACK before Kafka has the message"
    kafka.up()
    assert [c.puback(timeout=60) for _ in range(2)] == [(1, 0), (2, 0)], "PUBACKs in order once Kafka has them"
    c.close()
    check_stream(consume(kafka.bootstrap, t, 2), {"car-0": 2})
    r.stop_ok()


def test_broker_down_mid_stream_nothing_lost(procs):
    """Mock only here: one broker of three down at exact points (real 3-broker failures: a cluster of its own)."""
    k, r = kafka_and_ringmq(procs, 3, cores=2)
    cars = [Raw(r.port, f"car-{i}") for i in range(4)]
    n = 30
    for seq in range(n):
        if seq == n // 3:
            k.cmd("down 2")
        if seq == 2 * n // 3:
            k.cmd("up 2")
        for c in cars:
            c.publish("cars/x", f"car-{cars.index(c)}:{seq}", seq + 1)
    for c in cars:
        pids = sorted(c.puback(timeout=20)[0] for _ in range(n))
        assert pids == list(range(1, n + 1))
        c.close()
    check_stream(consume(k.bootstrap, "t", 4 * n), {f"car-{i}": n for i in range(4)})
    r.stop_ok()


def test_failed_delivery_v5_reason_code_v311_disconnect(procs):
    """Mock only: an exact produce request fails with a chosen error."""
    k, r = kafka_and_ringmq(procs, 1)
    v5 = Raw(r.port, "car-5", version=5)
    v5.publish("x", "car-5:0", 1)
    assert v5.puback(timeout=20) == (1, 0)  # connected, producer id known
    k.cmd("error produce 1 INVALID_RECORD")
    v5.publish("x", "car-5:1", 2)
    assert v5.puback(timeout=20) == (2, 0x80)
    k.cmd("error produce 1 MSG_SIZE_TOO_LARGE")
    v5.publish("x", "car-5:2", 3)
    assert v5.puback(timeout=20) == (3, 0x97)
    v5.publish("x", "car-5:3", 4)
    assert v5.puback(timeout=20) == (4, 0)
    v3 = Raw(r.port, "car-3", version=4)
    v3.publish("x", "car-3:0", 1)
    assert v3.puback(timeout=20) == (1, 0)
    k.cmd("error produce 1 INVALID_RECORD")
    v3.publish("x", "car-3:1", 2)
    with pytest.raises(ConnectionError):
        v3.read(timeout=20)  # 3.1.1 has no negative PUBACK: the car must resend on a new connection
    v5.close()
    r.stop_ok()


def test_sigterm_flushes_what_the_producer_holds(procs, kafka):
    # linger 10 s: without the flush at shutdown nothing would have left the producer yet
    t = kafka.topic("t", 2)
    r = Ringmq("--route", f"# -> {t}", "--kafka-linger-ms", "10000", *kafka.args(shared=True))
    procs.append(r)
    c = Raw(r.port, "car-0")
    for seq in range(100):
        c.publish("x", f"car-0:{seq}", 0, qos=0)
    assert fence(c) == []  # all 100 read by ringmq and handed to its producer
    t0 = time.time()
    r.stop_ok()
    assert time.time() - t0 < 8
    check_stream(consume(kafka.bootstrap, t, 100), {"car-0": 100})


def test_sigkill_loses_nothing_that_was_acknowledged(procs, kafka):
    t = kafka.topic("t", 2)
    r = Ringmq("--route", f"# -> {t}", "--kafka-linger-ms", "20", *kafka.args(shared=True))
    procs.append(r)
    c = Raw(r.port, "car-0")
    acked = set()
    for seq in range(21):
        c.publish("x", f"car-0:{seq}", seq + 1)
    acked.add(c.puback(timeout=30)[0] - 1)   # some acknowledged; the rest are in flight at the kill
    for seq in range(21, 41):
        c.publish("x", f"car-0:{seq}", seq + 1)
    r.stop(signal.SIGKILL)
    try:
        while True:
            acked.add(c.puback(timeout=3)[0] - 1)
    except (TimeoutError, ConnectionError, OSError):
        pass
    got = [int(m.value().decode().rsplit(":", 1)[1]) for m in consume(kafka.bootstrap, t, 41, timeout=5)]
    assert len(got) == len(set(got)), "no duplicates"
    assert got == sorted(got), "in order"
    missing = acked - set(got)
    assert not missing, f"acknowledged but not in Kafka: {sorted(missing)}"
    assert acked, "some messages should have been acknowledged before the kill"


def test_shared_producer_across_cores(procs, kafka):
    """--kafka-producers 1 with 2 cores: core 1's delivery reports are served by core 0 and handed back."""
    import xxhash
    t = kafka.topic("shared")
    r = Ringmq(*kafka.args(), "--route", f"# -> {t}", "--kafka-producers", "1", cores=2)
    procs.append(r)
    ids = {}
    for i in range(100):
        ids.setdefault(xxhash.xxh3_64_intdigest(f"car-{i}".encode()) % 2, []).append(f"car-{i}")
    cids = ids[0][:2] + ids[1][:2]
    cars = [Raw(r.port, cid) for cid in cids]
    n = 25
    for seq in range(n):
        for cid, c in zip(cids, cars):
            c.publish("x", f"{cid}:{seq}", seq + 1)
    for c in cars:
        assert sorted(c.puback(timeout=20) for _ in range(n)) == [(i, 0) for i in range(1, n + 1)]
        c.close()
    check_stream(consume(r.bootstrap, t, 4 * n), {cid: n for cid in cids})
    r.stop_ok()


def test_qos2_pubrec_waits_for_kafka_and_ack_after_broker_does_not(procs):
    """Mock only: the wait for Kafka's ack is proven on real Kafka by the QoS 1 test above (same path)."""
    k, r = kafka_and_ringmq(procs, 1, down=(1, 2, 3))
    fast = Ringmq("--route", "# -> t", "--kafka-brokers", k.bootstrap, "--ack-after", "broker")
    procs.append(fast)
    c2 = Raw(r.port, "car-q2")
    c2.publish("x", "car-q2:0", 1, qos=2)
    with pytest.raises(TimeoutError):
        c2.read(timeout=1.5)  # PUBREC only once Kafka has it
    cb = Raw(fast.port, "car-fast")
    cb.publish("x", "car-fast:0", 1)
    assert cb.puback(timeout=5) == (1, 0), "ack-after broker: PUBACK before Kafka"
    for b in (1, 2, 3):
        k.cmd(f"up {b}")
    t, body = c2.read(timeout=20)
    assert t == 5 and struct.unpack("!H", body[:2])[0] == 1, (t, body)  # PUBREC
    got = consume(k.bootstrap, "t", 2)
    assert sorted(m.value() for m in got) == [b"car-fast:0", b"car-q2:0"]
    c2.close()
    cb.close()
    r.stop_ok()
    fast.stop_ok()


@private  # stops every broker
def test_producer_queue_full_pauses_the_car_then_resumes(procs, kafka):
    """Kafka down longer than the producer queue holds: ringmq stops reading the car (it keeps its data), and
    resumes when Kafka is back; every message once, in order."""
    t = kafka.topic("t", 1)
    kafka.down()
    r = Ringmq("--route", f"# -> {t}", "-X", "queue.buffering.max.messages=8", *kafka.args(shared=True))
    procs.append(r)
    c = Raw(r.port, "car-0")
    n = 30
    for seq in range(n):
        c.publish("x", f"car-0:{seq}", seq + 1)
    # Paused: ringmq stops reading the socket, so a PINGREQ sent after the 30 PUBLISHes is answered only once
    # Kafka is back and has acknowledged the first ones (a ringmq that read on would answer it at once).
    c.c.send(rawmqtt.PINGREQ)
    kafka.up()
    got = []
    while len(got) < n + 1:
        ptype, body = c.read(timeout=60)
        got.append("ping" if ptype == 13 else struct.unpack("!HB", body[:3] if len(body) > 2 else body + b"\0"))
    assert [x for x in got if x != "ping"] == [(i, 0) for i in range(1, n + 1)]
    assert got.index("ping") > 0, "the PINGREQ was answered while Kafka was down: the car was not paused"
    c.close()
    check_stream(consume(kafka.bootstrap, t, n), {"car-0": n})
    r.stop_ok()


def metric(r, name, label=""):
    """Sum over the cores of a /metrics family (a tick behind the reactors), or of its rows with `label`."""
    if not hasattr(r, "metrics_url"):
        r.metrics_url = r.wait_line("metrics on http://").split(" on ", 1)[1]
    body = urllib.request.urlopen(r.metrics_url, timeout=5).read().decode()
    return sum(float(ln.split()[-1]) for ln in body.splitlines() if ln.startswith(name + "{") and label in ln)


def test_paused_car_keeps_what_the_kernel_read_after_the_pause(procs):
    """A paused car's receive is cancelled once it holds a few buffers, but the kernel fills buffers until the
    cancel reaches it: for a fast sender, everything waiting in the socket (here the whole burst) arrives in one
    batch of completions after the pause. Those bytes are the car's next PUBLISHes, gone from its socket: ringmq
    keeps them, and when Kafka is back every PUBACK comes, in order, and every message is in Kafka once.
    --max-packet-size 2048 makes what a reading connection may hold (a partial packet and six buffers, 26 KiB)
    small next to the burst."""
    k, r = kafka_and_ringmq(procs, 1, "-X", "queue.buffering.max.messages=8", "--max-packet-size", "2048",
                            "--metrics", "127.0.0.1:0", down=(1, 2, 3))
    c = Raw(r.port, "car-0", version=4)
    n, pad = 2000, "x" * 1000  # 2 MB in one burst
    burst = b"".join(rawmqtt.publish("x", f"car-0:{seq}:{pad}", qos=1, pid=seq + 1) for seq in range(n))
    th, acks, errors = read_pubacks(c, n)
    ts = threading.Thread(target=lambda: c.c.send(burst), daemon=True)
    ts.start()
    # The event: the car is paused (the producer queue is full) and ringmq has read more than twice what a
    # reading connection may hold. A ringmq that refused the rest has cut the car off by then.
    held_bound = 2048 + 6 * 4096
    end = time.time() + 60
    while not (metric(r, "ringmq_io_events_total", 'reason="kafka_queue_full"') > 0
               and metric(r, "ringmq_bytes_in_total") > 2 * held_bound):
        assert time.time() < end and not errors, (metric(r, "ringmq_bytes_in_total"), errors)
        time.sleep(0.1)
    for b in (1, 2, 3):
        k.cmd(f"up {b}")
    th.join(90)
    ts.join(10)
    assert not errors and acks == [(i, 0) for i in range(1, n + 1)], (errors, len(acks))
    assert metric(r, "ringmq_drops_total", 'reason="malformed"') == 0
    got = consume(k.bootstrap, "t", n, timeout=60)
    assert [m.value().decode() for m in got] == [f"car-0:{seq}:{pad}" for seq in range(n)]
    c.close()
    assert r.stop() == 0, "".join(r.err)
