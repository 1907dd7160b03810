"""The codes the compiled modules share with pyprobe/fields.py's tables, through ext/codes.pxd,
which the build writes from them: why a flow ended, why a packet was ignored, TCP flags,
ICMP's protocols. Each is checked by what the compiled meter and packer do with packets
and records built here, against the RFCs' numbers."""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))

import packets as P  # noqa: E402
import wire  # noqa: E402
from pyprobe import fields, records  # noqa: E402
from pyprobe._meter import Meter  # noqa: E402
from pyprobe.definitions import define  # noqa: E402
from pyprobe.export.ipfix import IpfixEncoder  # noqa: E402

SEC = 1_000_000
T0 = 1_700_000_000 * SEC
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = (1 << bit for bit in range(8))     # RFC 9293, RFC 3168: byte 13
IPFIX_END_REASON = 136
# RFC 5102 flowEndReason: idleTimeout 1, activeTimeout 2, endOfFlowDetected 3, forcedEnd 4,
# lackOfResources 5; forced (ended while the input went on) and immediate are pyprobe's own.
IPFIX_CODE = {"idle": 1, "active": 2, "tcp_end": 3, "eof": 4, "cache_full": 5, "forced": 4, "immediate": 2}


def udp(t, sport, ipver=4, dst="10.0.0.2"):
    return t, P.eth_ip_packet(ipver, "10.0.0.1" if ipver == 4 else "2001:db8::1",
                              dst if ipver == 4 else "2001:db8::2", 17, sport, 53)


def ethernet(payload, ethertype=P.ETH_IPV4):
    return P.ethernet(payload, ethertype)


def ipv4_tcp():
    return P.ip_packet(4, "10.0.0.1", "10.0.0.2", 6, 1000, 80, ACK)


# One frame for each reason the meter ignores a packet, under the name its statistics give.
IGNORED = {
    "non_ip": ethernet(bytes(28), 0x0806),                             # ARP
    "truncated_l2": ethernet(ipv4_tcp())[:10],
    "truncated_ip": ethernet(ipv4_tcp()[:12]),
    "bad_ip": ethernet(bytes([0x44]) + ipv4_tcp()[1:]),                # header length 4 words: below 5
    "truncated_l4": ethernet(ipv4_tcp()[:22]),                         # 2 bytes of TCP: no ports
    "mpls_payload": ethernet(struct.pack("!I", 100 << 12 | 1 << 8 | 64) + bytes(28), 0x8847),
    "on_vlan_subinterface": P.ethernet(ipv4_tcp(), P.ETH_IPV4, vlan=42),
    "unmatched": ethernet(P.ip_packet(6, "2001:db8::1", "2001:db8::2", 17, 1, 2), P.ETH_IPV6),
}


def test_each_ignore_reason_is_counted_under_its_own_name():
    """A packet of each reason, and one that left while the meter meters what comes in: each
    counts once, under its name; a reason added to the table without a packet here fails."""
    meter = Meter(P.DLT_EN10MB, record=define("v4", ["sourceIPv4Address"], ["packetDeltaCount"]))
    vlan_42 = bytearray(512)
    vlan_42[42 >> 3] |= 1 << (42 & 7)
    meter.process(*P.make_batch([(T0 + i, f) for i, f in enumerate(IGNORED.values())]),
                  vlans_elsewhere=bytes(vlan_42))
    meter.process(*P.make_batch([udp(T0 + 100, 1)]), direction="egress")
    assert meter.stats()["packets_ignored"] == {**{name: 1 for name in IGNORED}, "other_direction": 1}
    assert list(meter.stats()["packets_ignored"]) == list(fields.IGNORE_REASONS)


def ended(meter, frames, forced=None):
    """The end reasons (names, by the JSON of the records) of the flows these frames end, and
    with forced not None, of those a flush then ends; with the records themselves."""
    packed = meter.process(*P.make_batch(frames))
    if forced is not None:
        packed += meter.flush(forced=forced)
    return [json.loads(line)["end_reason"] for line in records.to_json_lines(packed).decode().splitlines()], packed


def test_every_end_reason_is_the_code_of_its_name_in_records_statistics_and_ipfix():
    """A flow ended each way: the record says why by the name the table gives its code, the
    statistics count it under that name, and IPFIX carries RFC 5102's code for it."""
    meters, got = [], {}
    tcp_fin = (T0, P.eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 6, 1000, 80, FIN | ACK))
    cases = {
        "idle": (Meter(P.DLT_EN10MB), [udp(T0, 1), udp(T0 + 20 * SEC, 2)], None),
        "active": (Meter(P.DLT_EN10MB, timeouts={"maxlife": 5}), [udp(T0 + i * SEC, 1) for i in range(7)], None),
        "tcp_end": (Meter(P.DLT_EN10MB), [tcp_fin], None),
        "eof": (Meter(P.DLT_EN10MB), [udp(T0, 1)], False),
        "forced": (Meter(P.DLT_EN10MB), [udp(T0, 1)], True),
        "cache_full": (Meter(P.DLT_EN10MB, max_flows=1), [udp(T0, 1), udp(T0 + 1, 2)], None),
        "immediate": (Meter(P.DLT_EN10MB, cache="immediate"), [udp(T0, 1)], None),
    }
    packed = b""
    for name, (meter, frames, forced) in cases.items():
        got[name], records_of_case = ended(meter, frames, forced)
        packed += records_of_case
        meters.append(meter)
    assert got == {name: [name] for name in cases}
    assert set(cases) == set(fields.END_REASONS.values())
    for meter, name in zip(meters, cases):
        assert {n: c for n, c in meter.stats()["records"].items() if c} == {name: 1}
    encoder = IpfixEncoder()
    msgs = wire.parse_all(encoder.encode(packed, T0 // 1000 + 60_000) + encoder.encode(b"", T0 // 1000 + 61_000))
    assert [r[IPFIX_END_REASON] for m in msgs for r in m.records] == [IPFIX_CODE[name] for name in cases]


def test_tcp_flags_are_the_header_bits_and_the_counts_of_syn_fin_rst():
    """A flow of each flag alone: its record's tcp_flags is the bit, and the SYN, FIN and RST
    packet counts (tcpSynTotalCount ...) count only their own flag's flow."""
    d = define("flags", ["sourceTransportPort"], ["tcpControlBits", "tcpSynTotalCount", "tcpFinTotalCount",
                                                  "tcpRstTotalCount"])
    bits = {"fin": FIN, "syn": SYN, "rst": RST, "psh": PSH, "ack": ACK, "urg": URG, "ece": ECE, "cwr": CWR}
    assert fields.TCP_FLAGS == bits
    meter = Meter(P.DLT_EN10MB, record=d, timeouts={"tcp.fin": 60, "tcp.rst": 60})
    frames = [(T0 + port, P.eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 6, port, 80, bit))
              for port, bit in enumerate(bits.values(), 1)]
    rows = [json.loads(line) for line in records.to_json_lines(meter.process(*P.make_batch(frames)) + meter.flush(),
                                                               d.shown_fields()).decode().splitlines()]
    got = {r["sport"]: (r["tcp_flags"], r["syn_packets"], r["fin_packets"], r["rst_packets"]) for r in rows}
    assert got == {port: (bit, bit == SYN, bit == FIN, bit == RST) for port, bit in enumerate(bits.values(), 1)}


def test_icmp_and_icmpv6_carry_type_and_code_in_the_destination_port():
    """ICMP (protocol 1) and ICMPv6 (58): type*256 + code in the destination port, and the
    ICMP templates' element for it in IPFIX; UDP keeps its ports."""
    echo_v4 = P.ipv4("10.0.0.1", "10.0.0.2", 1, P.icmp(8, 0))
    echo_v6 = P.ipv6("2001:db8::1", "2001:db8::2", 58, P.icmp(128, 0))
    frames = [(T0, ethernet(echo_v4)), (T0 + 1, ethernet(echo_v6, P.ETH_IPV6)), udp(T0 + 2, 1234)]
    meter = Meter(P.DLT_EN10MB)
    packed = meter.process(*P.make_batch(frames)) + meter.flush()
    assert sorted((r.proto, r.sport, r.dport) for r in records.unpack(packed)) == [(1, 0, 8 << 8), (17, 1234, 53),
                                                                                   (58, 0, 128 << 8)]
    assert fields.ICMP_PROTOCOLS == (1, 58)
    msgs = wire.parse_all(IpfixEncoder().encode(packed, T0 // 1000 + 60_000))
    icmp_type_code = {r[4]: r.get(32, r.get(139)) for m in msgs for r in m.records}      # icmpTypeCodeIPv4/IPv6
    assert icmp_type_code == {1: 8 << 8, 58: 128 << 8, 17: None}
