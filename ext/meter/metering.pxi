# Metering (pyprobe._meter, included by ext/_meter.pyx): a batch's packets decoded a chunk at
# a time and counted into their flows, new flows made, the clock advanced. A large table costs
# memory latency per packet: headers, hash slots and flows are fetched ahead, so the waits overlap.

cdef enum:
    AHEAD = 32          # packets decoded, and their hash slots fetched, before they are metered
    FLOW_AHEAD = 4      # how far ahead a flow is fetched while metering


cdef void meter_batch(Meter meter, const uint8_t* buf, Py_ssize_t buflen, const PacketMeta* metas,
                      Py_ssize_t n) noexcept nogil:
    """The batch in chunks of AHEAD packets, each decoded (decoding reads no flow state)
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
            offset = metas[k].offset
            if offset + 128 <= buflen:
                prefetch(buf + offset)
                prefetch(buf + offset + 64)
        for k in range(count):            # (each slot fetched while the next packets are decoded)
            reasons[k] = decode_one(&meter.decoder, buf, buflen, &metas[base + k], &pkts[k], &times[k])
            if reasons[k] == DECODED:
                key_of(meter, &pkts[k], &keys[k], &hashes[k], &swapped[k])
        meter_chunk(meter, pkts, reasons, times, keys, hashes, swapped, count)
        base += count


cdef inline void key_of(Meter meter, const Packet* pkt, FlowKey* key, uint32_t* h, bint* swapped) noexcept nogil:
    """A decoded packet's flow key as the record definition makes it (masked; a biflow's
    canonical) and its hash, whose slot is fetched into the cache meanwhile. One pass
    masks, stores and hashes each word (hash_key's hash)."""
    cdef FlowTable* t = &meter.table
    cdef const uint64_t* raw = <const uint64_t*>&pkt.key
    cdef const uint64_t* m = <const uint64_t*>&t.key_masks[pkt.key.ipver == 6]
    cdef uint64_t* out = <uint64_t*>key
    cdef uint64_t hv = HASH_SEED, word
    cdef int i
    if meter.route_as or t.biflow:     # (the key made here, then masked in place)
        key[0] = pkt.key
        raw = <const uint64_t*>key
        if meter.route_as:
            keyed_as_in_place(meter.route_table, meter.route_as, key)
    if t.biflow:
        mask_key(t, key)
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
    prefetch(&t.slots[h[0] & t.slot_mask])


cdef inline void meter_chunk(Meter meter, Packet* pkts, const int* reasons, const int64_t* times,
                             const FlowKey* keys, const uint32_t* hashes, const bint* swapped,
                             Py_ssize_t count) noexcept nogil:
    """Up to AHEAD decoded packets, their keys made (key_of), metered in order, each flow
    fetched into the cache a few packets ahead."""
    cdef FlowTable* t = &meter.table
    cdef Py_ssize_t k
    cdef uint32_t s
    cdef int why
    for k in range(count):
        if k + FLOW_AHEAD < count and reasons[k + FLOW_AHEAD] == DECODED:
            s = t.slots[hashes[k + FLOW_AHEAD] & t.slot_mask]
            if s:                           # (both of its cache lines)
                prefetch(&t.flows[s - 1])
                prefetch(<const char*>&t.flows[s - 1] + CACHE_LINE)
        meter.packets_read += 1
        advance_clock(meter, times[k])
        if meter.sampler.n > 1 and not sample(&meter.sampler):
            meter.sampled_out += 1
            continue
        why = reasons[k]
        if why == DECODED and meter.only_ipver and pkts[k].key.ipver != meter.only_ipver:
            why = IGNORE_UNMATCHED
        if why != DECODED:
            meter.ignored[why] += 1
            continue
        meter_packet(meter, &pkts[k], &keys[k], hashes[k], swapped[k], times[k])


cdef void meter_packet(Meter meter, const Packet* pkt, const FlowKey* key, uint32_t h, bint swapped,
                       int64_t time_us) noexcept nogil:
    """Count a decoded packet into its flow: key is its masked key, h that key's hash;
    swapped: a biflow's canonical key is the packet's reversed; time_us: its own time."""
    cdef FlowTable* t = &meter.table
    cdef int32_t idx
    cdef Flow* f
    cdef bint responder
    idx = table_lookup(t, key, h)
    if idx != NIL and meter.limit_32bit and would_wrap(&t.flows[idx], pkt):
        expire_flow(meter, idx, END_ACTIVE)
        idx = NIL
    if idx == NIL:
        if t.count == t.capacity:
            if meter.cache_kind == CACHE_PERMANENT:
                meter.not_monitored += 1         # (its flows stay: a new one is not monitored)
                return
            expire_flow(meter, least_recently_touched(t), END_CACHE_FULL)
        idx = create_flow(meter, key, h, pkt, time_us)
        t.flows[idx].swapped = swapped
    else:
        f = &t.flows[idx]
        responder = t.biflow and swapped != f.swapped
        if not responder:                   # (the biflow extension counts the responder's)
            f.packets += 1
            f.octets += pkt.octets
            f.tcp_flags |= pkt.tcp_flags
        if time_us < meter.now:
            late_packet(t, idx, time_us)
        else:
            f.late = False
        f.last_us = meter.now
        if pkt.ttl < f.min_ttl:
            f.min_ttl = pkt.ttl
        if pkt.ttl > f.max_ttl:
            f.max_ttl = pkt.ttl
        if t.n_extensions:
            extensions_update(t, idx, pkt, responder)
        table_touch(t, idx)
    meter.packets_metered += 1
    meter.octets_metered += pkt.octets
    meter.proto_packets[pkt.key.proto] += 1
    meter.proto_octets[pkt.key.proto] += pkt.octets
    if meter.cache_kind == CACHE_IMMEDIATE:
        expire_flow(meter, idx, END_IMMEDIATE)
    elif key.proto == 6 and meter.cache_kind == CACHE_NORMAL:
        check_tcp_end(meter, idx)


cdef int32_t create_flow(Meter meter, const FlowKey* key, uint32_t h, const Packet* pkt,
                         int64_t time_us) noexcept nogil:
    """A new flow of the packet's (key, h: as meter_packet's); the table has room."""
    cdef FlowTable* t = &meter.table
    cdef uint8_t timeout_class = class_of(key.proto)
    cdef int32_t idx = table_add(t, h, timeout_class)
    cdef Flow* f = &t.flows[idx]
    memcpy(&f.key, &pkt.key, sizeof(FlowKey))
    if meter.route_as:                    # (the flow keeps its key as key_of made it, unmasked)
        keyed_as_in_place(meter.route_table, meter.route_as, &f.key)
    f.packets = 1
    f.octets = pkt.octets
    t.times[idx].created_us = meter.now
    t.times[idx].first_us = time_us
    t.times[idx].last_us = time_us
    f.last_us = meter.now
    f.late = time_us < meter.now
    f.tcp_flags = pkt.tcp_flags
    f.min_ttl = pkt.ttl
    f.max_ttl = pkt.ttl
    if t.n_extensions:
        extensions_create(t, idx, pkt)
    meter.flows_created += 1
    meter.proto_flows[key.proto] += 1
    due_no_later_than(meter, meter.now + meter.timeout_us[timeout_class] + 1)
    due_no_later_than(meter, meter.now + meter.maxlife_us)
    return idx


cdef inline void late_packet(FlowTable* t, int32_t idx, int64_t time_us) noexcept nogil:
    """A packet of the flow whose time is behind the clock: the flow's latest packet time
    is kept beside it (FlowTimes), as the clock at its last packet no longer says it."""
    cdef Flow* f = &t.flows[idx]
    cdef FlowTimes* times = &t.times[idx]
    cdef int64_t latest = times.last_us if f.late else f.last_us
    times.last_us = time_us if time_us > latest else latest
    f.late = True


cdef inline bint would_wrap(const Flow* f, const Packet* pkt) noexcept nogil:
    """Whether the packet would take the flow's counters past 32 bits."""
    return f.packets + 1 > 0xffffffffULL or f.octets + pkt.octets > 0xffffffffULL
