"""NetFlow v9 (RFC 3954) export packets.

Header count = every record in the packet (template, options template, data and
options data records); sequence = export packets sent before this one.
Record times are sysUptime milliseconds (see uptime.py).
"""

import struct
import sys

from . import messages
from .records import icmp_type_code
from .templates import (FIRST_SWITCHED, ICMP_TYPE, INPUT_IF, IP_VERSION, LAST_SWITCHED, OCTETS, OUTPUT_IF,
                        PACKETS, PROTOCOL, SAMPLING_ALGORITHM, SAMPLING_INTERVAL, SCOPE_SYSTEM, SRC_IPV4,
                        SRC_IPV6, DST_IPV4, DST_IPV6, SRC_PORT, DST_PORT, TCP_FLAGS, TOS, VLAN,
                        OptionsTemplate, Template, attr, field)
from .uptime import Uptime

VERSION = 9
HEADER = struct.Struct(">HHIIII")
HEADER_SIZE = HEADER.size
TEMPLATE_SET_ID = 0
OPTIONS_TEMPLATE_SET_ID = 1
SAMPLING_DETERMINISTIC = 1        # RFC 3954 SAMPLING_ALGORITHM values
SAMPLING_RANDOM = 2


def _first(record, uptime):
    return uptime.relative(record.first_ms)


def _last(record, uptime):
    return uptime.relative(record.last_ms)


def _data_template(template_id, address_fmt, src_ie, dst_ie):
    return Template(template_id, [
        field(OCTETS, "Q", attr("octets")),
        field(PACKETS, "Q", attr("packets")),
        field(src_ie, address_fmt, attr("src")),
        field(dst_ie, address_fmt, attr("dst")),
        field(INPUT_IF, "I", attr("in_if")),
        field(OUTPUT_IF, "I", lambda r, c: 0),
        field(FIRST_SWITCHED, "I", _first),
        field(LAST_SWITCHED, "I", _last),
        field(SRC_PORT, "H", attr("sport")),
        field(DST_PORT, "H", attr("dport")),
        field(ICMP_TYPE, "H", lambda r, c: icmp_type_code(r)),
        field(VLAN, "H", attr("vlan")),
        field(PROTOCOL, "B", attr("proto")),
        field(TOS, "B", attr("tos")),
        field(TCP_FLAGS, "B", attr("tcp_flags")),
        field(IP_VERSION, "B", attr("ipver")),
    ])


TEMPLATES = {4: _data_template(256, "4s", SRC_IPV4, DST_IPV4),
             6: _data_template(257, "16s", SRC_IPV6, DST_IPV6)}
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


def message(state, now_ms, control, control_records, records, span):
    uptime = state.extra["uptime"]
    export_ms, uptime_ms = uptime.header_times(now_ms, *span)
    body = control + messages.data_sets(sys.modules[__name__], records, uptime, pad=True)
    header = HEADER.pack(VERSION, control_records + len(records), uptime_ms & 0xffffffff,
                         export_ms // 1000, state.sequence & 0xffffffff, state.domain_id)
    state.sequence += 1
    return header + body


def encode(buf, state, now_ms, ignored_packets=0):
    """Packed meter records -> NetFlow v9 export packets."""
    return messages.encode(sys.modules[__name__], buf, state, now_ms, ignored_packets)
