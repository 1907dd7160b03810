"""Interop: records of user definitions ([[record]], -T NAME) exported as v9 and IPFIX,
decoded by tshark, against totals computed independently from the capture.

Each definition keys on different fields: a prefix aggregate, DSCP per input interface,
MAC and VLAN, and a statistics record (TTL and IP length ranges, the sum of squares of
the lengths, TCP SYN packets). The truth comes from tests/reference.py (addresses,
protocol, octets, TTL, TCP flags) and, for the link layer and the TOS byte, from a
plain reading of the frame below; both grouped by the definition's keys. tshark must
decode every record with no warning, and its per-key sums must equal the truth.
"""

import ipaddress
import struct

import pytest

import reference  # noqa: E402
from collectors import CORPUS, pyprobe_record_to_tshark  # noqa: E402

CAPTURES = ["zeek/icmp_dot1q.pcap", "ndpi/1kxun.pcap", "ndpi/anyconnect-vpn.pcap"]
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)


def _link(linktype, frame):
    """(src MAC, dst MAC, outer VLAN, TOS byte) of an Ethernet frame, or zeros where the
    capture has none: read here, not by pyprobe's decoder."""
    if linktype != reference.ETHERNET:
        return "00:00:00:00:00:00", "00:00:00:00:00:00", 0, _tos(frame)
    dst, src = frame[0:6].hex(":"), frame[6:12].hex(":")
    etype, off, vlan = struct.unpack(">H", frame[12:14])[0], 14, 0
    while etype in VLAN_TPIDS:
        if not vlan:
            vlan = struct.unpack(">H", frame[off:off + 2])[0] & 0xfff
        etype, off = struct.unpack(">H", frame[off + 2:off + 4])[0], off + 4
    return src, dst, vlan, _tos(frame[off:])


def _tos(ip):
    if len(ip) < 2:
        return 0
    return ip[1] if ip[0] >> 4 == 4 else ((ip[0] & 0xf) << 4) | (ip[1] >> 4)


def packets(path):
    """Per metered packet: reference's decoded tuple with the link-layer fields beside it."""
    linktype, frames = reference.read(str(path))
    for ts, frame in frames:
        decoded = reference.decode(linktype, frame)
        if decoded is not None:
            yield decoded, _link(linktype, frame)


def prefix(text, bits):
    return str(ipaddress.ip_network(f"{text}/{bits}", strict=False).network_address)


# name -> (match, collect, key of a packet (None: not metered), key of a tshark flow)
DEFINITIONS = {
    "prefixes": (["sourceIPv4Address/24", "destinationIPv4Address/16", "protocolIdentifier"],
                 ["packetDeltaCount", "octetDeltaCount"],
                 lambda d, link: (prefix(d[1], 24), prefix(d[2], 16), d[3]) if d[0] == 4 else None,
                 lambda f: (f["src"], f["dst"], f["proto"])),
    "dscp_per_interface": (["ipDiffServCodePoint", "ingressInterface"], ["packetDeltaCount", "octetDeltaCount"],
                           lambda d, link: (link[3] >> 2, 0),
                           lambda f: (int(f["fields"]["cflow.ip_dscp"]), f["input"])),
    "mac_vlan": (["sourceMacAddress", "destinationMacAddress", "vlanId"], ["packetDeltaCount", "octetDeltaCount"],
                 lambda d, link: (link[0], link[1], link[2]),
                 lambda f: (f["fields"]["cflow.srcmac"], f["fields"]["cflow.dstmac"], f["vlan"])),
    "statistics": (["sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address", "destinationIPv6Address"],
                   ["packetDeltaCount", "octetDeltaCount", "minimumTTL", "maximumTTL", "minimumIpTotalLength",
                    "maximumIpTotalLength", "octetDeltaSumOfSquares", "tcpSynTotalCount"],
                   lambda d, link: (d[1], d[2]),
                   lambda f: (f["src"], f["dst"])),
}


def truth(path, name):
    """Per key: packets, octets, lowest/highest TTL, lowest/highest length, sum of squares, SYNs."""
    key_of = DEFINITIONS[name][2]
    out = {}
    for d, link in packets(path):
        key = key_of(d, link)
        if key is None:
            continue
        octets, ttl = d[6], d[8]
        syn = 1 if d[3] == 6 and d[7] & 0x02 else 0
        t = out.setdefault(key, [0, 0, 256, -1, 1 << 32, -1, 0, 0])
        t[0] += 1
        t[1] += octets
        t[2], t[3] = min(t[2], ttl), max(t[3], ttl)
        t[4], t[5] = min(t[4], octets), max(t[5], octets)
        t[6] += octets * octets
        t[7] += syn
    return out


def decoded(path, name, version, tmp_path):
    match, collect = DEFINITIONS[name][:2]
    config = f'[[record]]\nname = "{name}"\nmatch = {match!r}\ncollect = {collect!r}\n'.replace("'", '"')
    return pyprobe_record_to_tshark(path, version, tmp_path, config, name)[0]


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("name", list(DEFINITIONS))
@pytest.mark.parametrize("rel", CAPTURES)
def test_record_definition_totals_match_the_capture(rel, name, version, tmp_path):
    path = CORPUS / rel
    if not path.exists():
        pytest.skip("capture not in corpus: %s" % rel)
    want = truth(path, name)
    flows = decoded(path, name, version, tmp_path)
    key_of = DEFINITIONS[name][3]
    got = {}
    for f in flows:
        fields = f["fields"]
        t = got.setdefault(key_of(f), [0, 0, 256, -1, 1 << 32, -1, 0, 0])
        t[0] += f["packets"]
        t[1] += f["octets"]
        if name == "statistics":
            t[2], t[3] = min(t[2], f["min_ttl"]), max(t[3], f["max_ttl"])
            t[4] = min(t[4], int(fields["cflow.length_min"]))
            t[5] = max(t[5], int(fields["cflow.length_max"]))
            t[6] += int(fields["cflow.delta_octets_squared"])
            t[7] += int(fields["cflow.total_tcp_syn"])
    if name != "statistics":
        want = {k: v[:2] for k, v in want.items()}
        got = {k: v[:2] for k, v in got.items()}
    assert got == want
    assert len(flows) >= len(want)            # (a key may have more than one flow: timeouts)


def tcp_windows(path):
    """Per IPv4 TCP 5-tuple: the smallest and largest window field, read by dpkt (not pyprobe's decoder)."""
    import dpkt
    linktype, frames = reference.read(str(path))
    assert linktype == reference.ETHERNET
    out = {}
    for _, frame in frames:
        ip = dpkt.ethernet.Ethernet(frame).data             # (dpkt steps over VLAN tags)
        if not isinstance(ip, dpkt.ip.IP) or ip.offset or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        key = (ipaddress.ip_address(ip.src).compressed, ipaddress.ip_address(ip.dst).compressed, tcp.sport, tcp.dport)
        low, high = out.get(key, (1 << 16, -1))
        out[key] = (min(low, tcp.win), max(high, tcp.win))
    return out


WINDOWS = ('[[record]]\nname = "windows"\n'
           'match = ["sourceIPv4Address", "destinationIPv4Address", "sourceTransportPort", "destinationTransportPort",'
           ' "protocolIdentifier"]\n'
           'collect = ["packetDeltaCount", "transportTcpWindowSizeMinimum", "transportTcpWindowSizeMaximum"]\n')


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("rel", ["ndpi/anyconnect-vpn.pcap", "ndpi/1kxun.pcap"])
def test_tcp_window_range_matches_the_capture(rel, version, tmp_path):
    """Cisco's window elements (IANA has none): tshark names them in v9; in IPFIX it shows
    them as ciscoSystems (PEN 9) entries, in template order (minimum, maximum)."""
    path = CORPUS / rel
    if not path.exists():
        pytest.skip("capture not in corpus: %s" % rel)
    flows, _ = pyprobe_record_to_tshark(path, version, tmp_path, WINDOWS, "windows")
    got = {}
    for f in flows:
        if f["proto"] != 6:
            continue
        fields = f["fields"]
        if version == 9:
            low, high = int(fields["cflow.transport_tcp_window_size_min"]), int(fields["cflow.transport_tcp_window_size_max"])
        else:
            low, high = (int(v.replace(":", ""), 16) for v in fields["cflow.enterprise_private_entry"])
        key = (f["src"], f["dst"], f["sport"], f["dport"])
        before = got.get(key, (1 << 16, -1))
        got[key] = (min(before[0], low), max(before[1], high))
    want = tcp_windows(path)
    assert want and got == want
