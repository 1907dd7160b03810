"""The progress line: on a terminal for long input, never into a pipe or a log."""

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

CAPTURE = Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap"
PYPROBE = shutil.which("pyprobe", path=str(Path(sys.executable).parent))


def run_with_stderr(stderr, *args, stdin=None):
    return subprocess.run([PYPROBE, *args, "-q", "--json"], stdin=stdin, stdout=subprocess.DEVNULL,
                          stderr=stderr, timeout=60)


def test_no_progress_into_a_pipe():
    result = run_with_stderr(subprocess.PIPE, "-r", str(CAPTURE))
    assert result.returncode == 0
    assert b"\r" not in result.stderr and b"packets" not in result.stderr


def test_progress_on_a_terminal_for_a_stream():
    """Standard input has no known size, so a terminal gets the progress line."""
    leader, follower = pty.openpty()
    with open(CAPTURE, "rb") as stdin:
        result = run_with_stderr(follower, "-r", "-", stdin=stdin)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert result.returncode == 0
    assert b"\r" in shown and b"500 packets" in shown


def test_progress_always_counts_every_packet():
    result = run_with_stderr(subprocess.PIPE, "--progress", "always", "-r", str(CAPTURE))
    assert result.returncode == 0
    assert b"%" in result.stderr      # a file's share is known
