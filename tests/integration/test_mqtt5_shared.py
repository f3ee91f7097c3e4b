# MQTT 5 shared subscriptions "$share/group/filter" (issue 4): each message to exactly one member (round
# robin over the cores holding members, then over a core's members), members on different cores, several
# groups, no retained messages on a shared subscription, members leaving, and the negative cases.
import pytest

from mqtt5_util import NO_LOCAL, P_SHARED_AVAILABLE, P_SUBSCRIPTION_ID, recv5, v5
from mqtt_util import PUBLISH, RC_PROTOCOL_ERROR, cid_on_core, disconnect_packet, parse_disconnect, subscribe_packet

pytestmark = pytest.mark.timeout(60)
N = 20


def drain(cl, wait=0.6):
    """Every PUBLISH that arrives until `wait` seconds pass without one (acknowledged)."""
    got = []
    while True:
        try:
            got.append(recv5(cl, timeout=wait))
        except TimeoutError:
            return got


def members(clients, broker, filt, n=2, qos=1, prefix="sh"):
    out = []
    for i in range(n):
        m, props = v5(clients, broker, f"{prefix}-m{i}", i)
        assert props.get(P_SHARED_AVAILABLE, 1) == 1
        assert m.subscribe([(filt, qos)]) == [qos]
        out.append(m)
    return out


def test_each_message_to_one_member_round_robin(broker, clients):
    a, b = members(clients, broker, "$share/workers/sh/#")
    plain, _ = v5(clients, broker, "sh-plain", 0)
    assert plain.subscribe([("sh/#", 1)]) == [1]
    pub, _ = v5(clients, broker, "sh-pub", 1)
    for i in range(N):
        pub.publish(f"sh/car/{i}", str(i), qos=1)
    got_a, got_b = drain(a), drain(b)
    pa, pb = [m.payload for m in got_a], [m.payload for m in got_b]
    assert sorted(pa + pb, key=int) == [str(i).encode() for i in range(N)]   # every message exactly once
    assert len(pa) == len(pb) == N // 2                                      # round robin: even split
    assert all(m.topic.startswith("sh/car/") for m in got_a + got_b)        # the topic, not the filter
    assert len(drain(plain)) == N                                            # a plain subscription gets all


def test_two_groups_each_get_every_message(broker, clients):
    g1 = members(clients, broker, "$share/g1/two/t", prefix="g1")
    g2 = members(clients, broker, "$share/g2/two/t", n=1, prefix="g2")
    pub, _ = v5(clients, broker, "two-pub", 1)
    for i in range(10):
        pub.publish("two/t", str(i), qos=1)
    assert len(drain(g1[0])) + len(drain(g1[1])) == 10
    assert len(drain(g2[0])) == 10


def test_qos_downgrade_and_subscription_id(broker, clients):
    m, _ = v5(clients, broker, "shq-m", 0)
    assert m.subscribe([("$share/q/shq/t", 0)], props=[(P_SUBSCRIPTION_ID, 5)]) == [0]
    pub, _ = v5(clients, broker, "shq-p", 1)
    pub.publish("shq/t", b"x", qos=2)
    got = recv5(m)
    assert (got.qos, got.ids()) == (0, [5])


def test_no_retained_on_shared_subscription(broker, clients):
    pub, _ = v5(clients, broker, "shr-p", 1)
    pub.publish("shr/t", b"ret", qos=1, retain=True)
    m, _ = v5(clients, broker, "shr-m", 0)
    assert m.subscribe([("$share/r/shr/#", 1)]) == [1]
    m.assert_silent(0.5)
    pub.publish("shr/t", b"live", qos=1, retain=True)
    got = recv5(m)
    assert (got.payload, got.retain) == (b"live", False)
    pub.publish("shr/t", b"", qos=1, retain=True)


def test_leaving_member_rest_get_everything(broker, clients):
    a, b = members(clients, broker, "$share/lv/lv/t", prefix="lv")
    pub, _ = v5(clients, broker, "lv-pub", 1)
    assert a.unsubscribe("$share/lv/lv/t") == [0]
    for i in range(6):
        pub.publish("lv/t", str(i), qos=1)
    assert len(drain(b)) == 6
    a.assert_silent(0.2)
    b.send(disconnect_packet(5, 0))           # the last member leaves: the group is gone
    b.wait_closed()
    c, _ = v5(clients, broker, "lv-new", 0)
    assert c.subscribe([("$share/lv/lv/t", 1)]) == [1]
    pub.publish("lv/t", b"again", qos=1)
    assert recv5(c).payload == b"again"
    a.assert_silent(0.2)


def test_offline_member_share_kept_or_skipped(broker, clients):
    cid = cid_on_core("off-m", 0, broker.cores)
    a = clients.raw(broker, 5)
    a.connect(cid, props=[(0x11, 60)])
    assert a.subscribe([("$share/off/off/t", 1)]) == [1]
    a.send(disconnect_packet(5, 0))
    a.wait_closed()
    b, _ = v5(clients, broker, "off-b", 1)
    assert b.subscribe([("$share/off/off/t", 1)]) == [1]
    pub, _ = v5(clients, broker, "off-p", 1)
    for i in range(6):
        pub.publish("off/t", str(i), qos=1)
    got_b = [m.payload for m in drain(b)]
    if broker.cores == 1:
        assert len(got_b) == 6                # same core: the online member takes every message
    a2 = clients.raw(broker, 5)
    assert a2.connect(cid, clean=False, props=[(0x11, 60)])[0]
    got_a = [m.payload for m in drain(a2)]
    # Across cores the publishing core picks a core without knowing whether its members are online:
    # the offline member's share waits in its session and arrives when it returns. Nothing is lost.
    assert sorted(got_a + got_b, key=int) == [str(i).encode() for i in range(6)]


def test_no_local_on_shared_is_protocol_error(broker, clients):
    m, _ = v5(clients, broker, "shnl", 0)
    m.send(subscribe_packet(1, [("$share/g/shnl/t", 1 | NO_LOCAL)], 5))
    got = m.wait_closed()
    assert got and parse_disconnect(got[-1])[0] == RC_PROTOCOL_ERROR


@pytest.mark.parametrize("filt", ["$share/g", "$share//t", "$share/g+/t", "$share/g#/t", "$share/g/"])
def test_invalid_share_filter(broker, clients, filt):
    m, _ = v5(clients, broker, "shbad", 0)
    m.send(subscribe_packet(1, [(filt, 1)], 5))
    pkt = m.recv_packet()
    if pkt.type == PUBLISH:
        raise AssertionError("unexpected PUBLISH")
    # either a SUBACK refusing the filter (0x8F) or a DISCONNECT for a malformed SUBSCRIBE
    from mqtt_util import SUBACK, parse_suback
    if pkt.type == SUBACK:
        assert parse_suback(pkt, 5)[1] == [0x8F]
    else:
        assert parse_disconnect(pkt)[0] in (0x8F, 0x81, RC_PROTOCOL_ERROR)


def test_paho_shared_members(broker, clients):
    subs = []
    for i in range(2):
        p = clients.paho(broker, cid_on_core(f"shp-{i}", i, broker.cores), version=5)
        p.connect()
        assert p.subscribe("$share/paho/shp/t", 1) == [1]
        subs.append(p)
    pub = clients.paho(broker, cid_on_core("shp-pub", 1, broker.cores), version=5)
    pub.connect()
    for i in range(10):
        pub.publish("shp/t", str(i), qos=1)
    got = []
    for p in subs:
        while True:
            try:
                got.append(int(p.messages.get(timeout=0.6).payload))
            except Exception:
                break
    assert sorted(got) == list(range(10))


def test_leaving_member_unacked_qos1_go_to_another(broker, clients):
    a, b = members(clients, broker, "$share/ho/ho/t", prefix="ho")
    pub, _ = v5(clients, broker, "ho-pub", 1)
    for i in range(8):
        pub.publish("ho/t", str(i), qos=1)
    got_a = []
    while True:                                   # a takes its share and never acknowledges it
        try:
            got_a.append(recv5(a, timeout=0.6, ack=False).payload)
        except TimeoutError:
            break
    assert got_a
    got_b = [m.payload for m in drain(b)]
    a.send(disconnect_packet(5, 0))               # a's session ends (expiry 0): its unacked go to b
    a.wait_closed()
    got_b += [m.payload for m in drain(b, 1.0)]
    assert sorted(got_b, key=int) == [str(i).encode() for i in range(8)]


def test_expired_member_queue_goes_to_another(broker, clients):
    ids = [cid_on_core(f"hq-{i}", i, broker.cores) for i in range(2)]
    for cid, expiry in zip(ids, (1, 60)):
        m = clients.raw(broker, 5)
        m.connect(cid, props=[(0x11, expiry)])
        assert m.subscribe([("$share/hq/hq/t", 1)]) == [1]
        m.send(disconnect_packet(5, 0))
        m.wait_closed()
    pub, _ = v5(clients, broker, "hq-pub", 1)
    for i in range(6):
        pub.publish("hq/t", str(i), qos=1)         # both members offline: the shares queue in each session
    import time
    time.sleep(2.0)                               # the subject: the first member's session expires, its queue moves
    b = clients.raw(broker, 5)
    assert b.connect(ids[1], clean=False, props=[(0x11, 60)])[0]
    got = [m.payload for m in drain(b, 1.0)]
    assert sorted(got, key=int) == [str(i).encode() for i in range(6)]
