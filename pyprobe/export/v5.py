"""NetFlow v5 export packets: a 24-byte header and up to 30 48-byte IPv4 records.

flow_sequence = flows exported before this packet. IPv6 flows do not fit v5:
they are counted (the caller warns). Times are sysUptime ms (see uptime.py).
"""

import struct
from dataclasses import dataclass, field

from .records import export_records
from .uptime import Uptime, fits_span

VERSION = 5
HEADER = struct.Struct(">HHIIIIBBH")
RECORD = struct.Struct(">4s4s4sHHIIIIHHxBBBHHBBxx")
MAX_RECORDS = 30
SAMPLING_MODE_DETERMINISTIC = 1   # top two bits of the sampling field
SAMPLING_MODE_RANDOM = 2
MAX_SAMPLING_INTERVAL = 0x3fff


@dataclass
class V5State:
    engine_type: int = 0
    engine_id: int = 0
    sampling_interval: int = 1
    sampling_random: bool = False
    flow_sequence: int = 0
    messages_sent: int = 0
    records_sent: int = 0
    ipv6_skipped: int = 0
    uptime: Uptime = field(default_factory=Uptime)

    @property
    def sampling_field(self):
        if self.sampling_interval <= 1:
            return 0
        mode = SAMPLING_MODE_RANDOM if self.sampling_random else SAMPLING_MODE_DETERMINISTIC
        return mode << 14 | min(self.sampling_interval, MAX_SAMPLING_INTERVAL)


def new_state(**settings):
    return V5State(**settings)


def encode(buf, state, now_ms, ignored_packets=0):
    """Packed meter records -> NetFlow v5 packets (IPv4 records only)."""
    records = []
    for r in export_records(buf):
        if r.ipver == 4:
            records.append(r)
        else:
            state.ipv6_skipped += 1
    packets = []
    for chunk in _chunks(records):
        first = min(r.first_ms for r in chunk)
        last = max(r.last_ms for r in chunk)
        export_ms, uptime_ms = state.uptime.header_times(now_ms, first, last)
        body = b"".join(RECORD.pack(r.src, r.dst, b"\0\0\0\0", r.in_if & 0xffff, 0, r.packets, r.octets,
                                    state.uptime.relative(r.first_ms), state.uptime.relative(r.last_ms),
                                    r.sport, r.dport, r.tcp_flags, r.proto, r.tos, 0, 0, 0, 0)
                        for r in chunk)
        header = HEADER.pack(VERSION, len(chunk), uptime_ms, export_ms // 1000, (export_ms % 1000) * 1_000_000,
                             state.flow_sequence & 0xffffffff, state.engine_type, state.engine_id,
                             state.sampling_field)
        packets.append(header + body)
        state.flow_sequence += len(chunk)
        state.messages_sent += 1
        state.records_sent += len(chunk)
    return packets


def _chunks(records):
    """At most 30 records a packet, and no packet wider in time than its 32-bit uptime can say."""
    chunk, first, last = [], None, None
    for r in records:
        lo = r.first_ms if first is None else min(first, r.first_ms)
        hi = r.last_ms if last is None else max(last, r.last_ms)
        if chunk and (len(chunk) == MAX_RECORDS or not fits_span(lo, hi)):
            yield chunk
            chunk, lo, hi = [], r.first_ms, r.last_ms
        chunk.append(r)
        first, last = lo, hi
    if chunk:
        yield chunk
