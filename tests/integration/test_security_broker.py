"""The broker with --password-file, --acl-file and --allow-anonymous: logins refused with the right CONNACK
code per version, failed logins rate-limited, ACL denials in each direction (PUBACK 0x87 / dropped, SUBACK
0x87 / 0x80, will topic). Real clients (mosquitto_pub/sub and raw sockets) on an ephemeral loopback port."""
import os
import signal
import struct
import subprocess

import pytest

import core_rawmqtt as rm
from mqtt_util import wait_until

PASSWD = os.path.join(rm.BUILD, "ringmq-passwd")
USERS = {"dash": "dash-pw", "V1": "v1-pw", "V2": "v2-pw", "norules": "nr-pw"}
ACL = """# dashboards read the whole fleet; each car writes and reads only under its own name
user dash
topic read cars/#
topic deny cars/+/keys
user norules
pattern readwrite cars/%u/#
"""


def connect_pw(cid, user=None, password=None, version=4, will=None):
    """CONNECT with username and password (core_rawmqtt's builder has no password)."""
    flags = 0x02
    payload = rm.s16(cid)
    if will:
        flags |= 0x04 | (will[2] << 3)
        payload += (rm.props() if version == 5 else b"") + rm.s16(will[0]) + rm.s16(will[1])
    if user is not None:
        flags |= 0x80
        payload += rm.s16(user)
    if password is not None:
        flags |= 0x40
        payload += rm.s16(password)
    body = rm.s16("MQIsdp" if version == 3 else "MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
    if version == 5:
        body += rm.props()
    return rm.packet(0x10, body + payload)


def login(broker, cid, user=None, password=None, version=4, will=None):
    """Returns (CONNACK code, client); the client is None when refused (and checked closed)."""
    cl = rm.Client(broker.port)
    cl.send(connect_pw(cid, user, password, version, will))
    _, code, _ = rm.connack(cl)
    if code:
        assert cl.closed(), "a refused login must be disconnected"
        cl.close()
        return code, None
    return code, cl


def session(broker, user, version=4):
    code, cl = login(broker, f"c-{user}-{version}", user, USERS[user], version)
    assert code == 0, f"{user}: CONNACK {code:#x}"
    return cl


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sec")
    pw = d / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        args = [PASSWD] + (["-c"] if i == 0 else []) + ["-b", str(pw), user, password]
        assert subprocess.run(args, timeout=20).returncode == 0
    acl = d / "acl"
    acl.write_text(ACL)
    return pw, acl


@pytest.fixture(scope="module")
def broker(files):
    # every test connects from 127.0.0.1 and many fail on purpose: the limiter has its own test
    b = rm.Broker("--password-file", str(files[0]), "--acl-file", str(files[1]), "--auth-fail-burst", "0")
    yield b
    assert b.stop() == 0, b.stderr


def test_passwords_with_mosquitto_pub(broker):
    def pub(user, password):
        args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", f"cars/{user}/x", "-m", "m"]
        if user:
            args += ["-u", user, "-P", password]
        return subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert pub("V1", "v1-pw").returncode == 0
    for user, password in (("V1", "wrong"), ("V1", "v2-pw"), ("nobody", "v1-pw"), (None, None)):
        r = pub(user, password)
        assert r.returncode != 0 and "not authorised" in r.stderr.lower(), (user, r.stderr)


@pytest.mark.parametrize("version,bad,anon", [(4, 0x05, 0x05), (3, 0x05, 0x05), (5, 0x86, 0x87)])
def test_refused_logins_get_the_versions_code(broker, version, bad, anon):
    assert login(broker, "r1", "V1", "nope", version)[0] == bad
    assert login(broker, "r2", "ghost", "v1-pw", version)[0] == bad
    assert login(broker, "r3", "V1", None, version)[0] == bad
    assert login(broker, "r4", None, None, version)[0] == anon
    code, cl = login(broker, "r5", "V1", "v1-pw", version)
    assert code == 0
    cl.close()


def test_failed_logins_are_rate_limited(files):
    b = rm.Broker("--password-file", str(files[0]))
    try:
        for _ in range(5):
            assert login(b, "rl", "V2", "guess", 5)[0] == 0x86
        # the limit now holds even for the right password: 0x9F, without hashing anything
        assert login(b, "rl", "V2", "v2-pw", 5)[0] == 0x9F
        assert login(b, "rl", "V2", "v2-pw", 4)[0] == 0x05
    finally:
        assert b.stop() == 0, b.stderr


def test_allow_anonymous_true_still_checks_passwords(files):
    b = rm.Broker("--password-file", str(files[0]), "--allow-anonymous", "true", "--auth-fail-burst", "0")
    try:
        code, cl = login(b, "anon", None, None, 5)
        assert code == 0
        cl.close()
        assert login(b, "bad", "V1", "wrong", 5)[0] == 0x86
    finally:
        assert b.stop() == 0, b.stderr


def drain_publishes(cl, version=4, timeout=0.5):
    got = []
    try:
        while True:
            t, f, body = cl.read(timeout)
            if t == 3:
                got.append(rm.parse_publish(f, body, version))
    except (TimeoutError, OSError):
        return got


@pytest.mark.parametrize("version", [4, 5])
def test_publish_acl(broker, version):
    dash = session(broker, "dash", version)
    dash.send(rm.subscribe(1, [("cars/#", 1)], version))
    _, body = dash.expect(9)
    assert body[-1] == 1
    car = session(broker, "V1", version)
    car.send(rm.publish("cars/V1/state", "mine", qos=1, pid=10, version=version))
    _, body = car.expect(4)
    assert body[:2] == b"\x00\x0a" and (version == 4 or len(body) == 2 or body[2] == 0)
    # another car's topic: v5 PUBACK 0x87, 3.1.1 acknowledged but dropped
    car.send(rm.publish("cars/V2/state", "forged", qos=1, pid=11, version=version))
    _, body = car.expect(4)
    assert body[:2] == b"\x00\x0b"
    if version == 5:
        assert body[2] == 0x87
    else:
        assert len(body) == 2
    car.send(rm.publish("cars/V2/state", "forged0", qos=0, version=version))
    # QoS 2 denied: v5 PUBREC 0x87 ends it; 3.1.1 completes the exchange normally
    car.send(rm.publish("cars/V2/state", "forged2", qos=2, pid=12, version=version))
    _, body = car.expect(5)
    if version == 5:
        assert body[2] == 0x87
    else:
        car.send(rm.ack("pubrel", 12))
        car.expect(7)
    # read-only dashboard cannot write
    dash.send(rm.publish("cars/V1/cmd", "x", qos=1, pid=3, version=version))
    got = drain_publishes(dash, version)
    assert [g["payload"] for g in got] == [b"mine"], got
    car.close()
    dash.close()


@pytest.mark.parametrize("version,denied", [(4, 0x80), (5, 0x87)])
def test_subscribe_acl(broker, version, denied):
    car = session(broker, "V1", version)
    car.send(rm.subscribe(2, [("cars/V1/cmd", 1), ("cars/V2/cmd", 1), ("cars/#", 0), ("cars/+/cmd", 0)], version))
    _, body = car.expect(9)
    codes = list(body[2:] if version == 4 else body[3:])
    # cars/# and cars/+/cmd reach V1's own topics too: granted, and each delivery is checked
    assert codes == [1, denied, 0, 0], codes
    # the granted filters deliver V1's topics once; V2's, which V1 may not read, never reach it
    v2 = session(broker, "V2", version)
    v2.send(rm.publish("cars/V2/cmd", "not for V1", version=version))
    code, v1b = login(broker, f"second-{version}", "V1", "v1-pw", version)
    assert code == 0
    v1b.send(rm.publish("cars/V1/cmd", "for V1", version=version))
    got = drain_publishes(car, version)
    assert [(g["topic"], g["payload"]) for g in got] == [("cars/V1/cmd", b"for V1")], got
    for cl in (car, v2, v1b):
        cl.close()


def test_partly_readable_filter_is_filtered_per_delivery(broker):
    # V1 may write its keys topic, the dashboard may read cars/# except cars/+/keys
    v1 = session(broker, "V1", 5)
    for pid, (topic, payload) in enumerate((("cars/V1/keys", "secret"), ("cars/V1/state", "visible")), 1):
        v1.send(rm.publish(topic, payload, qos=1, pid=pid, retain=True, version=5))
        _, body = v1.expect(4)
        assert len(body) == 2 or body[2] == 0
    dash = session(broker, "dash", 5)
    dash.send(rm.subscribe(3, [("cars/#", 1)], 5))
    _, body = dash.expect(9)
    assert body[3] == 1, "granted: most of cars/# is readable"
    v1.send(rm.publish("cars/V1/keys", "secret2", qos=1, pid=3, version=5))
    v1.expect(4)
    v1.send(rm.publish("cars/V1/state", "visible2", qos=1, pid=4, version=5))
    v1.expect(4)
    got = drain_publishes(dash, 5, timeout=1.0)
    assert sorted((g["topic"], g["payload"]) for g in got) == [("cars/V1/state", b"visible"),
                                                             ("cars/V1/state", b"visible2")], got
    for pid, topic in enumerate(("cars/V1/keys", "cars/V1/state"), 10):  # clear the retained messages
        v1.send(rm.publish(topic, "", qos=1, pid=pid, retain=True, version=5))
        v1.expect(4)
    v1.close()
    dash.close()


def test_user_without_rules_and_will_topic(broker):
    # norules has a password but no ACL lines of its own: only the pattern applies
    cl = session(broker, "norules", 5)
    cl.send(rm.publish("anything", "x", qos=1, pid=1, version=5))
    _, body = cl.expect(4)
    assert body[2] == 0x87
    cl.send(rm.publish("cars/norules/ok", "x", qos=1, pid=2, version=5))
    _, body = cl.expect(4)
    assert len(body) == 2 or body[2] == 0
    cl.close()
    # a will on a topic the client may not write refuses the CONNECT
    assert login(broker, "w1", "V1", "v1-pw", 5, will=("cars/V2/gone", b"x", 0))[0] == 0x87
    assert login(broker, "w2", "V1", "v1-pw", 4, will=("cars/V2/gone", b"x", 0))[0] == 0x05
    code, cl = login(broker, "w3", "V1", "v1-pw", 5, will=("cars/V1/gone", b"x", 0))
    assert code == 0
    cl.close()


def test_bad_files_stop_start_up(tmp_path, files):
    bad = tmp_path / "acl"
    bad.write_text("user x\ntopic sometimes a/b\n")
    r = subprocess.run([rm.BINARY, "--listen", f"127.0.0.1:{rm.free_port()}", "--password-file", str(files[0]),
                        "--acl-file", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"{bad}:2: unknown access 'sometimes'" in r.stderr, r.stderr
    r = subprocess.run([rm.BINARY, "--listen", f"127.0.0.1:{rm.free_port()}", "--password-file",
                        str(tmp_path / "missing")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "missing" in r.stderr, r.stderr
    r = subprocess.run([rm.BINARY, "--allow-anonymous", "perhaps"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "want true or false" in r.stderr, r.stderr


def test_sighup_reloads_files_and_keeps_connections(tmp_path):
    pw, acl = tmp_path / "pw", tmp_path / "acl"
    assert subprocess.run([PASSWD, "-c", "-b", str(pw), "V1", "v1-pw"], timeout=20).returncode == 0
    acl.write_text("pattern readwrite cars/%u/#\n")
    b = rm.Broker("--password-file", str(pw), "--acl-file", str(acl), "--auth-fail-burst", "0")
    try:
        a = session(b, "V1", 5)
        assert login(b, "n1", "V9", "v9-pw", 5)[0] == 0x86
        assert subprocess.run([PASSWD, "-b", str(pw), "V9", "v9-pw"], timeout=20).returncode == 0
        b.proc.send_signal(signal.SIGHUP)

        def v9_in():
            code, cl = login(b, "n2", "V9", "v9-pw", 5)
            if cl:
                cl.close()
            return code == 0
        wait_until(v9_in, "the added user getting in")
        # V1 removed: new logins refused, the established connection stays (no re-authentication)
        assert subprocess.run([PASSWD, "-D", str(pw), "V1"], timeout=20).returncode == 0
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: login(b, "n3", "V1", "v1-pw", 5)[0] == 0x86, "the removed user refused")
        a.send(rm.PINGREQ)
        a.expect(13)
        # a broken ACL file: the old rules stay in force
        acl.write_text("pattern readwrite cars/%u/#\ntopic sometimes x\n")
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload failed, keeping the previous files" in b._read_err(), lambda: b._read_err())
        code, v9 = login(b, "n4", "V9", "v9-pw", 5)
        assert code == 0
        v9.send(rm.publish("cars/V9/state", "x", qos=1, pid=5, version=5))
        _, body = v9.expect(4)
        assert len(body) == 2 or body[2] == 0
        v9.send(rm.publish("cars/V1/state", "x", qos=1, pid=6, version=5))
        _, body = v9.expect(4)
        assert body[2] == 0x87
        v9.close()
        a.close()
    finally:
        assert b.stop() == 0, b.stderr
    assert f"reload failed, keeping the previous files: {acl}:2: unknown access 'sometimes'" in b.stderr, b.stderr
    assert b.stderr.count("reloaded password and ACL files") == 2, b.stderr
