# Scale-out front end: Debian's HAProxy running the shipped tools/haproxy.cfg (only addresses rewritten) in front
# of three ringmq nodes with --proxy-protocol: client-id stickiness, spread, the car's real address (PROXY v1 and
# v2) in logs and in the failed-login limiter, pub/sub through it, refusal of connections without a header, the
# header ahead of TLS/WebSocket, and a killed node's cars moving to the others. One set of processes per module.
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import time
import urllib.request

import pytest

from conftest import REPO_ROOT, BUILD_DIR, free_port, listening, start_broker
from mqtt_util import (CONNACK, Closed, MosquittoSub, Paho, RawClient, connect_packet, mosquitto_pub, owner_core,
                       parse_connack, publish_packet, wait_until)

HAPROXY = "/usr/sbin/haproxy"
SHIPPED_CFG = os.path.join(REPO_ROOT, "tools", "haproxy.cfg")
PASSWD_BIN = os.path.join(BUILD_DIR, "ringmq-passwd")
START_TIMEOUT = 20.0
NODE_CORES = [1, 2, 2]   # node1 has one core so the failed-login limiter (per core) is deterministic
V1_SRC, V2_SRC = "127.0.0.3", "127.0.0.2"   # clients connect from these loopback addresses: not HAProxy's

pytestmark = [
    pytest.mark.skipif(not os.path.exists(HAPROXY),
                       reason="haproxy is not installed (apt-get install haproxy, listed in tools/install-deps.sh)"),
    pytest.mark.ringmq_only("PROXY protocol listeners are ringmq's"),
]


def haproxy_config(front_port, stats_port, nodes, send_proxy="send-proxy-v2"):
    """The shipped file with its listen addresses and server lines replaced. Each replacement must hit exactly
    once, so a change in the shipped file's shape fails here instead of silently testing something else."""
    text = open(SHIPPED_CFG).read()

    def once(pattern, repl, s):
        out, n = re.subn(pattern, repl, s, flags=re.M)
        assert n == 1, f"tools/haproxy.cfg: expected one match of {pattern!r}, found {n}"
        return out
    text = once(r"^    bind :1883$", f"    bind 127.0.0.1:{front_port}", text)
    text = once(r"^    bind 127\.0\.0\.1:8404$", f"    bind 127.0.0.1:{stats_port}", text)
    servers = "\n".join(f"    server node{i + 1} 127.0.0.1:{n.port}" for i, n in enumerate(nodes))
    text = once(r"^    server node1 .*\n    server node2 .*\n    server node3 .*$", servers, text)
    text = once(r"^    default-server send-proxy-v2 ", f"    default-server {send_proxy} ", text)
    return text


class HAProxy:
    def __init__(self, tmp, name, nodes, send_proxy):
        self.port, self.stats_port = free_port(), free_port()
        self.cfg = tmp / f"{name}.cfg"
        self.cfg.write_text(haproxy_config(self.port, self.stats_port, nodes, send_proxy))
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"haproxy -c rejects the generated config:\n{check.stdout}{check.stderr}"
        self.log = tmp / f"{name}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.nnodes = len(nodes)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"haproxy exited at start-up:\n{self.log.read_text()}"
            if listening(self.port) and self.servers_up() == self.nnodes:
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"haproxy: {self.servers_up()} of {self.nnodes} servers UP after {START_TIMEOUT}s:\n"
                    f"{self.log.read_text()[-4000:]}")

    def servers_up(self):
        """Servers the MQTT health check (PROXY header + CONNECT/CONNACK) reports UP, from the stats CSV."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2) as r:
                rows = r.read().decode().splitlines()
        except OSError:
            return 0
        head = rows[0].lstrip("# ").split(",")
        st = head.index("status")
        return sum(1 for row in rows[1:] if row.startswith("ringmq,node") and row.split(",")[st] == "UP")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Cluster:
    def __init__(self, tmp):
        self.tmp = tmp
        self.nodes, self.metrics = [], []
        self.passwd = tmp / "passwd"
        subprocess.run([PASSWD_BIN, "-c", "-b", str(self.passwd), "car", "secret"], check=True, timeout=30)
        self.ws_port, self.tls_port = free_port(), free_port()
        key, crt = tmp / "node.key", tmp / "node.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(crt), "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
        for i, cores in enumerate(NODE_CORES):
            mport = free_port()
            args = ["--proxy-protocol", "-v", "--metrics", f"127.0.0.1:{mport}", "--password-file", str(self.passwd),
                    "--allow-anonymous", "true", "--auth-fail-burst", "2", "--auth-fail-per-minute", "1"]
            if i == 0:   # the header comes before the WebSocket upgrade and the TLS handshake too
                args += ["--listen-ws", f"127.0.0.1:{self.ws_port}", "--listen-tls", f"127.0.0.1:{self.tls_port}",
                         "--cert", str(crt), "--key", str(key)]
            self.nodes.append(start_broker(tmp, cores, args, kafka="off"))
            self.metrics.append(mport)
        self.v2 = HAProxy(tmp, "haproxy-v2", self.nodes, "send-proxy-v2")
        self.v1 = HAProxy(tmp, "haproxy-v1", self.nodes, "send-proxy")

    def node_logs(self):
        return [n.stderr() for n in self.nodes]

    def nodes_of(self, cid):
        """How many times each node accepted a CONNECT from cid (by its -v log)."""
        return [log.count(f"client '{cid}' connected (") for log in self.node_logs()]

    def metric(self, node, name, label=""):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics[node]}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0
        for line in text.splitlines():
            if line.startswith(name + "{") and label in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def stop(self):
        problems = []
        for h in (self.v1, self.v2):
            h.stop()
        for n in self.nodes:
            problems += n.stop()
        return problems


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("haproxy"))
    yield c
    problems = c.stop()
    if problems:
        pytest.fail("\n".join(problems))


def connect_via(port, cid, src=None, version=4, **kw):
    """CONNECT through a front end; returns (client, CONNACK code). The client is still open."""
    cl = RawClient("127.0.0.1", port, version, timeout=10.0, source=src)
    _, rc, _ = cl.connect(cid, expect_rc=None, **kw)
    return cl, rc


def recv_or_reset(s):
    try:
        return s.recv(64)
    except ConnectionResetError:
        return b""


def node_index(cluster, cid):
    counts = cluster.nodes_of(cid)
    assert sum(1 for n in counts if n) == 1, f"{cid} seen on nodes {counts}"
    return next(i for i, n in enumerate(counts) if n)


def find_ids(cluster, prefix, node, n):
    """n client ids that HAProxy sends to `node` (learnt by connecting each candidate once)."""
    found = []
    for i in range(60):
        cid = f"{prefix}-{i}"
        cl, rc = connect_via(cluster.v2.port, cid)
        assert rc == 0
        cl.disconnect()
        cl.close()
        wait_until(lambda: sum(cluster.nodes_of(cid)) == 1, f"{cid} in a node log")
        if node_index(cluster, cid) == node:
            found.append(cid)
            if len(found) == n:
                return found
    raise AssertionError(f"no {n} ids for node {node + 1} among 60")


# ---- tests --------------------------------------------------------------------------------------------------

def test_same_client_id_same_node_and_ids_spread(cluster):
    ids = [f"vin-{i:03d}" for i in range(24)]
    rounds = 3
    for r in range(rounds):
        for cid in ids:
            # v1 and v2 front ends are two HAProxy instances with the same server list: they must agree
            port = cluster.v1.port if r == rounds - 1 else cluster.v2.port
            # HAProxy reads the client id of 3.1 ("MQIsdp"), 3.1.1 and 5.0 CONNECTs alike
            version = (3, 4, 5)[(r + int(cid[-1])) % 3]
            if r == 1 and cid.endswith("0"):
                # a CONNECT trickling in byte by byte: HAProxy's rules wait for all of it
                cl = RawClient("127.0.0.1", port, version, timeout=10.0)
                for b in connect_packet(cid, version):
                    cl.send(bytes([b]))
                    time.sleep(0.002)
                rc = parse_connack(cl.expect(CONNACK), version)[1]
            else:
                cl, rc = connect_via(port, cid, version=version)
            assert rc == 0, f"{cid}: CONNACK {rc}"
            cl.disconnect()
            cl.close()
    wait_until(lambda: all(sum(cluster.nodes_of(c)) == rounds for c in ids), "every CONNECT in a node log")
    placement = {}
    for cid in ids:
        counts = cluster.nodes_of(cid)
        assert sorted(counts) == [0, 0, rounds], f"{cid} did not stick to one node: {counts}"
        placement[cid] = counts.index(rounds)
    per_node = [list(placement.values()).count(i) for i in range(3)]
    assert all(per_node), f"24 ids did not reach every node: {per_node}"


def test_real_client_address_v1_and_v2(cluster):
    lines = []
    for front, src, tag in ((cluster.v2, V2_SRC, "v2"), (cluster.v1, V1_SRC, "v1")):
        for i in range(12):
            cid = f"addr-{tag}-{i}"
            cl, rc = connect_via(front.port, cid, src=src)
            assert rc == 0
            sport = cl.sock.getsockname()[1]
            cl.disconnect()
            cl.close()
            lines.append((cid, f"{src}:{sport}"))
    for cid, addr in lines:
        wait_until(lambda: sum(cluster.nodes_of(cid)) == 1, f"{cid} in a node log")
        node = node_index(cluster, cid)
        log = cluster.node_logs()[node]
        m = re.findall(rf"core (\d+): client '{re.escape(cid)}' from (\S+) \(PROXY header\)", log)
        assert len(m) == 1, f"{cid}: no single PROXY address line on node {node + 1}: {m}"
        core, seen = m[0]
        # the car's own address and port, not HAProxy's 127.0.0.1; logged by the owner core, so on a 2-core node
        # a CONNECT accepted by the other core carried the address through the handoff
        assert seen == addr, f"{cid}: node logged {seen}, client was {addr}"
        assert int(core) == owner_core(cid, NODE_CORES[node])


def test_failed_logins_are_limited_per_car_not_per_balancer(cluster):
    """--auth-fail-burst 2 on node1: one address's failures lock that address out, not every car behind HAProxy."""
    cid = find_ids(cluster, "login", 0, 1)[0]
    failing, other = "127.0.0.4", "127.0.0.5"   # two cars; HAProxy connects to the node from 127.0.0.1 for both
    for _ in range(2):
        cl, rc = connect_via(cluster.v2.port, cid, src=failing, version=5, username="car", password=b"wrong")
        assert rc == 0x86, f"wrong password: CONNACK {rc:#x}"
        cl.close()
    cl, rc = connect_via(cluster.v2.port, cid, src=failing, version=5, username="car", password=b"secret")
    assert rc == 0x9F, f"right password from the locked-out address: CONNACK {rc:#x}, expected 0x9f (rate limited)"
    cl.close()
    cl, rc = connect_via(cluster.v2.port, cid, src=other, version=5, username="car", password=b"secret")
    assert rc == 0, f"another car behind the same HAProxy was locked out too: CONNACK {rc:#x}"
    cl.disconnect()
    cl.close()
    cl, rc = connect_via(cluster.v2.port, cid, src=V2_SRC)   # anonymous logins are not limited at all
    assert rc == 0
    cl.close()


def test_pubsub_through_haproxy_mosquitto_and_paho(cluster):
    # Without --cluster-topic, delivery is within a node: pick ids that HAProxy places on one node.
    for node in (1, 2):
        sub_id, pub_id, psub_id, ppub_id = find_ids(cluster, f"pubsub{node}", node, 4)
        topic = f"cars/n{node}/telemetry"
        sub = MosquittoSub("127.0.0.1", cluster.v2.port, topic, qos=1, count=2, client_id=sub_id)
        try:
            sub.wait_subscribed()
            mosquitto_pub("127.0.0.1", cluster.v2.port, topic, "v311", qos=1, client_id=pub_id)
            mosquitto_pub("127.0.0.1", cluster.v1.port, topic, "v5", qos=1, version=5, client_id=pub_id)
            assert sub.messages() == [f"{topic} v311", f"{topic} v5"]
        finally:
            sub.stop()
        s = Paho("127.0.0.1", cluster.v2.port, psub_id)
        p = Paho("127.0.0.1", cluster.v1.port, ppub_id, version=5)
        try:
            s.connect()
            assert s.subscribe(topic + "/paho", 1) == [1]
            p.connect()
            for i in range(20):
                p.publish(topic + "/paho", f"m{i}".encode(), qos=1)
            got = [s.get().payload for _ in range(20)]
            assert got == [f"m{i}".encode() for i in range(20)]
        finally:
            p.stop()
            s.stop()


def test_connection_without_header_is_refused_and_counted(cluster):
    node = cluster.nodes[0]
    before = cluster.metric(0, "ringmq_connections_refused_total", 'reason="proxy_header"')
    bad = [
        connect_packet("direct", 4),                                      # MQTT straight to the node
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 99999\r\n" + connect_packet("bad-port", 4),
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12) + connect_packet("v2-bad-ver", 4),
        b"PROXY TCP4 192.0.2.1",                                          # header cut short, then EOF
    ]
    for data in bad:
        s = socket.create_connection((node.host, node.port), timeout=10)
        s.sendall(data)
        if data.endswith(b"192.0.2.1"):
            s.shutdown(socket.SHUT_WR)
        assert recv_or_reset(s) == b"", f"the node answered {data[:20]!r}"
        s.close()
    wait_until(lambda: cluster.metric(0, "ringmq_connections_refused_total", 'reason="proxy_header"') == before + 4,
             "four proxy_header refusals counted")
    assert "client 'direct' connected" not in node.stderr()
    # HAProxy itself drops a first packet that is not MQTT, before any node sees it
    s = socket.create_connection(("127.0.0.1", cluster.v2.port), timeout=15)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert recv_or_reset(s) == b""
    s.close()


def test_header_and_data_in_one_read_and_before_tls_and_websocket(cluster):
    """Straight to node1 (as HAProxy would connect): the header, then TLS / WebSocket / MQTT bytes in the same
    segment; the address of the header is what the node logs."""
    node = cluster.nodes[0]
    # plain: header + CONNECT + PUBLISH QoS 1 in one send
    cl = RawClient(node.host, node.port, 4, timeout=10.0)
    cl.send(b"PROXY TCP4 198.51.100.7 192.0.2.1 40001 1883\r\n" + connect_packet("one-read", 4) +
            publish_packet("cars/one-read", b"x", qos=1, pid=7))
    assert parse_connack(cl.expect(CONNACK), 4)[1] == 0
    cl.disconnect()
    cl.close()
    # v2 header, then a TLS handshake, then MQTT inside TLS
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    v2 = sig + b"\x21\x21" + struct.pack("!H", 36) + socket.inet_pton(socket.AF_INET6, "2001:db8::9") + \
        socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 40002, 8883)
    raw = socket.create_connection((node.host, cluster.tls_port), timeout=10)
    raw.sendall(v2)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(connect_packet("over-tls", 4))
        assert t.recv(4) == b"\x20\x02\x00\x00"
    # v1 header + WebSocket upgrade + a masked binary frame carrying CONNECT, all in one send
    up = (b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
          b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
    pkt = connect_packet("over-ws", 4)
    mask = b"\x01\x02\x03\x04"
    frame = bytes([0x82, 0x80 | len(pkt)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(pkt))
    ws = socket.create_connection((node.host, cluster.ws_port), timeout=10)
    ws.sendall(b"PROXY TCP4 203.0.113.5 192.0.2.1 40003 80\r\n" + up + frame)
    buf = b""
    deadline = time.monotonic() + 10
    while b"\x82\x04\x20\x02\x00\x00" not in buf and time.monotonic() < deadline:
        chunk = ws.recv(4096)
        if not chunk:
            break
        buf += chunk
    ws.close()
    assert buf.startswith(b"HTTP/1.1 101"), buf[:80]
    assert b"\x82\x04\x20\x02\x00\x00" in buf, "no CONNACK frame after the upgrade"
    wait_until(lambda: "client 'over-ws' from" in node.stderr(), "the WebSocket client's log line")
    log = node.stderr()
    assert "client 'one-read' from 198.51.100.7:40001 (PROXY header)" in log
    assert "client 'over-tls' from [2001:db8::9]:40002 (PROXY header)" in log
    assert "client 'over-ws' from 203.0.113.5:40003 (PROXY header)" in log


def test_local_command_keeps_socket_address(cluster):
    """v2 LOCAL (what HAProxy's health checks send): accepted, no client address taken from it."""
    node = cluster.nodes[0]
    cl = RawClient(node.host, node.port, 4, timeout=10.0)
    cl.send(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00" + connect_packet("local-cmd", 4))
    assert parse_connack(cl.expect(CONNACK), 4)[1] == 0
    cl.disconnect()
    cl.close()
    wait_until(lambda: "client 'local-cmd' connected" in node.stderr(), "local-cmd in the log")
    assert "client 'local-cmd' from" not in node.stderr()
    # one header per connection: a second one is not MQTT, and the node closes
    c2 = RawClient(node.host, node.port, 4, timeout=5.0)
    try:
        c2.send(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00PROXY UNKNOWN\r\n")
        c2.wait_closed()
    finally:
        c2.close()


def test_node_failure_moves_its_cars_to_the_others(cluster):
    """Runs last: it kills node3. Its cars reconnect through HAProxy and land on the surviving nodes at once (the
    connect to the dead node is redispatched before any health check has noticed), then stick to one of them."""
    ids = find_ids(cluster, "failover", 2, 3)
    victim = cluster.nodes[2]
    os.kill(victim.pid, signal.SIGKILL)
    victim.proc.wait(10)
    victim.stopped = True   # killed on purpose: not a failure at teardown
    for cid in ids:
        # As a car would: reconnect when the connection closes. The dead node's listening socket can outlive the
        # process for a moment (its io_uring is torn down by the kernel afterwards), so a first attempt may be
        # accepted there and closed; then the connect is refused and HAProxy redispatches it.
        for attempt in range(20):
            try:
                cl, rc = connect_via(cluster.v2.port, cid)
                break
            except (Closed, ConnectionResetError):
                time.sleep(0.1)
        else:
            raise AssertionError(f"{cid}: no CONNACK in 20 attempts after its node died")
        assert rc == 0, f"{cid}: CONNACK {rc} right after its node died"
        cl.disconnect()
        cl.close()
    wait_until(lambda: all(sum(cluster.nodes_of(c)[:2]) == 1 for c in ids), "the cars on the surviving nodes")
    wait_until(lambda: cluster.v2.servers_up() == 2, "HAProxy marking node3 DOWN", timeout=15)
    before = {cid: cluster.nodes_of(cid)[:2] for cid in ids}
    for _ in range(2):
        for cid in ids:
            cl, rc = connect_via(cluster.v2.port, cid)
            assert rc == 0
            cl.disconnect()
            cl.close()
    wait_until(lambda: all(sum(cluster.nodes_of(c)[:2]) == sum(before[c]) + 2 for c in ids), "the reconnects")
    for cid in ids:
        moved = [a - b for a, b in zip(cluster.nodes_of(cid)[:2], before[cid])]
        assert sorted(moved) == [0, 2], f"{cid} did not stick to one surviving node: {moved}"
