"""A router on the project's own test hosts: host namespaces H1 and H2, each on its
own veth to a router namespace R that forwards between them (IPv4 and IPv6), real
traffic through it (ping, HTTP, UDP). pyprobe runs on the router with `-i any` and
exports to nfcapd (and, where asked, tshark) on the router's loopback.

Ground truth is tcpdump on the router's interfaces, one capture per interface and
direction, taken at the same time: per key and interface, packets and octets must
equal pyprobe's, as nfdump reads them back."""

import json
import re
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
NET4 = ("10.241.1", "10.241.2", "10.241.3")       # H1-R, R-H2, H1-R over VLAN 100 on the first leg
NET6 = ("fd00:241:1", "fd00:241:2", "fd00:241:3")
VLAN = 100
COLLECTOR_PORT, TSHARK_PORT = 2055, 4739
# Multicast listener reports, which a link coming up repeats for a while, could race
# the captures' start: both pyprobe and tcpdump leave them out.
QUIET = "not ip6 multicast"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tcpdump") or not shutil.which("nfcapd"),
    reason="the router test builds network namespaces: it needs root, iproute2, tcpdump and nfcapd")


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


class Router:
    """H1 (h1) -- (r1) R (r2) -- (h2) H2, forwarding IPv4 and IPv6; with vlan=True also
    r1.100 on R and h1.100 on H1, a third subnet over VLAN 100 of the first leg; with
    bridge=True, r1 is the one port of a bridge br0 that has R's address. Neighbours
    are static and router advertisements off, so no chatter races the captures."""

    def __init__(self, vlan=False, bridge=False):
        tag = f"{os.getpid() % 100000}"
        self.h1, self.r, self.h2 = f"ppH1{tag}", f"ppR{tag}", f"ppH2{tag}"
        self.namespaces = (self.h1, self.r, self.h2)
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
            for knob in ("net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
                         "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                         "net.ipv6.conf.default.router_solicitations=0"):
                self.run(ns, "sysctl", "-qw", knob)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.run(self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run(self.r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.legs = [("h1", self.h1, "r1", 0), ("h2", self.h2, "r2", 1)]
        for host_if, host, router_if, net in self.legs:
            sh("ip", "link", "add", host_if, "netns", host, "type", "veth", "peer", "name", router_if,
               "netns", self.r)
        if bridge:                       # the first leg's router address is on a bridge, r1 its port
            sh("ip", "-n", self.r, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.r, "link", "set", "r1", "master", "br0")
            sh("ip", "-n", self.r, "link", "set", "r1", "up")
            self.legs[0] = ("h1", self.h1, "br0", 0)
        for host_if, host, router_if, net in self.legs:
            self._address(host, host_if, router_if, net)
        if vlan:
            sh("ip", "-n", self.h1, "link", "add", "link", "h1", "name", f"h1.{VLAN}", "type", "vlan", "id", str(VLAN))
            sh("ip", "-n", self.r, "link", "add", "link", "r1", "name", f"r1.{VLAN}", "type", "vlan", "id", str(VLAN))
            self.legs.append((f"h1.{VLAN}", self.h1, f"r1.{VLAN}", 2))
            self._address(self.h1, f"h1.{VLAN}", f"r1.{VLAN}", 2)
        for host_if, host, router_if, net in self.legs:
            mac = self.mac(self.r, router_if)
            sh("ip", "-n", host, "neigh", "replace", f"{NET4[net]}.1", "lladdr", mac, "dev", host_if, "nud", "permanent")
            sh("ip", "-n", host, "-6", "neigh", "replace", f"{NET6[net]}::1", "lladdr", mac, "dev", host_if,
               "nud", "permanent")
            host_mac = self.mac(host, host_if)
            sh("ip", "-n", self.r, "neigh", "replace", f"{NET4[net]}.2", "lladdr", host_mac, "dev", router_if,
               "nud", "permanent")
            sh("ip", "-n", self.r, "-6", "neigh", "replace", f"{NET6[net]}::2", "lladdr", host_mac, "dev", router_if,
               "nud", "permanent")
        time.sleep(1.0)                  # most of what a link coming up sends is over

    def _address(self, host, host_if, router_if, net):
        for ns, ifname, last in ((host, host_if, 2), (self.r, router_if, 1)):
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "addr", "add", f"{NET4[net]}.{last}/24", "dev", ifname)
            sh("ip", "-n", ns, "-6", "addr", "add", f"{NET6[net]}::{last}/64", "dev", ifname, "nodad")
        sh("ip", "-n", host, "route", "add", "10.241.0.0/16", "via", f"{NET4[net]}.1")
        sh("ip", "-n", host, "-6", "route", "add", "fd00:241::/32", "via", f"{NET6[net]}::1")

    def mac(self, ns, ifname):
        return self.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()

    def ifindex(self, ifname):
        return int(self.run(self.r, "cat", f"/sys/class/net/{ifname}/ifindex").stdout)

    def run(self, ns, *args, **kwargs):
        return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=60,
                              **kwargs)

    def start(self, ns, *args, **kwargs):
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], **kwargs)

    def close(self):
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def router():
    r = Router()
    try:
        yield r
    finally:
        r.close()


def vlans_available():
    """Whether this kernel makes 802.1Q sub-interfaces (8021q built in or loadable)."""
    ns = f"ppV{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", ns)
        return sh("ip", "-n", ns, "link", "add", "link", "va", "name", "va.5", "type", "vlan", "id", "5",
                  check=False).returncode == 0
    finally:
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def vlan_router():
    if not vlans_available():
        pytest.skip("this kernel makes no VLAN sub-interfaces (no 8021q); tests/test_meter_vlan.py "
                    "covers the meter's part")
    r = Router(vlan=True)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def bridge_router():
    r = Router(bridge=True)
    try:
        yield r
    finally:
        r.close()


FETCH = """
import http.client, socket, time
class Bound(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), 5, ({local!r}, 0))
for _ in range(50):
    try:
        c = Bound({server!r}, 8080); c.request("GET", "/blob"); data = c.getresponse().read(); break
    except OSError:
        time.sleep(0.1)
assert len(data) == 200000
"""
UDP = """
import socket
s = socket.socket(socket.{family}, socket.SOCK_DGRAM)
s.bind(({local!r}, 0))
for i in range(100):
    s.sendto(bytes(i % 200 + 1), ({peer!r}, 5353))
"""


def traffic(router, tmp_path, nets):
    """Through the router, from each of these subnets of H1 to H2, over IPv4 and IPv6:
    ping both ways, an HTTP download from H2, UDP both ways."""
    (tmp_path / "www").mkdir(exist_ok=True)
    (tmp_path / "www" / "blob").write_bytes(os.urandom(200_000))
    servers = [router.start(router.h2, sys.executable, "-m", "http.server", "8080", "--bind", address,
                            "--directory", str(tmp_path / "www"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for address in (f"{NET4[1]}.2", f"{NET6[1]}::2")]
    try:
        for net in nets:
            for family, h1, h2 in (("AF_INET", f"{NET4[net]}.2", f"{NET4[1]}.2"),
                                   ("AF_INET6", f"{NET6[net]}::2", f"{NET6[1]}::2")):
                assert router.run(router.h1, "ping", "-c", "3", "-i", "0.2", "-I", h1, h2).returncode == 0
                assert router.run(router.h2, "ping", "-c", "2", "-i", "0.2", "-s", "900", h1).returncode == 0
                fetched = router.run(router.h1, sys.executable, "-c", FETCH.format(local=h1, server=h2))
                assert fetched.returncode == 0, fetched.stderr
                router.run(router.h1, sys.executable, "-c", UDP.format(family=family, local=h1, peer=h2))
                router.run(router.h2, sys.executable, "-c", UDP.format(family=family, local=h2, peer=h1))
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)


TCPDUMP_Q = {"ingress": "in", "egress": "out"}


class Captures:
    """tcpdump on the router, one per interface and direction (the ground truth)."""

    def __init__(self, router, tmp_path, interfaces, ways, bpf=()):
        self.router = router
        self.files = {}
        self.procs = []
        for ifname in interfaces:
            for way in ways:
                path = tmp_path / f"{ifname}-{way}.pcap"
                self.files[ifname, way] = path
                self.procs.append(router.start(router.r, "tcpdump", "-i", ifname, "-Q", TCPDUMP_Q[way],
                                               "-U", "-w", str(path), *bpf,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self):
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    def expected(self, way):
        """{(key, interface as the record names it): [packets, octets]} for one direction."""
        sums = {}
        for (ifname, w), path in self.files.items():
            if w != way:
                continue
            index = self.router.ifindex(ifname)
            for key, (packets, octets) in reference.totals(str(path)).totals.items():
                sums[key, index] = [packets, octets]
        return sums


def key_of(r):
    return (r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"])


def per_key_and_interface(records, way):
    sums = {}
    for r in records:
        if r["direction"] != (0 if way == "ingress" else 1):
            continue
        entry = sums.setdefault((key_of(r), r["in_if"] if way == "ingress" else r["out_if"]), [0, 0])
        entry[0] += r["packets"]
        entry[1] += r["octets"]
    return sums


def nfdump_records(flowdir):
    """nfdump's reading of what nfcapd stored, its interfaces named as the --json records name them."""
    return [dict(r, in_if=r["input"], out_if=r["output"]) for r in nfdump_flows(flowdir)]


def run_probe(router, tmp_path, direction, nets, extra=(), ways=None, interfaces=("any",)):
    """pyprobe -i any on R, exporting to nfcapd on R's loopback, while traffic crosses it;
    returns (its records, nfdump's reading of them, the tcpdump captures, stderr)."""
    flowdir = tmp_path / "flows"
    flowdir.mkdir()
    collector = router.start(router.r, "nfcapd", "-b", "127.0.0.1", "-p", str(COLLECTOR_PORT), "-w", str(flowdir),
                             "-t", "3600", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    legs = [router_if for _, _, router_if, _ in router.legs]
    captures = Captures(router, tmp_path, legs, ways or (("ingress", "egress") if direction == "both"
                                                               else (direction,)), bpf=(QUIET,))
    probe = router.start(router.r, PYPROBE, *[a for i in interfaces for a in ("-i", i)], "--direction", direction, "--json", "-t", "inactive=2",
                         "-v", "10", "-n", f"127.0.0.1:{COLLECTOR_PORT}", *extra, QUIET,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)                      # all listening before the first packet
    traffic(router, tmp_path, nets)
    time.sleep(1.0)                      # the last replies are in
    probe.send_signal(signal.SIGTERM)
    out, err = probe.communicate(timeout=30)
    captures.stop()
    time.sleep(0.5)
    collector.send_signal(signal.SIGTERM)
    collector.wait(timeout=30)
    assert probe.returncode == 0, err
    assert "Traceback" not in err
    return [json.loads(line) for line in out.splitlines()], nfdump_records(flowdir), captures, err


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_router_any_interface_matches_tcpdump_per_interface(router, tmp_path, direction):
    """Per key and interface, pyprobe's records and nfdump's reading of them equal the
    tcpdump captures of that direction on each router interface; a packet forwarded
    from r1 to r2 is one ingress packet on r1 (or one egress packet on r2), never two."""
    records, collected, captures, err = run_probe(router, tmp_path, direction, nets=(0,))
    expected = captures.expected(direction)
    assert per_key_and_interface(records, direction) == expected
    assert per_key_and_interface(collected, direction) == expected
    interfaces = {index for _, index in expected}
    assert interfaces == {router.ifindex("r1"), router.ifindex("r2")}
    assert {r["ipver"] for r in records} == {4, 6}
    assert {r["proto"] for r in records} >= {1, 58, 6, 17}
    other = "out_if" if direction == "ingress" else "in_if"
    assert all(r[other] == 0 for r in records)
    assert all(r["dport"] != COLLECTOR_PORT for r in records), "the probe metered its own export"


def test_router_both_directions_each_packet_once_per_direction(router, tmp_path):
    records, collected, captures, err = run_probe(router, tmp_path, "both", nets=(0,))
    for way in ("ingress", "egress"):
        expected = captures.expected(way)
        assert per_key_and_interface(records, way) == expected
        assert per_key_and_interface(collected, way) == expected


def untagged(path):
    """A copy of a capture without its 802.1Q-tagged frames, and how many there were."""
    import dpkt
    kept, tagged = path.with_suffix(".untagged.pcap"), 0
    with open(path, "rb") as f, open(kept, "wb") as out:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(out, linktype=reader.datalink())
        for ts, frame in reader:
            if frame[12:14] == b"\x81\x00":
                tagged += 1
            else:
                writer.writepkt(frame, ts)
    return kept, tagged


def test_router_vlan_subinterface_counts_each_packet_once(vlan_router, tmp_path):
    """Traffic over VLAN 100 crosses r1.100 and, tagged, its parent r1: with -i any each
    packet is metered once, on r1.100, its record carrying VLAN 100; the parent's tagged
    copies are counted as such, as many as tcpdump saw on r1."""
    router = vlan_router
    records, collected, captures, err = run_probe(router, tmp_path, "both", nets=(0, 2))
    tagged = 0
    for way in ("ingress", "egress"):
        captures.files["r1", way], n = untagged(captures.files["r1", way])
        tagged += n
    assert tagged > 100
    sub = router.ifindex(f"r1.{VLAN}")
    for way in ("ingress", "egress"):
        expected = captures.expected(way)
        assert any(index == sub for _, index in expected)
        assert per_key_and_interface(records, way) == expected
        assert per_key_and_interface(collected, way) == expected
    over_vlan = [r for r in records if sub in (r["in_if"], r["out_if"])]
    assert over_vlan and all(r["vlan"] == VLAN for r in over_vlan)
    assert all(r["vlan"] == 0 for r in records if sub not in (r["in_if"], r["out_if"]))
    assert f"on_vlan_subinterface {tagged}" in err


def test_router_bridge_port_is_metered_on_its_bridge(bridge_router, tmp_path):
    """R's first leg is br0 with r1 its port: what r1 receives goes up to br0, and -i any
    meters it there once (as tcpdump on br0 sees it), never on r1 as well."""
    router = bridge_router
    records, collected, captures, err = run_probe(router, tmp_path, "both", nets=(0,))
    for way in ("ingress", "egress"):
        expected = captures.expected(way)
        assert {index for _, index in expected} == {router.ifindex("br0"), router.ifindex("r2")}
        assert per_key_and_interface(records, way) == expected
        assert per_key_and_interface(collected, way) == expected
    assert re.search(r"r1 +\d+ not captured: a port of br0", err), err


SINK = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", {port}))
while True:
    s.recv(65535)
"""


def tshark_fields(path, port, *fields):
    """Per datagram, each field's values (a list, one per occurrence)."""
    out = subprocess.run(["tshark", "-r", str(path), "-d", f"udp.port=={port},cflow", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=|", *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [[value.split("|") if value else [] for value in line.split("\t")] for line in out.splitlines()]


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
@pytest.mark.parametrize("version", [9, 10])
def test_router_interface_names_and_flow_direction_reach_tshark(router, tmp_path, version):
    """The interface options records name every interface captured: tshark decodes them,
    and the names and aliases match ip link's; flowDirection decodes as each record's."""
    dump = tmp_path / "export.pcap"
    capture = router.start(router.r, "tcpdump", "-i", "lo", "-U", "-w", str(dump), "udp", "port", str(TSHARK_PORT),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sink = router.start(router.r, sys.executable, "-c", SINK.format(port=TSHARK_PORT))   # (no port unreachable)
    router.run(router.r, "ip", "link", "set", "r2", "alias", "uplink to H2")
    time.sleep(1.0)
    try:
        records, _, _, _ = run_probe(router, tmp_path, "both", nets=(0,),
                                     extra=("-n", f"127.0.0.1:{TSHARK_PORT}", "-v", str(version)))
        time.sleep(0.5)
    finally:
        capture.send_signal(signal.SIGTERM)
        capture.wait(timeout=30)
        sink.kill()
        sink.wait(timeout=10)
    links = {}
    for line in router.run(router.r, "ip", "-o", "link").stdout.splitlines():
        index, name = line.split(":")[:2]
        links[int(index)] = name.strip().split("@")[0]
    aliases = {index: router.run(router.r, "cat", f"/sys/class/net/{name}/ifalias").stdout.strip() or name
               for index, name in links.items()}
    scope = "cflow.scope_interface" if version == 9 else "cflow.inputint"
    named, directions = {}, []
    for indexes, names, descriptions, direction in tshark_fields(dump, TSHARK_PORT, scope, "cflow.if_name",
                                                                   "cflow.if_descr", "cflow.direction"):
        if names:
            assert len(indexes) == len(names) == len(descriptions)
            named.update({int(i): (n, d) for i, n, d in zip(indexes, names, descriptions)})
        directions += [int(d) for d in direction]
    assert named == {index: (name, aliases[index]) for index, name in links.items()}
    assert aliases[router.ifindex("r2")] == "uplink to H2"
    assert sorted(directions) == sorted(r["direction"] for r in records) and set(directions) == {0, 1}


def test_router_several_interfaces_each_with_its_index(router, tmp_path):
    """-i r1 -i 77:r2: both captured by one probe, r2's flows carrying the index given."""
    records, collected, captures, _ = run_probe(router, tmp_path, "ingress", nets=(0,), interfaces=("r1", "77:r2"))
    expected = {(key, 77 if index == router.ifindex("r2") else index): counts
                for (key, index), counts in captures.expected("ingress").items()}
    assert {index for _, index in expected} == {router.ifindex("r1"), 77}
    assert per_key_and_interface(records, "ingress") == expected
    assert per_key_and_interface(collected, "ingress") == expected


def ctl(router, path, command):
    done = router.run(router.r, PYPROBE, "ctl", "-c", path, command, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_router_interface_that_comes_later_is_captured_and_one_that_goes_is_let_go(router, tmp_path):
    """With -i any, a leg added while the probe runs is captured within a second (its
    flows name it) and ctl interfaces lists it; taken down, it is captured again when it
    is up; deleted, the probe goes on and keeps its counts (one summary row)."""
    control = str(tmp_path / "ctl")
    probe = router.start(router.r, PYPROBE, "-i", "any", "-c", control, "--json", "-t", "inactive=1",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    h3 = f"ppH3{os.getpid() % 100000}"
    sh("ip", "netns", "add", h3)
    router.namespaces += (h3,)
    try:
        time.sleep(1.5)
        assert "r3" not in {row["name"] for row in ctl(router, control, "interfaces")}
        sh("ip", "link", "add", "h3", "netns", h3, "type", "veth", "peer", "name", "r3", "netns", router.r)
        for ns, ifname, address in ((h3, "h3", "10.241.4.2/24"), (router.r, "r3", "10.241.4.1/24")):
            sh("ip", "-n", ns, "addr", "add", address, "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        time.sleep(1.0)
        assert router.run(router.r, "ping", "-c", "4", "-i", "0.2", "10.241.4.2").returncode == 0
        rows = {(row["name"], row.get("direction")): row for row in ctl(router, control, "interfaces")}
        assert rows["r3", "ingress"]["state"] == "capturing"
        assert rows["r3", "ingress"]["packets"] >= 4
        # down and up again: captured again once it is back
        sh("ip", "-n", router.r, "link", "set", "r3", "down")
        time.sleep(0.5)
        assert ("r3", "ingress") not in {(row["name"], row.get("direction")) for row in ctl(router, control, "interfaces")
                                         if row["state"] == "capturing"}
        sh("ip", "-n", router.r, "link", "set", "r3", "up")
        time.sleep(1.0)
        assert router.run(router.r, "ping", "-c", "3", "-i", "0.2", "10.241.4.2").returncode == 0
        r3 = router.ifindex("r3")
        sh("ip", "-n", router.r, "link", "del", "r3")
        time.sleep(1.0)
        rows = {(row["name"], row.get("direction")): row for row in ctl(router, control, "interfaces")}
        assert rows["r3", "ingress"]["state"] == "stopped" and rows["r3", "ingress"]["packets"] >= 4
    finally:
        probe.send_signal(signal.SIGTERM)
        out, err = probe.communicate(timeout=30)
    assert probe.returncode == 0, err
    replies = [json.loads(line) for line in out.splitlines()]
    replies = [r for r in replies if r["src"] == "10.241.4.2" and r["proto"] == 1]
    assert {r["in_if"] for r in replies} == {r3} and sum(r["packets"] for r in replies) == 7
    rows = re.findall(r"\n +r3 +\d+ ingress +(\d+) ", err)
    assert len(rows) == 1 and int(rows[0]) >= 7, err          # (and what H3's IPv6 said coming up)


def test_router_workers_share_every_interface(router, tmp_path):
    """--workers 2 with -i any: each interface fanned out to both workers, per flow; what
    nfcapd collects from the two still equals tcpdump's, key by key and interface."""
    _, collected, captures, err = run_probe(router, tmp_path, "ingress", nets=(0,), extra=("--workers", "2"))
    assert per_key_and_interface(collected, "ingress") == captures.expected("ingress")
    assert "(worker 0)" in err and "(worker 1)" in err


def test_router_interface_made_a_bridge_port_is_left_to_its_bridge(router, tmp_path):
    """With -i any running, r1 becomes the port of a new bridge: its capture ends and the
    bridge's begins, so from then on what r1 receives is metered once, on the bridge."""
    control = str(tmp_path / "ctl")
    probe = router.start(router.r, PYPROBE, "-i", "any", "-c", control, "--json",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        sh("ip", "-n", router.r, "link", "add", "br9", "type", "bridge")
        sh("ip", "-n", router.r, "link", "set", "r1", "master", "br9")
        sh("ip", "-n", router.r, "link", "set", "br9", "up")
        time.sleep(1.0)
        states = {(row["name"], row.get("direction")): row["state"] for row in ctl(router, control, "interfaces")}
        assert states["br9", "ingress"] == "capturing"
        assert states["r1", None] == "not captured: a port of br9"
        assert ("r1", "ingress") not in states or states["r1", "ingress"] == "stopped"
    finally:
        probe.send_signal(signal.SIGTERM)
        _, err = probe.communicate(timeout=30)
    assert probe.returncode == 0, err
