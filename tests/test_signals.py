"""SIGTERM and SIGINT stop pyprobe gracefully: every packet read so far ends up in a record."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import reference

CAPTURE = Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap"
PYPROBE = shutil.which("pyprobe", path=str(Path(sys.executable).parent))


def per_key(records):
    sums = {}
    for r in records:
        entry = sums.setdefault((r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"]), [0, 0])
        entry[0] += r["packets"]
        entry[1] += r["octets"]
    return sums


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_on_an_open_stream_loses_nothing(signum):
    """The capture arrives on stdin and the writer keeps the pipe open, so pyprobe is blocked
    in a read when the signal comes: the packets already sent must still be metered."""
    probe = subprocess.Popen([PYPROBE, "-r", "-", "--json"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    probe.stdin.write(CAPTURE.read_bytes())
    probe.stdin.flush()
    time.sleep(1.5)                       # let it read everything and block for more
    assert probe.poll() is None, "pyprobe ended although its input is still open"
    probe.send_signal(signum)
    out, err = probe.communicate(timeout=30)
    probe.stdin.close()
    assert probe.returncode == 0, err
    assert b"Traceback" not in err, err.decode()
    assert b"stopped by a signal" in err
    records = [json.loads(line) for line in out.splitlines()]
    expected = {key: list(v) for key, v in reference.totals(str(CAPTURE)).totals.items()}
    got = {(k[0], k[1], k[2], k[3], k[4], k[5]): v for k, v in per_key(records).items()}
    assert got == {tuple(k): v for k, v in expected.items()}
