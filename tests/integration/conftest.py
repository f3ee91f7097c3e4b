# Broker fixtures for the integration tests: start ringmq (or Debian's mosquitto with RINGMQ_TEST_BROKER=mosquitto)
# on a free loopback port, wait until it serves MQTT, stop it by pid and check a clean exit. pytest main thread only.
import contextlib
import fcntl
import os
import re
import signal
import subprocess
import time

import pytest

from core_rawmqtt import free_port  # noqa: F401 (tests import it from here too)
from mqtt_util import RawClient, Paho, wait_until

BROKER_KIND = os.environ.get("RINGMQ_TEST_BROKER", "ringmq")
if BROKER_KIND not in ("ringmq", "mosquitto"):
    raise pytest.UsageError(f"RINGMQ_TEST_BROKER must be ringmq or mosquitto, not {BROKER_KIND!r}")
IS_MOSQUITTO = BROKER_KIND == "mosquitto"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(REPO_ROOT, "build-asan"))
RINGMQ_BIN = os.path.join(BUILD_DIR, "ringmq")
MOSQUITTO_BIN = "/usr/sbin/mosquitto"
CORE_PARAMS = [1] if IS_MOSQUITTO else [1, 2]

START_TIMEOUT = 15.0   # an ASan build starts slower; bounded all the same
STOP_TIMEOUT = 20.0    # LeakSanitizer runs at exit
TEST_TIMEOUT = 90      # per-test wall-clock bound (SIGALRM), overridable with @pytest.mark.timeout(N)
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def pytest_configure(config):
    config.addinivalue_line("markers", "ringmq_only(reason): ringmq-specific behaviour, skipped against mosquitto")
    config.addinivalue_line("markers", "mosquitto_differs(reason): mosquitto behaves differently from the ringmq contract here; "
                                       "expected to fail (strict) against mosquitto")
    config.addinivalue_line("markers", "timeout(seconds): per-test wall-clock bound")
    config.addinivalue_line("markers", "kafka_private: the test stops real Kafka brokers; it gets a cluster of its "
                                       "own, never the run's shared one (kafka_real.private)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        m = item.get_closest_marker("ringmq_only")
        if m and IS_MOSQUITTO:
            item.add_marker(pytest.mark.skip(reason="ringmq only: " + (m.args[0] if m.args else "")))
        m = item.get_closest_marker("mosquitto_differs")
        if m and IS_MOSQUITTO:
            item.add_marker(pytest.mark.xfail(strict=True, reason="mosquitto differs: " + m.args[0]))


class TestTimedOut(BaseException):
    """Raised by SIGALRM; a BaseException so that no `except Exception` inside a helper can swallow it."""


@pytest.fixture(autouse=True)
def _bounded(request):
    """Every test is bounded in time, even if a wait inside it forgot its own timeout. Only this suite's files:
    other modules in this directory (core, bridge, bench tests) keep their own bounds."""
    if not request.node.fspath.basename.startswith(("test_broker_", "test_security_hardening")):
        yield
        return
    m = request.node.get_closest_marker("timeout")
    limit = int(m.args[0]) if m else TEST_TIMEOUT

    def expired(signum, frame):
        raise TestTimedOut(f"test exceeded its {limit}s bound")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def exclusive(lock_path):
    """Holds an flock on lock_path: pytest-xdist workers of one file run side by side and must not set up a
    shared resource (an npm install in the build dir) at the same time."""
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)




class Broker:
    """A running broker. queue_capacity: how many QoS 1/2 messages an offline session holds (max_queued; for
    mosquitto, max_queued_messages, checked: its in-flight allowance does not apply to an offline client)."""

    def __init__(self, kind, host, port, cores, opts, proc, out_path, err_path):
        self.kind, self.host, self.port, self.cores, self.opts = kind, host, port, cores, opts
        self.proc, self.pid, self.out_path, self.err_path = proc, proc.pid, out_path, err_path
        self.stopped = False

    @property
    def queue_capacity(self):
        q = self.opts.get("max_queued")
        if q is None:
            return None
        return q

    def output(self):
        text = ""
        for p in (self.out_path, self.err_path):
            try:
                with open(p, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def stderr(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def raw(self, version=4, timeout=5.0):
        return RawClient(self.host, self.port, version, timeout)

    def stop(self, sig=signal.SIGTERM):
        """Stop by pid; returns a list of problems (empty when the exit was clean)."""
        if self.stopped:
            return []
        self.stopped = True
        problems = []
        if self.proc.poll() is not None:
            problems.append(f"{self.kind} died during the test with exit code {self.proc.returncode}")
        else:
            os.kill(self.pid, sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
                problems.append(f"{self.kind} did not exit within {STOP_TIMEOUT}s of signal {sig}")
            else:
                if self.proc.returncode != 0:
                    problems.append(f"{self.kind} exited with code {self.proc.returncode} after signal {sig}")
        err = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in err:
                problems.append(f"{self.kind} stderr contains {marker!r}")
        if problems:
            problems.append("---- broker stderr (tail) ----\n" + err[-6000:])
        return problems


def mosquitto_config(port, opts):
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             "log_dest stderr", "log_type error", "log_type warning",
             # MQTT requires one copy per client for overlapping subscriptions; mosquitto 2.0 defaults to copies.
             "allow_duplicate_messages false"]
    mapping = {"max_connections": "max_connections", "max_packet_size": "max_packet_size",
               "max_inflight": "max_inflight_messages", "max_queued": "max_queued_messages",
               "max_keepalive": "max_keepalive"}
    # extra lines (';'-separated) for checking that tests notice a misbehaving broker: e.g.
    # RINGMQ_TEST_MOSQUITTO_EXTRA="queue_qos0_messages true" must make the offline-QoS-0 test fail
    extra = os.environ.get("RINGMQ_TEST_MOSQUITTO_EXTRA", "")
    lines += [ln.strip() for ln in extra.split(";") if ln.strip()]
    for key, val in opts.items():
        if key not in mapping:
            raise ValueError(f"option {key} has no mosquitto equivalent")
        lines.append(f"{mapping[key]} {val}")
    return "\n".join(lines) + "\n"


def ringmq_args(port, cores, opts):
    args = [RINGMQ_BIN, "--listen", f"127.0.0.1:{port}", "--cores", str(cores)]
    for key, val in opts.items():
        args += ["--" + key.replace("_", "-"), str(val)]
    return args


def listening(port):
    """Number of LISTEN sockets on 127.0.0.1:port (one per core with SO_REUSEPORT). Readiness is read from the
    kernel rather than probed with a connection, so no test starts with a probe's close still in flight (and
    mosquitto 2.0.11 miscounts max_connections after any client leaves)."""
    want = f"0100007F:{port:04X}"
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":
                    n += 1
    except OSError:
        pass
    return n


def server_closed(server_port, client_port):
    """True once the server's end of the loopback connection from client_port is gone (neither ESTABLISHED nor
    CLOSE_WAIT in /proc/net/tcp): the broker has handled the client's close and released the connection."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[3] in ("01", "08"):
                return False
    return True


def close_and_wait(sock, server_port, timeout=10.0):
    """Closes a client socket and waits until the broker has closed its end: the event a test needs before it
    relies on the session being offline or the connection slot free."""
    client_port = sock.getsockname()[1]
    sock.close()
    wait_until(lambda: server_closed(server_port, client_port),
               f"the broker on port {server_port} to close the connection from port {client_port}", timeout)


def start_broker(tmp_path, cores=1, args=None, **opts):
    """Start a broker; pytest.fail with its output if it exits or does not listen on every core in time."""
    for attempt in range(3):   # mosquitto: the free port may be taken between free_port() and its bind
        # ringmq listens on a port the kernel picks (port 0) and says which in its ready line: a port chosen here
        # could be chosen by a parallel test too, and with SO_REUSEPORT two brokers would silently share it.
        port = free_port() if IS_MOSQUITTO else 0
        n = len(list(tmp_path.glob("broker-*.out")))
        out_path, err_path = tmp_path / f"broker-{n}.out", tmp_path / f"broker-{n}.err"
        if IS_MOSQUITTO:
            conf = tmp_path / f"mosquitto-{n}.conf"
            conf.write_text(mosquitto_config(port, opts))
            cmd = [MOSQUITTO_BIN, "-c", str(conf)]
        else:
            if not os.path.exists(RINGMQ_BIN):
                pytest.fail(f"ringmq binary not found at {RINGMQ_BIN}: build it (cmake --build build-asan) and set "
                            f"RINGMQ_BUILD_DIR, or run against mosquitto with RINGMQ_TEST_BROKER=mosquitto")
            cmd = ringmq_args(port, cores, opts) + list(args or [])
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        b = Broker(BROKER_KIND, "127.0.0.1", port, cores, dict(opts), proc, out_path, err_path)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if IS_MOSQUITTO:
                if listening(port) >= 1:
                    return b
            else:
                # printed once every core's listener listens
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", out_path.read_text(errors="replace"))
                if m:
                    b.port = int(m.group(1))
                    return b
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
            pytest.fail(f"{' '.join(cmd)} had {listening(port)} listening sockets after {START_TIMEOUT}s "
                        f"(expected {cores}); output:\n{b.output()[-6000:]}")
        if "in use" in b.output() and attempt < 2:
            continue
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode} at start-up; output:\n{b.output()[-6000:]}")


@pytest.fixture(params=CORE_PARAMS, ids=lambda n: f"cores{n}")
def cores(request):
    return request.param


@pytest.fixture
def broker_factory(tmp_path):
    """start(cores=1, **opts) -> Broker; opts: max_connections, max_packet_size, max_inflight, max_queued,
    max_keepalive. Every broker started is stopped at teardown, which fails on an unclean exit."""
    started = []

    def start(cores=1, args=None, **opts):
        b = start_broker(tmp_path, cores, args, **opts)
        started.append(b)
        return b
    yield start
    problems = []
    for b in started:
        problems += b.stop()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def broker(broker_factory, cores):
    return broker_factory(cores)


@pytest.fixture(scope="module", params=CORE_PARAMS, ids=lambda n: f"cores{n}")
def shared_broker(request, tmp_path_factory):
    """One broker for a whole module (per core count), for many short tests that each leave it as they found it
    (malformed input: the broker must survive all of them in a row). Its clean exit is checked at module end."""
    b = start_broker(tmp_path_factory.mktemp("shared"), request.param)
    yield b
    problems = b.stop()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def clients():
    """Tracks raw and paho clients created in a test and closes them at teardown (before the broker stops)."""
    made = []

    class Factory:
        def raw(self, b, version=4, timeout=5.0):
            c = RawClient(b.host, b.port, version, timeout)
            made.append(c)
            return c

        def paho(self, b, client_id, version=4, **kw):
            c = Paho(b.host, b.port, client_id, version, **kw)
            made.append(c)
            return c

        def track(self, c):
            made.append(c)
            return c
    yield Factory()
    for c in reversed(made):
        try:
            c.stop() if hasattr(c, "stop") else c.close()
        except Exception:
            pass
