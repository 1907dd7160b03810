# The meter's vocabulary (pyprobe._meter, included by ext/_meter.pyx): cache kinds, timeout
# classes and their defaults. (Why flows end: ext/codes.pxd, from pyprobe/fields.py's END_REASONS.)

# Cache kinds, as Flexible NetFlow has them.
CACHE_KINDS = ("normal", "immediate", "permanent")
cdef enum:
    CACHE_NORMAL = 0        # flows end by timeouts, TCP end, a full cache
    CACHE_IMMEDIATE = 1     # every packet is a record of its own
    CACHE_PERMANENT = 2     # flows never end; the whole cache is exported every `update` seconds

# Inactive-timeout classes. Each class keeps its flows in least-recently-used
# order, so the head of each list is the next flow of that class to go idle.
cdef enum:
    CLASS_GENERAL = 0
    CLASS_TCP = 1
    CLASS_UDP = 2
    CLASS_ICMP = 3
    CLASS_TCP_FIN = 4
    CLASS_TCP_RST = 5
    N_CLASSES = 6

TIMEOUT_NAMES = ("general", "tcp", "udp", "icmp", "tcp.fin", "tcp.rst")


cdef inline uint8_t class_of(uint8_t proto) noexcept nogil:
    """A new flow's timeout class, by its protocol."""
    if proto == 6:
        return CLASS_TCP
    if proto == 17:
        return CLASS_UDP
    if is_icmp(proto):
        return CLASS_ICMP
    return CLASS_GENERAL


# Cisco's documented flow cache: 15 s inactive, 30 min active, TCP FIN/RST ends the flow.
DEFAULT_TIMEOUTS = {"general": 15, "tcp": 15, "udp": 15, "icmp": 15,
                    "tcp.fin": 0, "tcp.rst": 0, "maxlife": 1800}
