"""pyprobe ctl top: the largest active flows of a monitor now, by octets, packets, or the
sources with the most flows; --watch redraws it. The truth is the capture fed to the probe."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import packets as P  # noqa: E402

PYPROBE = os.path.join(os.path.dirname(sys.executable), "pyprobe")
T0 = 1_700_000_000_000_000


def source(i):
    return f"10.0.0.{i % 5 if i < 30 else 4}"       # .4 has the most flows, then the others 6 each


def capture():
    """40 UDP flows: flow i has i % 7 + 1 packets of 10 * i payload bytes, from source(i)."""
    frames, t = [], T0
    for i in range(40):
        for _ in range(i % 7 + 1):
            t += 1
            frames.append((t, P.eth_ip_packet(4, source(i), "10.9.9.9", 17, 1000 + i, 53, payload=b"x" * (10 * i))))
    return P.pcap_bytes(frames), {1000 + i: (i % 7 + 1, (i % 7 + 1) * (28 + 10 * i)) for i in range(40)}


@pytest.fixture
def probe():
    """pyprobe -r - -c SOCK with two monitors, fed the capture on a standard input that stays open."""
    where = Path(tempfile.mkdtemp(prefix="pptop"))
    config = where / "m.toml"
    config.write_text('[[monitor]]\nname = "flows"\n\n[[monitor]]\nname = "hosts"\nrecord = "ip"\n')
    sock = where / "c"
    proc = subprocess.Popen([PYPROBE, "-r", "-", "-c", str(sock), "-f", str(config), "--json"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    data, truth = capture()
    proc.stdin.write(data)
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    while True:
        answer = ctl(sock, "statistics", "--json") if sock.exists() else None
        if answer and answer.returncode == 0 and json.loads(answer.stdout)["meter"]["packets_read"] == len(
                [1 for p, _ in truth.values() for _ in range(p)]):
            break
        assert time.monotonic() < deadline, "the probe did not read the capture"
        time.sleep(0.1)
    yield sock, truth
    proc.stdin.close()
    proc.wait(timeout=30)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr.read()
    shutil.rmtree(where, ignore_errors=True)


def ctl(sock, *args):
    return subprocess.run([PYPROBE, "ctl", "-c", str(sock), *args], capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("by,column", [("octets", 1), ("packets", 0)])
def test_top_flows_are_the_largest(probe, by, column):
    sock, truth = probe
    answer = ctl(sock, "top", "5", "--by", by, "--json")
    assert answer.returncode == 0, answer.stderr
    got = [(r["sport"], r[by]) for r in json.loads(answer.stdout)]
    sizes = sorted((v[column] for v in truth.values()), reverse=True)[:5]
    assert [size for _, size in got] == sizes
    assert all(truth[port][column] == size for port, size in got)


def test_top_sources_by_flows_of_another_monitor(probe):
    sock, truth = probe
    answer = ctl(sock, "top", "3", "--by", "flows", "--monitor", "flows", "--json")
    assert answer.returncode == 0, answer.stderr
    rows = json.loads(answer.stdout)
    per = {}
    for i in range(40):
        flows, octets = per.get(source(i), (0, 0))
        per[source(i)] = (flows + 1, octets + truth[1000 + i][1])
    # most flows first; among as many, most octets first
    want = sorted(per.items(), key=lambda item: (-item[1][0], -item[1][1]))[:3]
    assert [(r["src"], r["flows"], r["octets"]) for r in rows] == [(src, f, o) for src, (f, o) in want]
    assert rows[0]["src"] == "10.0.0.4" and rows[0]["flows"] == 16
    hosts = json.loads(ctl(sock, "top", "--monitor", "hosts", "--json").stdout)       # -T ip: one flow per source
    assert len(hosts) == 5 and sum(r["packets"] for r in hosts) == sum(p for p, _ in truth.values())
    text = ctl(sock, "top", "2", "--monitor", "hosts").stdout
    assert text.startswith("top 2 flows by octets of monitor hosts, of 5 active flows")


def test_top_refuses_what_it_cannot_do(probe):
    sock, _ = probe
    answer = ctl(sock, "top", "--monitor", "nope")
    assert answer.returncode == 1 and "no monitor 'nope' (one of flows, hosts)" in answer.stderr
    answer = ctl(sock, "top", "many")
    assert answer.returncode == 1 and "top: bad argument 'many'" in answer.stderr
    answer = ctl(sock, "statistics", "--by", "octets")
    assert answer.returncode == 2 and "--by and --watch are for top" in answer.stderr
    answer = ctl(sock, "statistics", "--monitor", "hosts")
    assert answer.returncode == 2 and "--monitor is for top and timeouts" in answer.stderr


def test_top_watch_redraws_until_interrupted(probe):
    sock, _ = probe
    watcher = subprocess.Popen([PYPROBE, "ctl", "-c", str(sock), "top", "3", "--watch", "0.2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0 and "Traceback" not in err
    assert out.count("top 3 flows by octets") >= 3
