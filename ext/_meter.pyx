# The flow meter: decode each packet of a batch, account it to its flow, and
# expire flows as the flow clock says. One Python call per batch; no Python
# object per packet or per flow. Expired flows come back as packed FlowRecord
# structs in one bytes object (ext/record.pxd, generated from pyprobe/fields.py),
# whole or classic (their first CLASSIC_SIZE bytes: Meter.stride).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t, uintptr_t, INT64_MAX
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset
from libc.math cimport log10
from cpython.bytes cimport PyBytes_FromStringAndSize

from pyprobe.fields import END_REASONS

from record cimport FlowRecord, CLASSIC_RECORD_SIZE
from decode cimport (FlowKey, is_icmp, Packet, decode_packet, DECODED, IGNORE_REASONS, IGNORE_TRUNCATED_L2, TH_FIN, TH_RST,
                     TH_SYN, IGNORE_UNMATCHED, IGNORE_OTHER_DIRECTION, IGNORE_ON_SUBINTERFACE, DIR_INGRESS, DIR_EGRESS, DIR_BOTH,
                     DLT_NULL, DLT_EN10MB, DLT_RAW_BSD, DLT_RAW_OPENBSD, DLT_RAW, DLT_LOOP,
                     DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2)

include "meter/linktypes.pxi"

IGNORE_REASON_NAMES = ("non_ip", "truncated_l2", "truncated_ip", "bad_ip", "truncated_l4", "mpls_payload",
                       "other_direction", "on_vlan_subinterface", "unmatched")
VLAN_BITMAP_BYTES = 512
DIRECTIONS = {"ingress": DIR_INGRESS, "egress": DIR_EGRESS, "both": DIR_BOTH}

include "meter/constants.pxi"

# The flow key's members: (offset, size) in FlowKey, for the key masks of record definitions
# (pyprobe/definitions.py). Integer members are in native byte order, addresses in network order.
cdef FlowKey _k
cdef Packet NO_PACKET                   # all zero (C statics are)
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

cdef enum:
    NIL = -1
    AHEAD = 32          # packets decoded, and their hash slots fetched, before they are metered
    FLOW_AHEAD = 4      # how far ahead a flow is fetched while metering
    FLUSH_AHEAD = 16    # how far ahead in age order a flush fetches hash slots
    CACHE_LINE = 64

cdef extern from *:
    void prefetch "__builtin_prefetch" (const void* address) noexcept nogil


assert sizeof(Flow) == 2 * CACHE_LINE, "a flow is two cache lines"
RECORD_SIZE = sizeof(FlowRecord)
CLASSIC_SIZE = CLASSIC_RECORD_SIZE         # a classic record's bytes (pyprobe/fields.py)
cdef Py_ssize_t OUT_BUFFER_KEEP = 4 << 20       # (a flush step of 8192 records fits: kept, not faulted in again)


# What a packet of the flow reads and writes: 128 bytes, two cache lines (the table is aligned
# to them). Its times, read only when it is due or ends, are kept beside (FlowTimes).
cdef struct Flow:
    uint32_t hash           # (first: a lookup reads it before the key)
    uint32_t touched        # order of the last create/update: exact LRU for cache-full eviction
                            # (32 bits, compared modulo 2**32: a flow is 128 bytes, not 136)
    FlowKey key             # the first packet's, unmasked: the record definition's mask makes the key
    uint64_t packets
    uint64_t octets
    int64_t last_us         # the clock at its last packet (its idle timeout counts from it)
    int32_t lru_prev        # within the flow's timeout class, by last packet
    int32_t lru_next        # (also links the free list)
    int32_t age_prev        # all flows by creation: the head is the next active timeout
    int32_t age_next
    uint8_t tcp_flags
    uint8_t timeout_class
    uint8_t min_ttl
    uint8_t max_ttl
    uint8_t swapped         # a biflow's: its first packet's key was the reverse of the canonical one
    uint8_t late            # its latest packet's time is behind last_us: FlowTimes.last_us holds it


# A flow's times beside it. The clock never goes backwards, but a packet's own time can be
# behind it: live capture meters one interface's batch after another's, and ticks with the
# wall clock between them, while the kernel may still hold a packet of the first. Timeouts
# run on the clock; a record gives its packets' own times.
cdef struct FlowTimes:
    int64_t created_us      # the clock when the flow began (its active timeout counts from it)
    int64_t first_us        # its first packet's time
    int64_t last_us         # its latest packet's time, while Flow.late (else it is Flow.last_us)


# A biflow's other direction (RFC 5103: the responder's packets), beside the flows.
cdef struct FlowReverse:
    uint64_t packets
    uint64_t octets
    uint8_t tcp_flags


# What a record definition may collect beyond the usual counters, kept only when it does
# (beside the flows, at the same index): most records need none of it.
cdef struct FlowExtra:
    uint64_t octets_squared
    uint32_t syn
    uint32_t fin
    uint32_t rst
    uint32_t min_length
    uint32_t max_length
    uint32_t min_window              # of the TCP windows seen (NO_WINDOW: none yet)
    uint32_t max_window


cdef uint32_t NO_WINDOW = 0x10000      # above any TCP window

cdef uint64_t HASH_SEED = 0x9E3779B97F4A7C15ULL
cdef uint64_t HASH_MULTIPLIER = 0xff51afd7ed558ccdULL


cdef inline uint32_t hash_key(const FlowKey* key) noexcept nogil:
    """(Meter._key_of computes the same while it masks the key.)"""
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


cdef inline uint8_t class_of(uint8_t proto) noexcept nogil:
    if proto == 6:
        return CLASS_TCP
    if proto == 17:
        return CLASS_UDP
    if is_icmp(proto):
        return CLASS_ICMP
    return CLASS_GENERAL


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


include "meter/pacing.pxi"
include "meter/routes.pxi"


cdef class DecodedBatch:
    """A batch decoded once for several meters (monitors) that meter the same packets:
    decode() with the first meter's settings, then each meter's meter_decoded()."""
    cdef Packet* pkts
    cdef int* reasons
    cdef int64_t* times
    cdef Py_ssize_t n
    cdef Py_ssize_t cap

    def __dealloc__(self):
        free(self.pkts)
        free(self.reasons)
        free(self.times)

    def decode(self, Meter meter, packets, meta, int linktype=-1, int shift_round=0, direction="ingress",
               uint32_t in_if=0, vlans_elsewhere=None, uint16_t vlan=0):
        """Decode one batch (Meter.process's arguments) as `meter` would."""
        cdef const uint8_t[::1] buf = packets
        cdef const uint8_t[::1] raw_meta = meta
        cdef Py_ssize_t n = raw_meta.shape[0] // 16, buflen = buf.shape[0], k
        if n > self.cap:
            free(self.pkts)
            free(self.reasons)
            free(self.times)
            self.pkts = <Packet*>malloc(n * sizeof(Packet))
            self.reasons = <int*>malloc(n * sizeof(int))
            self.times = <int64_t*>malloc(n * sizeof(int64_t))
            if self.pkts == NULL or self.reasons == NULL or self.times == NULL:
                self.cap = self.n = 0
                raise MemoryError("cannot decode a batch this large")
            self.cap = n
        meter._begin_batch(linktype, shift_round, direction, in_if, vlans_elsewhere, vlan)
        with nogil:
            for k in range(n):
                self.reasons[k] = meter._decode(&buf[0] if buflen else NULL, buflen,
                                                <const uint32_t*>(&raw_meta[0] + 16 * k), &self.pkts[k],
                                                &self.times[k])
        meter.vlans_elsewhere = NULL
        self.n = n


cdef class Meter:
    """A unidirectional flow cache fed with pcapy-ng batches.

    Meter(linktype, max_flows=65536, record=None, timeouts=None, direction="ingress")

    record: what makes a flow (pyprobe/definitions.py's Definition: key_mask, export_mask,
    ipver, extras); None: the predefined record "full".
    """
    cdef int linktype
    cdef int shift_round             # a looped replay's round, when addresses are shifted per round
    cdef FlowKey key_masks[2]        # the record definition's key, for IPv4 and for IPv6: packets whose
                                     # masked keys agree are one flow
    cdef FlowKey export_masks[2]     # what a record shows of its flow's key (the key's bits, first-packet values)
    cdef bint shows_whole_key[2]     # the export mask keeps every bit: the record copies the key as it is
    cdef uint8_t only_ipver          # 4 or 6: the record meters only that IP version; 0: both
    cdef FlowExtra* extras           # NULL unless the record collects them
    cdef FlowReverse* reverse        # NULL unless the record is a biflow: both directions are one flow
    cdef int cache_kind              # CACHE_NORMAL, CACHE_IMMEDIATE, CACHE_PERMANENT
    cdef int64_t update_us           # a permanent cache's export interval
    cdef int64_t next_update         # of the flow clock: the next export of the whole cache
    cdef uint64_t not_monitored      # a permanent cache's: packets of new flows that found it full
    cdef uint64_t updates            # a permanent cache's exports so far
    cdef RouteTable route_table      # None, or the routes flows look their addresses up in
    cdef uint8_t route_as            # AS_SOURCE, AS_DESTINATION: keyed on that address's route's AS
    cdef FlowRoute* routing          # NULL unless there are routes: what each flow matched
    cdef uint32_t in_if              # this batch's interface, unless its link layer says
    cdef const uint8_t* vlans_elsewhere   # this batch's: a bit per VLAN id metered on a sub-interface
    cdef uint16_t batch_vlan         # this batch's VLAN sub-interface's id: its packets' outer tag
    cdef int direction_mode          # DIR_INGRESS, DIR_EGRESS or DIR_BOTH: which packets are metered
    cdef int batch_direction         # which way this batch's packets went, unless their link layer says
    cdef int32_t capacity
    cdef int32_t count
    cdef Flow* flows                 # (within flows_memory, at a cache line's start)
    cdef void* flows_memory
    cdef FlowTimes* times            # beside each flow
    cdef int32_t unused              # flows[unused:] were never handed out
    cdef int32_t free_head
    cdef uint32_t* slots             # open addressing, linear probing: flow index + 1, 0 = empty
    cdef uint32_t slot_mask
    cdef int32_t lru_head[N_CLASSES]
    cdef int32_t lru_tail[N_CLASSES]
    cdef int32_t age_head
    cdef int32_t age_tail
    cdef int64_t timeout_us[N_CLASSES]
    cdef int64_t maxlife_us
    cdef int64_t now
    cdef int64_t next_due            # no flow can be due before this clock value
    cdef uint32_t touch_counter
    # 1-in-N packet sampling: keep the packet at position `sample_pick` of every run of N
    cdef uint32_t sample_n
    cdef uint32_t sample_pos
    cdef uint32_t sample_pick
    cdef bint sample_random
    cdef uint64_t rng_state
    cdef bint limit_32bit            # NetFlow v5 counters are 32-bit: end a flow before they wrap
    cdef readonly Py_ssize_t stride  # bytes per record handed out: RECORD_SIZE, or CLASSIC_SIZE (classic
                                     # members only: pyprobe/definitions.py record_stride)
    cdef char* out
    cdef Py_ssize_t out_len
    cdef Py_ssize_t out_cap
    # statistics
    cdef uint64_t packets_read
    cdef uint64_t packets_metered
    cdef uint64_t octets_metered
    cdef uint64_t flows_created
    cdef uint64_t sampled_out
    cdef uint64_t ignored[IGNORE_REASONS]
    cdef uint64_t ended[N_END_REASONS]
    cdef uint64_t proto_packets[256]
    cdef uint64_t proto_octets[256]
    cdef uint64_t proto_flows[256]

    def __cinit__(self, int linktype, int max_flows=65536, record=None, timeouts=None,
                  uint32_t sampling=1, sampling_mode="count", bint limit_32bit=False, seed=None,
                  direction="ingress", cache="normal", double update=1800, Py_ssize_t stride=RECORD_SIZE):
        cdef uint64_t nslots = 1
        cdef const uint8_t[::1] mask
        if linktype not in SUPPORTED_LINKTYPES:
            raise ValueError(f"unsupported link type {linktype}")
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        if record is None:
            from pyprobe.definitions import predefined
            record = predefined("full")
        for mask in (record.key_mask, record.export_mask):
            if len(mask) != 2 * sizeof(FlowKey):
                raise ValueError(f"key masks are 2 x {sizeof(FlowKey)} bytes, not {len(mask)}")
        mask = record.key_mask
        memcpy(&self.key_masks[0], &mask[0], 2 * sizeof(FlowKey))
        mask = record.export_mask
        memcpy(&self.export_masks[0], &mask[0], 2 * sizeof(FlowKey))
        for v in range(2):                  # (the padding is zero in every key, masked or not)
            self.shows_whole_key[v] = all(mask[v * sizeof(FlowKey) + i] == 0xff or KEY_PAD[0] <= i < KEY_PAD[1]
                                          for i in range(sizeof(FlowKey)))
        if stride != sizeof(FlowRecord) and (stride != CLASSIC_RECORD_SIZE or record.extras or record.biflow):
            raise ValueError(f"records of {stride} bytes cannot hold this record's members")
        self.stride = stride
        if record.ipver not in (0, 4, 6):
            raise ValueError(f"ipver: 0, 4 or 6, not {record.ipver!r}")
        self.only_ipver = record.ipver
        self.route_as = record.route_as
        self.linktype = linktype
        if cache not in CACHE_KINDS:
            raise ValueError(f"unknown cache kind {cache!r} (one of {', '.join(CACHE_KINDS)})")
        self.cache_kind = CACHE_KINDS.index(cache)
        if not 1e-6 <= update <= 1e12:        # (a zero interval would divide by zero at the update)
            raise ValueError(f"update interval {update!r} out of range 1e-6..1e12 seconds")
        self.update_us = <int64_t>round(update * 1000000)
        self.next_update = -1 if self.cache_kind == CACHE_PERMANENT else INT64_MAX   # -1: at the first packet
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        self.direction_mode = DIRECTIONS[direction]
        self.batch_direction = DIR_INGRESS
        self.capacity = max_flows
        self._set_timeouts(timeouts or {})
        while nslots < 2 * <uint64_t>max_flows:
            nslots <<= 1
        # (calloc: pages that the cache never reaches are never touched; one flow more, to align)
        self.flows_memory = calloc(max_flows + 1, sizeof(Flow))
        self.flows = <Flow*>((<uintptr_t>self.flows_memory + CACHE_LINE - 1) & ~<uintptr_t>(CACHE_LINE - 1))
        self.times = <FlowTimes*>calloc(max_flows, sizeof(FlowTimes))
        self.slots = <uint32_t*>calloc(nslots, sizeof(uint32_t))
        if record.extras:
            self.extras = <FlowExtra*>calloc(max_flows, sizeof(FlowExtra))
        if record.biflow:
            self.reverse = <FlowReverse*>calloc(max_flows, sizeof(FlowReverse))
        if (self.flows_memory == NULL or self.times == NULL or self.slots == NULL
                or (record.extras and self.extras == NULL) or (record.biflow and self.reverse == NULL)):
            raise MemoryError(f"cannot allocate a cache of {max_flows} flows")
        self.slot_mask = <uint32_t>(nslots - 1)
        self.free_head = NIL
        for c in range(N_CLASSES):
            self.lru_head[c] = NIL
            self.lru_tail[c] = NIL
        self.age_head = NIL
        self.age_tail = NIL
        self.now = 0
        self.next_due = INT64_MAX
        if sampling < 1:
            raise ValueError("sampling interval must be at least 1")
        if sampling_mode not in ("count", "random"):
            raise ValueError(f"unknown sampling mode {sampling_mode!r}")
        self.sample_n = sampling
        self.sample_random = sampling_mode == "random"
        self.rng_state = 1
        if self.sample_random:               # (random only then: every start would pay for its import)
            import random
            self.rng_state = random.Random(seed).getrandbits(64) | 1
        self.sample_pick = self._next_pick()
        self.limit_32bit = limit_32bit

    def __dealloc__(self):
        free(self.flows_memory)
        free(self.times)
        free(self.slots)
        free(self.extras)
        free(self.reverse)
        free(self.routing)
        free(self.out)

    def _set_timeouts(self, dict timeouts):
        values = dict(DEFAULT_TIMEOUTS)
        for name, seconds in timeouts.items():
            if name not in values:
                raise ValueError(f"unknown timeout {name!r}")
            if seconds < 0:
                raise ValueError(f"timeout {name} must not be negative")
            values[name] = seconds
        for c, name in enumerate(TIMEOUT_NAMES):
            self.timeout_us[c] = <int64_t>round(values[name] * 1000000)
        self.maxlife_us = <int64_t>round(values["maxlife"] * 1000000)

    @property
    def active_flows(self):
        return self.count

    @property
    def clock_us(self):
        return self.now

    @property
    def packets_unmetered(self):
        """Packets read but not metered: undecodable, sampled out, or not monitored (a full permanent
        cache's new flows): IPFIX ignoredPacketTotalCount."""
        cdef uint64_t total = self.sampled_out + self.not_monitored
        for i in range(IGNORE_REASONS):
            total += self.ignored[i]
        return total

    def process(self, packets, meta, int linktype=-1, int shift_round=0, direction="ingress",
                uint32_t in_if=0, vlans_elsewhere=None, uint16_t vlan=0):
        """Meter one batch (of `linktype`, default the meter's); return the records of the
        flows it expired. shift_round k > 0 moves every address k steps (shift_addresses).
        direction, in_if: which way the batch's packets crossed which interface (ifIndex),
        where their link layer does not say (a live capture of one interface and direction).
        vlans_elsewhere: None, or 512 bytes, a bit per VLAN id whose tagged packets are
        skipped here, metered on their own VLAN sub-interface; vlan: the VLAN id of the
        sub-interface the batch was captured on, whose tag the kernel took off (batch.py)."""
        cdef const uint8_t[::1] buf = packets
        cdef const uint8_t[::1] raw_meta = meta
        cdef Py_ssize_t n = raw_meta.shape[0] // 16
        cdef Py_ssize_t buflen = buf.shape[0]
        self._begin_batch(linktype, shift_round, direction, in_if, vlans_elsewhere, vlan)
        # No Python inside: the GIL is free for the thread reading the next batch.
        with nogil:
            self._process_batch(&buf[0] if buflen else NULL, buflen, &raw_meta[0] if n else NULL, n)
        self.vlans_elsewhere = NULL
        return self._take_records()

    def meter_decoded(self, DecodedBatch batch):
        """Meter a batch another meter decoded (DecodedBatch: several monitors, one decoding);
        return the records of the flows it expired."""
        cdef Py_ssize_t base = 0, count, k
        cdef FlowKey keys[AHEAD]
        cdef uint32_t hashes[AHEAD]
        cdef bint swapped[AHEAD]
        with nogil:
            while base < batch.n:
                count = min(<Py_ssize_t>AHEAD, batch.n - base)
                for k in range(count):
                    if batch.reasons[base + k] == DECODED:
                        self._key_of(&batch.pkts[base + k], &keys[k], &hashes[k], &swapped[k])
                self._meter_chunk(&batch.pkts[base], &batch.reasons[base], &batch.times[base], keys, hashes,
                                  swapped, count)
                base += count
        return self._take_records()

    cdef int _begin_batch(self, int linktype, int shift_round, direction, uint32_t in_if, vlans_elsewhere,
                          uint16_t vlan) except -1:
        """What a batch says of its packets, for decoding them (process())."""
        cdef const uint8_t[::1] vlan_bits
        self.vlans_elsewhere = NULL
        if vlans_elsewhere is not None:
            vlan_bits = vlans_elsewhere
            if vlan_bits.shape[0] != VLAN_BITMAP_BYTES:
                raise ValueError(f"vlans_elsewhere: {VLAN_BITMAP_BYTES} bytes, not {vlan_bits.shape[0]}")
            self.vlans_elsewhere = &vlan_bits[0]     # (the caller keeps the bytes for the batch)
        self.in_if = in_if
        self.batch_vlan = vlan & 0x0fff
        if linktype >= 0 and linktype != self.linktype:
            if linktype not in SUPPORTED_LINKTYPES:
                raise ValueError(f"unsupported link type {linktype}")
            self.linktype = linktype
        self.shift_round = shift_round
        self.batch_direction = DIRECTIONS[direction]
        return 0

    cdef void _process_batch(self, const uint8_t* buf, Py_ssize_t buflen, const uint8_t* raw_meta,
                             Py_ssize_t n) noexcept nogil:
        """The batch in chunks of AHEAD packets, each decoded (decoding reads no meter state)
        and then metered, the next chunk's headers fetched into the cache meanwhile."""
        cdef Packet pkts[AHEAD]
        cdef int reasons[AHEAD]
        cdef int64_t times[AHEAD]
        cdef FlowKey keys[AHEAD]
        cdef uint32_t hashes[AHEAD]
        cdef bint swapped[AHEAD]
        cdef Py_ssize_t base = 0, k, count, offset
        while base < n:
            count = min(<Py_ssize_t>AHEAD, n - base)
            # the next chunk's headers fetched while this one is decoded (two lines: a tagged
            # IPv6 header with its transport ports reaches past the first)
            for k in range(base + AHEAD, min(base + 2 * AHEAD, n)):
                offset = (<const uint32_t*>(raw_meta + 16 * k))[2]
                if offset + 128 <= buflen:
                    prefetch(buf + offset)
                    prefetch(buf + offset + 64)
            for k in range(count):            # (each slot fetched while the next packets are decoded)
                reasons[k] = self._decode(buf, buflen, <const uint32_t*>(raw_meta + 16 * (base + k)), &pkts[k],
                                          &times[k])
                if reasons[k] == DECODED:
                    self._key_of(&pkts[k], &keys[k], &hashes[k], &swapped[k])
            self._meter_chunk(pkts, reasons, times, keys, hashes, swapped, count)
            base += count

    cdef inline void _key_of(self, const Packet* pkt, FlowKey* key, uint32_t* h, bint* swapped) noexcept nogil:
        """A decoded packet's flow key as the record definition makes it (masked; a biflow's
        canonical) and its hash, whose slot is fetched into the cache meanwhile. One pass
        masks, stores and hashes each word (hash_key's hash)."""
        cdef const uint64_t* raw = <const uint64_t*>&pkt.key
        cdef const uint64_t* m = <const uint64_t*>&self.key_masks[pkt.key.ipver == 6]
        cdef uint64_t* out = <uint64_t*>key
        cdef uint64_t hv = HASH_SEED, word
        cdef int i
        if self.route_as or self.reverse != NULL:     # (the key made here, then masked in place)
            key[0] = pkt.key
            raw = <const uint64_t*>key
            if self.route_as:
                self._route_as_in_place(key)
        if self.reverse != NULL:
            self._mask_key(key)
            swapped[0] = canonical(key)
            h[0] = hash_key(key)
        else:
            for i in range(sizeof(FlowKey) // 8):
                word = raw[i] & m[i]
                out[i] = word
                hv = (hv ^ word) * HASH_MULTIPLIER
                hv ^= hv >> 32
            h[0] = <uint32_t>(hv ^ (hv >> 29))
            swapped[0] = False
        prefetch(&self.slots[h[0] & self.slot_mask])

    cdef inline void _meter_chunk(self, Packet* pkts, const int* reasons, const int64_t* times, const FlowKey* keys,
                           const uint32_t* hashes, const bint* swapped, Py_ssize_t count) noexcept nogil:
        """Up to AHEAD decoded packets, their keys made (_key_of), metered in order, each flow
        fetched into the cache a few packets ahead. A large cache costs memory latency per
        packet; this way the waits overlap."""
        cdef Py_ssize_t k
        cdef uint32_t s
        cdef int why
        for k in range(count):
            if k + FLOW_AHEAD < count and reasons[k + FLOW_AHEAD] == DECODED:
                s = self.slots[hashes[k + FLOW_AHEAD] & self.slot_mask]
                if s:                           # (both of its cache lines)
                    prefetch(&self.flows[s - 1])
                    prefetch(<const char*>&self.flows[s - 1] + CACHE_LINE)
            self.packets_read += 1
            if times[k] > self.now:
                self.now = times[k]
            if self.now >= self.next_due:
                self._expire_due()
            if self.now >= self.next_update:
                self._export_cache()
            if self.sample_n > 1 and not self._sample():
                self.sampled_out += 1
                continue
            why = reasons[k]
            if why == DECODED and self.only_ipver and pkts[k].key.ipver != self.only_ipver:
                why = IGNORE_UNMATCHED
            if why != DECODED:
                self.ignored[why] += 1
                continue
            self._meter(&pkts[k], &keys[k], hashes[k], swapped[k], times[k])

    cdef inline int _decode(self, const uint8_t* buf, Py_ssize_t buflen, const uint32_t* m,
                            Packet* pkt, int64_t* time) noexcept nogil:
        """One packet of the batch decoded, its direction, VLAN and shift applied, its time in
        `time`: DECODED, or why it is not metered. Reads no flow state."""
        cdef int reason
        time[0] = <int64_t>m[0] * 1000000 + m[1]
        if <Py_ssize_t>m[2] + <Py_ssize_t>m[3] > buflen:
            return IGNORE_TRUNCATED_L2                  # cannot happen with our sources; guards the pointer
        pkt[0] = NO_PACKET                  # (a copy: memset of this size compiles to a slow rep stos)
        pkt.key.in_if = self.in_if
        reason = decode_packet(buf + m[2] if m[3] else NULL, m[3], self.linktype, pkt)
        if reason != DECODED:
            return reason
        if not pkt.direction_known:
            pkt.key.direction = self.batch_direction
        if self.direction_mode != DIR_BOTH and pkt.key.direction != self.direction_mode:
            return IGNORE_OTHER_DIRECTION
        if (self.vlans_elsewhere != NULL and pkt.key.vlan
                and self.vlans_elsewhere[pkt.key.vlan >> 3] >> (pkt.key.vlan & 7) & 1):
            return IGNORE_ON_SUBINTERFACE
        if self.batch_vlan:                      # the outermost tag, as the wire had it; a tag
            pkt.key.inner_vlan = pkt.key.vlan    # left in the frame is the next one in
            pkt.key.vlan = self.batch_vlan
        if self.shift_round:
            shift_addresses(&pkt.key, self.shift_round)
        return DECODED

    def expire(self, int64_t now_us):
        """Advance the clock (never backwards) and expire what is due: live capture ticks."""
        if now_us > self.now:
            self.now = now_us
        if self.now >= self.next_due:
            self._expire_due()
        if self.now >= self.next_update:
            self._export_cache()
        return self._take_records()

    def flush(self, Py_ssize_t max_records=0, bint forced=False):
        """Expire flows oldest first, with reason eof (the input ended) or forced (it did
        not: shutdown, expire-all): all of them, or at most max_records per call (call until
        it returns nothing) so memory stays small."""
        cdef Py_ssize_t n = 0
        cdef int reason = END_FORCED if forced else END_EOF
        cdef int32_t ahead = self.age_head
        cdef int k
        for k in range(FLUSH_AHEAD):          # (each flow's hash slot is fetched before it is freed)
            if ahead != NIL:
                ahead = self.flows[ahead].age_next
        while self.age_head != NIL and (max_records <= 0 or n < max_records):
            if ahead != NIL:
                prefetch(&self.slots[self.flows[ahead].hash & self.slot_mask])
                ahead = self.flows[ahead].age_next
            self._expire_flow(self.age_head, reason)
            n += 1
        if self.age_head == NIL:
            self.next_due = INT64_MAX
        return self._take_records()

    def snapshot(self):
        """Records of every active flow as they stand, oldest first, without ending them
        (end_reason 0): for dump-flows."""
        self._emit_active()
        return self._take_records()

    cdef void _emit_active(self) noexcept nogil:
        """A record of every active flow as it stands, oldest first (end_reason 0); the flows go on."""
        cdef int32_t idx = self.age_head
        while idx != NIL:
            self._emit(&self.flows[idx], 0)
            idx = self.flows[idx].age_next

    def top(self, Py_ssize_t n, by="octets"):
        """Records of the n active flows with the most octets (or packets; a biflow's both
        directions), the largest first, as they stand (end_reason 0): ctl top."""
        cdef bint packets = by == "packets"
        cdef int32_t idx = self.age_head
        cdef int32_t* heap            # a min-heap of flow indices by their size: the n largest so far
        cdef Py_ssize_t size = 0, i
        cdef int32_t smallest
        if by not in ("octets", "packets"):
            raise ValueError(f"top flows by octets or packets, not {by!r}")
        if n <= 0 or self.count == 0:
            return b""
        n = min(n, <Py_ssize_t>self.count)
        heap = <int32_t*>malloc(n * sizeof(int32_t))
        if heap == NULL:
            raise MemoryError("cannot sort the flows")
        while idx != NIL:
            if size < n:                                 # sift up
                i = size
                size += 1
                while i > 0 and self._size(idx, packets) < self._size(heap[(i - 1) // 2], packets):
                    heap[i] = heap[(i - 1) // 2]
                    i = (i - 1) // 2
                heap[i] = idx
            elif self._size(idx, packets) > self._size(heap[0], packets):    # it replaces the smallest
                self._sift_down(heap, size, idx, packets)
            idx = self.flows[idx].age_next
        while size > 0:                                  # smallest first out of the heap, to its end
            size -= 1
            smallest = heap[0]
            self._sift_down(heap, size, heap[size], packets)
            heap[size] = smallest
        for i in range(n):                               # (heap[0] is now the largest)
            self._emit(&self.flows[heap[i]], 0)
        free(heap)
        return self._take_records()

    cdef void _sift_down(self, int32_t* heap, Py_ssize_t size, int32_t flow, bint packets) noexcept nogil:
        """The min-heap heap[:size] with its top replaced by `flow`, put in order again."""
        cdef Py_ssize_t i = 0, child
        while True:
            child = 2 * i + 1
            if child >= size:
                break
            if child + 1 < size and self._size(heap[child + 1], packets) < self._size(heap[child], packets):
                child += 1
            if self._size(heap[child], packets) >= self._size(flow, packets):
                break
            heap[i] = heap[child]
            i = child
        heap[i] = flow

    cdef inline uint64_t _size(self, int32_t idx, bint packets) noexcept nogil:
        cdef uint64_t size = self.flows[idx].packets if packets else self.flows[idx].octets
        if self.reverse != NULL:
            size += self.reverse[idx].packets if packets else self.reverse[idx].octets
        return size

    def delete_all(self):
        """Forget every active flow without a record (softflowctl's delete-all); returns how many."""
        cdef Py_ssize_t n = 0
        while self.age_head != NIL:
            self._expire_flow_quietly(self.age_head)
            n += 1
        self.next_due = INT64_MAX
        return n

    def set_routes(self, RouteTable routes):
        """Routes for the flows that start from now on (None: none); a flow keeps what its
        addresses matched when it started (an AS-keyed record's packets go to the flow of the
        AS they match now)."""
        if routes is None and self.route_as:
            raise ValueError("an AS-keyed record needs routes")
        if routes is not None and self.stride != sizeof(FlowRecord):
            raise ValueError("classic records have no routing members: a routed meter packs whole records")
        if routes is not None and self.routing == NULL:
            self.routing = <FlowRoute*>calloc(self.capacity, sizeof(FlowRoute))
            if self.routing == NULL:
                raise MemoryError("cannot allocate the flows' routes")
        self.route_table = routes

    def set_limit_32bit(self, bint limit_32bit):
        """Whether flows end before their counters pass 32 bits (a NetFlow v5 collector)."""
        self.limit_32bit = limit_32bit

    def set_timeouts(self, dict timeouts):
        """New timeouts for the running cache (SIGHUP, control socket); flows keep their state."""
        self._set_timeouts(timeouts)
        self.next_due = self.now           # re-examine everything at the next packet or tick

    def stats(self):
        """Counters since creation, as a dict of plain ints."""
        return {
            "packets_read": self.packets_read,
            "packets_metered": self.packets_metered,
            "octets_metered": self.octets_metered,
            "packets_ignored": {name: self.ignored[i] for i, name in enumerate(IGNORE_REASON_NAMES)},
            "packets_sampled_out": self.sampled_out,
            "packets_not_monitored": self.not_monitored,
            "cache_updates": self.updates,
            "sampling": self.sample_n,
            "flows_created": self.flows_created,
            "flows_active": self.count,
            "records": {END_REASON_NAMES[r]: self.ended[r] for r in sorted(END_REASON_NAMES)},
            "protocols": {p: (self.proto_flows[p], self.proto_packets[p], self.proto_octets[p])
                          for p in range(256) if self.proto_packets[p]},
        }

    # -- metering -----------------------------------------------------------

    cdef inline bint _sample(self) noexcept nogil:
        """True for the one packet of each run of sample_n that is metered."""
        cdef bint keep = self.sample_pos == self.sample_pick
        self.sample_pos += 1
        if self.sample_pos == self.sample_n:
            self.sample_pos = 0
            self.sample_pick = self._next_pick()
        return keep

    cdef inline uint32_t _next_pick(self) noexcept nogil:
        """Count-based sampling keeps the first packet of each run; random, any one (xorshift64)."""
        if not self.sample_random:
            return 0
        self.rng_state ^= self.rng_state << 13
        self.rng_state ^= self.rng_state >> 7
        self.rng_state ^= self.rng_state << 17
        return <uint32_t>(self.rng_state % self.sample_n)

    cdef void _meter(self, const Packet* pkt, const FlowKey* key, uint32_t h, bint swapped,
                     int64_t time_us) noexcept nogil:
        """Count a decoded packet into its flow: key is its masked key, h that key's hash;
        swapped: a biflow's canonical key is the packet's reversed; time_us: its own time."""
        cdef int32_t idx
        cdef Flow* f
        cdef FlowReverse* rev
        idx = self._lookup(key, h)
        if idx != NIL and self.limit_32bit and self._would_wrap(&self.flows[idx], pkt):
            self._expire_flow(idx, END_ACTIVE)
            idx = NIL
        if idx == NIL:
            if self.count == self.capacity:
                if self.cache_kind == CACHE_PERMANENT:
                    self.not_monitored += 1         # (its flows stay: a new one is not monitored)
                    return
                self._expire_flow(self._least_recently_touched(), END_CACHE_FULL)
            idx = self._create(key, h, pkt, time_us)
            self.flows[idx].swapped = swapped
        else:
            f = &self.flows[idx]
            if self.reverse != NULL and swapped != f.swapped:     # the responder's packet
                rev = &self.reverse[idx]
                rev.packets += 1
                rev.octets += pkt.octets
                rev.tcp_flags |= pkt.tcp_flags
            else:
                f.packets += 1
                f.octets += pkt.octets
                f.tcp_flags |= pkt.tcp_flags
            if time_us < self.now:
                self._late_packet(idx, time_us)
            else:
                f.late = False
            f.last_us = self.now
            if pkt.ttl < f.min_ttl:
                f.min_ttl = pkt.ttl
            if pkt.ttl > f.max_ttl:
                f.max_ttl = pkt.ttl
            if self.extras != NULL:
                self._measure(&self.extras[idx], pkt, False)
            self.touch_counter += 1
            f.touched = self.touch_counter
            self._lru_unlink(idx)
            self._lru_append(idx, f.timeout_class)
        self.packets_metered += 1
        self.octets_metered += pkt.octets
        self.proto_packets[pkt.key.proto] += 1
        self.proto_octets[pkt.key.proto] += pkt.octets
        if self.cache_kind == CACHE_IMMEDIATE:
            self._expire_flow(idx, END_IMMEDIATE)
        elif key.proto == 6 and self.cache_kind == CACHE_NORMAL:
            self._check_tcp_end(idx)

    cdef inline void _late_packet(self, int32_t idx, int64_t time_us) noexcept nogil:
        """A packet of the flow whose time is behind the clock: the flow's latest packet time
        is kept beside it (FlowTimes), as the clock at its last packet no longer says it."""
        cdef Flow* f = &self.flows[idx]
        cdef FlowTimes* t = &self.times[idx]
        cdef int64_t latest = t.last_us if f.late else f.last_us
        t.last_us = time_us if time_us > latest else latest
        f.late = True

    cdef inline void _measure(self, FlowExtra* x, const Packet* pkt, bint first) noexcept nogil:
        """What a record definition may collect over the packets (FlowExtra)."""
        if first:
            memset(x, 0, sizeof(FlowExtra))
            x.min_length = pkt.octets
            x.min_window = NO_WINDOW
        x.octets_squared += <uint64_t>pkt.octets * pkt.octets
        if pkt.octets < x.min_length:
            x.min_length = pkt.octets
        if pkt.octets > x.max_length:
            x.max_length = pkt.octets
        if pkt.key.proto == 6:
            x.syn += (pkt.tcp_flags & TH_SYN) != 0
            x.fin += (pkt.tcp_flags & TH_FIN) != 0
            x.rst += (pkt.tcp_flags & TH_RST) != 0
            if pkt.window_known:
                x.min_window = min(x.min_window, <uint32_t>pkt.tcp_window)
                x.max_window = max(x.max_window, <uint32_t>pkt.tcp_window)

    cdef inline void _route_as_in_place(self, FlowKey* key) noexcept nogil:
        """An AS-keyed record's key: the keyed addresses replaced by their routes' origin AS
        (a lookup per packet, as the key needs; routes change between packets of a flow)."""
        if self.route_as & AS_SOURCE:
            as_in_place(self.route_table, key.src, key.ipver)
        if self.route_as & AS_DESTINATION:
            as_in_place(self.route_table, key.dst, key.ipver)

    cdef void _route(self, FlowRoute* fr, const FlowKey* key) noexcept nogil:
        """A new flow's routes: the destination's (next hop, output interface, AS, prefix
        length) and the source's (AS, prefix length), from its first packet's addresses."""
        cdef int v = key.ipver == 6, bits = 128 if key.ipver == 6 else 32
        cdef const Route* r
        memset(fr, 0, sizeof(FlowRoute))
        if self.route_table is None:
            return
        r = route_of(self.route_table.nodes[v], self.route_table.routes, key.dst, bits)
        if r != NULL:
            memcpy(fr.next_hop, r.next_hop, 16)
            fr.out_if = r.out_if
            fr.dst_as = r.origin_as
            fr.dst_length = r.length
        r = route_of(self.route_table.nodes[v], self.route_table.routes, key.src, bits)
        if r != NULL:
            fr.src_as = r.origin_as
            fr.src_length = r.length

    cdef inline bint _would_wrap(self, const Flow* f, const Packet* pkt) noexcept nogil:
        return f.packets + 1 > 0xffffffffULL or f.octets + pkt.octets > 0xffffffffULL

    cdef inline void _mask_key(self, FlowKey* key) noexcept nogil:
        """Keep the bits the record definition keys on (key_mask), zero the rest."""
        mask_words(key, &self.key_masks[key.ipver == 6])

    cdef inline bint _same_flow(self, const FlowKey* first, const FlowKey* key) noexcept nogil:
        """Whether a flow whose first packet had `first` is the flow of the masked key."""
        cdef FlowKey turned
        cdef const uint64_t* a = <const uint64_t*>first
        cdef const uint64_t* b = <const uint64_t*>key
        cdef const uint64_t* m = <const uint64_t*>&self.key_masks[key.ipver == 6]
        cdef uint64_t differ = 0
        cdef int i
        if self.reverse != NULL:              # a biflow's key is canonical: so must the first packet's be
            memcpy(&turned, first, sizeof(FlowKey))
            self._mask_key(&turned)
            canonical(&turned)
            return memcmp(&turned, key, sizeof(FlowKey)) == 0
        for i in range(sizeof(FlowKey) // 8):
            differ |= (a[i] & m[i]) ^ b[i]
        return differ == 0

    cdef inline int32_t _lookup(self, const FlowKey* key, uint32_t h) noexcept nogil:
        cdef uint32_t i = h & self.slot_mask
        cdef uint32_t s
        cdef Flow* f
        while True:
            s = self.slots[i]
            if s == 0:
                return NIL
            f = &self.flows[s - 1]
            if f.hash == h and self._same_flow(&f.key, key):
                return <int32_t>(s - 1)
            i = (i + 1) & self.slot_mask

    cdef int32_t _create(self, const FlowKey* key, uint32_t h, const Packet* pkt, int64_t time_us) noexcept nogil:
        cdef int32_t idx
        cdef uint32_t i = h & self.slot_mask
        cdef Flow* f
        if self.free_head != NIL:
            idx = self.free_head
            self.free_head = self.flows[idx].lru_next
        else:
            idx = self.unused
            self.unused += 1
        f = &self.flows[idx]
        memcpy(&f.key, &pkt.key, sizeof(FlowKey))
        if self.route_as:                    # (the flow keeps its key as _key_of made it, unmasked)
            self._route_as_in_place(&f.key)
        f.hash = h
        f.packets = 1
        f.octets = pkt.octets
        self.times[idx].created_us = self.now
        self.times[idx].first_us = time_us
        self.times[idx].last_us = time_us
        f.last_us = self.now
        f.late = time_us < self.now
        f.tcp_flags = pkt.tcp_flags
        f.min_ttl = pkt.ttl
        f.max_ttl = pkt.ttl
        if self.extras != NULL:
            self._measure(&self.extras[idx], pkt, True)
        if self.routing != NULL:
            self._route(&self.routing[idx], &pkt.key)
        if self.reverse != NULL:
            memset(&self.reverse[idx], 0, sizeof(FlowReverse))
        self.touch_counter += 1
        f.touched = self.touch_counter
        while self.slots[i] != 0:
            i = (i + 1) & self.slot_mask
        self.slots[i] = <uint32_t>idx + 1
        f.timeout_class = class_of(key.proto)
        self._lru_append(idx, f.timeout_class)
        f.age_next = NIL
        f.age_prev = self.age_tail
        if self.age_tail != NIL:
            self.flows[self.age_tail].age_next = idx
        else:
            self.age_head = idx
        self.age_tail = idx
        self.count += 1
        self.flows_created += 1
        self.proto_flows[key.proto] += 1
        self._due_no_later_than(self.now + self.timeout_us[f.timeout_class] + 1)
        self._due_no_later_than(self.now + self.maxlife_us)
        return idx

    cdef void _check_tcp_end(self, int32_t idx) noexcept nogil:
        """FIN or RST ends the flow at once (timeout 0) or moves it to the shorter timeout."""
        cdef Flow* f = &self.flows[idx]
        cdef uint8_t cls
        cdef uint8_t flags = f.tcp_flags | (self.reverse[idx].tcp_flags if self.reverse != NULL else 0)
        if flags & TH_RST:
            cls = CLASS_TCP_RST
        elif flags & TH_FIN:
            cls = CLASS_TCP_FIN
        else:
            return
        if self.timeout_us[cls] == 0:
            self._expire_flow(idx, END_TCP)
        elif f.timeout_class != cls:
            self._lru_unlink(idx)
            f.timeout_class = cls
            self._lru_append(idx, cls)
            self._due_no_later_than(f.last_us + self.timeout_us[cls] + 1)

    # -- expiry -------------------------------------------------------------

    cdef inline void _due_no_later_than(self, int64_t t) noexcept nogil:
        if t < self.next_due and self.cache_kind != CACHE_PERMANENT:    # (a permanent cache's never end)
            self.next_due = t

    cdef void _export_cache(self) noexcept nogil:
        """A permanent cache's update: every flow's record with its totals so far, oldest
        first; the flows go on. The first packet starts the update clock."""
        if self.next_update < 0:
            self.next_update = self.now + self.update_us
            return
        self._emit_active()
        self.updates += 1
        self.next_update += self.update_us * ((self.now - self.next_update) // self.update_us + 1)

    cdef void _expire_due(self) noexcept nogil:
        """Expire every flow due at self.now, then find when the next one is due."""
        cdef int c
        cdef int32_t idx
        cdef int64_t now = self.now
        if self.cache_kind == CACHE_PERMANENT:
            self.next_due = INT64_MAX
            return
        for c in range(N_CLASSES):
            idx = self.lru_head[c]
            while idx != NIL and now - self.flows[idx].last_us > self.timeout_us[c]:
                self._expire_flow(idx, END_TCP if c == CLASS_TCP_FIN or c == CLASS_TCP_RST else END_IDLE)
                idx = self.lru_head[c]
        # Idle flows are gone, so what is left past its lifetime ends as active.
        while self.age_head != NIL and now - self.times[self.age_head].created_us >= self.maxlife_us:
            self._expire_flow(self.age_head, END_ACTIVE)
        self.next_due = INT64_MAX
        for c in range(N_CLASSES):
            if self.lru_head[c] != NIL:
                self._due_no_later_than(self.flows[self.lru_head[c]].last_us + self.timeout_us[c] + 1)
        if self.age_head != NIL:
            self._due_no_later_than(self.times[self.age_head].created_us + self.maxlife_us)

    cdef int32_t _least_recently_touched(self) noexcept nogil:
        cdef int c
        cdef int32_t idx, best = NIL
        for c in range(N_CLASSES):
            idx = self.lru_head[c]
            # (the heads of the class lists are within 2**31 touches of each other unless a
            # flow sat idle through two billion packets: the difference is read modulo 2**32)
            if idx != NIL and (best == NIL or <int32_t>(self.flows[idx].touched - self.flows[best].touched) < 0):
                best = idx
        return best

    cdef void _expire_flow(self, int32_t idx, int reason) noexcept nogil:
        self._emit(&self.flows[idx], reason)
        self.ended[reason] += 1
        self._expire_flow_quietly(idx)

    cdef void _expire_flow_quietly(self, int32_t idx) noexcept nogil:
        """Take a flow out of the lists, the hash table and the cache."""
        cdef Flow* f = &self.flows[idx]
        self._lru_unlink(idx)
        if f.age_prev != NIL:
            self.flows[f.age_prev].age_next = f.age_next
        else:
            self.age_head = f.age_next
        if f.age_next != NIL:
            self.flows[f.age_next].age_prev = f.age_prev
        else:
            self.age_tail = f.age_prev
        self._unslot(idx)
        f.lru_next = self.free_head
        self.free_head = idx
        self.count -= 1

    cdef void _unslot(self, int32_t idx) noexcept nogil:
        """Remove idx from the hash table by backward-shift deletion (no tombstones)."""
        cdef uint32_t mask = self.slot_mask
        cdef uint32_t i = self.flows[idx].hash & mask
        cdef uint32_t j, home
        while self.slots[i] != <uint32_t>idx + 1:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            if self.slots[j] == 0:
                break
            home = self.flows[self.slots[j] - 1].hash & mask
            # The entry at j may move back to the hole at i unless its home lies in (i, j].
            if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
                continue
            self.slots[i] = self.slots[j]
            i = j
        self.slots[i] = 0

    cdef inline void _lru_append(self, int32_t idx, uint8_t c) noexcept nogil:
        cdef Flow* f = &self.flows[idx]
        f.lru_next = NIL
        f.lru_prev = self.lru_tail[c]
        if self.lru_tail[c] != NIL:
            self.flows[self.lru_tail[c]].lru_next = idx
        else:
            self.lru_head[c] = idx
        self.lru_tail[c] = idx

    cdef inline void _lru_unlink(self, int32_t idx) noexcept nogil:
        cdef Flow* f = &self.flows[idx]
        cdef uint8_t c = f.timeout_class
        if f.lru_prev != NIL:
            self.flows[f.lru_prev].lru_next = f.lru_next
        else:
            self.lru_head[c] = f.lru_next
        if f.lru_next != NIL:
            self.flows[f.lru_next].lru_prev = f.lru_prev
        else:
            self.lru_tail[c] = f.lru_prev

    # -- records ------------------------------------------------------------

    cdef void _emit(self, const Flow* f, int reason) noexcept nogil:
        cdef FlowRecord* r
        cdef Py_ssize_t cap
        cdef FlowKey masked
        cdef const FlowKey* key = &f.key      # the key as the record shows it
        cdef const FlowTimes* times = &self.times[f - self.flows]
        cdef int v = f.key.ipver == 6
        if self.out_len + self.stride > self.out_cap:
            cap = max(self.out_cap * 2, 64 * self.stride)
            self.out = <char*>realloc(self.out, cap)   # small; a failure here is fatal anyway
            self.out_cap = cap
        r = <FlowRecord*>(self.out + self.out_len)
        self.out_len += self.stride
        memset(r, 0, self.stride)   # padding, and members the flow does not know yet (out_if)
        if not self.shows_whole_key[v]:      # (the predefined records show it whole: no copy)
            memcpy(&masked, &f.key, sizeof(FlowKey))
            mask_words(&masked, &self.export_masks[v])
            key = &masked
        memcpy(r.src, key.src, 16)
        memcpy(r.dst, key.dst, 16)
        r.packets = f.packets
        r.octets = f.octets
        r.first_us = times.first_us
        r.last_us = times.last_us if f.late else f.last_us
        if key.direction == DIR_EGRESS:
            r.out_if = key.in_if
        else:
            r.in_if = key.in_if
        r.direction = key.direction
        r.mpls_label = key.mpls >> 4
        r.sport = key.sport
        r.dport = key.dport
        r.vlan = key.vlan
        r.ipver = key.ipver
        r.proto = key.proto
        r.tos = key.tos
        r.tcp_flags = f.tcp_flags
        r.min_ttl = f.min_ttl
        r.max_ttl = f.max_ttl
        r.end_reason = reason
        memcpy(r.src_mac, key.src_mac, 6)
        memcpy(r.dst_mac, key.dst_mac, 6)
        if self.stride == sizeof(FlowRecord):   # (a classic record ends here)
            self._emit_rest(r, f, key)

    cdef inline void _emit_rest(self, FlowRecord* r, const Flow* f, const FlowKey* key) noexcept nogil:
        """The members after a classic record's."""
        cdef const FlowExtra* x
        cdef const FlowRoute* route
        r.mpls_stack = key.mpls
        r.mpls_exp = (key.mpls >> 1) & 7
        r.flow_label = key.flow_label
        if is_icmp(key.proto):
            r.icmp_type = key.dport >> 8
            r.icmp_code = key.dport & 0xff
        r.inner_vlan = key.inner_vlan
        r.dscp = key.tos >> 2
        r.precedence = key.tos >> 5
        r.frag = key.frag
        if self.reverse != NULL:
            r.reverse_packets = self.reverse[f - self.flows].packets
            r.reverse_octets = self.reverse[f - self.flows].octets
            r.reverse_tcp_flags = self.reverse[f - self.flows].tcp_flags
        if self.routing != NULL:
            route = &self.routing[f - self.flows]
            memcpy(r.next_hop, route.next_hop, 16)
            if key.direction != DIR_EGRESS:
                r.out_if = route.out_if
            r.src_as = route.src_as
            r.dst_as = route.dst_as
            r.src_length = route.src_length
            r.dst_length = route.dst_length
        if self.extras != NULL:
            x = &self.extras[f - self.flows]
            r.octets_squared = x.octets_squared
            r.syn_packets = x.syn
            r.fin_packets = x.fin
            r.rst_packets = x.rst
            r.min_length = x.min_length
            r.max_length = x.max_length
            if x.min_window != NO_WINDOW:          # (a flow without TCP windows shows 0 for both)
                r.min_tcp_window = x.min_window
                r.max_tcp_window = x.max_window

    cdef bytes _take_records(self):
        cdef bytes records = PyBytes_FromStringAndSize(self.out, self.out_len)
        self.out_len = 0
        if self.out_cap > OUT_BUFFER_KEEP:       # a burst (a replay's time jump) grew it: give it back
            free(self.out)
            self.out = NULL
            self.out_cap = 0
        return records
