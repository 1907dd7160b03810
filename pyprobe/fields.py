"""The one table of flow record fields.

Every field a flow record carries is one row of FIELDS: its name (the packed
record member), C type, JSON key and how it shows there, its column in the
table output, and the information elements it goes out as (IANA's IPFIX
registry; RFC 3954 numbers v9's the same unless a row says otherwise).
Everything else is made from it:

- the packed record layout: ext/record.pxd is generated from this file at build
  time (setup.py), and pyprobe/records.py reads the same layout back;
- the v9 and IPFIX data templates and the compiled packers (pyprobe/export/):
  a template is a list of field names, turned into a small program that
  ext/_encode.pyx runs for each record;
- the JSON keys (output, --help, the tests' expectations).

The codes its values and the meter's statistics use (why a flow ended, why a
packet was ignored, TCP flags, ICMP's protocols) are tables here too, which
the build writes into ext/codes.pxd for the compiled modules.

Each row also says how the meter measures the field (Measure): from the flow
entry the meter keeps by hand (FLOW: the counters, times and classic key members
of the hot 128-byte Flow and its classic record), from the flow's key (KEY), over
its packets (FIRST, LAST, MIN, MAX, SUM, OR, COUNT: an expression over the decoded
Packet), or by an extension of the meter (EXTENSION: biflow, routes). The per-flow
storage of the per-packet kinds (FlowMeasures), their start, update and copy into
the record, and the KEY members' copy are generated from the rows into
ext/meter/measures.pxi (setup.py, at build time, with ext/record.pxd).

Adding a field: if the packet does not hold it yet, decode it into the Packet
(or the FlowKey, for a key field) in ext/decode.pxd; then add one row here with
its measure. Record definitions (pyprobe/definitions.py) then offer it by its
element's name, and tests/test_fields.py meters packets that make it nonzero
(add an entry to its table of what each field is over packets); a predefined
record's templates name their fields in pyprobe/export/. This module imports
nothing of pyprobe's, so the build can read it before anything is compiled.
"""

from collections import namedtuple

# How a value is written on the wire (the compiled packer's opcodes, ext/_encode.pyx).
UNSIGNED = 1        # an unsigned integer, big-endian, in the element's length (low bytes kept)
BYTES = 2           # bytes copied as they are (addresses, MACs)
ZERO = 3            # zeros: a field the format has and pyprobe does not fill
MILLISECONDS = 4    # microseconds since the epoch -> milliseconds since the epoch
UPTIME_MS = 5       # microseconds since the epoch -> milliseconds since the exporter's boot
END_REASON = 6      # the meter's end reason -> IPFIX flowEndReason
VARLEN = 7          # a string or octet array (a text:N or octets:N member): in an element of length
                    # VARIABLE, RFC 7011 section 7's variable-length form (IPFIX); in one of a fixed
                    # length, its bytes zero-padded to it (v9, which has no variable length, as nProbe)
VARIABLE = 65535    # an IPFIX template's length of a variable-length element

# A bounded string or octet array member, "text:N" or "octets:N" (JSON: a string, hex digits):
# a fixed slot, so records keep one size: its length in a native uint16, then N bytes.
BOUNDED = ("text", "octets")
LENGTH_BYTES = 2


def bounded(ctype):
    """(kind, capacity N) of a bounded member's C type, or None for another."""
    kind, _, capacity = ctype.partition(":")
    return (kind, int(capacity)) if kind in BOUNDED and capacity.isdigit() else None


class _CTypes(dict):
    def __missing__(self, ctype):
        kind_capacity = bounded(ctype)
        if kind_capacity is None:
            raise KeyError(ctype)
        size = LENGTH_BYTES + kind_capacity[1]
        return ("uint8_t", size, f"{size}s")


# C types of record members: (Cython declaration, size in bytes, struct module code).
CTYPES = _CTypes({
    "uint8": ("uint8_t", 1, "B"), "uint16": ("uint16_t", 2, "H"), "uint32": ("uint32_t", 4, "I"),
    "uint64": ("uint64_t", 8, "Q"), "int64": ("int64_t", 8, "q"),
    "address": ("uint8_t", 16, "16s"),     # IPv4 in the first 4 bytes
    "mac": ("uint8_t", 6, "6s"),
})

# Why a flow ended. The numbers are IPFIX flowEndReason's (RFC 5102), except forced (6),
# which the packer (END_REASON encoding) writes as forcedEnd too: JSON tells "the input
# ended" (eof) from "the operator or a signal ended it while input went on" (forced);
# and immediate (7), an immediate cache's one-packet record, written as activeTimeout.
# A permanent cache's periodic records have none (0, "active_now"), as dump-flows'.
END_REASONS = {1: "idle", 2: "active", 3: "tcp_end", 4: "eof", 5: "cache_full", 6: "forced", 7: "immediate"}
# The protocols whose type*256 + code stands in the destination port: ICMP and ICMPv6.
ICMP_PROTOCOL_NUMBERS = {"icmp": 1, "icmpv6": 58}
ICMP_PROTOCOLS = tuple(ICMP_PROTOCOL_NUMBERS.values())
# TCP flags, as the header's byte 13 and a record's tcp_flags hold them (RFC 9293, RFC 3168).
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ece": 0x40, "cwr": 0x80}
# Why the meter ignored a packet, by the name its statistics give (packets_ignored), in the
# order of the counts the meter keeps.
IGNORE_REASONS = {
    "non_ip": "ARP, LLDP, 802.3/LLC, PPP control, ...",
    "truncated_l2": "frame ends inside the link-layer header",
    "truncated_ip": "frame ends inside the IP header or its extension headers",
    "bad_ip": "version, header length or total length impossible",
    "truncated_l4": "ports or TCP flags not captured",
    "mpls_payload": "MPLS stack not followed by IP (pseudowire, ...)",
    "other_direction": "received while metering egress, or sent while metering ingress",
    "on_vlan_subinterface": "a parent interface's tagged copy of a packet metered on its VLAN sub-interface",
    "unmatched": "of the IP version the record does not meter (an IPv4-only record's IPv6)",
}


REVERSE_PEN = 29305    # RFC 5103: a reverse information element is the forward one under this enterprise number
CISCO_PEN = 9          # Cisco's elements where IANA has none: v9 type N (N > 32767) is IPFIX's N - 32768 under PEN 9


class Element(namedtuple("Element", "name id length encoding pen", defaults=(UNSIGNED, 0))):
    """An information element: IANA (or RFC 3954) name, number, length on the wire, encoding;
    pen: the private enterprise number of an enterprise-specific element (IPFIX only), else 0."""

    __slots__ = ()


# A key whose bits are not the packet's own: the origin AS of the address's route (--routes),
# which an AS-keyed meter puts in the address's place in the flow key (ext/_meter.pyx).
ROUTE_AS = "route_as"

# What a field can be in a record definition (pyprobe/definitions.py):
MATCH = "match"         # a key only: it says which flow a packet is (addresses, ports, protocol)
EITHER = "either"       # a key, or the first packet's value when collected (TOS, VLAN, MACs)
COLLECT = "collect"     # collected only: counted or measured over the flow's packets


# How the meter measures a field (Field.measure: Measure(kind, value, when)):
FLOW = "flow"           # the meter's own flow entry and classic record (ext/meter/: Flow, emit), by hand
KEY = "key"             # value: a C expression over the flow's key as the record shows it (`key`, a FlowKey*;
                        #   `first`: its first packet's whole key)
FIRST = "first"         # value: a C expression over a decoded packet (`pkt`, ext/decode.pxd's Packet):
LAST = "last"           #   the flow's first packet's, its last packet's,
MIN = "min"             #   the smallest, the largest,
MAX = "max"
SUM = "sum"             #   the sum, the bitwise OR over its packets;
OR = "or"
COUNT = "count"         # value: a C condition over a packet: the flow's packets that meet it
EXTENSION = "extension"  # value: the extension of the meter that keeps it (biflow, routes)
PER_PACKET = (FIRST, LAST, MIN, MAX, SUM, OR, COUNT)
MPLS_STACK_KEPT = 9     # label stack entries below the top one that a packet keeps (ext/decode.pxd)


class Measure(namedtuple("Measure", "kind value when", defaults=(None, None))):
    """How the meter measures a field: its kind (FLOW, KEY, FIRST, ..., EXTENSION), the value
    (a C expression, a COUNT's condition, an EXTENSION's name) and `when`: a C condition,
    over the packet (the per-packet kinds: the packets that do not meet it are not measured;
    none met: 0) or over the key (KEY: 0 unless it holds)."""

    __slots__ = ()


class Field(namedtuple("Field", "name ctype json show column ipfix v9 member doc role key classic measure",
                        defaults=(None, None, "int", None, None, "same", None, "", COLLECT, None, True, None))):
    """One record field: its name, C type, JSON key (None: not in JSON), how JSON shows it
    (int, address, mac, seconds, end_reason; a text:N member: text, an octets:N one: hex),
    the header of its own column in the table output, its elements. `ipfix`/`v9` are one
    Element, or (IPv4 element, IPv6 element) where the element depends on the IP version;
    None: that format cannot carry it; v9 "same": the IPFIX element(s). `member` is the
    packed record member the value comes from (default: the name); rows that only
    re-present another member (icmp_type_code) have no ctype. `role`: MATCH, EITHER or COLLECT; `key`: for a field that can be a key,
    (FlowKey member, mask of its bits, None: all) in ext/decode.pxd's FlowKey, or (the
    address member, ROUTE_AS) for an AS number that keys in place of the address. `classic`:
    the predefined records (-T LEVEL) show it in JSON. `measure`: how the meter measures a
    field with a ctype (Measure)."""

    __slots__ = ()

    @property
    def source(self):
        return self.member or self.name

    def element(self, dialect, ipver):
        """The Element for 'ipfix' or 'v9' and an IP version (4 or 6), or None."""
        chosen = self.ipfix if dialect == "ipfix" or self.v9 == "same" else self.v9
        if chosen is not None and not isinstance(chosen, Element):      # (IPv4 element, IPv6 element)
            return chosen[0] if ipver == 4 else chosen[1]
        return chosen


E, M = Element, Measure
FIELDS = (
    Field("src", "address", "src", "address", "Src IP Addr",
          ipfix=(E("sourceIPv4Address", 8, 4, BYTES), E("sourceIPv6Address", 27, 16, BYTES)),
          doc="source address (as a key, /N: its prefix)", role=MATCH, key=("src", None), measure=M(FLOW)),
    Field("dst", "address", "dst", "address", "Dst IP Addr",
          ipfix=(E("destinationIPv4Address", 12, 4, BYTES), E("destinationIPv6Address", 28, 16, BYTES)),
          doc="destination address (as a key, /N: its prefix)", role=MATCH, key=("dst", None), measure=M(FLOW)),
    Field("ipver", "uint8", "ipver", ipfix=E("ipVersion", 60, 1), doc="IP version, 4 or 6",
          role=MATCH, key=("ipver", None), measure=M(FLOW)),
    Field("proto", "uint8", "proto", column="Proto", ipfix=E("protocolIdentifier", 4, 1), doc="IP protocol",
          role=MATCH, key=("proto", None), measure=M(FLOW)),
    Field("sport", "uint16", "sport", ipfix=E("sourceTransportPort", 7, 2), doc="source port",
          role=MATCH, key=("sport", None), measure=M(FLOW)),
    Field("dport", "uint16", "dport", ipfix=E("destinationTransportPort", 11, 2),
          doc="destination port; ICMP/ICMPv6: type*256 + code, as Cisco does", role=MATCH, key=("dport", None),
          measure=M(FLOW)),
    Field("icmp_type_code", member="dport",
          ipfix=(E("icmpTypeCodeIPv4", 32, 2), E("icmpTypeCodeIPv6", 139, 2)),
          v9=E("ICMP_TYPE", 32, 2), doc="ICMP type*256 + code (the predefined records: ICMP flows' templates only)",
          role=MATCH, key=("dport", None)),
    Field("packets", "uint64", "packets", column="Packets", ipfix=E("packetDeltaCount", 2, 8), doc="packets",
          measure=M(FLOW)),
    Field("octets", "uint64", "octets", column="Bytes", ipfix=E("octetDeltaCount", 1, 8),
          doc="octets, as the IP headers state them", measure=M(FLOW)),
    Field("first_us", "int64", "start", "seconds", "Date first seen",
          ipfix=E("flowStartMilliseconds", 152, 8, MILLISECONDS), v9=E("FIRST_SWITCHED", 22, 4, UPTIME_MS),
          doc="first packet, epoch seconds (JSON), microseconds (record)", measure=M(FLOW)),
    Field("last_us", "int64", "end", "seconds",
          ipfix=E("flowEndMilliseconds", 153, 8, MILLISECONDS), v9=E("LAST_SWITCHED", 21, 4, UPTIME_MS),
          doc="last packet", measure=M(FLOW)),
    Field("tcp_flags", "uint8", "tcp_flags", column="Flags", ipfix=E("tcpControlBits", 6, 2),
          v9=E("TCP_FLAGS", 6, 1), doc="OR of the TCP flags", measure=M(FLOW)),
    Field("tos", "uint8", "tos", ipfix=E("ipClassOfService", 5, 1), doc="TOS / traffic class of the first packet",
          role=EITHER, key=("tos", None), measure=M(FLOW)),
    Field("vlan", "uint16", "vlan", ipfix=E("vlanId", 58, 2), doc="outer VLAN id of the first packet",
          role=EITHER, key=("vlan", None), measure=M(FLOW)),
    Field("in_if", "uint32", "in_if", ipfix=E("ingressInterface", 10, 4), doc="input interface (ifIndex)",
          role=EITHER, key=("in_if", None), measure=M(FLOW)),
    Field("out_if", "uint32", "out_if", ipfix=E("egressInterface", 14, 4),
          doc="output interface: where an egress flow left; an ingress flow's from its destination's route "
              "(--routes), else 0", measure=M(FLOW)),
    Field("next_hop", "address", "next_hop", "address",
          ipfix=(E("ipNextHopIPv4Address", 15, 4, BYTES), E("ipNextHopIPv6Address", 62, 16, BYTES)), classic=False,
          doc="next hop of the destination's route (--routes; 0: none, or directly connected)",
          measure=M(EXTENSION, "routes")),
    Field("src_as", "uint32", "src_as", ipfix=E("bgpSourceAsNumber", 16, 4), classic=False,
          doc="origin AS of the source's route (--routes; as a key, in place of the source address)",
          role=EITHER, key=("src", ROUTE_AS), measure=M(EXTENSION, "routes")),
    Field("dst_as", "uint32", "dst_as", ipfix=E("bgpDestinationAsNumber", 17, 4), classic=False,
          doc="origin AS of the destination's route (--routes; as a key, in place of the destination address)",
          role=EITHER, key=("dst", ROUTE_AS), measure=M(EXTENSION, "routes")),
    Field("src_length", "uint8", "src_length",
          ipfix=(E("sourceIPv4PrefixLength", 9, 1), E("sourceIPv6PrefixLength", 29, 1)), classic=False,
          doc="prefix length of the source's route (--routes)", measure=M(EXTENSION, "routes")),
    Field("dst_length", "uint8", "dst_length",
          ipfix=(E("destinationIPv4PrefixLength", 13, 1), E("destinationIPv6PrefixLength", 30, 1)), classic=False,
          doc="prefix length of the destination's route (--routes)", measure=M(EXTENSION, "routes")),
    Field("direction", "uint8", "direction", ipfix=E("flowDirection", 61, 1), role=EITHER,
          doc="0 ingress (in_if is where the flow came in), 1 egress (out_if is where it left)", measure=M(FLOW)),
    Field("src_mac", "mac", "src_mac", "mac", ipfix=E("sourceMacAddress", 56, 6, BYTES),
          doc="source MAC of the first packet", role=EITHER, key=("src_mac", None), measure=M(FLOW)),
    Field("dst_mac", "mac", "dst_mac", "mac", ipfix=E("destinationMacAddress", 80, 6, BYTES),
          doc="destination MAC of the first packet", role=EITHER, key=("dst_mac", None), measure=M(FLOW)),
    Field("mpls_label", "uint32", "mpls_label", measure=M(FLOW),
          doc="top MPLS label of the first packet (JSON of the predefined records)"),
    Field("mpls_stack", "uint32", "mpls_stack", ipfix=E("mplsTopLabelStackSection", 70, 3), role=EITHER,
          key=("mpls", 0xfffffe), classic=False, measure=M(KEY, "key.mpls"),
          doc="top MPLS label stack entry of the first packet, as the stack section goes out: "
              "label << 4 | EXP << 1 | bottom of stack (as a key: label and EXP)"),
    Field("min_ttl", "uint8", "min_ttl", ipfix=E("minimumTTL", 52, 1), doc="lowest IPv4 TTL / IPv6 hop limit",
          measure=M(FLOW)),
    Field("max_ttl", "uint8", "max_ttl", ipfix=E("maximumTTL", 53, 1), doc="highest IPv4 TTL / IPv6 hop limit",
          measure=M(FLOW)),
    Field("end_reason", "uint8", "end_reason", "end_reason", "End",
          ipfix=E("flowEndReason", 136, 1, END_REASON), v9=None,
          doc="why the flow ended: " + ", ".join(END_REASONS.values()), measure=M(FLOW)),
    # -- offered to record definitions; not in the predefined records
    Field("dscp", "uint8", "dscp", ipfix=E("ipDiffServCodePoint", 195, 1), role=EITHER, key=("tos", 0xfc),
          classic=False, doc="DSCP of the first packet (the TOS byte's upper six bits)",
          measure=M(KEY, "key.tos >> 2")),
    Field("precedence", "uint8", "precedence", ipfix=E("ipPrecedence", 196, 1), role=EITHER, key=("tos", 0xe0),
          classic=False, doc="IP precedence of the first packet (the TOS byte's upper three bits)",
          measure=M(KEY, "key.tos >> 5")),
    Field("icmp_type", "uint8", "icmp_type", ipfix=(E("icmpTypeIPv4", 176, 1), E("icmpTypeIPv6", 178, 1)),
          role=MATCH, key=("dport", 0xff00), classic=False, doc="ICMP type (0 for other protocols)",
          measure=M(KEY, "key.dport >> 8", when="is_icmp(first.proto)")),
    Field("icmp_code", "uint8", "icmp_code", ipfix=(E("icmpCodeIPv4", 177, 1), E("icmpCodeIPv6", 179, 1)),
          role=MATCH, key=("dport", 0x00ff), classic=False, doc="ICMP code (0 for other protocols)",
          measure=M(KEY, "key.dport & 0xff", when="is_icmp(first.proto)")),
    Field("inner_vlan", "uint16", "inner_vlan", ipfix=E("dot1qCustomerVlanId", 245, 2), role=EITHER,
          key=("inner_vlan", None), classic=False, doc="inner (second) VLAN id of the first packet",
          measure=M(KEY, "key.inner_vlan")),
    Field("mpls_exp", "uint8", "mpls_exp", ipfix=E("mplsTopLabelExp", 203, 1), role=EITHER, key=("mpls", 0x0e),
          classic=False, doc="EXP (traffic class) bits of the first packet's top MPLS label",
          measure=M(KEY, "(key.mpls >> 1) & 7")),
    *(Field(f"mpls_label_{n}", "uint32", f"mpls_label_{n}", ipfix=E(f"mplsLabelStackSection{n}", 69 + n, 3),
            classic=False, measure=M(FIRST, f"pkt.mpls_stack[{n - 2}]"),
            doc=f"MPLS label stack entry {n} (from the top) of the first packet, as mpls_stack; 0: a shorter stack")
      for n in range(2, 2 + MPLS_STACK_KEPT)),
    Field("flow_label", "uint32", "flow_label", ipfix=E("flowLabelIPv6", 31, 4), role=EITHER,
          key=("flow_label", None), classic=False, doc="IPv6 flow label of the first packet",
          measure=M(KEY, "key.flow_label")),
    Field("frag", "uint8", "frag", ipfix=E("fragmentFlags", 197, 1), role=EITHER, key=("frag", None),
          classic=False, doc="fragment flags of the first packet: 0x40 don't fragment, 0x20 more fragments",
          measure=M(KEY, "key.frag")),
    Field("syn_packets", "uint32", "syn_packets", ipfix=E("tcpSynTotalCount", 218, 4), classic=False,
          doc="TCP packets with SYN", measure=M(COUNT, "pkt.key.proto == 6 and pkt.tcp_flags & TH_SYN")),
    Field("fin_packets", "uint32", "fin_packets", ipfix=E("tcpFinTotalCount", 219, 4), classic=False,
          doc="TCP packets with FIN", measure=M(COUNT, "pkt.key.proto == 6 and pkt.tcp_flags & TH_FIN")),
    Field("rst_packets", "uint32", "rst_packets", ipfix=E("tcpRstTotalCount", 220, 4), classic=False,
          doc="TCP packets with RST", measure=M(COUNT, "pkt.key.proto == 6 and pkt.tcp_flags & TH_RST")),
    Field("min_length", "uint32", "min_length", ipfix=E("minimumIpTotalLength", 25, 4), classic=False,
          doc="shortest packet, octets as its IP header states", measure=M(MIN, "pkt.octets")),
    Field("max_length", "uint32", "max_length", ipfix=E("maximumIpTotalLength", 26, 4), classic=False,
          doc="longest packet", measure=M(MAX, "pkt.octets")),
    # Cisco's (Flexible NetFlow's "transport tcp window-size minimum/maximum"): IANA has no such element
    Field("min_tcp_window", "uint16", "min_tcp_window",
          ipfix=E("transportTcpWindowSizeMinimum", 37083 - 32768, 4, pen=CISCO_PEN),
          v9=E("transportTcpWindowSizeMinimum", 37083, 4), classic=False,
          doc="smallest TCP window field of the flow's packets, unscaled (0 for other protocols)",
          measure=M(MIN, "pkt.tcp_window", when="pkt.window_known")),
    Field("max_tcp_window", "uint16", "max_tcp_window",
          ipfix=E("transportTcpWindowSizeMaximum", 37084 - 32768, 4, pen=CISCO_PEN),
          v9=E("transportTcpWindowSizeMaximum", 37084, 4), classic=False,
          doc="largest TCP window field of the flow's packets, unscaled",
          measure=M(MAX, "pkt.tcp_window", when="pkt.window_known")),
    Field("tcp_options", "uint64", "tcp_options", ipfix=E("tcpOptions", 209, 8), classic=False,
          measure=M(OR, "pkt.tcp_options"),
          doc="TCP option kinds (0-63) seen in the flow's packets: kind K is bit K % 8 of the element's "
              "octet K // 8 (RFC 5102's figure), so the number JSON shows has kind K at bit K ^ 56"),
    # a biflow's (RFC 5103): the responder's direction, reverse elements of PEN 29305 in IPFIX
    Field("reverse_packets", "uint64", "reverse_packets", ipfix=E("reversePacketDeltaCount", 2, 8, pen=REVERSE_PEN),
          v9=E("OUT_PKTS", 24, 8), classic=False, doc="a biflow's packets from the responder",
          measure=M(EXTENSION, "biflow")),
    Field("reverse_octets", "uint64", "reverse_octets", ipfix=E("reverseOctetDeltaCount", 1, 8, pen=REVERSE_PEN),
          v9=E("OUT_BYTES", 23, 8), classic=False, doc="a biflow's octets from the responder",
          measure=M(EXTENSION, "biflow")),
    Field("reverse_tcp_flags", "uint8", "reverse_tcp_flags",
          ipfix=E("reverseTcpControlBits", 6, 2, pen=REVERSE_PEN), v9=None, classic=False,
          doc="a biflow's OR of the responder's TCP flags (IPFIX only)", measure=M(EXTENSION, "biflow")),
    Field("packets_total", member="packets", ipfix=E("packetTotalCount", 86, 8), classic=False,
          doc="packets so far (a permanent cache's records, instead of packetDeltaCount)"),
    Field("octets_total", member="octets", ipfix=E("octetTotalCount", 85, 8), classic=False,
          doc="octets so far (a permanent cache's records, instead of octetDeltaCount)"),
    Field("octets_squared", "uint64", "octets_squared", ipfix=E("octetDeltaSumOfSquares", 198, 8), classic=False,
          doc="sum of the squares of the packet lengths (with octets and packets: their variance)",
          measure=M(SUM, "<uint64_t>pkt.octets * pkt.octets")),
)
del E, M

BY_NAME = {f.name: f for f in FIELDS}
# What a permanent cache's records carry instead of the delta counters: its flows never end,
# so each export gives the totals so far (IPFIX octetTotalCount, packetTotalCount).
TOTAL_COUNTERS = {"packets": "packets_total", "octets": "octets_total"}


def _measured(*kinds):
    return [f for f in FIELDS if f.measure is not None and f.measure.kind in kinds]


# The fields the meter measures over a flow's packets: a record that has one keeps FlowMeasures.
PER_PACKET_FIELDS = frozenset(f.name for f in _measured(*PER_PACKET))


class Member(namedtuple("Member", "name ctype offset")):
    """A member of the packed record: name, C type, offset in bytes."""

    __slots__ = ()

    @property
    def size(self):
        return CTYPES[self.ctype][1]


def _layout():
    """Record members: the predefined records' (classic) first, then the others, each group
    the widest first so that every integer is naturally aligned in a record at an 8-byte
    boundary; padded to a multiple of 8 bytes. (The classic members then fill the first
    104 bytes, as before there were others: the predefined records' export reads no more.)"""
    rank = {"address": 0, "uint64": 1, "int64": 1, "uint32": 2, "uint16": 3, "mac": 4, "uint8": 5}
    order = sorted((f for f in FIELDS if f.ctype), key=lambda f: (not f.classic, rank.get(f.ctype, 6)))
    members, offset = [], 0
    for f in order:
        if not f.classic and members and MEMBER_CLASSIC[members[-1].name]:    # the second group starts aligned
            offset += -offset % 8
        members.append(Member(f.name, f.ctype, offset))
        offset += CTYPES[f.ctype][1]
    return tuple(members), offset + (-offset % 8)


MEMBER_CLASSIC = {f.name: f.classic for f in FIELDS if f.ctype}
MEMBERS, RECORD_SIZE = _layout()
MEMBER = {m.name: m for m in MEMBERS}
# A classic record: the first CLASSIC_SIZE bytes of a record, its classic members alone. The
# meter packs these when the record has no other member to fill (definitions.record_stride):
# the predefined records without routes, which then cost the meter and the encoders no more
# than before records had other members. Every other member of a classic record reads as 0.
CLASSIC_SIZE = min(m.offset for m in MEMBERS if not MEMBER_CLASSIC[m.name])


def _gaps(size=RECORD_SIZE):
    """(member or None, bytes) in record order, of a record's first `size` bytes (the whole
    record, or a classic one): a None is padding (between the two groups, at the end)."""
    out, at = [], 0
    for m in MEMBERS:
        if m.offset >= size:
            break
        if m.offset > at:
            out.append((None, m.offset - at))
        out.append((m, m.size))
        at = m.offset + m.size
    if size > at:
        out.append((None, size - at))
    return out


def _format(size):
    return "=" + "".join(CTYPES[m.ctype][2] if m else "x" * length for m, length in _gaps(size))


# The struct module's view of the same bytes (native byte order; padding only where _gaps() says).
RECORD_FORMAT = _format(RECORD_SIZE)
CLASSIC_FORMAT = _format(CLASSIC_SIZE)
CLASSIC_SHOWN = tuple(f for f in FIELDS if f.json and f.classic)     # what the predefined records show
JSON_KEYS = tuple(f.json for f in CLASSIC_SHOWN)


def record_pxd():
    """The text of ext/record.pxd: the packed struct the meter writes and the encoders read."""
    lines = ["# GENERATED from pyprobe/fields.py by setup.py: edit the table there, not this file.",
             f"# The flow record the meter hands out and the encoders read: {RECORD_SIZE} bytes,",
             "# native byte order, padded only to keep its second group of members aligned.", "",
             "from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t", "",
             "cdef packed struct FlowRecord:"]
    pads = 0
    for m, size in _gaps():
        if m is None:
            lines.append(f"    uint8_t _pad{pads}[{size}]")
            pads += 1
            continue
        ctype, _, _ = CTYPES[m.ctype]
        array = f"[{size}]" if m.ctype in ("address", "mac") or bounded(m.ctype) else ""
        lines.append(f"    {ctype} {m.name}{array}")
    lines += ["", "# A classic record: the first bytes of one, its classic members alone (pyprobe/fields.py).",
              "cdef enum:", f"    CLASSIC_RECORD_SIZE = {CLASSIC_SIZE}"]
    return "\n".join(lines) + "\n"


def _enum(comment, members, count=None, notes=None):
    """A cdef enum of NAME = value members (and `count`: one past the largest), under its
    comment; notes: a comment for each member, in order."""
    lines = ["", f"# {comment}", "cdef enum:"]
    for (name, value), note in zip(members.items(), notes or [None] * len(members)):
        lines.append(f"    {name} = {value}" + (f"    # {note}" if note else ""))
    return lines + ([f"    {count} = {max(members.values()) + 1}"] if count else [])


def codes_pxd():
    """The text of ext/codes.pxd: the codes the compiled modules share with this module's tables."""
    return "\n".join([
        "# GENERATED from pyprobe/fields.py by setup.py: edit the tables there, not this file.",
        *_enum("Why a flow ended: a record's end_reason (END_REASONS).",
               {f"END_{name.upper()}": code for code, name in END_REASONS.items()}, "N_END_REASONS"),
        *_enum("Why the meter ignored a packet: indexes its counts (IGNORE_REASONS).",
               {f"IGNORE_{name.upper()}": i for i, name in enumerate(IGNORE_REASONS)}, "N_IGNORE_REASONS",
               IGNORE_REASONS.values()),
        *_enum("TCP flags (TCP_FLAGS).", {f"TH_{name.upper()}": bit for name, bit in TCP_FLAGS.items()}),
        *_enum("ICMP and ICMPv6 (ICMP_PROTOCOL_NUMBERS).",
               {f"PROTO_{name.upper()}": number for name, number in ICMP_PROTOCOL_NUMBERS.items()}),
    ]) + "\n"


def _seen_bits():
    """Each `when` of the per-packet rows -> its bit in FlowMeasures.seen (in table order)."""
    conditions = dict.fromkeys(f.measure.when for f in _measured(*PER_PACKET) if f.measure.when)
    return {when: 1 << i for i, when in enumerate(conditions)}


def _start_line(f):
    """A per-packet row's value at the flow's first packet that it measures."""
    kind, value, _ = f.measure
    if kind == COUNT:
        return [f"if {value}:", f"    m.{f.name} = 1"]
    return [f"m.{f.name} = {value}"]


def _update_lines(f):
    """A per-packet row's update at each later packet that it measures."""
    kind, value, _ = f.measure
    name = f"m.{f.name}"
    return {FIRST: [], LAST: [f"{name} = {value}"],
            MIN: [f"if {value} < {name}:", f"    {name} = {value}"],
            MAX: [f"if {value} > {name}:", f"    {name} = {value}"],
            SUM: [f"{name} += {value}"], OR: [f"{name} |= {value}"],
            COUNT: [f"if {value}:", f"    {name} += 1"]}[kind]


def _indent(lines, depth=1):
    return ["    " * depth + line for line in lines]


def _function(signature, doc, body):
    return [f"cdef inline void {signature} noexcept nogil:", f'    """{doc}"""'] + _indent(body or ["pass"]) + ["", ""]


def measures_pxi():
    """The text of ext/meter/measures.pxi: what the meter keeps and does for the table's KEY and
    per-packet rows (included by ext/_meter.pyx, which has cimported FlowKey, Packet, FlowRecord)."""
    rows = _measured(*PER_PACKET)
    seen = _seen_bits()
    for f in rows:
        assert f.ctype in ("uint8", "uint16", "uint32", "uint64", "int64"), f"{f.name}: a per-packet row is an integer"
        assert f.measure.kind != COUNT or not f.measure.when, f"{f.name}: a COUNT's condition is its value"
    assert len(seen) <= 8
    lines = ["# GENERATED from pyprobe/fields.py by setup.py: edit the table there, not this file.",
             "# The field table's per-packet measures (FIRST, LAST, MIN, MAX, SUM, OR, COUNT) and key-derived",
             "# members (KEY): what a flow keeps of them, and how its packets and its record fill them.", "",
             f"assert MPLS_STACK_KEPT == {MPLS_STACK_KEPT}, 'ext/decode.pxd keeps the MPLS entries pyprobe/fields.py has'",
             "",
             "# A flow's: the state of the measures flow extension (meter/flow_table.pxi), if its record has any.",
             "cdef struct FlowMeasures:"]
    lines += [f"    {CTYPES[f.ctype][0]} {f.name}" for f in sorted(rows, key=lambda f: -CTYPES[f.ctype][1])]
    lines += ["    uint8_t seen        # a bit per `when` of the table: a packet has met it", "", ""]
    start, update = ["memset(m, 0, sizeof(FlowMeasures))"], []
    for when in [None, *seen]:
        group = [f for f in rows if f.measure.when == when]
        first = [line for f in group for line in _start_line(f)]
        later = [line for f in group for line in _update_lines(f)]
        if when is None:
            start += first
            update += later
            continue
        first.append(f"m.seen |= {seen[when]:#x}")
        start += [f"if {when}:"] + _indent(first)
        update += [f"if {when}:", f"    if m.seen & {seen[when]:#x}:"] + _indent(later or ["pass"], 2)
        update += ["    else:"] + _indent(first, 2)
    lines += _function("measures_start(FlowMeasures* m, const Packet* pkt)",
                       "The measures of a new flow, from its first packet.", start)
    lines += _function("measures_update(FlowMeasures* m, const Packet* pkt)",
                       "A later packet of the flow measured.", update)
    lines += _function("measures_emit(FlowRecord* r, const FlowMeasures* m)",
                       "The per-packet measures into the flow's record.", [f"r.{f.name} = m.{f.name}" for f in rows])
    keyed = _measured(KEY)
    body = [f"r.{f.name} = {f.measure.value}" for f in keyed if not f.measure.when]
    for when in dict.fromkeys(f.measure.when for f in keyed if f.measure.when):
        body += [f"if {when}:"] + [f"    r.{f.name} = {f.measure.value}" for f in keyed if f.measure.when == when]
    lines += _function("key_emit(FlowRecord* r, const FlowKey* key, const FlowKey* first)",
                       "The members beyond a classic record's that come from the flow's key (`key`: as\n"
                       "    the record shows it; `first`: the first packet's whole key).", body)
    return "\n".join(lines[:-2]) + "\n"
