"""The Kafka side of the Kafka integration tests: librdkafka's mock (embedded in ringmq, or ringmq-kafka-mock where
several ringmq share it) or real Apache Kafka (tools/kafka-local.sh, one cluster per pytest process, a unique
topic and group name per test). pytest main thread only."""
import atexit
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO_ROOT, "tools", "kafka-local.sh")
sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "kafka"))
import kafka_admin  # noqa: E402 (tools/kafka: topic creation and readiness, shared with kafka-local.sh)

# RINGMQ_TEST_KAFKA=mock runs only the mock variants (no JVM); the default runs both.
KINDS = [k for k in os.environ.get("RINGMQ_TEST_KAFKA", "mock,kafka").split(",") if k]
if not set(KINDS) <= {"mock", "kafka"}:
    raise pytest.UsageError(f"RINGMQ_TEST_KAFKA: a list of mock and kafka, not {KINDS!r}")
START_TIMEOUT = 300    # the script's own readiness bound is 180 s; format + JVM start on a loaded machine
TOPIC_TIMEOUT = 60.0
_serial = itertools.count(1)
# the brokers stay in pytest's process group: a runner killing the group on a timeout stops them too
ATTACHED = dict(os.environ, KAFKA_ATTACHED="1")


class RealKafka:
    """One Apache Kafka cluster for the whole pytest process. Tests take unique topic names from topic()."""
    kind = "kafka"

    def __init__(self, path, brokers=1):
        self.dir, self.brokers = str(path), brokers
        if not os.path.exists(os.path.join(REPO_ROOT, "build", "kafka", "lib")):
            pytest.fail("Apache Kafka's jars are missing: run tools/kafka/fetch.sh (make test does)")
        t0 = time.monotonic()
        # log.cleaner.backoff.ms: the cleaner looks for work every 0.5 s, so compaction tests take seconds
        out = subprocess.run([SCRIPT, "start", "--dir", self.dir, "--brokers", str(brokers),
                              "--config", "log.cleaner.backoff.ms=500"], env=ATTACHED,
                             capture_output=True, text=True, timeout=START_TIMEOUT)
        if out.returncode != 0 or not out.stdout.strip().splitlines()[-1:][0].startswith("BOOTSTRAP="):
            pytest.fail(f"tools/kafka-local.sh start failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        self.bootstrap = out.stdout.strip().splitlines()[-1].split("=", 1)[1]
        self.start_seconds = time.monotonic() - t0
        self.adm = kafka_admin.admin(self.bootstrap)

    def create(self, name, partitions=4, **config):
        """A new topic (replication factor min(3, brokers)); config: topic settings, '_' for '.'."""
        spec = f"{name}:{partitions}:" + ",".join(f"{k.replace('_', '.')}={v}" for k, v in config.items())
        kafka_admin.create_topics(self.adm, [spec], self.brokers, time.monotonic() + TOPIC_TIMEOUT)
        return name

    def down(self, kill=False):
        """Every broker stopped (SIGTERM, or SIGKILL with kill), waited for."""
        self._run("stop", *(["--kill"] if kill else []))

    def up(self):
        """The stopped brokers started again with their data, back in the metadata."""
        self._run("resume")

    def _run(self, *args):
        out = subprocess.run([SCRIPT, *args, "--dir", self.dir], capture_output=True, text=True, env=ATTACHED,
                             timeout=START_TIMEOUT)
        if out.returncode != 0:
            pytest.fail(f"tools/kafka-local.sh {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")

    def close(self):
        subprocess.run([SCRIPT, "stop", "--kill", "--dir", self.dir], capture_output=True, timeout=120)


class Side:
    """What one test sees of its Kafka. kind 'mock': topic() returns the base name (the mock creates topics on
    first use), args() is empty (ringmq's embedded cluster) unless shared=True, which starts ringmq-kafka-mock with
    the topics declared so far; kind 'kafka': unique topics on the session's real cluster, a unique group."""

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

    def args(self, shared=False):
        """ringmq's Kafka options: the cluster (none: the embedded one) and, on real Kafka, the test's group."""
        if self.is_real:
            return ["--kafka-brokers", self.real.bootstrap, "--kafka-group", self.group]
        if not shared:
            return []
        return ["--kafka-brokers", self.shared_mock().bootstrap]

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
        self.is_down = True
        if self.is_real:
            self.real.down()
        else:
            for b in (1, 2, 3):
                self.shared_mock().cmd(f"down {b}")

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


_cluster = []


def real_kafka():
    """The process's real cluster, started on first use (a temporary directory) and stopped at exit."""
    if not _cluster:
        path = tempfile.mkdtemp(prefix="ringmq-kafka-")
        k = RealKafka(path)
        print(f"\nreal Kafka at {k.bootstrap}, started in {k.start_seconds:.1f} s", file=sys.stderr)
        _cluster.append(k)

        def close():
            k.close()
            shutil.rmtree(path, ignore_errors=True)
        atexit.register(close)
    return _cluster[0]


def side(request, procs, kind=None):
    """Generator body for a fixture parametrized with KINDS (or of the given kind): the test's Side; a real
    cluster a failed test left stopped is started again for the next test."""
    kind = kind or request.param
    real = real_kafka() if kind == "kafka" else None
    s = Side(kind, procs, real)
    yield s
    if s.is_down and real is not None:
        real.up()
