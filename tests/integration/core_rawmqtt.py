"""Raw MQTT packet builders and a ringmq launcher for the core's raw-socket tests (test_core_*.py).

Bytes are built by hand so the tests can send exactly the malformed input they mean to."""
import fcntl
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time

import xxhash

BUILD = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build-asan"))
BINARY = os.path.join(BUILD, "ringmq")


def _listen_ports():
    """Ports for listeners that tests pick: below the kernel's ephemeral range, which every client connection
    draws its local port from (a port bound to 0 and handed to a broker could be a client's before the broker
    binds it: seen as a start that failed under a parallel load)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return (10000, low) if low - 10000 >= 2000 else (high + 1, 65536)


def free_port():
    """A loopback TCP port nothing listens on now, outside the ephemeral range (random: parallel tests rarely meet)."""
    lo, hi = _listen_ports()
    for _ in range(200):
        port = random.randrange(lo, hi)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


class Broker:
    """ringmq on an ephemeral loopback port; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, *args, cores=1):
        self.port = None          # port 0 below: the kernel picks it; read from the ready line
        self.cores = cores
        # stderr goes to a file: a pipe nobody reads fills up with librdkafka's logs and blocks the broker.
        # stdout is read raw: a buffered readline() could swallow the ready line after the kafka line, and
        # select() on the fd would then wait for bytes that already arrived.
        # O_APPEND: the broker shares this file's offset, and _read_err() seeks to 0 to read it; without it a line
        # written between that seek and the read lands at offset 0, over the lines before it.
        self.errfile = tempfile.TemporaryFile(mode="w+")
        efd = self.errfile.fileno()
        fcntl.fcntl(efd, fcntl.F_SETFL, fcntl.fcntl(efd, fcntl.F_GETFL) | os.O_APPEND)
        self.proc = subprocess.Popen([BINARY, "--listen", "127.0.0.1:0", "--cores", str(cores), *args],
                                     stdout=subprocess.PIPE, stderr=self.errfile, bufsize=0)
        deadline = time.time() + 20
        out = b""
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                out += chunk
                m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", out)
                if m:
                    self.port = int(m.group(1))
                    return
                if not chunk:
                    break
            if self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"ringmq did not start: {out!r} {self._read_err()!r}")

    def _read_err(self):
        self.errfile.seek(0)
        return self.errfile.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.stderr = self._read_err()
        self.proc.stdout.close()
        self.errfile.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def owner(client_id, ncores):
    return xxhash.xxh3_64_intdigest(client_id.encode()) % ncores


def id_on_core(prefix, core, ncores):
    """A client id that hashes to `core` of `ncores` (as the broker computes it)."""
    for i in range(10000):
        cid = f"{prefix}-{i}"
        if owner(cid, ncores) == core:
            return cid
    raise AssertionError("no id found")


# ---- encoding -------------------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s16(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def props(raw=b""):
    return varint(len(raw)) + raw


def connect(cid, version=4, clean=True, keepalive=60, will=None, v5props=b"", username=None):
    flags = 0x02 if clean else 0
    payload = s16(cid)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if version == 5:
            payload += props()
        payload += s16(topic) + s16(msg)
    if username is not None:
        flags |= 0x80
        payload += s16(username)
    name = s16("MQIsdp" if version == 3 else "MQTT")
    body = name + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += props(v5props)
    return packet(0x10, body + payload)


def publish(topic, payload, qos=0, pid=1, retain=False, dup=False, version=4, v5props=b""):
    if isinstance(payload, str):
        payload = payload.encode()
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = s16(topic) + (struct.pack("!H", pid) if qos else b"")
    if version == 5:
        body += props(v5props)
    return packet(first, body + payload)


def subscribe(pid, filters, version=4):
    body = struct.pack("!H", pid) + (props() if version == 5 else b"")
    for f, opts in filters:
        body += s16(f) + bytes([opts])
    return packet(0x82, body)


def ack(kind, pid, version=4, reason=None):
    first = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    body = struct.pack("!H", pid)
    if version == 5 and reason is not None:
        body += bytes([reason])
    return packet(first, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


# ---- decoding -------------------------------------------------------------------------------

class Client:
    """A raw socket with a packet reader."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no packet")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by broker")
            self.buf += data
            return

    def read(self, timeout=5.0):
        """Returns (type, flags, body)."""
        deadline = time.time() + timeout
        while True:
            if len(self.buf) >= 2:
                mult, n, i = 1, 0, 1
                while i < len(self.buf) and i < 5:
                    n += (self.buf[i] & 0x7F) * mult
                    mult *= 128
                    if not self.buf[i] & 0x80:
                        break
                    i += 1
                if i < len(self.buf) and len(self.buf) >= i + 1 + n:
                    first = self.buf[0]
                    body = self.buf[i + 1:i + 1 + n]
                    self.buf = self.buf[i + 1 + n:]
                    return first >> 4, first & 0x0F, body
            self._fill(deadline)

    def expect(self, ptype, timeout=5.0):
        t, f, body = self.read(timeout)
        assert t == ptype, f"expected packet type {ptype}, got {t} ({body!r})"
        return f, body

    def closed(self, timeout=5.0):
        """True if the broker closes the connection (after any packets it sends first)."""
        deadline = time.time() + timeout
        try:
            while True:
                self._fill(deadline)
        except ConnectionError:
            return True
        except (TimeoutError, socket.timeout):
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()


def connack(cl):
    f, body = cl.expect(2)
    return body[0] & 1, body[1], body[2:]


def open_session(port, cid, version=4, **kw):
    cl = Client(port)
    cl.send(connect(cid, version=version, **kw))
    present, rc, rest = connack(cl)
    assert rc == 0, f"CONNACK {rc:#x}"
    return cl


def parse_publish(flags, body, version=4):
    qos = (flags >> 1) & 3
    tlen = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tlen].decode()
    i = 2 + tlen
    pid = None
    if qos:
        pid = struct.unpack("!H", body[i:i + 2])[0]
        i += 2
    if version == 5:
        plen, j = 0, 0
        mult = 1
        while True:
            b = body[i + j]
            plen += (b & 0x7F) * mult
            mult *= 128
            j += 1
            if not b & 0x80:
                break
        i += j + plen
    return {"topic": topic, "qos": qos, "pid": pid, "retain": bool(flags & 1), "dup": bool(flags & 8),
            "payload": body[i:]}
