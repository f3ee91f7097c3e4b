"""MQTT -> ringmq -> Kafka end to end: real MQTT clients (paho, mosquitto_pub, raw sockets) publish, a
librdkafka consumer (confluent-kafka) reads Kafka back. Embedded cluster and ringmq-kafka-mock (faults).
Run by ctest under /usr/bin/python3; every process started here is stopped by pid."""
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

BUILD = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build-asan"))
RINGMQ = os.path.join(BUILD, "ringmq")
MOCK = os.path.join(BUILD, "ringmq-kafka-mock")

pytestmark = pytest.mark.skipif(not os.path.exists(RINGMQ), reason="ringmq binary not built (core not merged)")
mqtt = pytest.importorskip("paho.mqtt.client")


class Proc:
    """A child process whose stdout lines a reader thread collects (select() on a buffered pipe misses lines)."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, bufsize=1)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in self.p.stdout], daemon=True).start()
        threading.Thread(target=lambda: [self.err.append(ln) for ln in self.p.stderr], daemon=True).start()

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
        self.bootstrap = self.wait_line("mock cluster at").split(" at ", 1)[1]

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        assert self.wait_line("ok", 5) == "ok"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Ringmq(Proc):
    def __init__(self, *args, cores=1):
        self.port = free_port()
        super().__init__([RINGMQ, "--listen", f"127.0.0.1:{self.port}", "--cores", str(cores), *args])
        if "--kafka-brokers" not in args:
            self.bootstrap = self.wait_line("kafka: embedded cluster at").split(" at ", 1)[1]
        self.wait_line("listening on")


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        if p.p.poll() is None:
            p.stop(signal.SIGKILL)


def consume(bootstrap, topic, want, timeout=20):
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


# ---- raw MQTT: exact control over PUBACK reason codes ----------------------------------------------------

def s16(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("!H", len(b)) + b


def varint(n):
    out = bytearray()
    while True:
        out.append((n % 128) | (0x80 if n >= 128 else 0))
        n //= 128
        if not n:
            return bytes(out)


class Raw:
    def __init__(self, port, cid, version=5):
        self.v = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        body = s16("MQTT") + bytes([version, 0x02]) + struct.pack("!H", 60)
        body += (b"\x00" if version == 5 else b"") + s16(cid)
        self.sock.sendall(bytes([0x10]) + varint(len(body)) + body)
        t, body = self.read()
        assert t == 2 and body[1] == 0, body

    def publish(self, topic, payload, pid, qos=1):
        body = s16(topic) + (struct.pack("!H", pid) if qos else b"") + (b"\x00" if self.v == 5 else b"")
        body += payload.encode()
        self.sock.sendall(bytes([0x30 | qos << 1]) + varint(len(body)) + body)

    def read(self, timeout=5.0):
        """(type, body), or raises TimeoutError / ConnectionError."""
        end = time.time() + timeout
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf):
                    n += (self.buf[i] & 0x7F) * mult
                    mult *= 128
                    if not self.buf[i] & 0x80:
                        break
                    i += 1
                if i < len(self.buf) and len(self.buf) >= i + 1 + n:
                    t, body = self.buf[0] >> 4, self.buf[i + 1:i + 1 + n]
                    self.buf = self.buf[i + 1 + n:]
                    return t, body
            left = end - time.time()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            if not data:
                raise ConnectionError
            self.buf += data

    def puback(self, timeout=5.0):
        """(packet id, reason)"""
        t, body = self.read(timeout)
        assert t == 4, (t, body)
        return struct.unpack("!H", body[:2])[0], (body[2] if len(body) > 2 else 0)

    def close(self):
        self.sock.close()


# ---- tests -------------------------------------------------------------------------------------------------

def test_paho_v5_and_v311_qos1_exactly_once_in_order(procs):
    r = Ringmq("--route", "cars/+/telemetry -> telemetry", cores=2)
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
    got = consume(r.bootstrap, "telemetry", len(infos))
    assert len(got) == len(infos)
    check_stream(got, per_car)
    for m in got:
        h = dict(m.headers())
        car = m.key().decode()
        assert h["mqtt.topic"] == f"cars/{car}/telemetry".encode()
        assert h["mqtt.client_id"] == m.key() and h["mqtt.qos"] == b"1"
        assert h.get("trip") == (b"7" if int(car[-1]) % 2 else None)
    assert r.stop() == 0, "".join(r.err)


def test_mosquitto_pub_json_envelope_templated_topic(procs):
    r = Ringmq("--route", "cars/+/status -> status-${topic[1]} key=${topic[1]} value=json")
    procs.append(r)
    out = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(r.port), "-V", "5", "-q", "1",
                          "-i", "car-9", "-u", "fleet", "-t", "cars/VIN9/status", "-m", 'He said "hi"\n',
                          "-D", "publish", "user-property", "trip", "42",
                          "-D", "publish", "content-type", "text/plain"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    got = consume(r.bootstrap, "status-VIN9", 1)
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
    assert r.stop() == 0


def test_default_route_is_announced_and_used(procs):
    r = Ringmq()
    procs.append(r)
    out = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(r.port), "-q", "1", "-i", "car-1",
                          "-t", "any/topic", "-m", "car-1:0"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    got = consume(r.bootstrap, "mqtt.messages", 1)
    assert [m.value() for m in got] == [b"car-1:0"]
    assert r.stop() == 0
    assert any("no route given" in line for line in r.err), r.err


def test_puback_waits_for_kafka_unreachable_at_start(procs):
    k = MockKafka("t:2")
    procs.append(k)
    for b in (1, 2, 3):
        k.cmd(f"down {b}")
    r = Ringmq("--route", "# -> t", "--kafka-brokers", k.bootstrap)
    procs.append(r)
    c = Raw(r.port, "car-0")
    c.publish("x", "car-0:0", 1)
    with pytest.raises(TimeoutError):
        c.puback(timeout=1.5)  # not before Kafka has it
    for b in (1, 2, 3):
        k.cmd(f"up {b}")
    assert c.puback(timeout=20) == (1, 0)
    c.close()
    check_stream(consume(k.bootstrap, "t", 1), {"car-0": 1})
    assert r.stop() == 0


def test_broker_down_mid_stream_nothing_lost(procs):
    k = MockKafka("t:3")
    procs.append(k)
    r = Ringmq("--route", "# -> t", "--kafka-brokers", k.bootstrap, cores=2)
    procs.append(r)
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
    assert r.stop() == 0


def test_failed_delivery_v5_reason_code_v311_disconnect(procs):
    k = MockKafka("t:1")
    procs.append(k)
    r = Ringmq("--route", "# -> t", "--kafka-brokers", k.bootstrap)
    procs.append(r)
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
    assert r.stop() == 0


def test_sigterm_flushes_what_the_producer_holds(procs):
    k = MockKafka("t:2")
    procs.append(k)
    # linger 10 s: without the flush at shutdown nothing would have left the producer yet
    r = Ringmq("--route", "# -> t", "--kafka-brokers", k.bootstrap, "--kafka-linger-ms", "10000")
    procs.append(r)
    c = Raw(r.port, "car-0")
    for seq in range(100):
        c.publish("x", f"car-0:{seq}", 0, qos=0)
    time.sleep(0.5)
    t0 = time.time()
    assert r.stop() == 0
    assert time.time() - t0 < 8
    check_stream(consume(k.bootstrap, "t", 100), {"car-0": 100})


def test_sigkill_loses_nothing_that_was_acknowledged(procs):
    k = MockKafka("t:2")
    procs.append(k)
    r = Ringmq("--route", "# -> t", "--kafka-brokers", k.bootstrap, "--kafka-linger-ms", "20")
    procs.append(r)
    c = Raw(r.port, "car-0")
    acked = set()
    for seq in range(41):
        c.publish("x", f"car-0:{seq}", seq + 1)
        if seq == 20:
            time.sleep(0.2)  # let some be acknowledged, the rest are in flight at the kill
    r.stop(signal.SIGKILL)
    try:
        while True:
            acked.add(c.puback(timeout=3)[0] - 1)
    except (TimeoutError, ConnectionError, OSError):
        pass
    got = [int(m.value().decode().rsplit(":", 1)[1]) for m in consume(k.bootstrap, "t", 41, timeout=5)]
    assert len(got) == len(set(got)), "no duplicates"
    assert got == sorted(got), "in order"
    missing = acked - set(got)
    assert not missing, f"acknowledged but not in Kafka: {sorted(missing)}"
    assert acked, "some messages should have been acknowledged before the kill"


def test_shared_producer_across_cores(procs):
    """--kafka-producers 1 with 2 cores: core 1's delivery reports are served by core 0 and handed back."""
    import xxhash
    r = Ringmq("--route", "# -> shared", "--kafka-producers", "1", cores=2)
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
    check_stream(consume(r.bootstrap, "shared", 4 * n), {cid: n for cid in cids})
    assert r.stop() == 0
