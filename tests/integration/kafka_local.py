"""A real Apache Kafka for the failure-mode tests (tools/kafka-local.sh): 1 or 3 brokers, optional SASL users,
TLS listener and StandardAuthorizer; topic, ACL and broker control; reading a topic back; ringmq with its
/metrics. pytest main thread only; every process started here is stopped by pid."""
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

from core_rawmqtt import free_port
from test_kafka_e2e import Proc, RINGMQ

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO_ROOT, "tools", "kafka-local.sh")
LIB = os.path.join(REPO_ROOT, "build", "kafka", "lib")
sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "kafka"))
import kafka_admin  # noqa: E402 (tools/kafka: topic creation and readiness, shared with kafka-local.sh)

START_TIMEOUT = 300     # format + JVM start of 3 brokers on a loaded 2-core machine; the script bounds itself
TOOL_TIMEOUT = 120      # one Kafka admin tool run (a JVM)
TOPIC_TIMEOUT = 60.0
JAVA = ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m", "-cp", os.path.join(LIB, "*")]


def make_ca(path):
    """A test CA and a server certificate for 127.0.0.1 made with openssl; returns (ca.pem, server.pem), the
    latter holding the unencrypted PKCS#8 key, the certificate and the CA (what kafka-local.sh --tls takes)."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=path, timeout=60)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-noenc", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=ringmq-test-ca")
    ossl("req", "-newkey", "rsa:2048", "-noenc", "-keyout", "server.key", "-out", "server.csr", "-subj",
         "/CN=127.0.0.1")
    (path / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
         "server.crt", "-days", "2", "-extfile", "ext")
    pem = path / "server.pem"
    pem.write_text("".join((path / f).read_text() for f in ("server.key", "server.crt", "ca.pem")))
    return str(path / "ca.pem"), str(pem)


class LocalKafka:
    """tools/kafka-local.sh start ... in a directory of its own; close() stops every broker by pid."""

    def __init__(self, path, brokers=1, users=(), tls_pem=None, authorizer=False, config=()):
        if not os.path.isdir(LIB):
            pytest.fail("Apache Kafka's jars are missing: run tools/kafka/fetch.sh (make test does)")
        self.dir, self.brokers = str(path), brokers
        args = [SCRIPT, "start", "--dir", self.dir, "--brokers", str(brokers)]
        if users or tls_pem:
            args.append("--sasl")
        for u in users:
            args += ["--user", u]
        if tls_pem:
            args += ["--tls", tls_pem]
        if authorizer:
            args.append("--authorizer")
        for c in config:
            args += ["--config", c]
        t0 = time.monotonic()
        for attempt in range(3):   # a free port the script picked may be taken before the broker binds it
            out = subprocess.run(args, capture_output=True, text=True, timeout=START_TIMEOUT)
            if out.returncode == 0 or "Address already in use" not in out.stderr:
                break
        if out.returncode != 0:
            subprocess.run([SCRIPT, "stop", "--kill", "--dir", self.dir], capture_output=True, timeout=TOOL_TIMEOUT)
            pytest.fail(f"tools/kafka-local.sh start failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        found = dict(re.findall(r"^([A-Z_]+)=(\S+)$", out.stdout, re.M))
        self.bootstrap = found["BOOTSTRAP"]
        self.sasl_bootstrap, self.tls_bootstrap = found.get("SASL_BOOTSTRAP"), found.get("TLS_BOOTSTRAP")
        self.start_seconds = time.monotonic() - t0
        print(f"\nreal Kafka ({brokers} broker{'s' if brokers > 1 else ''}) at {self.bootstrap}, started in "
              f"{self.start_seconds:.1f} s", file=sys.stderr)
        self.adm = kafka_admin.admin(self.bootstrap)

    def create(self, name, partitions=1, **config):
        """A new topic (replication factor min(3, brokers)); config: topic settings, '_' for '.'."""
        spec = f"{name}:{partitions}:" + ",".join(f"{k.replace('_', '.')}={v}" for k, v in config.items())
        kafka_admin.create_topics(self.adm, [spec], self.brokers, time.monotonic() + TOPIC_TIMEOUT)
        return name

    def delete(self, name):
        kafka_admin.delete_topics(self.adm, [name], time.monotonic() + TOPIC_TIMEOUT)

    def tool(self, cls, *args):
        """An Apache Kafka admin tool (org.apache.kafka.tools.CLS, e.g. reassign.ReassignPartitionsCommand) against the PLAINTEXT listener (a super user)."""
        out = subprocess.run([*JAVA, f"org.apache.kafka.tools.{cls}", "--bootstrap-server", self.bootstrap, *args],
                             capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        assert out.returncode == 0, f"{cls} {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def allow(self, user, topic, *operations, group=None):
        ops = sum((["--operation", op] for op in operations), [])
        target = ["--group", group] if group else ["--topic", topic]
        self.tool("AclCommand", "--add", "--allow-principal", f"User:{user}", *ops, *target)

    def node(self, cmd, n, kill=False):
        """stop (SIGTERM, or SIGKILL with kill) or resume broker n, waited for."""
        args = [SCRIPT, cmd, "--dir", self.dir, "--node", str(n)] + (["--kill"] if kill else [])
        out = subprocess.run(args, capture_output=True, text=True, timeout=START_TIMEOUT)
        assert out.returncode == 0, f"kafka-local.sh {cmd} node {n} failed:\n{out.stdout}\n{out.stderr}"

    def records(self, topic, timeout=60.0):
        """Every record of the topic, partition by partition in offset order: [(partition, key, value)]."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"check-{os.getpid()}-{time.monotonic()}",
                      "enable.auto.commit": False, "log_level": 0})
        try:
            md = c.list_topics(topic, timeout=30).topics[topic]
            parts = sorted(md.partitions)
            ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in parts}
            c.assign([TopicPartition(topic, p, lo) for p, (lo, hi) in ends.items() if hi > lo])
            left = {p for p, (lo, hi) in ends.items() if hi > lo}
            got = {p: [] for p in parts}
            deadline = time.monotonic() + timeout
            while left and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None or m.error():
                    continue
                got[m.partition()].append((m.partition(), m.key(), m.value()))
                if m.offset() + 1 >= ends[m.partition()][1]:
                    left.discard(m.partition())
            assert not left, f"{topic}: partitions {left} not read to their end within {timeout}s"
            return [r for p in parts for r in got[p]]
        finally:
            c.close()

    def close(self):
        subprocess.run([SCRIPT, "stop", "--kill", "--dir", self.dir], capture_output=True, timeout=TOOL_TIMEOUT)


@pytest.fixture
def procs():
    """The ringmq processes a test started (append them): stopped by pid at teardown."""
    started = []
    yield started
    for p in started:
        p.stop()


class Ringmq(Proc):
    """ringmq with /metrics; started: listening (or exited: check exit_code())."""

    def __init__(self, *args, cores=1, wait=True):
        self.port, self.mport = free_port(), free_port()
        super().__init__([RINGMQ, "--listen", f"127.0.0.1:{self.port}", "--metrics", f"127.0.0.1:{self.mport}",
                          "--cores", str(cores), *args])
        if wait:
            self.wait_line("listening on", timeout=60)

    def stderr(self):
        return "".join(self.err)

    def wait_err(self, needle, timeout=60.0):
        """Waits for a stderr line holding needle (the reader thread appends them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in list(self.err):
                if needle in ln:
                    return ln.strip()
            if self.p.poll() is not None and not any(needle in ln for ln in self.err):
                break
            time.sleep(0.05)   # polls the reader thread's list; the line is the event waited for
        raise AssertionError(f"no stderr line with {needle!r} within {timeout}s:\n{self.stderr()[-3000:]}")

    def exit_code(self, timeout=60.0):
        return self.p.wait(timeout)

    def wait_metric(self, name, label, want, timeout=30.0, at_least=False):
        """Waits until the figure reaches want (/metrics is a per-tick snapshot) and asserts it is exactly want
        (or, with at_least, not below it)."""
        deadline = time.monotonic() + timeout
        got = self.metric(name, label)
        while got < want and time.monotonic() < deadline:
            time.sleep(0.1)   # the next metrics tick is the event; nothing to block on over HTTP
            got = self.metric(name, label)
        assert got == want or (at_least and got > want), f"{name}{{{label}}} = {got}, expected {want}"

    def metric(self, name, label=""):
        """Sum over the cores of a /metrics family (optionally only rows holding label)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=10) as f:
            text = f.read().decode()
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                   if ln.startswith(name + "{") and label in ln)
