# Kafka -> MQTT consumer lag on /metrics (ringmq_kafka_consumer_lag_records): records pile up in Kafka behind a car
# that does not acknowledge (the consumer pauses at --consume-max-outstanding), the lag shows them; once the car
# acknowledges, the consumer catches up and the lag returns to zero. Real librdkafka producer, embedded cluster.
import re
import time
import urllib.request

from test_kafka_consume import CMD, produce, raw_subscriber, read_publishes, wait_assigned
from test_kafka_e2e import Ringmq, procs  # noqa: F401 (procs is a fixture)
from conftest import free_port
from mqtt_util import wait_until
import core_rawmqtt as rawmqtt

WAIT = 30.0


def lag(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(int(v) for v in re.findall(r"^ringmq_kafka_consumer_lag_records\{[^}]*\} (\d+)$", text, re.M))


def wait_lag(mport, pred, what):
    """The lag once pred(lag) holds; the figure is refreshed each second, the scrape is the event source."""
    last = []

    def reached():
        last.append(lag(mport))
        return pred(last[-1])
    wait_until(reached, lambda: f"consumer lag {what} (last {last[-1] if last else None})", WAIT, 0.2)
    return last[-1]


def test_consumer_lag_rises_behind_a_stuck_car_and_returns_to_zero(procs):
    mport = free_port()
    r = Ringmq("--consume", CMD, "--consume-delay-ms", "0", "--consume-max-outstanding", "10", "--max-inflight",
               "100", "--metrics", f"127.0.0.1:{mport}")
    procs.append(r)
    wait_assigned(r, 1)
    assert lag(mport) == 0
    cl = raw_subscriber(r.port, "car-stuck", "cars/VIN1/cmd")
    produce(r.bootstrap, "commands", [("VIN1", str(i).encode(), None) for i in range(200)])
    first = read_publishes(cl, 10, timeout=10)
    assert len(first) == 10
    # The high watermark is librdkafka's from its last fetch before the pause: how many of the 200 that fetch saw
    # depends on how the producer's batches met it, so the figure is some lag, never more than what waits.
    behind = wait_lag(mport, lambda v: v > 0, "rose behind the stuck car")
    assert behind <= 190, behind
    # The car acknowledges everything: the consumer resumes and catches up.
    pending, got = first, 0
    end = time.monotonic() + WAIT
    while got < 200 and time.monotonic() < end:
        for m in pending:
            cl.send(rawmqtt.ack("puback", m["pid"], version=5, reason=0))
        got += len(pending)
        pending = read_publishes(cl, 10, timeout=5)
    assert got == 200, got
    wait_lag(mport, lambda v: v == 0, "returned to zero")
    cl.close()
    assert r.stop() == 0
