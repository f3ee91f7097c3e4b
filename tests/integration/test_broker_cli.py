# Integration tests of ringmq's command line (issue 3): the ready line, --help, bad flags and values (one error
# line, exit 2), -c config files, clean exit on SIGINT/SIGTERM. pytest main thread; ringmq-only except signals.
import os
import re
import signal
import subprocess

import pytest

from conftest import RINGMQ_BIN, listening
from mqtt_util import CONNACK, Closed, cid_on_core, connect_packet, wait_until

ringmq_only = pytest.mark.ringmq_only("ringmq's own command line")
FLAGS_IN_HELP = ["--listen", "--cores", "--cpu-list", "--ring-entries", "--bufs-per-core", "--buf-size",
                 "--max-connections", "--max-packet-size", "--max-inflight", "--max-queued", "--max-keepalive",
                 "-c", "-v"]


def run_ringmq(args, timeout=15):
    if not os.path.exists(RINGMQ_BIN):
        pytest.fail(f"ringmq binary not found at {RINGMQ_BIN} (set RINGMQ_BUILD_DIR)")
    return subprocess.run([RINGMQ_BIN] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@ringmq_only
def test_ready_line_names_address_and_cores(broker):
    pat = rf"ringmq: listening on 127\.0\.0\.1:{broker.port} \({broker.cores} cores?\)"
    # the sockets listen a moment before the line is written
    wait_until(lambda: re.search(pat, broker.output()), lambda: f"the ready line; output: {broker.output()[-2000:]}", 5)


@ringmq_only
def test_help_lists_every_flag():
    res = run_ringmq(["--help"])
    assert res.returncode == 0, f"--help exited {res.returncode}: {res.stderr}"
    text = res.stdout + res.stderr
    missing = [f for f in FLAGS_IN_HELP if not re.search(rf"(^|[\s,]){re.escape(f)}\b", text, re.M)]
    assert not missing, f"--help does not mention {missing}:\n{text}"


def bad_flag_cases():
    port = "127.0.0.1:1"   # never bound: each case must fail in argument parsing first
    listen = ["--listen", port]
    return [
        ("unknown_flag", listen + ["--bogus"]),
        ("unknown_short_flag", listen + ["-Z"]),
        ("cores_zero", listen + ["--cores", "0"]),
        ("cores_not_a_number", listen + ["--cores", "two"]),
        ("cores_trailing_garbage", listen + ["--cores", "2x"]),
        ("cores_missing_value", listen + ["--cores"]),
        ("max_connections_negative", listen + ["--max-connections", "-5"]),
        ("max_packet_size_not_a_number", listen + ["--max-packet-size", "big"]),
        ("max_packet_size_overflow", listen + ["--max-packet-size", "99999999999999999999"]),
        ("max_inflight_negative", listen + ["--max-inflight", "-1"]),
        ("max_queued_not_a_number", listen + ["--max-queued", "ten"]),
        ("max_keepalive_over_65535", listen + ["--max-keepalive", "65536"]),
        ("listen_without_port", ["--listen", "127.0.0.1"]),
        ("listen_port_out_of_range", ["--listen", "127.0.0.1:70000"]),
        ("listen_garbage", ["--listen", "not an address"]),
        ("config_file_missing", listen + ["-c", "/nonexistent/ringmq.conf"]),
        ("positional_argument", listen + ["stray"]),
    ]


@ringmq_only
@pytest.mark.parametrize("args", [pytest.param(a, id=n) for n, a in bad_flag_cases()])
def test_bad_flag_exits_2_with_one_error_line(args):
    res = run_ringmq(args)
    assert res.returncode == 2, f"{args}: exit {res.returncode}, stderr {res.stderr!r}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{args}: expected one error line on stderr, got {lines!r}"
    assert "AddressSanitizer" not in res.stderr and "runtime error" not in res.stderr


@ringmq_only
@pytest.mark.parametrize("content", [
    pytest.param("max-connections 5\nno-such-key 1\n", id="unknown_key"),
    pytest.param("max-connections lots\n", id="bad_value"),
    pytest.param("max-connections\n", id="missing_value"),
])
def test_bad_config_file_exits_2(tmp_path, content):
    conf = tmp_path / "bad.conf"
    conf.write_text(content)
    res = run_ringmq(["--listen", "127.0.0.1:1", "-c", str(conf)])
    assert res.returncode == 2, f"exit {res.returncode}, stderr {res.stderr!r}"
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr


@ringmq_only
def test_config_file_values_take_effect(broker_factory, cores, tmp_path):
    conf = tmp_path / "ringmq.conf"
    conf.write_text("# limits for the test\nmax-connections 2\n\nmax-packet-size 4096\n")
    b = broker_factory(cores, args=["-c", str(conf)])
    held = []
    for i in range(2):
        c = b.raw()
        c.connect(cid_on_core(f"cf{i}", i, b.cores))
        held.append(c)
    extra = b.raw()
    refused = False
    try:
        extra.send(connect_packet("cf-extra", 4))
        pkt = extra.expect(CONNACK, 3.0)
        refused = pkt.body[1] != 0
    except (Closed, OSError):
        refused = True
    assert refused, "max-connections from the -c file not applied"
    for c in held:
        c.ping()
        c.close()
    extra.close()


def test_sigint_with_clients_connected_exits_cleanly(broker_factory, cores, clients):
    b = broker_factory(cores)
    for i in range(3):
        c = clients.raw(b)
        c.connect(cid_on_core(f"si{i}", i, b.cores), clean=False)
        c.subscribe("si/#", 1)
    problems = b.stop(signal.SIGINT)
    assert not problems, "\n".join(problems)
    assert listening(b.port) == 0


@ringmq_only
def test_listen_on_busy_port_fails_clearly():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        res = run_ringmq(["--listen", f"127.0.0.1:{port}", "--cores", "1"])
    finally:
        s.close()
    assert res.returncode != 0, "started on a port another socket holds (without SO_REUSEPORT)"
    assert res.stderr.strip(), "no error message"
