"""Live capture under what an operator or the network does to it while it runs: reloads
(SIGHUP), interfaces going down, coming back, renamed. Two network namespaces joined by a
veth pair (test_live.NetnsHosts), a paced UDP stream from B to A, pyprobe capturing on A
and a tcpdump of the same packets as the ground truth: every packet tcpdump saw arrive
must be metered exactly once."""

import json
import signal
import struct
import subprocess
import sys
import time

import pytest

from test_live import ADDR_A, ADDR_B, PYPROBE, NetnsHosts, pytestmark  # noqa: F401 (pytestmark: root, ip, tcpdump)

PORT = 7777
TCPDUMP_BLOCK_SECONDS = 1.2

# A UDP stream at RATE packets/s for SECONDS, paced every half millisecond; prints how many
# datagrams the kernel took (a send refused while the link is down is not retried).
SENDER = """
import socket, sys, time
dst, port, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('', 40000))
payload = b'z' * 64
total, sent, tried = int(rate * seconds), 0, 0
start = time.perf_counter()
while tried < total:
    due = min(total, int((time.perf_counter() - start) * rate) + 1)
    while tried < due:
        tried += 1
        try:
            s.sendto(payload, (dst, port))
            sent += 1
        except OSError:
            pass
    time.sleep(0.0005)
print(sent)
"""


@pytest.fixture
def hosts():
    h = NetnsHosts()
    try:
        yield h
    finally:
        h.close()


def pcap_count(path):
    """Packets in a pcap file (tcpdump -w)."""
    data = path.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    count, pos = 0, 24
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
        count += 1
    return count


class Ground:
    """tcpdump -Q in of the stream's packets, in namespace A: on `interface`, started at once
    and ready when made."""

    def __init__(self, hosts, interface, path):
        self.path = path
        self.proc = hosts.start(hosts.a, "tcpdump", "-i", interface, "-Q", "in", "-B", "8192", "-U", "-w", str(path),
                                f"udp and dst port {PORT}", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        lines = [self.proc.stderr.readline()]
        while lines[-1] and "listening on" not in lines[-1]:
            lines.append(self.proc.stderr.readline())
        assert "listening on" in lines[-1], lines
        self.quiet_from = time.monotonic()

    def quiet(self):
        """The stream has ended now."""
        self.quiet_from = time.monotonic()

    def stop(self):
        """(packets written, the kernel's drops as tcpdump reports them). A stopped tcpdump
        leaves the packets of the kernel's buffer block it has not been handed: the block is
        handed over once it is a second old (tcpdump's timeout), so the last packet must be
        that old."""
        time.sleep(max(0.0, self.quiet_from + TCPDUMP_BLOCK_SECONDS - time.monotonic()))
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        dropped = int(next(line for line in err.splitlines() if "dropped by kernel" in line).split()[0])
        return pcap_count(self.path), dropped


def start_probe(hosts, *args):
    probe = hosts.start(hosts.a, PYPROBE, "--json", "--direction", "ingress", *args,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)                      # capturing before the first packet
    assert probe.poll() is None, probe.communicate()
    return probe


def stop_probe(probe):
    """(exit status, records, standard error)"""
    probe.send_signal(signal.SIGTERM)
    out, err = probe.communicate(timeout=30)
    return probe.returncode, [json.loads(line) for line in out.splitlines()], err


def start_stream(hosts, rate, seconds):
    return hosts.start(hosts.b, sys.executable, "-c", SENDER, ADDR_A, str(PORT), str(rate), str(seconds),
                       stdout=subprocess.PIPE, text=True)


def stream_sent(sender):
    out, _ = sender.communicate(timeout=60)
    return int(out)


def metered(records):
    return sum(r["packets"] for r in records if r["proto"] == 17 and r["dport"] == PORT)


def summary_value(err, label):
    """The first number after a label of the summary ('packets metered')."""
    return int(next(line for line in err.splitlines() if line.strip().startswith(label))
               .split(label)[1].split()[0])


def libpcap_counts(err):
    """(received, dropped, dropped by the interface) of the summary's libpcap line."""
    words = next(line for line in err.splitlines() if line.strip().startswith("libpcap")).replace(",", "").split()
    return int(words[1]), int(words[3]), int(words[5])


def run_reloads(hosts, probe, count, every, usr1=False):
    for i in range(count):
        time.sleep(every)
        probe.send_signal(signal.SIGHUP)
        if usr1 and i == count // 2:
            probe.send_signal(signal.SIGUSR1)


# -- item 2: a reload with no filter and no collector ------------------------------------

def test_sighup_without_filter_or_collector_reloads_and_keeps_every_flow(hosts, tmp_path):
    """`pyprobe -i IF` with no filter, no collector: SIGHUP reloads (no filter to put on the
    capture is no filter), the probe runs on and conserves every packet."""
    probe = start_probe(hosts, "-i", hosts.if_a)
    ground = Ground(hosts, hosts.if_a, tmp_path / "ground.pcap")
    sender = start_stream(hosts, 500, 1.0)
    time.sleep(0.5)
    probe.send_signal(signal.SIGHUP)
    sent = stream_sent(sender)
    ground.quiet()
    time.sleep(0.3)
    assert probe.poll() is None, probe.communicate()
    code, records, err = stop_probe(probe)
    seen, _ = ground.stop()
    assert code == 0, err
    assert "Traceback" not in err and "reload failed" not in err, err
    assert "configuration reloaded" in err
    assert seen > 0.9 * sent
    assert metered(records) == seen


# -- item 6: reloads while packets flow --------------------------------------------------

RELOAD_RATE = 20_000


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_with_an_unchanged_filter_loses_no_packet(hosts, tmp_path, workers):
    """20k packets/s; 20 SIGHUPs and a SIGUSR1 meanwhile, the filter the same each time:
    every packet tcpdump saw arrive is metered (libpcap dropping none)."""
    probe = start_probe(hosts, "-i", hosts.if_a, "--workers", str(workers), f"udp and dst port {PORT}")
    ground = Ground(hosts, hosts.if_a, tmp_path / "ground.pcap")
    sender = start_stream(hosts, RELOAD_RATE, 3.0)
    run_reloads(hosts, probe, 20, 0.12, usr1=True)
    sent = stream_sent(sender)
    ground.quiet()
    time.sleep(0.3)
    code, records, err = stop_probe(probe)
    seen, tcpdump_dropped = ground.stop()
    assert code == 0, err
    assert tcpdump_dropped == 0
    assert "Traceback" not in err and err.count("configuration reloaded") >= 15 * workers, err
    assert seen > 0.9 * sent          # (the rest overflowed the receiving backlog before any tap)
    assert metered(records) == seen, f"{seen - metered(records)} of {seen} packets lost over 20 reloads"


def test_sighup_changing_the_filter_opens_no_gap(hosts, tmp_path):
    """The filter changes at each of 20 SIGHUPs (a config file's, alternating): the new one
    is swapped in without a moment with none; every packet of the stream, which both
    filters pass, is metered."""
    config = tmp_path / "probe.toml"
    filters = [f"udp and dst port {PORT}", f"(udp and dst port {PORT}) or icmp"]
    config.write_text(f'[probe]\nfilter = "{filters[0]}"\n')
    probe = start_probe(hosts, "-i", hosts.if_a, "-f", str(config))
    ground = Ground(hosts, hosts.if_a, tmp_path / "ground.pcap")
    sender = start_stream(hosts, RELOAD_RATE, 3.0)
    for i in range(20):
        time.sleep(0.12)
        config.write_text(f'[probe]\nfilter = "{filters[(i + 1) % 2]}"\n')
        probe.send_signal(signal.SIGHUP)
    sent = stream_sent(sender)
    ground.quiet()
    time.sleep(0.3)
    code, records, err = stop_probe(probe)
    seen, tcpdump_dropped = ground.stop()
    assert code == 0, err
    assert tcpdump_dropped == 0
    assert "Traceback" not in err and err.count("configuration reloaded") >= 15, err
    assert seen > 0.9 * sent          # (the rest overflowed the receiving backlog before any tap)
    assert metered(records) == seen, f"{seen - metered(records)} of {seen} packets lost over 20 reloads"
