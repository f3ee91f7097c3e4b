# ringmq under systemd's notification protocol, without systemd: the test is the manager. It binds a unix datagram
# socket, starts ringmq with NOTIFY_SOCKET and WATCHDOG_USEC pointing at it, and reads what a service manager would:
# READY=1 once MQTT is served, STATUS= lines that follow the traffic, WATCHDOG=1 pings, STOPPING=1 on SIGTERM.
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import RINGMQ_BIN, free_port
from mqtt_util import BackgroundPublisher, Paho

WATCHDOG_USEC = 1_000_000   # ringmq then checks its cores every 250 ms
STATUS_WAIT = 15.0          # STATUS= comes every 5 s


class Manager:
    """The systemd side of sd_notify: one datagram per notification, KEY=VALUE lines."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path
        self.seen = []

    def next(self, timeout):
        self.sock.settimeout(timeout)
        msg = self.sock.recv(4096).decode()
        self.seen.append(msg)
        return msg

    def wait_for(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.next(max(0.05, end - time.monotonic()))
            except socket.timeout:
                break
            if pred(msg):
                return msg
        pytest.fail(f"no {what} within {timeout} s; got {self.seen}")


@pytest.fixture
def notified(tmp_path):
    mgr = Manager(str(tmp_path / "notify"))
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=mgr.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    env.pop("WATCHDOG_PID", None)  # systemd sets it to the main pid, unknown before the start: absent means us
    log = open(tmp_path / "ringmq.log", "w+")
    proc = subprocess.Popen([RINGMQ_BIN, "--listen", f"127.0.0.1:{port}", "--cores", "2", "--kafka", "off"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield mgr, proc, port, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
        mgr.sock.close()


def test_ready_status_watchdog_stopping(notified):
    mgr, proc, port, log = notified
    mgr.wait_for(lambda m: "READY=1" in m.split("\n"), 20, "READY=1")
    # READY=1 means served: a connection made right after it gets its CONNACK.
    pub = Paho("127.0.0.1", port, "notify-pub")
    pub.connect()
    first = mgr.wait_for(lambda m: m.startswith("STATUS="), 5, "a STATUS= line")
    assert re.search(r"\d+ connections, \d+ msg/s in, \d+ msg/s out, Kafka off", first), first
    mgr.wait_for(lambda m: m == "WATCHDOG=1", 3, "WATCHDOG=1")

    with BackgroundPublisher(pub):
        # The next STATUS= counts the connection and a non-zero inbound rate; the pings go on meanwhile.
        busy = mgr.wait_for(lambda m: re.match(r"STATUS=1 connections, [1-9]\d* msg/s in", m), STATUS_WAIT,
                            "a STATUS= with 1 connection and traffic")
        pings = [m for m in mgr.seen if m == "WATCHDOG=1"]
        assert len(pings) >= 4, f"watchdog pings stopped while every core ran: {mgr.seen}"
    pub.c.disconnect()

    proc.send_signal(signal.SIGTERM)
    stopping = mgr.wait_for(lambda m: "STOPPING=1" in m.split("\n"), 10, "STOPPING=1")
    assert proc.wait(timeout=20) == 0
    log.seek(0)
    out = log.read()
    assert "(2 cores)" in out, out
    assert busy and stopping


def test_bad_notify_socket_is_one_clear_error(tmp_path):
    env = dict(os.environ, NOTIFY_SOCKET="relative/path")
    p = subprocess.run([RINGMQ_BIN, "--listen", f"127.0.0.1:{free_port()}", "--kafka", "off"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "NOTIFY_SOCKET 'relative/path'" in p.stderr, (p.returncode, p.stderr)


def test_without_notify_socket_nothing_changes(tmp_path):
    """No NOTIFY_SOCKET (a plain shell): the broker starts and stops as it always did, with the default cores."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    proc = subprocess.Popen([RINGMQ_BIN, "--listen", f"127.0.0.1:{port}", "--kafka", "off"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stdout.readline()
            assert line, "ringmq exited before listening"
        ncpu = len(os.sched_getaffinity(0))
        assert f"({ncpu} cores: the CPUs in the affinity mask" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
