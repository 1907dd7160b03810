"""The Debian package (make deb: scripts/make-deb). apt installs it with its Debian
dependencies; man finds its pages; /usr/bin/pyprobe, on Debian's python3, makes of the demo
capture the records the venv's pyprobe makes (with a filter, through the bundled libpcap,
and with metrics, through the bundled prometheus-client); systemd accepts its unit; and a
purge takes everything away again, the service's user and group too. The system is left as
it was found: the test runs only where the package and the user are absent, as root."""

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyprobe import settings

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "android.pcap"
VENV_PYPROBE = Path(sys.executable).parent / "pyprobe"
COMMAND = Path("/usr/bin/pyprobe")
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
PAGES = ("pyprobe", "pyprobe-generate", "pyprobe-ctl")


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


def installed(package):
    return run(["dpkg-query", "-W", "-f", "${Status}", package]).stdout.endswith(" installed")


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def json_records(pyprobe, *args):
    result = run([str(pyprobe), "-r", str(DEMO), "--json", "-q", *args])
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.splitlines())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_default_config_uncommented_is_a_valid_one(tmp_path):
    """contrib/pyprobe.toml (/etc/pyprobe/pyprobe.toml) is all comments; each key it shows is
    one pyprobe takes, with a value it takes."""
    text = (ROOT / "contrib" / "pyprobe.toml").read_text()
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines())
    config = tmp_path / "pyprobe.toml"
    config.write_text(re.sub(r"^# ?(\[|[a-z_]+ = )", r"\1", text, flags=re.M))
    parsed = settings.parse(["-f", str(config)])
    assert parsed.interface and parsed.collectors and parsed.timeouts and parsed.filter
    assert len(re.findall(r"^[a-z_]+ = ", config.read_text(), re.M)) == 11


@pytest.fixture
def deb(tmp_path):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("installs a Debian package: root on Debian")
    if installed("pyprobe") or user_exists("pyprobe") or group_exists("pyprobe"):
        pytest.skip("a pyprobe package, user or group is here already; the test would take it away")
    built = run([str(ROOT / "scripts" / "make-deb"), sys.executable, str(tmp_path)])
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.split()[-1])


def test_the_package_installs_runs_and_purges(deb):
    fields = run(["dpkg-deb", "-f", str(deb), "Package", "Depends"]).stdout
    python = "%d.%d" % sys.version_info[:2]
    assert "Package: pyprobe" in fields and f"python3 (>= {python}~)" in fields and "adduser" in fields
    install = run(APT + ["install", str(deb)], env=APT_ENV)
    try:
        assert install.returncode == 0, install.stdout + install.stderr
        check_installed()
    finally:
        purge = run(APT + ["remove", "--purge", "pyprobe"], env=APT_ENV)
    assert purge.returncode == 0 and "pyprobe" not in purge.stderr, purge.stdout + purge.stderr
    assert not installed("pyprobe")
    assert not user_exists("pyprobe") and not group_exists("pyprobe")
    for path in (COMMAND, Path("/usr/lib/pyprobe"), Path("/etc/pyprobe"), Path("/usr/share/doc/pyprobe"),
                 Path("/lib/systemd/system/pyprobe.service"), Path("/usr/share/man/man8/pyprobe.8.gz")):
        assert not path.exists(), path
    assert not list(Path("/etc/systemd/system").glob("**/pyprobe.service"))


def check_installed():
    for page in PAGES:
        found = run(["man", "-w", page])
        assert found.stdout.strip() == f"/usr/share/man/man8/{page}.8.gz", found.stderr
    shown = run(["man", "pyprobe"], env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"})
    assert shown.returncode == 0 and "--template-interval" in shown.stdout, shown.stderr

    records = json_records(COMMAND)
    assert len(records) > 100 and records == json_records(VENV_PYPROBE)
    assert json_records(COMMAND, "tcp") == json_records(VENV_PYPROBE, "tcp") != records
    assert json_records(COMMAND, "--metrics", f"127.0.0.1:{free_port()}") == records

    user = pwd.getpwnam("pyprobe")
    assert user.pw_uid < 1000 and user.pw_shell.endswith("nologin") and grp.getgrgid(user.pw_gid).gr_name == "pyprobe"
    unit = Path("/lib/systemd/system/pyprobe.service")
    assert "ExecStart=/usr/bin/pyprobe -f /etc/pyprobe/pyprobe.toml " in unit.read_text()
    if shutil.which("systemd-analyze"):
        verified = run(["systemd-analyze", "verify", str(unit)])
        assert verified.returncode == 0 and "pyprobe" not in verified.stderr, verified.stderr
    assert "/etc/pyprobe/pyprobe.toml" in run(["dpkg-query", "-W", "-f", "${Conffiles}", "pyprobe"]).stdout
