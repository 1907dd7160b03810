# Decoding a batch's packets for the meter (pyprobe._meter, included by ext/_meter.pyx): what a
# batch says of its packets (direction, interface, VLAN) applied to each decoded packet.

IGNORE_REASON_NAMES = ("non_ip", "truncated_l2", "truncated_ip", "bad_ip", "truncated_l4", "mpls_payload",
                       "other_direction", "on_vlan_subinterface", "unmatched")
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
