# Broker-to-client topic aliases (v5, issue 19 item 3): a client announcing Topic Alias Maximum > 0 gets the topic
# and an alias the first time a topic is sent to it, the alias alone (empty topic name) afterwards; aliases go
# first come first served up to the client's maximum; a client that did not ask never sees one. Raw socket for
# the exact bytes, MQTT.js as the real client that resolves them (paho-mqtt 1.6 and libmosquitto 2.0 do not: paho
# hands the empty topic on, mosquitto_sub calls the alias-only PUBLISH a protocol error).
import os
import struct
import subprocess

import pytest

from conftest import IS_MOSQUITTO
from mqtt_util import (P_SESSION_EXPIRY, P_TOPIC_ALIAS_MAX, PUBLISH, cid_on_core, mosquitto_pub, mqtt_bytes,
                       packet, varint)
from test_tls_ws import mqttjs  # noqa: F401 (fixture: MQTT.js installed into the build dir)

pytestmark = pytest.mark.skipif(IS_MOSQUITTO, reason="ringmq's alias policy")


def expected(topic, payload, alias=None, qos=0, pid=None):
    """The exact PUBLISH ringmq sends: topic (empty when the alias alone is sent), packet id, properties."""
    body = mqtt_bytes(topic) + (struct.pack("!H", pid) if qos else b"")
    prop = b"\x23" + struct.pack("!H", alias) if alias else b""
    return packet(PUBLISH, qos << 1, body + varint(len(prop)) + prop + payload)


def raw_bytes(cl):
    pkt = cl.expect(PUBLISH)
    return packet(pkt.type, pkt.flags, pkt.body)


def test_aliases_first_come_up_to_the_client_maximum(broker_factory, clients, cores):
    b = broker_factory(cores, args=["--kafka", "off"])
    car = clients.raw(b, 5)
    car.connect(cid_on_core("alias-car", 0, cores), props=[(P_TOPIC_ALIAS_MAX, 2)])
    plain = clients.raw(b, 5)
    plain.connect(cid_on_core("alias-plain", 1, cores))
    for c in (car, plain):
        c.subscribe("al/#", 0)
    pub = clients.raw(b, 5)
    pub.connect(cid_on_core("alias-pub", 1, cores))
    sends = ["al/a", "al/a", "al/b", "al/c", "al/a", "al/b", "al/c"]
    for i, t in enumerate(sends):
        pub.publish(t, f"m{i}".encode())
    want = [expected("al/a", b"m0", 1), expected("", b"m1", 1), expected("al/b", b"m2", 2),
            expected("al/c", b"m3"),            # both aliases taken: the name, no alias
            expected("", b"m4", 1), expected("", b"m5", 2), expected("al/c", b"m6")]
    assert [raw_bytes(car) for _ in sends] == want
    # Asked for nothing: never an alias.
    assert [raw_bytes(plain) for _ in sends] == [expected(t, f"m{i}".encode()) for i, t in enumerate(sends)]


def test_aliases_are_per_connection_and_qos1(broker_factory, clients, cores):
    b = broker_factory(cores, args=["--kafka", "off"])
    cid = cid_on_core("alias-q1", 0, cores)
    keep = [(P_TOPIC_ALIAS_MAX, 4), (P_SESSION_EXPIRY, 60)]
    car = clients.raw(b, 5)
    car.connect(cid, clean=False, props=keep)
    car.subscribe("q/#", 1)
    pub = clients.raw(b, 5)
    pub.connect(cid_on_core("alias-q1-pub", 1, cores))
    pub.publish("q/cmd", b"one", qos=1)
    first = car.expect(PUBLISH)
    assert packet(first.type, first.flags, first.body) == expected("q/cmd", b"one", 1, qos=1, pid=1)
    car.close()   # unacknowledged: resent on the next connection, which has no aliases yet
    again = clients.raw(b, 5)
    again.connect(cid, clean=False, props=keep)
    dup = again.expect(PUBLISH)
    assert dup.flags & 0x08 and dup.body.startswith(mqtt_bytes("q/cmd")), dup
    assert b"\x23\x00\x01" in dup.body
    again.send(packet(4, 0, struct.pack("!H", 1)))   # PUBACK
    pub.publish("q/cmd", b"two", qos=1)
    assert raw_bytes(again) == expected("", b"two", 1, qos=1, pid=2)


MQTTJS_ALIAS_SCRIPT = r"""
const mqtt = require('mqtt');
const [url, clientId, n] = process.argv.slice(2);
const c = mqtt.connect(url, {clientId, protocolVersion: 5, properties: {topicAliasMaximum: 8}, reconnectPeriod: 0});
let got = 0;
const t = setTimeout(() => { console.log('TIMEOUT'); process.exit(2); }, 20000);
c.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(1); });
c.on('connect', () => c.subscribe('cars/+/cmd', {qos: 1}, () => console.log('SUBSCRIBED')));
c.on('message', (topic, payload, packet) => {
  const alias = packet.properties && packet.properties.topicAlias;
  console.log('GOT ' + topic + ' ' + payload.toString() + ' ' + (alias || 0));
  if (++got == Number(n)) { clearTimeout(t); c.end(false, () => process.exit(0)); }
});
"""


def test_mqttjs_resolves_the_aliases(broker_factory, cores, mqttjs):
    """MQTT.js (v5, Topic Alias Maximum 8) sees the right topics, and that they came as aliases."""
    b = broker_factory(cores, args=["--kafka", "off"])
    d, _ = mqttjs
    script = os.path.join(d, "alias.js")
    with open(script, "w") as f:
        f.write(MQTTJS_ALIAS_SCRIPT)
    env = dict(os.environ, NODE_PATH=os.path.join(d, "node_modules"))
    n = 6
    proc = subprocess.Popen(["node", script, f"mqtt://127.0.0.1:{b.port}", cid_on_core("alias-js", 0, cores), str(n)],
                            cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == "SUBSCRIBED"
        for i in range(n):
            mosquitto_pub(b.host, b.port, f"cars/VIN{i % 2}/cmd", f"c{i}", qos=1, version=5)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, out
    # VIN0 gets alias 1 and VIN1 alias 2 on first use; the resolved topics are right every time.
    assert out.split("\n")[:n] == [f"GOT cars/VIN{i % 2}/cmd c{i} {i % 2 + 1}" for i in range(n)], out
