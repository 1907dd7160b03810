"""Routes for flows (--routes, pyprobe/routes.py): the route file formats, the compiled
longest-prefix match against one written here, and --routes kernel in a network
namespace with routes the test adds."""

import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

from pyprobe._meter import RouteTable
from pyprobe.errors import SettingsError
from pyprobe.routes import parse

PYPROBE = os.path.join(os.path.dirname(sys.executable), "pyprobe")
ANDROID = os.path.join(os.path.dirname(__file__), "..", "pcaps", "android.pcap")


def longest_match(routes, address):
    """The (prefix, route) whose prefix holds the address and is longest, or None."""
    address = ipaddress.ip_address(address)
    held = [(net, route) for net, route in routes.items() if net.version == address.version and address in net]
    return max(held, key=lambda item: item[0].prefixlen, default=None)


@pytest.mark.parametrize("version", [4, 6])
def test_compiled_longest_prefix_match_agrees_with_a_plain_one(version):
    rng = random.Random(version)
    bits = 32 if version == 4 else 128
    table, routes = RouteTable(), {}
    for i in range(400):
        length = rng.choice([0, 1, 7, 8, 12, 16, 23, 24, 25, 31, bits] if version == 4 else
                            [0, 3, 16, 32, 48, 64, 127, bits])
        network, address = (ipaddress.IPv4Network, ipaddress.IPv4Address) if version == 4 else \
            (ipaddress.IPv6Network, ipaddress.IPv6Address)
        net = network((rng.getrandbits(bits) & ~((1 << (bits - length)) - 1), length))
        hop = address(rng.getrandbits(bits))
        routes[net] = (hop.packed, i + 1, rng.getrandbits(32))
        table.add(version, net.network_address.packed, length, hop.packed, i + 1, routes[net][2])
    probes = [address(rng.getrandbits(bits)) for _ in range(2000)]
    probes += [net.network_address for net in routes]                       # each route's own first address
    for address in probes:
        want = longest_match(routes, address)
        got = table.lookup(version, address.packed)
        assert got == (None if want is None else (*want[1], want[0].prefixlen)), address


IP_ROUTE = """\
default via 192.0.2.1 dev lo proto dhcp src 192.0.2.9 metric 100
10.1.0.0/16 dev lo proto kernel scope link src 10.1.0.1
10.9.9.9 via 10.1.0.254 dev lo
blackhole 10.66.0.0/16
unreachable 10.67.0.0/16 metric 1024
local 10.1.0.1 dev lo table local
2001:db8::/32 via fe80::1 dev lo metric 1024 pref medium
10.70.0.0/16 via inet6 fe80::2 dev lo
"""


def test_ip_route_output_is_read():
    table = parse(IP_ROUTE, "test")
    lo = 1
    v4 = lambda a: table.lookup(4, ipaddress.ip_address(a).packed)         # noqa: E731
    assert v4("8.8.8.8") == (ipaddress.ip_address("192.0.2.1").packed, lo, 0, 0)
    assert v4("10.1.2.3") == (bytes(4), lo, 0, 16)
    assert v4("10.9.9.9") == (ipaddress.ip_address("10.1.0.254").packed, lo, 0, 32)
    assert v4("10.66.1.1") == (bytes(4), 0, 0, 16)                           # blackhole: no interface
    assert v4("10.67.1.1") == (bytes(4), 0, 0, 16)
    assert v4("10.70.1.1") == (bytes(4), lo, 0, 16)                          # (an IPv6 hop is not carried)
    assert table.lookup(6, ipaddress.ip_address("2001:db8::5").packed) == (
        ipaddress.ip_address("fe80::1").packed, lo, 0, 32)
    assert len(table) == 7                                                     # (local routes skipped)


def test_prefix_table_is_read():
    table = parse("# prefix hop if AS\n10.0.0.0/8 192.0.2.1 3 64500  # core\n2001:db8::/48 :: 4 0\n", "t")
    assert table.lookup(4, bytes([10, 1, 1, 1])) == (ipaddress.ip_address("192.0.2.1").packed, 3, 64500, 8)
    assert table.lookup(6, ipaddress.ip_address("2001:db8::1").packed) == (bytes(16), 4, 0, 48)


@pytest.mark.parametrize("line,message", [
    ("10.0.0.0/8 192.0.2.1 3", "expected: prefix, next hop, interface, origin AS"),
    ("10.0.0.0/33 192.0.2.1 3 1", "bad prefix"),
    ("10.0.0.0/8 2001:db8::1 3 1", "next hop 2001:db8::1 is not of the prefix's IP version"),
    ("10.0.0.0/8 192.0.2.1 no-such-if0 1", "no interface 'no-such-if0'"),
    ("10.0.0.0/8 192.0.2.1 3 -1", "bad AS number"),
    ("10.0.0.0/8 via nope dev lo", "bad next hop"),
])
def test_bad_route_lines_name_the_line(line, message):
    with pytest.raises(SettingsError, match="line 2: " + message):
        parse("# header\n" + line + "\n", "routes.txt")


def test_bad_route_file_exits_2_in_one_line(tmp_path):
    path = tmp_path / "routes.txt"
    path.write_text("10.0.0.0/8 192.0.2.1\n")
    res = subprocess.run([PYPROBE, "-r", ANDROID, "--routes", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"pyprobe: --routes: {path} line 1: expected: prefix, next hop, interface, origin AS"]


ROUTED = '[[record]]\nname = "routed"\nmatch = ["sourceIPv4Address", "destinationIPv4Address"]\n' \
         'collect = ["egressInterface", "ipNextHopIPv4Address", "destinationIPv4PrefixLength", "packetDeltaCount"]\n'


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="network namespaces need root and iproute2")
def test_routes_kernel_in_a_namespace(tmp_path):
    ns = f"pprt{os.getpid() % 100000}"
    sh = lambda *args: subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)  # noqa: E731
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        sh("ip", "-n", ns, "link", "set", "up0", "up")
        sh("ip", "-n", ns, "link", "set", "up1", "up")
        sh("ip", "-n", ns, "addr", "add", "10.50.0.1/24", "dev", "up0")
        sh("ip", "-n", ns, "route", "add", "192.168.2.0/24", "via", "10.50.0.254", "dev", "up0")
        ifindex = int(sh("ip", "-n", ns, "-o", "link", "show", "up0").stdout.split(":")[0])
        config = tmp_path / "r.toml"
        config.write_text(ROUTED)
        res = sh("ip", "netns", "exec", ns, PYPROBE, "-r", ANDROID, "--routes", "kernel", "-f", str(config),
                 "-T", "routed", "--json", "-q")
        records = [json.loads(line) for line in res.stdout.splitlines()]
        into = [r for r in records if r["dst"].startswith("192.168.2.")]
        assert into and all((r["out_if"], r["next_hop"], r["dst_length"]) == (ifindex, "10.50.0.254", 24)
                            for r in into)
        others = [r for r in records if not r["dst"].startswith(("192.168.2.", "10.50.0."))]
        assert others and all((r["out_if"], r["next_hop"]) == (0, "0.0.0.0") for r in others)   # (no default)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_as_keys_merge_the_flows_of_an_as_pair():
    """bgpSourceAsNumber/bgpDestinationAsNumber as keys: one record per (source AS, destination
    AS, protocol, IP version), its counts the sums of the packets whose addresses match those ASes here
    (a plain longest-prefix match), IPv4 and IPv6 alike; no route: AS 0."""
    sys.path.insert(0, os.path.dirname(__file__))
    import packets as P
    from pyprobe import records
    from pyprobe._meter import Meter
    from pyprobe.definitions import define
    routes = {ipaddress.ip_network("10.0.0.0/8"): 65001, ipaddress.ip_network("10.1.0.0/16"): 65002,
              ipaddress.ip_network("192.0.2.0/24"): 65003, ipaddress.ip_network("2001:db8::/32"): 65004,
              ipaddress.ip_network("2001:db8:1::/48"): 65001}
    table = RouteTable()
    for net, asn in routes.items():
        table.add(net.version, net.network_address.packed, net.prefixlen, bytes(net.max_prefixlen // 8), 1, asn)
    d = define("as", ["bgpSourceAsNumber", "bgpDestinationAsNumber", "protocolIdentifier", "ipVersion"],
               ["packetDeltaCount", "octetDeltaCount"])
    assert d.route_as == 3 and d.ipver == 0
    m = Meter(P.DLT_EN10MB, record=d)
    m.set_routes(table)
    rng = random.Random(5)
    hosts = ["10.2.3.4", "10.1.9.9", "10.1.0.1", "192.0.2.77", "198.51.100.1", "2001:db8::5", "2001:db8:1::9",
             "2001:db8:2::1", "2001:dead::1"]
    frames, want = [], {}
    for i in range(400):
        src, dst = rng.sample(hosts, 2)
        if (":" in src) != (":" in dst):
            continue
        version = 6 if ":" in src else 4
        proto = rng.choice([6, 17])
        frame = P.eth_ip_packet(version, src, dst, proto, rng.randrange(1, 60000), 80, payload=b"x" * rng.randrange(50))
        frames.append((1_700_000_000_000_000 + i, frame))
        origin = [max(((n, a) for n, a in routes.items() if n.version == version and ipaddress.ip_address(x) in n),
                      key=lambda item: item[0].prefixlen, default=(None, 0))[1] for x in (src, dst)]
        t = want.setdefault((origin[0], origin[1], proto, version), [0, 0])
        t[0] += 1
        t[1] += len(frame) - 14
    packed = m.process(*P.make_batch(frames)) + m.flush()
    rows = records.shown_values(packed, d.shown_fields())
    names = [f.json for f in d.shown_fields()]
    got = {}
    for row in rows:
        r = dict(zip(names, row))
        key = (r["src_as"], r["dst_as"], r["proto"], r["ipver"])
        assert key not in got                # one record per key: nothing expired early
        got[key] = [r["packets"], r["octets"]]
    assert got == want and len(got) > 4


def test_an_as_key_and_its_address_are_refused_together_and_need_routes(tmp_path):
    from pyprobe.definitions import define
    with pytest.raises(ValueError, match="cannot both be keys"):
        define("x", ["sourceIPv4Address", "bgpSourceAsNumber"])
    with pytest.raises(ValueError, match="both AS numbers, or neither"):
        define("b", ["bgpSourceAsNumber", "destinationTransportPort"], biflow=True)
    assert define("b", ["bgpSourceAsNumber", "bgpDestinationAsNumber"], biflow=True).route_as == 3
    from pyprobe._meter import Meter
    with pytest.raises(ValueError, match="needs routes"):
        Meter(1, record=define("a", ["bgpSourceAsNumber"])).set_routes(None)
    config = tmp_path / "as.toml"
    config.write_text('[[record]]\nname = "as"\nmatch = ["bgpDestinationAsNumber"]\ncollect = ["packetDeltaCount"]\n')
    res = subprocess.run([PYPROBE, "-r", ANDROID, "-q", "-f", str(config), "-T", "as"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--routes" in res.stderr, res.stderr
