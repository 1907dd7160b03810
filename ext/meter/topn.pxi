# The largest flows (pyprobe._meter, included by ext/_meter.pyx): the n active flows with the
# most octets or packets (a biflow's both directions), by a min-heap of n flow indices in one
# pass over the table (ctl top).

cdef void largest_flows(const FlowTable* t, int32_t* heap, Py_ssize_t n, bint packets) noexcept nogil:
    """heap[:n]: the indices of the n largest flows, the largest first (n: 1 to the flow count)."""
    cdef int32_t idx = t.age_head
    cdef Py_ssize_t size = 0, i
    cdef int32_t smallest
    while idx != NIL:                     # heap[:size]: a min-heap of the largest so far
        if size < n:                                 # sift up
            i = size
            size += 1
            while i > 0 and flow_size(t, idx, packets) < flow_size(t, heap[(i - 1) // 2], packets):
                heap[i] = heap[(i - 1) // 2]
                i = (i - 1) // 2
            heap[i] = idx
        elif flow_size(t, idx, packets) > flow_size(t, heap[0], packets):    # it replaces the smallest
            sift_down(t, heap, size, idx, packets)
        idx = t.flows[idx].age_next
    while size > 0:                                  # smallest first out of the heap, to its end
        size -= 1
        smallest = heap[0]
        sift_down(t, heap, size, heap[size], packets)
        heap[size] = smallest


cdef void sift_down(const FlowTable* t, int32_t* heap, Py_ssize_t size, int32_t flow, bint packets) noexcept nogil:
    """The min-heap heap[:size] with its top replaced by `flow`, put in order again."""
    cdef Py_ssize_t i = 0, child
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and flow_size(t, heap[child + 1], packets) < flow_size(t, heap[child], packets):
            child += 1
        if flow_size(t, heap[child], packets) >= flow_size(t, flow, packets):
            break
        heap[i] = heap[child]
        i = child
    heap[i] = flow


cdef inline uint64_t flow_size(const FlowTable* t, int32_t idx, bint packets) noexcept nogil:
    cdef uint64_t size = t.flows[idx].packets if packets else t.flows[idx].octets
    cdef const FlowReverse* rev
    if t.biflow:
        rev = reverse_of(t, idx)
        if rev != NULL:
            size += rev.packets if packets else rev.octets
    return size
