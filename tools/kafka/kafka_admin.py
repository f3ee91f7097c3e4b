"""Admin side of tools/kafka-local.sh and of the real-Kafka test fixtures: free loopback ports, topic creation
and the readiness wait (every broker registered, every partition led). Single-threaded callers only."""
import socket
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

READY_TIMEOUT = 180.0   # a cold JVM on a loaded 2-core machine; bounded all the same
POLL = 0.1


def free_ports(n):
    """n distinct free loopback TCP ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def parse_topic(spec):
    """NAME:PARTITIONS[:k=v,k=v] -> (name, partitions, {config})"""
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1].isdigit() or int(parts[1]) < 1:
        raise ValueError(f"topic {spec!r}: expected NAME:PARTITIONS[:key=value,...]")
    config = {}
    if len(parts) == 3 and parts[2]:
        for kv in parts[2].split(","):
            k, sep, v = kv.partition("=")
            if not sep or not k:
                raise ValueError(f"topic {spec!r}: bad config {kv!r}, expected key=value")
            config[k] = v
    return parts[0], int(parts[1]), config


def admin(bootstrap, extra=None):
    conf = {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 5000, "log_level": 0}
    conf.update(extra or {})
    return AdminClient(conf)


def wait_brokers(adm, brokers, deadline):
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            md = adm.list_topics(timeout=5)
            if len(md.brokers) >= brokers and md.controller_id >= 0:
                return
            last = f"{len(md.brokers)} of {brokers} brokers registered"
        except KafkaException as e:
            last = str(e)
        time.sleep(POLL)
    raise TimeoutError(f"kafka not ready: {last}")


def wait_topics(adm, names, deadline, gone=False):
    """Every partition of every topic has a leader and a full ISR (or, with gone, the topics are absent)."""
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            md = adm.list_topics(timeout=5)
            if gone:
                left = [n for n in names if n in md.topics]
                if not left:
                    return
                last = f"still present: {left}"
            else:
                bad = []
                for n in names:
                    t = md.topics.get(n)
                    if t is None or t.error is not None or not t.partitions:
                        bad.append(f"{n}: {'absent' if t is None else t.error}")
                        continue
                    for p in t.partitions.values():
                        if p.leader < 0 or len(p.isrs) < len(p.replicas):
                            bad.append(f"{n}[{p.id}]: leader {p.leader}, isr {p.isrs} of {p.replicas}")
                if not bad:
                    return
                last = "; ".join(bad)
        except KafkaException as e:
            last = str(e)
        time.sleep(POLL)
    raise TimeoutError(f"topics not served: {last}")


def create_topics(adm, specs, brokers, deadline):
    """specs: NAME:PARTITIONS[:k=v,...]; replication factor min(3, brokers), min.insync.replicas 2 with 3
    brokers (a topic's own config wins). An existing topic is kept. Returns once every partition is led."""
    new = []
    for spec in specs:
        name, parts, config = parse_topic(spec)
        if brokers >= 3:
            config.setdefault("min.insync.replicas", "2")
        new.append(NewTopic(name, num_partitions=parts, replication_factor=min(3, brokers), config=config))
    if new:
        for name, fut in adm.create_topics(new, request_timeout=30).items():
            try:
                fut.result(timeout=max(1.0, deadline - time.monotonic()))
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise RuntimeError(f"create topic {name}: {e}") from e
        wait_topics(adm, [t.topic for t in new], deadline)


def delete_topics(adm, names, deadline):
    for name, fut in adm.delete_topics(list(names), request_timeout=30).items():
        try:
            fut.result(timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as e:
            if e.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
    wait_topics(adm, names, deadline, gone=True)


def main(argv):
    if argv[:1] == ["ports"] and len(argv) == 2:
        print(" ".join(map(str, free_ports(int(argv[1])))))
        return 0
    if argv[:1] == ["ready"]:
        # ready BOOTSTRAP BROKERS TIMEOUT [k=v client config]... [-- TOPIC_SPEC...]
        bootstrap, brokers, timeout = argv[1], int(argv[2]), float(argv[3])
        rest = argv[4:]
        specs = rest[rest.index("--") + 1:] if "--" in rest else []
        conf = dict(kv.split("=", 1) for kv in (rest[:rest.index("--")] if "--" in rest else rest))
        deadline = time.monotonic() + timeout
        adm = admin(bootstrap, conf)
        wait_brokers(adm, brokers, deadline)
        create_topics(adm, specs, brokers, deadline)
        return 0
    print("usage: kafka_admin.py ports N | ready BOOTSTRAP BROKERS TIMEOUT [k=v]... [-- NAME:PARTS[:k=v,..]]...",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (TimeoutError, RuntimeError, ValueError, KafkaException) as e:
        print(f"kafka-local: {e}", file=sys.stderr)
        sys.exit(1)
