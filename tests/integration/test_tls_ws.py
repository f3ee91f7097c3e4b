# The broker's TLS, mTLS, WebSocket and WSS listeners with real clients (mosquitto_pub/sub, paho, MQTT.js), each
# crossing to and from plain TCP, on 1 and 2 cores (2: the CONNECT handoff moves the TLS state). pytest main thread.
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import BUILD_DIR, RINGMQ_BIN, exclusive, free_port, listening
from mqtt_util import MosquittoSub, cid_on_core, wait_until

pytestmark = pytest.mark.ringmq_only("TLS/WebSocket flags are ringmq's")

CLIENT_TIMEOUT = 15


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d, ca, name, cn, ext=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={cn}", cwd=d)
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2"]
    if ext:
        (d / f"{name}.ext").write_text(ext)
        args += ["-extfile", f"{name}.ext"]
    openssl(*args, cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1, client certificates car42 and car7 from that CA, and a
    client certificate `intruder` from an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "ca", "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    make_cert(d, "ca", "car42", "car42")
    make_cert(d, "ca", "car7", "car7")
    make_cert(d, "otherca", "intruder", "car42")
    return d


def wait_listening(port, n):
    wait_until(lambda: listening(port) >= n, f"port {port} listening on {n} sockets")


def start_tls_broker(broker_factory, cores, pki, *extra, **opts):
    """Plain listener (the fixture's) plus TLS, WS and WSS listeners on free ports."""
    ports = {k: free_port() for k in ("tls", "ws", "wss")}
    args = ["--listen-tls", f"127.0.0.1:{ports['tls']}", "--listen-ws", f"127.0.0.1:{ports['ws']}",
            "--listen-wss", f"127.0.0.1:{ports['wss']}", "--cert", str(pki / "server.crt"),
            "--key", str(pki / "server.key"), *extra]
    b = broker_factory(cores, args=args, **opts)
    for p in ports.values():
        wait_listening(p, cores)
    b.ports = ports
    return b


def sub_proc(port, topic, count, cid, *tls, extra=()):
    """mosquitto_sub for `count` QoS 1 messages; wait_subscribed() before publishing, payloads() at the end."""
    return MosquittoSub("localhost" if tls else "127.0.0.1", port, topic, qos=1, count=count, client_id=cid,
                        extra=[*tls, *extra], wait_s=10)


def payloads(s):
    """The payloads mosquitto_sub printed (-v: 'topic payload'), after it exited 0 having got its count."""
    lines = s.messages(CLIENT_TIMEOUT)
    assert s.proc.returncode == 0, s.all
    return [ln.split(" ", 1)[1] for ln in lines]


def pub(port, topic, msg, cid, *tls, check=True):
    r = subprocess.run(["mosquitto_pub", "-h", "localhost" if tls else "127.0.0.1", "-p", str(port), "-t", topic,
                        "-m", msg, "-q", "1", "-i", cid, *tls], capture_output=True, text=True,
                       timeout=CLIENT_TIMEOUT)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("owner", [0, 1])
def test_mosquitto_tls_to_tcp_and_back(broker_factory, cores, pki, owner):
    b = start_tls_broker(broker_factory, cores, pki)
    tls = ("--cafile", str(pki / "ca.crt"))
    # Client ids owned by either core: with 2 cores, a TLS connection accepted on the other core is handed off
    # with its TLS session mid-stream.
    s = sub_proc(b.port, "t/tls/in", 3, cid_on_core("plainsub", owner, cores))
    s.wait_subscribed(10)
    for i in range(3):
        pub(b.ports["tls"], "t/tls/in", f"over-tls-{i}", cid_on_core(f"tlspub{i}", owner + i, cores), *tls)
    assert payloads(s) == ["over-tls-0", "over-tls-1", "over-tls-2"]

    s = sub_proc(b.ports["tls"], "t/tls/out", 2, cid_on_core("tlssub", owner, cores), *tls)
    s.wait_subscribed(10)
    pub(b.port, "t/tls/out", "from-tcp", cid_on_core("plainpub", owner + 1, cores))
    pub(b.ports["tls"], "t/tls/out", "x" * 100000, cid_on_core("tlspub-big", owner + 1, cores), *tls)
    assert payloads(s) == ["from-tcp", "x" * 100000]


def test_tls_refuses_an_untrusted_server_name_and_garbage(broker_factory, cores, pki):
    b = start_tls_broker(broker_factory, cores, pki)
    # The client checks the server: a CA that did not sign it fails the handshake.
    r = pub(b.ports["tls"], "t/x", "m", "badca", "--cafile", str(pki / "otherca.crt"), check=False)
    assert r.returncode != 0
    # Plain MQTT and HTTP to the TLS port: refused (closed), the broker stays up.
    for junk in (b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", b"GET / HTTP/1.1\r\n\r\n" + b"\x16" * 5000):
        with socket.create_connection(("127.0.0.1", b.ports["tls"]), timeout=5) as sk:
            sk.sendall(junk)
            data = b""
            while True:
                chunk = sk.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert b"\x20\x02" not in data  # never a CONNACK
    s = sub_proc(b.ports["tls"], "t/after", 1, "after-sub", "--cafile", str(pki / "ca.crt"))
    s.wait_subscribed(10)
    pub(b.port, "t/after", "still-up", "after-pub")
    assert payloads(s) == ["still-up"]


def test_mtls_certificate_name_is_the_username(broker_factory, cores, pki, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("pattern readwrite cars/%u/#\n")
    b = start_tls_broker(broker_factory, cores, pki, "--cafile", str(pki / "ca.crt"), "--require-certificate",
                         "--acl-file", str(acl))
    car42 = ("--cafile", str(pki / "ca.crt"), "--cert", str(pki / "car42.crt"), "--key", str(pki / "car42.key"))
    car7 = ("--cafile", str(pki / "ca.crt"), "--cert", str(pki / "car7.crt"), "--key", str(pki / "car7.key"))
    s = sub_proc(b.ports["tls"], "cars/car42/#", 1, cid_on_core("c42sub", 1, cores), *car42)
    s.wait_subscribed(10)
    # car7 may not write under cars/car42 (its username is its CN, no -u given): dropped (3.1.1).
    pub(b.ports["tls"], "cars/car42/cmd", "from-car7", cid_on_core("c7pub", 0, cores), *car7)
    # the fence: car42's own publish through the same core comes after; the subscriber takes 1 message
    pub(b.ports["tls"], "cars/car42/cmd", "from-car42", cid_on_core("c42pub", 0, cores), *car42)
    assert payloads(s) == ["from-car42"]
    # car42 cannot read car7's topics either: SUBACK 0x80.
    r = subprocess.run(["mosquitto_sub", "-h", "localhost", "-p", str(b.ports["tls"]), "-t", "cars/car7/#", "-C", "1",
                        "-W", "3", "-i", "c42peek", *car42], capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    assert "All subscription requests were denied" in r.stderr, r.stderr


def test_mtls_rejects_unknown_and_missing_certificates(broker_factory, cores, pki):
    b = start_tls_broker(broker_factory, cores, pki, "--cafile", str(pki / "ca.crt"), "--require-certificate")
    ca = ("--cafile", str(pki / "ca.crt"))
    intruder = (*ca, "--cert", str(pki / "intruder.crt"), "--key", str(pki / "intruder.key"))
    for args in (intruder, ca):
        r = pub(b.ports["tls"], "cars/car42/x", "m", "intruder", *args, check=False)
        assert r.returncode != 0, "connected without a valid client certificate"
    # Plain TCP without credentials is anonymous, which client-certificate auth turns off by default.
    r = pub(b.port, "t", "m", "anon", check=False)
    assert r.returncode != 0
    good = (*ca, "--cert", str(pki / "car42.crt"), "--key", str(pki / "car42.key"))
    pub(b.ports["tls"], "cars/car42/x", "m", "good", *good)


def paho_client(cid, port, tls_ca=None, version=mqtt.MQTTv311):
    c = mqtt.Client(cid, protocol=version, transport="websockets")
    if tls_ca:
        c.tls_set(ca_certs=tls_ca)
    got, msgs, subbed = threading.Event(), [], threading.Event()

    def on_message(cl, ud, m):
        msgs.append((m.topic, m.payload))
        got.set()
    c.on_message = on_message
    c.on_subscribe = lambda *a: subbed.set()
    c.connect("localhost" if tls_ca else "127.0.0.1", port, keepalive=30)
    c.loop_start()
    c.got, c.msgs, c.subbed = got, msgs, subbed
    return c


@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_paho_websocket_to_tcp_and_back(broker_factory, cores, pki, kind):
    b = start_tls_broker(broker_factory, cores, pki)
    ca = str(pki / "ca.crt") if kind == "wss" else None
    clients = []
    try:
        ws_sub = paho_client(cid_on_core("wssub", 1, cores), b.ports[kind], ca)
        clients.append(ws_sub)
        ws_sub.subscribe("w/#", 1)
        assert ws_sub.subbed.wait(10)
        pub(b.port, "w/from-tcp", "hello-ws", cid_on_core("tcppub", 0, cores))
        assert ws_sub.got.wait(10)
        assert ws_sub.msgs == [("w/from-tcp", b"hello-ws")]

        s = sub_proc(b.port, "w2/#", 2, cid_on_core("tcpsub", 0, cores))
        s.wait_subscribed(10)
        ws_pub = paho_client(cid_on_core("wspub", 1, cores), b.ports[kind], ca, mqtt.MQTTv5)
        clients.append(ws_pub)
        ws_pub.publish("w2/a", b"small", qos=1).wait_for_publish()
        # Larger than a receive buffer and than one TLS record: split across frames and records.
        ws_pub.publish("w2/b", b"y" * 70000, qos=1).wait_for_publish()
        assert payloads(s) == ["small", "y" * 70000]
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()


def test_websocket_upgrade_refusals(broker_factory, cores, pki):
    b = start_tls_broker(broker_factory, cores, pki)
    base = ("GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    cases = [(base + "\r\n", b"HTTP/1.1 400"),                                      # no mqtt subprotocol
             (base.replace("Version: 13", "Version: 8") + "Sec-WebSocket-Protocol: mqtt\r\n\r\n", b"HTTP/1.1 426"),
             (base + "Sec-WebSocket-Protocol: mqtt\r\n\r\n", b"HTTP/1.1 101")]
    for req, want in cases:
        with socket.create_connection(("127.0.0.1", b.ports["ws"]), timeout=5) as sk:
            sk.sendall(req.encode())
            data = sk.recv(4096)
            assert data.startswith(want), (req, data)
            if want == b"HTTP/1.1 101":
                assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in data
                assert b"Sec-WebSocket-Protocol: mqtt" in data
                # A text frame is refused (MQTT travels in binary frames): close 1003, then EOF.
                sk.sendall(bytes([0x81, 0x80 | 4, 1, 2, 3, 4]) + bytes(x ^ k for x, k in zip(b"abcd", b"\x01\x02\x03\x04")))
                rest = b""
                while True:
                    chunk = sk.recv(4096)
                    if not chunk:
                        break
                    rest += chunk
                assert rest[:4] == bytes([0x88, 2, 0x03, 0xEB])


MQTTJS_SCRIPT = r"""
const mqtt = require('mqtt');
const url = process.argv[2];
const c = mqtt.connect(url, {clientId: 'mqttjs-' + process.argv[3], protocolVersion: 4, reconnectPeriod: 0,
                             connectTimeout: 8000});
const t = setTimeout(() => { console.log('TIMEOUT'); process.exit(3); }, 12000);
c.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(2); });
c.on('connect', () => {
  c.subscribe('js/echo', {qos: 1}, (err) => {
    if (err) { console.log('SUBERR'); process.exit(4); }
    c.publish('js/echo', 'from-mqttjs', {qos: 1});
  });
});
c.on('message', (topic, payload) => {
  console.log('GOT ' + topic + ' ' + payload.toString());
  clearTimeout(t);
  c.end(false, () => process.exit(0));
});
"""


@pytest.fixture(scope="module")
def mqttjs():
    """MQTT.js installed into the build dir once (npm registry needed; skipped with the reason when unreachable)."""
    d = os.path.join(BUILD_DIR, "mqttjs-test")
    os.makedirs(d, exist_ok=True)
    with exclusive(d + ".lock"):   # xdist workers share the build dir: one installs, the others wait for it
        if not os.path.exists(os.path.join(d, "node_modules", "mqtt", "package.json")):
            if not shutil.which("npm") or not shutil.which("node"):
                pytest.skip("node/npm not installed")
            try:
                r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", d, "mqtt@5"],
                                   capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                pytest.skip("npm install mqtt timed out (registry unreachable?)")
            if r.returncode != 0:
                pytest.skip("npm install mqtt failed (registry unreachable?): " + r.stderr.strip()[-300:])
        script = os.path.join(d, "echo.js")
        with open(script + ".tmp", "w") as f:   # replaced whole: another worker may be running it
            f.write(MQTTJS_SCRIPT)
        os.replace(script + ".tmp", script)
    return d, script


@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_mqttjs_websocket(broker_factory, cores, pki, mqttjs, kind):
    b = start_tls_broker(broker_factory, cores, pki)
    d, script = mqttjs
    env = dict(os.environ, NODE_PATH=os.path.join(d, "node_modules"), NODE_EXTRA_CA_CERTS=str(pki / "ca.crt"))
    host = "localhost" if kind == "wss" else "127.0.0.1"
    s = sub_proc(b.port, "js/echo", 1, "tcp-watch")
    s.wait_subscribed(10)
    r = subprocess.run(["node", script, f"{kind}://{host}:{b.ports[kind]}/mqtt", kind], cwd=d, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "GOT js/echo from-mqttjs" in r.stdout
    assert payloads(s) == ["from-mqttjs"]


def test_tls_listener_needs_cert_and_key(tmp_path, pki):
    for extra in ([], ["--cert", str(pki / "server.crt")], ["--key", str(pki / "server.key")]):
        r = subprocess.run([RINGMQ_BIN, "--listen-wss" if extra else "--listen-tls", f"127.0.0.1:{free_port()}",
                            *extra], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == ["ringmq: --listen-tls/--listen-wss need --cert FILE and --key FILE"]
    r = subprocess.run([RINGMQ_BIN, "--listen-tls", "127.0.0.1:1", "--cert", str(pki / "server.crt"),
                        "--key", str(pki / "car42.key")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "tls" in r.stderr, r.stderr
    conf = tmp_path / "ringmq.conf"
    conf.write_text(f"listen-tls 127.0.0.1:{free_port()}\nrequire-certificate true\n")
    r = subprocess.run([RINGMQ_BIN, "-c", str(conf), "--cert", str(pki / "server.crt"), "--key",
                        str(pki / "server.key")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--require-certificate needs --cafile" in r.stderr, r.stderr
