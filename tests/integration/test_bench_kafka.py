# Integration test for ringmq-bench kafka-verify: ringmq routes a QoS 1 fleet's telemetry to
# ringmq-kafka-mock; kafka-verify must see every record exactly once in per-car order.
# Run by ctest with /usr/bin/python3 -m pytest; every process started here is stopped by pid.
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

BUILD = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BENCH = os.path.join(BUILD, "ringmq-bench")
RINGMQ = os.path.join(BUILD, "ringmq")
KMOCK = os.path.join(BUILD, "ringmq-kafka-mock")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def kafka_and_ringmq():
    for b in (RINGMQ, KMOCK):
        if not os.path.exists(b):
            pytest.skip("%s not built" % b)
    tmp = tempfile.mkdtemp(prefix="rmqb-kafka-")
    procs = []
    try:
        mock = subprocess.Popen([KMOCK, "--brokers", "1", "--topic", "telemetry:4"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(mock)
        boot = None
        end = time.monotonic() + 20
        while boot is None and time.monotonic() < end:
            line = mock.stdout.readline()
            if not line:
                break
            m = re.search(r"(127\.0\.0\.1:\d+(?:,127\.0\.0\.1:\d+)*)", line)
            boot = m.group(1) if m else None
        assert boot, "ringmq-kafka-mock printed no bootstrap servers"
        port = free_port()
        log = open(os.path.join(tmp, "ringmq.log"), "w")
        # --cores 1: the loader and the mock need the machine's other CPU (the default is every CPU).
        broker = subprocess.Popen([RINGMQ, "--listen", "127.0.0.1:%d" % port, "--cores", "1", "--kafka-brokers", boot,
                                   "--route", "cars/+/telemetry -> telemetry key=${topic[1]}"],
                                  stdout=log, stderr=log)
        procs.append(broker)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            assert broker.poll() is None, open(os.path.join(tmp, "ringmq.log")).read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield boot, port, tmp
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


def test_fleet_qos1_reaches_kafka_exactly_once_in_car_order(kafka_and_ringmq):
    boot, port, tmp = kafka_and_ringmq
    kv_json, fleet_json = os.path.join(tmp, "kv.json"), os.path.join(tmp, "fleet.json")
    kv = subprocess.Popen([BENCH, "kafka-verify", "--kafka-brokers", boot, "--kafka-topic", "telemetry",
                           "--duration", "9", "--json", kv_json],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # the verifier assigns its partitions first
        r = subprocess.run([BENCH, "fleet", "--port", str(port), "--cars", "50", "--hz", "10", "--qos", "1",
                            "--warmup", "0.5", "--duration", "2", "--drain", "5", "--json", fleet_json,
                            "--quiet"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        out, err = kv.communicate(timeout=60)
    finally:
        stop(kv)
    assert kv.returncode == 0, out + err
    with open(kv_json) as f:
        k = json.load(f)
    with open(fleet_json) as f:
        fl = json.load(f)
    assert fl["sent"] > 1000 and fl["acked"] == fl["sent"]
    assert k["unique"] == fl["sent"], (k, fl["sent"])
    assert k["duplicated"] == 0 and k["out_of_order"] == 0 and k["sequence_gaps"] == 0
    assert k["cars"] == 50
    assert k["latency"]["count"] == k["records"] and k["latency"]["p50_us"] > 0
    assert "exactly once" in out and "result             ok" in out
