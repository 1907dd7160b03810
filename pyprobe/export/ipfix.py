"""IPFIX (RFC 7011) messages, information elements as IANA numbers them.

Sequence number = data records (options data records included) sent in this
observation domain before this message. Flows go in the configured observation
domain; options about the exporter (sampling, statistics) in domain 0. Record times are absolute
milliseconds, so replayed captures keep their dates whatever their jumps.
"""

import struct

from .._encode import RECORD_SIZE
from .encoder import (CONSTANT, EXPORT_SECONDS, INTERFACE_DESCRIPTION_BYTES, INTERFACE_NAME_BYTES, LENGTH,
                      SEQUENCE, SET_HEADER, TEXT, Capabilities, OptionsTemplate, TemplateEncoder,
                      data_templates, header_program, set_bytes)

CAPABILITIES = Capabilities(name="IPFIX", ipv6=True, counter_bits=64, uptime=False, max_active_seconds=float("inf"),
                            templates=True, options=True, tcp=True, withdrawal=True, enterprise_fields=True)
HEADER_SIZE = 16
SEQUENCE_FIELD = struct.Struct(">I")  # at byte 8 of the header
TEMPLATE_SET_ID = 2
OPTIONS_TEMPLATE_SET_ID = 3
SELECTOR_SYSTEMATIC_COUNT = 1     # IANA selectorAlgorithm: systematic count-based sampling
SELECTOR_RANDOM_N_OF_N = 3        # random n-out-of-N sampling
EXPORTING_PROCESS = 1
EXPORTER_DOMAIN = 0               # RFC 7011 3.1: "no specific Observation Domain", e.g. exporter statistics
# options elements (IANA numbers)
EXPORTED_MESSAGES, EXPORTED_RECORDS, EXPORTING_PROCESS_ID, OBSERVATION_DOMAIN_ID = 41, 42, 144, 149
IGNORED_PACKETS, SELECTOR_ALGORITHM, SAMPLING_PACKET_INTERVAL, SAMPLING_PACKET_SPACE = 164, 304, 305, 306
INGRESS_INTERFACE, INTERFACE_NAME, INTERFACE_DESCRIPTION = 10, 82, 83

# The data templates: fields from pyprobe/fields.py, in wire order.
FIELDS = ("octets", "packets", "first_us", "last_us", "src", "dst", "in_if", "out_if", "sport", "dport",
          "tcp_flags", "vlan", "proto", "tos", "end_reason", "ipver", "min_ttl", "max_ttl", "direction")
ICMP_FIELDS = FIELDS[:10] + ("icmp_type_code",) + FIELDS[10:]
TEMPLATE_IDS = {(4, False): 256, (6, False): 257, (4, True): 260, (6, True): 261}
SAMPLING_OPTIONS = OptionsTemplate(258, scope=[(OBSERVATION_DOMAIN_ID, 4)],
                                   options=[(SAMPLING_PACKET_INTERVAL, 4), (SAMPLING_PACKET_SPACE, 4),
                                            (SELECTOR_ALGORITHM, 2)])
STATISTICS_OPTIONS = OptionsTemplate(259, scope=[(EXPORTING_PROCESS_ID, 4)],
                                     options=[(EXPORTED_MESSAGES, 8), (EXPORTED_RECORDS, 8), (IGNORED_PACKETS, 8)])
INTERFACE_OPTIONS = OptionsTemplate(262, scope=[(INGRESS_INTERFACE, 4)],
                                    options=[(INTERFACE_NAME, INTERFACE_NAME_BYTES, TEXT),
                                             (INTERFACE_DESCRIPTION, INTERFACE_DESCRIPTION_BYTES, TEXT)])


class IpfixEncoder(TemplateEncoder):
    VERSION = 10
    TEMPLATE_SET_ID = TEMPLATE_SET_ID
    CAPABILITIES = CAPABILITIES
    HEADER_SIZE = HEADER_SIZE
    SET_OVERHEAD = 4                  # set header; IPFIX sets need no padding

    def __init__(self, max_size=1472, record=None, totals=False, stride=RECORD_SIZE, **settings):
        super().__init__(data_templates("ipfix", FIELDS, ICMP_FIELDS, TEMPLATE_IDS, record, totals, stride), max_size,
                         **settings)
        self.exporter_sequence = 0     # of observation domain 0
        self.exporter_header = header_program(self.header_fields(EXPORTER_DOMAIN))
        self.record_sizes = {t.id: t.record_size
                             for t in [t for t in self.layouts if t] + [SAMPLING_OPTIONS, STATISTICS_OPTIONS,
                                                                        INTERFACE_OPTIONS]}

    def header_fields(self, domain=None):
        """RFC 7011 section 3.1: version, length, export time, sequence, observation domain."""
        return ((CONSTANT, 2, 10), (LENGTH, 2), (EXPORT_SECONDS, 4), (SEQUENCE, 4),
                (CONSTANT, 4, self.domain_id if domain is None else domain))

    def _options_sets(self, ignored_packets):
        """The sampling and statistics options templates and one data record each, the
        interface options template and a record per interface captured (its name):
        (set bytes, data records in it)."""
        options = [SAMPLING_OPTIONS, STATISTICS_OPTIONS] + ([INTERFACE_OPTIONS] if self.interfaces else [])
        templates = b"".join(struct.pack(f">HHH{len(o.pairs())}H", o.id, len(o.scope) + len(o.options),
                                         len(o.scope), *o.pairs())
                             for o in options)
        algorithm = SELECTOR_RANDOM_N_OF_N if self.sampling_random else SELECTOR_SYSTEMATIC_COUNT
        sampling = SAMPLING_OPTIONS.pack([self.domain_id, 1, self.sampling_interval - 1, algorithm])
        statistics = STATISTICS_OPTIONS.pack([EXPORTING_PROCESS, self.messages_sent, self.records_sent,
                                              ignored_packets])
        return ([(set_bytes(OPTIONS_TEMPLATE_SET_ID, templates, pad=False), 0),
                 (set_bytes(SAMPLING_OPTIONS.id, sampling, pad=False), 1),
                 (set_bytes(STATISTICS_OPTIONS.id, statistics, pad=False), 1)]
                + INTERFACE_OPTIONS.data_sets(self.interfaces, self.max_size, pad=False))

    def template_sets(self, now_ms, ignored_packets, preview=False):
        """The data templates; the options too when the flows themselves are in domain 0.

        Otherwise the options go first in a message of observation domain 0, which RFC 7011
        section 3.1 reserves for that, with a sequence of its own: the flows' domain then
        counts flow records only, which is what collectors such as nfdump check."""
        sets = [(set_bytes(TEMPLATE_SET_ID, t.template_record(), pad=False), 0) for t in self.layouts if t]
        if self.domain_id == EXPORTER_DOMAIN:
            return [], sets + self._options_sets(ignored_packets)
        if preview:
            return [], sets
        side, options = [], self._options_sets(ignored_packets)
        while options:                   # as many messages as the interface records need
            body, records, options = self._control_that_fits(options)
            side.append(self.framed(body, records, now_ms, header=self.exporter_header,
                                    sequence=self.exporter_sequence))
            self.exporter_sequence += records
            self.messages_sent += 1
        return side, sets

    def control_message(self, now_ms, sets, records, data_records):
        self.messages_sent += 1
        return self.framed(sets, data_records, now_ms)

    def data_record_count(self, message):
        """Data records (options data records included) in one of our messages."""
        count, pos = 0, HEADER_SIZE
        while pos + 4 <= len(message):
            set_id, length = SET_HEADER.unpack_from(message, pos)
            if set_id in self.record_sizes:
                count += (length - 4) // self.record_sizes[set_id]
            pos += length
        return count

    def renumber(self, message, counters):
        """Give a message the sequence number of its place in a new stream (a TCP connection
        starts one): counters maps observation domain -> data records sent so far."""
        domain = SEQUENCE_FIELD.unpack_from(message, 12)[0]
        sequence = counters.get(domain, 0)
        counters[domain] = sequence + self.data_record_count(message)
        return message[:8] + SEQUENCE_FIELD.pack(sequence & 0xffffffff) + message[12:]
