# Integration test for ringmq-bench: short runs against a Debian mosquitto started on a free loopback port.
# Run by ctest with /usr/bin/python3 -m pytest; every process started here is stopped by pid.
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from mqtt_util import wait_until

BUILD = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BENCH = os.path.join(BUILD, "ringmq-bench")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("mosquitto exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not listen on %d" % port)


def mosquitto_log_has(tmp, needle):
    with open(os.path.join(tmp, "mosquitto.log"), errors="replace") as f:
        return needle in f.read()


@pytest.fixture
def mosquitto():
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto not installed (Debian package mosquitto)")
    tmp = tempfile.mkdtemp(prefix="rmqb-test-")
    port = free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        # the default log types (peer addresses: notice) plus subscriptions, which tests wait for
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
                "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                "log_type subscribe\n" % port)
    log = open(os.path.join(tmp, "mosquitto.log"), "w")
    proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=log, stderr=log)
    try:
        wait_listening(port, proc)
        yield port, proc, tmp
    finally:
        log.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def bench(*args, timeout=60):
    return subprocess.run([BENCH, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_pubsub_qos0_and_qos1_report_no_loss_at_a_modest_rate(mosquitto):
    port, proc, tmp = mosquitto
    for qos in (0, 1):
        out = os.path.join(tmp, "r%d.json" % qos)
        r = bench("pubsub", "--port", port, "--pubs", 5, "--subs", 2, "--filter", "bench/+", "--qos", qos,
                  "--rate", 200, "--warmup", 0.5, "--duration", 2, "--json", out,
                  "--broker-pid", proc.pid)
        assert r.returncode == 0, r.stdout + r.stderr
        with open(out) as f:
            rep = json.load(f)
        # 5 publishers x 200/s x 2.5 s, delivered to 2 subscribers each.
        assert 2400 <= rep["sent"] <= 2600
        assert rep["received"] > 0
        assert rep["expected"] == rep["sent"] * 2
        assert rep["lost"] == 0 and rep["duplicated"] == 0 and rep["out_of_order"] == 0
        assert rep["received"] == rep["expected"]
        assert abs(rep["recv_rate"] - 2000) < 300, rep["recv_rate"]
        lat = rep["latency"]
        assert lat["count"] > 0 and 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
        assert rep["broker_cpu_s"] >= 0 and rep["broker_rss_kb"] > 0
        if qos == 1:
            assert rep["acked"] == rep["sent"]
        assert "lost 0 (0.000 %)" in r.stdout
        assert "recv" in r.stderr and "p99" in r.stderr  # the live progress line


def test_standalone_sub_counts_what_mosquitto_pub_sends(mosquitto):
    """A message that is not ours is counted as foreign, never as loss; ours from a separate pub is measured."""
    port, _, tmp = mosquitto
    out = os.path.join(tmp, "sub.json")
    sub = subprocess.Popen([BENCH, "sub", "--port", str(port), "--clients", "1", "--filter", "bench/#",
                            "--warmup", "0", "--duration", "2.5", "--json", out, "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: mosquitto_log_has(tmp, " bench/#"), "the bench subscriber's SUBSCRIBE")
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "bench/x", "-m", "not a stamp"], check=True,
                       timeout=10)
        pub_out = os.path.join(tmp, "pub.json")
        r = bench("pub", "--port", port, "--clients", 2, "--rate", 100, "--warmup", 0, "--duration", 1,
                  "--json", pub_out)
        assert r.returncode == 0, r.stdout + r.stderr
        sub.wait(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, sub.stderr
    with open(out) as f:
        rep = json.load(f)
    assert rep["foreign"] == 1
    with open(pub_out) as f:
        sent = json.load(f)["sent"]   # about 200; a paced loader that was starved catches up, so read it
    assert 150 <= rep["received"] <= sent, (rep["received"], sent)
    assert rep["sequence_gaps"] == 0 and rep["expected"] is None


def test_bad_flags_exit_2_with_one_clear_line():
    for args in (["pub", "--qos", "3"], ["pub", "--nope"], ["nope"], ["sub", "--topic", "a"], []):
        r = bench(*args)
        assert r.returncode == 2, args
        assert r.stderr.startswith("ringmq-bench: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_refused_connection_fails_fast_and_says_why():
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    r = bench("pub", "--port", port, "--clients", 3, "--duration", 5)
    assert time.monotonic() - t0 < 5
    assert r.returncode == 1
    assert "Connection refused" in r.stderr
    assert "FAILED" in r.stdout


def test_broker_dying_mid_run_ends_the_run(mosquitto):
    port, proc, tmp = mosquitto
    b = subprocess.Popen([BENCH, "pubsub", "--port", str(port), "--pubs", "2", "--subs", "1", "--rate", "100",
                          "--warmup", "0", "--duration", "30", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: mosquitto_log_has(tmp, " bench/"), "the bench subscriber's SUBSCRIBE")   # mid-run
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out, err = b.communicate(timeout=15)  # far less than --duration: it stops by itself
    finally:
        if b.poll() is None:
            b.kill()
            b.wait()
    assert b.returncode == 1
    assert "dropped" in out and "FAILED" in out
    assert "connection" in err


def test_kafka_verify_without_kafka_fails_clearly_and_in_bounded_time():
    port = free_port()  # no Kafka there
    t0 = time.monotonic()
    r = bench("kafka-verify", "--kafka-brokers", "127.0.0.1:%d" % port, "--duration", 2, timeout=30)
    assert time.monotonic() - t0 < 15
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ringmq-bench: kafka-verify: ") and "mqtt.messages" in last, r.stderr


def test_fleet_cars_and_backend_account_for_every_qos1_message(mosquitto):
    port, _, tmp = mosquitto
    out = os.path.join(tmp, "fleet.json")
    r = bench("fleet", "--port", port, "--cars", 50, "--hz", 20, "--qos", 1, "--backends", 2, "--threads", 2,
              "--cmd-rate", 100, "--warmup", 0.5, "--duration", 1.5, "--json", out,
              "--drain", 30)   # a loaded machine delivers late, not never: the default 5 s counted lateness as loss
    assert r.returncode == 0, r.stdout + r.stderr
    with open(out) as f:
        rep = json.load(f)
    assert rep["publishers"] == 50 and rep["subscribers"] == 2
    # Telemetry T reaches both back-ends (cars/+/telemetry), each command C its one car:
    # sent = T + C, expected = 2T + C.
    telemetry, commands = rep["expected"] - rep["sent"], 2 * rep["sent"] - rep["expected"]
    assert 1800 <= telemetry <= 2200, telemetry      # 50 cars x 20 Hz x 2 s
    assert 180 <= commands <= 220, commands          # 100 commands/s x 2 s
    assert rep["cmd_latency"]["count"] > 0 and rep["latency"]["count"] > 0
    assert rep["received"] == rep["expected"] and rep["lost"] == 0
    assert rep["acked"] == rep["sent"]
    assert rep["conn_ok"] == 52


def test_conn_storm_over_two_source_addresses(mosquitto):
    port, _, tmp = mosquitto
    out = os.path.join(tmp, "conn.json")
    r = bench("conn", "--port", port, "--count", 300, "--conn-rate", 1000, "--hold", 0.5, "--source-addrs", 2,
              "--json", out)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(out) as f:
        rep = json.load(f)
    assert rep["conn_ok"] == 300 and rep["conn_held"] == 300 and rep["conn_failed"] == 0
    assert rep["connack_latency"]["count"] == 300
    assert 100 <= rep["conn_rate"] <= 1100
    # The connections really came from 127.0.0.1 and 127.0.0.2: mosquitto logs each peer address.
    with open(os.path.join(tmp, "mosquitto.log")) as f:
        peers = f.read()
    assert peers.count("from 127.0.0.2:") >= 140 and peers.count("from 127.0.0.1:") >= 140
