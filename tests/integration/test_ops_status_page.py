# The status page at / of --metrics, in a real browser (Debian's headless Chromium driven over DevTools): while a
# publisher and a subscriber run, its figures are live (msg/s in and out above zero, per-core totals that move
# between two reads). Nothing it needs comes from outside: the page is served with a same-origin CSP and Chromium
# runs with its background networking off.
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import RINGMQ_BIN, free_port
from cdp import CHROMIUM, Browser
from mqtt_util import Paho

READ = """(() => {
  const t = id => document.getElementById(id).textContent;
  const rows = [...document.querySelectorAll("#per-core tr")].map(r => [...r.cells].map(c => c.textContent));
  return {updated: t("updated"), err: t("err"), cores: t("cores"), conns: t("conns"), inRate: t("in-rate"),
          outRate: t("out-rate"), p99: t("ack-p99"), rows};
})()"""
WAIT = 30.0


def number(text):
    m = re.match(r"([\d.]+)([kM]?)$", text)
    assert m, f"not a number: {text!r}"
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6}[m.group(2)]


def read_until(browser, pred, what):
    """Reads the page's figures until pred(figures) holds; the page's own 1 s poll is the event waited for."""
    end = time.monotonic() + WAIT
    while True:
        fig = browser.eval(READ)   # None while the page is still loading
        if fig and pred(fig):
            return fig
        assert time.monotonic() < end, f"{what} not seen within {WAIT} s; the page shows {fig}"
        time.sleep(0.1)


def total_in(fig):
    return sum(int(r[-1]) for r in fig["rows"])


@pytest.fixture
def live_broker(tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("chromium not found: apt-get install chromium (tools/install-deps.sh)")
    port, mport = free_port(), free_port()
    proc = subprocess.Popen([RINGMQ_BIN, "--listen", f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{mport}",
                             "--cores", "2", "--kafka", "off"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    clients, stop, t = [], threading.Event(), None
    try:
        while "listening on" not in (line := proc.stdout.readline()):
            assert line, "ringmq exited before listening"
        sub = Paho("127.0.0.1", port, "page-sub")
        sub.connect()
        sub.subscribe("cars/+/telemetry", qos=0)
        pub = Paho("127.0.0.1", port, "page-pub")
        pub.connect()
        clients += [sub, pub]

        def publish():
            while not stop.is_set():
                pub.c.publish("cars/1/telemetry", b"x" * 32, qos=1)
                time.sleep(0.001)
        t = threading.Thread(target=publish)
        t.start()
        sub.get(timeout=10)   # traffic flows before the page is loaded
        yield f"http://127.0.0.1:{mport}/"
    finally:
        stop.set()
        if t:
            t.join()
        for c in clients:
            c.c.disconnect()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, "ringmq did not exit cleanly (a sanitizer report?)"


def test_status_page_numbers_move_in_chromium(tmp_path, live_broker):
    browser = Browser(str(tmp_path / "profile"), live_broker)
    try:
        first = read_until(browser, lambda f: f["inRate"] not in ("-", "0") and f["outRate"] not in ("-", "0"),
                           "msg/s in and out above zero")
        assert first["err"] == "" and first["cores"] == "2" and number(first["conns"]) == 2, first
        assert first["p99"] != "-", "QoS 1 PUBACK latency missing"
        assert [r[0] for r in first["rows"]] == ["0", "1"], first["rows"]
        # A second read, one poll later, differs: the per-core totals moved on.
        second = read_until(browser, lambda f: total_in(f) > total_in(first), "the totals moving")
        assert second["updated"] != first["updated"]
        shot = tmp_path / "status.png"
        browser.screenshot(shot)
        assert shot.stat().st_size > 10000
        if os.environ.get("RINGMQ_SCREENSHOT"):
            os.replace(shot, os.environ["RINGMQ_SCREENSHOT"])
    finally:
        browser.close()
