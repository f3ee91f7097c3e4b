# ringmq watched by a real Prometheus (Debian's): the shipped alert rules pass promtool (syntax and their unit
# tests), and a Prometheus server on loopback scrapes ringmq's --metrics with those rules loaded while a publisher
# runs; a PromQL query over its HTTP API then returns the message rate.
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import REPO_ROOT, RINGMQ_BIN, free_port
from mqtt_util import BackgroundPublisher, Paho

RULES = os.path.join(REPO_ROOT, "tools", "prometheus", "ringmq.rules.yml")
RULE_TESTS = os.path.join(REPO_ROOT, "tools", "prometheus", "ringmq.rules.test.yml")
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
WAIT = 45.0   # Prometheus start (TSDB, rules) plus two 1 s scrapes, on a loaded machine


def need(path):
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: apt-get install prometheus (tools/install-deps.sh)")


def test_alert_rules_pass_promtool():
    need(PROMTOOL)
    p = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "SUCCESS: 9 rules found" in p.stdout, p.stdout + p.stderr
    p = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS], capture_output=True, text=True, timeout=60,
                       cwd=os.path.dirname(RULE_TESTS))
    assert p.returncode == 0 and "SUCCESS" in p.stdout, p.stdout + p.stderr


def query(api, expr):
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_prometheus_scrapes_the_message_rate(tmp_path, procs):
    need(PROMETHEUS)
    port, mport, pport = free_port(), free_port(), free_port()
    broker = subprocess.Popen([RINGMQ_BIN, "--listen", f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{mport}",
                               "--cores", "2", "--kafka", "off"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    procs.append(broker)
    while "listening on" not in (line := broker.stdout.readline()):
        assert line, "ringmq exited before listening"
    shutil.copy(RULES, tmp_path / "ringmq.rules.yml")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: [ringmq.rules.yml]\n"
        f"scrape_configs:\n  - job_name: ringmq\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n")
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{pport}",
                             "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    procs.append(prom)
    api = f"http://127.0.0.1:{pport}"

    pub = Paho("127.0.0.1", port, "prom-pub")
    pub.connect()
    rate, rules, err = None, None, None
    try:
        with BackgroundPublisher(pub, interval=0.001):
            end = time.monotonic() + WAIT
            while time.monotonic() < end and prom.poll() is None:
                try:
                    res = query(api, "sum(rate(ringmq_messages_in_total[5s]))")
                    if res and float(res[0]["value"][1]) > 0:
                        rate = float(res[0]["value"][1])
                        break
                except OSError as e:   # not listening yet: the server's start is the event waited on
                    err = e
                time.sleep(0.2)
            with urllib.request.urlopen(f"{api}/api/v1/rules", timeout=5) as r:
                rules = json.load(r)
    finally:
        pub.c.disconnect()
    log.close()
    assert rate, f"no message rate from Prometheus within {WAIT} s (last error {err}); its log:\n" + \
        open(tmp_path / "prometheus.log").read()[-3000:]
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"RingmqCoreStalled", "RingmqKafkaUnreachable", "RingmqPubackLatencyHigh"} <= names, names
    # Both cores tick and Prometheus sees it: the stall alert's input is live.
    ticks = query(api, "rate(ringmq_core_loop_ticks_total[5s])")
    assert len(ticks) == 2 and all(float(s["value"][1]) > 0 for s in ticks), ticks
