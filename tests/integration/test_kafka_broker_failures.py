"""Broker failures in a real 3-broker Apache Kafka cluster (replication factor 3, min.insync.replicas 2, acks=all,
idempotent producers): QoS 1 cars publish through ringmq while (a) one broker is SIGKILLed and restarted, (b) two
brokers are down at once, (c) a busy partition's leader moves. After each: every PUBACKed message is in Kafka,
no duplicates, per-car order kept; the figures are printed. One cluster for the file, a topic per test. Every
process started here is stopped by pid."""
import json
import os
import threading
import time

import pytest

from kafka_real import RealKafka
from test_kafka_failures import Ringmq, procs  # noqa: F401 (procs: a fixture)
from mqtt_util import PUBACK, Closed, RawClient, parse_ack, publish_packet

CARS = 4
WINDOW = 16            # QoS 1 publishes a car keeps in flight
ACK_DRAIN = 180.0      # after the fault: every outstanding PUBACK arrives within this (a loaded 2-core machine)


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    k = RealKafka(tmp_path_factory.mktemp("kafka3"), brokers=3)
    yield k
    k.close()


class Car(threading.Thread):
    """Publishes cars/ID/data QoS 1 (v5), payload ID:SEQ, WINDOW in flight, until stopped; records what was
    PUBACKed with reason 0 (acked) and with an error reason (refused)."""

    def __init__(self, port, cid):
        super().__init__(daemon=True)
        self.cid, self.port = cid, port
        self.acked, self.refused, self.sent = [], [], 0
        self.stop_sending = threading.Event()
        self.error = None

    def run(self):
        try:
            c = RawClient("127.0.0.1", self.port, 5, ACK_DRAIN)
            c.connect(self.cid)
            inflight = {}
            seq = 0
            while True:
                while not self.stop_sending.is_set() and len(inflight) < WINDOW:
                    seq += 1
                    pid = seq % 65535 + 1
                    c.send(publish_packet(f"cars/{self.cid}/data", f"{self.cid}:{seq}".encode(), 1, pid=pid,
                                          version=5))
                    inflight[pid] = seq
                    self.sent += 1
                if not inflight:
                    break
                pid, reason = parse_ack(c.expect(PUBACK, ACK_DRAIN), PUBACK, 5)
                (self.acked if reason == 0 else self.refused).append(inflight.pop(pid))
            c.disconnect()
        except (AssertionError, OSError, Closed, TimeoutError) as e:
            self.error = e


def start_cars(r):
    cars = [Car(r.port, f"car{i}-{os.getpid()}") for i in range(CARS)]
    for c in cars:
        c.start()
    return cars


def acked_count(cars):
    return sum(len(c.acked) for c in cars)


def wait_acks(cars, more, timeout=120.0):
    """Waits until the cars have `more` PUBACKs beyond now (the pipeline flows)."""
    want = acked_count(cars) + more
    deadline = time.monotonic() + timeout
    while acked_count(cars) < want and time.monotonic() < deadline:
        time.sleep(0.05)   # the cars' threads count PUBACKs; polling their counters
    assert acked_count(cars) >= want, f"only {acked_count(cars)} PUBACKs of {want} within {timeout}s"


def finish(kafka, topic, cars, label):
    for c in cars:
        c.stop_sending.set()
    for c in cars:
        c.join(ACK_DRAIN + 30)
        assert not c.is_alive(), f"{c.cid}: PUBACKs still outstanding after {ACK_DRAIN}s"
        assert c.error is None, f"{c.cid}: {c.error!r}"
    records = kafka.records(topic, timeout=120)
    per_car = {}
    for _, key, value in records:
        cid, seq = value.decode().split(":")
        assert key.decode() == cid, f"record {value!r} keyed {key!r}"
        per_car.setdefault(cid, []).append(int(seq))
    dups = lost = disorder = 0
    for c in cars:
        got = per_car.get(c.cid, [])
        dups += len(got) - len(set(got))
        lost += len(set(c.acked) - set(got))
        disorder += sum(1 for a, b in zip(got, got[1:]) if b <= a)
    print(f"\n{label}: sent {sum(c.sent for c in cars)}, PUBACKed {acked_count(cars)}, refused "
          f"{sum(len(c.refused) for c in cars)}, in Kafka {len(records)}; PUBACKed but missing {lost}, duplicates "
          f"{dups}, out of order {disorder}")
    assert lost == 0 and dups == 0 and disorder == 0
    return records


def ringmq(kafka, topic, procs):
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--route", f"cars/+/data -> {topic}", cores=2)
    procs.append(r)
    return r


def leader_of(kafka, topic, partition=0):
    return kafka.adm.list_topics(topic, timeout=30).topics[topic].partitions[partition].leader


def test_one_broker_sigkilled_and_restarted(kafka, procs):
    topic = kafka.create(f"bf-kill-{os.getpid()}", partitions=3)
    r = ringmq(kafka, topic, procs)
    cars = start_cars(r)
    wait_acks(cars, 500)
    victim = leader_of(kafka, topic)
    kafka.node("stop", victim, kill=True)
    t0 = time.monotonic()
    wait_acks(cars, 500)   # the other two brokers (ISR 2 >= min.insync.replicas) take over
    print(f"\nbroker {victim} (a leader) SIGKILLed: 500 more PUBACKs {time.monotonic() - t0:.1f} s later")
    kafka.node("resume", victim)
    wait_acks(cars, 500)
    finish(kafka, topic, cars, "one broker SIGKILLed and restarted")


def test_two_brokers_down_no_puback_until_back(kafka, procs):
    topic = kafka.create(f"bf-two-{os.getpid()}", partitions=3)
    r = ringmq(kafka, topic, procs)
    cars = start_cars(r)
    wait_acks(cars, 500)
    down = [n for n in (1, 2, 3) if n != leader_of(kafka, topic)][:2]
    for n in down:
        kafka.node("stop", n, kill=True)
    # What Kafka took before it lost its ISR may still be acknowledged; then nothing, until the brokers are back.
    settle = time.monotonic() + 30
    last, quiet_since = acked_count(cars), time.monotonic()
    while time.monotonic() < settle:
        time.sleep(0.2)   # sampling the PUBACK count during the outage
        if acked_count(cars) != last:
            last, quiet_since = acked_count(cars), time.monotonic()
    during = acked_count(cars)
    quiet = time.monotonic() - quiet_since
    for n in down:
        kafka.node("resume", n)
    wait_acks(cars, 500, timeout=180)
    print(f"\ntwo brokers down: PUBACKs stopped for the last {quiet:.1f} s of 30 s; {acked_count(cars) - during} "
          f"more after the brokers returned")
    assert quiet >= 10, "PUBACKs went on with two of three brokers down"
    finish(kafka, topic, cars, "two brokers down")


def test_busy_partition_leader_moves(kafka, procs, tmp_path):
    topic = kafka.create(f"bf-move-{os.getpid()}", partitions=1)
    r = ringmq(kafka, topic, procs)
    cars = start_cars(r)
    wait_acks(cars, 500)
    before = leader_of(kafka, topic)
    replicas = [before % 3 + 1, (before + 1) % 3 + 1, before]   # another broker first: the new preferred leader
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": 0,
                                                              "replicas": replicas}]}))
    kafka.tool("reassign.ReassignPartitionsCommand", "--reassignment-json-file", str(plan), "--execute")
    kafka.tool("LeaderElectionCommand", "--election-type", "PREFERRED", "--topic", topic, "--partition", "0")
    after = leader_of(kafka, topic)
    wait_acks(cars, 500)
    print(f"\nleader of {topic}[0] moved {before} -> {after} under load")
    assert after == replicas[0] and after != before
    finish(kafka, topic, cars, "leader moved")
