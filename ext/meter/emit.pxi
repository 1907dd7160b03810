# Records (pyprobe._meter, included by ext/_meter.pyx): a flow's packed FlowRecord (ext/record.pxd,
# generated from pyprobe/fields.py) appended to the meter's output, whole or classic (its first
# CLASSIC_SIZE bytes: Meter.stride), and the output handed out as one bytes object.

RECORD_SIZE = sizeof(FlowRecord)
CLASSIC_SIZE = CLASSIC_RECORD_SIZE         # a classic record's bytes (pyprobe/fields.py)
cdef Py_ssize_t OUT_BUFFER_KEEP = 4 << 20       # (a flush step of 8192 records fits: kept, not faulted in again)


cdef void emit(Meter meter, int32_t idx, int reason) noexcept nogil:
    """The flow's record as it stands, ending for `reason` (0: it goes on)."""
    cdef const Flow* f = &meter.table.flows[idx]
    cdef const FlowTimes* times = &meter.table.times[idx]
    cdef FlowRecord* r
    cdef Py_ssize_t cap
    cdef FlowKey masked
    cdef const FlowKey* key = &f.key      # the key as the record shows it
    cdef int v = f.key.ipver == 6
    if meter.out_len + meter.stride > meter.out_cap:
        cap = max(meter.out_cap * 2, 64 * meter.stride)
        meter.out = <char*>realloc(meter.out, cap)   # small; a failure here is fatal anyway
        meter.out_cap = cap
    r = <FlowRecord*>(meter.out + meter.out_len)
    meter.out_len += meter.stride
    memset(r, 0, meter.stride)   # padding, and members the flow does not know yet (out_if)
    if not meter.shows_whole_key[v]:      # (the predefined records show it whole: no copy)
        memcpy(&masked, &f.key, sizeof(FlowKey))
        mask_words(&masked, &meter.export_masks[v])
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
    if meter.stride == sizeof(FlowRecord):   # (a classic record ends here)
        emit_rest(&meter.table, r, idx, key)


cdef inline void emit_rest(const FlowTable* t, FlowRecord* r, int32_t idx, const FlowKey* key) noexcept nogil:
    """The members after a classic record's: the key's, and the flow extensions' (the per-packet
    measures generated from the field table, meter/measures.pxi, and a biflow's responder's
    counts, both in flow_table.pxi, and the routes, routes.pxi, among them)."""
    key_emit(r, key, &t.flows[idx].key)
    if t.n_extensions:
        extensions_fill(t, idx, r)


cdef void emit_active(Meter meter) noexcept nogil:
    """A record of every active flow as it stands, oldest first (end_reason 0); the flows go on."""
    cdef int32_t idx = meter.table.age_head
    while idx != NIL:
        emit(meter, idx, 0)
        idx = meter.table.flows[idx].age_next


cdef bytes take_records(Meter meter):
    """The records emitted since the last call, packed back to back."""
    cdef bytes records = PyBytes_FromStringAndSize(meter.out, meter.out_len)
    meter.out_len = 0
    if meter.out_cap > OUT_BUFFER_KEEP:       # a burst (a replay's time jump) grew it: give it back
        free(meter.out)
        meter.out = NULL
        meter.out_cap = 0
    return records
