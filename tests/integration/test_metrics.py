"""--metrics HOST:PORT (Prometheus text format scraped with urllib and parsed: exact counts after known traffic,
per-core labels, drops by reason, 404/405/400/431 for anything but GET /metrics) and the SIGTERM drain (MQTT 5
clients get DISCONNECT 0x8B after what was already staged for them, 3.1.1 clients a plain close, exit 0).
pytest main thread plus paho's loop thread; ringmq only."""
import re
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import IS_MOSQUITTO, RINGMQ_BIN
from mqtt_util import (CONNACK, DISCONNECT, PUBLISH, SUBACK, PINGREQ_BYTES, PINGRESP, Closed, cid_on_core,
                       connect_packet, parse_disconnect, publish_packet, subscribe_packet, wait_output, wait_until)

pytestmark = pytest.mark.skipif(IS_MOSQUITTO, reason="ringmq's /metrics and drain")

SCRAPE_TIMEOUT = 5.0
SNAPSHOT_WAIT = 5.0   # snapshots are published every 100 ms tick; this bounds the wait generously under ASan
LINE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics_port(b, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", b.output())
        if m:
            return int(m.group(1))
        time.sleep(0.02)
    raise AssertionError(f"no metrics line in the output:\n{b.output()[-3000:]}")


def start(broker_factory, cores, *extra, **opts):
    b = broker_factory(cores, args=["--metrics", "127.0.0.1:0", *extra], **opts)
    b.mport = metrics_port(b)
    return b


def parse(text):
    """Prometheus text format 0.0.4 -> {(name, frozenset(labels)): value}, checking HELP/TYPE precede samples."""
    samples, typed, helped = {}, {}, set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            helped.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert name not in typed, f"TYPE repeated for {name}"
            typed[name] = kind
            continue
        assert not line.startswith("#"), f"unexpected comment {line!r}"
        m = LINE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels = m.group(1), frozenset(LABEL_RE.findall(m.group(3) or ""))
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if family != name and typed.get(family) == "histogram":
            assert family in helped, f"{family} has no HELP before its samples"
            value = float(m.group(4))
            assert value >= 0, line
            samples[(name, labels)] = value
            continue
        assert name in typed and name in helped, f"{name} has no HELP/TYPE before its samples"
        if typed[name] == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total"
        assert (name, labels) not in samples, f"duplicate sample {line!r}"
        value = float(m.group(4))
        assert value >= 0 and value == int(value), line
        samples[(name, labels)] = int(value)
    return samples


def scrape(b):
    with urllib.request.urlopen(f"http://127.0.0.1:{b.mport}/metrics", timeout=SCRAPE_TIMEOUT) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(r.read().decode())


def total(s, name, **labels):
    """Sum over the cores of the samples of `name` carrying `labels`."""
    want = set(labels.items())
    found = [v for (n, ls), v in s.items() if n == name and want <= set(ls)]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def per_core(s, name, core, **labels):
    return total(s, name, core=str(core), **labels)


def wait_for(b, check, what):
    """Scrape until check(samples) holds (the figures are up to one tick old); fail with the last scrape."""
    last = []

    def reached():
        last.append(scrape(b))
        return check(last[-1])

    def state():
        s = last[-1] if last else {}
        return f"{what}; last scrape: { {k[0] + str(sorted(k[1])): v for k, v in s.items() if v} }"
    wait_until(reached, state, SNAPSHOT_WAIT, 0.05)
    return last[-1]


def raw_send(b, data_list, version=4):
    """A raw client sending the given packets; returns (socket, bytes sent)."""
    sock = socket.create_connection((b.host, b.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = 0
    for d in data_list:
        sock.sendall(d)
        n += len(d)
    return sock, n


def read_packets(sock, want_types, timeout=5.0):
    """Reads packets until the last type in want_types has arrived; returns [(type, body)]."""
    buf, got = b"", []
    deadline = time.monotonic() + timeout
    while len(got) < len(want_types):
        while True:
            if len(buf) >= 2:
                rl, mult, pos = 0, 1, 1
                while pos < len(buf):
                    rl += (buf[pos] & 0x7F) * mult
                    mult *= 128
                    pos += 1
                    if not buf[pos - 1] & 0x80:
                        break
                else:
                    pos = None
                if pos and len(buf) >= pos + rl:
                    got.append((buf[0] >> 4, buf[pos:pos + rl]))
                    buf = buf[pos + rl:]
                    break
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise Closed()
            buf += chunk
    assert [t for t, _ in got] == list(want_types), got
    return got


# ---------------------------------------------------------------------------------------------------------
# Scraping and counting.

def test_every_family_has_one_sample_per_core(broker_factory, cores):
    b = start(broker_factory, cores)
    s = scrape(b)
    assert total(s, "ringmq_cores") == cores
    names = {n for n, _ in s if n != "ringmq_cores"}
    for want in ("ringmq_connections", "ringmq_connections_accepted_total", "ringmq_connections_refused_total",
                 "ringmq_messages_in_total", "ringmq_messages_out_total", "ringmq_bytes_in_total",
                 "ringmq_bytes_out_total", "ringmq_drops_total", "ringmq_kafka_produced_total",
                 "ringmq_kafka_failed_total", "ringmq_kafka_queue_depth", "ringmq_kafka_errors_total"):
        assert want in names, f"{want} missing"
    for name in names:
        labelsets = [dict(ls) for n, ls in s if n == name]
        extra = {tuple(sorted((k, v) for k, v in d.items() if k != "core")) for d in labelsets}
        for e in extra:
            got = sorted(d["core"] for d in labelsets if tuple(sorted((k, v) for k, v in d.items() if k != "core")) == e)
            assert got == [str(k) for k in range(cores)], f"{name}{e}: cores {got}"
    reasons = {dict(ls).get("reason") for n, ls in s if n == "ringmq_drops_total"}
    assert {"queue_overflow", "slow_consumer", "acl_publish", "acl_subscribe", "malformed"} <= reasons
    # idle broker: nothing moved
    for key in ("ringmq_connections", "ringmq_messages_in_total", "ringmq_bytes_in_total"):
        assert total(s, key) == 0


def test_counts_are_exact_after_known_traffic(broker_factory, cores):
    """Two 3.1.1 clients, N QoS 0 messages: connections, messages and bytes in both directions, exactly."""
    n = 25
    b = start(broker_factory, cores)
    sub, sub_in = raw_send(b, [connect_packet("m-sub", 4), subscribe_packet(1, [("m/#", 0)], 4)])
    read_packets(sub, [CONNACK, SUBACK])
    pubs = [publish_packet(f"m/{i}", b"x" * i, 0) for i in range(n)]
    pub, pub_in = raw_send(b, [connect_packet("m-pub", 4)])
    read_packets(pub, [CONNACK])
    for p in pubs:
        pub.sendall(p)
    pub_in += sum(len(p) for p in pubs)
    got = read_packets(sub, [PUBLISH] * n)
    assert [body for _, body in got] == [p[2:] for p in pubs]   # short packets: 2-byte fixed header
    sub.sendall(PINGREQ_BYTES)
    read_packets(sub, [PINGRESP])
    bytes_in = sub_in + pub_in + len(PINGREQ_BYTES)
    bytes_out = 4 + 4 + 5 + sum(len(p) for p in pubs) + 2   # 2 CONNACK, SUBACK, the publishes, PINGRESP

    def done(s):   # the Kafka side settled too (queue depth 0), or the second scrape below sees it move
        return (total(s, "ringmq_messages_out_total") == n and total(s, "ringmq_bytes_in_total") == bytes_in
                and total(s, "ringmq_bytes_out_total") == bytes_out and total(s, "ringmq_kafka_queue_depth") == 0)
    s = wait_for(b, done, "message and byte counts, Kafka queue empty")
    assert total(s, "ringmq_messages_in_total") == n
    assert total(s, "ringmq_messages_out_total") == n
    assert total(s, "ringmq_bytes_in_total") == bytes_in
    assert total(s, "ringmq_bytes_out_total") == bytes_out
    assert total(s, "ringmq_connections") == 2
    assert total(s, "ringmq_connections_accepted_total") == 2
    assert total(s, "ringmq_connections_refused_total") == 0
    assert total(s, "ringmq_drops_total") == 0
    # scrapes themselves are not MQTT traffic: a second scrape changes nothing but the loops' tick counts, which
    # advance with time (a scrape that lands one 100 ms tick later sees them move)
    def traffic(samples):
        return {k: v for k, v in samples.items() if k[0] != "ringmq_core_loop_ticks_total"}
    assert traffic(scrape(b)) == traffic(s)
    sub.close()
    pub.close()
    s = wait_for(b, lambda s: total(s, "ringmq_connections") == 0, "connections back to 0")
    assert total(s, "ringmq_connections_closed_total") == 2
    assert total(s, "ringmq_connections_accepted_total") == 2


def test_per_core_labels_follow_the_owner_core(broker_factory):
    """--cores 2: each client's publishes are counted on the core that owns its client id, and only there."""
    b = start(broker_factory, 2)
    counts = {0: 3, 1: 7}
    socks = []
    for core, k in counts.items():
        cid = cid_on_core("pc", core, 2)
        sock, _ = raw_send(b, [connect_packet(cid, 4)])
        read_packets(sock, [CONNACK])
        for i in range(k):
            sock.sendall(publish_packet("pc/t", b"p", 1, pid=i + 1))
        read_packets(sock, [4] * k)   # PUBACKs
        socks.append(sock)
    s = wait_for(b, lambda s: all(per_core(s, "ringmq_messages_in_total", c) == k for c, k in counts.items()),
                 "per-core message counts")
    for c in counts:
        assert per_core(s, "ringmq_connections", c) == 1
    for sock in socks:
        sock.close()


def test_queue_overflow_drops_are_counted_by_reason(broker_factory, cores):
    """An offline session with --max-queued 3 and 5 QoS 1 messages: exactly 2 queue_overflow drops."""
    b = start(broker_factory, cores, max_queued=3)
    sub, _ = raw_send(b, [connect_packet("q-sub", 4, clean=False), subscribe_packet(1, [("q/#", 1)], 4)])
    read_packets(sub, [CONNACK, SUBACK])
    sub.sendall(bytes([0xE0, 0]))   # DISCONNECT: the session stays
    sub.close()
    pub, _ = raw_send(b, [connect_packet("q-pub", 4)])
    read_packets(pub, [CONNACK])
    for i in range(5):
        pub.sendall(publish_packet("q/t", b"m", 1, pid=i + 1))
    read_packets(pub, [4] * 5)
    s = wait_for(b, lambda s: total(s, "ringmq_drops_total", reason="queue_overflow") == 2, "2 queue drops")
    assert total(s, "ringmq_drops_total", reason="slow_consumer") == 0
    assert total(s, "ringmq_drops_total", reason="malformed") == 0
    pub.close()


def test_kafka_figures_follow_acknowledged_publishes(broker_factory, cores):
    """The default route ('#' to the embedded Kafka cluster) and QoS 1 acknowledged after Kafka: once N PUBACKs
    arrived, N records were produced and delivered, none failed, and nothing is left in the producer queue."""
    n = 12
    b = start(broker_factory, cores)
    pub, _ = raw_send(b, [connect_packet("k-pub", 4)])
    read_packets(pub, [CONNACK])
    for i in range(n):
        pub.sendall(publish_packet(f"k/{i}", b"v", 1, pid=i + 1))
    read_packets(pub, [4] * n, timeout=30)   # Kafka start-up under ASan can take a while

    def done(s):
        return total(s, "ringmq_kafka_delivered_total") == n and total(s, "ringmq_kafka_queue_depth") == 0
    s = wait_for(b, done, "Kafka deliveries")
    assert total(s, "ringmq_kafka_published_total") == n
    assert total(s, "ringmq_kafka_produced_total") == n
    assert total(s, "ringmq_kafka_failed_total") == 0
    assert total(s, "ringmq_kafka_queue_full_total") == 0
    assert total(s, "ringmq_drops_total", reason="kafka_qos0_overflow") == 0
    pub.close()


def test_malformed_packet_is_counted(broker_factory):
    b = start(broker_factory, 1)
    sock, _ = raw_send(b, [connect_packet("bad", 4)])
    read_packets(sock, [CONNACK])
    sock.sendall(bytes([0x30, 0x02, 0xFF, 0xFF]))   # PUBLISH whose topic length runs past the packet
    with pytest.raises((Closed, ConnectionResetError)):
        read_packets(sock, [PUBLISH])
    wait_for(b, lambda s: total(s, "ringmq_drops_total", reason="malformed") == 1, "1 malformed")
    sock.close()


# ---------------------------------------------------------------------------------------------------------
# The HTTP side: only GET /metrics and GET / (the status page), bounded, one request per connection.

def http_raw(b, data, timeout=5.0):
    """Sends raw bytes, returns everything the server sent before closing (it must close)."""
    with socket.create_connection(("127.0.0.1", b.mport), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


@pytest.mark.parametrize("path,code", [("/index.html", 404), ("/metricsx", 404), ("/metrics/extra", 404), ("/favicon.ico", 404)])
def test_other_paths_get_404(broker_factory, path, code):
    b = start(broker_factory, 1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{b.mport}{path}", timeout=SCRAPE_TIMEOUT)
    assert e.value.code == code
    assert scrape(b)   # and the server still answers


def test_status_page_is_self_contained_html(broker_factory):
    b = start(broker_factory, 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{b.mport}/", timeout=SCRAPE_TIMEOUT) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        page = r.read().decode()
    assert page.startswith("<!DOCTYPE html>") and 'fetch("/metrics"' in page
    # nothing from outside: no URL to another origin in a src, href or fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page loads something from outside"
    assert "http://" not in page and "https://" not in page


def test_bad_requests_get_4xx_and_a_closed_connection(broker_factory):
    b = start(broker_factory, 1)
    assert http_raw(b, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert http_raw(b, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http_raw(b, b"GET metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http_raw(b, b" /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http_raw(b, b"GET /metrics\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http_raw(b, b"GET /metrics SMTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # larger than the request bound without ever ending its head
    assert http_raw(b, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000).startswith(b"HTTP/1.1 431 ")
    # a request that never completes gets no answer, but the connection is closed after the I/O timeout
    t0 = time.monotonic()
    assert http_raw(b, b"GET /metr", timeout=10) == b""
    assert time.monotonic() - t0 < 8
    # a good one: the whole body, then the server closes (no keep-alive)
    out = http_raw(b, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
    clen = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    assert clen == len(body)
    parse(body.decode())
    assert b.alive()


def test_metrics_flag_errors(tmp_path):
    import subprocess
    for bad in ("nohost", "127.0.0.1:99999", "localhost:9100"):
        p = subprocess.run([RINGMQ_BIN, "--listen", "127.0.0.1:0", "--metrics", bad], capture_output=True,
                           text=True, timeout=15)
        assert p.returncode == 2 and "--metrics" in p.stderr, (bad, p.returncode, p.stderr)
    help_text = subprocess.run([RINGMQ_BIN, "--help"], capture_output=True, text=True, timeout=15).stdout
    assert "--metrics HOST:PORT" in help_text
    # a port already taken stops start-up with a clear error (exit 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = subprocess.run([RINGMQ_BIN, "--listen", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "metrics 127.0.0.1" in p.stderr, (p.returncode, p.stderr)


def test_metrics_from_config_file(broker_factory, tmp_path):
    conf = tmp_path / "ringmq.conf"
    conf.write_text("# ops\nmetrics 127.0.0.1:0\n")
    b = broker_factory(1, args=["-c", str(conf)])
    b.mport = metrics_port(b)
    assert total(scrape(b), "ringmq_cores") == 1


def test_no_metrics_without_the_flag(broker_factory):
    b = broker_factory(1)
    # the ready lines are written with one flush, "metrics on" after "listening on": this fences it
    assert "metrics on" not in wait_output(b, "ringmq: listening on")


# ---------------------------------------------------------------------------------------------------------
# SIGTERM drain.

def test_sigterm_sends_v5_disconnect_0x8b_and_exits_0(broker_factory, cores, clients):
    b = start(broker_factory, cores)
    paho = clients.paho(b, "drain-paho", version=5)
    paho.connect()
    # a raw v5 subscriber that has messages staged but unread when the signal comes: they arrive first
    cid_sub = cid_on_core("drain-sub", 0, cores)
    cid_pub = cid_on_core("drain-pub", 1, cores)   # with 2 cores: acknowledged on one, delivered by the other
    sub, _ = raw_send(b, [connect_packet(cid_sub, 5), subscribe_packet(1, [("d/#", 1)], 5)])
    read_packets(sub, [CONNACK, SUBACK])
    v4, _ = raw_send(b, [connect_packet("drain-v4", 4)])
    read_packets(v4, [CONNACK])
    pub, _ = raw_send(b, [connect_packet(cid_pub, 5)])
    read_packets(pub, [CONNACK])
    n = 5
    for i in range(n):
        pub.sendall(publish_packet("d/t", f"m{i}".encode(), 1, pid=i + 1, version=5))
    read_packets(pub, [4] * n)   # every one PUBACKed
    wait_for(b, lambda s: total(s, "ringmq_connections") == 4, "4 connections")
    problems = b.stop(signal.SIGTERM)
    assert problems == [], "\n".join(problems)
    # the subscriber: the acknowledged messages, then DISCONNECT 0x8B, then the close
    got = read_packets(sub, [PUBLISH] * n + [DISCONNECT])
    payloads = [body[-2:] for _, body in got[:n]]
    assert payloads == [f"m{i}".encode() for i in range(n)]
    reason, props = parse_disconnect(type("P", (), {"type": DISCONNECT, "body": got[-1][1]})())
    assert reason == 0x8B
    assert props.get(0x1F) in ("server shutting down", b"server shutting down"), props
    # the publisher (v5) was told too; the 3.1.1 client has no server DISCONNECT: just the close
    assert parse_disconnect(type("P", (), {"type": DISCONNECT, "body": read_packets(pub, [DISCONNECT])[0][1]})())[0] == 0x8B
    with pytest.raises((Closed, ConnectionResetError)):
        read_packets(v4, [DISCONNECT])
    assert paho.disconnected.wait(5), "paho saw no disconnect"
    rc = paho.disconnect_rc
    assert getattr(rc, "value", rc) == 0x8B, f"paho disconnect reason {rc!r}"
    # nothing listens any more
    with pytest.raises(OSError):
        socket.create_connection((b.host, b.port), timeout=2).close()
    for s in (sub, v4, pub):
        s.close()


def test_sigterm_without_clients_exits_0(broker_factory, cores):
    b = start(broker_factory, cores)
    problems = b.stop(signal.SIGTERM)
    assert problems == [], "\n".join(problems)
    assert b.proc.returncode == 0


def test_sigterm_disconnect_respects_the_client_maximum_packet_size(broker_factory):
    """A v5 client that accepts packets of at most 20 bytes gets the DISCONNECT 0x8B without its Reason String."""
    b = start(broker_factory, 1)
    small, _ = raw_send(b, [connect_packet("drain-small", 5, props=[(0x27, 20)])])
    read_packets(small, [CONNACK])
    wait_for(b, lambda s: total(s, "ringmq_connections") == 1, "1 connection")
    problems = b.stop(signal.SIGTERM)
    assert problems == [], "\n".join(problems)
    (_, body), = read_packets(small, [DISCONNECT])
    assert len(body) + 2 <= 20
    reason, props = parse_disconnect(type("P", (), {"type": DISCONNECT, "body": body})())
    assert reason == 0x8B and 0x1F not in props
    small.close()


def test_a_silent_http_client_delays_a_scrape_only_boundedly(broker_factory):
    """One request at a time: a client that connects and says nothing holds the server for the I/O timeout
    (2 s), not forever; the scrape behind it is answered."""
    b = start(broker_factory, 1)
    with socket.create_connection(("127.0.0.1", b.mport), timeout=5) as idle:
        t0 = time.monotonic()
        s = scrape(b)
        assert total(s, "ringmq_cores") == 1
        assert time.monotonic() - t0 < SCRAPE_TIMEOUT
        assert idle.recv(16) == b""   # the idle one was closed without an answer


def test_sigterm_tells_a_tls_v5_client_too(broker_factory, tmp_path):
    """The drain goes through the connection's transport: over TLS the DISCONNECT 0x8B arrives encrypted."""
    import ssl
    from conftest import free_port, listening
    from test_tls_ws import make_ca, make_cert
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "ca", "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    port = free_port()
    b = start(broker_factory, 1, "--listen-tls", f"127.0.0.1:{port}", "--cert", str(tmp_path / "server.crt"),
              "--key", str(tmp_path / "server.key"))
    deadline = time.monotonic() + 10
    while listening(port) < 1:
        assert time.monotonic() < deadline, "TLS listener not up"
        time.sleep(0.02)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
    sock.sendall(connect_packet("drain-tls", 5))
    read_packets(sock, [CONNACK])
    wait_for(b, lambda s: total(s, "ringmq_connections") == 1, "1 connection")
    problems = b.stop(signal.SIGTERM)
    assert problems == [], "\n".join(problems)
    (_, body), = read_packets(sock, [DISCONNECT])
    assert parse_disconnect(type("P", (), {"type": DISCONNECT, "body": body})())[0] == 0x8B
    sock.close()
