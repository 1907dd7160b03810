# Expiry (pyprobe._meter, included by ext/_meter.pyx): when flows end, by the flow clock (idle
# and active timeouts), by TCP FIN or RST, or at the end of the input; and a permanent cache's
# export of every flow at each update interval.

cdef enum:
    FLUSH_AHEAD = 16    # how far ahead in age order a flush fetches hash slots


cdef inline void advance_clock(Meter meter, int64_t now_us) noexcept nogil:
    """The clock moved on to now_us (never backwards): what is due by it expires."""
    if now_us > meter.now:
        meter.now = now_us
    if meter.now >= meter.next_due:
        expire_due(meter)
    if meter.now >= meter.next_update:
        export_cache(meter)


cdef inline void due_no_later_than(Meter meter, int64_t t) noexcept nogil:
    if t < meter.next_due and meter.cache_kind != CACHE_PERMANENT:    # (a permanent cache's never end)
        meter.next_due = t


cdef void expire_due(Meter meter) noexcept nogil:
    """Expire every flow due by the clock, then find when the next one is due."""
    cdef FlowTable* t = &meter.table
    cdef int c
    cdef int32_t idx
    cdef int64_t now = meter.now
    if meter.cache_kind == CACHE_PERMANENT:
        meter.next_due = INT64_MAX
        return
    for c in range(N_CLASSES):
        idx = t.lru_head[c]
        while idx != NIL and now - t.flows[idx].last_us > meter.timeout_us[c]:
            expire_flow(meter, idx, END_TCP_END if c == CLASS_TCP_FIN or c == CLASS_TCP_RST else END_IDLE)
            idx = t.lru_head[c]
    # Idle flows are gone, so what is left past its lifetime ends as active.
    while t.age_head != NIL and now - t.times[t.age_head].created_us >= meter.maxlife_us:
        expire_flow(meter, t.age_head, END_ACTIVE)
    meter.next_due = INT64_MAX
    for c in range(N_CLASSES):
        if t.lru_head[c] != NIL:
            due_no_later_than(meter, t.flows[t.lru_head[c]].last_us + meter.timeout_us[c] + 1)
    if t.age_head != NIL:
        due_no_later_than(meter, t.times[t.age_head].created_us + meter.maxlife_us)


cdef void export_cache(Meter meter) noexcept nogil:
    """A permanent cache's update: every flow's record with its totals so far, oldest
    first; the flows go on. The first packet starts the update clock."""
    if meter.next_update < 0:
        meter.next_update = meter.now + meter.update_us
        return
    emit_active(meter)
    meter.updates += 1
    meter.next_update += meter.update_us * ((meter.now - meter.next_update) // meter.update_us + 1)


cdef void check_tcp_end(Meter meter, int32_t idx) noexcept nogil:
    """FIN or RST ends the flow at once (timeout 0) or moves it to the shorter timeout."""
    cdef FlowTable* t = &meter.table
    cdef Flow* f = &t.flows[idx]
    cdef uint8_t cls
    cdef uint8_t flags = f.tcp_flags
    cdef const FlowReverse* rev
    if t.biflow:
        rev = reverse_of(t, idx)
        if rev != NULL:
            flags |= rev.tcp_flags
    if flags & TH_RST:
        cls = CLASS_TCP_RST
    elif flags & TH_FIN:
        cls = CLASS_TCP_FIN
    else:
        return
    if meter.timeout_us[cls] == 0:
        expire_flow(meter, idx, END_TCP_END)
    elif f.timeout_class != cls:
        table_reclass(t, idx, cls)
        due_no_later_than(meter, f.last_us + meter.timeout_us[cls] + 1)


cdef void expire_oldest(Meter meter, Py_ssize_t max_records, int reason) noexcept nogil:
    """Expire flows oldest first with `reason`: all of them, or at most max_records (> 0)."""
    cdef FlowTable* t = &meter.table
    cdef Py_ssize_t n = 0
    cdef int32_t ahead = t.age_head
    cdef int k
    for k in range(FLUSH_AHEAD):          # (each flow's hash slot is fetched before it is freed)
        if ahead != NIL:
            ahead = t.flows[ahead].age_next
    while t.age_head != NIL and (max_records <= 0 or n < max_records):
        if ahead != NIL:
            prefetch(&t.slots[t.flows[ahead].hash & t.slot_mask])
            ahead = t.flows[ahead].age_next
        expire_flow(meter, t.age_head, reason)
        n += 1
    if t.age_head == NIL:
        meter.next_due = INT64_MAX


cdef void expire_flow(Meter meter, int32_t idx, int reason) noexcept nogil:
    """The flow's record, with why it ended; the flow leaves the table."""
    emit(meter, idx, reason)
    meter.ended[reason] += 1
    table_remove(&meter.table, idx)
