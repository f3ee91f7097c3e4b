# Session takeover and clean sessions (issue 19, item 1): a new CONNECT with the id of a connected client takes
# the connection over; the old session survives only if it was persistent and the new CONNECT does not start
# clean ([MQTT-3.1.2-6], [MQTT-3.2.2-3], MQTT 5 3.1.2.11.2). The old connection's will goes out on takeover
# on takeover in 3.1.1 ([MQTT-3.1.2-8]: every close without DISCONNECT), in v5 only if the session ended there
# (MQTT 5 [MQTT-3.1.2-8], 3.1.2.5: the new connection was opened before any will delay elapsed; a session that
# ends publishes even a delayed will at once).
import itertools

import pytest

from conftest import IS_MOSQUITTO
from mqtt_util import DISCONNECT, P_SESSION_EXPIRY, RC_SESSION_TAKEN_OVER, cid_on_core, parse_disconnect
from test_metrics import scrape, start, total

P_WILL_DELAY = 0x18

SESSION_EXPIRY = 300
WILL_DELAY = 30


def v5_props(clean):
    """v5: CleanSession=1 is Clean Start 1 with Session Expiry 0 (the session ends with the connection)."""
    return None if clean else [(P_SESSION_EXPIRY, SESSION_EXPIRY)]


def open_client(clients, broker, version, cid, clean, will=None):
    c = clients.raw(broker, version)
    props = v5_props(clean) if version == 5 else None
    sp, _, _ = c.connect(cid, clean=clean, props=props, will=will)
    return c, sp


def fence(witness, pub, topic):
    """Publishes a fence on `topic` and returns the payloads the witness got up to and including it."""
    pub.publish(topic, b"fence", qos=1)
    got = []
    while True:
        p = witness.recv_publish()
        got.append((p.topic, p.payload))
        if p.payload == b"fence":
            return got


def takeover(clients, broker, version, old_clean, new_clean, cid, delay):
    """Old connection (with a subscription and a will) taken over by a new one; returns
    (session present, the new connection, the old connection's packets, will seen)."""
    wprops = [(P_WILL_DELAY, WILL_DELAY)] if delay else None
    will = {"topic": f"will/{cid}", "payload": b"gone", "qos": 1, "props": wprops}
    old, _ = open_client(clients, broker, version, cid, old_clean, will)
    assert old.subscribe(f"cmd/{cid}", qos=1) == [1]
    new, sp = open_client(clients, broker, version, cid, new_clean)
    got = old.wait_closed()
    if version == 5:
        assert [p.type for p in got] == [DISCONNECT], got
        assert parse_disconnect(got[0])[0] == RC_SESSION_TAKEN_OVER
    else:
        assert got == []
    return sp, new


@pytest.mark.mosquitto_differs("mosquitto 2.0.11 withholds a 3.1.1 will when the session lives on, and sends "
                               "the old v5 connection no DISCONNECT 0x8E")
@pytest.mark.parametrize("data_dir", [False, True], ids=["mem", "datadir"])
@pytest.mark.parametrize("version", [4, 5])
def test_takeover_clean_flags(broker_factory, clients, cores, version, data_dir, tmp_path):
    args = ["--data-dir", str(tmp_path / "state")] if data_dir else []
    b = broker_factory(cores) if IS_MOSQUITTO else start(broker_factory, cores, *args)
    watcher = clients.raw(b)
    watcher.connect("watcher")
    watcher.subscribe("will/#", qos=1)
    watcher.subscribe("fence", qos=1)
    # The will leaves from the owner core of the taken-over id; a fence from a publisher on that same core
    # travels behind it on every path to the watcher.
    pubs = []
    for k in range(cores):
        pubs.append(clients.raw(b))
        pubs[k].connect(cid_on_core("pub", k, cores))
    n = 0
    for old_clean, new_clean, core, delay in itertools.product([True, False], [True, False], range(cores),
                                                               [False, True] if version == 5 else [False]):
        n += 1
        cid = cid_on_core(f"tk{version}-{n}", core, cores)
        what = f"v{version} old_clean={old_clean} new_clean={new_clean} core={core} delay={delay}"
        sp, new = takeover(clients, b, version, old_clean, new_clean, cid, delay)
        survives = not old_clean and not new_clean
        assert bool(sp) == survives, f"{what}: session present {sp}"
        # The will of the old connection: 3.1.1 always, v5 only when the session ended (delayed or not).
        pub = pubs[core]
        seen = fence(watcher, pub, "fence")
        will_sent = version == 4 or not survives
        assert ((f"will/{cid}", b"gone") in seen) == will_sent, f"{what}: watcher saw {seen}"
        # The old subscription delivers to the new connection only if the session survived.
        pub.publish(f"cmd/{cid}", b"cmd", qos=1)
        new.subscribe(f"probe/{cid}", qos=1)
        pub.publish(f"probe/{cid}", b"probe", qos=1)
        first = new.recv_publish()
        if survives:
            assert (first.topic, first.payload) == (f"cmd/{cid}", b"cmd"), what
            first = new.recv_publish()
        assert (first.topic, first.payload) == (f"probe/{cid}", b"probe"), f"{what}: {first}"
        new.disconnect()
    if cores > 1:
        # The accepting core is the kernel's pick (SO_REUSEPORT): some of these CONNECTs went through the handoff.
        assert total(scrape(b), "ringmq_handoffs_received_total") > 0
