"""Flow records as the meter hands them out: packed structs, unpacked only for display.

The layout mirrors FlowRecord in ext/meter.pyx (96 bytes, native byte order,
no padding). Exporters read the packed bytes; printing and tests unpack them.
"""

import socket
import struct
from collections import namedtuple

from ._meter import END_REASON_NAMES, RECORD_SIZE

RECORD = struct.Struct("=16s16sQQqqIIHHHBBBBB6s6sx")
assert RECORD.size == RECORD_SIZE, "pyprobe.records is out of step with ext/meter.pyx"

FIELDS = ("src", "dst", "ipver", "proto", "sport", "dport", "packets", "octets", "start", "end",
          "tcp_flags", "tos", "vlan", "in_if", "src_mac", "dst_mac", "mpls_label", "end_reason")

_Record = namedtuple("FlowRecord", FIELDS)


class FlowRecord(_Record):
    """One expired flow; start and end are epoch seconds."""

    __slots__ = ()

    def as_dict(self):
        return self._asdict()


def _address(raw, ipver):
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if ipver == 4 else socket.inet_ntop(socket.AF_INET6, raw)


def _mac(raw):
    return raw.hex(":")


def unpack(buf):
    """Turn the meter's packed records into FlowRecord tuples."""
    records = []
    for (src, dst, packets, octets, first_us, last_us, in_if, mpls_label, sport, dport, vlan,
         ipver, proto, tos, tcp_flags, end_reason, src_mac, dst_mac) in RECORD.iter_unpack(buf):
        records.append(FlowRecord(
            src=_address(src, ipver), dst=_address(dst, ipver), ipver=ipver, proto=proto,
            sport=sport, dport=dport, packets=packets, octets=octets,
            start=first_us / 1e6, end=last_us / 1e6, tcp_flags=tcp_flags, tos=tos, vlan=vlan,
            in_if=in_if, src_mac=_mac(src_mac), dst_mac=_mac(dst_mac), mpls_label=mpls_label,
            end_reason=END_REASON_NAMES.get(end_reason, "active_now")))
    return records
