"""ringmq command line: --help lists every flag, bad input gets one clear line and exit 2, the config file
reports the line of an error, the ready line, and a clean exit 0 on SIGINT/SIGTERM (ASan build: no leaks)."""
import os
import signal
import subprocess
import tempfile

import pytest

from core_rawmqtt import BINARY, Broker, open_session, DISCONNECT

FLAGS = ["--listen", "--cores", "--cpu-list", "--ring-entries", "--bufs-per-core", "--buf-size",
         "--batch-wait-us", "--max-connections", "--max-packet-size", "--max-inflight", "--max-queued",
         "--max-keepalive", "-c FILE", "-v"]


def run(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30)


def test_help_lists_every_flag():
    r = run("--help")
    assert r.returncode == 0
    for f in FLAGS:
        assert f in r.stdout, f


@pytest.mark.parametrize("args,needle", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--cores", "0"], "--cores"),
    (["--cores", "two"], "--cores"),
    (["--listen", "localhost"], "--listen"),
    (["--listen", "127.0.0.1:70000"], "--listen"),
    (["--ring-entries", "1000"], "--ring-entries"),
    (["--max-inflight", "-3"], "--max-inflight"),
    (["--batch-wait-us", "20000"], "--batch-wait-us"),
    (["--cpu-list", "x"], "--cpu-list"),
    (["--cores"], "needs a value"),
    (["stray"], "unknown option 'stray'"),
])
def test_bad_flags_exit_2_with_one_line(args, needle):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]


def test_config_file_errors_name_the_line():
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("# ringmq\ncores 1\nmax-queued 10\nfrobnicate yes\n")
    try:
        r = run("-c", f.name)
    finally:
        os.unlink(f.name)
    assert r.returncode == 2
    assert f"{f.name}:4: unknown key 'frobnicate'" in r.stderr


def test_config_file_is_applied():
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("max-keepalive 7   # seconds\n")
    try:
        b = Broker("-c", f.name)
        # v5 client asking for 100 s is told 7 s (Server Keep Alive, property 0x13).
        cl = open_session(b.port, "cfg-ka", version=5, keepalive=100)
        cl.send(DISCONNECT)
        cl.close()
        assert b.stop() == 0
    finally:
        os.unlink(f.name)


def test_unbindable_address_is_one_line_exit_1():
    # 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails with EADDRNOTAVAIL.
    r = run("--listen", "192.0.2.1:1883")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "listen 192.0.2.1:1883" in lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("cores", [1, 2])
def test_signal_stops_cleanly(sig, cores):
    b = Broker(cores=cores)
    cl = open_session(b.port, "sig-client", version=4, clean=False)
    b.proc.send_signal(sig)
    assert b.stop() == 0, b.stderr
    assert "ERROR: AddressSanitizer" not in b.stderr
    assert "LeakSanitizer" not in b.stderr
    cl.close()


def test_ipv6_listen():
    import socket
    from core_rawmqtt import free_port, connect, Client
    port = free_port()
    p = subprocess.Popen([BINARY, "--listen", f"[::1]:{port}", "--cores", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = ""
        while "listening" not in line:  # the bridge may print its own lines first
            line = p.stdout.readline()
            assert line, "exited before listening"
        assert f"listening on [::1]:{port} (1 cores)" in line
        s = socket.create_connection(("::1", port), timeout=5)
        s.sendall(connect("v6", version=4))
        assert s.recv(4)[:2] == b"\x20\x02"
        s.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        p.stdout.close()
        p.stderr.close()
