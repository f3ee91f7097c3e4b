# Test-side MQTT helpers: a raw-socket packet builder/parser, a bounded raw client, a paho wrapper and
# mosquitto_pub/sub runners. Used only by the integration tests (pytest's main thread plus paho's loop threads).
import queue
import select
import socket
import struct
import subprocess
import threading
import time

import xxhash

# Packet types (MQTT 3.1.1 2.2.1 / MQTT 5 2.1.2).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15
TYPE_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
              8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
              14: "DISCONNECT", 15: "AUTH"}

# MQTT 5 reason codes the tests check.
RC_NORMAL = 0x00
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_UNSPECIFIED = 0x80
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_SERVER_BUSY = 0x89
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_PACKET_TOO_LARGE = 0x95
RC_QUOTA_EXCEEDED = 0x97

# MQTT 5 property identifiers and their wire types (MQTT 5 2.2.2.2).
P_PAYLOAD_FORMAT, P_MESSAGE_EXPIRY, P_CONTENT_TYPE, P_RESPONSE_TOPIC, P_CORRELATION = 0x01, 0x02, 0x03, 0x08, 0x09
P_SUBSCRIPTION_ID, P_SESSION_EXPIRY, P_ASSIGNED_CLIENT_ID, P_SERVER_KEEP_ALIVE = 0x0B, 0x11, 0x12, 0x13
P_REASON_STRING, P_RECEIVE_MAXIMUM, P_TOPIC_ALIAS_MAX, P_TOPIC_ALIAS = 0x1F, 0x21, 0x22, 0x23
P_MAXIMUM_QOS, P_RETAIN_AVAILABLE, P_USER_PROPERTY, P_MAXIMUM_PACKET_SIZE = 0x24, 0x25, 0x26, 0x27
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROP_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _STR, 0x08: _STR, 0x09: _BIN, 0x0B: _VARINT, 0x11: _U32, 0x12: _STR,
    0x13: _U16, 0x15: _STR, 0x16: _BIN, 0x17: _BYTE, 0x18: _U32, 0x19: _BYTE, 0x1A: _STR, 0x1C: _STR,
    0x1F: _STR, 0x21: _U16, 0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}


# ---------------------------------------------------------------------------------------------------------
# Waiting on an event. Tests wait for what they need (a log line, a metric, a packet, a socket state) by polling
# it with a bound, never for a fixed time; absence is proven with a fence (a later message that must arrive
# first).

def wait_until(pred, what, timeout=10.0, interval=0.02):
    """Polls pred() until it returns a true value (returned); AssertionError naming `what` (a string, or a
    callable giving one at that moment: the last state) after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def wait_output(b, needle, count=1, timeout=10.0):
    """Waits until the broker's stdout+stderr holds `needle` at least `count` times; returns the output."""
    def seen():
        out = b.output()
        return out if out.count(needle) >= count else None
    return wait_until(seen, f"{count} x {needle!r} in the broker output", timeout)


def fence(pub, subs, tag="fence"):
    """Absence proven without a timer: each RawClient in subs subscribes to its own $fence topic, pub (the
    publisher whose messages are under test, so one path and one order) sends one QoS 1 message to each, and
    the next message each subscriber receives must be its own fence: a copy too many would arrive first."""
    topics = [f"$fence/{tag}/{i}" for i in range(len(subs))]
    for s, t in zip(subs, topics):
        assert s.subscribe(t, 1) == [1]
    for t in topics:
        pub.publish(t, b"fence", qos=1)
    for s, t in zip(subs, topics):
        m = s.recv_publish()
        assert m.topic == t, f"{m!r} arrived before the fence {t}: a message too many"


# ---------------------------------------------------------------------------------------------------------
# Client ids and cores: ringmq's owner core is xxh3_64(client id) % ncores.

def owner_core(client_id, ncores):
    return xxhash.xxh3_64_intdigest(client_id.encode()) % ncores


def cid_on_core(prefix, core, ncores):
    """The first id prefix-N whose owner core is `core` (any id when ncores is 1)."""
    core %= ncores
    for i in range(10000):
        cid = f"{prefix}-{i}"
        if owner_core(cid, ncores) == core:
            return cid
    raise AssertionError("no client id found for core")


# ---------------------------------------------------------------------------------------------------------
# Encoding.

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def mqtt_bytes(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def encode_props(props):
    """props: list of (id, value) pairs (user property value: (key, value))."""
    out = bytearray()
    for pid, val in props or []:
        kind = PROP_TYPES[pid]
        out += varint(pid)
        if kind == _BYTE:
            out.append(val)
        elif kind == _U16:
            out += struct.pack("!H", val)
        elif kind == _U32:
            out += struct.pack("!I", val)
        elif kind == _VARINT:
            out += varint(val)
        elif kind in (_STR, _BIN):
            out += mqtt_bytes(val)
        else:
            out += mqtt_bytes(val[0]) + mqtt_bytes(val[1])
    return varint(len(out)) + bytes(out)


def packet(ptype, flags, body=b""):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect_packet(client_id="", version=4, clean=True, keepalive=60, will=None, props=None, username=None,
                   password=None, reserved_flag=False):
    """CONNECT for MQTT 3.1 (version 3), 3.1.1 (4) or 5 (5). will: dict(topic, payload, qos, retain, props)."""
    name = b"MQIsdp" if version == 3 else b"MQTT"
    flags = (0x02 if clean else 0) | (0x01 if reserved_flag else 0)
    if will is not None:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = mqtt_bytes(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += encode_props(props)
    body += mqtt_bytes(client_id)
    if will is not None:
        if version == 5:
            body += encode_props(will.get("props"))
        body += mqtt_bytes(will["topic"]) + mqtt_bytes(will.get("payload", b""))
    if username is not None:
        body += mqtt_bytes(username)
    if password is not None:
        body += mqtt_bytes(password)
    return packet(CONNECT, 0, body)


def publish_packet(topic, payload=b"", qos=0, retain=False, dup=False, pid=None, version=4, props=None):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_bytes(topic)
    if qos > 0:
        body += struct.pack("!H", pid)
    if version == 5:
        body += encode_props(props)
    return packet(PUBLISH, flags, body + payload)


def ack_packet(ptype, pid, version=4, reason=None):
    """PUBACK/PUBREC/PUBREL/PUBCOMP (PUBREL carries the mandatory flags 0b0010)."""
    body = struct.pack("!H", pid)
    if version == 5 and reason is not None:
        body += bytes([reason])
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def subscribe_packet(pid, filters, version=4, props=None):
    """filters: list of (filter, options byte); for 3.1.1 the options byte is the requested QoS."""
    body = struct.pack("!H", pid)
    if version == 5:
        body += encode_props(props)
    for flt, opts in filters:
        body += mqtt_bytes(flt) + bytes([opts])
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe_packet(pid, filters, version=4):
    body = struct.pack("!H", pid)
    if version == 5:
        body += encode_props(None)
    for flt in filters:
        body += mqtt_bytes(flt)
    return packet(UNSUBSCRIBE, 0x02, body)


def disconnect_packet(version=4, reason=None, props=None):
    if version == 5 and (reason is not None or props):
        return packet(DISCONNECT, 0, bytes([reason or 0]) + encode_props(props))
    return packet(DISCONNECT, 0)


PINGREQ_BYTES = packet(PINGREQ, 0)


# ---------------------------------------------------------------------------------------------------------
# Decoding.

def decode_varint(buf, pos):
    """(value, new pos); raises ValueError on a malformed or incomplete varint."""
    mult, val = 1, 0
    for i in range(4):
        if pos + i >= len(buf):
            raise IndexError("incomplete varint")
        b = buf[pos + i]
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, pos + i + 1
        mult *= 128
    raise ValueError("varint longer than 4 bytes")


def decode_props(buf, pos):
    n, pos = decode_varint(buf, pos)
    end = pos + n
    props = {}
    while pos < end:
        pid, pos = decode_varint(buf, pos)
        kind = PROP_TYPES[pid]
        if kind == _BYTE:
            val, pos = buf[pos], pos + 1
        elif kind == _U16:
            val, pos = struct.unpack_from("!H", buf, pos)[0], pos + 2
        elif kind == _U32:
            val, pos = struct.unpack_from("!I", buf, pos)[0], pos + 4
        elif kind == _VARINT:
            val, pos = decode_varint(buf, pos)
        elif kind in (_STR, _BIN):
            ln = struct.unpack_from("!H", buf, pos)[0]
            val, pos = bytes(buf[pos + 2:pos + 2 + ln]), pos + 2 + ln
            if kind == _STR:
                val = val.decode()
        else:
            ln = struct.unpack_from("!H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + ln]).decode()
            pos += 2 + ln
            ln = struct.unpack_from("!H", buf, pos)[0]
            v = bytes(buf[pos + 2:pos + 2 + ln]).decode()
            pos += 2 + ln
            props.setdefault(pid, []).append((k, v))
            continue
        props[pid] = val
    assert pos == end, "property length mismatch"
    return props, end


class Packet:
    def __init__(self, ptype, flags, body):
        self.type, self.flags, self.body = ptype, flags, body

    def __repr__(self):
        return f"<{TYPE_NAMES.get(self.type, self.type)} flags={self.flags:#x} body={self.body[:40].hex()}>"


class Publish:
    def __init__(self, pkt, version):
        assert pkt.type == PUBLISH, f"expected PUBLISH, got {pkt!r}"
        self.dup = bool(pkt.flags & 0x08)
        self.qos = (pkt.flags >> 1) & 0x03
        self.retain = bool(pkt.flags & 0x01)
        b = pkt.body
        ln = struct.unpack_from("!H", b, 0)[0]
        self.topic = bytes(b[2:2 + ln]).decode()
        pos = 2 + ln
        self.pid = None
        if self.qos:
            self.pid = struct.unpack_from("!H", b, pos)[0]
            pos += 2
        self.props = {}
        if version == 5:
            self.props, pos = decode_props(b, pos)
        self.payload = bytes(b[pos:])

    def __repr__(self):
        return (f"<Publish {self.topic!r} {self.payload[:40]!r} q{self.qos} dup={self.dup} "
                f"retain={self.retain} pid={self.pid}>")


def parse_connack(pkt, version):
    """(session_present, return/reason code, props)."""
    assert pkt.type == CONNACK, f"expected CONNACK, got {pkt!r}"
    assert pkt.flags == 0, f"CONNACK fixed-header flags must be 0, got {pkt.flags:#x}"
    b = pkt.body
    props = {}
    if version == 5:
        props, end = decode_props(b, 2)
        assert end == len(b)
    else:
        assert len(b) == 2, f"3.1.1 CONNACK remaining length must be 2, got {len(b)}"
    assert b[0] in (0, 1), f"CONNACK acknowledge flags reserved bits set: {b[0]:#x}"
    return bool(b[0] & 1), b[1], props


def parse_ack(pkt, ptype, version):
    """(packet id, reason code) of PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK(3.1.1)."""
    assert pkt.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {pkt!r}"
    want_flags = 0x02 if ptype == PUBREL else 0
    assert pkt.flags == want_flags, f"{TYPE_NAMES[ptype]} flags must be {want_flags:#x}, got {pkt.flags:#x}"
    pid = struct.unpack_from("!H", pkt.body, 0)[0]
    reason = pkt.body[2] if len(pkt.body) > 2 else 0
    return pid, reason


def parse_suback(pkt, version):
    """(packet id, list of reason codes) for SUBACK or UNSUBACK (v5 UNSUBACK has codes, 3.1.1 has none)."""
    assert pkt.type in (SUBACK, UNSUBACK), f"expected SUBACK/UNSUBACK, got {pkt!r}"
    assert pkt.flags == 0
    pid = struct.unpack_from("!H", pkt.body, 0)[0]
    pos = 2
    if version == 5:
        _, pos = decode_props(pkt.body, pos)
    return pid, list(pkt.body[pos:])


def parse_disconnect(pkt):
    """(reason code, props) of a v5 DISCONNECT (remaining length 0 means 0x00)."""
    assert pkt.type == DISCONNECT, f"expected DISCONNECT, got {pkt!r}"
    if not pkt.body:
        return 0, {}
    reason = pkt.body[0]
    props = {}
    if len(pkt.body) > 1:
        props, _ = decode_props(pkt.body, 1)
    return reason, props


# ---------------------------------------------------------------------------------------------------------
# Raw client: one blocking socket, every read bounded.

class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class RawClient:
    def __init__(self, host, port, version=4, timeout=5.0, source=None):
        """source: local address to connect from (e.g. 127.0.0.2, any of 127/8 works on Linux)."""
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False
        self.next_pid = 1
        # PUBLISHes that arrived while the test awaited another packet type (e.g. a client that subscribes to
        # its own topic may get the PUBLISH before its PUBACK); recv_publish/assert_silent see them first.
        self.stash = []

    # -- transport
    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with RST (no FIN handshake): an abnormal network failure as the broker sees it."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker in time")
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            raise TimeoutError("no data from broker in time")
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            raise Closed()
        self.buf += data

    def recv_packet(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    rl, pos = decode_varint(self.buf, 1)
                except IndexError:
                    rl = None
                if rl is not None and len(self.buf) >= pos + rl:
                    pkt = Packet(self.buf[0] >> 4, self.buf[0] & 0x0F, bytes(self.buf[pos:pos + rl]))
                    del self.buf[:pos + rl]
                    return pkt
            self._fill(deadline)

    def expect(self, ptype, timeout=5.0):
        """Next packet of type ptype; PUBLISHes arriving meanwhile are stashed, any other type fails."""
        if ptype == PUBLISH and self.stash:
            return self.stash.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            pkt = self.recv_packet(max(0.0, deadline - time.monotonic()))
            if pkt.type == PUBLISH and ptype != PUBLISH:
                self.stash.append(pkt)
                continue
            assert pkt.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {pkt!r}"
            return pkt

    def wait_closed(self, timeout=5.0):
        """Wait for the broker to close the connection; returns the packets it sent before closing."""
        got, self.stash = self.stash, []
        deadline = time.monotonic() + timeout
        try:
            while True:
                got.append(self.recv_packet(max(0.0, deadline - time.monotonic())))
        except Closed:
            return got
        except TimeoutError:
            raise AssertionError(f"broker did not close the connection within {timeout}s (got {got!r})")

    def assert_silent(self, wait=0.5):
        """Nothing arrives (and the connection stays open) for `wait` seconds."""
        assert not self.stash, f"unexpected packet {self.stash[0]!r}"
        try:
            pkt = self.recv_packet(wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet {pkt!r}")

    def is_open(self, wait=0.2):
        """True if the connection is still open after `wait` seconds with nothing received."""
        assert not self.stash, f"unexpected packet {self.stash[0]!r}"
        try:
            pkt = self.recv_packet(wait)
        except TimeoutError:
            return True
        except Closed:
            return False
        raise AssertionError(f"unexpected packet {pkt!r}")

    # -- MQTT operations
    def alloc_pid(self):
        pid = self.next_pid
        self.next_pid = pid % 65535 + 1
        return pid

    def connect(self, client_id, clean=True, keepalive=60, will=None, props=None, expect_rc=0, **kw):
        """CONNECT and read the CONNACK; returns (session_present, rc, props)."""
        self.send(connect_packet(client_id, self.version, clean, keepalive, will, props, **kw))
        sp, rc, cprops = parse_connack(self.expect(CONNACK), self.version)
        if expect_rc is not None:
            assert rc == expect_rc, f"CONNACK code {rc:#x}, expected {expect_rc:#x}"
        if rc != 0:
            assert not sp, "session present must be 0 with a non-zero CONNACK code"
        return sp, rc, cprops

    def subscribe(self, filters, qos=0, props=None, timeout=5.0):
        """filters: a filter string or a list of (filter, options); returns the SUBACK codes."""
        if isinstance(filters, str):
            filters = [(filters, qos)]
        pid = self.alloc_pid()
        self.send(subscribe_packet(pid, filters, self.version, props))
        got_pid, codes = parse_suback(self.expect(SUBACK, timeout), self.version)
        assert got_pid == pid, f"SUBACK packet id {got_pid}, expected {pid}"
        assert len(codes) == len(filters), f"SUBACK has {len(codes)} codes for {len(filters)} filters"
        return codes

    def unsubscribe(self, filters):
        if isinstance(filters, str):
            filters = [filters]
        pid = self.alloc_pid()
        self.send(unsubscribe_packet(pid, filters, self.version))
        got_pid, codes = parse_suback(self.expect(UNSUBACK), self.version)
        assert got_pid == pid
        return codes

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None, timeout=5.0):
        """Publish and complete the QoS handshake; returns the packet id used (None for QoS 0)."""
        pid = self.alloc_pid() if qos else None
        self.send(publish_packet(topic, payload, qos, retain, False, pid, self.version, props))
        if qos == 1:
            got, reason = parse_ack(self.expect(PUBACK, timeout), PUBACK, self.version)
            assert got == pid and reason < 0x80, f"PUBACK pid {got} reason {reason:#x} for pid {pid}"
        elif qos == 2:
            got, reason = parse_ack(self.expect(PUBREC, timeout), PUBREC, self.version)
            assert got == pid and reason < 0x80, f"PUBREC pid {got} reason {reason:#x} for pid {pid}"
            self.send(ack_packet(PUBREL, pid, self.version))
            got, reason = parse_ack(self.expect(PUBCOMP, timeout), PUBCOMP, self.version)
            assert got == pid and reason == 0, f"PUBCOMP pid {got} reason {reason:#x} for pid {pid}"
        return pid

    def recv_publish(self, timeout=5.0, ack=True):
        """Next PUBLISH; with ack, answers QoS 1 with PUBACK and QoS 2 with PUBREC/PUBREL/PUBCOMP."""
        pub = Publish(self.expect(PUBLISH, timeout), self.version)
        if ack:
            self.ack(pub, timeout)
        return pub

    def ack(self, pub, timeout=5.0):
        if pub.qos == 1:
            self.send(ack_packet(PUBACK, pub.pid, self.version))
        elif pub.qos == 2:
            self.send(ack_packet(PUBREC, pub.pid, self.version))
            got, _ = parse_ack(self.expect(PUBREL, timeout), PUBREL, self.version)
            assert got == pub.pid, f"PUBREL pid {got}, expected {pub.pid}"
            self.send(ack_packet(PUBCOMP, pub.pid, self.version))

    def ping(self, timeout=5.0):
        self.send(PINGREQ_BYTES)
        pkt = self.expect(PINGRESP, timeout)
        assert pkt.flags == 0 and pkt.body == b""

    def disconnect(self, reason=None):
        self.send(disconnect_packet(self.version, reason))
        self.wait_closed()


def witness(host, port, client_id, filt):
    """An online QoS 2 subscriber to watch traffic reach a core. A broker may acknowledge a publish before the
    message reaches the subscriber's core; once a witness with the same owner core has received the last
    message, that core has handled all of them (one FIFO per core pair), e.g. for an offline session."""
    w = RawClient(host, port)
    w.connect(client_id)
    w.subscribe(filt, 2)
    return w


def witness_saw(w, n, timeout=10.0):
    """Wait for the witness's next n messages; returns their payloads."""
    return [w.recv_publish(timeout).payload for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------
# paho-mqtt 1.6 wrapper: every wait bounded.

class Paho:
    def __init__(self, host, port, client_id, version=4, clean=True, keepalive=60, will=None, props=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        self.mqtt = mqtt
        self.version = version
        proto = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
        if version == 5:
            self.c = mqtt.Client(client_id=client_id, protocol=proto)
        else:
            self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=proto)
        self.c.max_inflight_messages_set(20)   # paho's default window, stated: the load tests depend on it
        self.host, self.port, self.clean, self.keepalive = host, port, clean, keepalive
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = {}
        self.disconnected = threading.Event()
        self.disconnect_rc = None
        self.props = None
        if version == 5 and props:
            self.props = Properties(PacketTypes.CONNECT)
            for name, val in props.items():
                setattr(self.props, name, val)
        if will:
            self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0), will.get("retain", False))
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = self._on_disconnect

    def _on_connect(self, c, u, flags, rc, props=None):
        self.connack.put((flags.get("session present", 0), rc, props))

    def _on_subscribe(self, c, u, mid, granted, props=None):
        self.subacks.setdefault(mid, queue.Queue()).put(granted)

    def _on_disconnect(self, c, u, rc, props=None):
        self.disconnect_rc = rc
        self.disconnected.set()

    def connect(self, timeout=5.0, expect_rc=0):
        self.c.reconnect_delay_set(60, 60)  # never silently reconnect inside a test
        if self.version == 5:
            self.c.connect(self.host, self.port, self.keepalive, clean_start=self.clean, properties=self.props)
        else:
            self.c.connect(self.host, self.port, self.keepalive)
        self.c.loop_start()
        sp, rc, props = self.connack.get(timeout=timeout)
        if expect_rc is not None:
            assert rc == expect_rc, f"paho CONNACK rc {rc}, expected {expect_rc}"
        return sp, rc, props

    def subscribe(self, topic, qos=0, timeout=5.0):
        rc, mid = self.c.subscribe(topic, qos)
        assert rc == 0
        q = self.subacks.setdefault(mid, queue.Queue())
        granted = q.get(timeout=timeout)
        return [g.value if hasattr(g, "value") else g for g in granted]

    def publish(self, topic, payload, qos=0, retain=False, timeout=5.0):
        info = self.c.publish(topic, payload, qos, retain)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"publish of {topic!r} not acknowledged within {timeout}s"
        return info

    def get(self, timeout=5.0):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def assert_no_message(self, wait=0.5):
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m.topic!r} {m.payload!r}")

    def disconnect(self):
        self.c.disconnect()
        self.disconnected.wait(5)
        self.c.loop_stop()

    def stop(self):
        """Teardown: stop the loop thread whatever the connection state."""
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


# ---------------------------------------------------------------------------------------------------------
# mosquitto_pub / mosquitto_sub.

MOSQ_VERSIONS = {3: "mqttv31", 4: "mqttv311", 5: "mqttv5"}


class BackgroundPublisher:
    """A thread publishing QoS 0 messages through paho client `pub` every `interval` s until the with-block ends:
    load for tests that watch a rate (a metric, a STATUS= line). The interval paces the load; nothing waits on it."""

    def __init__(self, pub, topic="cars/1/telemetry", payload=b"x" * 32, interval=0.002):
        self.pub, self.topic, self.payload, self.interval = pub, topic, payload, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(self.interval):
            self.pub.c.publish(self.topic, self.payload, qos=0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def mosquitto_pub(host, port, topic, message, qos=0, version=4, retain=False, client_id=None, extra=(),
                  timeout=10.0):
    cmd = ["mosquitto_pub", "-h", host, "-p", str(port), "-t", topic, "-q", str(qos), "-V", MOSQ_VERSIONS[version]]
    cmd += ["-n"] if message is None else ["-m", message]
    if retain:
        cmd.append("-r")
    if client_id:
        cmd += ["-i", client_id]
    cmd += list(extra)
    res = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}: {res.stderr}"
    return res


class MosquittoSub:
    """mosquitto_sub -d -v: lines are read on a thread; wait_subscribed() waits for its SUBACK."""

    def __init__(self, host, port, topics, qos=0, version=4, count=None, client_id=None, extra=(), wait_s=20):
        # stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, and we wait for its SUBACK line
        cmd = ["stdbuf", "-oL", "mosquitto_sub", "-d", "-v", "-h", host, "-p", str(port), "-q", str(qos),
               "-V", MOSQ_VERSIONS[version], "-W", str(wait_s)]
        for t in [topics] if isinstance(topics, str) else topics:
            cmd += ["-t", t]
        if count:
            cmd += ["-C", str(count)]
        if client_id:
            cmd += ["-i", client_id]
        cmd += list(extra)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.all = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.all.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_subscribed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"mosquitto_sub not subscribed in {timeout}s: {self.all}") from None
            if line is None:
                raise AssertionError(f"mosquitto_sub exited before SUBACK: {self.all}")
            if "received SUBACK" in line:
                return

    def messages(self, timeout=10.0):
        """Wait for exit (-C count reached, or -W timeout); returns 'topic payload' lines (debug lines dropped)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"mosquitto_sub did not finish in {timeout}s: {self.all}") from None
        self.t.join(5)
        return [ln for ln in self.all if not ln.startswith("Client ") and not ln.startswith("Subscribed")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
