# The Debian package as an operator meets it: built by CPack from the build under test, installed with dpkg -i
# on this machine, /usr/bin/ringmq --version run, the unit checked by systemd-analyze verify, then purged with
# nothing left behind. Skips (never touches) a machine where ringmq is already installed from elsewhere.
import glob
import gzip
import os
import re
import subprocess
import time

import pytest

from conftest import BUILD_DIR

PKG = "ringmq"
UNIT = "/usr/lib/systemd/system/ringmq.service"
DPKG_LOCK_WAIT = 120  # an apt run elsewhere on the machine holds the dpkg lock for a while


def run(*cmd, check=True, timeout=120):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def dpkg(*args):
    """dpkg, retried while another dpkg/apt holds its lock (the lock's release is the event waited on)."""
    end = time.monotonic() + DPKG_LOCK_WAIT
    while True:
        p = run("dpkg", *args, check=False)
        if p.returncode == 0 or "lock" not in p.stderr or time.monotonic() > end:
            return p
        time.sleep(0.5)


def installed(pkg):
    p = run("dpkg-query", "-W", "-f=${Status}", pkg, check=False)
    return p.returncode == 0 and "installed" in p.stdout and "not-installed" not in p.stdout


def user_exists(name):
    return run("getent", "passwd", name, check=False).returncode == 0


@pytest.fixture
def deb(tmp_path):
    """The package of the build under test, made by CPack into tmp_path (not build/: `make deb` may run too)."""
    for tool in ("cpack", "dpkg", "dpkg-shlibdeps", "systemd-analyze"):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":")):
            pytest.fail(f"{tool} not found: run tools/install-deps.sh")
    run("cpack", "-G", "DEB", "-B", str(tmp_path), "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"),
        timeout=300)
    debs = glob.glob(str(tmp_path / "ringmq_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def test_deb_installs_runs_verifies_and_purges_cleanly(deb):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    if installed(PKG) or user_exists("ringmq") or os.path.exists("/usr/bin/ringmq") or os.path.exists(UNIT):
        pytest.skip("ringmq is already installed on this machine: not touching it")
    fields = run("dpkg-deb", "-f", deb, "Package", "Depends").stdout
    for lib in ("liburing2", "librdkafka1", "libssl3", "libxxhash0", "libc6"):
        assert re.search(rf"\b{lib}\b", fields), f"Depends lacks {lib}:\n{fields}"
    files = []
    try:
        p = dpkg("-i", deb)
        assert p.returncode == 0, p.stdout + p.stderr
        files = [f for f in run("dpkg", "-L", PKG).stdout.splitlines() if os.path.isfile(f)]
        for f in ("/usr/bin/ringmq", "/usr/bin/ringmq-passwd", UNIT, "/etc/ringmq.conf",
                  "/usr/share/doc/ringmq/README.md", "/usr/share/man/man1/ringmq.1.gz",
                  "/usr/share/ringmq/prometheus/ringmq.rules.yml"):
            assert f in files, f"{f} not in the package: {files}"
        assert user_exists("ringmq"), "postinst did not create the service user"

        v = run("/usr/bin/ringmq", "--version").stdout
        assert re.search(r"^ringmq \d+\.\d+\.\d+ \(git [0-9a-f]{7,}", v, re.M), v
        assert re.search(r"librdkafka \d+\.\d+", v) and "OpenSSL 3" in v and "liburing 2." in v, v
        assert re.search(r"^io_uring: .*multishot-recv", v, re.M), v

        # The unit as installed: the binary it names exists, every directive is known to this systemd.
        unit = open(UNIT).read()
        assert "ExecStart=/usr/bin/ringmq -c /etc/ringmq.conf" in unit and "Type=notify" in unit
        assert "--wal-dir" not in unit
        ver = run("systemd-analyze", "verify", UNIT, check=False)
        noise = [l for l in (ver.stdout + ver.stderr).splitlines() if "ringmq" in l]
        assert ver.returncode == 0 and not noise, ver.stdout + ver.stderr

        # The shipped config starts as is (kafka off, loopback), and the man page is the --help table.
        help_text = run("/usr/bin/ringmq", "--help").stdout
        man = gzip.open("/usr/share/man/man1/ringmq.1.gz", "rt").read()
        for flag in re.findall(r"^  (--[a-z0-9-]+)", help_text, re.M):
            assert ".B " + flag.replace("-", "\\-") in man, f"{flag} is in --help but not in ringmq.1"
    finally:
        p = dpkg("-P", PKG)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not installed(PKG)
    left = [f for f in files if os.path.exists(f)]
    assert not left, f"left behind after dpkg -P: {left}"
    assert not user_exists("ringmq") and not os.path.exists("/var/lib/ringmq")
