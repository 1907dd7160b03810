# The meter's vocabulary (pyprobe._meter, included by ext/_meter.pyx): why flows end, cache
# kinds, timeout classes and their defaults.

# Why a flow ended: pyprobe/fields.py's END_REASONS (IPFIX flowEndReason codes, and
# FORCED, which goes out as forcedEnd), so records carry the code as it is.
cdef enum:
    END_IDLE = 1        # idleTimeout
    END_ACTIVE = 2      # activeTimeout
    END_TCP = 3         # endOfFlowDetected (FIN or RST)
    END_EOF = 4         # forcedEnd: the end of the input
    END_CACHE_FULL = 5  # lackOfResources
    END_FORCED = 6      # forcedEnd: shutdown, expire-all, while the input went on
    END_IMMEDIATE = 7   # activeTimeout: an immediate cache's record of one packet
    N_END_REASONS = 8

END_REASON_NAMES = {code: name for code, name in END_REASONS.items()}
assert END_REASON_NAMES == {END_IDLE: "idle", END_ACTIVE: "active", END_TCP: "tcp_end", END_EOF: "eof",
                            END_CACHE_FULL: "cache_full", END_FORCED: "forced",
                            END_IMMEDIATE: "immediate"}, "out of step with fields.py"

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
