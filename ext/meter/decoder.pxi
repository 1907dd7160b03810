# Decoding a batch's packets for metering (pyprobe._meter, included by ext/_meter.pyx): each
# packet's metadata, its headers (ext/decode.pxd), and what the batch says of its packets
# (direction, interface, VLAN, a replay's round) applied to it.

VLAN_BITMAP_BYTES = 512
DIRECTIONS = {"ingress": DIR_INGRESS, "egress": DIR_EGRESS, "both": DIR_BOTH}

cdef Packet NO_PACKET                   # all zero (C statics are)


cdef inline const PacketMeta* packet_metas(const uint8_t[::1] meta, Py_ssize_t* n) noexcept:
    """A batch's meta as its n packets' PacketMeta (NULL if none)."""
    n[0] = meta.shape[0] // sizeof(PacketMeta)
    return <const PacketMeta*>&meta[0] if n[0] else NULL


cdef inline void shift_addresses(FlowKey* key, int k) noexcept nogil:
    """Round k of a replay with shifted addresses: k is added to the first octet of an IPv4
    address and to the third 16-bit group of an IPv6 address (each wrapping around)."""
    cdef uint16_t group
    if key.ipver == 4:
        key.src[0] = <uint8_t>(key.src[0] + k)
        key.dst[0] = <uint8_t>(key.dst[0] + k)
    else:
        group = <uint16_t>(((key.src[4] << 8) | key.src[5]) + k)
        key.src[4] = group >> 8
        key.src[5] = <uint8_t>group
        group = <uint16_t>(((key.dst[4] << 8) | key.dst[5]) + k)
        key.dst[4] = group >> 8
        key.dst[5] = <uint8_t>group


# What decoding a batch's packets needs beyond their bytes: the settings of whoever meters
# them (a Meter, a DecodedBatch), and what the batch says of its packets (begin_batch).
cdef struct Decoder:
    int linktype
    int direction_mode              # DIR_INGRESS, DIR_EGRESS or DIR_BOTH: which packets are metered
    int batch_direction             # which way this batch's packets went, unless their link layer says
    uint32_t in_if                  # this batch's interface, unless its link layer says
    const uint8_t* vlans_elsewhere  # this batch's: a bit per VLAN id metered on a sub-interface
    uint16_t batch_vlan             # this batch's VLAN sub-interface's id: its packets' outer tag
    int shift_round                 # a looped replay's round, when addresses are shifted per round


cdef int decoder_init(Decoder* d, int linktype, direction) except -1:
    """Packets of `linktype`, those that went `direction` ("ingress", "egress", "both") metered."""
    if linktype not in SUPPORTED_LINKTYPES:
        raise ValueError(f"unsupported link type {linktype}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    d.linktype = linktype
    d.direction_mode = DIRECTIONS[direction]
    d.batch_direction = DIR_INGRESS
    return 0


cdef int begin_batch(Decoder* d, int linktype, int shift_round, direction, uint32_t in_if, vlans_elsewhere,
                     uint16_t vlan) except -1:
    """What a batch says of its packets (Meter.process's arguments). The caller keeps the
    vlans_elsewhere bytes until end_batch."""
    cdef const uint8_t[::1] vlan_bits
    d.vlans_elsewhere = NULL
    if vlans_elsewhere is not None:
        vlan_bits = vlans_elsewhere
        if vlan_bits.shape[0] != VLAN_BITMAP_BYTES:
            raise ValueError(f"vlans_elsewhere: {VLAN_BITMAP_BYTES} bytes, not {vlan_bits.shape[0]}")
        d.vlans_elsewhere = &vlan_bits[0]
    d.in_if = in_if
    d.batch_vlan = vlan & 0x0fff
    if linktype >= 0 and linktype != d.linktype:
        if linktype not in SUPPORTED_LINKTYPES:
            raise ValueError(f"unsupported link type {linktype}")
        d.linktype = linktype
    d.shift_round = shift_round
    d.batch_direction = DIRECTIONS[direction]
    return 0


cdef inline void end_batch(Decoder* d) noexcept nogil:
    d.vlans_elsewhere = NULL


cdef inline int decode_one(const Decoder* d, const uint8_t* buf, Py_ssize_t buflen, const PacketMeta* m,
                           Packet* pkt, int64_t* time) noexcept nogil:
    """One packet of the batch decoded, its direction, VLAN and shift applied, its time in
    `time`: DECODED, or why it is not metered."""
    cdef int reason
    time[0] = packet_time_us(m)
    if <Py_ssize_t>m.offset + <Py_ssize_t>m.length > buflen:
        return IGNORE_TRUNCATED_L2                  # cannot happen with our sources; guards the pointer
    pkt[0] = NO_PACKET                  # (a copy: memset of this size compiles to a slow rep stos)
    pkt.key.in_if = d.in_if
    reason = decode_packet(buf + m.offset if m.length else NULL, m.length, d.linktype, pkt)
    if reason != DECODED:
        return reason
    if not pkt.direction_known:
        pkt.key.direction = d.batch_direction
    if d.direction_mode != DIR_BOTH and pkt.key.direction != d.direction_mode:
        return IGNORE_OTHER_DIRECTION
    if (d.vlans_elsewhere != NULL and pkt.key.vlan
            and d.vlans_elsewhere[pkt.key.vlan >> 3] >> (pkt.key.vlan & 7) & 1):
        return IGNORE_ON_VLAN_SUBINTERFACE
    if d.batch_vlan:                        # the outermost tag, as the wire had it; a tag
        pkt.key.inner_vlan = pkt.key.vlan   # left in the frame is the next one in
        pkt.key.vlan = d.batch_vlan
    if d.shift_round:
        shift_addresses(&pkt.key, d.shift_round)
    return DECODED
