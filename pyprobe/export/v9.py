"""NetFlow v9 (RFC 3954) export packets.

Header count = every record in the packet (template, options template, data and
options data records); sequence = export packets sent before this one.
Record times are sysUptime milliseconds (see ext/_encode.pyx, Uptime).
"""

import struct

from .._encode import MAX_ACTIVE_SECONDS, MAX_SPAN_MS, Uptime
from ..fields import BY_NAME, MEMBER, RECORD_SIZE
from .encoder import (CONSTANT, EXPORT_SECONDS, INTERFACE_DESCRIPTION_BYTES, INTERFACE_NAME_BYTES, RECORDS, SEQUENCE,
                      TEXT, UPTIME_MS, Capabilities, OptionsTemplate, TemplateEncoder, data_templates, set_bytes)

CAPABILITIES = Capabilities(name="NetFlow v9", ipv6=True, counter_bits=64, uptime=True,
                            max_active_seconds=MAX_ACTIVE_SECONDS,
                            templates=True, options=True, tcp=False)
TEMPLATE_SET_ID = 0
OPTIONS_TEMPLATE_SET_ID = 1
SAMPLING_DETERMINISTIC = 1        # RFC 3954 SAMPLING_ALGORITHM values
SAMPLING_RANDOM = 2
SCOPE_SYSTEM = 1                  # options scope field types (RFC 3954 section 6.1)
SCOPE_INTERFACE = 2
SAMPLING_INTERVAL = 34
SAMPLING_ALGORITHM = 35
IF_NAME = 82                      # Cisco's v9 field types, the numbers IPFIX took over
IF_DESC = 83

# The data templates: fields from pyprobe/fields.py, in wire order.
FIELDS = ("octets", "packets", "src", "dst", "in_if", "out_if", "first_us", "last_us", "sport", "dport",
          "vlan", "proto", "tos", "tcp_flags", "ipver", "min_ttl", "max_ttl", "direction")
ICMP_FIELDS = FIELDS[:10] + ("icmp_type_code",) + FIELDS[10:]
TEMPLATE_IDS = {(4, False): 256, (6, False): 257, (4, True): 260, (6, True): 261}
# The interval and the algorithm in records of their own: nfdump 1.7.1 takes an options
# template as a sampler only if it has SAMPLING_INTERVAL without SAMPLING_ALGORITHM.
SAMPLING_OPTIONS = OptionsTemplate(258, scope=[(SCOPE_SYSTEM, 4)], options=[(SAMPLING_INTERVAL, 4)])
ALGORITHM_OPTIONS = OptionsTemplate(263, scope=[(SCOPE_SYSTEM, 4)], options=[(SAMPLING_ALGORITHM, 1)])
INTERFACE_OPTIONS = OptionsTemplate(262, scope=[(SCOPE_INTERFACE, 4)],
                                    options=[(IF_NAME, INTERFACE_NAME_BYTES, TEXT),
                                             (IF_DESC, INTERFACE_DESCRIPTION_BYTES, TEXT)])


class V9Encoder(TemplateEncoder):
    VERSION = 9
    TEMPLATE_SET_ID = TEMPLATE_SET_ID
    CAPABILITIES = CAPABILITIES
    HEADER_SIZE = 20
    PAD = True
    SET_OVERHEAD = 4 + 3              # set header, padding to 4 bytes
    MAX_SPAN_MS = MAX_SPAN_MS         # records sharing a packet must fit its 32-bit uptime
    SEQUENCE_COUNTS_RECORDS = False   # (it counts export packets)

    def __init__(self, max_size=1472, boot_lead_ms=60_000, record=None, totals=False, stride=RECORD_SIZE,
                 table=(BY_NAME, MEMBER), **settings):
        super().__init__(data_templates("v9", FIELDS, ICMP_FIELDS, TEMPLATE_IDS, record, totals, stride, table),
                         max_size, **settings)
        self.uptime = Uptime(boot_lead_ms)

    def template_sets(self, now_ms, ignored_packets, preview=False):
        """Each data template; the sampling options templates (each in a set of its own) and
        their data records; the interface options template and a record per interface
        captured (its name)."""
        algorithm = SAMPLING_RANDOM if self.sampling_random else SAMPLING_DETERMINISTIC
        sampling = [(SAMPLING_OPTIONS, [0, self.sampling_interval]), (ALGORITHM_OPTIONS, [0, algorithm])]
        options = [SAMPLING_OPTIONS, ALGORITHM_OPTIONS] + ([INTERFACE_OPTIONS] if self.interfaces else [])
        return [], ([(set_bytes(TEMPLATE_SET_ID, t.template_record(), pad=False), 1) for t in self.layouts if t]
                    + [(set_bytes(OPTIONS_TEMPLATE_SET_ID, options_template(o), pad=True), 1) for o in options]
                    + [(set_bytes(o.id, o.pack(values), pad=True), 1) for o, values in sampling]
                    + ([] if preview else INTERFACE_OPTIONS.data_sets(self.interfaces, self.max_size, pad=True)))

    def header_fields(self):
        """RFC 3954 section 5.1: version, count, sysUptime, UNIX seconds, sequence, source ID."""
        return ((CONSTANT, 2, 9), (RECORDS, 2), (UPTIME_MS, 4), (EXPORT_SECONDS, 4), (SEQUENCE, 4),
                (CONSTANT, 4, self.domain_id))

    def control_message(self, now_ms, sets, records, data_records):
        self.messages_sent += 1
        return self.framed(sets, records, *self.uptime.header_times(now_ms, now_ms, now_ms))


def options_template(options):
    """v9's options template record: scope and option lengths in bytes (4 per field)."""
    pairs = options.pairs()
    return struct.pack(f">HHH{len(pairs)}H", options.id, 4 * len(options.scope), 4 * len(options.options), *pairs)
