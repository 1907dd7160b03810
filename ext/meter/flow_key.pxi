# The flow key (pyprobe._meter, included by ext/_meter.pyx): where its members lie, and what
# the flow table does with a key: mask it, hash it, put a biflow's two ends in one order.

# The flow key's members: (offset, size) in FlowKey, for the key masks of record definitions
# (pyprobe/definitions.py). Integer members are in native byte order, addresses in network order.
cdef FlowKey _k
KEY_SIZE = sizeof(FlowKey)


cdef Py_ssize_t _at(const void* member) noexcept:
    return <const char*>member - <const char*>&_k


KEY_MEMBERS = {
    "src": (_at(&_k.src[0]), 16), "dst": (_at(&_k.dst[0]), 16), "in_if": (_at(&_k.in_if), 4),
    "mpls": (_at(&_k.mpls), 4), "flow_label": (_at(&_k.flow_label), 4), "sport": (_at(&_k.sport), 2),
    "dport": (_at(&_k.dport), 2), "vlan": (_at(&_k.vlan), 2), "inner_vlan": (_at(&_k.inner_vlan), 2),
    "ipver": (_at(&_k.ipver), 1), "proto": (_at(&_k.proto), 1), "tos": (_at(&_k.tos), 1),
    "frag": (_at(&_k.frag), 1), "direction": (_at(&_k.direction), 1), "src_mac": (_at(&_k.src_mac[0]), 6),
    "dst_mac": (_at(&_k.dst_mac[0]), 6),
}
assert sizeof(FlowKey) % 8 == 0
KEY_PAD = (_at(&_k._pad[0]), _at(&_k._pad[0]) + sizeof(_k._pad))

cdef uint64_t HASH_SEED = 0x9E3779B97F4A7C15ULL
cdef uint64_t HASH_MULTIPLIER = 0xff51afd7ed558ccdULL


cdef inline uint32_t hash_key(const FlowKey* key) noexcept nogil:
    """(key_of, metering.pxi, computes the same while it masks the key.)"""
    cdef const char* raw = <const char*>key
    cdef uint64_t h = HASH_SEED, word
    cdef int i
    for i in range(sizeof(FlowKey) // 8):
        memcpy(&word, raw + 8 * i, 8)
        h = (h ^ word) * HASH_MULTIPLIER
        h ^= h >> 32
    return <uint32_t>(h ^ (h >> 29))


cdef inline void mask_words(FlowKey* key, const FlowKey* mask) noexcept nogil:
    """key &= mask, a word at a time (a record definition's key or export mask)."""
    cdef uint64_t* k = <uint64_t*>key
    cdef const uint64_t* m = <const uint64_t*>mask
    cdef int i
    for i in range(sizeof(FlowKey) // 8):
        k[i] &= m[i]


cdef inline bint canonical(FlowKey* key) noexcept nogil:
    """A biflow's key: the two ends in one order whichever sent the packet (the lower address,
    then port, first); True if the ends were swapped."""
    cdef int order = memcmp(key.src, key.dst, 16)
    cdef uint8_t mac[6]
    cdef uint8_t address[16]
    cdef uint16_t port
    if order < 0 or (order == 0 and key.sport <= key.dport):
        return False
    memcpy(address, key.src, 16)
    memcpy(key.src, key.dst, 16)
    memcpy(key.dst, address, 16)
    port = key.sport
    key.sport = key.dport
    key.dport = port
    memcpy(mac, key.src_mac, 6)
    memcpy(key.src_mac, key.dst_mac, 6)
    memcpy(key.dst_mac, mac, 6)
    return True
