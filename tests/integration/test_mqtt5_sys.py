# $SYS/broker/... topics (issue 4): version, uptime, clients, messages and bytes (totals, per second),
# subscriptions, retained count, dropped by reason, per-core figures; published every --sys-interval
# seconds by core 0 from every core's snapshot; 0 turns them off.
import subprocess
import time

import pytest

from mqtt5_util import recv5, v5
from mqtt_util import cid_on_core

pytestmark = pytest.mark.timeout(60)


def collect(cl, seconds):
    """Latest payload per topic seen within `seconds`."""
    seen, deadline = {}, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            m = recv5(cl, timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen[m.topic] = m.payload.decode()
    return seen


def test_sys_topics_published(broker_factory, cores, clients):
    b = broker_factory(cores, sys_interval=1)
    sub, _ = v5(clients, b, "sys-s", 0)
    assert sub.subscribe([("$SYS/broker/#", 0)]) == [0]
    wild, _ = v5(clients, b, "sys-w", 1)
    assert wild.subscribe([("#", 0)]) == [0]
    pub, _ = v5(clients, b, "sys-p", 1)
    for i in range(5):
        pub.publish("sys/data", b"x" * 100, qos=1)
    seen = collect(sub, 3.5)
    assert seen["$SYS/broker/version"].startswith("ringmq ")
    assert int(seen["$SYS/broker/uptime"]) >= 1
    assert int(seen["$SYS/broker/cores"]) == cores
    assert int(seen["$SYS/broker/clients/connected"]) == 3
    assert int(seen["$SYS/broker/clients/total"]) == 3
    assert int(seen["$SYS/broker/messages/received"]) == 5
    assert int(seen["$SYS/broker/bytes/received"]) > 500
    assert int(seen["$SYS/broker/messages/sent"]) >= 5          # the 5 to `#`, plus $SYS deliveries
    assert int(seen["$SYS/broker/subscriptions/count"]) == 2
    assert int(seen["$SYS/broker/retained messages/count"]) >= 1  # the $SYS values themselves
    assert "$SYS/broker/messages/received/per_second" in seen
    for reason in ("queue_full", "too_large", "expired", "payload_format", "not_authorized"):
        assert int(seen[f"$SYS/broker/messages/dropped/{reason}"]) == 0
    per_core = [int(seen[f"$SYS/broker/core/{k}/clients/connected"]) for k in range(cores)]
    assert sum(per_core) == 3
    assert sum(int(seen[f"$SYS/broker/core/{k}/messages/received"]) for k in range(cores)) == 5
    got = [m.topic for m in (recv5(wild) for _ in range(5))]
    assert got == ["sys/data"] * 5                                 # `#` never matches $SYS
    wild.assert_silent(1.2)


def test_sys_counts_drops(broker_factory, cores, clients):
    b = broker_factory(cores, sys_interval=1)
    sub, _ = v5(clients, b, "sysd-s", 0)
    assert sub.subscribe([("$SYS/broker/messages/dropped/#", 0)]) == [0]
    small, _ = v5(clients, b, "sysd-small", 1, props=[(0x27, 100)])
    assert small.subscribe([("sysd/t", 1)]) == [1]
    pub, _ = v5(clients, b, "sysd-p", 0)
    pub.publish("sysd/t", b"L" * 300, qos=1)
    seen = collect(sub, 2.5)
    assert int(seen["$SYS/broker/messages/dropped/too_large"]) == 1


def test_sys_interval_zero_is_off(broker_factory, cores, clients):
    b = broker_factory(cores, sys_interval=0)
    sub, _ = v5(clients, b, "sys0", 0)
    assert sub.subscribe([("$SYS/#", 0)]) == [0]
    sub.assert_silent(2.0)


@pytest.mark.parametrize("val", ["-1", "x", "86401"])
def test_sys_interval_bad_value(val):
    from conftest import RINGMQ_BIN
    res = subprocess.run([RINGMQ_BIN, "--sys-interval", val, "--listen", "127.0.0.1:0"], capture_output=True,
                         text=True, timeout=20)
    assert res.returncode == 2
    assert "sys-interval" in res.stderr
