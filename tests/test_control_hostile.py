"""A running probe against hostile control requests and reloads: it answers (or refuses in
words) and keeps running with every flow. The truth is the capture fed on its standard
input: at the end every packet is in exactly one record."""

import json
import os
import shutil
import signal
import socket
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
FLOWS = 30
TWO_MONITORS = """\
[[monitor]]
name = "a"
[monitor.timeouts]
inactive = 10
active = 100

[[monitor]]
name = "b"
record = "ip"
[monitor.timeouts]
inactive = 40
active = 400
"""


def capture():
    """FLOWS UDP flows of i % 4 + 1 packets each: (pcap bytes, packets in all)."""
    frames, t = [], T0
    for i in range(FLOWS):
        for _ in range(i % 4 + 1):
            t += 1000
            frames.append((t, P.eth_ip_packet(4, f"10.0.0.{i}", "10.9.9.9", 17, 1000 + i, 53, payload=b"x" * i)))
    return P.pcap_bytes(frames), len(frames)


def ctl(sock, *args, **kw):
    return subprocess.run([PYPROBE, "ctl", "-c", str(sock), *args], capture_output=True, timeout=15, **kw)


class StdinProbe:
    """pyprobe -r - -c SOCK -f CONFIG --json, fed the capture on a standard input kept open,
    so it runs until the test closes it."""

    def __init__(self, config_text):
        self.where = Path(tempfile.mkdtemp(prefix="pphc"))
        self.config = self.where / "c.toml"
        self.config.write_text(config_text)
        self.sock = self.where / "s"
        self.proc = subprocess.Popen([PYPROBE, "-r", "-", "-c", str(self.sock), "-f", str(self.config), "--json"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        data, self.packets = capture()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        deadline = time.monotonic() + 20
        while self.statistics() is None or self.statistics()["meter"]["packets_read"] < self.packets:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the probe did not read the capture"
            time.sleep(0.05)

    def statistics(self):
        if not self.sock.exists():
            return None
        answer = ctl(self.sock, "statistics", "--json")
        return json.loads(answer.stdout) if answer.returncode == 0 else None

    def finish(self):
        """Close its input: (exit status, records, stderr)."""
        out, err = self.proc.communicate(timeout=30)     # (closes its input first)
        shutil.rmtree(self.where, ignore_errors=True)
        return self.proc.returncode, [json.loads(line) for line in out.splitlines()], err.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.where, ignore_errors=True)


@pytest.fixture
def probe():
    p = StdinProbe(TWO_MONITORS)
    yield p
    p.kill()


def assert_every_packet_in_one_record(probe):
    rc, records, err = probe.finish()
    assert rc == 0, err
    for monitor in ("a", "b"):
        assert sum(r["packets"] for r in records if r["monitor"] == monitor) == probe.packets, err


@pytest.mark.parametrize("request_words", [["top", "²"], ["top", "٣"], ["top", "99999999999999999999"],
                                           ["top", "monitor="], ["timeouts", "monitor=nope"],
                                           ["timeouts", "udp=1e400"], ["top", "by=" + "x" * 4000]])
def test_no_request_ends_the_probe(probe, request_words):
    answer = ctl(probe.sock, *request_words, text=True)
    assert answer.returncode == 1 and answer.stderr.startswith("pyprobe ctl: ")
    assert len(answer.stderr.splitlines()) == 1 and "Traceback" not in answer.stderr
    assert probe.proc.poll() is None
    assert_every_packet_in_one_record(probe)


def test_a_request_line_too_long_is_refused_in_one_line(probe):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(probe.sock))
        s.sendall(b"top " + b"9" * 5000 + b"\n")
        answer = s.recv(1000)
    assert answer.startswith(b"error: a request is one line of at most")
    long_ctl = ctl(probe.sock, "top", "by=" + "x" * 5000, text=True)
    assert long_ctl.returncode == 2 and len(long_ctl.stderr.splitlines()) == 1
    assert_every_packet_in_one_record(probe)


def test_a_request_that_is_not_utf8_is_refused_in_words(probe):
    answer = ctl(probe.sock, os.fsdecode(b"\xff\xfe"))          # (ctl knows it is no command: usage, 2)
    assert answer.returncode == 2, answer.stderr
    assert answer.stderr.decode().startswith("pyprobe ctl: unknown command")
    assert b"Traceback" not in answer.stderr
    answer = ctl(probe.sock, "top", os.fsdecode(b"\xff\xfe"))    # (an argument: the probe refuses it, 1)
    assert answer.returncode == 1 and answer.stderr.decode().startswith("pyprobe ctl: top: bad argument")
    assert_every_packet_in_one_record(probe)


def timeouts(probe, *args):
    answer = ctl(probe.sock, "timeouts", *args, "--json", text=True)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def test_timeouts_change_each_monitor_on_its_own_values(probe):
    shown = timeouts(probe)["monitors"]
    assert (shown["a"]["udp"], shown["a"]["maxlife"], shown["b"]["udp"], shown["b"]["maxlife"]) == (10, 100, 40, 400)
    changed = timeouts(probe, "udp=30")["monitors"]          # every monitor, each keeping the rest of its own
    assert (changed["a"]["udp"], changed["a"]["tcp"], changed["a"]["maxlife"]) == (30, 10, 100)
    assert (changed["b"]["udp"], changed["b"]["tcp"], changed["b"]["maxlife"]) == (30, 40, 400)
    only_b = timeouts(probe, "--monitor", "b", "tcp=5")         # one monitor, named
    assert only_b["tcp"] == 5 and only_b["maxlife"] == 400
    assert timeouts(probe, "--monitor", "a")["tcp"] == 10
    text = ctl(probe.sock, "timeouts", "icmp=7", text=True).stdout
    assert "monitor a:" in text and "monitor b:" in text and "set for every monitor" in text
    stats = probe.statistics()
    assert [m["timeouts"]["icmp"] for m in stats["monitors"]] == [7, 7]
    assert [m["timeouts"]["general"] for m in stats["monitors"]] == [10, 40]
    assert_every_packet_in_one_record(probe)


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[probe]\nmax_flows = 5\n\xff = 1\n", b"[[monitor]]\nname = 5\n",
                                     b"[timeouts]\nudp = nan\n", b"\x00" * 100])
def test_a_reload_that_fails_keeps_the_running_settings_and_flows(probe, content):
    probe.config.write_bytes(content)
    probe.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert probe.proc.poll() is None
    assert probe.statistics()["monitors"][1]["timeouts"]["maxlife"] == 400
    rc, records, err = probe.finish()
    assert rc == 0 and "reload failed, keeping the running settings" in err and "Traceback" not in err, err
    for monitor in ("a", "b"):
        assert sum(r["packets"] for r in records if r["monitor"] == monitor) == probe.packets
