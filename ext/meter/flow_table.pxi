# The flow table (pyprobe._meter, included by ext/_meter.pyx): each flow's state at one index
# of a few arrays, an open-addressing hash table of the indices by masked key, a list per
# timeout class in least-recently-used order, all flows in order of creation, and a free
# list. When a flow ends and what it counts are the meter's (metering.pxi, expiry.pxi).

cdef enum:
    NIL = -1
    CACHE_LINE = 64

cdef extern from *:
    void prefetch "__builtin_prefetch" (const void* address) noexcept nogil


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

assert sizeof(Flow) == 2 * CACHE_LINE, "a flow is two cache lines"


# A flow's times beside it. The clock never goes backwards, but a packet's own time can be
# behind it: live capture meters one interface's batch after another's, and ticks with the
# wall clock between them, while the kernel may still hold a packet of the first. Timeouts
# run on the clock; a record gives its packets' own times.
cdef struct FlowTimes:
    int64_t created_us      # the clock when the flow began (its active timeout counts from it)
    int64_t first_us        # its first packet's time
    int64_t last_us         # its latest packet's time, while Flow.late (else it is Flow.last_us)


# A biflow's other direction (RFC 5103: the responder's packets): the state of the biflow's
# flow extension, which counts them and fills the record's reverse members.
cdef struct FlowReverse:
    uint64_t packets
    uint64_t octets
    uint8_t tcp_flags


cdef void reverse_create(void* state, const Packet* pkt, const void* context) noexcept nogil:
    memset(state, 0, sizeof(FlowReverse))      # (the first packet is the initiator's)


cdef bint reverse_update(void* state, const Packet* pkt, bint reverse) noexcept nogil:
    cdef FlowReverse* rev = <FlowReverse*>state
    if reverse:
        rev.packets += 1
        rev.octets += pkt.octets
        rev.tcp_flags |= pkt.tcp_flags
    return True


cdef void reverse_fill(const void* state, FlowRecord* r, uint8_t* member) noexcept nogil:
    cdef const FlowReverse* rev = <const FlowReverse*>state
    if rev != NULL:
        r.reverse_packets = rev.packets
        r.reverse_octets = rev.octets
        r.reverse_tcp_flags = rev.tcp_flags


cdef FlowExtension REVERSE_EXTENSION = FlowExtension(b"biflow", sizeof(FlowReverse), reverse_create,
                                                     reverse_update, reverse_fill, NULL)


# The per-packet measures (FlowMeasures, generated from the field table: meter/measures.pxi):
# the flow extension of a record that collects one of them.
cdef void measures_create(void* state, const Packet* pkt, const void* context) noexcept nogil:
    measures_start(<FlowMeasures*>state, pkt)


cdef bint measures_step(void* state, const Packet* pkt, bint reverse) noexcept nogil:
    measures_update(<FlowMeasures*>state, pkt)
    return True


cdef void measures_fill(const void* state, FlowRecord* r, uint8_t* member) noexcept nogil:
    if state != NULL:
        measures_emit(r, <const FlowMeasures*>state)


cdef FlowExtension MEASURES_EXTENSION = FlowExtension(b"measures", sizeof(FlowMeasures), measures_create,
                                                      measures_step, measures_fill, NULL)


cdef struct FlowTable:
    FlowKey key_masks[2]        # the record definition's key, for IPv4 and for IPv6: packets whose
                                # masked keys agree are one flow
    int32_t capacity
    int32_t count
    Flow* flows                 # (within flows_memory, at a cache line's start)
    void* flows_memory
    FlowTimes* times            # beside each flow
    bint biflow                 # both directions are one flow, the responder's counts kept by
    int reverse_extension       # REVERSE_EXTENSION, at this index of the extensions
    int n_extensions            # flow extensions (extension.pxd), each with a state pointer per flow
    const FlowExtension* extensions[MAX_EXTENSIONS]
    Py_ssize_t extension_members[MAX_EXTENSIONS]    # the record member's offset each one fills
    const void* extension_contexts[MAX_EXTENSIONS]  # what each one's create is given
    void** extension_states[MAX_EXTENSIONS]         # per flow: its state, NULL before, after or done
    char* extension_slabs[MAX_EXTENSIONS]           # NULL, or a state per flow index to hand out (the
                                                    # meter's own: no allocation per flow)
    uint64_t extension_states_allocated
    uint64_t extension_states_freed
    int32_t unused              # flows[unused:] were never handed out
    int32_t free_head
    uint32_t* slots             # open addressing, linear probing: flow index + 1, 0 = empty
    uint32_t slot_mask
    int32_t lru_head[N_CLASSES]
    int32_t lru_tail[N_CLASSES]
    int32_t age_head
    int32_t age_tail
    uint32_t touch_counter


cdef int table_init(FlowTable* t, int32_t capacity, const uint8_t* key_masks, bint measured, bint biflow) except -1:
    """An empty table of `capacity` flows keyed by key_masks (two FlowKeys: IPv4's, IPv6's);
    measured, biflow: whether each flow has a FlowMeasures, a FlowReverse (flow extensions that
    fill their members by name)."""
    cdef uint64_t nslots = 1
    cdef int c
    memcpy(&t.key_masks[0], key_masks, 2 * sizeof(FlowKey))
    t.capacity = capacity
    while nslots < 2 * <uint64_t>capacity:
        nslots <<= 1
    # (calloc: pages that the cache never reaches are never touched; one flow more, to align)
    t.flows_memory = calloc(capacity + 1, sizeof(Flow))
    t.flows = <Flow*>((<uintptr_t>t.flows_memory + CACHE_LINE - 1) & ~<uintptr_t>(CACHE_LINE - 1))
    t.times = <FlowTimes*>calloc(capacity, sizeof(FlowTimes))
    t.slots = <uint32_t*>calloc(nslots, sizeof(uint32_t))
    if t.flows_memory == NULL or t.times == NULL or t.slots == NULL:
        raise MemoryError(f"cannot allocate a cache of {capacity} flows")
    t.biflow = biflow
    if biflow:
        t.reverse_extension = table_add_extension(t, &REVERSE_EXTENSION, 0, NULL, True)
    if measured:
        table_add_extension(t, &MEASURES_EXTENSION, 0, NULL, True)
    t.slot_mask = <uint32_t>(nslots - 1)
    t.free_head = NIL
    for c in range(N_CLASSES):
        t.lru_head[c] = NIL
        t.lru_tail[c] = NIL
    t.age_head = NIL
    t.age_tail = NIL
    return 0


cdef int table_add_extension(FlowTable* t, const FlowExtension* extension, Py_ssize_t member,
                             const void* context, bint slab=False) except -1:
    """A flow extension for the flows that start from now on; returns its index. slab: its
    states in one array beside the flows (calloc: the pages no flow reaches stay untouched),
    not allocated one by one."""
    if t.n_extensions == MAX_EXTENSIONS:
        raise ValueError(f"at most {MAX_EXTENSIONS} flow extensions per meter")
    t.extension_states[t.n_extensions] = <void**>calloc(t.capacity, sizeof(void*))
    if slab:
        t.extension_slabs[t.n_extensions] = <char*>calloc(t.capacity, extension.state_size)
    if t.extension_states[t.n_extensions] == NULL or (slab and t.extension_slabs[t.n_extensions] == NULL):
        free(t.extension_states[t.n_extensions])
        raise MemoryError("cannot allocate the flows' extension states")
    t.extensions[t.n_extensions] = extension
    t.extension_members[t.n_extensions] = member
    t.extension_contexts[t.n_extensions] = context
    t.n_extensions += 1
    return t.n_extensions - 1


cdef inline void extensions_create(FlowTable* t, int32_t idx, const Packet* pkt) noexcept nogil:
    """Each extension's state for a new flow, from its first packet (none if out of memory)."""
    cdef int e
    cdef void* state
    for e in range(t.n_extensions):
        if t.extension_slabs[e] != NULL:
            state = t.extension_slabs[e] + <size_t>idx * t.extensions[e].state_size
        else:
            state = malloc(t.extensions[e].state_size)
        t.extension_states[e][idx] = state
        if state != NULL:
            t.extension_states_allocated += 1
            t.extensions[e].create(state, pkt, t.extension_contexts[e])


cdef inline void extensions_update(FlowTable* t, int32_t idx, const Packet* pkt, bint reverse) noexcept nogil:
    """A later packet of the flow (reverse: a biflow's responder's) to each extension not done with it."""
    cdef int e
    cdef void* state
    for e in range(t.n_extensions):
        state = t.extension_states[e][idx]
        if state != NULL and t.extensions[e].update != NULL and not t.extensions[e].update(state, pkt, reverse):
            extension_release(t, e, idx)


cdef inline void extensions_fill(const FlowTable* t, int32_t idx, FlowRecord* r) noexcept nogil:
    cdef int e
    for e in range(t.n_extensions):
        t.extensions[e].fill(t.extension_states[e][idx], r, <uint8_t*>r + t.extension_members[e])


cdef inline const FlowReverse* reverse_of(const FlowTable* t, int32_t idx) noexcept nogil:
    """A biflow's responder's counts (NULL: none, out of memory when it began)."""
    return <const FlowReverse*>t.extension_states[t.reverse_extension][idx]


cdef void extension_release(FlowTable* t, int e, int32_t idx) noexcept nogil:
    cdef void* state = t.extension_states[e][idx]
    if state == NULL:
        return
    if t.extensions[e].release != NULL:
        t.extensions[e].release(state)
    if t.extension_slabs[e] == NULL:
        free(state)
    t.extension_states[e][idx] = NULL
    t.extension_states_freed += 1


cdef void table_free(FlowTable* t) noexcept:
    cdef int e
    cdef int32_t idx
    for e in range(t.n_extensions):
        for idx in range(t.unused):
            extension_release(t, e, idx)
        free(t.extension_states[e])
        free(t.extension_slabs[e])
    free(t.flows_memory)
    free(t.times)
    free(t.slots)


cdef inline void mask_key(const FlowTable* t, FlowKey* key) noexcept nogil:
    """Keep the bits the record definition keys on (key_mask), zero the rest."""
    mask_words(key, &t.key_masks[key.ipver == 6])


cdef inline bint same_flow(const FlowTable* t, const FlowKey* first, const FlowKey* key) noexcept nogil:
    """Whether a flow whose first packet had `first` is the flow of the masked key."""
    cdef FlowKey turned
    cdef const uint64_t* a = <const uint64_t*>first
    cdef const uint64_t* b = <const uint64_t*>key
    cdef const uint64_t* m = <const uint64_t*>&t.key_masks[key.ipver == 6]
    cdef uint64_t differ = 0
    cdef int i
    if t.biflow:                          # a biflow's key is canonical: so must the first packet's be
        memcpy(&turned, first, sizeof(FlowKey))
        mask_key(t, &turned)
        canonical(&turned)
        return memcmp(&turned, key, sizeof(FlowKey)) == 0
    for i in range(sizeof(FlowKey) // 8):
        differ |= (a[i] & m[i]) ^ b[i]
    return differ == 0


cdef inline int32_t table_lookup(const FlowTable* t, const FlowKey* key, uint32_t h) noexcept nogil:
    """The flow of a masked key whose hash is h, or NIL."""
    cdef uint32_t i = h & t.slot_mask
    cdef uint32_t s
    cdef const Flow* f
    while True:
        s = t.slots[i]
        if s == 0:
            return NIL
        f = &t.flows[s - 1]
        if f.hash == h and same_flow(t, &f.key, key):
            return <int32_t>(s - 1)
        i = (i + 1) & t.slot_mask


cdef int32_t table_add(FlowTable* t, uint32_t h, uint8_t timeout_class) noexcept nogil:
    """A new flow of hash h in a free place, the newest of its timeout class and of all flows;
    the caller fills in the rest of it. The table must not be full."""
    cdef int32_t idx
    cdef uint32_t i = h & t.slot_mask
    cdef Flow* f
    if t.free_head != NIL:
        idx = t.free_head
        t.free_head = t.flows[idx].lru_next
    else:
        idx = t.unused
        t.unused += 1
    f = &t.flows[idx]
    f.hash = h
    t.touch_counter += 1
    f.touched = t.touch_counter
    while t.slots[i] != 0:
        i = (i + 1) & t.slot_mask
    t.slots[i] = <uint32_t>idx + 1
    f.timeout_class = timeout_class
    lru_append(t, idx, timeout_class)
    f.age_next = NIL
    f.age_prev = t.age_tail
    if t.age_tail != NIL:
        t.flows[t.age_tail].age_next = idx
    else:
        t.age_head = idx
    t.age_tail = idx
    t.count += 1
    return idx


cdef inline void table_touch(FlowTable* t, int32_t idx) noexcept nogil:
    """A packet of the flow: it becomes the most recently used of its timeout class."""
    cdef Flow* f = &t.flows[idx]
    t.touch_counter += 1
    f.touched = t.touch_counter
    lru_unlink(t, idx)
    lru_append(t, idx, f.timeout_class)


cdef inline void table_reclass(FlowTable* t, int32_t idx, uint8_t timeout_class) noexcept nogil:
    """The flow moved to another timeout class, the most recently used of it."""
    lru_unlink(t, idx)
    t.flows[idx].timeout_class = timeout_class
    lru_append(t, idx, timeout_class)


cdef void table_remove(FlowTable* t, int32_t idx) noexcept nogil:
    """Take a flow out of the lists and the hash table; its place is free."""
    cdef Flow* f = &t.flows[idx]
    cdef int e
    for e in range(t.n_extensions):
        extension_release(t, e, idx)
    lru_unlink(t, idx)
    if f.age_prev != NIL:
        t.flows[f.age_prev].age_next = f.age_next
    else:
        t.age_head = f.age_next
    if f.age_next != NIL:
        t.flows[f.age_next].age_prev = f.age_prev
    else:
        t.age_tail = f.age_prev
    unslot(t, idx)
    f.lru_next = t.free_head
    t.free_head = idx
    t.count -= 1


cdef void unslot(FlowTable* t, int32_t idx) noexcept nogil:
    """Remove idx from the hash table by backward-shift deletion (no tombstones)."""
    cdef uint32_t mask = t.slot_mask
    cdef uint32_t i = t.flows[idx].hash & mask
    cdef uint32_t j, home
    while t.slots[i] != <uint32_t>idx + 1:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if t.slots[j] == 0:
            break
        home = t.flows[t.slots[j] - 1].hash & mask
        # The entry at j may move back to the hole at i unless its home lies in (i, j].
        if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        t.slots[i] = t.slots[j]
        i = j
    t.slots[i] = 0


cdef int32_t least_recently_touched(const FlowTable* t) noexcept nogil:
    cdef int c
    cdef int32_t idx, best = NIL
    for c in range(N_CLASSES):
        idx = t.lru_head[c]
        # (the heads of the class lists are within 2**31 touches of each other unless a
        # flow sat idle through two billion packets: the difference is read modulo 2**32)
        if idx != NIL and (best == NIL or <int32_t>(t.flows[idx].touched - t.flows[best].touched) < 0):
            best = idx
    return best


cdef inline void lru_append(FlowTable* t, int32_t idx, uint8_t c) noexcept nogil:
    cdef Flow* f = &t.flows[idx]
    f.lru_next = NIL
    f.lru_prev = t.lru_tail[c]
    if t.lru_tail[c] != NIL:
        t.flows[t.lru_tail[c]].lru_next = idx
    else:
        t.lru_head[c] = idx
    t.lru_tail[c] = idx


cdef inline void lru_unlink(FlowTable* t, int32_t idx) noexcept nogil:
    cdef Flow* f = &t.flows[idx]
    cdef uint8_t c = f.timeout_class
    if f.lru_prev != NIL:
        t.flows[f.lru_prev].lru_next = f.lru_next
    else:
        t.lru_head[c] = f.lru_next
    if f.lru_next != NIL:
        t.flows[f.lru_next].lru_prev = f.lru_prev
    else:
        t.lru_tail[c] = f.lru_prev
