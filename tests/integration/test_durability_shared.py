# --data-dir with $share: a member that leaves hands its queued and unacknowledged QoS 1 messages to another
# member, and the state log records that hand-over, so a restart neither gives them back to the leaver nor loses
# them for the member that took them. Real clients over loopback, the broker restarted by SIGTERM.
import signal

import pytest

from mqtt_util import (P_RECEIVE_MAXIMUM, P_SESSION_EXPIRY, RawClient, cid_on_core, disconnect_packet,
                       mosquitto_pub)

pytestmark = pytest.mark.ringmq_only("--data-dir is a ringmq option")

GROUP = "$share/g/sh/t"
N = 5


def opts(tmp_path):
    return dict(data_dir=str(tmp_path / "data"), fsync="always")


def member(b, cid, fence, receive_max=None, clean=True):
    """A v5 persistent member of GROUP (session expiry 1 h) that also subscribes to its own fence topic."""
    props = [(P_SESSION_EXPIRY, 3600)] + ([(P_RECEIVE_MAXIMUM, receive_max)] if receive_max else [])
    c = RawClient(b.host, b.port, 5, timeout=10)
    present = c.connect(cid, clean=clean, props=props)[0]
    if clean:
        assert c.subscribe([(GROUP, 1), (fence, 1)]) == [1, 1]
    return c, present


def until_fence(b, c, fence):
    """Every PUBLISH before the fence message (which the test publishes after the client connected), acked."""
    mosquitto_pub(b.host, b.port, fence, "fence", qos=1)
    got = []
    while True:
        p = c.recv_publish(timeout=10)
        if p.topic == fence:
            return got
        got.append((p.payload.decode(), p.dup))


@pytest.mark.parametrize("cores", [1, 2], ids=["cores1", "cores2"])
def test_leaving_member_handover_survives_restart(broker_factory, tmp_path, cores):
    b = broker_factory(cores, **opts(tmp_path))
    leaver_id, taker_id = cid_on_core("leaver", 0, cores), cid_on_core("taker", cores - 1, cores)
    taker, _ = member(b, taker_id, "fence/taker")
    taker.send(disconnect_packet(5, 0))       # offline: every message goes to the online member first
    taker.wait_closed()
    leaver, _ = member(b, leaver_id, "fence/leaver", receive_max=1)
    for i in range(N):
        mosquitto_pub(b.host, b.port, "sh/t", str(i), qos=1, version=5)
    # The leaver's window holds one (never acknowledged), the rest wait in its queue.
    first = leaver.recv_publish(timeout=10, ack=False)
    assert first.payload == b"0"
    assert leaver.unsubscribe([GROUP]) == [0]  # hands all N over to the taker (offline: its queue)
    leaver.send(disconnect_packet(5, 0))
    leaver.wait_closed()
    problems = b.stop(signal.SIGTERM)
    assert not problems, "\n".join(problems)

    b2 = broker_factory(cores, **opts(tmp_path))
    leaver, present = member(b2, leaver_id, "fence/leaver", clean=False)
    assert present
    again = until_fence(b2, leaver, "fence/leaver")
    assert again == [], f"the leaver got back messages it handed over: {again}"
    taker, present = member(b2, taker_id, "fence/taker", clean=False)
    assert present
    got = until_fence(b2, taker, "fence/taker")
    assert sorted(int(p) for p, _ in got) == list(range(N)), f"the taker must have each handed-over message once: {got}"
    leaver.disconnect()
    taker.disconnect()
