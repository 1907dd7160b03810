"""IPFIX (RFC 7011) messages, information elements as IANA numbers them.

Sequence number = data records (options data records included) sent in this
observation domain before this message. Flows and the options about them (sampling,
exporter statistics, interface names) share the configured observation domain, so a
collector sees one exporter and applies the sampling to its flows. Record times are
absolute milliseconds, so replayed captures keep their dates whatever their jumps.

The options data records go out at start, on request (SIGUSR1, a new TCP connection)
and every refresh_ms of flow clock (at every template refresh if that is 0), in messages with the
templates and no flow record: nfdump (1.7 and later) leaves options data records out of
its sequence check, so each such message after the first flows costs one counted
sequence failure there (those at start cost none).

Collectors' readings this layout is made for:
  * each options template in a set of its own: pmacct's nfacctd (before 1.7.8) steps
    to the next options template of a set by (field count + scope field count) * 4
    bytes, misreads the second and logs it as malformed;
  * nfdump 1.7.1 takes an options template as a sampler only if it has
    samplingPacketSpace (306) and neither selectorId (302) nor selectorAlgorithm (304),
    so the algorithm goes in an options record of its own.
"""

import struct

from .. import _encode
from ..fields import BY_NAME, MEMBER, RECORD_SIZE
from .encoder import (CONSTANT, EXPORT_SECONDS, INTERFACE_DESCRIPTION_BYTES, INTERFACE_NAME_BYTES, LENGTH,
                      SEQUENCE, SET_HEADER, TEXT, Capabilities, OptionsTemplate, TemplateEncoder,
                      data_templates, set_bytes)

CAPABILITIES = Capabilities(name="IPFIX", ipv6=True, counter_bits=64, uptime=False, max_active_seconds=float("inf"),
                            templates=True, options=True, tcp=True, withdrawal=True, enterprise_fields=True)
HEADER_SIZE = 16
SEQUENCE_FIELD = struct.Struct(">I")  # at byte 8 of the header
TEMPLATE_SET_ID = 2
OPTIONS_TEMPLATE_SET_ID = 3
SELECTOR_SYSTEMATIC_COUNT = 1     # IANA selectorAlgorithm: systematic count-based sampling
SELECTOR_RANDOM_N_OF_N = 3        # random n-out-of-N sampling
EXPORTING_PROCESS = 1
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
                                   options=[(SAMPLING_PACKET_INTERVAL, 4), (SAMPLING_PACKET_SPACE, 4)])
SELECTOR_OPTIONS = OptionsTemplate(263, scope=[(OBSERVATION_DOMAIN_ID, 4)], options=[(SELECTOR_ALGORITHM, 2)])
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

    def __init__(self, max_size=1472, record=None, totals=False, stride=RECORD_SIZE, table=(BY_NAME, MEMBER),
                 **settings):
        super().__init__(data_templates("ipfix", FIELDS, ICMP_FIELDS, TEMPLATE_IDS, record, totals, stride, table),
                         max_size, **settings)
        self.options_wanted = True     # options data records due with the next templates
        self.options_ms = None         # flow clock when they last went
        fixed = [t for t in self.layouts if t and not t.variable] + list(OPTIONS)
        self.record_sizes = {t.id: t.record_size for t in fixed}
        self.variable_programs = {t.id: t.program for t in self.layouts if t and t.variable}

    def header_fields(self):
        """RFC 7011 section 3.1: version, length, export time, sequence, observation domain."""
        return ((CONSTANT, 2, 10), (LENGTH, 2), (EXPORT_SECONDS, 4), (SEQUENCE, 4), (CONSTANT, 4, self.domain_id))

    def request_templates(self):
        super().request_templates()
        self.options_wanted = True

    def _options_due(self, now_ms):
        return (self.options_wanted or self.options_ms is None or not self.refresh_ms
                or now_ms - self.options_ms >= self.refresh_ms)

    def _options_data_sets(self, ignored_packets, interfaces=True):
        """One data record each of sampling, selector algorithm and statistics, and one per
        interface captured (its name): [(set bytes, data records in it)]."""
        algorithm = SELECTOR_RANDOM_N_OF_N if self.sampling_random else SELECTOR_SYSTEMATIC_COUNT
        records = [(SAMPLING_OPTIONS, [self.domain_id, 1, self.sampling_interval - 1]),
                   (SELECTOR_OPTIONS, [self.domain_id, algorithm]),
                   (STATISTICS_OPTIONS, [EXPORTING_PROCESS, self.messages_sent, self.records_sent, ignored_packets])]
        return ([(set_bytes(o.id, o.pack(values), pad=False), 1) for o, values in records]
                + (INTERFACE_OPTIONS.data_sets(self.interfaces, self.max_size, pad=False) if interfaces else []))

    def template_sets(self, now_ms, ignored_packets, preview=False):
        """The data templates and the options templates, each options template in a set of its
        own; the options data records too when due (see the module docstring)."""
        sets = [(set_bytes(TEMPLATE_SET_ID, t.template_record(), pad=False), 0) for t in self.layouts if t]
        sets += [(set_bytes(OPTIONS_TEMPLATE_SET_ID, options_template(o), pad=False), 0)
                 for o in OPTIONS if o is not INTERFACE_OPTIONS or self.interfaces]
        if preview:
            return [], sets + self._options_data_sets(ignored_packets, interfaces=False)
        if not self._options_due(now_ms):
            return [], sets
        self.options_wanted = False
        self.options_ms = now_ms
        return self._messages_of(sets + self._options_data_sets(ignored_packets), now_ms), []

    def _messages_of(self, chunks, now_ms):
        """Messages of these sets and no flow record: nfdump resynchronises its sequence
        check silently until it has seen flow records, so options data records sent at
        start before any flow cost no failure there."""
        messages = []
        while chunks:
            body, data_records, chunks = self._control_that_fits(chunks)
            messages.append(self.control_message(now_ms, body, data_records, data_records))
            self.since_templates += 1            # (the template refresh counts every datagram)
        return messages

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
            elif set_id in self.variable_programs:
                count += _encode.set_records(message[pos + 4:pos + length], self.variable_programs[set_id])
            pos += length
        return count

    def renumber(self, message, counters):
        """Give a message the sequence number of its place in a new stream (a TCP connection
        starts one): counters maps observation domain -> data records sent so far."""
        domain = SEQUENCE_FIELD.unpack_from(message, 12)[0]
        sequence = counters.get(domain, 0)
        counters[domain] = sequence + self.data_record_count(message)
        return message[:8] + SEQUENCE_FIELD.pack(sequence & 0xffffffff) + message[12:]


OPTIONS = (SAMPLING_OPTIONS, SELECTOR_OPTIONS, STATISTICS_OPTIONS, INTERFACE_OPTIONS)


def options_template(options):
    """RFC 7011 section 3.4.2.2: template id, field count, scope field count, then the fields."""
    pairs = options.pairs()
    return struct.pack(f">HHH{len(pairs)}H", options.id, len(options.scope) + len(options.options),
                       len(options.scope), *pairs)
