"""Interop: --routes fills each flow's output interface, next hop, origin ASes and prefix
lengths; tshark decodes them from v5's fixed record and from v9/IPFIX records of a
definition that collects them, and they must equal a longest-prefix match computed
here (ipaddress) for the flow's addresses."""

import ipaddress
import random

import pytest

import reference  # noqa: E402
from collectors import CORPUS, pyprobe_record_to_tshark, pyprobe_to_tshark  # noqa: E402

CAPTURE = CORPUS / "ndpi/1kxun.pcap"
RECORD = """[[record]]
name = "routed"
match = ["sourceIPv4Address", "destinationIPv4Address", "protocolIdentifier"]
collect = ["packetDeltaCount", "egressInterface", "ipNextHopIPv4Address", "bgpSourceAsNumber",
           "bgpDestinationAsNumber", "sourceIPv4PrefixLength", "destinationIPv4PrefixLength"]
"""


def make_routes(path):
    """Nested prefixes around the capture's own IPv4 addresses, and a default route:
    {network: (next hop, ifIndex, AS)}, written as a prefix table."""
    rng = random.Random(7)
    addresses = sorted({k[2] for k in reference.totals(str(path)).totals if k[0] == 4}
                       | {k[1] for k in reference.totals(str(path)).totals if k[0] == 4})
    routes = {ipaddress.ip_network("0.0.0.0/0"): ("192.0.2.1", 1, 64500)}
    for address in rng.sample(addresses, min(40, len(addresses))):
        for length in rng.sample([8, 12, 16, 20, 24, 28, 32], 2):
            net = ipaddress.ip_network(f"{address}/{length}", strict=False)
            routes[net] = (f"198.51.100.{rng.randrange(1, 255)}", rng.randrange(2, 60), rng.randrange(1, 65535))
    return routes


def write_routes(tmp_path):
    """make_routes() of the capture, and the prefix table file they are written to."""
    routes = make_routes(CAPTURE)
    table = tmp_path / "routes.txt"
    table.write_text("".join(f"{n} {hop} {ifindex} {asn}\n" for n, (hop, ifindex, asn) in routes.items()))
    return routes, table


def match(routes, address):
    address = ipaddress.ip_address(address)
    best = max((n for n in routes if address in n), key=lambda n: n.prefixlen)
    return best, routes[best]


@pytest.mark.parametrize("version", [5, 9, 10])
def test_routes_reach_the_collector(version, tmp_path):
    if not CAPTURE.exists():
        pytest.skip("capture not in corpus")
    routes, table = write_routes(tmp_path)
    if version == 5:
        flows, _ = pyprobe_to_tshark(CAPTURE, version, tmp_path, "--routes", str(table), "-T", "full")
    else:
        flows, _ = pyprobe_record_to_tshark(CAPTURE, version, tmp_path, RECORD, "routed", "--routes", str(table))
    assert flows
    for f in flows:
        fields = f["fields"]
        dst_net, (hop, ifindex, dst_as) = match(routes, f["dst"])
        src_net, (_, _, src_as) = match(routes, f["src"])
        got = (int(fields["cflow.outputint"]), fields["cflow.nexthop"], int(fields["cflow.srcas"]),
               int(fields["cflow.dstas"]), int(fields["cflow.srcmask"]), int(fields["cflow.dstmask"]))
        if version == 5:                 # (v5 carries 16-bit AS numbers and interfaces)
            src_as, dst_as, ifindex = src_as & 0xffff, dst_as & 0xffff, ifindex & 0xffff
        assert got == (ifindex, hop, src_as, dst_as, src_net.prefixlen, dst_net.prefixlen), f


AS_RECORD = """[[record]]
name = "as_matrix"
match = ["bgpSourceAsNumber", "bgpDestinationAsNumber"]
collect = ["packetDeltaCount", "octetDeltaCount"]
"""


def origin_as(routes, address):
    address = ipaddress.ip_address(address)
    held = [n for n in routes if n.version == address.version and address in n]
    return routes[max(held, key=lambda n: n.prefixlen)][2] if held else 0


@pytest.mark.parametrize("version", [9, 10])
def test_as_matrix_totals_match_the_capture(version, tmp_path):
    """An AS aggregate (the AS numbers as keys): per (source AS, destination AS), packets and
    octets equal the capture's, each packet's addresses matched here."""
    if not CAPTURE.exists():
        pytest.skip("capture not in corpus")
    routes, table = write_routes(tmp_path)
    want = {}
    for _, d in reference.walk(str(CAPTURE)):
        if d is not None:
            t = want.setdefault((origin_as(routes, d[1]), origin_as(routes, d[2])), [0, 0])
            t[0] += 1
            t[1] += d[6]
    flows, _ = pyprobe_record_to_tshark(CAPTURE, version, tmp_path, AS_RECORD, "as_matrix", "--routes", str(table))
    got = {}
    for f in flows:
        t = got.setdefault((int(f["fields"]["cflow.srcas"]), int(f["fields"]["cflow.dstas"])), [0, 0])
        t[0] += f["packets"]
        t[1] += f["octets"]
    assert len(want) > 10 and got == want
