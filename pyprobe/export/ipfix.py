"""IPFIX (RFC 7011) messages, information elements as IANA numbers them.

Sequence number = data records (options data records included) sent in this
observation domain before this message. Flows go in the configured observation
domain; options about the exporter (sampling, statistics) in domain 0. Record times are absolute
milliseconds, so replayed captures keep their dates whatever their jumps.
"""

import struct
import sys

from . import messages
from .._encode import LAYOUT_IPFIX_IPV4, LAYOUT_IPFIX_IPV6
from .templates import (DST_IPV4, DST_IPV6, DST_PORT, EXPORTED_MESSAGES, EXPORTED_RECORDS, EXPORTING_PROCESS_ID,
                        FLOW_END_MS, FLOW_END_REASON, FLOW_START_MS, ICMP_TYPE, ICMP_TYPE_IPV6, IGNORED_PACKETS,
                        INPUT_IF, IP_VERSION, OBSERVATION_DOMAIN_ID, OCTETS, OUTPUT_IF, PACKETS, PROTOCOL,
                        SAMPLING_PACKET_INTERVAL, SAMPLING_PACKET_SPACE, SELECTOR_ALGORITHM, SRC_IPV4, SRC_IPV6,
                        SRC_PORT, TCP_FLAGS, TOS, VLAN, OptionsTemplate, Template)

VERSION = 10
HEADER = struct.Struct(">HHIII")
HEADER_SIZE = HEADER.size
TEMPLATE_SET_ID = 2
OPTIONS_TEMPLATE_SET_ID = 3
SELECTOR_SYSTEMATIC_COUNT = 1     # IANA selectorAlgorithm: systematic count-based sampling
SELECTOR_RANDOM_N_OF_N = 3        # random n-out-of-N sampling
EXPORTING_PROCESS = 1
MAX_SPAN_MS = 2**62               # absolute times: records of any age share a message


def _data_template(template_id, address_length, src_ie, dst_ie, icmp_ie, layout):
    """Field order is ext/encode.pyx's pack_ipfix."""
    return Template(template_id, [
        (OCTETS, 8), (PACKETS, 8), (FLOW_START_MS, 8), (FLOW_END_MS, 8),
        (src_ie, address_length), (dst_ie, address_length), (INPUT_IF, 4), (OUTPUT_IF, 4),
        (SRC_PORT, 2), (DST_PORT, 2), (TCP_FLAGS, 2), (VLAN, 2), (icmp_ie, 2),
        (PROTOCOL, 1), (TOS, 1), (FLOW_END_REASON, 1), (IP_VERSION, 1),
    ], layout)


TEMPLATES = {4: _data_template(256, 4, SRC_IPV4, DST_IPV4, ICMP_TYPE, LAYOUT_IPFIX_IPV4),
             6: _data_template(257, 16, SRC_IPV6, DST_IPV6, ICMP_TYPE_IPV6, LAYOUT_IPFIX_IPV6)}
SAMPLING_OPTIONS = OptionsTemplate(258, scope=[(OBSERVATION_DOMAIN_ID, 4)],
                                   options=[(SAMPLING_PACKET_INTERVAL, 4), (SAMPLING_PACKET_SPACE, 4),
                                            (SELECTOR_ALGORITHM, 2)])
STATISTICS_OPTIONS = OptionsTemplate(259, scope=[(EXPORTING_PROCESS_ID, 4)],
                                     options=[(EXPORTED_MESSAGES, 8), (EXPORTED_RECORDS, 8), (IGNORED_PACKETS, 8)])
OPTIONS_DATA_RECORDS = 2
EXPORTER_DOMAIN = 0               # RFC 7011 3.1: "no specific Observation Domain", e.g. exporter statistics


def new_state(**settings):
    return messages.TemplateState(**settings)


def _options_template_record(options):
    fields = options.scope + options.options
    return struct.pack(f">HHH{2 * len(fields)}H", options.id, len(fields), len(options.scope),
                       *options.pairs(fields))


def _options_sets(state, ignored_packets):
    """The sampling and statistics options templates and one data record each."""
    options_templates = b"".join(_options_template_record(o) for o in (SAMPLING_OPTIONS, STATISTICS_OPTIONS))
    algorithm = SELECTOR_RANDOM_N_OF_N if state.sampling_random else SELECTOR_SYSTEMATIC_COUNT
    sampling = SAMPLING_OPTIONS.pack([state.domain_id, 1, state.sampling_interval - 1, algorithm])
    statistics = STATISTICS_OPTIONS.pack([EXPORTING_PROCESS, state.messages_sent, state.records_sent,
                                          ignored_packets])
    return (messages.set_bytes(OPTIONS_TEMPLATE_SET_ID, options_templates, pad=False)
            + messages.set_bytes(SAMPLING_OPTIONS.id, sampling, pad=False)
            + messages.set_bytes(STATISTICS_OPTIONS.id, statistics, pad=False))


def control_sets(state, now_ms, ignored_packets):
    """The data templates; the options too when the flows themselves are in domain 0."""
    sets = messages.set_bytes(TEMPLATE_SET_ID, b"".join(t.template_record() for t in TEMPLATES.values()),
                              pad=False)
    if state.domain_id == EXPORTER_DOMAIN:
        return sets + _options_sets(state, ignored_packets), OPTIONS_DATA_RECORDS
    return sets, 0


def side_messages(state, now_ms, ignored_packets):
    """Options records about the whole exporter go in a message of observation domain 0, which
    RFC 7011 section 3.1 reserves for that, with a sequence of its own: the flows' domain then
    counts flow records only, which is what collectors such as nfdump check."""
    if state.domain_id == EXPORTER_DOMAIN:
        return []
    body = _options_sets(state, ignored_packets)
    sequence = state.extra.get("exporter_sequence", 0)
    state.extra["exporter_sequence"] = sequence + OPTIONS_DATA_RECORDS
    state.messages_sent += 1
    return [HEADER.pack(VERSION, HEADER_SIZE + len(body), now_ms // 1000, sequence & 0xffffffff,
                        EXPORTER_DOMAIN) + body]


def message(state, now_ms, control, options_data_records, records, span):
    body = control + records.data_sets(TEMPLATES, 0, pad=False)
    header = HEADER.pack(VERSION, HEADER_SIZE + len(body), now_ms // 1000, state.sequence & 0xffffffff,
                         state.domain_id)
    state.sequence += options_data_records + len(records)
    return header + body


def encode(buf, state, now_ms, ignored_packets=0):
    """Packed meter records -> IPFIX messages."""
    return messages.encode(sys.modules[__name__], buf, state, now_ms, ignored_packets)


def records_per_datagram(state):
    return messages.records_per_datagram(sys.modules[__name__], state)


RECORD_SIZES = {t.id: t.record_size for t in list(TEMPLATES.values()) + [SAMPLING_OPTIONS, STATISTICS_OPTIONS]}
SEQUENCE = struct.Struct(">I")


def data_record_count(message):
    """Data records (options data records included) in one of our messages."""
    count, pos = 0, HEADER_SIZE
    while pos + 4 <= len(message):
        set_id, length = messages.SET_HEADER.unpack_from(message, pos)
        if set_id in RECORD_SIZES:
            count += (length - 4) // RECORD_SIZES[set_id]
        pos += length
    return count


def renumber(message, counters):
    """Give a message the sequence number of its place in a new stream (a TCP connection
    starts one): counters maps observation domain -> data records sent so far."""
    domain = SEQUENCE.unpack_from(message, 12)[0]
    sequence = counters.get(domain, 0)
    counters[domain] = sequence + data_record_count(message)
    return message[:8] + SEQUENCE.pack(sequence & 0xffffffff) + message[12:]
