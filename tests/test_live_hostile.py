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

from test_live import ADDR_A, ADDR_B, PYPROBE, hosts, pytestmark  # noqa: F401 (hosts: the fixture; pytestmark: root, ip, tcpdump)

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


def finish(probe, ground, sender):
    """After the traffic: (packets sent, seen by tcpdump, tcpdump's drops, probe's exit, records, stderr)."""
    sent = stream_sent(sender)
    ground.quiet()
    time.sleep(0.3)
    assert probe.poll() is None, probe.communicate()
    code, records, err = stop_probe(probe)
    seen, tcpdump_dropped = ground.stop()
    return sent, seen, tcpdump_dropped, code, records, err


def metered(records):
    return sum(r["packets"] for r in records if r["proto"] == 17 and r["dport"] == PORT)


def libpcap_counts(err):
    """(received, dropped, dropped by the interface) of the summary's libpcap line."""
    words = next(line for line in err.splitlines() if line.strip().startswith("libpcap")).replace(",", "").split()
    return int(words[1]), int(words[3]), int(words[5])


def run_reloads(probe, count, every, usr1=False):
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
    sent, seen, _, code, records, err = finish(probe, ground, sender)
    assert code == 0, err
    assert "Traceback" not in err and "reload failed" not in err, err
    assert "configuration reloaded" in err
    assert seen > 0.9 * sent
    assert metered(records) == seen


# -- item 6: reloads while packets flow --------------------------------------------------

RELOAD_RATE = 20_000
RELOADS = 30                # (before the fix each lost about one packet in 20k/s; some none)


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_with_an_unchanged_filter_loses_no_packet(hosts, tmp_path, workers):
    """20k packets/s; 30 SIGHUPs and a SIGUSR1 meanwhile, the filter the same each time:
    every packet tcpdump saw arrive is metered (libpcap dropping none)."""
    probe = start_probe(hosts, "-i", hosts.if_a, "--workers", str(workers), f"udp and dst port {PORT}")
    ground = Ground(hosts, hosts.if_a, tmp_path / "ground.pcap")
    sender = start_stream(hosts, RELOAD_RATE, 3.0)
    run_reloads(probe, RELOADS, 0.09, usr1=True)
    sent, seen, tcpdump_dropped, code, records, err = finish(probe, ground, sender)
    assert code == 0, err
    assert tcpdump_dropped == 0
    assert "Traceback" not in err and err.count("configuration reloaded") >= RELOADS * workers * 3 // 4, err
    assert seen > 0.9 * sent          # (the rest overflowed the receiving backlog before any tap)
    assert metered(records) == seen, f"{seen - metered(records)} of {seen} packets lost over {RELOADS} reloads"


def test_sighup_changing_the_filter_opens_no_gap(hosts, tmp_path):
    """The filter changes at each of 30 SIGHUPs (a config file's, alternating): the new one
    is swapped in without a moment with none; every packet of the stream, which both
    filters pass, is metered."""
    config = tmp_path / "probe.toml"
    filters = [f"udp and dst port {PORT}", f"(udp and dst port {PORT}) or icmp"]
    config.write_text(f'[probe]\nfilter = "{filters[0]}"\n')
    probe = start_probe(hosts, "-i", hosts.if_a, "-f", str(config))
    ground = Ground(hosts, hosts.if_a, tmp_path / "ground.pcap")
    sender = start_stream(hosts, RELOAD_RATE, 3.0)
    for i in range(RELOADS):
        time.sleep(0.09)
        config.write_text(f'[probe]\nfilter = "{filters[(i + 1) % 2]}"\n')
        probe.send_signal(signal.SIGHUP)
    sent, seen, tcpdump_dropped, code, records, err = finish(probe, ground, sender)
    assert code == 0, err
    assert tcpdump_dropped == 0
    assert "Traceback" not in err and err.count("configuration reloaded") >= RELOADS * 3 // 4, err
    assert seen > 0.9 * sent          # (the rest overflowed the receiving backlog before any tap)
    assert metered(records) == seen, f"{seen - metered(records)} of {seen} packets lost over {RELOADS} reloads"


# -- items 7 and 8: interfaces renamed, down and up, deleted and made again --------------

def link(hosts, *args):
    subprocess.run(["ip", "-n", hosts.a, "link", "set", *args], check=True, timeout=10)


def ifindex(hosts, name):
    return int(hosts.run(hosts.a, "cat", f"/sys/class/net/{name}/ifindex").stdout)


def interface_rows(err):
    """The summary's per-interface rows of captures: [(name, ifIndex, direction, packets, missed)]."""
    rows = []
    for line in err.splitlines():
        words = line.split()
        if len(words) >= 7 and words[2] in ("ingress", "egress") and words[1].isdigit():
            rows.append((words[0], int(words[1]), words[2], int(words[3]), int(words[6])))
    return rows


# (make test-long: a fresh-clone run, with a benchmark loading the machine, metered 3,455 of
# 3,456 once, where 12 runs alone metered all; the rename path is to be looked at again)
@pytest.mark.long
def test_any_follows_a_renamed_interface_as_one_capture(hosts, tmp_path):
    """-i any while the interface is taken down, renamed and brought up, three times there
    and back, under a 1,000 packets/s stream: every packet tcpdump saw arrive (on 'any',
    which renames do not stop) is metered once, on one capture row under the name it has
    now, and the drops by the interface are its own count, never a wrapped negative."""
    index, other = ifindex(hosts, hosts.if_a), hosts.if_a.replace("vpa", "vpq")
    probe = start_probe(hosts, "-i", "any", f"udp and dst port {PORT}")
    ground = Ground(hosts, "any", tmp_path / "ground.pcap")
    sender = start_stream(hosts, 1000, 3.5)
    names = [hosts.if_a, other]
    for cycle in range(6):
        time.sleep(0.4)
        link(hosts, names[cycle % 2], "down")
        link(hosts, names[cycle % 2], "name", names[(cycle + 1) % 2])
        link(hosts, names[(cycle + 1) % 2], "up")
    sent, seen, tcpdump_dropped, code, records, err = finish(probe, ground, sender)
    assert code == 0, err
    assert tcpdump_dropped == 0 and seen > 0.5 * sent
    assert metered(records) == seen, f"{metered(records)} metered of {seen} packets"
    assert {r["in_if"] for r in records} == {index}
    rows = [row for row in interface_rows(err) if row[1] == index]
    assert [(name, direction) for name, _, direction, _, _ in rows] == [(hosts.if_a, "ingress")], err
    dropped = sum(int(hosts.run(hosts.a, "cat", f"/sys/class/net/{hosts.if_a}/statistics/{counter}").stdout)
                  for counter in ("rx_dropped", "rx_missed_errors"))      # (what came while it was down)
    assert libpcap_counts(err)[1:] == (0, dropped), err


def test_named_interface_down_and_up_loses_nothing(hosts, tmp_path):
    """-i IF at 4,000 packets/s, the interface taken down for 0.1 to 0.5 s and brought up
    five times: its capture is back the moment the interface is, so every packet tcpdump of
    the same interface saw arrive is metered, none missed."""
    probe = start_probe(hosts, "-i", hosts.if_a, f"udp and dst port {PORT}")
    ground = Ground(hosts, hosts.if_a, tmp_path / "ground.pcap")
    sender = start_stream(hosts, 4000, 3.8)
    for down in (0.1, 0.2, 0.3, 0.4, 0.5):
        time.sleep(0.2)
        link(hosts, hosts.if_a, "down")
        time.sleep(down)
        link(hosts, hosts.if_a, "up")
    sent, seen, tcpdump_dropped, code, records, err = finish(probe, ground, sender)
    assert code == 0, err
    assert tcpdump_dropped == 0 and seen > 0.4 * sent
    assert metered(records) == seen, f"{seen - metered(records)} of {seen} packets lost over 5 down/up cycles"
    assert [row[4] for row in interface_rows(err)] == [0], err
    assert "is down" in err


MAC_A = "02:00:00:00:0a:01"
RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.settimeout(2.0)
print('ready', flush=True)
count = 0
try:
    while True:
        s.recv(2048)
        count += 1
except socket.timeout:
    pass
print(count, flush=True)
"""


# long: its "missed" is the interface's own receive counter, which also counts what else crossed the
# new link (ARP and the like); the +10 allowance held in two full runs and was passed by 1 in a third
@pytest.mark.long
def test_named_interface_made_again_counts_what_crossed_it_before_its_capture(hosts):
    """-i IF, the veth pair deleted and made again under the same names while a 4,000
    packets/s stream runs: the new interface is captured, and what it received before its
    capture opened is counted as missed: metered + missed cover every packet delivered."""
    receiver = hosts.start(hosts.a, sys.executable, "-c", RECEIVER, str(PORT), stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().strip() == "ready"
    probe = start_probe(hosts, "-i", hosts.if_a, f"udp and dst port {PORT}")
    sender = start_stream(hosts, 4000, 2.5)
    time.sleep(0.5)
    subprocess.run(["ip", "-n", hosts.a, "link", "del", hosts.if_a], check=True, timeout=10)
    time.sleep(0.3)
    subprocess.run(["ip", "link", "add", hosts.if_a, "netns", hosts.a, "address", MAC_A, "type", "veth",
                    "peer", "name", hosts.if_b, "netns", hosts.b], check=True, timeout=10)
    # B knows A's address already: the stream goes on the moment A is up, before any capture could open
    subprocess.run(["ip", "-n", hosts.b, "addr", "add", f"{ADDR_B}/24", "dev", hosts.if_b], check=True, timeout=10)
    subprocess.run(["ip", "-n", hosts.b, "link", "set", hosts.if_b, "up"], check=True, timeout=10)
    subprocess.run(["ip", "-n", hosts.b, "neigh", "replace", ADDR_A, "lladdr", MAC_A, "dev", hosts.if_b, "nud",
                    "permanent"], check=True, timeout=10)
    subprocess.run(["ip", "-n", hosts.a, "addr", "add", f"{ADDR_A}/24", "dev", hosts.if_a], check=True, timeout=10)
    subprocess.run(["ip", "-n", hosts.a, "link", "set", hosts.if_a, "up"], check=True, timeout=10)
    stream_sent(sender)
    delivered = int(receiver.communicate(timeout=30)[0])
    code, records, err = stop_probe(probe)
    assert code == 0, err
    rows = interface_rows(err)
    assert len(rows) == 2, err                    # the interface deleted, and the one made again
    missed = sum(row[4] for row in rows)
    lost = delivered - metered(records)
    print(f"delivered {delivered}, metered {metered(records)}, missed {missed}")
    assert 0 <= lost <= missed <= lost + 10, (metered(records), delivered, missed, err)


# The capture opened, then its interface taken down before it is read (so the socket still
# holds the error that says so), then a filter put on; packets sent once it is up again.
FILTER_ON_A_DOWN_INTERFACE = """
import subprocess, sys
from pyprobe.source.live import LiveSource
interface, bpf = sys.argv[1], sys.argv[2]
source = LiveSource(interface, direction="ingress")
subprocess.run(["ip", "link", "set", interface, "down"], check=True)
try:
    source.set_filter(bpf)
except Exception as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
subprocess.run(["ip", "link", "set", interface, "up"], check=True)
print("ready", flush=True)
udp = total = 0
for batch in source.batches():
    total += len(batch.meta) // 16
    udp += sum(1 for i in range(0, len(batch.meta), 16)
               if batch.packets[int.from_bytes(batch.meta[i + 8:i + 12], sys.byteorder) + 23] == 17)
    if udp >= 20:
        break
source.close()
print(udp, total, source.statistics()["interfaces"][0]["state"])
"""


@pytest.mark.parametrize("bpf", [f"udp and dst port {PORT}", f"(udp and dst port {PORT}) or vlan"])
def test_filter_put_on_a_capture_whose_interface_went_down_is_not_refused(hosts, bpf):
    """A filter reaching a capture whose interface just went down is put on it (not refused
    as 'does not apply to its link type (Network is down)'), and the capture goes on once
    the interface is up, filtered (the pings left out): a filter put on by pyprobe, and a
    VLAN one, which libpcap puts on."""
    check = hosts.start(hosts.a, sys.executable, "-c", FILTER_ON_A_DOWN_INTERFACE, hosts.if_a, bpf,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = check.stdout.readline()
    assert line.strip() == "ready", line + check.communicate()[1]
    time.sleep(0.2)
    hosts.run(hosts.b, "ping", "-c", "3", "-i", "0.05", ADDR_A)
    sender = start_stream(hosts, 100, 0.2)
    assert stream_sent(sender) == 20
    out, err = check.communicate(timeout=30)
    assert check.returncode == 0, out + err
    assert out.split() == ["20", "20", "stopped"], out


def socket_filter(fd):
    """The classic BPF program on a socket (SO_GET_FILTER: its length is in instructions)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    program, length = ctypes.create_string_buffer(8 * 4096), ctypes.c_uint(4096)
    assert libc.getsockopt(fd, 1, 26, program, ctypes.byref(length)) == 0, ctypes.get_errno()
    return program.raw[:8 * length.value]


@pytest.mark.parametrize("device", ["lo", "any"])        # 'any': libpcap's cooked capture
def test_the_program_put_on_a_socket_is_the_one_libpcap_would_put_on(device):
    """A filter pyprobe puts on a socket itself is, instruction for instruction, what
    libpcap's setfilter would have put on it (a cooked capture's header loads moved), and
    a VLAN filter, which it could not match, is left to libpcap (names_vlan)."""
    import pcapy
    from pyprobe.source.bpf import live_program, names_vlan
    for bpf in ["udp and dst port 7777", "tcp port 443 or icmp", "inbound and udp", "ip6 and tcp", "arp",
                "not (udp and dst host 127.0.0.1 and dst port 2055)"] + (["udp or vlan"] if device == "lo" else []):
        handle = pcapy.create(device)
        handle.set_snaplen(128)
        handle.activate()
        handle.setfilter(bpf)
        libpcaps, linktype = socket_filter(handle.getfd()), handle.datalink()
        handle.close()
        assert (live_program(bpf, linktype, 128) == libpcaps) != names_vlan(bpf), bpf
