"""The fields encoders need from the meter's packed records, unpacked once per record."""

from collections import namedtuple

from ..records import RECORD

ExportRecord = namedtuple("ExportRecord", "src dst packets octets first_ms last_ms in_if sport dport vlan "
                                          "ipver proto tos tcp_flags end_reason")


def export_records(buf):
    """Packed meter records -> ExportRecord tuples (milliseconds, addresses as raw bytes)."""
    return [ExportRecord(src, dst, packets, octets, first_us // 1000, last_us // 1000, in_if, sport, dport,
                         vlan, ipver, proto, tos, tcp_flags, end_reason)
            for (src, dst, packets, octets, first_us, last_us, in_if, _mpls, sport, dport, vlan, ipver, proto,
                 tos, tcp_flags, end_reason, _smac, _dmac) in RECORD.iter_unpack(buf)]


def icmp_type_code(record):
    """Cisco's ICMP type*256+code, already in the destination port for ICMP and ICMPv6."""
    return record.dport if record.proto in (1, 58) else 0
