"""The per-interface counts an operator reads (the exit summary, ctl interfaces) against
what the interface's own counters say crossed it (/sys/class/net/IF/statistics).

Namespaces A and B of tests/test_live.py, IPv4 only, with static neighbours so that every
frame on the veth is an untagged IPv4 packet: per direction, the packets captured are the
interface's packets, and their IP octets are its bytes less 14 (the Ethernet header) each.
What libpcap says the kernel received for the captures is what they read: the kernel
takes only the direction each capture meters (libpcap would drop the other direction in
user space, after the kernel has counted it)."""

import json
import re
import subprocess
import time

import pytest

from test_live import ADDR_A, ADDR_B, PYPROBE, hosts, pytestmark, stop, traffic   # noqa: F401 (fixture)

ETHERNET_HEADER = 14
COUNTERS = {"ingress": ("rx_packets", "rx_bytes"), "egress": ("tx_packets", "tx_bytes")}


def interface_counters(hosts):
    """{direction: (packets, IP octets)} of vA by its own counters."""
    read = {name: int(hosts.run(hosts.a, "cat", f"/sys/class/net/{hosts.if_a}/statistics/{name}").stdout)
            for names in COUNTERS.values() for name in names}
    return {way: (read[packets], read[octets] - ETHERNET_HEADER * read[packets])
            for way, (packets, octets) in COUNTERS.items()}


def static_neighbours(hosts):
    """No ARP: each end knows the other's address."""
    mac = {ns: hosts.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.decode().strip()
           for ns, ifname in ((hosts.a, hosts.if_a), (hosts.b, hosts.if_b))}
    for ns, ifname, peer, peer_ns in ((hosts.a, hosts.if_a, ADDR_B, hosts.b), (hosts.b, hosts.if_b, ADDR_A, hosts.a)):
        assert hosts.run(ns, "ip", "neigh", "replace", peer, "lladdr", mac[peer_ns], "dev", ifname,
                         "nud", "permanent").returncode == 0


def summary_rows(err):
    """{(interface, direction): (packets, IP octets, dropped)} of the summary's table, and its heading."""
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("per interface:"))
    rows = {}
    for line in lines[start + 1:]:
        words = line.split()
        if len(words) < 7 or words[2] not in COUNTERS:
            break
        rows[words[0], words[2]] = tuple(map(int, words[3:6]))
    return rows, lines[start]


def libpcap_received(err):
    line = next(line for line in err.splitlines() if line.strip().startswith("libpcap"))
    return int(re.search(r"(\d+) received", line).group(1))


# No filter, and one libpcap puts on the socket (a VLAN test: see bpf.names_vlan), which
# every packet here passes.
@pytest.mark.parametrize("bpf", [(), ("ip or vlan",)], ids=["no-filter", "libpcaps-filter"])
def test_interface_counts_are_what_crossed_it(hosts, tmp_path, bpf):
    static_neighbours(hosts)
    control = str(tmp_path / "ctl")
    before = interface_counters(hosts)
    probe = hosts.start(hosts.a, PYPROBE, "-i", "any", "--direction", "both", "--json", "-c", control, *bpf,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)                  # the captures open
        traffic(hosts, tmp_path)
        time.sleep(0.5)                  # (the kernel hands over what it holds within 100 ms)
        crossed = {way: tuple(after - earlier for after, earlier in zip(now, before[way]))
                   for way, now in interface_counters(hosts).items()}
        asked = hosts.run(hosts.a, PYPROBE, "ctl", "-c", control, "interfaces", "--json")
        assert asked.returncode == 0, asked.stderr
    finally:
        code, out, err = stop(probe)
    assert code == 0, err
    assert crossed["ingress"][1] > 300_000          # the download came in
    rows = {row["direction"]: row for row in json.loads(asked.stdout) if row["name"] == hosts.if_a}
    for way, (packets, ip_octets) in crossed.items():
        row = rows[way]
        assert (row["packets"], row["ip_octets"]) == (packets, ip_octets), way
        assert row["received"] == packets and row["dropped"] == 0, way
    table, heading = summary_rows(err)
    assert "IP octets" in heading
    assert {way: table[hosts.if_a, way][:2] for way in COUNTERS} == crossed
    assert table["lo", "ingress"][:2] == table["lo", "egress"][:2] == (0, 0)
    packets_read = int(re.search(r"packets read\s+(\d+)", err).group(1))
    assert libpcap_received(err) == packets_read == sum(packets for packets, _ in crossed.values())
