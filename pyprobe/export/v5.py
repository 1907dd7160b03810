"""NetFlow v5 export packets: a 24-byte header and up to 30 48-byte IPv4 records.

flow_sequence = flows exported before this packet. IPv6 flows do not fit v5:
they are counted (the collector warns). Times are sysUptime ms (see ext/_encode.pyx, Uptime).
"""

from .._encode import MAX_ACTIVE_SECONDS, MAX_SPAN_MS, Uptime
from ..fields import RECORD_SIZE
from .encoder import (CLASSES, CONSTANT, EXPORT_NANOSECONDS, EXPORT_SECONDS, RECORDS, SEQUENCE, UPTIME_MS,
                      Capabilities, Encoder, Filler, Layout)

CAPABILITIES = Capabilities(name="NetFlow v5", ipv6=False, counter_bits=32, uptime=True,
                            max_active_seconds=MAX_ACTIVE_SECONDS,
                            templates=False, options=False, tcp=False, flexible=False)
HEADER_SIZE = 24
MAX_RECORDS = 30
SAMPLING_MODE_DETERMINISTIC = 1   # top two bits of the sampling field
SAMPLING_MODE_RANDOM = 2
MAX_SAMPLING_INTERVAL = 0x3fff

# The fixed v5 record, field by field (lengths where v5's differ from the templates').
RECORD_ITEMS = (
    "src", "dst", "next_hop",
    ("in_if", 2), ("out_if", 2), ("packets", 4), ("octets", 4), "first_us", "last_us",
    "sport", "dport", Filler(1), "tcp_flags", "proto", "tos",
    ("src_as", 2), ("dst_as", 2), "src_length", "dst_length", Filler(2),   # (routes: --routes)
)
LAYOUT = Layout(0, RECORD_ITEMS, "v9", 4)
assert LAYOUT.record_size == 48, "Cisco's v5 record is 48 bytes"


class V5Encoder(Encoder):
    VERSION = 5
    CAPABILITIES = CAPABILITIES
    HEADER_SIZE = HEADER_SIZE
    SETS = False
    MAX_SPAN_MS = MAX_SPAN_MS
    MAX_RECORDS = MAX_RECORDS

    def __init__(self, engine_type=0, engine_id=0, max_size=HEADER_SIZE + MAX_RECORDS * LAYOUT.record_size,
                 sampling_interval=1, sampling_random=False, boot_lead_ms=60_000, stride=RECORD_SIZE):
        layout = LAYOUT if stride == RECORD_SIZE else Layout(0, RECORD_ITEMS, "v9", 4, stride)
        super().__init__([layout if ipver == 4 else None for ipver, _ in CLASSES],
                         max_size, sampling_interval, sampling_random)
        self.engine_type = engine_type
        self.engine_id = engine_id
        self.uptime = Uptime(boot_lead_ms)

    def header_fields(self):
        """Cisco's v5 header: version, count, sysUptime, UNIX seconds and nanoseconds,
        flow_sequence (flows before), engine type and ID, sampling."""
        return ((CONSTANT, 2, 5), (RECORDS, 2), (UPTIME_MS, 4), (EXPORT_SECONDS, 4), (EXPORT_NANOSECONDS, 4),
                (SEQUENCE, 4), (CONSTANT, 1, self.engine_type), (CONSTANT, 1, self.engine_id),
                (CONSTANT, 2, self.sampling_field))

    @property
    def sampling_field(self):
        if self.sampling_interval <= 1:
            return 0
        mode = SAMPLING_MODE_RANDOM if self.sampling_random else SAMPLING_MODE_DETERMINISTIC
        return mode << 14 | min(self.sampling_interval, MAX_SAMPLING_INTERVAL)
