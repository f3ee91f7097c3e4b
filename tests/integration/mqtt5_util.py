# MQTT 5 test helpers on top of mqtt_util: property lists that keep repeats (subscription ids, user properties
# in order) and the v5 client set-up the test_mqtt5_*.py files share. pytest main thread only.
import struct

from mqtt_util import PROP_TYPES, PUBLISH, Publish, cid_on_core, decode_varint

P_SUBSCRIPTION_ID = 0x0B
P_WILL_DELAY = 0x18
P_TOPIC_ALIAS_MAX = 0x22
P_TOPIC_ALIAS = 0x23
P_SHARED_AVAILABLE = 0x2A
P_SUB_ID_AVAILABLE = 0x29

NO_LOCAL, RAP = 0x04, 0x08


def rh(n):
    """Retain Handling bits of the subscription options byte."""
    return n << 4


def prop_list(body, pos):
    """Every property of a v5 property block as (id, value) in wire order (repeats kept)."""
    n, pos = decode_varint(body, pos)
    end, out = pos + n, []
    while pos < end:
        pid, pos = decode_varint(body, pos)
        kind = PROP_TYPES[pid]
        if kind == 0:
            val, pos = body[pos], pos + 1
        elif kind == 1:
            val, pos = struct.unpack_from("!H", body, pos)[0], pos + 2
        elif kind == 2:
            val, pos = struct.unpack_from("!I", body, pos)[0], pos + 4
        elif kind == 3:
            val, pos = decode_varint(body, pos)
        elif kind in (4, 5):
            ln = struct.unpack_from("!H", body, pos)[0]
            val, pos = bytes(body[pos + 2:pos + 2 + ln]), pos + 2 + ln
        else:
            ln = struct.unpack_from("!H", body, pos)[0]
            k = bytes(body[pos + 2:pos + 2 + ln])
            pos += 2 + ln
            ln = struct.unpack_from("!H", body, pos)[0]
            val, pos = (k, bytes(body[pos + 2:pos + 2 + ln])), pos + 2 + ln
        out.append((pid, val))
    assert pos == end
    return out


class Pub5:
    """A v5 PUBLISH with its full property list."""

    def __init__(self, pkt):
        self.p = Publish(pkt, 5)
        b = pkt.body
        ln = struct.unpack_from("!H", b, 0)[0]
        pos = 2 + ln + (2 if self.p.qos else 0)
        self.plist = prop_list(b, pos)

    def ids(self):
        return sorted(v for k, v in self.plist if k == P_SUBSCRIPTION_ID)

    def get(self, pid):
        vals = [v for k, v in self.plist if k == pid]
        assert len(vals) <= 1, f"property {pid:#x} repeated"
        return vals[0] if vals else None

    def __getattr__(self, name):
        return getattr(self.p, name)


def recv5(cl, timeout=5.0, ack=True):
    """Next PUBLISH on a raw v5 client as Pub5 (QoS 1/2 acknowledged when ack)."""
    pkt = cl.expect(PUBLISH, timeout)
    pub = Pub5(pkt)
    if ack:
        cl.ack(pub.p, timeout)
    return pub


def v5(clients, broker, prefix, core, **kw):
    """A connected raw v5 client whose id is owned by `core`; returns (client, connack props)."""
    cl = clients.raw(broker, 5)
    _, _, props = cl.connect(cid_on_core(prefix, core, broker.cores), **kw)
    return cl, props
