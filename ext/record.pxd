# The flow record the meter hands out and the encoders read: 96 bytes, native
# byte order, no padding. pyprobe/records.py describes the same layout to Python.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef packed struct FlowRecord:
    uint8_t src[16]       # IPv4 in the first 4 bytes
    uint8_t dst[16]
    uint64_t packets
    uint64_t octets
    int64_t first_us
    int64_t last_us
    uint32_t in_if
    uint32_t mpls_label
    uint16_t sport
    uint16_t dport        # ICMP/ICMPv6: type*256 + code
    uint16_t vlan
    uint8_t ipver
    uint8_t proto
    uint8_t tos
    uint8_t tcp_flags
    uint8_t end_reason    # IPFIX flowEndReason
    uint8_t src_mac[6]
    uint8_t dst_mac[6]
    uint8_t _pad
