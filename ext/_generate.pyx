# Synthetic flow records in compiled code, for `pyprobe generate`: no Python object
# per record. A Profile (pyprobe/generate/profile.py) is turned into flat tables here;
# make() fills packed FlowRecords (ext/record.pxd, the field table's layout) straight
# into a bytes object, drawing from a seeded xoshiro256** generator, so the same seed
# gives the same records.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset
from libc.math cimport exp, log, sqrt, cos, pow, M_PI
from libc.stdlib cimport malloc, free, qsort
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from record cimport FlowRecord
from decode cimport is_icmp

cdef enum:
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PSH = 0x08
    TH_ACK = 0x10
    END_IDLE = 1
    END_ACTIVE = 2
    END_TCP = 3
    MAX_CHOICES = 64

# Distributions of a size (packets per flow, bytes per packet, duration).
cdef enum:
    DIST_FIXED = 0        # a
    DIST_LOGNORMAL = 1    # exp(N(a, b))
    DIST_PARETO = 2       # a / U**(1/b): minimum a, shape b


cdef struct Dist:
    int kind
    double a
    double b
    double low
    double high


cdef struct Choice:
    int n
    double cumulative[MAX_CHOICES]


cdef struct Prefix:
    uint8_t base[16]
    int bits            # prefix length
    int ipver


cdef struct Protocol:
    uint8_t number
    Choice ports        # service ports (ICMP: type*256+code)
    uint16_t port_values[MAX_CHOICES]
    Dist packets
    Dist packet_bytes
    Dist duration
    double fin          # TCP: share of flows that end with FIN, RST; the rest are cut (active)
    double rst


cdef inline uint64_t rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef class RecordGenerator:
    """RecordGenerator(profile_tables, seed): make(n, ...) -> n packed records.

    profile_tables is the dict pyprobe.generate.profile.Profile.tables() returns."""
    cdef uint64_t s[4]
    cdef double ipv6_share
    cdef Prefix* prefixes            # [0, n_src4) src IPv4, then dst IPv4, src IPv6, dst IPv6
    cdef Choice src_choice[2]
    cdef Choice dst_choice[2]
    cdef int src_start[2]
    cdef int dst_start[2]
    cdef Protocol protocols[8]
    cdef Choice protocol_choice
    cdef int n_protocols
    cdef Choice tos_choice
    cdef uint8_t tos_values[MAX_CHOICES]
    cdef Choice vlan_choice
    cdef uint16_t vlan_values[MAX_CHOICES]
    cdef Choice in_if_choice
    cdef uint32_t in_if_values[MAX_CHOICES]
    cdef Choice out_if_choice
    cdef uint32_t out_if_values[MAX_CHOICES]
    cdef uint16_t client_port_low
    cdef uint16_t client_port_high
    cdef double both_directions
    cdef int64_t active_us

    def __cinit__(self, dict tables, uint64_t seed):
        cdef int i, v
        cdef uint64_t z = seed
        for i in range(4):                      # splitmix64 seeding
            z += 0x9E3779B97F4A7C15ULL
            self.s[i] = z
            self.s[i] = (self.s[i] ^ (self.s[i] >> 30)) * 0xBF58476D1CE4E5B9ULL
            self.s[i] = (self.s[i] ^ (self.s[i] >> 27)) * 0x94D049BB133111EBULL
            self.s[i] ^= self.s[i] >> 31
        self.ipv6_share = tables["ipv6_share"]
        groups = [tables["src4"], tables["dst4"], tables["src6"], tables["dst6"]]
        total = sum(len(g) for g in groups)
        self.prefixes = <Prefix*>malloc(max(1, total) * sizeof(Prefix))
        if self.prefixes == NULL:
            raise MemoryError()
        k = 0
        for gi, group in enumerate(groups):
            weights = []
            start = k
            for packed, bits, weight in group:
                memset(self.prefixes[k].base, 0, 16)
                memcpy(self.prefixes[k].base, <const char*>packed, len(packed))
                self.prefixes[k].bits = bits
                self.prefixes[k].ipver = 4 if len(packed) == 4 else 6
                weights.append(weight)
                k += 1
            version = 0 if gi < 2 else 1
            if gi % 2 == 0:
                self.src_start[version] = start
                fill_choice(&self.src_choice[version], weights or [1.0])   # (none: that version is never drawn)
            else:
                self.dst_start[version] = start
                fill_choice(&self.dst_choice[version], weights or [1.0])
        self.n_protocols = len(tables["protocols"])
        weights = []
        for i, p in enumerate(tables["protocols"]):
            self.protocols[i].number = p["number"]
            fill_choice(&self.protocols[i].ports, [w for _, w in p["ports"]])
            for v, (port, _) in enumerate(p["ports"]):
                self.protocols[i].port_values[v] = port
            fill_dist(&self.protocols[i].packets, p["packets"])
            fill_dist(&self.protocols[i].packet_bytes, p["bytes"])
            fill_dist(&self.protocols[i].duration, p["duration"])
            self.protocols[i].fin = p.get("fin", 0.0)
            self.protocols[i].rst = p.get("rst", 0.0)
            weights.append(p["weight"])
        fill_choice(&self.protocol_choice, weights)
        fill_values(&self.tos_choice, self.tos_values, tables["tos"], 1)
        fill_values(&self.vlan_choice, <uint8_t*>self.vlan_values, tables["vlan"], 2)
        fill_values(&self.in_if_choice, <uint8_t*>self.in_if_values, tables["in_if"], 4)
        fill_values(&self.out_if_choice, <uint8_t*>self.out_if_values, tables["out_if"], 4)
        self.client_port_low, self.client_port_high = tables["client_ports"]
        self.both_directions = tables["both_directions"]
        self.active_us = <int64_t>(tables["active_timeout"] * 1e6)

    def __dealloc__(self):
        free(self.prefixes)

    # -- random numbers ---------------------------------------------------------------

    cdef inline uint64_t next64(self) noexcept nogil:
        """xoshiro256** (Blackman and Vigna)."""
        cdef uint64_t result = rotl(self.s[1] * 5, 7) * 9
        cdef uint64_t t = self.s[1] << 17
        self.s[2] ^= self.s[0]
        self.s[3] ^= self.s[1]
        self.s[1] ^= self.s[2]
        self.s[0] ^= self.s[3]
        self.s[2] ^= t
        self.s[3] = rotl(self.s[3], 45)
        return result

    cdef inline double uniform(self) noexcept nogil:
        """[0, 1) with 53 bits."""
        return (self.next64() >> 11) * (1.0 / 9007199254740992.0)

    cdef inline int pick(self, const Choice* c) noexcept nogil:
        cdef double u = self.uniform() * c.cumulative[c.n - 1]
        cdef int i = 0
        while i < c.n - 1 and u >= c.cumulative[i]:
            i += 1
        return i

    cdef inline double normal(self) noexcept nogil:
        cdef double u1 = 1.0 - self.uniform()
        return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * self.uniform())

    cdef inline double draw(self, const Dist* d) noexcept nogil:
        cdef double v
        if d.kind == DIST_LOGNORMAL:
            v = exp(d.a + d.b * self.normal())
        elif d.kind == DIST_PARETO:
            v = d.a / pow(1.0 - self.uniform(), 1.0 / d.b)
        else:
            v = d.a
        if v < d.low:
            v = d.low
        if v > d.high:
            v = d.high
        return v

    cdef void address(self, uint8_t* out, const Prefix* p) noexcept nogil:
        """A random host in the prefix (not its first address)."""
        cdef int length = 4 if p.ipver == 4 else 16
        cdef int i, keep
        cdef uint8_t mask
        for i in range(length):
            out[i] = <uint8_t>self.next64()
        for i in range(length):
            keep = p.bits - 8 * i
            if keep >= 8:
                out[i] = p.base[i]
            elif keep > 0:
                mask = <uint8_t>(0xff << (8 - keep))
                out[i] = (p.base[i] & mask) | (out[i] & ~mask)
        if p.bits < 8 * length and out[length - 1] == 0 and (p.bits <= 8 * (length - 1)):
            out[length - 1] = 1

    # -- records --------------------------------------------------------------------

    def make(self, Py_ssize_t n, int64_t end_us, double step_us):
        """n records whose flows end at end_us, end_us + step_us, ...; packed FlowRecords.
        Asked for both directions, a share of them is followed by the answer's record (counted in n)."""
        cdef bytes out = PyBytes_FromStringAndSize(NULL, n * sizeof(FlowRecord))
        cdef FlowRecord* r = <FlowRecord*>PyBytes_AS_STRING(out)
        cdef Py_ssize_t i = 0
        with nogil:
            while i < n:
                self.fill(&r[i], end_us + <int64_t>(i * step_us))
                i += 1
                if i < n and self.both_directions > 0 and not is_icmp(r[i - 1].proto) \
                        and self.uniform() < self.both_directions:
                    self.reverse(&r[i], &r[i - 1])
                    i += 1
        return out

    cdef void fill(self, FlowRecord* r, int64_t end_us) noexcept nogil:
        cdef int version = 1 if self.uniform() < self.ipv6_share else 0
        cdef int pi = self.pick(&self.protocol_choice)
        cdef const Protocol* p = &self.protocols[pi]
        cdef double packets, size, duration
        cdef uint64_t npk
        cdef bint cut
        memset(r, 0, sizeof(FlowRecord))
        self.address(r.src, &self.prefixes[self.src_start[version] + self.pick(&self.src_choice[version])])
        self.address(r.dst, &self.prefixes[self.dst_start[version] + self.pick(&self.dst_choice[version])])
        r.ipver = 6 if version else 4
        r.proto = p.number
        if p.number == 1 and version:
            r.proto = 58                              # ICMP becomes ICMPv6 in an IPv6 flow
        r.dport = p.port_values[self.pick(&p.ports)]
        if is_icmp(r.proto):
            r.sport = 0
            if r.proto == 58 and (r.dport >> 8) == 8:
                r.dport = (128 << 8) | (r.dport & 0xff)   # echo request is type 128 in ICMPv6
        else:
            r.sport = self.client_port_low + <uint16_t>(self.next64() % (self.client_port_high - self.client_port_low + 1))
        packets = self.draw(&p.packets)
        npk = <uint64_t>(packets + 0.5)
        if npk < 1:
            npk = 1
        r.packets = npk
        size = self.draw(&p.packet_bytes)
        r.octets = <uint64_t>(size * npk + 0.5)
        duration = 0.0 if npk == 1 else self.draw(&p.duration)
        cut = duration * 1e6 >= self.active_us
        if cut:
            duration = self.active_us / 1e6
        r.last_us = end_us
        r.first_us = end_us - <int64_t>(duration * 1e6)
        r.tos = self.tos_values[self.pick(&self.tos_choice)]
        r.vlan = self.vlan_values[self.pick(&self.vlan_choice)]
        r.in_if = self.in_if_values[self.pick(&self.in_if_choice)]
        r.out_if = self.out_if_values[self.pick(&self.out_if_choice)]
        r.min_ttl = 64 - <uint8_t>(self.next64() % 16)
        r.max_ttl = r.min_ttl
        r.end_reason = END_ACTIVE if cut else END_IDLE
        if r.proto == 6:
            self.tcp_flags(r, p, cut)

    cdef void tcp_flags(self, FlowRecord* r, const Protocol* p, bint cut) noexcept nogil:
        """Flags a real flow of this size has: a lone SYN (a probe or a scan), a SYN and its
        ACKs, data with PSH, and the end: FIN, RST, or none (gone quiet, or cut by the
        active timeout: then it goes on in a next record)."""
        cdef double u
        if r.packets == 1:
            r.tcp_flags = TH_SYN
            return
        r.tcp_flags = TH_SYN | TH_ACK
        if r.packets >= 4 and r.octets > 60 * r.packets:
            r.tcp_flags |= TH_PSH
        u = self.uniform()
        if cut:
            return
        if u < p.fin:
            r.tcp_flags |= TH_FIN
            r.end_reason = END_TCP
        elif u < p.fin + p.rst:
            r.tcp_flags |= TH_RST
            r.end_reason = END_TCP

    cdef void reverse(self, FlowRecord* r, const FlowRecord* forward) noexcept nogil:
        """The answer's flow: addresses, ports and interfaces swapped, its own size."""
        memcpy(r, forward, sizeof(FlowRecord))
        memcpy(r.src, forward.dst, 16)
        memcpy(r.dst, forward.src, 16)
        r.sport = forward.dport
        r.dport = forward.sport
        r.in_if = forward.out_if
        r.out_if = forward.in_if
        r.packets = forward.packets if forward.packets < 2 else forward.packets - <uint64_t>(self.next64() % (forward.packets // 2 + 1))
        if r.packets < 1:
            r.packets = 1
        r.octets = <uint64_t>(r.packets * (40 + self.uniform() * 1400))
        if r.proto == 6 and forward.packets == 1:
            r.tcp_flags = TH_SYN | TH_ACK


cdef void fill_choice(Choice* c, weights) except *:
    cdef double total = 0
    if not weights:
        raise ValueError("a choice needs at least one weight")
    if len(weights) > MAX_CHOICES:
        raise ValueError(f"at most {MAX_CHOICES} choices")
    c.n = len(weights)
    for i, w in enumerate(weights):
        if w < 0:
            raise ValueError("weights must not be negative")
        total += w
        c.cumulative[i] = total
    if total <= 0:
        raise ValueError("weights must not all be 0")


cdef void fill_values(Choice* c, uint8_t* values, pairs, int width) except *:
    """(value, weight) pairs into a choice and a value array of `width`-byte integers."""
    cdef uint16_t v16
    cdef uint32_t v32
    cdef Py_ssize_t i
    fill_choice(c, [w for _, w in pairs])
    for i in range(len(pairs)):
        value = pairs[i][0]
        if width == 1:
            values[i] = value
        elif width == 2:
            v16 = value
            memcpy(values + 2 * i, &v16, 2)
        else:
            v32 = value
            memcpy(values + 4 * i, &v32, 4)


cdef void fill_dist(Dist* d, spec) except *:
    """('fixed', a) | ('lognormal', mu, sigma) | ('pareto', minimum, shape), then (low, high) bounds."""
    kind = spec[0]
    d.kind = {"fixed": DIST_FIXED, "lognormal": DIST_LOGNORMAL, "pareto": DIST_PARETO}[kind]
    d.a = spec[1]
    d.b = spec[2] if len(spec) > 2 else 0.0
    d.low, d.high = spec[3] if len(spec) > 3 else (0.0, 1e18)


# -- packets for records (pyprobe generate --pcap) -----------------------------------------

cdef enum:
    ETH_HEADER = 14
    VLAN_TAG = 4
    CHUNK = 1 << 20

cdef struct Slot:
    int64_t t
    uint32_t record
    uint32_t index


cdef int compare_slots(const void* a, const void* b) noexcept nogil:
    cdef const Slot* x = <const Slot*>a
    cdef const Slot* y = <const Slot*>b
    if x.t != y.t:
        return -1 if x.t < y.t else 1
    if x.record != y.record:
        return -1 if x.record < y.record else 1
    return -1 if x.index < y.index else (1 if x.index > y.index else 0)


cdef inline int l4_header(uint8_t proto) noexcept nogil:
    if proto == 6:
        return 20
    if proto == 17 or proto == 136:
        return 8
    if proto == 132:
        return 12
    if is_icmp(proto):
        return 8
    return 0


cdef inline int64_t min_ip_length(const FlowRecord* r) noexcept nogil:
    return (20 if r.ipver == 4 else 40) + l4_header(r.proto)


def settle(bytes records, double max_gap_s, double max_duration_s):
    """The records made consistent with packets a probe will meter: each packet's IP length
    at least its headers, gaps between packets under max_gap_s, durations under
    max_duration_s, no interfaces (a capture file has none) and the MACs the frames carry."""
    out = bytearray(records)
    cdef Py_ssize_t n = len(out) // sizeof(FlowRecord), i
    cdef FlowRecord* r
    cdef uint8_t* base = <uint8_t*>(<char*>out)
    cdef int64_t longest, low
    for i in range(n):
        r = <FlowRecord*>(base + i * sizeof(FlowRecord))
        low = min_ip_length(r)
        if <int64_t>r.octets < low * <int64_t>r.packets:
            r.octets = low * r.packets
        if <int64_t>r.octets > 65535 * <int64_t>r.packets:
            r.octets = 65535 * r.packets
        longest = <int64_t>(min(max_duration_s, max_gap_s * (r.packets - 1)) * 1e6)
        if r.last_us - r.first_us > longest:
            r.first_us = r.last_us - longest
        r.in_if = 0
        r.out_if = 0
        memcpy(r.src_mac, b"\x02\x00\x00\x00\x00\x01", 6)
        memcpy(r.dst_mac, b"\x02\x00\x00\x00\x00\x02", 6)
    return bytes(out)


def end_reasons(bytes records, int64_t capture_end_us, dict timeouts_us):
    """Why a probe reading the capture ends each flow: at its FIN/RST (after tcp.fin /
    tcp.rst if not 0), idle when the capture goes on past its inactive timeout, else at
    the end of the input."""
    out = bytearray(records)
    cdef Py_ssize_t n = len(out) // sizeof(FlowRecord), i
    cdef FlowRecord* r
    cdef uint8_t* base = <uint8_t*>(<char*>out)
    cdef int64_t quiet, fin_us = timeouts_us["tcp.fin"], rst_us = timeouts_us["tcp.rst"]
    cdef int64_t tcp_us = timeouts_us["tcp"], udp_us = timeouts_us["udp"], icmp_us = timeouts_us["icmp"]
    cdef int64_t general_us = timeouts_us["general"], limit
    for i in range(n):
        r = <FlowRecord*>(base + i * sizeof(FlowRecord))
        quiet = capture_end_us - r.last_us
        if r.proto == 6 and r.tcp_flags & (TH_FIN | TH_RST):
            limit = rst_us if r.tcp_flags & TH_RST else fin_us
            r.end_reason = END_TCP if limit == 0 or quiet > limit else 4
            continue
        limit = tcp_us if r.proto == 6 else udp_us if r.proto == 17 else \
            icmp_us if is_icmp(r.proto) else general_us
        r.end_reason = END_IDLE if quiet > limit else 4            # 4: eof
    return bytes(out)


def packets_and_end(bytes records):
    """(packets in all the records, the latest last-packet time)."""
    cdef Py_ssize_t n = len(records) // sizeof(FlowRecord), i
    cdef const FlowRecord* r = <const FlowRecord*>(<const char*>records)
    cdef uint64_t total = 0
    cdef int64_t end = 0
    for i in range(n):
        total += r[i].packets
        end = max(end, r[i].last_us)
    return total, end


def pcap_frames(bytes records, uint32_t snaplen=0):
    """The packets of the records (settle()d), in time order, as pcap records (native
    little-endian header, microseconds): yields chunks of about a megabyte. Frames hold the
    headers only (snaplen 0), or zero payload too up to snaplen bytes; the wire length is
    always the packet's."""
    cdef Py_ssize_t n = len(records) // sizeof(FlowRecord), i, k
    cdef const FlowRecord* recs = <const FlowRecord*>(<const char*>records)
    cdef uint64_t total = 0
    for i in range(n):
        total += recs[i].packets
    cdef Slot* slots = <Slot*>malloc(max(<uint64_t>1, total) * sizeof(Slot))
    if slots == NULL:
        raise MemoryError(f"no memory for {total} packets")
    cdef uint64_t j = 0
    cdef int64_t span
    try:
        for i in range(n):
            span = recs[i].last_us - recs[i].first_us
            for k in range(<Py_ssize_t>recs[i].packets):
                slots[j].t = recs[i].first_us if recs[i].packets == 1 else \
                    recs[i].first_us + span * k // <int64_t>(recs[i].packets - 1)
                slots[j].record = <uint32_t>i
                slots[j].index = <uint32_t>k
                j += 1
        qsort(slots, total, sizeof(Slot), compare_slots)
        chunk = bytearray(CHUNK + 70000)
        used = 0
        for j in range(total):
            used = write_frame(chunk, used, &recs[slots[j].record], &slots[j], snaplen)
            if used >= CHUNK:
                yield bytes(chunk[:used])
                used = 0
        if used:
            yield bytes(chunk[:used])
    finally:
        free(slots)


cdef Py_ssize_t write_frame(bytearray chunk, Py_ssize_t used, const FlowRecord* r, const Slot* s,
                            uint32_t snaplen) except -1:
    cdef uint8_t* p0 = <uint8_t*>(<char*>chunk) + used
    cdef uint8_t* p = p0 + 16
    cdef uint64_t base = r.octets // r.packets
    cdef uint64_t ip_len = base + (1 if s.index < r.octets % r.packets else 0)
    cdef int l4 = l4_header(r.proto)
    cdef uint32_t caplen, wire
    cdef uint8_t flags
    memcpy(p, r.dst_mac, 6)
    memcpy(p + 6, r.src_mac, 6)
    p += 12
    if r.vlan:
        p = put16(p, 0x8100)
        p = put16(p, r.vlan & 0x0fff)
    p = put16(p, 0x0800 if r.ipver == 4 else 0x86dd)
    if r.ipver == 4:
        p[0] = 0x45
        p[1] = r.tos
        put16(p + 2, ip_len)
        put16(p + 4, <uint16_t>s.index)
        put16(p + 6, 0x4000)                          # don't fragment
        p[8] = r.min_ttl
        p[9] = r.proto
        put16(p + 10, 0)
        memcpy(p + 12, r.src, 4)
        memcpy(p + 16, r.dst, 4)
        p += 20
    else:
        put32(p, (6 << 28) | (<uint32_t>r.tos << 20))
        put16(p + 4, ip_len - 40)
        p[6] = r.proto
        p[7] = r.min_ttl
        memcpy(p + 8, r.src, 16)
        memcpy(p + 24, r.dst, 16)
        p += 40
    memset(p, 0, l4)
    if is_icmp(r.proto):
        p[0] = r.dport >> 8
        p[1] = <uint8_t>r.dport
    elif l4:
        put16(p, r.sport)
        put16(p + 2, r.dport)
        if r.proto == 6:
            put32(p + 4, 1 + s.index)
            p[12] = 5 << 4
            p[13] = tcp_flags_of(r, s.index)
            put16(p + 14, 65535)
        elif r.proto == 17 or r.proto == 136:
            put16(p + 4, ip_len - (20 if r.ipver == 4 else 40))
    p += l4
    caplen = <uint32_t>(p - (p0 + 16))
    wire = caplen + <uint32_t>(ip_len - (20 if r.ipver == 4 else 40) - l4)
    if snaplen > caplen:                              # the payload too (zeros), as far as snaplen
        memset(p, 0, min(wire, snaplen) - caplen)
        caplen = min(wire, snaplen)
    put32le(p0, <uint32_t>(s.t // 1000000))
    put32le(p0 + 4, <uint32_t>(s.t % 1000000))
    put32le(p0 + 8, caplen)
    put32le(p0 + 12, wire)
    return used + 16 + caplen


cdef inline uint8_t tcp_flags_of(const FlowRecord* r, uint32_t index) noexcept nogil:
    """Each packet's flags, whose OR is the record's: SYN first, FIN or RST last (the probe
    ends the flow there), ACK on the rest, PSH on the one before the last."""
    cdef uint8_t flags = r.tcp_flags
    if r.packets == 1:
        return flags
    if index == 0:
        return TH_SYN if flags & TH_SYN else flags & TH_ACK
    if index == r.packets - 1:
        return (flags & (TH_FIN | TH_RST | TH_ACK)) | ((flags & TH_PSH) if r.packets == 2 else 0)
    if index == r.packets - 2:
        return flags & (TH_ACK | TH_PSH)
    return flags & TH_ACK


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


cdef inline void put32le(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)
