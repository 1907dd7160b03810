# The flow-extension interface: compiled code that keeps a state per flow, updated by each of
# the flow's packets without the GIL, and fills members of the flow's record. A module hands
# the meter a FlowExtension in a PyCapsule named EXTENSION_CAPSULE (Meter.add_extension); the
# meter allocates a flow's state only while the meter has the extension, and frees it when the
# flow ends or when update says the extension is done with the flow. README.md, Layout, has an example.

from libc.stdint cimport uint8_t
from decode cimport Packet
from record cimport FlowRecord

ctypedef void (*extension_create_fn)(void* state, const Packet* pkt, const void* context) noexcept nogil
ctypedef bint (*extension_update_fn)(void* state, const Packet* pkt, bint reverse) noexcept nogil
ctypedef void (*extension_fill_fn)(const void* state, FlowRecord* record, uint8_t* member) noexcept nogil
ctypedef void (*extension_release_fn)(void* state) noexcept nogil

cdef struct FlowExtension:
    const char* name
    size_t state_size              # bytes of state per flow (the meter allocates them, uninitialised)
    extension_create_fn create     # a new flow's first packet: set the state up (context: what the
                                   # meter was given with the extension)
    extension_update_fn update     # each later packet (reverse: a biflow's responder's); False: done
                                   # with the flow, its state is released and freed. NULL: none needed
    extension_fill_fn fill         # each record of the flow: state (NULL once done with it) into the
                                   # record; member: where the record's member the extension was given is
    extension_release_fn release   # NULL, or what to let go of before the state is freed

cdef enum:
    MAX_EXTENSIONS = 4             # per meter

cdef extern from *:
    """
    #define PYPROBE_EXTENSION_CAPSULE "pyprobe.FlowExtension"
    """
    const char* EXTENSION_CAPSULE "PYPROBE_EXTENSION_CAPSULE"   # the PyCapsule's name
