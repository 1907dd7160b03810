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


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not hasattr(signal, "SIGHUP") or __import__("os").geteuid() != 0,
                    reason="live capture on loopback needs root")
@pytest.mark.parametrize("at", [0.1, 0.3])      # (from the interpreter's own start: its default)
def test_a_reload_while_workers_start_ends_nobody(at):
    """SIGHUP (and SIGUSR1) at any moment of the start: nothing dies of it, and SIGTERM then
    ends the parent and every worker (a SIGHUP while forking killed the parent, and the workers
    captured on as orphans)."""
    import os
    probe = subprocess.Popen([PYPROBE, "-i", "lo", "--workers", "16", "-q", "udp", "port", "9"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        time.sleep(at)
        for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGHUP):
            probe.send_signal(signum)
            time.sleep(0.02)
        time.sleep(1.0)
        assert probe.poll() is None, probe.stderr.read().decode()
        workers = _children(probe.pid)
        assert len(workers) == 16
        probe.send_signal(signal.SIGTERM)
        out, err = probe.communicate(timeout=30)
        assert probe.returncode == 0 and b"Traceback" not in err, err.decode()
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(probe.pid, signal.SIGKILL)
        probe.wait()
