"""The progress line: on a terminal for long input, never into a pipe or a log."""

import os
import pty
import re
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


def test_realtime_progress_counts_what_was_fed_and_a_pause_is_no_lag(tmp_path):
    """A real-time replay of a small file reads it at once: the progress line's share and
    packets are those fed so far (not 100.0% from the first line), and its lag is how late
    the replay is (as the summary's lateness), not how long the capture has been quiet."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from packets import eth_ip_packet, write_pcap
    t0 = 1_600_000_000_000_000
    times = [0, 50_000, 100_000, 1_000_000, 1_050_000]             # a 0.9 s pause (under --max-gap)
    path = write_pcap(str(tmp_path / "quiet.pcap"),
                      [(t0 + t, eth_ip_packet(4, "10.7.0.1", "10.7.0.2", 17, 4000 + i, 53)) for i, t in enumerate(times)])
    result = subprocess.run([PYPROBE, "--progress", "always", "-r", path, "--realtime", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    assert result.returncode == 0
    err = result.stderr.decode()
    lines = [line for line in err.split("\r") if "packets" in line and "lag" in line]
    assert len(lines) >= 3, err
    shares = [float(re.search(r"([\d.]+)%", line).group(1)) for line in lines]
    fed = [int(re.search(r"([\d,]+) packets", line).group(1).replace(",", "")) for line in lines]
    assert shares[0] < 100 and fed[0] < 5 and shares == sorted(shares) and fed == sorted(fed), lines
    lags = [float(re.search(r"lag ([\d.]+) s", line).group(1)) for line in lines]
    worst = float(re.search(r"max ([\d.]+) ms", err).group(1)) / 1000
    assert max(lags) <= worst + 0.02, (lags, worst)
