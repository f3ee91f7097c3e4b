"""ringmq-passwd against the real mosquitto: files it writes are accepted by Debian's mosquitto broker
(good password connects, bad password and unknown user are refused), and it edits mosquitto_passwd files
in place without disturbing other users. Needs no ringmq broker; runs only on loopback."""
import os
import pwd
import socket
import stat
import subprocess
import time

import pytest

BUILD = os.environ.get("RINGMQ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build-asan"))
PASSWD = os.path.join(BUILD, "ringmq-passwd")
MOSQUITTO = "/usr/sbin/mosquitto"
TIMEOUT = 20


def run(*args, stdin=None):
    return subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=TIMEOUT)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mosquitto(tmp_path):
    """Starts mosquitto on a free loopback port with tmp_path/pw as password_file; yields (port, pwfile)."""
    started = []

    def start(pwfile):
        port = free_port()
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            f"password_file {pwfile}\n"
            "allow_anonymous false\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"  # as root, stay root so the 0600 file stays readable
            "log_dest stderr\n")
        log = open(tmp_path / "mosquitto.log", "w")
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not start listening")

    yield start
    for proc, log in started:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def pub(port, user, password):
    r = run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-i", f"t-{user}", "-u", user, "-P", password,
            "-t", "t", "-m", "x", "-q", "1")
    return r.returncode, r.stderr


def test_mosquitto_accepts_file_written_by_ringmq_passwd(tmp_path, mosquitto):
    pw = tmp_path / "pw"
    assert run(PASSWD, "-c", "-b", str(pw), "car-1", "s3cret").returncode == 0
    assert run(PASSWD, "-b", str(pw), "car-2", "with space:colon").returncode == 0
    # the prompt path (stdin not a terminal: two lines)
    r = run(PASSWD, str(pw), "car-3", stdin="typed\ntyped\n")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(pw).st_mode) == 0o600
    for line in pw.read_text().splitlines():
        assert line.split(":", 1)[1].startswith("$7$101$"), line
    port = mosquitto(pw)
    assert pub(port, "car-1", "s3cret")[0] == 0
    assert pub(port, "car-2", "with space:colon")[0] == 0
    assert pub(port, "car-3", "typed")[0] == 0
    rc, err = pub(port, "car-1", "wrong")
    assert rc != 0 and "not authorised" in err.lower(), err
    rc, err = pub(port, "car-1", "s3cret2")
    assert rc != 0, err
    rc, err = pub(port, "nobody", "s3cret")
    assert rc != 0 and "not authorised" in err.lower(), err


def test_update_and_delete_edit_a_mosquitto_passwd_file(tmp_path, mosquitto):
    pw = tmp_path / "pw"
    pw.write_text("")
    assert run("mosquitto_passwd", "-b", str(pw), "old", "oldpw").returncode == 0
    assert run("mosquitto_passwd", "-b", str(pw), "keep", "keeppw").returncode == 0
    # mosquitto_passwd drops comments and leaves no final newline; a hand-added comment must survive us
    pw.write_text("# managed by hand\n" + pw.read_text())
    before = pw.read_text().splitlines()
    # a second name for the original inode: keeps it from being reused, and shows it is never written
    os.link(pw, tmp_path / "original")
    assert run(PASSWD, "-b", str(pw), "old", "newpw").returncode == 0
    assert run(PASSWD, "-b", str(pw), "added", "addedpw").returncode == 0
    after = pw.read_text().splitlines()
    assert os.stat(pw).st_ino != os.stat(tmp_path / "original").st_ino, "file must be replaced by rename"
    assert (tmp_path / "original").read_text().splitlines() == before, "the old file must stay untouched"
    assert after[0] == "# managed by hand"
    assert [l for l in after if l.startswith("keep:")] == [l for l in before if l.startswith("keep:")]
    assert len([l for l in after if l.startswith("old:")]) == 1
    assert run(PASSWD, "-D", str(pw), "keep").returncode == 0
    r = run(PASSWD, "-D", str(pw), "keep")
    assert r.returncode != 0 and "not found" in r.stderr
    assert not [p for p in os.listdir(tmp_path) if p.startswith("pw.")], "temporary file left behind"
    port = mosquitto(pw)
    assert pub(port, "old", "newpw")[0] == 0
    assert pub(port, "old", "oldpw")[0] != 0
    assert pub(port, "added", "addedpw")[0] == 0
    assert pub(port, "keep", "keeppw")[0] != 0


def test_cli_refuses_bad_input(tmp_path):
    pw = tmp_path / "pw"
    r = run(PASSWD, "-b", str(pw), "u", "p")
    assert r.returncode != 0 and "-c" in r.stderr and not pw.exists()
    assert run(PASSWD, "-c", "-b", str(pw), "u", "p").returncode == 0
    original = pw.read_text()
    for args in (["-b", str(pw), "a:b", "p"], ["-b", str(pw), "", "p"], ["-b", str(pw), "#x", "p"],
                 ["-b", str(pw)], [str(pw)], ["-D", "-b", str(pw), "u", "p"], ["-x", str(pw), "u"]):
        r = run(PASSWD, *args)
        assert r.returncode != 0, args
    r = run(PASSWD, str(pw), "v", stdin="one\ntwo\n")
    assert r.returncode != 0 and "do not match" in r.stderr
    r = run(PASSWD, str(pw), "v", stdin="")
    assert r.returncode != 0
    assert pw.read_text() == original, "a refused command must leave the file untouched"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand the file to another user")
def test_root_edit_keeps_the_brokers_ownership(tmp_path):
    pw = tmp_path / "pw"
    assert run(PASSWD, "-c", "-b", str(pw), "u", "p").returncode == 0
    nobody = pwd.getpwnam("nobody")
    os.chown(pw, nobody.pw_uid, nobody.pw_gid)
    assert run(PASSWD, "-b", str(pw), "v", "q").returncode == 0
    st = os.stat(pw)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), "a broker running as its own user could not reload"
    assert stat.S_IMODE(st.st_mode) == 0o600
