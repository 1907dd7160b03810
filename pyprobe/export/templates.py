"""Templates shared by the v9 and IPFIX encoders: which fields, how long, where from.

A Template lists (element id, length) pairs in the order the compiled encoder
(ext/encode.pyx) writes them, and describes itself as a template record.
Element ids are the same numbers in RFC 3954 and IANA's IPFIX registry.
"""

import struct

from .._encode import LAYOUT_SIZES

_FORMAT_BY_LENGTH = {1: "B", 2: "H", 4: "I", 8: "Q"}

# information elements (RFC 3954 names / IPFIX names)
OCTETS = 1                 # IN_BYTES / octetDeltaCount
PACKETS = 2                # IN_PKTS / packetDeltaCount
PROTOCOL = 4               # PROTOCOL / protocolIdentifier
TOS = 5                    # SRC_TOS / ipClassOfService
TCP_FLAGS = 6              # TCP_FLAGS / tcpControlBits
SRC_PORT = 7               # L4_SRC_PORT / sourceTransportPort
SRC_IPV4 = 8               # IPV4_SRC_ADDR / sourceIPv4Address
INPUT_IF = 10              # INPUT_SNMP / ingressInterface
DST_PORT = 11              # L4_DST_PORT / destinationTransportPort
DST_IPV4 = 12              # IPV4_DST_ADDR / destinationIPv4Address
OUTPUT_IF = 14             # OUTPUT_SNMP / egressInterface
LAST_SWITCHED = 21         # v9: uptime ms of the last packet
FIRST_SWITCHED = 22        # v9: uptime ms of the first packet
SRC_IPV6 = 27
DST_IPV6 = 28
ICMP_TYPE = 32             # ICMP_TYPE / icmpTypeCodeIPv4
SAMPLING_INTERVAL = 34     # v9 options
SAMPLING_ALGORITHM = 35
EXPORTED_MESSAGES = 41     # exportedMessageTotalCount
EXPORTED_RECORDS = 42      # exportedFlowRecordTotalCount
VLAN = 58                  # SRC_VLAN / vlanId
IP_VERSION = 60            # IP_PROTOCOL_VERSION / ipVersion
FLOW_END_REASON = 136
ICMP_TYPE_IPV6 = 139       # icmpTypeCodeIPv6
EXPORTING_PROCESS_ID = 144
OBSERVATION_DOMAIN_ID = 149
FLOW_START_MS = 152        # flowStartMilliseconds
FLOW_END_MS = 153          # flowEndMilliseconds
IGNORED_PACKETS = 164      # ignoredPacketTotalCount
SELECTOR_ALGORITHM = 304
SAMPLING_PACKET_INTERVAL = 305
SAMPLING_PACKET_SPACE = 306

# v9 scope field type (RFC 3954 section 6.1)
SCOPE_SYSTEM = 1


class Template:
    """A data template: its id, its (element id, length) fields, and the compiled
    layout (pyprobe._encode) that writes records in exactly that order."""

    def __init__(self, template_id, fields, layout):
        self.id = template_id
        self.fields = fields
        self.layout = layout
        self.record_size = sum(length for _, length in fields)
        assert self.record_size == LAYOUT_SIZES[layout], f"template {template_id} does not match its layout"

    def template_record(self):
        """Template ID, field count, then (type, length) pairs: the same in v9 and IPFIX."""
        return struct.pack(f">HH{2 * len(self.fields)}H", self.id, len(self.fields),
                           *[n for ie, length in self.fields for n in (ie, length)])


class OptionsTemplate:
    """An options template: scope fields, then option fields, with their values."""

    def __init__(self, template_id, scope, options):
        self.id = template_id
        self.scope = scope            # [(ie, length)]
        self.options = options        # [(ie, length)]
        self.struct = struct.Struct(">" + "".join(_FORMAT_BY_LENGTH[length] for _, length in scope + options))
        self.record_size = self.struct.size

    def pack(self, values):
        return self.struct.pack(*values)

    @staticmethod
    def pairs(fields):
        return [n for ie, length in fields for n in (ie, length)]


def pad4(data):
    return data + b"\0" * (-len(data) % 4)
