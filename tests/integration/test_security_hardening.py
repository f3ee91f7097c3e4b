"""Hardening limits from raw sockets: control-packet floods, deep topics, too many subscriptions, too many user
properties, a packet that trickles (slowloris) and garbage on a TLS listener. Each attack ends with the right
reason code (v5) or a close (3.1.1), the matching ringmq_rejected_total{reason=...} counter on /metrics, and a
well-behaved client pair on the same broker (across cores with 2 cores) that keeps publishing and receiving while
the attack runs. pytest main thread plus one attacker thread per attack; ringmq only."""
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import IS_MOSQUITTO, free_port
from mqtt_util import (DISCONNECT, PINGREQ_BYTES, PINGRESP, P_USER_PROPERTY, SUBACK, Closed,
                       cid_on_core, connect_packet, disconnect_packet, parse_disconnect, publish_packet,
                       subscribe_packet, unsubscribe_packet)
from test_metrics import scrape, start, total, wait_for
from test_tls_ws import make_ca, make_cert, wait_listening

pytestmark = pytest.mark.skipif(IS_MOSQUITTO, reason="ringmq's hardening flags and counters")

RC_KEEPALIVE_TIMEOUT = 0x8D
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_PACKET_TOO_LARGE = 0x95
RC_MESSAGE_RATE_TOO_HIGH = 0x96
RC_QUOTA_EXCEEDED = 0x97
ATTACK_BOUND = 15.0   # seconds an attacker thread may run at most (it stops once the broker cut it off)


def rejected(b, reason):
    return total(scrape(b), "ringmq_rejected_total", reason=reason)


def wait_rejected(b, reason, n):
    wait_for(b, lambda s: total(s, "ringmq_rejected_total", reason=reason) == n, f"rejected {reason} == {n}")


class Bystander:
    """A publisher and a QoS 1 subscriber owned by different cores (when there are two), doing round trips."""

    def __init__(self, b, clients, version, tag):
        self.topic = f"calm/{tag}"
        self.sub = clients.raw(b, version)
        self.sub.connect(cid_on_core(f"calm-sub-{tag}", 0, b.cores))
        assert self.sub.subscribe(self.topic, 1) == [1]
        self.pub = clients.raw(b, version)
        self.pub.connect(cid_on_core(f"calm-pub-{tag}", 1, b.cores))
        self.n = 0

    def roundtrip(self):
        payload = f"calm-{self.n}".encode()
        self.pub.publish(self.topic, payload, qos=1)
        got = self.sub.recv_publish()
        assert (got.topic, got.payload) == (self.topic, payload)
        self.n += 1


class Attacker(threading.Thread):
    """Calls send_chunk(sock) repeatedly (stop early when it returns False) and reads whatever comes back, until
    the broker closes the connection or ATTACK_BOUND passes. Keeps every packet received."""

    def __init__(self, cl, send_chunk, pause=0.005):
        super().__init__(daemon=True)
        self.cl, self.send_chunk, self.pause = cl, send_chunk, pause
        self.packets, self.closed, self.error = [], False, None

    def run(self):
        deadline = time.monotonic() + ATTACK_BOUND
        sending = True
        try:
            while time.monotonic() < deadline:
                if sending:
                    try:
                        sending = self.send_chunk(self.cl) is not False
                    except (BrokenPipeError, ConnectionResetError):
                        sending = False
                try:
                    while True:
                        self.packets.append(self.cl.recv_packet(self.pause))
                except TimeoutError:
                    pass
        except Closed:
            self.closed = True
        except Exception as e:  # reported by finish()
            self.error = e

    def finish(self):
        self.join(ATTACK_BOUND + 5)
        assert not self.is_alive(), "attacker thread did not end"
        if self.error:
            raise self.error
        assert self.closed, f"broker did not close the attacker within {ATTACK_BOUND}s"
        return self.packets


def once(data):
    """An attack of one send."""
    def send(cl):
        cl.send(data)
        return False
    return send


def attack_while_calm(bys, attacker):
    """Runs the attack; the bystander does round trips meanwhile (at least one once it started) and after it."""
    attacker.start()
    bys.roundtrip()
    while attacker.is_alive():
        bys.roundtrip()
    pkts = attacker.finish()
    for _ in range(3):
        bys.roundtrip()
    return pkts


def types(pkts):
    return [p.type for p in pkts]


# ---- control-packet floods ------------------------------------------------------------------------------------

FLOODS = {
    "pingreq": lambda i: PINGREQ_BYTES,
    "subscribe": lambda i: subscribe_packet(i % 65535 + 1, [(f"flood/{i % 7}", 0)], 5),
    "unsubscribe": lambda i: unsubscribe_packet(i % 65535 + 1, [f"flood/{i % 7}"], 5),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_control_flood_v5_gets_0x96_and_others_carry_on(broker_factory, cores, clients, kind):
    # 20/s with a 5 s burst: 100 control packets pass at once, a sustained flood is cut.
    b = start(broker_factory, cores, max_control_rate=20)
    bys = Bystander(b, clients, 5, kind)
    cl = clients.raw(b, 5)
    cl.connect(cid_on_core("flooder", 0, cores))
    counter = [0]

    def chunk(sock):   # ~200 packets/s: the 100-packet burst lasts about half a second
        sock.send(b"".join(FLOODS[kind](counter[0] + k) for k in range(2)))
        counter[0] += 2
    pkts = attack_while_calm(bys, Attacker(cl, chunk, pause=0.01))
    assert pkts and pkts[-1].type == DISCONNECT, types(pkts)[-5:]
    assert parse_disconnect(pkts[-1])[0] == RC_MESSAGE_RATE_TOO_HIGH
    answers = [p for p in pkts if p.type != DISCONNECT]
    # The burst was honoured: every packet up to the bucket size got its answer.
    assert len(answers) >= 100, f"only {len(answers)} answers before the cut"
    wait_rejected(b, "control_rate", 1)
    assert rejected(b, "topic_levels") == 0


def test_control_flood_v311_is_closed_and_counted(broker_factory, cores, clients):
    b = start(broker_factory, cores, max_control_rate=10)
    bys = Bystander(b, clients, 4, "v311")
    cl = clients.raw(b, 4)
    cl.connect(cid_on_core("flooder311", 1, cores))
    pkts = attack_while_calm(bys, Attacker(cl, lambda s: s.send(PINGREQ_BYTES * 2), pause=0.01))
    assert set(types(pkts)) <= {PINGRESP}, "3.1.1 has no DISCONNECT from the server"
    assert len(pkts) >= 50
    wait_rejected(b, "control_rate", 1)


def test_control_packets_within_the_budget_pass(broker_factory, cores, clients):
    b = start(broker_factory, cores, max_control_rate=20)
    cl = clients.raw(b, 5)
    cl.connect("polite")
    cl.send(PINGREQ_BYTES * 90)   # inside the 100-packet burst
    for _ in range(90):
        cl.expect(PINGRESP)
    for i in range(5):
        assert cl.subscribe(f"polite/{i}", 0) == [0]
    assert cl.is_open(0.3)
    assert rejected(b, "control_rate") == 0


def test_control_rate_zero_means_no_limit(broker_factory, clients):
    b = start(broker_factory, 1, max_control_rate=0)
    cl = clients.raw(b, 5)
    cl.connect("unlimited")
    cl.send(PINGREQ_BYTES * 2000)
    for _ in range(2000):
        cl.expect(PINGRESP)
    assert rejected(b, "control_rate") == 0


# ---- deep topics ---------------------------------------------------------------------------------------------

def deep(n, prefix="d"):
    return "/".join([prefix] + [str(i) for i in range(n - 1)])


@pytest.mark.parametrize("version", [4, 5])
def test_deep_publish_topic_is_refused(broker_factory, cores, clients, version):
    b = start(broker_factory, cores, max_topic_levels=8)
    bys = Bystander(b, clients, version, "deep")
    watcher = clients.raw(b, version)
    watcher.connect(cid_on_core("deepwatch", 1, cores))
    watcher.subscribe("d/#", 0)
    ok = clients.raw(b, version)
    ok.connect(cid_on_core("deep-ok", 0, cores))
    ok.publish(deep(8), b"eight", qos=1)   # exactly at the limit: delivered
    assert watcher.recv_publish().topic == deep(8)
    cl = clients.raw(b, version)
    cl.connect(cid_on_core("deep-bad", 0, cores))
    pkts = attack_while_calm(bys, Attacker(cl, once(publish_packet(deep(9), b"x", 1, pid=7, version=version))))
    if version == 5:
        assert types(pkts) == [DISCONNECT]
        assert parse_disconnect(pkts[0])[0] == RC_TOPIC_NAME_INVALID
    else:
        assert pkts == []
    watcher.assert_silent(0.3)   # the deep message went nowhere
    wait_rejected(b, "topic_levels", 1)


@pytest.mark.parametrize("version", [4, 5])
def test_deep_filters_get_suback_refusals_and_the_client_stays(broker_factory, cores, clients, version):
    b = start(broker_factory, cores, max_topic_levels=8)
    cl = clients.raw(b, version)
    cl.connect(cid_on_core("deepsub", 0, cores))
    bad = RC_TOPIC_FILTER_INVALID if version == 5 else 0x80
    codes = cl.subscribe([(deep(9), 1), (deep(8), 1), ("$share/g/" + deep(8, "s"), 0), ("$share/g/" + deep(9), 0)])
    assert codes == [bad, 1, 0, bad]
    assert cl.is_open(0.2)
    wait_rejected(b, "topic_levels", 2)
    pub = clients.raw(b, version)
    pub.connect(cid_on_core("deeppub", 1, cores))
    pub.publish(deep(8), b"fine", qos=1)
    assert cl.recv_publish().payload == b"fine"


def test_deep_will_topic_refused_at_connect(broker_factory, cores, clients):
    b = start(broker_factory, cores, max_topic_levels=8)
    cl = clients.raw(b, 5)
    _, rc, _ = cl.connect("deepwill", will={"topic": deep(9), "payload": b"w"}, expect_rc=None)
    assert rc == RC_TOPIC_NAME_INVALID
    cl.wait_closed()
    cl3 = clients.raw(b, 4)
    cl3.send(connect_packet("deepwill3", 4, will={"topic": deep(9), "payload": b"w"}))
    assert cl3.wait_closed() == []
    wait_rejected(b, "topic_levels", 2)
    ok = clients.raw(b, 5)
    ok.connect("okwill", will={"topic": deep(8), "payload": b"w"})


# ---- subscriptions per session -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_max_subscriptions(broker_factory, cores, clients, version):
    b = start(broker_factory, cores, max_subscriptions=5)
    cl = clients.raw(b, version)
    cl.connect(cid_on_core("subhog", 1, cores))
    assert cl.subscribe([(f"hog/{i}", 0) for i in range(5)]) == [0] * 5
    full = RC_QUOTA_EXCEEDED if version == 5 else 0x80
    # A new filter is refused, re-subscribing an existing one (new QoS) is not.
    assert cl.subscribe([("hog/new", 0), ("hog/0", 1), ("$share/g/hog/x", 0)]) == [full, 1, full]
    wait_rejected(b, "max_subscriptions", 2)
    cl.unsubscribe("hog/1")
    assert cl.subscribe("hog/new", 1) == [1]
    # The limit is per session: another client has its own five.
    other = clients.raw(b, version)
    other.connect(cid_on_core("subhog2", 0, cores))
    assert other.subscribe([(f"hog/{i}", 0) for i in range(5)]) == [0] * 5
    pub = clients.raw(b, version)
    pub.connect("subhog-pub")
    pub.publish("hog/new", b"m", qos=1)
    assert cl.recv_publish().payload == b"m"
    assert rejected(b, "max_subscriptions") == 2


def test_subscription_flood_is_bounded_while_others_carry_on(broker_factory, cores, clients):
    b = start(broker_factory, cores, max_subscriptions=50, max_control_rate=0)
    bys = Bystander(b, clients, 5, "subflood")
    cl = clients.raw(b, 5)
    cl.connect(cid_on_core("subflood", 0, cores))
    sent = [0]

    def chunk(sock):   # 200 SUBSCRIBEs of 10 new filters each, then a normal DISCONNECT ends the attacker
        if sent[0] >= 200:
            sock.send(disconnect_packet(5))
            return False
        sock.send(subscribe_packet(sent[0] + 1, [(f"flood/{sent[0]}/{k}", 0) for k in range(10)], 5))
        sent[0] += 1
    pkts = attack_while_calm(bys, Attacker(cl, chunk, pause=0.002))
    subacks = [p for p in pkts if p.type == SUBACK]
    assert len(subacks) == 200 and len(pkts) == 200, types(pkts)[-3:]
    granted = sum(p.body[3:].count(0) for p in subacks)   # v5 SUBACK: pid, empty props, codes
    assert granted == 50
    wait_rejected(b, "max_subscriptions", 2000 - 50)


# ---- user properties -----------------------------------------------------------------------------------------

def user_props(n):
    return [(P_USER_PROPERTY, (f"k{i}", "v")) for i in range(n)]


def test_too_many_user_properties(broker_factory, cores, clients):
    b = start(broker_factory, cores, max_user_properties=4)
    bys = Bystander(b, clients, 5, "props")
    watcher = clients.raw(b, 5)
    watcher.connect(cid_on_core("propwatch", 1, cores))
    watcher.subscribe("props/#", 0)
    ok = clients.raw(b, 5)
    ok.connect(cid_on_core("props-ok", 0, cores))
    ok.publish("props/ok", b"four", qos=1, props=user_props(4))
    assert watcher.recv_publish().payload == b"four"
    cl = clients.raw(b, 5)
    cl.connect(cid_on_core("props-bad", 0, cores))
    big = publish_packet("props/bad", b"x", 1, pid=3, version=5, props=user_props(5000))
    pkts = attack_while_calm(bys, Attacker(cl, once(big)))
    assert types(pkts) == [DISCONNECT]
    assert parse_disconnect(pkts[0])[0] == RC_PACKET_TOO_LARGE
    watcher.assert_silent(0.3)
    # In CONNECT (and its will) too: CONNACK 0x95.
    for kw in ({"props": user_props(5)}, {"will": {"topic": "w", "payload": b"", "props": user_props(5)}}):
        c = clients.raw(b, 5)
        _, rc, _ = c.connect("propcon", expect_rc=None, **kw)
        assert rc == RC_PACKET_TOO_LARGE
        c.wait_closed()
    # SUBSCRIBE and DISCONNECT carry user properties as well.
    s = clients.raw(b, 5)
    s.connect("propsub")
    s.send(subscribe_packet(1, [("a", 0)], 5, props=user_props(5)))
    pkts = s.wait_closed()
    assert types(pkts) == [DISCONNECT] and parse_disconnect(pkts[0])[0] == RC_PACKET_TOO_LARGE
    wait_rejected(b, "user_properties", 4)


# ---- slowloris -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_trickling_packet_is_cut_off(broker_factory, cores, clients, version):
    b = start(broker_factory, cores, packet_timeout=1)
    bys = Bystander(b, clients, version, "slow")
    cl = clients.raw(b, version)
    # Keep-alive 0: without the packet deadline nothing would ever end this connection.
    cl.connect(cid_on_core("loris", 0, cores), keepalive=0)
    pkt = publish_packet("slow/x", b"y" * 200, 1, pid=1, version=version)
    pos = [0]

    def chunk(sock):
        if pos[0] < len(pkt) - 1:   # never the last byte
            sock.send(pkt[pos[0]:pos[0] + 1])
            pos[0] += 1
    pkts = attack_while_calm(bys, Attacker(cl, chunk, pause=0.2))
    if version == 5:
        assert types(pkts) == [DISCONNECT]
        assert parse_disconnect(pkts[0])[0] == RC_KEEPALIVE_TIMEOUT
    else:
        assert pkts == []
    assert pos[0] < len(pkt) - 1
    wait_rejected(b, "packet_timeout", 1)


def test_split_packets_and_idle_clients_are_left_alone(broker_factory, cores, clients):
    b = start(broker_factory, cores, packet_timeout=1)
    sub = clients.raw(b, 5)
    sub.connect(cid_on_core("split-sub", 1, cores))
    sub.subscribe("split/#", 0)
    cl = clients.raw(b, 5)
    cl.connect(cid_on_core("split", 0, cores), keepalive=0)
    # Packets arriving in pieces, each finished well inside the deadline, for longer than the deadline.
    for i in range(6):
        pkt = publish_packet("split/x", f"p{i}".encode(), 0, version=5)
        cl.send(pkt[:3])
        time.sleep(0.3)   # the subject: 6 x 0.3 s of partial packets outlast the 1 s packet deadline
        cl.send(pkt[3:])
        assert sub.recv_publish().payload == f"p{i}".encode()
    # Idle between packets (no partial one) is not slow: keep-alive 0 means no limit at all.
    assert cl.is_open(1.8)
    cl.ping()
    assert rejected(b, "packet_timeout") == 0


# ---- garbage on a TLS listener ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki-hardening")
    make_ca(d, "ca")
    make_cert(d, "ca", "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    return d


GARBAGE = [
    b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",    # plain MQTT CONNECT
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",               # HTTP
    bytes(range(64)),                                     # noise (a record type TLS does not have)
    b"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff",          # a handshake record that is not a ClientHello
]


def test_tls_garbage_is_closed_fast_and_counted(broker_factory, cores, clients, pki):
    tls_port = free_port()
    b = start(broker_factory, cores, "--listen-tls", f"127.0.0.1:{tls_port}", "--cert", str(pki / "server.crt"),
              "--key", str(pki / "server.key"))
    wait_listening(tls_port, cores)
    bys = Bystander(b, clients, 4, "tls")
    done = [0]

    def one_garbage_connection():
        junk = GARBAGE[done[0] % len(GARBAGE)]
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as sk:
            sk.sendall(junk)
            # Closed at once, well before the 10 s CONNECT timeout that would otherwise end it.
            sk.settimeout(5)
            data = bytearray()
            while chunk := sk.recv(4096):
                data += chunk
            assert b"\x20\x02" not in data   # never a CONNACK
        done[0] += 1

    errors = []

    def run():
        try:
            for _ in range(12):
                one_garbage_connection()
        except Exception as e:
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    while t.is_alive():
        bys.roundtrip()
    t.join(30)
    assert not errors, errors
    assert done[0] == 12
    wait_rejected(b, "handshake", 12)
    # A real TLS client still gets through.
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(tls_port), "-t", "calm/tls", "-m", "m",
                        "-q", "1", "--cafile", str(pki / "ca.crt")], capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    assert rejected(b, "handshake") == 12


class TlsRaw:
    """MQTT over TLS with the TLS records in the test's hands (memory BIOs): it can send part of a record."""

    def __init__(self, port, cafile):
        ctx = ssl.create_default_context(cafile=str(cafile))
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.plain = bytearray()
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                self._recv()
        self.sock.sendall(self.out.read())

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.inc.write(data)

    def records(self, data):
        """The ciphertext of `data` (to send whole, or in pieces)."""
        self.tls.write(data)
        return self.out.read()

    def recv_packet(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                while chunk := self.tls.read(65536):
                    self.plain += chunk
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                pass
            if len(self.plain) >= 2 and len(self.plain) >= 2 + self.plain[1]:   # short packets only
                n = 2 + self.plain[1]
                pkt, self.plain = bytes(self.plain[:n]), self.plain[n:]
                return pkt
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            self._recv()


def test_tls_record_trickled_below_mqtt_is_cut_off(broker_factory, cores, clients, pki):
    tls_port = free_port()
    b = start(broker_factory, cores, "--listen-tls", f"127.0.0.1:{tls_port}", "--cert", str(pki / "server.crt"),
              "--key", str(pki / "server.key"), packet_timeout=1)
    wait_listening(tls_port, cores)
    bys = Bystander(b, clients, 5, "tlsloris")
    t = TlsRaw(tls_port, pki / "ca.crt")
    t.sock.sendall(t.records(connect_packet(cid_on_core("tlsloris", 0, cores), 5, keepalive=0)))
    assert t.recv_packet()[0] >> 4 == 2   # CONNACK
    # A whole PUBLISH whose TLS record arrives a byte at a time: MQTT never sees a byte of it.
    rec = t.records(publish_packet("calm/tlsloris", b"z" * 100, 0, version=5))
    for i in range(len(rec) - 1):
        try:
            t.sock.sendall(rec[i:i + 1])
        except OSError:
            break
        try:
            t._recv()
            break   # the broker answered (or closed): stop trickling
        except socket.timeout:
            pass
        except Closed:
            break
        finally:
            t.sock.settimeout(0.2)
        bys.roundtrip()
    pkt = t.recv_packet()
    assert pkt[0] >> 4 == DISCONNECT and pkt[2] == RC_KEEPALIVE_TIMEOUT, pkt
    wait_rejected(b, "packet_timeout", 1)
    bys.roundtrip()


# ---- $SYS ------------------------------------------------------------------------------------------------------

def test_rejections_show_in_sys(broker_factory, clients):
    b = start(broker_factory, 1, max_topic_levels=4, sys_interval=1)
    cl = clients.raw(b, 5)
    cl.connect("sysdeep")
    assert cl.subscribe([(deep(5), 0), (deep(6), 0)]) == [RC_TOPIC_FILTER_INVALID] * 2
    watch = clients.raw(b, 4)
    watch.connect("syswatch")
    watch.subscribe("$SYS/broker/rejected/#", 0)
    names = ("topic_levels", "control_rate", "max_subscriptions", "user_properties", "packet_timeout", "handshake")
    want = {f"$SYS/broker/rejected/{n}": b"2" if n == "topic_levels" else b"0" for n in names}
    deadline = time.monotonic() + 10
    seen = {}
    while time.monotonic() < deadline and any(seen.get(k) != v for k, v in want.items()):
        p = watch.recv_publish(timeout=5)
        seen[p.topic] = p.payload
    assert {k: seen.get(k) for k in want} == want
