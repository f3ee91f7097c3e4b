"""Production failure modes against real Apache Kafka (tools/kafka-local.sh; one cluster for the file, a topic per
test): a missing route topic (start refused or waited for; a templated one fails the message with 0x90), a Kafka
ACL denying the producer (0x87), a message over the topic's max.message.bytes (0x97, nothing stuck), SASL PLAIN
and SCRAM-SHA-512, SASL_SSL with a test CA, a wrong password or CA (one line, non-zero exit), and a consumed
topic deleted or denied (counted, logged once, the other routes go on). Each refusal: a counter and one log line.
Every process started here is stopped by pid."""
import itertools
import os
import re
import time
import urllib.request

import pytest
from confluent_kafka import Producer

from core_rawmqtt import free_port
from kafka_real import RealKafka, make_ca
from test_kafka_e2e import Proc, RINGMQ
from mqtt_util import PUBACK, RawClient, parse_ack, publish_packet

USER, PASSWORD = "alice", "alice-secret"
REFUSED = "ringmq_kafka_refused_total"
CONSUME_ERRORS = "ringmq_kafka_consume_errors_total"
ACK_TIMEOUT = 60.0
_serial = itertools.count(1)


@pytest.fixture
def procs():
    """The ringmq processes a test started (append them): stopped by pid at teardown."""
    started = []
    yield started
    for p in started:
        p.stop()


class Ringmq(Proc):
    """ringmq with /metrics; started: listening (or exited: check exit_code())."""

    def __init__(self, *args, cores=1, wait=True):
        # MQTT on port 0, read back from the ready line (test_kafka_e2e.Ringmq says why)
        self.port, self.mport = None, free_port()
        super().__init__([RINGMQ, "--listen", "127.0.0.1:0", "--metrics", f"127.0.0.1:{self.mport}",
                          "--cores", str(cores), *args])
        if wait:
            self.wait_line("listening on", timeout=60)

    def wait_line(self, needle, timeout=20):
        """Proc.wait_line; the ready line also gives the MQTT port (whoever waits for it: wait=False callers too)."""
        line = super().wait_line(needle, timeout)
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            self.port = int(m.group(1))
        return line

    def stderr(self):
        return "".join(self.err)

    def wait_err(self, needle, timeout=60.0):
        """Waits for a stderr line holding needle (the reader thread appends them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in list(self.err):
                if needle in ln:
                    return ln.strip()
            if self.p.poll() is not None and not any(needle in ln for ln in self.err):
                break
            time.sleep(0.05)   # polls the reader thread's list; the line is the event waited for
        raise AssertionError(f"no stderr line with {needle!r} within {timeout}s:\n{self.stderr()[-3000:]}")

    def exit_code(self, timeout=60.0):
        return self.p.wait(timeout)

    def wait_metric(self, name, label, want, timeout=30.0, at_least=False):
        """Waits until the figure reaches want (/metrics is a per-tick snapshot) and asserts it is exactly want
        (or, with at_least, not below it)."""
        deadline = time.monotonic() + timeout
        got = self.metric(name, label)
        while got < want and time.monotonic() < deadline:
            time.sleep(0.1)   # the next metrics tick is the event; nothing to block on over HTTP
            got = self.metric(name, label)
        assert got == want or (at_least and got > want), f"{name}{{{label}}} = {got}, expected {want}"

    def metric(self, name, label=""):
        """Sum over the cores of a /metrics family (optionally only rows holding label)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=10) as f:
            text = f.read().decode()
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                   if ln.startswith(name + "{") and label in ln)


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    """SASL (PLAIN, SCRAM-SHA-512) and SASL_SSL listeners, StandardAuthorizer; the PLAINTEXT listener's ANONYMOUS
    user is a super user (the tests' admin side, and ringmq where no ACL is under test)."""
    ca_dir = tmp_path_factory.mktemp("ca")
    ca, pem = make_ca(ca_dir)
    k = RealKafka(tmp_path_factory.mktemp("kafka"), users=[f"{USER}:{PASSWORD}"], tls_pem=pem, authorizer=True,
                  partitions=1)
    k.ca = ca
    yield k
    k.close()


def unique(base):
    return f"{base}-{os.getpid()}-{next(_serial)}"


def sasl_args(k, mechanism="PLAIN", password=PASSWORD, tls=False):
    args = ["--kafka-brokers", k.tls_bootstrap if tls else k.sasl_bootstrap,
            "-X", f"security.protocol={'SASL_SSL' if tls else 'SASL_PLAINTEXT'}",
            "-X", f"sasl.mechanism={mechanism}", "-X", f"sasl.username={USER}", "-X", f"sasl.password={password}"]
    return args + (["-X", f"ssl.ca.location={k.ca}"] if tls else [])


def v5_client(r, cid):
    c = RawClient("127.0.0.1", r.port, 5, ACK_TIMEOUT)
    c.connect(cid)
    return c


def pipeline(c, msgs):
    """Sends every (topic, payload) as QoS 1 at once, then reads the PUBACKs: [(packet id, reason)] in order."""
    for pid, (topic, payload) in enumerate(msgs, 1):
        c.send(publish_packet(topic, payload, 1, pid=pid, version=5))
    return [parse_ack(c.expect(PUBACK, ACK_TIMEOUT), PUBACK, 5) for _ in msgs]


def lines_with(r, needle):
    return [ln for ln in r.err if needle in ln]


def refuses_start(r):
    code = r.exit_code(timeout=90)
    assert code != 0, f"ringmq started (exit {code}):\n{r.stderr()}"
    return r.stderr()


# ---- a route's topic does not exist (auto.create.topics.enable=false) --------------------------------------------

def test_fixed_route_topic_missing_refuses_start(kafka, procs):
    missing = unique("nosuch")
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--route", f"cars/# -> {missing}", wait=False)
    procs.append(r)
    err = refuses_start(r)
    named = [ln for ln in err.splitlines() if missing in ln]
    assert len(named) == 1 and "does not exist" in named[0] and "--kafka-wait-topics" in named[0], err
    assert "listening on" not in "".join(r.lines.queue), "ringmq served before refusing"


def test_wait_topics_waits_for_the_topic_then_serves(kafka, procs):
    later = unique("later")
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--route", f"cars/# -> {later}", "--kafka-wait-topics", "on",
               wait=False)
    procs.append(r)
    r.wait_err(f"route topic {later} does not exist")
    assert r.p.poll() is None, r.stderr()
    kafka.create(later)
    r.wait_err(f"route topic {later} is there")
    r.wait_line("listening on", timeout=60)
    c = v5_client(r, "car-wait")
    assert pipeline(c, [("cars/1", b"after the wait")]) == [(1, 0)]
    assert [v for _, _, v in kafka.records(later)] == [b"after the wait"]


def test_templated_topic_missing_fails_the_message(kafka, procs):
    known = kafka.create(unique("tpl-known"))
    missing = unique("tpl-missing")
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--route", "t/+ -> ${topic[1]}")
    procs.append(r)
    c = v5_client(r, "car-tpl")
    # v5: 0x90 for each message to the missing topic, and the car's next message (fence) still flows, in order
    acks = pipeline(c, [(f"t/{missing}", b"a"), (f"t/{known}", b"b"), (f"t/{missing}", b"c"), (f"t/{known}", b"d")])
    assert acks == [(1, 0x90), (2, 0), (3, 0x90), (4, 0)], acks
    assert [v for _, _, v in kafka.records(known)] == [b"b", b"d"]
    r.wait_metric(REFUSED, 'reason="unknown_topic"', 2)
    assert len(lines_with(r, f"topic {missing}:")) == 1, r.stderr()
    # 3.1.1 has no negative PUBACK: the car is disconnected (it resends on its next session)
    old = RawClient("127.0.0.1", r.port, 4, ACK_TIMEOUT)
    old.connect("car-tpl-311")
    old.send(publish_packet(f"t/{missing}", b"e", 1, pid=1, version=4))
    old.wait_closed(ACK_TIMEOUT)
    r.wait_metric(REFUSED, 'reason="unknown_topic"', 3)
    assert len(lines_with(r, f"topic {missing}:")) == 1, r.stderr()


# ---- Kafka ACLs deny the producer ----------------------------------------------------------------------------------

def test_acl_denied_topic_gets_0x87(kafka, procs):
    allowed, denied = kafka.create(unique("acl-ok")), kafka.create(unique("acl-denied"))
    kafka.allow(USER, allowed, "Write", "Describe")
    kafka.allow(USER, denied, "Describe")   # visible, so the start check passes; writing is denied
    r = Ringmq(*sasl_args(kafka), "--route", f"ok/# -> {allowed}", "--route", f"no/# -> {denied}")
    procs.append(r)
    c = v5_client(r, "car-acl")
    acks = pipeline(c, [("no/1", b"x"), ("ok/1", b"a"), ("no/2", b"y"), ("ok/2", b"b")])
    assert acks == [(1, 0x87), (2, 0), (3, 0x87), (4, 0)], acks
    assert [v for _, _, v in kafka.records(allowed)] == [b"a", b"b"]
    assert kafka.records(denied) == []
    r.wait_metric(REFUSED, 'reason="not_authorized"', 2)
    assert len(lines_with(r, f"topic {denied}:")) == 1, r.stderr()


# ---- a message larger than the topic's max.message.bytes -----------------------------------------------------------

def test_message_over_max_message_bytes_gets_0x97_and_nothing_sticks(kafka, procs):
    small = kafka.create(unique("small"), max_message_bytes=1024)
    # batch.size under the topic's limit: the oversized record travels alone, its neighbours in other batches
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--route", f"s/# -> {small}", "-X", "batch.size=900")
    procs.append(r)
    c = v5_client(r, "car-big")
    msgs = [("s/1", b"a" * 10), ("s/1", b"B" * 4000), ("s/1", b"c" * 10), ("s/1", b"D" * 4000), ("s/1", b"e" * 10)]
    acks = pipeline(c, msgs)
    assert acks == [(1, 0), (2, 0x97), (3, 0), (4, 0x97), (5, 0)], acks
    assert [v for _, _, v in kafka.records(small)] == [b"a" * 10, b"c" * 10, b"e" * 10]
    r.wait_metric(REFUSED, 'reason="too_large"', 2)
    assert len(lines_with(r, f"topic {small}:")) == 1, r.stderr()
    assert pipeline(c, [("s/2", b"later")]) == [(1, 0)]


# ---- SASL and TLS to Kafka -----------------------------------------------------------------------------------------

def sasl_roundtrip(kafka, procs, **kw):
    topic = kafka.create(unique("sasl"))
    kafka.allow(USER, topic, "Write", "Describe")
    r = Ringmq(*sasl_args(kafka, **kw), "--route", f"cars/# -> {topic}")
    procs.append(r)
    c = v5_client(r, "car-sasl")
    assert pipeline(c, [("cars/1", b"over sasl")]) == [(1, 0)]
    assert [v for _, _, v in kafka.records(topic)] == [b"over sasl"]


def test_sasl_plain(kafka, procs):
    sasl_roundtrip(kafka, procs, mechanism="PLAIN")


def test_sasl_ssl_with_test_ca(kafka, procs):
    sasl_roundtrip(kafka, procs, mechanism="PLAIN", tls=True)


def test_sasl_scram_sha_512(kafka, procs):
    """librdkafka before 2.6.1 sends a SCRAM client proof that Kafka 4.x rejects (librdkafka PR 4895): then ringmq
    must refuse to start with the line that says so; from 2.6.1 on it must work."""
    topic = kafka.create(unique("scram"))
    kafka.allow(USER, topic, "Write", "Describe")
    r = Ringmq(*sasl_args(kafka, mechanism="SCRAM-SHA-512"), "--route", f"cars/# -> {topic}", wait=False)
    procs.append(r)
    import confluent_kafka
    if confluent_kafka.libversion()[1] < 0x020601ff:
        err = refuses_start(r)
        assert "SCRAM proof Kafka 4.x rejects" in err, err
        pytest.xfail(f"librdkafka {confluent_kafka.libversion()[0]}: SCRAM-SHA-512 to Kafka 4.x needs 2.6.1")
    r.wait_line("listening on", timeout=60)
    c = v5_client(r, "car-scram")
    assert pipeline(c, [("cars/1", b"over scram")]) == [(1, 0)]


@pytest.mark.parametrize("bad", ["password", "ca"])
def test_wrong_credentials_one_line_and_exit(kafka, procs, tmp_path, bad):
    topic = kafka.create(unique("cred"))
    if bad == "password":
        args = sasl_args(kafka, password="wrong")
        want = "Authentication failed"
    else:   # a CA that did not sign the broker's certificate
        other, _ = make_ca(tmp_path)
        args = [a.replace(kafka.ca, other) for a in sasl_args(kafka, tls=True)]
        want = "certificate verify failed"
    t0 = time.monotonic()
    r = Ringmq(*args, "--route", f"cars/# -> {topic}", wait=False)
    procs.append(r)
    err = refuses_start(r)
    ours = [ln for ln in err.splitlines() if ln.startswith("kafka:")]
    assert len(ours) == 1 and want in ours[0] and "cannot connect to Kafka" in ours[0], err
    assert not [ln for ln in err.splitlines() if ln.startswith("%")], f"librdkafka's own lines too:\n{err}"
    print(f"\n{bad}: refused in {time.monotonic() - t0:.1f} s: {ours[0][:160]}")


# ---- Kafka -> MQTT: the consumed topic is deleted or not authorized ------------------------------------------------

def produce(kafka, topic, key, value):
    p = Producer({"bootstrap.servers": kafka.bootstrap, "log_level": 0})
    p.produce(topic, value, key)
    assert p.flush(30) == 0


def subscriber(r, cid, filt):
    s = RawClient("127.0.0.1", r.port, 5, ACK_TIMEOUT)
    s.connect(cid)
    s.subscribe(filt, qos=1)
    return s


def test_consumed_topic_deleted_counted_others_go_on(kafka, procs):
    gone, kept = kafka.create(unique("cmd-gone")), kafka.create(unique("cmd-kept"))
    route = kafka.create(unique("cmd-route"))
    r = Ringmq("--kafka-brokers", kafka.bootstrap, "--kafka-group", unique("g"), "--consume-delay-ms", "0",
               "--consume", f"{gone} -> cars/${{key}}/a", "--consume", f"{kept} -> cars/${{key}}/b",
               "--route", f"nothing/# -> {route}")
    procs.append(r)
    s = subscriber(r, "car-cmd", "cars/+/#")
    produce(kafka, gone, b"V1", b"first")
    produce(kafka, kept, b"V1", b"second")
    got = {s.recv_publish(ACK_TIMEOUT).topic for _ in range(2)}
    assert got == {"cars/V1/a", "cars/V1/b"}, got
    kafka.delete(gone)
    r.wait_err(f"consumer: topic {gone}:", timeout=120)
    r.wait_metric(CONSUME_ERRORS, 'reason="unknown_topic"', 1, at_least=True)   # one per error event
    produce(kafka, kept, b"V1", b"third")
    pub = s.recv_publish(ACK_TIMEOUT)
    assert (pub.topic, pub.payload) == ("cars/V1/b", b"third")
    assert len(lines_with(r, f"consumer: topic {gone}:")) == 1, r.stderr()


def test_consumed_topic_denied_counted_others_go_on(kafka, procs):
    denied, kept = kafka.create(unique("cmd-denied")), kafka.create(unique("cmd-ok"))
    group = unique("g-acl")
    kafka.allow(USER, kept, "Read", "Describe")
    kafka.allow(USER, None, "Read", group=group)
    route = kafka.create(unique("acl-route"))
    kafka.allow(USER, route, "Write", "Describe")
    r = Ringmq(*sasl_args(kafka), "--kafka-group", group, "--consume-delay-ms", "0",
               "--consume", f"{denied} -> cars/${{key}}/a", "--consume", f"{kept} -> cars/${{key}}/b",
               "--route", f"nothing/# -> {route}")
    procs.append(r)
    s = subscriber(r, "car-acl-cmd", "cars/+/#")
    r.wait_err(f"consumer: topic {denied}:", timeout=120)
    r.wait_metric(CONSUME_ERRORS, 'reason="not_authorized"', 1, at_least=True)
    produce(kafka, kept, b"V2", b"allowed")
    pub = s.recv_publish(ACK_TIMEOUT)
    assert (pub.topic, pub.payload) == ("cars/V2/b", b"allowed")
    assert len(lines_with(r, f"consumer: topic {denied}:")) == 1, r.stderr()
