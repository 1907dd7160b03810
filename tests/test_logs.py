"""Log lines (pyprobe/logs.py): set up when the first line is logged, to stderr as
'pyprobe: ...' or to the system log with --syslog; an unreachable system log is one
line at start, exit 2."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wire import PYPROBE, free_udp_port, run_pyprobe  # noqa: E402

SYSLOG = "/dev/log"
CAPTURE = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")
needs_free_syslog = pytest.mark.skipif(os.path.exists(SYSLOG) or os.geteuid() != 0,
                                       reason="a system log already listens at /dev/log, or not root")


def test_a_warning_goes_to_stderr_named_pyprobe():
    proc = run_pyprobe(["-r", CAPTURE, "-q", "-n", f"127.0.0.1:{free_udp_port()}"])
    lines = proc.stderr.splitlines()
    assert any(line.startswith("pyprobe: collector 127.0.0.1:") and "send failed" in line for line in lines), \
        proc.stderr
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr, proc.stderr


def test_a_quiet_run_does_not_import_logging():
    """The start-up cost the lazy set-up exists for: a run that logs nothing never imports it."""
    code = ("import sys; from pyprobe.cli import main; sys.argv = ['pyprobe', '-r', %r, '-q'];"
            "rc = main(); assert 'logging' not in sys.modules, 'logging imported'; sys.exit(rc)" % CAPTURE)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@needs_free_syslog
def test_syslog_unreachable_is_one_line_and_exit_2():
    proc = subprocess.run([PYPROBE, "-r", CAPTURE, "-q", "--syslog"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "pyprobe: --syslog: cannot reach the system log at /dev/log: No such file or directory"], proc.stderr


@needs_free_syslog
def test_syslog_lines_go_to_the_system_log():
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(SYSLOG)
    try:
        port = free_udp_port()
        proc = subprocess.run([PYPROBE, "-r", CAPTURE, "-q", "--syslog", "-n", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr          # the warning went to syslog, not stderr
        log.settimeout(5)
        line = log.recv(4096)
    finally:
        log.close()
        os.unlink(SYSLOG)
    # facility daemon (3), severity warning (4): <3*8+4>
    assert re.match(rb"<28>pyprobe\[\d+\]: collector 127\.0\.0\.1:%d: send failed" % port, line), line
