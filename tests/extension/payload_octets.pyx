# A flow extension for the tests (extension.pxd): the transport payload octets of a flow's
# packets, as their headers give them, into the record member it is given (8 bytes).

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy
from cpython.pycapsule cimport PyCapsule_New
from decode cimport Packet
from record cimport FlowRecord
from extension cimport FlowExtension, EXTENSION_CAPSULE


cdef void create(void* state, const Packet* pkt, const void* context) noexcept nogil:
    (<uint64_t*>state)[0] = pkt.payload_length


cdef bint update(void* state, const Packet* pkt, bint reverse) noexcept nogil:
    (<uint64_t*>state)[0] += pkt.payload_length
    return (<uint64_t*>state)[0] < stop_after


cdef void fill(const void* state, FlowRecord* record, uint8_t* member) noexcept nogil:
    if state != NULL:
        memcpy(member, state, sizeof(uint64_t))


cdef uint64_t stop_after = <uint64_t>-1     # done with a flow once it has this many: what a test sets
cdef FlowExtension PAYLOAD_OCTETS = FlowExtension(b"payload_octets", sizeof(uint64_t), create, update, fill, NULL)


def extension(uint64_t done_at=<uint64_t>-1):
    """The extension's capsule, for Meter.add_extension; done_at: the octets after which it is done with a flow."""
    global stop_after
    stop_after = done_at
    return PyCapsule_New(&PAYLOAD_OCTETS, EXTENSION_CAPSULE, NULL)
