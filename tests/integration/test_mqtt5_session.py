# MQTT 5 Session Expiry Interval (CONNECT and DISCONNECT) and Will Delay Interval (issue 4): persistent
# sessions expire on time; the will goes at the earlier of its delay and the session's end, or not at all
# when the session resumes in time. Raw v5 clients; will watcher and will owner on different cores.
import time

import pytest

from conftest import close_and_wait
from mqtt5_util import P_WILL_DELAY, recv5, v5
from mqtt_util import (P_SESSION_EXPIRY, RC_PROTOCOL_ERROR, cid_on_core, disconnect_packet, parse_disconnect)

pytestmark = pytest.mark.timeout(60)


def session(clients, broker, cid, expiry, clean=False, **kw):
    c = clients.raw(broker, 5)
    props = [(P_SESSION_EXPIRY, expiry)] if expiry is not None else None
    sp, _, _ = c.connect(cid, clean=clean, props=props, **kw)
    return c, sp


def test_session_expires_on_time(broker, clients):
    cid = cid_on_core("se", 0, broker.cores)
    c, sp = session(clients, broker, cid, 2, clean=True)
    assert not sp
    assert c.subscribe([("se/t", 1)]) == [1]
    c.send(disconnect_packet(5, 0))
    c.wait_closed()
    pub, _ = v5(clients, broker, "se-p", 1)
    pub.publish("se/t", b"kept", qos=1)
    time.sleep(0.8)                                       # the subject: offline for a while, within the 2 s
    c, sp = session(clients, broker, cid, 2)              # back before 2 s: present, message queued
    assert sp
    assert recv5(c).payload == b"kept"
    c.send(disconnect_packet(5, 0))
    c.wait_closed()
    time.sleep(3.0)                                       # the subject: past the 2 s expiry
    c, sp = session(clients, broker, cid, 2)
    assert not sp                                         # gone, with its subscription
    pub.publish("se/t", b"lost", qos=1)
    assert c.subscribe([("se/fence", 1)]) == [1]
    pub.publish("se/fence", b"fence", qos=1)
    assert recv5(c).payload == b"fence"                   # "lost", published first, never came


def test_disconnect_sets_expiry(broker, clients):
    cid = cid_on_core("sed", 1, broker.cores)
    c, _ = session(clients, broker, cid, 300, clean=True)
    c.send(disconnect_packet(5, 0, props=[(P_SESSION_EXPIRY, 0)]))   # ends the session now
    c.wait_closed()
    c, sp = session(clients, broker, cid, 300)
    assert not sp
    c.send(disconnect_packet(5, 0, props=[(P_SESSION_EXPIRY, 1)]))   # shortened to 1 s
    c.wait_closed()
    time.sleep(0.3)                                                   # the subject: well within the 1 s
    c, sp = session(clients, broker, cid, 300)
    assert sp
    c.send(disconnect_packet(5, 0, props=[(P_SESSION_EXPIRY, 1)]))
    c.wait_closed()
    time.sleep(2.2)                                                   # the subject: past the 1 s
    c, sp = session(clients, broker, cid, 0)
    assert not sp


def test_disconnect_zero_to_nonzero_is_protocol_error(broker, clients):
    cid = cid_on_core("se0", 0, broker.cores)
    c, _ = session(clients, broker, cid, None, clean=True)           # no property: expiry 0
    c.send(disconnect_packet(5, 0, props=[(P_SESSION_EXPIRY, 30)]))
    got = c.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == RC_PROTOCOL_ERROR
    c, sp = session(clients, broker, cid, 0)
    assert not sp                                                     # and the session did not persist
    c.send(disconnect_packet(5, 0, props=[(P_SESSION_EXPIRY, 0)]))   # 0 -> 0 is fine
    assert c.wait_closed() == []


def will(delay, topic="wd/w", payload=b"gone"):
    return {"topic": topic, "payload": payload, "qos": 1, "props": [(P_WILL_DELAY, delay)]}


def watcher(clients, broker):
    w, _ = v5(clients, broker, "wd-watch", 1)
    assert w.subscribe([("wd/#", 1)]) == [1]
    return w


def lose_with_will(clients, broker, prefix, expiry, delay):
    """A watcher, then a client with a will that loses its connection; returns (watcher, time of loss)."""
    w = watcher(clients, broker)
    c, _ = session(clients, broker, cid_on_core(prefix, 0, broker.cores), expiry, clean=True, will=will(delay))
    t0 = time.monotonic()
    c.abort()
    return w, t0


def test_will_delay_sent_after_delay(broker, clients):
    w, t0 = lose_with_will(clients, broker, "wd1", 60, 2)
    w.assert_silent(1.2)
    m = recv5(w, timeout=3.0)
    assert m.payload == b"gone"
    assert time.monotonic() - t0 >= 1.9


def test_will_at_session_expiry_when_earlier(broker, clients):
    w, t0 = lose_with_will(clients, broker, "wd2", 1, 30)
    m = recv5(w, timeout=4.0)
    assert m.payload == b"gone"
    assert 0.8 <= time.monotonic() - t0 <= 3.5


def test_will_immediate_when_session_expiry_zero(broker, clients):
    w, _ = lose_with_will(clients, broker, "wd3", 0, 30)
    assert recv5(w, timeout=2.0).payload == b"gone"


def test_will_not_sent_when_session_resumes_in_time(broker, clients):
    w = watcher(clients, broker)
    cid = cid_on_core("wd4", 0, broker.cores)
    c, _ = session(clients, broker, cid, 60, clean=True, will=will(2))
    close_and_wait(c.sock, broker.port)                             # lost without DISCONNECT: will pending
    c2, sp = session(clients, broker, cid, 60)
    assert sp
    w.assert_silent(2.5)
    c2.send(disconnect_packet(5, 0))                                # normal end: no will either
    c2.wait_closed()
    w.assert_silent(0.5)


def test_will_sent_when_clean_start_ends_session_early(broker, clients):
    w = watcher(clients, broker)
    cid = cid_on_core("wd5", 0, broker.cores)
    c, _ = session(clients, broker, cid, 60, clean=True, will=will(30))
    close_and_wait(c.sock, broker.port)                             # lost without DISCONNECT: will pending
    w.assert_silent(0.1)
    c2, sp = session(clients, broker, cid, 60, clean=True)           # clean start ends the old session
    assert not sp
    assert recv5(w, timeout=2.0).payload == b"gone"


def test_paho_v5_session_expiry(broker, clients):
    cid = cid_on_core("sep", 1, broker.cores)
    p = clients.paho(broker, cid, version=5, clean=True, props={"SessionExpiryInterval": 30})
    assert p.connect()[0] == 0
    assert p.subscribe("sep/t", 1) == [1]
    p.disconnect()
    pub, _ = v5(clients, broker, "sep-p", 0)
    pub.publish("sep/t", b"while-away", qos=1)
    p2 = clients.paho(broker, cid, version=5, clean=False, props={"SessionExpiryInterval": 30})
    assert p2.connect()[0] == 1
    assert p2.get().payload == b"while-away"
