# Packet sampling (pyprobe._meter, included by ext/_meter.pyx): 1 in N, the first packet of
# each run of N (count) or any one of it (random).

cdef struct Sampler:
    uint32_t n              # 1: every packet is metered
    uint32_t pos            # within the run
    uint32_t pick           # the position in the run that is kept
    bint random
    uint64_t rng_state


cdef int sampler_init(Sampler* s, uint32_t n, mode, seed) except -1:
    if n < 1:
        raise ValueError("sampling interval must be at least 1")
    if mode not in ("count", "random"):
        raise ValueError(f"unknown sampling mode {mode!r}")
    s.n = n
    s.random = mode == "random"
    s.rng_state = 1
    if s.random:                     # (random only then: every start would pay for its import)
        import random
        s.rng_state = random.Random(seed).getrandbits(64) | 1
    s.pick = next_pick(s)
    return 0


cdef inline bint sample(Sampler* s) noexcept nogil:
    """True for the one packet of each run of n that is metered."""
    cdef bint keep = s.pos == s.pick
    s.pos += 1
    if s.pos == s.n:
        s.pos = 0
        s.pick = next_pick(s)
    return keep


cdef inline uint32_t next_pick(Sampler* s) noexcept nogil:
    """Count-based sampling keeps the first packet of each run; random, any one (xorshift64)."""
    if not s.random:
        return 0
    s.rng_state ^= s.rng_state << 13
    s.rng_state ^= s.rng_state >> 7
    s.rng_state ^= s.rng_state << 17
    return <uint32_t>(s.rng_state % s.n)
