# Packet decoding for the flow meter: link layer -> outermost IP header -> ports.
#
# Every function is inline C working on a raw pointer and a captured length;
# a packet is either decoded into a Packet or ignored with a named reason.
# The flow is keyed on the outermost IP header: tunnels are not opened.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset

# Why a packet is ignored, TCP flags, ICMP's protocols: generated from pyprobe/fields.py's tables.
from codes cimport (IGNORE_NON_IP, IGNORE_TRUNCATED_L2, IGNORE_TRUNCATED_IP, IGNORE_BAD_IP, IGNORE_TRUNCATED_L4,
                    IGNORE_MPLS_PAYLOAD, TH_FIN, TH_SYN, TH_RST, PROTO_ICMP, PROTO_ICMPV6)

# libpcap link types (DLT_*) that the meter understands.
cdef enum:
    DLT_NULL = 0          # BSD loopback, address family in the writer's byte order
    DLT_EN10MB = 1        # Ethernet
    DLT_RAW_BSD = 12      # raw IP (DLT_RAW on most systems)
    DLT_RAW_OPENBSD = 14  # raw IP (DLT_RAW on OpenBSD)
    DLT_RAW = 101         # LINKTYPE_RAW as stored in files
    DLT_LOOP = 108        # OpenBSD loopback, address family in network order
    DLT_LINUX_SLL = 113
    DLT_IPV4 = 228
    DLT_IPV6 = 229
    DLT_LINUX_SLL2 = 276

# Which way a packet crossed its interface (IPFIX flowDirection).
cdef enum:
    DIR_INGRESS = 0
    DIR_EGRESS = 1
    DIR_BOTH = 2             # a meter's mode only: both, each record saying which

cdef enum:
    DECODED = -1

# What a batch says of each of its packets (Batch.meta, pyprobe/source/batch.py): 16 bytes,
# native byte order, pcapy-ng's next_batch layout.
cdef packed struct PacketMeta:
    uint32_t seconds
    uint32_t microseconds
    uint32_t offset           # of the packet's bytes in the batch's packets
    uint32_t length           # captured


cdef inline int64_t packet_time_us(const PacketMeta* m) noexcept nogil:
    """The packet's time, microseconds since the epoch."""
    return <int64_t>m.seconds * 1000000 + m.microseconds


# The flow key: every field a record can be keyed on, as the packet has it. The whole
# struct is masked word by word (a record definition's key mask: pyprobe/definitions.py),
# hashed and compared, so it is always zeroed before it is filled (padding included).
# A flow keeps its first packet's key unmasked: the fields a record does not key on are
# the first packet's values (TOS, VLAN, MACs, MPLS, flow label, fragment flags). (An
# AS-keyed record's meter puts the AS in the keyed address's place: Meter._route_as_in_place.)
cdef struct FlowKey:
    uint8_t src[16]       # IPv4 uses the first 4 bytes
    uint8_t dst[16]
    uint32_t in_if
    uint32_t mpls         # top label stack entry as IPFIX's stack section: label << 4 | EXP << 1 | bottom
                          # of stack (its TTL left out)
    uint32_t flow_label   # IPv6 flow label (20 bits)
    uint16_t sport
    uint16_t dport
    uint16_t vlan         # outer VLAN id
    uint16_t inner_vlan   # the second tag's VLAN id (802.1ad, QinQ)
    uint8_t ipver
    uint8_t proto
    uint8_t tos
    uint8_t frag          # IPFIX fragmentFlags: 0x40 don't fragment, 0x20 more fragments
    uint8_t direction     # DIR_INGRESS: in_if is where it came in; DIR_EGRESS: where it went out
    uint8_t src_mac[6]
    uint8_t dst_mac[6]
    uint8_t _pad[3]


cdef enum:
    MPLS_STACK_KEPT = 9   # label stack entries below the top one a packet keeps (mplsLabelStackSection2..10)


# One decoded packet: every key field filled, plus what is metered.
cdef struct Packet:
    FlowKey key
    uint32_t octets
    uint16_t tcp_window   # TCP: the header's window field (unscaled), if window_known
    uint8_t tcp_flags
    uint8_t ttl           # IPv4 TTL / IPv6 hop limit
    bint direction_known  # the link layer said which way (Linux cooked capture's packet type)
    bint window_known     # a TCP header long enough to hold the window
    uint64_t tcp_options  # the kinds (below 64) of its TCP options, as IPFIX tcpOptions' bits (tcp_option_kinds)
    uint32_t mpls_stack[MPLS_STACK_KEPT]   # the label stack entries below the top one, as the key's
                                           # mpls; 0 where the stack ends
    const uint8_t* payload  # TCP, UDP: the transport payload's captured bytes (valid while the batch is
    uint32_t payload_captured   # metered: flow extensions read them), NULL and 0 otherwise or if none
    uint32_t payload_length     # TCP, UDP: the payload's length as the headers give it (captured or not)


cdef inline void set_direction(Packet* pkt, uint16_t sll_packet_type) noexcept nogil:
    """Linux cooked capture's packet type: 4 (PACKET_OUTGOING) left through the interface."""
    pkt.key.direction = DIR_EGRESS if sll_packet_type == 4 else DIR_INGRESS
    pkt.direction_known = True


cdef inline bint is_icmp(uint8_t proto) noexcept nogil:
    """ICMP or ICMPv6: type*256 + code stands in the destination port."""
    return proto == PROTO_ICMP or proto == PROTO_ICMPV6


cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return (p[0] << 8) | p[1]


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef inline uint64_t tcp_option_kinds(const uint8_t* q, Py_ssize_t end) noexcept nogil:
    """The kinds below 64 of the options in a TCP header's bytes q[20:end], as IPFIX tcpOptions
    (RFC 5102) has them: kind K is bit K % 8 of the element's octet K // 8 (its first octet
    holds kinds 7..0), which is bit K ^ 56 of the unsigned64 value."""
    cdef Py_ssize_t i = 20
    cdef uint64_t kinds = 0
    cdef uint8_t kind
    while i < end:                      # (each step moves on: at most 40 of them)
        kind = q[i]
        if kind < 64:
            kinds |= (<uint64_t>1) << (kind ^ 56)
        if kind == 0:                   # end of option list: padding follows
            break
        if kind == 1:                   # no-operation: one byte
            i += 1
        elif i + 1 < end and q[i + 1] >= 2:
            i += q[i + 1]
        else:                           # its length cut off or impossible: where the next one starts is unknown
            break
    return kinds


cdef inline int decode_l4(const uint8_t* q, Py_ssize_t avail, Py_ssize_t length, Packet* pkt) noexcept nogil:
    """The transport header at q: avail bytes of it captured, length as the IP header says."""
    cdef uint8_t proto = pkt.key.proto
    if proto == 6:                      # TCP: ports, the flags byte, the window, the options' kinds
        if avail < 14:
            return IGNORE_TRUNCATED_L4
        pkt.key.sport = be16(q)
        pkt.key.dport = be16(q + 2)
        pkt.tcp_flags = q[13]
        if avail >= 16:
            pkt.tcp_window = be16(q + 14)
            pkt.window_known = True
        if q[12] >= 0x60:               # a data offset past 5 words: options, as far as they were captured
            pkt.tcp_options = tcp_option_kinds(q, min(<Py_ssize_t>(q[12] >> 4) * 4, avail))
        if q[12] >= 0x50:               # (a data offset below 5 words is no TCP header)
            set_payload(q, avail, length, (q[12] >> 4) * 4, pkt)
    elif proto == 17 or proto == 132 or proto == 136 or proto == 33:  # UDP, SCTP, UDP-Lite, DCCP
        if avail < 4:
            return IGNORE_TRUNCATED_L4
        pkt.key.sport = be16(q)
        pkt.key.dport = be16(q + 2)
        if proto == 17:
            set_payload(q, avail, length, 8, pkt)
    elif is_icmp(proto):                # ICMP, ICMPv6: Cisco puts type*256+code in the dst port
        if avail < 2:
            return IGNORE_TRUNCATED_L4
        pkt.key.dport = (q[0] << 8) | q[1]
    return DECODED


cdef inline void set_payload(const uint8_t* q, Py_ssize_t avail, Py_ssize_t length, Py_ssize_t header,
                             Packet* pkt) noexcept nogil:
    """The payload after a transport header of `header` bytes (q, avail, length: decode_l4's); a
    length below the header's (a short datagram) leaves none."""
    if length <= header:
        return
    pkt.payload_length = <uint32_t>(length - header)
    if avail > header:
        pkt.payload = q + header
        pkt.payload_captured = <uint32_t>min(avail, length) - <uint32_t>header


cdef inline int decode_ipv4(const uint8_t* p, Py_ssize_t n, Py_ssize_t off, Packet* pkt) noexcept nogil:
    cdef const uint8_t* q = p + off
    cdef Py_ssize_t rem = n - off
    cdef Py_ssize_t ihl, total
    if rem < 20:
        return IGNORE_TRUNCATED_IP
    if q[0] >> 4 != 4:
        return IGNORE_BAD_IP
    ihl = (q[0] & 0x0f) * 4
    if ihl < 20:
        return IGNORE_BAD_IP
    if ihl > rem:
        return IGNORE_TRUNCATED_IP
    total = be16(q + 2)
    if total == 0:
        total = rem                     # TSO on the capturing host leaves the length 0
    elif total < ihl:
        return IGNORE_BAD_IP
    pkt.octets = <uint32_t>total
    pkt.key.ipver = 4
    pkt.key.tos = q[1]
    pkt.ttl = q[8]
    pkt.key.proto = q[9]
    memcpy(pkt.key.src, q + 12, 4)
    memcpy(pkt.key.dst, q + 16, 4)
    pkt.key.frag = q[6] & 0x60          # DF, MF: where fragmentFlags has them
    if be16(q + 6) & 0x1fff:
        return DECODED                  # non-first fragment: no transport header, ports 0
    return decode_l4(q + ihl, rem - ihl, total - ihl, pkt)


cdef inline int decode_ipv6(const uint8_t* p, Py_ssize_t n, Py_ssize_t off, Packet* pkt) noexcept nogil:
    cdef const uint8_t* q = p + off
    cdef Py_ssize_t rem = n - off
    cdef Py_ssize_t pos = 40, hlen
    cdef uint16_t payload
    cdef uint8_t nh
    if rem < 40:
        return IGNORE_TRUNCATED_IP
    if q[0] >> 4 != 6:
        return IGNORE_BAD_IP
    payload = be16(q + 4)
    pkt.octets = <uint32_t>(payload + 40 if payload else rem)   # 0: jumbogram or TSO
    pkt.key.ipver = 6
    pkt.key.tos = (be16(q) >> 4) & 0xff
    pkt.key.flow_label = be32(q) & 0xfffff
    pkt.ttl = q[7]
    memcpy(pkt.key.src, q + 8, 16)
    memcpy(pkt.key.dst, q + 24, 16)
    nh = q[6]
    while True:
        if nh == 0 or nh == 43 or nh == 60 or nh == 51:   # hop-by-hop, routing, dst options, AH
            if pos + 2 > rem:
                return IGNORE_TRUNCATED_IP
            hlen = (q[pos + 1] + 2) * 4 if nh == 51 else (q[pos + 1] + 1) * 8
            if pos + hlen > rem:
                return IGNORE_TRUNCATED_IP
            nh = q[pos]
            pos += hlen
        elif nh == 44:                                     # fragment header
            if pos + 8 > rem:
                return IGNORE_TRUNCATED_IP
            nh = q[pos]
            if q[pos + 3] & 1:
                pkt.key.frag = 0x20                        # more fragments
            if be16(q + pos + 2) >> 3:
                pkt.key.proto = nh                         # non-first fragment: ports 0
                return DECODED
            pos += 8
        else:
            break
    pkt.key.proto = nh
    return decode_l4(q + pos, rem - pos, <Py_ssize_t>pkt.octets - pos, pkt)


cdef inline int decode_ip_by_version(const uint8_t* p, Py_ssize_t n, Py_ssize_t off, Packet* pkt) noexcept nogil:
    if off >= n:
        return IGNORE_TRUNCATED_IP
    if p[off] >> 4 == 4:
        return decode_ipv4(p, n, off, pkt)
    if p[off] >> 4 == 6:
        return decode_ipv6(p, n, off, pkt)
    return IGNORE_BAD_IP


cdef inline int decode_ethertype(const uint8_t* p, Py_ssize_t n, Py_ssize_t off,
                                 uint16_t etype, Packet* pkt) noexcept nogil:
    cdef int tags = 0, depth = 0
    cdef uint32_t label
    # 802.1Q, 802.1ad and the old QinQ type, to any depth: the outermost tag is the flow's
    # VLAN, the next its inner VLAN.
    while etype == 0x8100 or etype == 0x88a8 or etype == 0x9100:
        if off + 4 > n:
            return IGNORE_TRUNCATED_L2
        if tags == 0:
            pkt.key.vlan = be16(p + off) & 0x0fff
        elif tags == 1:
            pkt.key.inner_vlan = be16(p + off) & 0x0fff
        tags += 1
        etype = be16(p + off + 2)
        off += 4
    if etype == 0x0800:
        return decode_ipv4(p, n, off, pkt)
    if etype == 0x86dd:
        return decode_ipv6(p, n, off, pkt)
    if etype == 0x8847 or etype == 0x8848:          # MPLS unicast/multicast label stack
        while True:
            if off + 4 > n:
                return IGNORE_TRUNCATED_L2
            label = be32(p + off)
            off += 4
            if depth == 0:
                pkt.key.mpls = label >> 8           # label, EXP, bottom of stack: the stack section
            elif depth <= MPLS_STACK_KEPT:
                pkt.mpls_stack[depth - 1] = label >> 8
            depth += 1
            if label & 0x100:                       # bottom of stack
                break
        if off >= n:
            return IGNORE_TRUNCATED_L2
        if p[off] >> 4 == 4 or p[off] >> 4 == 6:
            return decode_ip_by_version(p, n, off, pkt)
        return IGNORE_MPLS_PAYLOAD
    if etype == 0x8864:                             # PPPoE session: 6-byte header, then PPP protocol
        if off + 8 > n:
            return IGNORE_TRUNCATED_L2
        etype = be16(p + off + 6)
        if etype == 0x0021:
            return decode_ipv4(p, n, off + 8, pkt)
        if etype == 0x0057:
            return decode_ipv6(p, n, off + 8, pkt)
    return IGNORE_NON_IP


cdef inline int decode_loopback(const uint8_t* p, Py_ssize_t n, uint32_t family, Packet* pkt) noexcept nogil:
    if family == 2:
        return decode_ipv4(p, n, 4, pkt)
    if family == 10 or family == 24 or family == 28 or family == 30:   # AF_INET6 on Linux and the BSDs
        return decode_ipv6(p, n, 4, pkt)
    return IGNORE_NON_IP


cdef inline int decode_packet(const uint8_t* p, Py_ssize_t n, int linktype, Packet* pkt) noexcept nogil:
    """Fill pkt from one captured frame; DECODED or an IGNORE_* reason."""
    cdef uint32_t family
    if linktype == DLT_EN10MB:
        if n < 14:
            return IGNORE_TRUNCATED_L2
        memcpy(pkt.key.dst_mac, p, 6)
        memcpy(pkt.key.src_mac, p + 6, 6)
        return decode_ethertype(p, n, 14, be16(p + 12), pkt)
    if linktype == DLT_LINUX_SLL:
        if n < 16:
            return IGNORE_TRUNCATED_L2
        if be16(p + 4) == 6:
            memcpy(pkt.key.src_mac, p + 6, 6)
        set_direction(pkt, be16(p))
        return decode_ethertype(p, n, 16, be16(p + 14), pkt)
    if linktype == DLT_LINUX_SLL2:
        if n < 20:
            return IGNORE_TRUNCATED_L2
        pkt.key.in_if = be32(p + 4)
        set_direction(pkt, p[10])
        if p[11] == 6:
            memcpy(pkt.key.src_mac, p + 12, 6)
        return decode_ethertype(p, n, 20, be16(p), pkt)
    if linktype == DLT_RAW or linktype == DLT_RAW_BSD or linktype == DLT_RAW_OPENBSD:
        return decode_ip_by_version(p, n, 0, pkt)
    if linktype == DLT_IPV4:
        return decode_ipv4(p, n, 0, pkt)
    if linktype == DLT_IPV6:
        return decode_ipv6(p, n, 0, pkt)
    if linktype == DLT_NULL or linktype == DLT_LOOP:
        if n < 4:
            return IGNORE_TRUNCATED_L2
        if linktype == DLT_LOOP:
            family = be32(p)
        else:
            family = le32(p)
            if family > 0xffff:          # written on a big-endian host
                family = be32(p)
        return decode_loopback(p, n, family, pkt)
    return IGNORE_NON_IP
