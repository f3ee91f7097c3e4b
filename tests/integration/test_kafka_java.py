"""Java-client compatibility on real Apache Kafka: for 10,000 keys (ASCII car ids, UTF-8, the empty key, long keys)
the partition ringmq's producer chose equals the one Apache Kafka's own Java producer (kafka-clients, default
partitioner) chooses on the same topic. ringmq gets each key as an MQTT topic level (key=${topic[1]}); the Java
producer (java/ProduceKeys.java, run from source with build/kafka/lib) sends the same bytes; a librdkafka consumer
reads both back. Run by ctest under /usr/bin/python3; every process started here is stopped by pid."""
import os
import random
import shutil
import subprocess

import pytest
from confluent_kafka import Consumer, TopicPartition

from test_kafka_e2e import Raw, Ringmq, procs  # noqa: F401 (procs is a fixture)
from kafka_real import KINDS, REPO_ROOT, real_kafka

JAVA_SRC = os.path.join(os.path.dirname(__file__), "java", "ProduceKeys.java")
KAFKA_LIB = os.path.join(REPO_ROOT, "build", "kafka", "lib")
PARTITIONS = 12
WINDOW = 50        # QoS 1 publishes in flight (below ringmq's default receive maximum of 64)

pytestmark = pytest.mark.skipif("kafka" not in KINDS, reason="real Kafka variants off (RINGMQ_TEST_KAFKA)")


def fleet_keys(n=10000):
    """Deterministic keys: 70 % ASCII car ids (VINs and serials), 20 % UTF-8, the empty key, the rest 256 B..4 KiB.
    None contains '/', '+', '#' or NUL: each is one MQTT topic level."""
    rng = random.Random(14)
    vin = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    utf8 = "äöüßéèçñøåæЖЯжяΩλπ日本語車両🚗🚙€¥→✓ "
    keys = [""]
    for i in range(int(n * 0.7)):
        keys.append("".join(rng.choice(vin) for _ in range(17)) if i % 2 else f"car-{i:06d}")
    for i in range(int(n * 0.2)):
        keys.append(f"Fahrzeug-{i}-" + "".join(rng.choice(utf8 + "abc123") for _ in range(rng.randint(1, 24))))
    while len(keys) < n:
        keys.append("".join(rng.choice(vin + utf8) for _ in range(rng.randint(256, 1365))))
    assert len(set(keys)) == n
    return keys


def read_all(bootstrap, topic, want, timeout=120):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "java-compat", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out = []
        while len(out) < want:
            msgs = c.consume(1000, timeout=timeout)
            assert msgs, f"{len(out)} of {want} records read"
            out += [m for m in msgs if not m.error()]
        return out
    finally:
        c.close()


def test_partition_of_every_key_equals_the_java_producers(procs):
    if shutil.which("java") is None:
        pytest.fail("java not found: tools/install-deps.sh installs openjdk-17-jdk-headless")
    kafka = real_kafka()
    topic = kafka.create(f"keys-{os.getpid()}", PARTITIONS)
    keys = fleet_keys()
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--route", f"k/+ -> {topic} key=${{topic[1]}}")
    procs.append(r)
    c = Raw(r.port, "key-pub")
    for start in range(0, len(keys), WINDOW):
        batch = range(start, min(start + WINDOW, len(keys)))
        for i in batch:
            c.publish(f"k/{keys[i]}", f"ringmq:{i}", i % 65535 + 1)
        for _ in batch:
            assert c.puback(timeout=30)[1] == 0
    c.close()
    java = subprocess.run(["java", "-XX:TieredStopAtLevel=1", "-cp", os.path.join(KAFKA_LIB, "*"), JAVA_SRC,
                           kafka.bootstrap, topic], input="\n".join(k.encode().hex() for k in keys) + "\n",
                          capture_output=True, text=True, timeout=300)
    assert java.returncode == 0 and f"sent {len(keys)}" in java.stdout, java.stdout + java.stderr[-3000:]
    part = {"ringmq": {}, "java": {}}
    for m in read_all(kafka.bootstrap, topic, 2 * len(keys)):
        who, i = m.value().decode().split(":")
        assert m.key() == keys[int(i)].encode(), f"{who} record {i}: key {m.key()!r}"
        part[who][int(i)] = m.partition()
    assert len(part["ringmq"]) == len(part["java"]) == len(keys)
    differ = [(keys[i][:40], part["ringmq"][i], part["java"][i]) for i in range(len(keys))
              if part["ringmq"][i] != part["java"][i]]
    assert not differ, f"{len(differ)} of {len(keys)} keys in another partition than Java's: {differ[:10]}"
    assert len(set(part["java"].values())) == PARTITIONS, "the keys should spread over every partition"
    assert r.stop() == 0
