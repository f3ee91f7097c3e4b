"""The Kafka side of the Kafka integration tests: librdkafka's mock (embedded in ringmq, or ringmq-kafka-mock where
several ringmq share it) or real Apache Kafka (tools/kafka-local.sh). Real Kafka: one broker shared by every pytest
process of a ctest run (the kafka_shared fixture runs `kafka_real.py start DIR` and sets RINGMQ_KAFKA_SHARED=DIR;
run by hand, a pytest process starts its own), a unique topic and group name per test; a test that stops brokers
asks for a private cluster (@private), and the failure-mode files start their own (RealKafka: 3 brokers, SASL, TLS,
authorizer). Also a test CA (make_ca). pytest main thread only; every broker started here is stopped by pid."""
import atexit
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO_ROOT, "tools", "kafka-local.sh")
LIB = os.path.join(REPO_ROOT, "build", "kafka", "lib")
sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "kafka"))
import kafka_admin  # noqa: E402 (tools/kafka: topic creation and readiness, shared with kafka-local.sh)

# RINGMQ_TEST_KAFKA=mock runs only the mock variants (no JVM); the default runs both.
KINDS = [k for k in os.environ.get("RINGMQ_TEST_KAFKA", "mock,kafka").split(",") if k]
if not set(KINDS) <= {"mock", "kafka"}:
    raise pytest.UsageError(f"RINGMQ_TEST_KAFKA: a list of mock and kafka, not {KINDS!r}")
SHARED_ENV = "RINGMQ_KAFKA_SHARED"   # the directory of the run's shared cluster (kafka_real.py start DIR)
START_TIMEOUT = 300    # the script's own readiness bound is 180 s; format + JVM start of 3 brokers on a loaded machine
TOOL_TIMEOUT = 120     # one Kafka admin tool run (a JVM)
TOPIC_TIMEOUT = 60.0
# log.cleaner.backoff.ms: the cleaner looks for work every 0.5 s, so compaction tests take seconds
TEST_CONFIG = ("log.cleaner.backoff.ms=500",)
# the admin tools' JVMs map the brokers' class-data archive too (same class path): a tool starts in half the CPU
CDS = os.path.join(os.path.dirname(LIB), "kafka-cds.jsa")
JAVA = ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m", "-Xshare:auto",
        *([f"-XX:SharedArchiveFile={CDS}"] if os.path.exists(CDS) else []), "-cp", os.path.join(LIB, "*")]
_serial = itertools.count(1)
# the brokers stay in pytest's process group: a runner killing the group on a timeout stops them too
ATTACHED = dict(os.environ, KAFKA_ATTACHED="1")
# marks a test that stops or restarts brokers (Side.down/up on real Kafka): it gets a cluster of its own
private = pytest.mark.kafka_private


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


LEADER_MOVING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


def watermarks(c, topic, p, timeout):
    """(low, high) of partition p. A partition whose leader is moving (brokers just restarted) answers
    NOT_LEADER / LEADER_NOT_AVAILABLE until the new leader is known: asked again until timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        except KafkaException as e:
            if e.args[0].code() not in LEADER_MOVING or time.monotonic() > deadline:
                raise
            time.sleep(0.2)   # the metadata refresh is the event; the client offers no wait on it


class RealKafka:
    """An Apache Kafka cluster: started here (tools/kafka-local.sh start in directory path: 1 or 3 brokers,
    optional SASL users, TLS listener and StandardAuthorizer; close() stops every broker by pid), or attached to one
    another process started (attach(): shared=True, it can be neither stopped nor closed from here)."""
    kind = "kafka"
    shared = False

    def __init__(self, path, brokers=1, users=(), tls_pem=None, authorizer=False, config=(), partitions=4):
        if not os.path.isdir(LIB):
            pytest.fail("Apache Kafka's jars are missing: run tools/kafka/fetch.sh (make test does)")
        self.dir, self.brokers, self.partitions = str(path), brokers, partitions
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
            out = subprocess.run(args, capture_output=True, text=True, env=ATTACHED, timeout=START_TIMEOUT)
            if out.returncode == 0 or "Address already in use" not in out.stderr:
                break
        if out.returncode != 0:
            self.close()
            pytest.fail(f"tools/kafka-local.sh start failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        found = dict(re.findall(r"^([A-Z_]+)=(\S+)$", out.stdout, re.M))
        self.bootstrap = found["BOOTSTRAP"]
        self.sasl_bootstrap, self.tls_bootstrap = found.get("SASL_BOOTSTRAP"), found.get("TLS_BOOTSTRAP")
        self.start_seconds = time.monotonic() - t0
        print(f"\nreal Kafka ({brokers} broker{'s' if brokers > 1 else ''}) at {self.bootstrap}, started in "
              f"{self.start_seconds:.1f} s", file=sys.stderr)
        self.adm = kafka_admin.admin(self.bootstrap)

    @classmethod
    def attach(cls, path):
        """The running cluster `kafka_real.py start PATH` started (ctest's kafka_shared fixture)."""
        k = cls.__new__(cls)
        k.dir, k.brokers, k.partitions, k.shared = str(path), 1, 4, True
        try:
            with open(os.path.join(k.dir, "bootstrap")) as f:
                k.bootstrap = f.read().strip()
        except OSError as e:
            pytest.fail(f"{SHARED_ENV}={path}: no shared cluster there ({e}); run: kafka_real.py start {path}")
        k.sasl_bootstrap = k.tls_bootstrap = None
        k.adm = kafka_admin.admin(k.bootstrap)
        kafka_admin.wait_brokers(k.adm, 1, time.monotonic() + TOPIC_TIMEOUT)
        return k

    def create(self, name, partitions=None, **config):
        """A new topic (replication factor min(3, brokers)); config: topic settings, '_' for '.'."""
        spec = f"{name}:{partitions or self.partitions}:" + ",".join(
            f"{k.replace('_', '.')}={v}" for k, v in config.items())
        kafka_admin.create_topics(self.adm, [spec], self.brokers, time.monotonic() + TOPIC_TIMEOUT)
        return name

    def delete(self, name):
        kafka_admin.delete_topics(self.adm, [name], time.monotonic() + TOPIC_TIMEOUT)

    def tool(self, cls, *args):
        """An Apache Kafka admin tool (org.apache.kafka.tools.CLS, e.g. reassign.ReassignPartitionsCommand)
        against the PLAINTEXT listener (a super user)."""
        out = subprocess.run([*JAVA, f"org.apache.kafka.tools.{cls}", "--bootstrap-server", self.bootstrap, *args],
                             capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        assert out.returncode == 0, f"{cls} {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def allow(self, user, topic, *operations, group=None):
        ops = sum((["--operation", op] for op in operations), [])
        target = ["--group", group] if group else ["--topic", topic]
        self.tool("AclCommand", "--add", "--allow-principal", f"User:{user}", *ops, *target)

    def down(self, kill=False):
        """Every broker stopped (SIGTERM, or SIGKILL with kill), waited for."""
        self._run("stop", *(["--kill"] if kill else []))

    def up(self):
        """The stopped brokers started again with their data, back in the metadata."""
        self._run("resume")

    def node(self, cmd, n, kill=False):
        """stop (SIGTERM, or SIGKILL with kill) or resume broker n, waited for."""
        self._run(cmd, "--node", str(n), *(["--kill"] if kill else []))

    def _run(self, *args):
        if self.shared:
            pytest.fail(f"kafka-local.sh {args[0]} on the shared cluster: the test must ask for a private one "
                        "(@kafka_real.private)")
        out = subprocess.run([SCRIPT, *args, "--dir", self.dir], capture_output=True, text=True, env=ATTACHED,
                             timeout=START_TIMEOUT)
        if out.returncode != 0:
            pytest.fail(f"tools/kafka-local.sh {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")

    def records(self, topic, timeout=60.0):
        """Every record of the topic, partition by partition in offset order: [(partition, key, value)]."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"check-{os.getpid()}-{time.monotonic()}",
                      "enable.auto.commit": False, "log_level": 0})
        try:
            md = c.list_topics(topic, timeout=30).topics[topic]
            parts = sorted(md.partitions)
            ends = {p: watermarks(c, topic, p, timeout) for p in parts}
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
        if not self.shared:
            subprocess.run([SCRIPT, "stop", "--kill", "--dir", self.dir], capture_output=True, timeout=TOOL_TIMEOUT)


class Side:
    """What one test sees of its Kafka. kind 'mock': topic() returns the base name (the mock creates topics on
    first use), args() is empty (ringmq's embedded cluster) unless shared=True, which starts ringmq-kafka-mock with
    the topics declared so far; kind 'kafka': unique topics on the real cluster (real_kafka()), a unique group."""

    def __init__(self, kind, procs, real=None):
        self.kind, self.procs, self.real, self.mock = kind, procs, real, None
        self.specs, self.is_down = [], False
        self.group = "ringmq" if kind == "mock" else f"ringmq-{os.getpid()}-{next(_serial)}"

    @property
    def is_real(self):
        return self.kind == "kafka"

    def unique(self, base):
        """A name no other test uses on the shared real cluster (the base itself on the mock)."""
        return f"{base}-{os.getpid()}-{next(_serial)}" if self.is_real else base

    def create(self, name, partitions=4, **config):
        """Creates topic name (real Kafka does not auto-create); the mock: declared for ringmq-kafka-mock."""
        if self.is_real:
            self.real.create(name, partitions, **config)
        else:
            self.specs.append(f"{name}:{partitions}")
        return name

    def topic(self, base, partitions=4, **config):
        return self.create(self.unique(base), partitions, **config)

    @property
    def group_args(self):
        """ringmq's consumer-group settings for this Kafka. The mock's coordinator completes a join to a live group
        session.timeout.ms - 1000 after it (ringmq's default 10 s: 9 s for each consumer after the first), so its
        tests give their consumers 4 s (3 s per join; the margin of 1 s before an unanswered member is dropped
        stays the mock's). Real Kafka completes a join once the members rejoin: the default stays."""
        return [] if self.is_real else ["-X", "session.timeout.ms=4000", "-X", "heartbeat.interval.ms=500"]

    def args(self, shared=False):
        """ringmq's Kafka options: the cluster (none: the embedded one), its group settings and, on real Kafka,
        the test's group."""
        if self.is_real:
            return ["--kafka-brokers", self.real.bootstrap, "--kafka-group", self.group]
        if not shared:
            return self.group_args
        return ["--kafka-brokers", self.shared_mock().bootstrap] + self.group_args

    def shared_mock(self):
        if self.mock is None:
            from test_kafka_e2e import MockKafka
            self.mock = MockKafka(*self.specs)
            self.procs.append(self.mock)
        return self.mock

    @property
    def bootstrap(self):
        return self.real.bootstrap if self.is_real else self.shared_mock().bootstrap

    def down(self):
        """Every broker unreachable: the mock's brokers taken down, or the real cluster's JVMs stopped."""
        if self.is_real:
            self.real.down()
        else:
            for b in (1, 2, 3):
                self.shared_mock().cmd(f"down {b}")
        self.is_down = True

    def up(self):
        if self.is_real:
            self.real.up()
        else:
            for b in (1, 2, 3):
                self.shared_mock().cmd(f"up {b}")
        self.is_down = False


def mock_only(why):
    """Marks a test that takes the `kafka` fixture to run on the mock only; why: the reason, for the reader."""
    assert why
    return pytest.mark.parametrize("kafka", ["mock"], indirect=True)


_clusters = {}


def real_kafka(private=False):
    """The run's shared cluster ($RINGMQ_KAFKA_SHARED), or without it the process's own; with private, a cluster
    this process alone uses, which its tests may stop. Started on first use and stopped at exit."""
    key = "private" if private or not os.environ.get(SHARED_ENV) else "shared"
    if key not in _clusters:
        if key == "shared":
            _clusters[key] = RealKafka.attach(os.environ[SHARED_ENV])
        else:
            path = tempfile.mkdtemp(prefix="ringmq-kafka-")
            k = _clusters[key] = RealKafka(path, config=TEST_CONFIG)

            def close():
                k.close()
                shutil.rmtree(path, ignore_errors=True)
            atexit.register(close)
    return _clusters[key]


def side(request, procs, kind=None):
    """Generator body for a fixture parametrized with KINDS (or of the given kind): the test's Side, on a private
    real cluster if the test is marked @private; a real cluster a failed test left stopped is started again."""
    kind = kind or request.param
    real = real_kafka(request.node.get_closest_marker("kafka_private") is not None) if kind == "kafka" else None
    s = Side(kind, procs, real)
    yield s
    if s.is_down and real is not None:
        real.up()


def main(argv):
    """kafka_real.py start DIR | stop DIR: the shared cluster of a ctest run (fixture kafka_shared). start stops
    what a killed run left in DIR first, and does nothing when RINGMQ_TEST_KAFKA leaves real Kafka out."""
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: kafka_real.py start|stop DIR", file=sys.stderr)
        return 2
    cmd, path = argv[1], argv[2]
    stop = subprocess.run([SCRIPT, "stop", "--kill", "--dir", path], timeout=TOOL_TIMEOUT)
    if cmd == "stop" or "kafka" not in KINDS:
        return stop.returncode
    args = [SCRIPT, "start", "--dir", path] + sum((["--config", c] for c in TEST_CONFIG), [])
    return subprocess.run(args, timeout=START_TIMEOUT).returncode   # detached: the brokers outlive this process


if __name__ == "__main__":
    sys.exit(main(sys.argv))
