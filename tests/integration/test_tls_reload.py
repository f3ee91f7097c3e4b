"""SIGHUP reloads --cert/--key/--cafile: new TLS connections get the new certificate (and client certificates are
checked against the new CA file), connections made before keep going on the old one, and bad new files keep
the running certificate with one error line. Real clients (mosquitto_pub/sub) on 1 and 2 cores; pytest main
thread; ringmq only."""
import shutil
import signal
import subprocess

import pytest

from conftest import free_port
from mqtt_util import MosquittoSub, cid_on_core, wait_output
from test_tls_ws import make_ca, make_cert, wait_listening

pytestmark = pytest.mark.ringmq_only("certificate reload is ringmq's")

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
RELOADED = "reloaded TLS certificate"
FAILED = "TLS reload failed, keeping the previous certificate"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two unrelated CAs A and B, a server certificate from each, and a client certificate car1 from each."""
    d = tmp_path_factory.mktemp("pki-reload")
    for ca in ("caA", "caB"):
        make_ca(d, ca)
        make_cert(d, ca, f"srv{ca[-1]}", "localhost", SAN)
        make_cert(d, ca, f"car{ca[-1]}", "car1")
    return d


def install(pki, live, which, ca_too=False):
    shutil.copy(pki / f"srv{which}.crt", live / "server.crt")
    shutil.copy(pki / f"srv{which}.key", live / "server.key")
    if ca_too:
        shutil.copy(pki / f"ca{which}.crt", live / "clients-ca.crt")


def pub(port, cid, msg, *tls):
    return subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(port), "-t", "t/reload", "-m", msg,
                           "-q", "1", "-i", cid, *tls], capture_output=True, text=True, timeout=15)


def sighup(b, line, count):
    """SIGHUP, then wait until the broker has written `line` `count` times in all (main thread's stderr)."""
    b.proc.send_signal(signal.SIGHUP)
    wait_output(b, line, count)


def start(broker_factory, cores, live, *extra):
    port = free_port()
    b = broker_factory(cores, args=["--listen-tls", f"127.0.0.1:{port}", "--cert", str(live / "server.crt"),
                                    "--key", str(live / "server.key"), *extra])
    wait_listening(port, cores)
    b.tls_port = port
    return b


def test_sighup_swaps_the_server_certificate(broker_factory, cores, pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    install(pki, live, "A")
    b = start(broker_factory, cores, live)
    ca_a, ca_b = ("--cafile", str(pki / "caA.crt")), ("--cafile", str(pki / "caB.crt"))
    # A connection made before the reload, on either core with 2 cores (its TLS session may be handed off).
    old = MosquittoSub("localhost", b.tls_port, "t/reload", qos=1, count=3, client_id=cid_on_core("old", 1, cores),
                       extra=ca_a)
    try:
        old.wait_subscribed()
        r = pub(b.tls_port, cid_on_core("p1", 0, cores), "before", *ca_a)
        assert r.returncode == 0, r.stderr
        assert pub(b.tls_port, "p1b", "nope", *ca_b).returncode != 0, "CA B trusted before the reload"

        install(pki, live, "B")
        sighup(b, RELOADED, 1)
        r = pub(b.tls_port, cid_on_core("p2", 0, cores), "after", *ca_b)
        assert r.returncode == 0, r.stderr
        r = pub(b.tls_port, cid_on_core("p3", 1, cores), "nope", *ca_a)
        assert r.returncode != 0, "the old certificate is still served to new connections"

        # Bad new files: garbage certificate, then a key that does not match: the B certificate stays.
        (live / "server.crt").write_text("not a certificate\n")
        sighup(b, FAILED, 1)
        install(pki, live, "B")
        shutil.copy(pki / "srvA.key", live / "server.key")
        sighup(b, FAILED, 2)
        assert "key values mismatch" in b.output()
        r = pub(b.tls_port, cid_on_core("p4", 1, cores), "still-b", *ca_b)
        assert r.returncode == 0, r.stderr
        assert pub(b.tls_port, "p5", "nope", *ca_a).returncode != 0
        assert b.output().count(RELOADED) == 1
        # The old connection saw everything, published before and after, over both certificates.
        assert old.messages(timeout=15) == ["t/reload before", "t/reload after", "t/reload still-b"]
        assert old.proc.returncode == 0
    finally:
        old.stop()


def test_sighup_reloads_the_client_ca_file(broker_factory, cores, pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    install(pki, live, "A", ca_too=True)
    b = start(broker_factory, cores, live, "--cafile", str(live / "clients-ca.crt"), "--require-certificate")

    def as_car(which, server_ca):
        return ("--cafile", str(pki / f"ca{server_ca}.crt"), "--cert", str(pki / f"car{which}.crt"),
                "--key", str(pki / f"car{which}.key"))
    assert pub(b.tls_port, "m1", "a", *as_car("A", "A")).returncode == 0
    assert pub(b.tls_port, "m2", "b", *as_car("B", "A")).returncode != 0
    install(pki, live, "B", ca_too=True)
    sighup(b, RELOADED, 1)
    r = pub(b.tls_port, cid_on_core("m3", 1, cores), "b", *as_car("B", "B"))
    assert r.returncode == 0, r.stderr
    assert pub(b.tls_port, "m4", "a", *as_car("A", "B")).returncode != 0, "a CA A client certificate still passes"
