"""NetFlow v9 (RFC 3954) export packets.

Header count = every record in the packet (template, options template, data and
options data records); sequence = export packets sent before this one.
Record times are sysUptime milliseconds (see uptime.py).
"""

import struct
import sys

from . import messages
from .._encode import LAYOUT_V9_IPV4, LAYOUT_V9_IPV6
from .templates import (FIRST_SWITCHED, ICMP_TYPE, INPUT_IF, IP_VERSION, LAST_SWITCHED, OCTETS, OUTPUT_IF,
                        PACKETS, PROTOCOL, SAMPLING_ALGORITHM, SAMPLING_INTERVAL, SCOPE_SYSTEM, SRC_IPV4,
                        SRC_IPV6, DST_IPV4, DST_IPV6, SRC_PORT, DST_PORT, TCP_FLAGS, TOS, VLAN,
                        OptionsTemplate, Template)
from .uptime import MAX_SPAN_MS as UPTIME_SPAN_MS, Uptime

VERSION = 9
HEADER = struct.Struct(">HHIIII")
HEADER_SIZE = HEADER.size
MAX_SPAN_MS = UPTIME_SPAN_MS      # records sharing a packet must fit its 32-bit uptime (messages.py)
TEMPLATE_SET_ID = 0
OPTIONS_TEMPLATE_SET_ID = 1
SAMPLING_DETERMINISTIC = 1        # RFC 3954 SAMPLING_ALGORITHM values
SAMPLING_RANDOM = 2


def _data_template(template_id, address_length, src_ie, dst_ie, layout):
    """Field order is ext/encode.pyx's pack_v9."""
    return Template(template_id, [
        (OCTETS, 8), (PACKETS, 8), (src_ie, address_length), (dst_ie, address_length),
        (INPUT_IF, 4), (OUTPUT_IF, 4), (FIRST_SWITCHED, 4), (LAST_SWITCHED, 4),
        (SRC_PORT, 2), (DST_PORT, 2), (ICMP_TYPE, 2), (VLAN, 2),
        (PROTOCOL, 1), (TOS, 1), (TCP_FLAGS, 1), (IP_VERSION, 1),
    ], layout)


TEMPLATES = {4: _data_template(256, 4, SRC_IPV4, DST_IPV4, LAYOUT_V9_IPV4),
             6: _data_template(257, 16, SRC_IPV6, DST_IPV6, LAYOUT_V9_IPV6)}
SAMPLING_OPTIONS = OptionsTemplate(258, scope=[(SCOPE_SYSTEM, 4)],
                                   options=[(SAMPLING_INTERVAL, 4), (SAMPLING_ALGORITHM, 1)])


def new_state(**settings):
    state = messages.TemplateState(**settings)
    state.extra["uptime"] = Uptime()
    return state


def control_sets(state, now_ms, ignored_packets):
    """Both data templates, the sampling options template and its one data record."""
    templates = b"".join(t.template_record() for t in TEMPLATES.values())
    options = SAMPLING_OPTIONS
    options_template = struct.pack(f">HHH{2 * len(options.scope + options.options)}H", options.id,
                                   4 * len(options.scope), 4 * len(options.options),
                                   *options.pairs(options.scope + options.options))
    algorithm = SAMPLING_RANDOM if state.sampling_random else SAMPLING_DETERMINISTIC
    options_data = options.pack([0, state.sampling_interval, algorithm])
    sets = (messages.set_bytes(TEMPLATE_SET_ID, templates, pad=False)
            + messages.set_bytes(OPTIONS_TEMPLATE_SET_ID, options_template, pad=True)
            + messages.set_bytes(options.id, options_data, pad=True))
    return sets, len(TEMPLATES) + 2


def side_messages(state, now_ms, ignored_packets):
    """v9 counts packets, not records: the options ride in the same packet."""
    return []


def message(state, now_ms, control, control_records, records, span):
    uptime = state.extra["uptime"]
    export_ms, uptime_ms = uptime.header_times(now_ms, *span)
    body = control + records.data_sets(TEMPLATES, uptime.boot_ms, pad=True)
    header = HEADER.pack(VERSION, control_records + len(records), uptime_ms & 0xffffffff,
                         export_ms // 1000, state.sequence & 0xffffffff, state.domain_id)
    state.sequence += 1
    return header + body


def encode(buf, state, now_ms, ignored_packets=0):
    """Packed meter records -> NetFlow v9 export packets."""
    return messages.encode(sys.modules[__name__], buf, state, now_ms, ignored_packets)


def records_per_datagram(state):
    return messages.records_per_datagram(sys.modules[__name__], state)
