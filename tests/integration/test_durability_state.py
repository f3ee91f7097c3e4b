# --data-dir: persistent sessions (subscriptions, offline queues, QoS 1/2 inflight state) and retained messages survive
# kill -9 and SIGTERM; a torn log tail is cut with a warning; a changed --cores is refused. Real clients over loopback.
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import RINGMQ_BIN
from mqtt_util import (PUBACK, PUBCOMP, PUBREC, PUBREL, Closed, Publish, RawClient, ack_packet, cid_on_core,
                       mosquitto_pub, parse_ack, publish_packet, witness, witness_saw)

pytestmark = pytest.mark.ringmq_only("--data-dir is a ringmq option")

P_SESSION_EXPIRY, P_SUB_ID = 0x11, 0x0B
LOAD_ACKED_BEFORE_KILL = 300   # PUBACKs seen before the kill: enough that some are in flight when it lands
WINDOW = 20                    # the loader's QoS 1 pipeline (paho's default inflight window)


def durable_opts(tmp_path, fsync="always", **kw):
    d = tmp_path / "data"
    return dict(data_dir=str(d), fsync=fsync, max_queued=200000, **kw)


def kill9(b):
    """The crash under test: SIGKILL by pid. The fixture then skips its clean-exit check for this one."""
    os.kill(b.pid, signal.SIGKILL)
    b.proc.wait(10)
    b.stopped = True


def term(b):
    problems = b.stop(signal.SIGTERM)
    assert not problems, "\n".join(problems)


def drain(c, version=4, quiet=2.0, limit=100000):
    """Every PUBLISH until the broker stays quiet for `quiet` s (each acknowledged); returns them."""
    got = []
    while len(got) < limit:
        try:
            got.append(c.recv_publish(timeout=quiet))
        except TimeoutError:
            return got
    return got


class Loader(threading.Thread):
    """QoS 1 publisher with a pipelined window over a raw socket; records which payloads were PUBACKed. Runs
    until the broker goes away (or `limit` messages)."""

    def __init__(self, host, port, topic, client_id, limit=1000000):
        super().__init__(daemon=True)
        self.c = RawClient(host, port, 4, timeout=10)
        self.c.connect(client_id)
        self.topic, self.limit = topic, limit
        self.acked, self.sent = set(), 0
        self.pending = {}
        self.error = None

    def run(self):
        try:
            while self.sent < self.limit or self.pending:
                while len(self.pending) < WINDOW and self.sent < self.limit:
                    pid = self.c.alloc_pid()
                    payload = f"m{self.sent}"
                    self.c.send(publish_packet(self.topic, payload, 1, False, False, pid))
                    self.pending[pid] = payload
                    self.sent += 1
                pid, reason = parse_ack(self.c.expect(PUBACK, 10), PUBACK, 4)
                assert reason == 0
                self.acked.add(self.pending.pop(pid))
        except (Closed, OSError, TimeoutError):
            pass
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.c.close()


def persistent_sub(b, cid, filt, version=4, qos=1, props=None, sub_props=None):
    c = RawClient(b.host, b.port, version, timeout=10)
    conn_props = props if version == 5 else None
    c.connect(cid, clean=(version == 5), props=conn_props)
    assert c.subscribe([(filt, qos)], props=sub_props) == [qos]
    return c


def resume(b, cid):
    """A 3.1.1 connection with clean_session=0; returns (client, session present)."""
    c = RawClient(b.host, b.port, timeout=10)
    return c, c.connect(cid, clean=False)[0]


def v5_expiry(seconds):
    return [(P_SESSION_EXPIRY, seconds)]


def retained(b, filt, quiet=1.0):
    c = RawClient(b.host, b.port)
    c.connect("retained-reader")
    c.subscribe(filt, 1)
    got = {p.topic: p.payload for p in drain(c, quiet=quiet)}
    c.disconnect()
    return got


@pytest.mark.parametrize("cores", [1, 2], ids=["cores1", "cores2"])
def test_kill9_during_qos1_load_loses_no_acked_message(broker_factory, tmp_path, cores):
    opts = durable_opts(tmp_path)
    b = broker_factory(cores, **opts)
    # Subscribers on every core (the loader publishes from one of them): 3.1.1 clean_session=0 and v5 expiry.
    subs = [(cid_on_core("dur311", k, cores), 4) for k in range(cores)] + [(cid_on_core("dur5", 0, cores), 5)]
    for cid, v in subs:
        c = persistent_sub(b, cid, "load/#", v, props=v5_expiry(3600))
        c.disconnect()
    mosquitto_pub(b.host, b.port, "ret/keep", "kept", qos=1, retain=True)
    mosquitto_pub(b.host, b.port, "ret/gone", "soon cleared", qos=1, retain=True)
    mosquitto_pub(b.host, b.port, "ret/gone", None, qos=1, retain=True)

    loader = Loader(b.host, b.port, "load/x", cid_on_core("loader", cores - 1, cores))
    loader.start()
    deadline = time.monotonic() + 60
    while len(loader.acked) < LOAD_ACKED_BEFORE_KILL and time.monotonic() < deadline and loader.is_alive():
        time.sleep(0.01)
    assert len(loader.acked) >= LOAD_ACKED_BEFORE_KILL, f"only {len(loader.acked)} PUBACKs in 60 s"
    kill9(b)
    loader.join(20)
    assert loader.error is None, loader.error
    acked = set(loader.acked)

    b2 = broker_factory(cores, **opts)
    err = b2.stderr()
    assert err.count("state recovered") == cores, err
    assert "AddressSanitizer" not in err
    for cid, v in subs:
        c = RawClient(b2.host, b2.port, v, timeout=10)
        present, _, _ = c.connect(cid, clean=False, props=v5_expiry(3600) if v == 5 else None)
        assert present, f"{cid}: session not present after the restart"
        got = {p.payload.decode() for p in drain(c, v)}
        missing = acked - got
        assert not missing, f"{cid}: {len(missing)} of {len(acked)} PUBACKed messages lost, e.g. {sorted(missing)[:5]}"
        # The subscription itself came back: a publish after the restart arrives without re-subscribing.
        mosquitto_pub(b2.host, b2.port, "load/after", "after restart", qos=1)
        p = c.recv_publish(timeout=10)
        assert (p.topic, p.payload) == ("load/after", b"after restart")
        c.disconnect()
    assert retained(b2, "ret/#") == {"ret/keep": b"kept"}, "retained set must come back, the cleared one not"
    term(b2)


@pytest.mark.parametrize("cores", [1, 2], ids=["cores1", "cores2"])
def test_unacked_qos1_is_resent_with_dup_after_kill9(broker_factory, tmp_path, cores):
    opts = durable_opts(tmp_path)
    b = broker_factory(cores, **opts)
    cid = cid_on_core("infl", cores - 1, cores)
    sub, _ = resume(b, cid)
    sub.subscribe("inf/#", 1)
    mosquitto_pub(b.host, b.port, "inf/a", "unacked", qos=1, client_id=cid_on_core("p", 0, cores))
    p = sub.recv_publish(timeout=10, ack=False)   # received, never PUBACKed
    assert p.payload == b"unacked" and not p.dup
    kill9(b)
    sub.close()

    b2 = broker_factory(cores, **opts)
    sub = RawClient(b2.host, b2.port, timeout=10)
    present, _, _ = sub.connect(cid, clean=False)
    assert present
    again = sub.recv_publish(timeout=10)
    assert (again.topic, again.payload, again.qos, again.dup, again.pid) == ("inf/a", b"unacked", 1, True, p.pid)
    sub.assert_silent(1.0)   # acknowledged now: exactly once more
    sub.disconnect()
    # ... and its PUBACK was logged too: after a clean restart it is not sent a third time.
    term(b2)
    b3 = broker_factory(cores, **opts)
    sub = RawClient(b3.host, b3.port, timeout=10)
    assert sub.connect(cid, clean=False)[0]
    sub.assert_silent(1.0)
    sub.disconnect()


def test_qos2_states_survive_kill9(broker_factory, tmp_path):
    opts = durable_opts(tmp_path)
    b = broker_factory(1, **opts)
    sub = RawClient(b.host, b.port, 5, timeout=10)
    sub.connect("q2sub", clean=True, props=v5_expiry(3600))
    sub.subscribe("q2/#", 2)
    pub = RawClient(b.host, b.port, 5, timeout=10)
    pub.connect("q2pub", clean=True, props=v5_expiry(3600))
    # Outgoing QoS 2 stopped after PUBREC: the broker owes a PUBREL.
    pub.publish("q2/out", "exactly once", qos=2)
    p = sub.recv_publish(timeout=10, ack=False)
    sub.send(ack_packet(PUBREC, p.pid, 5))
    assert parse_ack(sub.expect(PUBREL), PUBREL, 5)[0] == p.pid
    # Incoming QoS 2 stopped after PUBREC: a resent PUBLISH must not be delivered twice.
    pub.send(publish_packet("q2/in", "once only", 2, False, False, 77, 5))
    assert parse_ack(pub.expect(PUBREC), PUBREC, 5) == (77, 0)
    first = sub.recv_publish(timeout=10)   # delivered once now (QoS 2 exchange completed by the helper)
    assert first.payload == b"once only"
    kill9(b)

    b2 = broker_factory(1, **opts)
    sub = RawClient(b2.host, b2.port, 5, timeout=10)
    assert sub.connect("q2sub", clean=False, props=v5_expiry(3600))[0]
    assert parse_ack(sub.expect(PUBREL), PUBREL, 5)[0] == p.pid, "the PUBREL is resent"
    sub.send(ack_packet(PUBCOMP, p.pid, 5))
    # The kill may have landed before the PUBCOMP of `first` was logged (only stored publishes wait for the
    # disk): then its PUBREL comes again, which is allowed; a PUBLISH is not.
    try:
        again = sub.recv_packet(1.0)
        assert again.type == PUBREL and parse_ack(again, PUBREL, 5)[0] == first.pid, again
        sub.send(ack_packet(PUBCOMP, first.pid, 5))
    except TimeoutError:
        pass
    pub = RawClient(b2.host, b2.port, 5, timeout=10)
    assert pub.connect("q2pub", clean=False, props=v5_expiry(3600))[0]
    pub.send(publish_packet("q2/in", "once only", 2, False, True, 77, 5))
    assert parse_ack(pub.expect(PUBREC), PUBREC, 5) == (77, 0)
    pub.send(ack_packet(PUBREL, 77, 5))
    assert parse_ack(pub.expect(PUBCOMP), PUBCOMP, 5) == (77, 0), "pid 77 was still awaiting its PUBREL"
    sub.assert_silent(1.0)
    term(b2)


def test_v5_session_expiry_and_subscription_id_across_restart(broker_factory, tmp_path):
    opts = durable_opts(tmp_path)
    b = broker_factory(1, **opts)
    short = persistent_sub(b, "short-lived", "exp/#", 5, props=v5_expiry(1))
    short.disconnect()
    keep = persistent_sub(b, "long-lived", "exp/#", 5, props=v5_expiry(3600), sub_props=[(P_SUB_ID, 42)])
    keep.disconnect()
    # A DISCONNECT holds no ack (the offline time it logs is what short-lived's expiry counts from); a stored
    # QoS 1 publish does, and the log is durable in order: once this PUBACK is in, everything above is on disk.
    mosquitto_pub(b.host, b.port, "exp/barrier", "b", qos=1)
    kill9(b)
    time.sleep(1.5)   # the subject: longer than short-lived's 1 s expiry, counted from its disconnect
    b2 = broker_factory(1, **opts)
    assert "1 sessions" in b2.stderr() and "1 expired" in b2.stderr(), b2.stderr()
    mosquitto_pub(b2.host, b2.port, "exp/x", "hello", qos=1)
    c = RawClient(b2.host, b2.port, 5, timeout=10)
    assert c.connect("long-lived", clean=False, props=v5_expiry(3600))[0]
    got = [c.recv_publish(timeout=10) for _ in range(2)]
    assert [p.payload for p in got] == [b"b", b"hello"]
    assert all(p.props.get(P_SUB_ID) in (42, [42]) for p in got), [p.props for p in got]
    c.disconnect()
    c = RawClient(b2.host, b2.port, 5, timeout=10)
    assert not c.connect("short-lived", clean=False, props=v5_expiry(3600))[0], "expired session came back"
    c.disconnect()
    # Clean start removes a session for good, also across a restart.
    c = RawClient(b2.host, b2.port, 5, timeout=10)
    c.connect("long-lived", clean=True)
    c.disconnect()
    term(b2)
    b3 = broker_factory(1, **opts)
    c = RawClient(b3.host, b3.port, 5, timeout=10)
    assert not c.connect("long-lived", clean=False, props=v5_expiry(3600))[0]
    c.disconnect()


@pytest.mark.parametrize("cores", [1, 2], ids=["cores1", "cores2"])
def test_sigterm_restart_loses_nothing_even_with_fsync_never(broker_factory, tmp_path, cores):
    opts = durable_opts(tmp_path, fsync="never")
    b = broker_factory(cores, **opts)
    cid = cid_on_core("term", 0, cores)
    persistent_sub(b, cid, "t/#").disconnect()
    # With fsync never no PUBACK waits for the subscriber's core: a witness on that core sees the last message
    # once that core has handled every one before it (one FIFO per core pair).
    w = witness(b.host, b.port, cid_on_core("twit", 0, cores), "t/ret")
    pub = RawClient(b.host, b.port, timeout=10)
    pub.connect(cid_on_core("tpub", cores - 1, cores))
    for i in range(200):
        pub.publish("t/x", f"n{i}", qos=1)
    pub.publish("t/ret", "r", qos=1, retain=True)
    pub.disconnect()
    assert witness_saw(w, 1) == [b"r"]
    w.disconnect()
    term(b)
    b2 = broker_factory(cores, **opts)
    c = RawClient(b2.host, b2.port, timeout=10)
    assert c.connect(cid, clean=False)[0]
    got = [p.payload.decode() for p in drain(c)]
    assert got == ["n%d" % i for i in range(200)] + ["r"], got[:5]
    c.disconnect()
    assert retained(b2, "t/#") == {"t/ret": b"r"}


def newest_segment(data_dir, core=0):
    d = os.path.join(data_dir, f"core-{core}", "state")
    segs = sorted(f for f in os.listdir(d) if f.endswith(".wal"))
    assert segs, f"no segment in {d}"
    return os.path.join(d, segs[-1])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_tail_is_cut_with_a_warning(broker_factory, tmp_path, damage):
    opts = durable_opts(tmp_path)
    b = broker_factory(1, **opts)
    persistent_sub(b, "tail-sub", "tail/#").disconnect()
    for i in range(5):
        mosquitto_pub(b.host, b.port, f"tail/r{i}", f"v{i}", qos=1, retain=True)
    term(b)
    seg = newest_segment(opts["data_dir"])
    size = os.path.getsize(seg)
    every = {f"tail/r{i}": f"v{i}".encode() for i in range(5)}
    queued = dict(every)
    if damage == "garbage":
        with open(seg, "ab") as f:
            f.write(b"\x17\x00\xffnot a record at all" * 5)
    else:
        # Inside the last record: the offline queue's copy of tail/r4 (its retained set was logged just before).
        os.truncate(seg, size - 3)
        del queued["tail/r4"]
    b2 = broker_factory(1, **opts)
    err = b2.stderr()
    assert "torn or corrupt" in err, err
    assert retained(b2, "tail/#") == every
    c = RawClient(b2.host, b2.port, timeout=10)
    assert c.connect("tail-sub", clean=False)[0]
    got = {p.topic: p.payload for p in drain(c)}
    assert got == queued
    mosquitto_pub(b2.host, b2.port, "tail/new", "fresh", qos=1)
    assert c.recv_publish(timeout=10).payload == b"fresh"
    c.disconnect()
    term(b2)


def test_changed_cores_is_refused_with_the_old_count(broker_factory, tmp_path):
    opts = durable_opts(tmp_path)
    b = broker_factory(2, **opts)
    term(b)
    res = subprocess.run([RINGMQ_BIN, "--listen", "127.0.0.1:0", "--cores", "1", "--data-dir", opts["data_dir"]],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    assert "--cores 2" in res.stderr, res.stderr
    # The directory was not touched: the original core count still starts.
    b2 = broker_factory(2, **opts)
    assert b2.stderr().count("state recovered") == 2
    term(b2)


def test_without_cores_the_data_dirs_count_is_adopted(broker_factory, tmp_path):
    """No --cores: the data dir's core count wins over the CPU count (an upgrade, another machine), said in the
    start line, and the persistent session is found on its core. Written with 3 cores, more than this machine's
    CPUs, so the default alone would differ."""
    opts = durable_opts(tmp_path)
    b = broker_factory(3, **opts)
    persistent_sub(b, "adopt", "a/#").disconnect()
    term(b)
    # port 0: a port picked here could be taken by another test's client before ringmq binds it
    err = tmp_path / "stderr"
    with open(err, "w") as ef:
        proc = subprocess.Popen([RINGMQ_BIN, "--listen", "127.0.0.1:0", "--kafka", "off",
                                 "--data-dir", opts["data_dir"]], stdout=subprocess.PIPE, stderr=ef, text=True)
    try:
        line = proc.stdout.readline()
        assert "(3 cores: as --data-dir was written with" in line, line + err.read_text()
        port = int(line.split("listening on 127.0.0.1:", 1)[1].split()[0])
        c, present = resume(type("B", (), {"host": "127.0.0.1", "port": port}), "adopt")
        assert present, "the persistent session was not found on its core"
        c.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text()


def test_no_data_dir_keeps_sessions_in_memory_only(broker_factory, tmp_path):
    """Negative space: without --data-dir a restart forgets everything (and writes nothing)."""
    b = broker_factory(1)
    persistent_sub(b, "mem", "m/#").disconnect()
    term(b)
    b2 = broker_factory(1)
    c = RawClient(b2.host, b2.port, timeout=10)
    assert not c.connect("mem", clean=False)[0]
    c.disconnect()
    assert "state recovered" not in b2.stderr()


def test_metrics_and_sys_show_the_state_log(broker_factory, tmp_path):
    from test_metrics import metrics_port, scrape, total, wait_for
    opts = durable_opts(tmp_path, fsync="batch")
    b = broker_factory(1, args=["--metrics", "127.0.0.1:0"], sys_interval=1, **opts)
    b.mport = metrics_port(b)
    persistent_sub(b, "metered", "m/#").disconnect()
    for i in range(10):
        mosquitto_pub(b.host, b.port, "m/x", f"v{i}", qos=1)
    # Each core copies its figures into the snapshot once per 100 ms tick, so a scrape can predate the last
    # PUBACK (the 12th record counted, its commit still pending: backlog 1). Fence: a 12th accepted
    # connection, made after every PUBACK above; a snapshot that counts it was taken after all of them.
    fence = RawClient(b.host, b.port, timeout=10)
    fence.connect("fence")
    wait_for(b, lambda s: total(s, "ringmq_connections_accepted_total") >= 12, "the fence connection counted")
    s = scrape(b)   # a whole snapshot: the one above may have been read while its tick was still storing it
    fence.disconnect()
    assert total(s, "ringmq_state_log_records_total") >= 12   # session, subscription, 10 queued
    assert total(s, "ringmq_state_log_bytes_total") > 10 * 20
    assert total(s, "ringmq_state_log_fsyncs_total") >= 1
    assert total(s, "ringmq_state_log_commit_microseconds", quantile="1") > 0
    assert total(s, "ringmq_state_log_backlog_records") == 0   # every PUBACK above waited for it
    c = RawClient(b.host, b.port, timeout=10)
    c.connect("sys-reader")
    c.subscribe("$SYS/broker/store/records", 0)
    # The retained copy is from the last --sys-interval (1 s), maybe older than the last record; a fresh one
    # follows every second.
    seen = [int(c.recv_publish(timeout=5).payload)]
    while seen[-1] < 12 and len(seen) < 4:
        seen.append(int(c.recv_publish(timeout=5).payload))
    assert seen[-1] >= 12, seen
    c.disconnect()


def test_metrics_state_log_is_zero_without_data_dir(broker_factory):
    from test_metrics import metrics_port, total, wait_for
    b = broker_factory(1, args=["--metrics", "127.0.0.1:0"])
    b.mport = metrics_port(b)
    mosquitto_pub(b.host, b.port, "m/x", "v", qos=1, retain=True)
    # a snapshot that counts the publish was taken after the retained message was stored (and not logged)
    s = wait_for(b, lambda s: total(s, "ringmq_messages_in_total") >= 1, "the publish counted")
    assert total(s, "ringmq_state_log_records_total") == 0
    assert total(s, "ringmq_state_log_bytes_total") == 0


@pytest.mark.parametrize("cores", [1, 2], ids=["cores1", "cores2"])
def test_subscription_is_durable_once_subacked(broker_factory, tmp_path, cores):
    """SUBACK of a persistent session waits for its subscription record: kill -9 right after it loses nothing."""
    opts = durable_opts(tmp_path)
    b = broker_factory(cores, **opts)
    c, _ = resume(b, cid_on_core("subacked", cores - 1, cores))
    assert c.subscribe([("fresh/#", 1), ("other/+", 1)]) == [1, 1]
    kill9(b)   # no publish, no disconnect: only the SUBACK vouches for the records
    c.close()
    b2 = broker_factory(cores, **opts)
    mosquitto_pub(b2.host, b2.port, "other/x", "routed", qos=1, client_id=cid_on_core("pub", 0, cores))
    c, present = resume(b2, cid_on_core("subacked", cores - 1, cores))
    assert present
    p = c.recv_publish(timeout=10)
    assert (p.topic, p.payload) == ("other/x", b"routed")
    c.disconnect()


def test_paho_and_mosquitto_clients_resume_after_restart(broker_factory, tmp_path, clients):
    """The same with stock clients: a paho clean_session=0 subscriber and mosquitto_sub -c, messages queued while
    they are away, ringmq restarted with SIGTERM in between."""
    opts = durable_opts(tmp_path, fsync="batch")
    b = broker_factory(1, **opts)
    p = clients.paho(b, "paho-durable", 4, clean=False)
    p.connect()
    assert p.subscribe("pz/#", 1) == [1]
    p.disconnect()
    subprocess.run(["mosquitto_sub", "-p", str(b.port), "-i", "mosq-durable", "-c", "-q", "1", "-t", "pz/#", "-E"],
                   check=True, timeout=10)
    for i in range(20):
        mosquitto_pub(b.host, b.port, "pz/t", f"p{i}", qos=1)
    term(b)
    b2 = broker_factory(1, **opts)
    p = clients.paho(b2, "paho-durable", 4, clean=False)
    present, _, _ = p.connect()
    assert present
    assert [p.get(10).payload.decode() for _ in range(20)] == [f"p{i}" for i in range(20)]
    p.assert_no_message(0.5)
    out = subprocess.run(["mosquitto_sub", "-p", str(b2.port), "-i", "mosq-durable", "-c", "-q", "1", "-t", "pz/#",
                          "-C", "20", "-W", "10"], capture_output=True, text=True, timeout=20)
    assert out.stdout.split() == [f"p{i}" for i in range(20)], out
