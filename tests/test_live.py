"""Live capture on the project's own test hosts: two network namespaces joined by
a veth pair, real traffic between them (ping, an HTTP download, UDP), pyprobe
capturing on one end. A tcpdump of the same interface taken at the same time is
the ground truth: per key, packets and octets must be equal."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import reference
from interop.collectors import nfdump_flows

PYPROBE = shutil.which("pyprobe", path=str(Path(sys.executable).parent))
ADDR_A, ADDR_B = "10.231.0.1", "10.231.0.2"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tcpdump"),
    reason="live capture tests build network namespaces: they need root, iproute2 and tcpdump")


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


class NetnsHosts:
    """Namespaces A and B, veth vA (in A, ADDR_A) <-> vB (in B, ADDR_B), IPv4 only
    (no IPv6 neighbour discovery chatter racing the captures)."""

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.a, self.b = f"ppA{tag}", f"ppB{tag}"
        self.if_a, self.if_b = f"vpa{tag}", f"vpb{tag}"
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        sh("ip", "link", "add", self.if_a, "netns", self.a, "type", "veth", "peer", "name", self.if_b,
           "netns", self.b)
        for ns, ifname, addr in ((self.a, self.if_a, ADDR_A), (self.b, self.if_b, ADDR_B)):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def run(self, ns, *args, **kwargs):
        return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, timeout=60, **kwargs)

    def start(self, ns, *args, **kwargs):
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], **kwargs)

    def close(self):
        sh("ip", "netns", "del", self.a, check=False)
        sh("ip", "netns", "del", self.b, check=False)


@pytest.fixture
def hosts():
    h = NetnsHosts()
    try:
        yield h
    finally:
        h.close()


def start_pyprobe(hosts, *args, direction="both"):
    """pyprobe on vA; by default metering both directions, as a plain tcpdump of vA sees them."""
    return hosts.start(hosts.a, PYPROBE, "-i", hosts.if_a, "--json", "--direction", direction, *args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def traffic(hosts, tmp_path):
    """ping both ways, an HTTP download B -> A, UDP both ways."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "blob").write_bytes(os.urandom(300_000))
    server = hosts.start(hosts.b, sys.executable, "-m", "http.server", "8080", "--bind", ADDR_B,
                         "--directory", str(tmp_path / "www"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert hosts.run(hosts.a, "ping", "-c", "5", "-i", "0.2", ADDR_B).returncode == 0
        assert hosts.run(hosts.b, "ping", "-c", "3", "-i", "0.2", "-s", "1000", ADDR_A).returncode == 0
        fetch = (f"import urllib.request,time\n"
                 f"for _ in range(50):\n"
                 f"    try:\n"
                 f"        data = urllib.request.urlopen('http://{ADDR_B}:8080/blob', timeout=5).read(); break\n"
                 f"    except OSError: time.sleep(0.1)\n"
                 f"assert len(data) == 300000")
        assert hosts.run(hosts.a, sys.executable, "-c", fetch).returncode == 0
        udp = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "for i in range(200): s.sendto(bytes(i % 200 + 1), ('{}', 5353))")
        hosts.run(hosts.a, sys.executable, "-c", udp.format(ADDR_B))
        hosts.run(hosts.b, sys.executable, "-c", udp.format(ADDR_A))
    finally:
        server.terminate()
        server.wait(timeout=10)


def per_key(records):
    sums = {}
    for r in records:
        key = (r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"])
        sums.setdefault(key, [0, 0])
        sums[key][0] += r["packets"]
        sums[key][1] += r["octets"]
    return sums


TCPDUMP_DIRECTION = {"ingress": ["-Q", "in"], "egress": ["-Q", "out"], "both": []}


@pytest.mark.parametrize("direction", ["ingress", "egress", "both"])
def test_live_capture_matches_tcpdump(hosts, tmp_path, direction):
    """pyprobe on vA exports to nfcapd on A's loopback and prints its records; both
    readings must equal a tcpdump of vA of the same direction taken at the same time,
    and each record names vA as its input (ingress) or output (egress) interface."""
    ground, flowdir = tmp_path / "ground.pcap", tmp_path / "flows"
    flowdir.mkdir()
    collector = hosts.start(hosts.a, "nfcapd", "-b", "127.0.0.1", "-p", "2055", "-w", str(flowdir), "-t", "3600",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dump = hosts.start(hosts.a, "tcpdump", "-i", hosts.if_a, *TCPDUMP_DIRECTION[direction], "-U", "-w", str(ground),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    probe = start_pyprobe(hosts, "-t", "inactive=2", "-n", "127.0.0.1:2055", direction=direction)
    time.sleep(1.5)                      # all listening before the first packet
    traffic(hosts, tmp_path)
    time.sleep(1.0)                      # the last replies are in
    code, out, err = stop(probe)
    dump.send_signal(signal.SIGTERM)
    dump.wait(timeout=30)
    time.sleep(0.5)
    collector.send_signal(signal.SIGTERM)
    collector.wait(timeout=30)
    assert code == 0, err
    assert "Traceback" not in err
    records = [json.loads(line) for line in out.splitlines()]
    expected = {k: v for k, v in reference.totals(str(ground)).totals.items()}
    assert per_key(records) == expected
    assert per_key(nfdump_flows(flowdir)) == expected
    assert any(r["proto"] == 1 for r in records) and any(r["proto"] == 6 for r in records)
    assert sum(r["octets"] for r in records) > (10_000 if direction == "egress" else 300_000)   # B sent the blob
    index = int(hosts.run(hosts.a, "cat", f"/sys/class/net/{hosts.if_a}/ifindex").stdout)
    sides = {(r["direction"], r["in_if"], r["out_if"]) for r in records}
    assert sides == {"ingress": {(0, index, 0)}, "egress": {(1, 0, index)},
                     "both": {(0, index, 0), (1, 0, index)}}[direction]
    assert " 0 dropped, 0 dropped by the interface" in err


def test_idle_flow_expires_on_a_quiet_link(hosts):
    """One UDP burst, then silence: the record must come out within inactive + 1 s of the
    last packet, though no later packet arrives to move the clock."""
    inactive = 2
    probe = start_pyprobe(hosts, "-t", f"inactive={inactive}", "udp")
    time.sleep(1.0)
    send = (f"import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for _ in range(3): s.sendto(b'x' * 100, ('{ADDR_B}', 7777)); time.sleep(0.05)\n"
            f"print(time.time())")
    last_sent = float(hosts.run(hosts.a, sys.executable, "-c", send, text=True).stdout)
    line = probe.stdout.readline()       # blocks until pyprobe writes the record
    arrived = time.time()
    code, _, err = stop(probe)
    record = json.loads(line)
    assert record["end_reason"] == "idle" and record["packets"] == 3 and record["dport"] == 7777
    assert arrived - last_sent <= inactive + 1.0, f"record came {arrived - last_sent:.2f} s after the last packet"
    assert code == 0, err


def test_bad_interface_is_one_line():
    result = subprocess.run([PYPROBE, "-i", "no-such-if0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["pyprobe: no such interface: no-such-if0"]


def test_sigterm_mid_traffic_loses_nothing(hosts, tmp_path):
    """Stopped while packets still flow, pyprobe expires every flow: its records hold
    every packet it metered, and no packet tcpdump did not see."""
    ground = tmp_path / "ground.pcap"
    dump = hosts.start(hosts.a, "tcpdump", "-i", hosts.if_a, "-U", "-w", str(ground),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = start_pyprobe(hosts)
    time.sleep(1.5)
    pinger = hosts.start(hosts.a, "ping", "-i", "0.01", "-c", "400", ADDR_B,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)                      # mid-stream
    code, out, err = stop(probe)
    pinger.wait(timeout=30)
    dump.send_signal(signal.SIGTERM)
    dump.wait(timeout=30)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    metered = int(next(line for line in err.splitlines() if "packets metered" in line).split()[2])
    assert metered > 100
    assert sum(r["packets"] for r in records) == metered
    truth = reference.totals(str(ground)).totals
    for key, (packets, octets) in per_key(records).items():
        assert key in truth and packets <= truth[key][0] and octets <= truth[key][1], key


def udp_burst(hosts, count, port, size=100):
    """count datagrams A -> B from a fixed source port, so bursts belong to one flow."""
    send = (f"import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{ADDR_A}', 5555))\n"
            f"for _ in range({count}): s.sendto(b'x' * {size}, ('{ADDR_B}', {port})); time.sleep(0.01)")
    assert hosts.run(hosts.a, sys.executable, "-c", send).returncode == 0


def test_drops_privileges_and_keeps_capturing(hosts):
    probe = start_pyprobe(hosts, "--user", "nobody", "udp")
    time.sleep(1.0)
    status = Path(f"/proc/{probe.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split()[0] != "0" and fields["CapEff"].strip() == "0" * 16, status
    udp_burst(hosts, 5, 4000)
    time.sleep(0.5)
    code, out, err = stop(probe)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["dport"], r["packets"]) for r in records] == [(4000, 5)]


def test_sighup_rereads_timeouts_and_keeps_the_cache(hosts, tmp_path):
    config = tmp_path / "probe.toml"
    config.write_text("[timeouts]\ninactive = 60\n")
    probe = start_pyprobe(hosts, "-f", str(config), "udp")
    time.sleep(1.0)
    udp_burst(hosts, 3, 4001)
    config.write_text("[timeouts]\ninactive = 3\n")
    probe.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    udp_burst(hosts, 2, 4001)            # the same flow, after the reload
    line = probe.stdout.readline()       # idle after 3 s now, not 60
    code, _, err = stop(probe)
    assert code == 0, err
    record = json.loads(line)
    assert (record["dport"], record["packets"], record["end_reason"]) == (4001, 5, "idle")
    assert "configuration reloaded" in err


SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 2055))
print('ready', flush=True)
s.settimeout(3)
with open(sys.argv[1], 'w') as out:
    try:
        while True:
            out.write(s.recv(65535).hex() + '\\n')
    except socket.timeout:
        pass
"""


def test_two_workers_conserve_and_never_split_a_flow(hosts, tmp_path):
    """--workers 2 in one fanout group: every packet counted once, and each flow's
    records all come from one worker (one v9 source id)."""
    import wire

    ground, received = tmp_path / "ground.pcap", tmp_path / "datagrams.hex"
    sink = hosts.start(hosts.a, sys.executable, "-c", SINK, str(received), stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    dump = hosts.start(hosts.a, "tcpdump", "-i", hosts.if_a, "-U", "-w", str(ground), "udp",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = hosts.start(hosts.a, PYPROBE, "-i", hosts.if_a, "--direction", "both", "--workers", "2",
                        "-n", "127.0.0.1:2055", "--flush-interval", "0",     # (records before SINK's 3 s of quiet)
                        "-t", "inactive=1", "udp", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    flows = (f"import socket, time\nfor port in range(40):\n"
             f"    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             f"    for _ in range(3): s.sendto(b'y' * 50, ('{ADDR_B}', 6000 + port))\n"
             f"    time.sleep(0.01)")
    assert hosts.run(hosts.a, sys.executable, "-c", flows).returncode == 0
    time.sleep(2.5)                      # idle expiry (1 s) has exported every flow
    code, _, err = stop(probe)
    dump.send_signal(signal.SIGTERM)
    dump.wait(timeout=30)
    sink.wait(timeout=30)
    assert code == 0, err
    assert err.count("pyprobe statistics (worker") == 2
    parser = wire.Parser()
    by_key, sources = {}, {}
    for line in received.read_text().split():
        message = parser.parse(bytes.fromhex(line))
        for r in message.records:
            key = (4, r[wire.IPV4_SRC_ADDR], r[wire.IPV4_DST_ADDR], r[wire.PROTOCOL], r[wire.L4_SRC_PORT],
                   r[wire.L4_DST_PORT])
            by_key.setdefault(key, [0, 0])
            by_key[key][0] += r[wire.IN_PKTS]
            by_key[key][1] += r[wire.IN_BYTES]
            sources.setdefault(key, set()).add(message.header["source_id"])
    assert by_key == reference.totals(str(ground)).totals
    assert all(len(ids) == 1 for ids in sources.values())
    assert set().union(*sources.values()) == {1, 2}       # both workers metered some flows


def test_sigusr1_resends_templates(hosts):
    """Templates on request: with periodic refresh off, exactly one template set at start
    and one more after SIGUSR1."""
    import wire

    received = Path(hosts.run(hosts.a, "mktemp").stdout.decode().strip())
    sink = hosts.start(hosts.a, sys.executable, "-c", SINK, str(received), stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    probe = hosts.start(hosts.a, PYPROBE, "-i", hosts.if_a, "--direction", "both", "-n", "127.0.0.1:2055", "-v", "9",
                        "--template-refresh", "0", "--template-interval", "0", "-t", "inactive=1", "udp",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    udp_burst(hosts, 3, 4002)            # the first export carries the start-up templates
    time.sleep(2.0)
    probe.send_signal(signal.SIGUSR1)
    udp_burst(hosts, 3, 4003)
    time.sleep(2.0)
    code, _, err = stop(probe)
    sink.wait(timeout=30)
    assert code == 0, err
    parser = wire.Parser()
    messages = [parser.parse(bytes.fromhex(line)) for line in received.read_text().split()]
    with_templates = [m for m in messages if m.count_template_records]
    assert len(with_templates) == 2, [m.header for m in messages]
    assert sum(m.count_data_records for m in messages) == 2
    received.unlink()
