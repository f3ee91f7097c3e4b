# The client's Maximum Packet Size (v5) bounds every packet ringmq sends it ([MQTT-3.1.2-24]), not only PUBLISH:
# a CONNACK that does not fit closes the connection unsent, a SUBACK that does not fit is not sent, and both are
# counted (issue 19, item 2). Raw sockets; ringmq only (the counters).
import pytest

from conftest import IS_MOSQUITTO
from mqtt_util import (CONNACK, P_MAXIMUM_PACKET_SIZE, PINGREQ_BYTES, PINGRESP, SUBACK, cid_on_core,
                       connect_packet, parse_connack, subscribe_packet)
from test_metrics import start, total, wait_for

pytestmark = pytest.mark.skipif(IS_MOSQUITTO, reason="ringmq's counters")

CONNACK_LEN = 20   # ringmq's v5 CONNACK of an accepted connection: fixed header + flags, reason, 15 bytes of properties


def wait_too_large(b, action, n):
    wait_for(b, lambda s: total(s, "ringmq_packets_too_large_total", reason=action) == n, f"{action} == {n}")


def test_connack_over_the_limit_closes_without_sending(broker_factory, clients, cores):
    b = start(broker_factory, cores, "--kafka", "off")
    for core in range(cores):
        small = clients.raw(b, 5)
        small.send(connect_packet(cid_on_core("mps16", core, cores), 5, props=[(P_MAXIMUM_PACKET_SIZE, 16)]))
        assert small.wait_closed() == []
        exact = clients.raw(b, 5)
        exact.send(connect_packet(cid_on_core("mps20", core, cores), 5,
                                  props=[(P_MAXIMUM_PACKET_SIZE, CONNACK_LEN)]))
        pkt = exact.expect(CONNACK)
        assert 2 + len(pkt.body) <= CONNACK_LEN
        assert parse_connack(pkt, 5)[1] == 0
    wait_too_large(b, "dropped", cores)


def test_suback_over_the_limit_is_not_sent(broker_factory, clients, cores):
    b = start(broker_factory, cores, "--kafka", "off")
    limit = 64
    cl = clients.raw(b, 5)
    cl.connect(cid_on_core("mps-sub", cores - 1, cores), props=[(P_MAXIMUM_PACKET_SIZE, limit)])
    few = [(f"f/{i}", 0) for i in range(limit - 8)]      # SUBACK of 2 + 2 + 1 + 56 bytes: fits
    cl.send(subscribe_packet(1, few, 5))
    assert 2 + len(cl.expect(SUBACK).body) <= limit
    many = [(f"m/{i}", 0) for i in range(limit)]          # SUBACK of 2 + 2 + 1 + 64 bytes: does not
    cl.send(subscribe_packet(2, many, 5))
    cl.send(PINGREQ_BYTES)
    assert cl.recv_packet().type == PINGRESP               # the fence: no SUBACK came before it
    wait_too_large(b, "dropped", 1)
    assert total(wait_for(b, lambda s: True, "scrape"), "ringmq_packets_too_large_total", reason="trimmed") == 0


def test_shutdown_disconnect_drops_its_reason_string_to_fit(broker_factory, clients):
    b = start(broker_factory, 1, "--kafka", "off")
    cl = clients.raw(b, 5)
    cl.connect("mps-bye", props=[(P_MAXIMUM_PACKET_SIZE, CONNACK_LEN)])
    roomy = clients.raw(b, 5)
    roomy.connect("roomy-bye")
    assert b.stop() == []
    assert cl.recv_packet().body == b"\x8b"            # 0x8B Server shutting down, no properties
    assert len(roomy.recv_packet().body) > CONNACK_LEN   # with its reason string
