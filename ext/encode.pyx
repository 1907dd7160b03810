# Export records in compiled code: the per-record work of the v5, v9 and IPFIX
# encoders. Python decides what goes in which datagram; these loops order,
# measure and write the records straight from the meter's packed FlowRecords.
# The field order of each layout is the template's (pyprobe/export/*.py).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from record cimport FlowRecord

# Record layouts, one per template.
LAYOUT_V5 = 0
LAYOUT_V9_IPV4 = 1
LAYOUT_V9_IPV6 = 2
LAYOUT_IPFIX_IPV4 = 3
LAYOUT_IPFIX_IPV6 = 4
LAYOUT_SIZES = (48, 52, 76, 62, 86)


cdef inline uint8_t* put8(uint8_t* p, uint64_t v) noexcept nogil:
    p[0] = <uint8_t>v
    return p + 1


cdef inline uint8_t* put16(uint8_t* p, uint64_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v
    return p + 2


cdef inline uint8_t* put32(uint8_t* p, uint64_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v
    return p + 4


cdef inline uint8_t* put64(uint8_t* p, uint64_t v) noexcept nogil:
    p = put32(p, v >> 32)
    return put32(p, v & 0xffffffffULL)


cdef inline uint8_t* put_bytes(uint8_t* p, const uint8_t* src, int n) noexcept nogil:
    memcpy(p, src, n)
    return p + n


cdef inline int64_t ms(int64_t us) noexcept nogil:
    """Microseconds to milliseconds, rounding down (also before 1970)."""
    return us // 1000 if us >= 0 else -((-us + 999) // 1000)


cdef inline uint16_t icmp_type_code(const FlowRecord* r) noexcept nogil:
    return r.dport if r.proto == 1 or r.proto == 58 else 0


cdef inline const FlowRecord* record_at(const uint8_t[::1] buf, uint32_t i) noexcept nogil:
    return <const FlowRecord*>(&buf[0] + <Py_ssize_t>i * sizeof(FlowRecord))


def order_by_version(const uint8_t[::1] buf):
    """Record indices, IPv4 first then IPv6, each in arrival order; and the IPv4 count."""
    cdef Py_ssize_t n = buf.shape[0] // sizeof(FlowRecord)
    cdef Py_ssize_t i, v4 = 0, k
    order = bytearray(4 * n)
    cdef uint32_t[::1] out = memoryview(order).cast("I")
    for i in range(n):
        if record_at(buf, i).ipver == 4:
            v4 += 1
    k = 0
    for i in range(n):
        if record_at(buf, i).ipver == 4:
            out[k] = i
            k += 1
    for i in range(n):
        if record_at(buf, i).ipver != 4:
            out[k] = i
            k += 1
    return order, v4


def take(const uint8_t[::1] buf, order, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t budget,
         int v4_size, int v6_size, int64_t max_span_ms, Py_ssize_t max_records=-1):
    """How many records from order[start:stop] fit one datagram: within `budget` bytes,
    at most max_records, and spanning no more than max_span_ms from earliest first to
    latest last. Returns (end, first_ms, last_ms)."""
    cdef const uint32_t[::1] idx = memoryview(order).cast("I")
    cdef Py_ssize_t i = start, used = 0, size
    cdef int64_t lo = 0, hi = 0, first, last
    cdef const FlowRecord* r
    while i < stop and (max_records < 0 or i - start < max_records):
        r = record_at(buf, idx[i])
        size = v4_size if r.ipver == 4 else v6_size
        first = ms(r.first_us)
        last = ms(r.last_us)
        if i > start:
            first = min(first, lo)
            last = max(last, hi)
        if used + size > budget or (i > start and last - first > max_span_ms):
            break                                # (a record alone always spans what it spans)
        used += size
        lo, hi = first, last
        i += 1
    return i, lo, hi


def pack(const uint8_t[::1] buf, order, Py_ssize_t start, Py_ssize_t stop, int layout, int64_t boot_ms=0):
    """Records order[start:stop] written in one layout; v5/v9 times relative to boot_ms."""
    cdef const uint32_t[::1] idx = memoryview(order).cast("I")
    cdef Py_ssize_t i, size = LAYOUT_SIZES[layout]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size * (stop - start))
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    cdef const FlowRecord* r
    for i in range(start, stop):
        r = record_at(buf, idx[i])
        if layout == LAYOUT_V5:
            p = pack_v5(p, r, boot_ms)
        elif layout == LAYOUT_V9_IPV4 or layout == LAYOUT_V9_IPV6:
            p = pack_v9(p, r, boot_ms, 4 if layout == LAYOUT_V9_IPV4 else 16)
        else:
            p = pack_ipfix(p, r, 4 if layout == LAYOUT_IPFIX_IPV4 else 16)
    return out


cdef uint8_t* pack_v5(uint8_t* p, const FlowRecord* r, int64_t boot_ms) noexcept nogil:
    p = put_bytes(p, r.src, 4)
    p = put_bytes(p, r.dst, 4)
    p = put32(p, 0)                              # next hop
    p = put16(p, r.in_if & 0xffff)
    p = put16(p, 0)                              # output interface
    p = put32(p, r.packets)
    p = put32(p, r.octets)
    p = put32(p, <uint64_t>(ms(r.first_us) - boot_ms))
    p = put32(p, <uint64_t>(ms(r.last_us) - boot_ms))
    p = put16(p, r.sport)
    p = put16(p, r.dport)
    p = put8(p, 0)                               # pad
    p = put8(p, r.tcp_flags)
    p = put8(p, r.proto)
    p = put8(p, r.tos)
    p = put32(p, 0)                              # source and destination AS
    p = put16(p, 0)                              # source and destination mask
    return put16(p, 0)                           # pad


cdef uint8_t* pack_v9(uint8_t* p, const FlowRecord* r, int64_t boot_ms, int addr_len) noexcept nogil:
    p = put64(p, r.octets)
    p = put64(p, r.packets)
    p = put_bytes(p, r.src, addr_len)
    p = put_bytes(p, r.dst, addr_len)
    p = put32(p, r.in_if)
    p = put32(p, 0)                              # output interface
    p = put32(p, <uint64_t>(ms(r.first_us) - boot_ms))
    p = put32(p, <uint64_t>(ms(r.last_us) - boot_ms))
    p = put16(p, r.sport)
    p = put16(p, r.dport)
    p = put16(p, icmp_type_code(r))
    p = put16(p, r.vlan)
    p = put8(p, r.proto)
    p = put8(p, r.tos)
    p = put8(p, r.tcp_flags)
    return put8(p, r.ipver)


cdef uint8_t* pack_ipfix(uint8_t* p, const FlowRecord* r, int addr_len) noexcept nogil:
    p = put64(p, r.octets)
    p = put64(p, r.packets)
    p = put64(p, <uint64_t>ms(r.first_us))
    p = put64(p, <uint64_t>ms(r.last_us))
    p = put_bytes(p, r.src, addr_len)
    p = put_bytes(p, r.dst, addr_len)
    p = put32(p, r.in_if)
    p = put32(p, 0)                              # egress interface
    p = put16(p, r.sport)
    p = put16(p, r.dport)
    p = put16(p, r.tcp_flags)
    p = put16(p, r.vlan)
    p = put16(p, icmp_type_code(r))
    p = put8(p, r.proto)
    p = put8(p, r.tos)
    p = put8(p, r.end_reason)
    return put8(p, r.ipver)
