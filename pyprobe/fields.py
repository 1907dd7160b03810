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

Adding a field: decode it in ext/decode.pxd, keep it in the meter's flow entry
(ext/_meter.pyx: Flow, _create, _meter, _emit), add one row here, and name it in
the templates that should carry it. This module imports nothing of pyprobe's,
so the build can read it before anything is compiled.
"""

from collections import namedtuple

# How a value is written on the wire (the compiled packer's opcodes, ext/_encode.pyx).
UNSIGNED = 1        # an unsigned integer, big-endian, in the element's length (low bytes kept)
BYTES = 2           # bytes copied as they are (addresses, MACs)
ZERO = 3            # zeros: a field the format has and pyprobe does not fill
MILLISECONDS = 4    # microseconds since the epoch -> milliseconds since the epoch
UPTIME_MS = 5       # microseconds since the epoch -> milliseconds since the exporter's boot
END_REASON = 6      # the meter's end reason -> IPFIX flowEndReason

# C types of record members: (Cython declaration, size in bytes, struct module code).
CTYPES = {
    "uint8": ("uint8_t", 1, "B"), "uint16": ("uint16_t", 2, "H"), "uint32": ("uint32_t", 4, "I"),
    "uint64": ("uint64_t", 8, "Q"), "int64": ("int64_t", 8, "q"),
    "address": ("uint8_t", 16, "16s"),     # IPv4 in the first 4 bytes
    "mac": ("uint8_t", 6, "6s"),
}

# Why a flow ended. The numbers are IPFIX flowEndReason's (RFC 5102), except forced (6),
# which the packer (END_REASON encoding) writes as forcedEnd too: JSON tells "the input
# ended" (eof) from "the operator or a signal ended it while input went on" (forced).
END_REASONS = {1: "idle", 2: "active", 3: "tcp_end", 4: "eof", 5: "cache_full", 6: "forced"}
ICMP_PROTOCOLS = (1, 58)      # ICMP and ICMPv6: type*256 + code in the destination port


class Element(namedtuple("Element", "name id length encoding", defaults=(UNSIGNED,))):
    """An information element: IANA (or RFC 3954) name, number, length on the wire, encoding."""

    __slots__ = ()


class Field(namedtuple("Field", "name ctype json show column ipfix v9 member doc",
                        defaults=(None, None, "int", None, None, "same", None, ""))):
    """One record field: its name, C type, JSON key (None: not in JSON), how JSON shows it
    (int, address, mac, seconds, end_reason), the header of its own column in the table
    output, its elements. `ipfix`/`v9` are one Element, or (IPv4 element, IPv6 element)
    where the element depends on the IP version; None: that format cannot carry it; v9
    "same": the IPFIX element(s). `member` is the packed record member the value comes
    from (default: the name); rows that only re-present another member (icmp_type_code)
    have no ctype."""

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


E = Element
FIELDS = (
    Field("src", "address", "src", "address", "Src IP Addr",
          ipfix=(E("sourceIPv4Address", 8, 4, BYTES), E("sourceIPv6Address", 27, 16, BYTES)),
          doc="source address"),
    Field("dst", "address", "dst", "address", "Dst IP Addr",
          ipfix=(E("destinationIPv4Address", 12, 4, BYTES), E("destinationIPv6Address", 28, 16, BYTES)),
          doc="destination address"),
    Field("ipver", "uint8", "ipver", ipfix=E("ipVersion", 60, 1), doc="IP version, 4 or 6"),
    Field("proto", "uint8", "proto", column="Proto", ipfix=E("protocolIdentifier", 4, 1), doc="IP protocol"),
    Field("sport", "uint16", "sport", ipfix=E("sourceTransportPort", 7, 2), doc="source port"),
    Field("dport", "uint16", "dport", ipfix=E("destinationTransportPort", 11, 2),
          doc="destination port; ICMP/ICMPv6: type*256 + code, as Cisco does"),
    Field("icmp_type_code", member="dport",
          ipfix=(E("icmpTypeCodeIPv4", 32, 2), E("icmpTypeCodeIPv6", 139, 2)),
          v9=E("ICMP_TYPE", 32, 2), doc="ICMP type*256 + code (ICMP flows' templates only)"),
    Field("packets", "uint64", "packets", column="Packets", ipfix=E("packetDeltaCount", 2, 8), doc="packets"),
    Field("octets", "uint64", "octets", column="Bytes", ipfix=E("octetDeltaCount", 1, 8),
          doc="octets, as the IP headers state them"),
    Field("first_us", "int64", "start", "seconds", "Date first seen",
          ipfix=E("flowStartMilliseconds", 152, 8, MILLISECONDS), v9=E("FIRST_SWITCHED", 22, 4, UPTIME_MS),
          doc="first packet, epoch seconds (JSON), microseconds (record)"),
    Field("last_us", "int64", "end", "seconds",
          ipfix=E("flowEndMilliseconds", 153, 8, MILLISECONDS), v9=E("LAST_SWITCHED", 21, 4, UPTIME_MS),
          doc="last packet"),
    Field("tcp_flags", "uint8", "tcp_flags", column="Flags", ipfix=E("tcpControlBits", 6, 2),
          v9=E("TCP_FLAGS", 6, 1), doc="OR of the TCP flags"),
    Field("tos", "uint8", "tos", ipfix=E("ipClassOfService", 5, 1), doc="TOS / traffic class of the first packet"),
    Field("vlan", "uint16", "vlan", ipfix=E("vlanId", 58, 2), doc="outer VLAN id of the first packet"),
    Field("in_if", "uint32", "in_if", ipfix=E("ingressInterface", 10, 4), doc="input interface (ifIndex)"),
    Field("out_if", "uint32", "out_if", ipfix=E("egressInterface", 14, 4),
          doc="output interface (egress flows; 0 for ingress flows: routes are not read yet)"),
    Field("direction", "uint8", "direction", ipfix=E("flowDirection", 61, 1),
          doc="0 ingress (in_if is where the flow came in), 1 egress (out_if is where it left)"),
    Field("src_mac", "mac", "src_mac", "mac", ipfix=E("sourceMacAddress", 56, 6, BYTES),
          doc="source MAC of the first packet"),
    Field("dst_mac", "mac", "dst_mac", "mac", ipfix=E("destinationMacAddress", 80, 6, BYTES),
          doc="destination MAC of the first packet"),
    Field("mpls_label", "uint32", "mpls_label", doc="top MPLS label of the first packet (not exported yet)"),
    Field("min_ttl", "uint8", "min_ttl", ipfix=E("minimumTTL", 52, 1), doc="lowest IPv4 TTL / IPv6 hop limit"),
    Field("max_ttl", "uint8", "max_ttl", ipfix=E("maximumTTL", 53, 1), doc="highest IPv4 TTL / IPv6 hop limit"),
    Field("end_reason", "uint8", "end_reason", "end_reason", "End",
          ipfix=E("flowEndReason", 136, 1, END_REASON), v9=None,
          doc="why the flow ended: " + ", ".join(END_REASONS.values())),
)
del E

BY_NAME = {f.name: f for f in FIELDS}


class Member(namedtuple("Member", "name ctype offset")):
    """A member of the packed record: name, C type, offset in bytes."""

    __slots__ = ()

    @property
    def size(self):
        return CTYPES[self.ctype][1]


def _layout():
    """Record members, the widest first so that every integer is naturally aligned in a
    record at an 8-byte boundary; padded to a multiple of 8 bytes."""
    rank = {"address": 0, "uint64": 1, "int64": 1, "uint32": 2, "uint16": 3, "mac": 4, "uint8": 5}
    order = sorted((f for f in FIELDS if f.ctype), key=lambda f: rank[f.ctype])
    members, offset = [], 0
    for f in order:
        members.append(Member(f.name, f.ctype, offset))
        offset += CTYPES[f.ctype][1]
    return tuple(members), offset + (-offset % 8)


MEMBERS, RECORD_SIZE = _layout()
MEMBER = {m.name: m for m in MEMBERS}
# The struct module's view of the same bytes (native byte order, no padding between members).
RECORD_FORMAT = "=" + "".join(CTYPES[m.ctype][2] for m in MEMBERS) + "x" * (
    RECORD_SIZE - sum(m.size for m in MEMBERS))
JSON_KEYS = tuple(f.json for f in FIELDS if f.json)


def record_pxd():
    """The text of ext/record.pxd: the packed struct the meter writes and the encoders read."""
    lines = ["# GENERATED from pyprobe/fields.py by setup.py: edit the table there, not this file.",
             f"# The flow record the meter hands out and the encoders read: {RECORD_SIZE} bytes,",
             "# native byte order, no padding between members.", "",
             "from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t", "",
             "cdef packed struct FlowRecord:"]
    for m in MEMBERS:
        ctype, size, _ = CTYPES[m.ctype]
        array = f"[{size}]" if m.ctype in ("address", "mac") else ""
        lines.append(f"    {ctype} {m.name}{array}")
    pad = RECORD_SIZE - sum(m.size for m in MEMBERS)
    if pad:
        lines.append(f"    uint8_t _pad[{pad}]")
    return "\n".join(lines) + "\n"
