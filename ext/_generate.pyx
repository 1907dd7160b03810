# Synthetic flow records in compiled code, for `pyprobe generate`: no Python object
# per record. A Profile (pyprobe/generate/profile.py) is turned into flat tables here;
# make() fills packed FlowRecords (ext/record.pxd, the field table's layout) straight
# into a bytes object, drawing from a seeded xoshiro256** generator, so the same seed
# gives the same records.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, INT64_MAX
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcpy, memset, memcmp
from libc.math cimport exp, log, sqrt, cos, pow, M_PI
from libc.stdlib cimport malloc, calloc, free, qsort
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.bytearray cimport PyByteArray_FromStringAndSize, PyByteArray_AS_STRING

from record cimport FlowRecord
from codes cimport (END_IDLE, END_ACTIVE, END_TCP_END, END_EOF, TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK, PROTO_ICMP,
                   PROTO_ICMPV6)
from decode cimport is_icmp

cdef enum:
    MAX_CHOICES = 64
    MAX_PACKET_BYTES = 65535
    MAX_REDRAWS = 100     # draws of a record whose flow key an earlier record has, before giving up

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
        if not v >= d.low:              # (also NaN: an infinity times 0 on the way)
            v = d.low
        if not v <= d.high:
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
        check_record_count(n)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, n * sizeof(FlowRecord))
        self.fill_records(<FlowRecord*>PyBytes_AS_STRING(out), n, end_us, step_us)
        return out

    def make_distinct(self, Py_ssize_t n, int64_t end_us, double step_us):
        """make()'s records (in a bytearray), each with a flow key of its own: a record whose key
        an earlier one has is drawn again, so that no two records' packets meter as one flow."""
        check_record_count(n)
        out = PyByteArray_FromStringAndSize(NULL, n * sizeof(FlowRecord))
        cdef FlowRecord* r = <FlowRecord*>PyByteArray_AS_STRING(out)
        self.fill_records(r, n, end_us, step_us)
        cdef uint64_t size = 1
        while size < 2 * <uint64_t>n:
            size <<= 1
        cdef uint32_t* table = <uint32_t*>calloc(size, sizeof(uint32_t))     # record index + 1; 0: empty
        if table == NULL:
            raise MemoryError(f"no memory for the flow keys of {n} records")
        cdef Py_ssize_t i
        cdef int tries
        try:
            for i in range(n):
                tries = 0
                while not key_is_new(table, size - 1, r, <uint32_t>i):
                    tries += 1
                    if tries > MAX_REDRAWS:
                        raise ValueError(f"the profile has too few distinct flows (addresses, ports, protocols, "
                                         f"TOS) for {n} records: after {i}, no new one in {MAX_REDRAWS} draws")
                    self.fill(&r[i], r[i].last_us)
        finally:
            free(table)
        return out

    cdef void fill_records(self, FlowRecord* r, Py_ssize_t n, int64_t end_us, double step_us) noexcept nogil:
        cdef Py_ssize_t i = 0
        while i < n:
            self.fill(&r[i], end_us + <int64_t>(i * step_us))
            i += 1
            if i < n and self.both_directions > 0 and not is_icmp(r[i - 1].proto) \
                    and self.uniform() < self.both_directions:
                self.reverse(&r[i], &r[i - 1])
                i += 1

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
        if p.number == PROTO_ICMP and version:
            r.proto = PROTO_ICMPV6                    # ICMP becomes ICMPv6 in an IPv6 flow
        r.dport = p.port_values[self.pick(&p.ports)]
        if is_icmp(r.proto):
            r.sport = 0
            if r.proto == PROTO_ICMPV6 and (r.dport >> 8) == 8:
                r.dport = (128 << 8) | (r.dport & 0xff)   # echo request is type 128 in ICMPv6
        elif has_ports(r.proto):
            r.sport = self.client_port_low + <uint16_t>(self.next64() % (self.client_port_high - self.client_port_low + 1))
        else:
            r.dport = 0                                   # (a probe sees no ports in its packets)
        packets = self.draw(&p.packets)                   # (within 1..2**32-1: the profile's bounds)
        npk = <uint64_t>(packets + 0.5)
        if npk < 1:
            npk = 1
        r.packets = npk
        size = self.draw(&p.packet_bytes)
        r.octets = <uint64_t>(size * npk + 0.5)
        whole_packets(r)
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
            r.end_reason = END_TCP_END
        elif u < p.fin + p.rst:
            r.tcp_flags |= TH_RST
            r.end_reason = END_TCP_END

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
        whole_packets(r)
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


cdef inline bint has_ports(uint8_t proto) noexcept nogil:
    """TCP, UDP, DCCP, SCTP, UDP-Lite: the protocols whose ports a probe reads (ext/decode.pxd)."""
    return proto == 6 or proto == 17 or proto == 33 or proto == 132 or proto == 136


cdef inline void whole_packets(FlowRecord* r) noexcept nogil:
    """Octets that packets of this flow can have: each at least its headers, at most 65535 bytes."""
    cdef uint64_t low = <uint64_t>min_ip_length(r) * r.packets
    if r.octets < low:
        r.octets = low
    if r.octets > <uint64_t>MAX_PACKET_BYTES * r.packets:
        r.octets = <uint64_t>MAX_PACKET_BYTES * r.packets


cdef void check_record_count(Py_ssize_t n) except *:
    if n < 0 or <size_t>n > <size_t>(PY_SSIZE_T_MAX // sizeof(FlowRecord)):
        raise ValueError(f"cannot make {n} records at once")


cdef inline uint64_t key_hash(const FlowRecord* r) noexcept nogil:
    """FNV-1a over the members a probe's default record keys on (ext/decode.pxd FlowKey)."""
    cdef uint64_t h = 14695981039346656037ULL
    cdef int i
    for i in range(16):
        h = (h ^ r.src[i]) * 1099511628211ULL
        h = (h ^ r.dst[i]) * 1099511628211ULL
    h = (h ^ r.ipver) * 1099511628211ULL
    h = (h ^ r.proto) * 1099511628211ULL
    h = (h ^ r.tos) * 1099511628211ULL
    h = (h ^ r.sport) * 1099511628211ULL
    h = (h ^ r.dport) * 1099511628211ULL
    return h ^ (h >> 29)


cdef inline bint same_key(const FlowRecord* a, const FlowRecord* b) noexcept nogil:
    return a.ipver == b.ipver and a.proto == b.proto and a.tos == b.tos and a.sport == b.sport \
        and a.dport == b.dport and memcmp(a.src, b.src, 16) == 0 and memcmp(a.dst, b.dst, 16) == 0


cdef bint key_is_new(uint32_t* table, uint64_t mask, const FlowRecord* records, uint32_t i) noexcept nogil:
    """Record i's key goes into the open-addressed table unless an earlier record holds it."""
    cdef uint64_t slot = key_hash(&records[i]) & mask
    while table[slot]:
        if same_key(&records[table[slot] - 1], &records[i]):
            return False
        slot = (slot + 1) & mask
    table[slot] = i + 1
    return True


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
    if proto == 132 or proto == 33:
        return 12
    if is_icmp(proto):
        return 8
    return 0


cdef inline int64_t min_ip_length(const FlowRecord* r) noexcept nogil:
    return (20 if r.ipver == 4 else 40) + l4_header(r.proto)


def settle(bytearray records, double max_gap_s, double max_duration_s):
    """The records (in place) made consistent with packets a probe will meter: gaps between
    packets under max_gap_s, durations under max_duration_s, no packet before 1970, no
    interfaces (a capture file has none) and the MACs the frames carry."""
    cdef Py_ssize_t n = len(records) // sizeof(FlowRecord), i
    cdef FlowRecord* r = <FlowRecord*>PyByteArray_AS_STRING(records)
    cdef int64_t longest
    for i in range(n):
        whole_packets(&r[i])
        longest = <int64_t>(min(max_duration_s, max_gap_s * (r[i].packets - 1)) * 1e6)
        if r[i].last_us - r[i].first_us > longest:
            r[i].first_us = r[i].last_us - longest
        if r[i].first_us < 0:
            r[i].first_us = 0
        r[i].in_if = 0
        r[i].out_if = 0
        memcpy(r[i].src_mac, b"\x02\x00\x00\x00\x00\x01", 6)
        memcpy(r[i].dst_mac, b"\x02\x00\x00\x00\x00\x02", 6)


def packet_total(bytearray records):
    """The packets of all the records (a Python int: no sum can wrap)."""
    cdef Py_ssize_t n = len(records) // sizeof(FlowRecord), i
    cdef const FlowRecord* r = <const FlowRecord*>PyByteArray_AS_STRING(records)
    total = 0
    cdef uint64_t part = 0
    for i in range(n):
        if part > (<uint64_t>1 << 62):
            total += part
            part = 0
        part += r[i].packets
    return total + part


SLOT_BYTES = sizeof(Slot)


cdef class Capture:
    """Capture(records): the packets of settle()d records (a bytearray), each at its time,
    sorted as a capture holds them. end_reasons() says in the records why a probe reading
    the capture ends each flow; frames() yields the pcap records. The caller checks that
    memory holds packet_total(records) * SLOT_BYTES first, and that there are fewer than
    2**32 records."""
    cdef bytearray records
    cdef const FlowRecord* recs
    cdef Py_ssize_t n
    cdef Slot* slots
    cdef uint64_t total

    def __cinit__(self, bytearray records):
        self.records = records
        self.recs = <const FlowRecord*>PyByteArray_AS_STRING(records)
        self.n = len(records) // sizeof(FlowRecord)
        cdef Py_ssize_t i, k
        self.total = 0
        for i in range(self.n):
            self.total += self.recs[i].packets
        self.slots = <Slot*>malloc(max(<uint64_t>1, self.total) * sizeof(Slot))
        if self.slots == NULL:
            raise MemoryError(f"no memory for {self.total} packets")
        cdef uint64_t j = 0
        cdef int64_t span
        cdef const FlowRecord* r
        with nogil:
            for i in range(self.n):
                r = &self.recs[i]
                span = r.last_us - r.first_us
                for k in range(<Py_ssize_t>r.packets):
                    self.slots[j].t = r.first_us if r.packets == 1 else \
                        r.first_us + span * k // <int64_t>(r.packets - 1)
                    self.slots[j].record = <uint32_t>i
                    self.slots[j].index = <uint32_t>k
                    j += 1
            qsort(self.slots, self.total, sizeof(Slot), compare_slots)

    def __dealloc__(self):
        free(self.slots)

    cdef int64_t first_packet_from(self, int64_t t) noexcept nogil:
        """The time of the capture's first packet at t or later; INT64_MAX if none is."""
        cdef uint64_t low = 0, high = self.total, middle
        while low < high:
            middle = (low + high) // 2
            if self.slots[middle].t < t:
                low = middle + 1
            else:
                high = middle
        return self.slots[low].t if low < self.total else INT64_MAX

    def end_reasons(self, dict timeouts_us):
        """Why a probe (ext/_meter.pyx) reading the capture ends each flow, into the records.
        It expires flows when a packet moves its clock: a flow ends idle (tcp_end after a FIN
        or RST) at the first packet more than its inactive timeout after its last, active at
        the first packet maxlife or more after its first (idle first, at the same packet),
        at its FIN/RST itself when tcp.fin / tcp.rst is 0, and at the end of the input (eof)
        if the capture ends before either."""
        cdef int64_t fin_us = timeouts_us["tcp.fin"], rst_us = timeouts_us["tcp.rst"]
        cdef int64_t tcp_us = timeouts_us["tcp"], udp_us = timeouts_us["udp"], icmp_us = timeouts_us["icmp"]
        cdef int64_t general_us = timeouts_us["general"], maxlife_us = timeouts_us["maxlife"]
        cdef int64_t limit, idle_at, active_at
        cdef uint8_t idle_reason
        cdef FlowRecord* r = <FlowRecord*>PyByteArray_AS_STRING(self.records)
        cdef Py_ssize_t i
        with nogil:
            for i in range(self.n):
                idle_reason = END_IDLE
                if r[i].proto == 6 and r[i].tcp_flags & (TH_FIN | TH_RST):
                    limit = rst_us if r[i].tcp_flags & TH_RST else fin_us
                    if limit == 0:
                        r[i].end_reason = END_TCP_END
                        continue
                    idle_reason = END_TCP_END
                else:
                    limit = tcp_us if r[i].proto == 6 else udp_us if r[i].proto == 17 else \
                        icmp_us if is_icmp(r[i].proto) else general_us
                idle_at = self.first_packet_from(r[i].last_us + limit + 1)
                active_at = self.first_packet_from(r[i].first_us + maxlife_us)
                if idle_at == INT64_MAX and active_at == INT64_MAX:
                    r[i].end_reason = END_EOF
                else:
                    r[i].end_reason = idle_reason if idle_at <= active_at else END_ACTIVE

    def frames(self, uint32_t snaplen=0):
        """The packets as pcap records (native little-endian header, microseconds), in chunks
        of about a megabyte. Frames hold the headers only (snaplen 0), or zero payload too up
        to snaplen bytes; the wire length is always the packet's."""
        cdef uint64_t j
        chunk = bytearray(CHUNK + 70000)
        used = 0
        for j in range(self.total):
            used = write_frame(chunk, used, &self.recs[self.slots[j].record], &self.slots[j], snaplen)
            if used >= CHUNK:
                yield bytes(chunk[:used])
                used = 0
        if used:
            yield bytes(chunk[:used])


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
