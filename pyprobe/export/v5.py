"""NetFlow v5 export packets: a 24-byte header and up to 30 48-byte IPv4 records.

flow_sequence = flows exported before this packet. IPv6 flows do not fit v5:
they are counted (the caller warns). Times are sysUptime ms (see uptime.py).
The records themselves are written by the compiled encoder (ext/encode.pyx).
"""

import struct
from dataclasses import dataclass, field

from .. import _encode
from .uptime import MAX_SPAN_MS, Uptime

VERSION = 5
HEADER = struct.Struct(">HHIIIIBBH")
RECORD_SIZE = 48                  # written by ext/encode.pyx's pack_v5
MAX_RECORDS = 30
SAMPLING_MODE_DETERMINISTIC = 1   # top two bits of the sampling field
SAMPLING_MODE_RANDOM = 2
MAX_SAMPLING_INTERVAL = 0x3fff


@dataclass
class V5State:
    engine_type: int = 0
    engine_id: int = 0
    max_size: int = HEADER.size + MAX_RECORDS * RECORD_SIZE
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


def records_per_datagram(state):
    return max(1, min(MAX_RECORDS, (state.max_size - HEADER.size) // RECORD_SIZE))


def encode(buf, state, now_ms, ignored_packets=0):
    """Packed meter records -> NetFlow v5 packets (IPv4 records only)."""
    order, ipv4_count = _encode.order_by_version(buf)
    state.ipv6_skipped += len(order) // 4 - ipv4_count
    packets = []
    start = 0
    while start < ipv4_count:
        per_packet = records_per_datagram(state)
        end, first_ms, last_ms = _encode.take(buf, order, start, ipv4_count, per_packet * RECORD_SIZE,
                                              RECORD_SIZE, RECORD_SIZE, MAX_SPAN_MS, per_packet)
        export_ms, uptime_ms = state.uptime.header_times(now_ms, first_ms, last_ms)
        body = _encode.pack(buf, order, start, end, _encode.LAYOUT_V5, state.uptime.boot_ms)
        header = HEADER.pack(VERSION, end - start, uptime_ms, export_ms // 1000, (export_ms % 1000) * 1_000_000,
                             state.flow_sequence & 0xffffffff, state.engine_type, state.engine_id,
                             state.sampling_field)
        packets.append(header + body)
        state.flow_sequence += end - start
        state.messages_sent += 1
        state.records_sent += end - start
        start = end
    return packets
