# MQTT 5 flow control (issue 4): Receive Maximum both ways (client over the broker's: DISCONNECT 0x93; the
# broker never has more unacknowledged PUBLISHes toward a client than the client's Receive Maximum), Maximum
# Packet Size both ways (messages a client cannot take are not sent to it), AUTH with any method: 0x8C.
import pytest

from mqtt5_util import recv5, v5
from mqtt_util import (AUTH, PUBACK, PUBREC, P_MAXIMUM_PACKET_SIZE, P_RECEIVE_MAXIMUM, ack_packet,
                       cid_on_core, packet, parse_ack, parse_connack, parse_disconnect, publish_packet,
                       connect_packet)

pytestmark = pytest.mark.timeout(60)
RC_RECEIVE_MAX_EXCEEDED, RC_BAD_AUTH_METHOD = 0x93, 0x8C


@pytest.fixture
def small(broker_factory, cores):
    return broker_factory(cores, max_inflight=4, max_packet_size=2048)


def test_connack_announces_limits(small, clients):
    _, props = v5(clients, small, "fl-ca", 0)
    assert props[P_RECEIVE_MAXIMUM] == 4
    assert props[P_MAXIMUM_PACKET_SIZE] == 2048


def test_client_exceeding_receive_maximum_disconnected(small, clients):
    sub, _ = v5(clients, small, "fl-rx-s", 1)
    assert sub.subscribe([("fl/rx", 2)]) == [2]
    c, _ = v5(clients, small, "fl-rx", 0)
    for pid in range(1, 5):                       # 4 QoS 2 exchanges left open: the maximum
        c.send(publish_packet("fl/rx", b"x", qos=2, pid=pid, version=5))
        assert parse_ack(c.expect(PUBREC), PUBREC, 5) == (pid, 0)
    c.send(publish_packet("fl/rx", b"x", qos=2, pid=5, version=5))   # the fifth exceeds it
    got = c.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == RC_RECEIVE_MAX_EXCEEDED
    assert len([recv5(sub) for _ in range(4)]) == 4
    sub.assert_silent(0.3)


def test_client_at_receive_maximum_keeps_going(small, clients):
    c, _ = v5(clients, small, "fl-ok", 0)
    for rnd in range(3):                          # completing exchanges frees the quota
        for pid in range(1, 5):
            c.send(publish_packet("fl/ok", b"x", qos=2, pid=pid, version=5))
            c.expect(PUBREC)
        for pid in range(1, 5):
            c.send(ack_packet(6, pid, 5))         # PUBREL
            c.expect(7)                           # PUBCOMP
    assert c.is_open()


def test_broker_respects_client_receive_maximum(broker, clients):
    sub, _ = v5(clients, broker, "fl-crm", 0, props=[(P_RECEIVE_MAXIMUM, 2)])
    assert sub.subscribe([("fl/crm", 1)]) == [1]
    pub, _ = v5(clients, broker, "fl-crm-p", 1)
    for i in range(6):
        pub.publish("fl/crm", str(i), qos=1)
    first = [recv5(sub, ack=False) for _ in range(2)]
    sub.assert_silent(0.5)                        # never more than 2 unacknowledged
    got = [m.payload for m in first]
    for m in first:
        sub.send(ack_packet(PUBACK, m.pid, 5))
    while len(got) < 6:
        batch = [recv5(sub, ack=False) for _ in range(2)]
        sub.assert_silent(0.2)
        got += [m.payload for m in batch]
        for m in batch:
            sub.send(ack_packet(PUBACK, m.pid, 5))
    assert got == [str(i).encode() for i in range(6)]


def test_client_maximum_packet_size_skips_large(broker, clients):
    sub, _ = v5(clients, broker, "fl-mps", 0, props=[(P_MAXIMUM_PACKET_SIZE, 200)])
    assert sub.subscribe([("fl/mps", 1)]) == [1]
    pub, _ = v5(clients, broker, "fl-mps-p", 1)
    pub.publish("fl/mps", b"small-1", qos=1)
    pub.publish("fl/mps", b"L" * 500, qos=1)      # too large for this client: not sent, not queued
    pub.publish("fl/mps", b"B" * 150, qos=0)      # fits on its own
    pub.publish("fl/mps", b"small-2", qos=1)
    got = [recv5(sub).payload for _ in range(3)]
    assert got == [b"small-1", b"B" * 150, b"small-2"]
    sub.assert_silent(0.3)


def test_broker_maximum_packet_size_enforced(small, clients):
    c, _ = v5(clients, small, "fl-big", 0)
    c.send(publish_packet("fl/big", b"x" * 3000, qos=1, pid=1, version=5))
    got = c.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == 0x95


def test_auth_packet_without_auth_method_is_protocol_error(broker, clients):
    # No CONNECT is ever accepted with an Authentication Method (next test), so an AUTH packet is a protocol
    # error (MQTT 5 4.12); 0x8C is a CONNACK code, not a DISCONNECT one (table 2-6).
    c, _ = v5(clients, broker, "fl-auth", 0)
    body = bytes([0x18]) + bytes([0x0A, 0x15, 0x00, 0x07]) + b"SCRAM-1"   # continue auth, method
    c.send(packet(AUTH, 0, body))
    got = c.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == 0x82


def test_connect_with_auth_method_refused(broker, clients):
    c = clients.raw(broker, 5)
    c.send(connect_packet(cid_on_core("fl-am", 0, broker.cores), 5, props=[(0x15, "SCRAM-SHA-1")]))
    from mqtt_util import CONNACK
    sp, rc, _ = parse_connack(c.expect(CONNACK), 5)
    assert (sp, rc) == (False, RC_BAD_AUTH_METHOD)
    assert c.wait_closed() == []
