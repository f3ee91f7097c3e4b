"""ringmq-kafka-mock as a process: bootstrap line, topics, fault commands on stdin, real Kafka clients
(confluent-kafka, kcat) against it, clean exit on EOF and SIGTERM. Run by ctest under /usr/bin/python3."""
import json
import os
import queue
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

BUILD = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build-asan"))
MOCK = os.path.join(BUILD, "ringmq-kafka-mock")


class Mock:
    """One ringmq-kafka-mock process; stopped by pid in close()."""

    def __init__(self, *args):
        self.p = subprocess.Popen([MOCK, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = queue.Queue()  # a reader thread: select() on a buffered pipe would miss lines
        threading.Thread(target=self._read, daemon=True).start()
        line = self.readline(10)
        assert line.startswith("kafka: mock cluster at "), line
        self.bootstrap = line.split(" at ", 1)[1].strip()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)

    def readline(self, timeout=5.0):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("ringmq-kafka-mock said nothing") from None

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = []
        while True:
            ans = self.readline().rstrip("\n")
            out.append(ans)
            if ans == "ok" or ans.startswith("error: "):
                return ans, out[:-1]

    def close(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


@pytest.fixture
def mock():
    m = Mock("--brokers", "3", "--topic", "cars:6", "--topic", "cmds:1")
    yield m
    assert m.close() == 0, m.p.stderr.read()


def produce(bootstrap, topic, msgs, **conf):
    """Produces (key, value, headers) tuples; returns the delivery errors, one per message."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, **conf})
    errs = []
    for k, v, h in msgs:
        p.produce(topic, key=k, value=v, headers=h, on_delivery=lambda e, m: errs.append(e))
    p.flush(20)
    return errs


def consume(bootstrap, topic, partitions, want, timeout=15):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, i, 0) for i in range(partitions)])
    got, end = [], time.time() + timeout
    while len(got) < want and time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m)
    extra_end = time.time() + 0.5  # anything beyond `want` is a duplicate
    while time.time() < extra_end:
        m = c.poll(0.1)
        if m is not None and not m.error():
            got.append(m)
    c.close()
    return got


def test_topics_created_with_partitions(mock):
    out = subprocess.run(["kcat", "-b", mock.bootstrap, "-L", "-J"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    md = json.loads(out.stdout)
    topics = {t["topic"]: len(t["partitions"]) for t in md["topics"]}
    assert topics.get("cars") == 6 and topics.get("cmds") == 1, topics
    assert len(md["brokers"]) == 3


def test_round_trip_keys_headers_order(mock):
    msgs = [(f"car-{i % 5}".encode(), f"{i % 5}:{i // 5}".encode(), [("trip", b"7")]) for i in range(100)]
    assert produce(mock.bootstrap, "cars", msgs) == [None] * 100
    got = consume(mock.bootstrap, "cars", 6, 100)
    assert len(got) == 100
    nxt, part = {}, {}
    for m in got:
        car, seq = m.value().decode().split(":")
        assert m.key() == f"car-{car}".encode()
        assert int(seq) == nxt.get(car, 0), "per-key order"
        nxt[car] = int(seq) + 1
        assert part.setdefault(car, m.partition()) == m.partition(), "one key, one partition"
        assert dict(m.headers())["trip"] == b"7"


def test_kcat_produce_and_consume(mock):
    r = subprocess.run(["kcat", "-b", mock.bootstrap, "-P", "-t", "cmds", "-K", ":"], input="car-1:unlock\n",
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["kcat", "-b", mock.bootstrap, "-C", "-t", "cmds", "-o", "beginning", "-c", "1", "-e",
                        "-f", "%k=%s\n"], capture_output=True, text=True, timeout=20)
    assert r.stdout.strip() == "car-1=unlock", r.stderr


def test_commands_answer_ok_or_error(mock):
    assert mock.cmd("help")[0] == "ok"
    ans, lines = mock.cmd("bootstrap")
    assert ans == "ok" and lines == [mock.bootstrap]
    assert mock.cmd("rtt 1 20")[0] == "ok"
    assert mock.cmd("rtt 1 0")[0] == "ok"
    assert mock.cmd("topic extra 2")[0] == "ok"
    for bad in ["down", "down 0", "down 4", "down x", "up 1 2", "rtt 1", "rtt 1 -5", "error produce 0 _TRANSPORT",
                "error produce 2 NOT_AN_ERROR_NAME", "error nothing 1 _TRANSPORT", "topic bad/name 1",
                "topic t 0", "frobnicate"]:
        ans, _ = mock.cmd(bad)
        assert ans.startswith("error: "), (bad, ans)
    assert mock.p.poll() is None, "bad commands must not kill the mock"


def test_injected_produce_errors_retried_exactly_once(mock):
    assert mock.cmd("error produce 3 NOT_LEADER_FOR_PARTITION")[0] == "ok"
    assert mock.cmd("error produce 1 RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT")[0] == "ok"
    msgs = [(b"car-1", f"1:{i}".encode(), None) for i in range(30)]
    assert produce(mock.bootstrap, "cmds", msgs) == [None] * 30
    got = consume(mock.bootstrap, "cmds", 1, 30)
    assert [m.value() for m in got] == [v for _, v, _ in msgs], "exactly once, in order"


def test_permanent_error_reaches_the_producer(mock):
    assert mock.cmd("error produce 1 TOPIC_AUTHORIZATION_FAILED")[0] == "ok"
    errs = produce(mock.bootstrap, "cmds", [(b"k", b"v", None)])
    assert len(errs) == 1 and errs[0] is not None and errs[0].name() == "TOPIC_AUTHORIZATION_FAILED"


def test_brokers_down_then_up(mock):
    for b in (1, 2, 3):
        assert mock.cmd(f"down {b}")[0] == "ok"
    errs = produce(mock.bootstrap, "cmds", [(b"k", b"lost", None)], **{"message.timeout.ms": 1500})
    assert len(errs) == 1 and errs[0] is not None and errs[0].name() == "_MSG_TIMED_OUT"
    for b in (1, 2, 3):
        assert mock.cmd(f"up {b}")[0] == "ok"
    assert produce(mock.bootstrap, "cmds", [(b"k", b"back", None)]) == [None]
    assert [m.value() for m in consume(mock.bootstrap, "cmds", 1, 1)] == [b"back"]


def test_exits_on_stdin_eof():
    m = Mock()
    m.p.stdin.close()
    assert m.p.wait(10) == 0


def test_bad_arguments():
    for args in (["--brokers", "0"], ["--brokers", "x"], ["--topic", "nocount"], ["--topic", "a/b:2"],
                 ["--topic", "t:0"], ["--what"]):
        r = subprocess.run([MOCK, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        assert r.returncode != 0, args
        assert "ringmq-kafka-mock:" in r.stderr, (args, r.stderr)
        assert "mock cluster at" not in r.stdout
