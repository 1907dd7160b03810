# The flow meter: decode each packet of a batch, account it to its flow, and
# expire flows as the flow clock says. One Python call per batch; no Python
# object per packet or per flow. Expired flows come back as packed FlowRecord
# structs in one bytes object (ext/record.pxd, generated from pyprobe/fields.py),
# whole or classic (their first CLASSIC_SIZE bytes: Meter.stride).
#
# One compiled module, its parts by job in ext/meter/*.pxi, included (the C compiler sees one
# file, so a part's call into another costs what a call within a file does). The Meter class
# is at the end: its state and its Python interface; its jobs are C functions of it (metering,
# expiry, emit) and of its flow table (flow_table.pxi, topn.pxi).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t, uintptr_t, INT64_MAX
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset
from libc.math cimport log10
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.pycapsule cimport PyCapsule_GetPointer

from pyprobe.fields import END_REASONS, IGNORE_REASONS, MEMBER

from record cimport FlowRecord, CLASSIC_RECORD_SIZE
from extension cimport FlowExtension, MAX_EXTENSIONS, EXTENSION_CAPSULE
from codes cimport (END_IDLE, END_ACTIVE, END_TCP_END, END_EOF, END_CACHE_FULL, END_FORCED, END_IMMEDIATE,
                   N_END_REASONS, N_IGNORE_REASONS, IGNORE_TRUNCATED_L2, IGNORE_UNMATCHED, IGNORE_OTHER_DIRECTION,
                   IGNORE_ON_VLAN_SUBINTERFACE, TH_FIN, TH_RST, TH_SYN)
from decode cimport (FlowKey, Packet, PacketMeta, packet_time_us, decode_packet, is_icmp, DECODED, DIR_INGRESS,
                     DIR_EGRESS, DIR_BOTH, DLT_NULL, DLT_EN10MB, DLT_RAW_BSD, DLT_RAW_OPENBSD, DLT_RAW,
                     DLT_LOOP, DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2, MPLS_STACK_KEPT)

# The counts by reason (stats) index arrays of the sizes this module was built with.
assert (len(IGNORE_REASONS), max(END_REASONS) + 1) == (N_IGNORE_REASONS, N_END_REASONS), \
    "ext/codes.pxd is older than pyprobe/fields.py: rebuild (make)"

include "meter/linktypes.pxi"
include "meter/constants.pxi"
include "meter/decoder.pxi"
include "meter/flow_key.pxi"
include "meter/routes.pxi"
include "meter/measures.pxi"
include "meter/flow_table.pxi"
include "meter/sampling.pxi"
include "meter/metering.pxi"
include "meter/expiry.pxi"
include "meter/emit.pxi"
include "meter/topn.pxi"
include "meter/decoded_batch.pxi"
include "meter/pacing.pxi"


cdef class Meter:
    """A unidirectional flow cache fed with pcapy-ng batches.

    Meter(linktype, max_flows=65536, record=None, timeouts=None, direction="ingress")

    record: what makes a flow (pyprobe/definitions.py's Definition: key_mask, export_mask,
    ipver, measured, biflow, route_as); None: the predefined record "full".
    """
    cdef FlowTable table             # the flows (flow_table.pxi)
    cdef Decoder decoder             # (decoder.pxi)
    cdef FlowKey export_masks[2]     # what a record shows of its flow's key (the key's bits, first-packet values)
    cdef bint shows_whole_key[2]     # the export mask keeps every bit: the record copies the key as it is
    cdef uint8_t only_ipver          # 4 or 6: the record meters only that IP version; 0: both
    cdef int cache_kind              # CACHE_NORMAL, CACHE_IMMEDIATE, CACHE_PERMANENT
    cdef int64_t update_us           # a permanent cache's export interval
    cdef int64_t next_update         # of the flow clock: the next export of the whole cache
    cdef uint64_t not_monitored      # a permanent cache's: packets of new flows that found it full
    cdef uint64_t updates            # a permanent cache's exports so far
    cdef RouteTable route_table      # None, or the routes flows look their addresses up in
    cdef int route_extension         # ROUTE_EXTENSION's index in the table's extensions, -1: none yet
    cdef uint8_t route_as            # AS_SOURCE, AS_DESTINATION: keyed on that address's route's AS
    cdef int64_t timeout_us[N_CLASSES]
    cdef int64_t maxlife_us
    cdef int64_t now
    cdef int64_t next_due            # no flow can be due before this clock value
    cdef Sampler sampler
    cdef bint limit_32bit            # NetFlow v5 counters are 32-bit: end a flow before they wrap
    cdef readonly Py_ssize_t stride  # bytes per record handed out: RECORD_SIZE, or CLASSIC_SIZE (classic
                                     # members only: pyprobe/definitions.py record_stride)
    cdef list extension_capsules     # (kept: the extensions' code and data stay while the meter does)
    cdef char* out
    cdef Py_ssize_t out_len
    cdef Py_ssize_t out_cap
    # statistics
    cdef uint64_t packets_read
    cdef uint64_t packets_metered
    cdef uint64_t octets_metered
    cdef uint64_t flows_created
    cdef uint64_t sampled_out
    cdef uint64_t ignored[N_IGNORE_REASONS]
    cdef uint64_t ended[N_END_REASONS]
    cdef uint64_t proto_packets[256]
    cdef uint64_t proto_octets[256]
    cdef uint64_t proto_flows[256]

    def __cinit__(self, int linktype, int max_flows=65536, record=None, timeouts=None,
                  uint32_t sampling=1, sampling_mode="count", bint limit_32bit=False, seed=None,
                  direction="ingress", cache="normal", double update=1800, Py_ssize_t stride=RECORD_SIZE):
        cdef const uint8_t[::1] mask
        self.extension_capsules = []
        self.route_extension = -1
        decoder_init(&self.decoder, linktype, direction)
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        if record is None:
            from pyprobe.definitions import predefined
            record = predefined("full")
        for mask in (record.key_mask, record.export_mask):
            if len(mask) != 2 * sizeof(FlowKey):
                raise ValueError(f"key masks are 2 x {sizeof(FlowKey)} bytes, not {len(mask)}")
        mask = record.export_mask
        memcpy(&self.export_masks[0], &mask[0], 2 * sizeof(FlowKey))
        for v in range(2):                  # (the padding is zero in every key, masked or not)
            self.shows_whole_key[v] = all(mask[v * sizeof(FlowKey) + i] == 0xff or KEY_PAD[0] <= i < KEY_PAD[1]
                                          for i in range(sizeof(FlowKey)))
        if stride != sizeof(FlowRecord) and (stride != CLASSIC_RECORD_SIZE or record.measured or record.biflow):
            raise ValueError(f"records of {stride} bytes cannot hold this record's members")
        self.stride = stride
        if record.ipver not in (0, 4, 6):
            raise ValueError(f"ipver: 0, 4 or 6, not {record.ipver!r}")
        self.only_ipver = record.ipver
        self.route_as = record.route_as
        if cache not in CACHE_KINDS:
            raise ValueError(f"unknown cache kind {cache!r} (one of {', '.join(CACHE_KINDS)})")
        self.cache_kind = CACHE_KINDS.index(cache)
        if not 1e-6 <= update <= 1e12:        # (a zero interval would divide by zero at the update)
            raise ValueError(f"update interval {update!r} out of range 1e-6..1e12 seconds")
        self.update_us = <int64_t>round(update * 1000000)
        self.next_update = -1 if self.cache_kind == CACHE_PERMANENT else INT64_MAX   # -1: at the first packet
        self._set_timeouts(timeouts or {})
        mask = record.key_mask
        table_init(&self.table, max_flows, &mask[0], record.measured, record.biflow)
        self.now = 0
        self.next_due = INT64_MAX
        sampler_init(&self.sampler, sampling, sampling_mode, seed)
        self.limit_32bit = limit_32bit

    def __dealloc__(self):
        table_free(&self.table)
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
        return self.table.count

    @property
    def clock_us(self):
        return self.now

    @property
    def packets_unmetered(self):
        """Packets read but not metered: undecodable, sampled out, or not monitored (a full permanent
        cache's new flows): IPFIX ignoredPacketTotalCount."""
        cdef uint64_t total = self.sampled_out + self.not_monitored
        for i in range(N_IGNORE_REASONS):
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
        cdef Py_ssize_t n
        cdef const PacketMeta* metas = packet_metas(raw_meta, &n)
        cdef Py_ssize_t buflen = buf.shape[0]
        begin_batch(&self.decoder, linktype, shift_round, direction, in_if, vlans_elsewhere, vlan)
        # No Python inside: the GIL is free for the thread reading the next batch.
        with nogil:
            meter_batch(self, &buf[0] if buflen else NULL, buflen, metas, n)
        end_batch(&self.decoder)
        return take_records(self)

    def meter_decoded(self, DecodedBatch batch):
        """Meter a batch decoded once for several meters (DecodedBatch: monitors); return the
        records of the flows it expired."""
        cdef Py_ssize_t base = 0, count, k
        cdef FlowKey keys[AHEAD]
        cdef uint32_t hashes[AHEAD]
        cdef bint swapped[AHEAD]
        with nogil:
            while base < batch.n:
                count = min(<Py_ssize_t>AHEAD, batch.n - base)
                for k in range(count):
                    if batch.reasons[base + k] == DECODED:
                        key_of(self, &batch.pkts[base + k], &keys[k], &hashes[k], &swapped[k])
                meter_chunk(self, &batch.pkts[base], &batch.reasons[base], &batch.times[base], keys, hashes,
                            swapped, count)
                base += count
        return take_records(self)

    def expire(self, int64_t now_us):
        """Advance the clock (never backwards) and expire what is due: live capture ticks."""
        advance_clock(self, now_us)
        return take_records(self)

    def flush(self, Py_ssize_t max_records=0, bint forced=False):
        """Expire flows oldest first, with reason eof (the input ended) or forced (it did
        not: shutdown, expire-all): all of them, or at most max_records per call (call until
        it returns nothing) so memory stays small."""
        expire_oldest(self, max_records, END_FORCED if forced else END_EOF)
        return take_records(self)

    def snapshot(self):
        """Records of every active flow as they stand, oldest first, without ending them
        (end_reason 0): for dump-flows."""
        emit_active(self)
        return take_records(self)

    def top(self, Py_ssize_t n, by="octets"):
        """Records of the n active flows with the most octets (or packets; a biflow's both
        directions), the largest first, as they stand (end_reason 0): ctl top."""
        cdef int32_t* heap
        cdef Py_ssize_t i
        if by not in ("octets", "packets"):
            raise ValueError(f"top flows by octets or packets, not {by!r}")
        if n <= 0 or self.table.count == 0:
            return b""
        n = min(n, <Py_ssize_t>self.table.count)
        heap = <int32_t*>malloc(n * sizeof(int32_t))
        if heap == NULL:
            raise MemoryError("cannot sort the flows")
        largest_flows(&self.table, heap, n, by == "packets")
        for i in range(n):
            emit(self, heap[i], 0)
        free(heap)
        return take_records(self)

    def delete_all(self):
        """Forget every active flow without a record (softflowctl's delete-all); returns how many."""
        cdef Py_ssize_t n = 0
        while self.table.age_head != NIL:
            table_remove(&self.table, self.table.age_head)
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
        if routes is not None and self.route_extension < 0:
            self.route_extension = table_add_extension(&self.table, &ROUTE_EXTENSION, 0, NULL, True)
        if self.route_extension >= 0:
            self.table.extension_contexts[self.route_extension] = &routes.trie if routes is not None else NULL
        self.route_table = routes

    def add_extension(self, capsule, str member):
        """A flow extension (extension.pxd: a PyCapsule of a FlowExtension) for the flows that
        start from now on, filling the record's `member` (pyprobe/fields.py MEMBER) among others;
        the capsule's module must outlive the meter. Flows get its state only once it is added:
        add it only to a meter whose record collects what it fills."""
        cdef const FlowExtension* extension = <const FlowExtension*>PyCapsule_GetPointer(capsule, EXTENSION_CAPSULE)
        if member not in MEMBER:
            raise ValueError(f"no record member {member!r}")
        if self.stride != sizeof(FlowRecord):
            raise ValueError("classic records have no members for extensions: an extended meter packs whole records")
        table_add_extension(&self.table, extension, MEMBER[member].offset, NULL)
        self.extension_capsules.append(capsule)

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
            "packets_ignored": {name: self.ignored[i] for i, name in enumerate(IGNORE_REASONS)},
            "packets_sampled_out": self.sampled_out,
            "packets_not_monitored": self.not_monitored,
            "cache_updates": self.updates,
            "sampling": self.sampler.n,
            "flows_created": self.flows_created,
            "flows_active": self.table.count,
            "extension_states_allocated": self.table.extension_states_allocated,
            "extension_states_freed": self.table.extension_states_freed,
            "records": {name: self.ended[code] for code, name in END_REASONS.items()},
            "protocols": {p: (self.proto_flows[p], self.proto_packets[p], self.proto_octets[p])
                          for p in range(256) if self.proto_packets[p]},
        }
