# Replay pacing (pyprobe._meter, included by ext/_meter.pyx; only pyprobe/source/replay.py uses
# it): how much of a batch a clock has reached, a looped round's times, how late packets were fed.

def first_after(const uint8_t[::1] meta, Py_ssize_t start, int64_t limit_us):
    """The index of the first packet from `start` on whose time is past limit_us (or the
    packet count): how much of a batch is due by a clock."""
    cdef Py_ssize_t n, i = start
    cdef const PacketMeta* m = packet_metas(meta, &n)
    while i < n and packet_time_us(&m[i]) <= limit_us:
        i += 1
    return i


def packet_time(const uint8_t[::1] meta, Py_ssize_t i):
    """Packet i's time, microseconds since the epoch."""
    cdef Py_ssize_t n
    return packet_time_us(&packet_metas(meta, &n)[i])


def shift_times(const uint8_t[::1] meta, int64_t delta_us):
    """The batch's packet times moved by delta_us (a looped replay's round)."""
    cdef Py_ssize_t n, i
    out = bytearray(meta)
    cdef uint8_t[::1] view = out
    cdef PacketMeta* m = <PacketMeta*>packet_metas(view, &n)
    cdef int64_t t
    for i in range(n):
        t = packet_time_us(&m[i]) + delta_us
        if t < 0:
            t = 0
        m[i].seconds = <uint32_t>(t // 1000000)
        m[i].microseconds = <uint32_t>(t % 1000000)
    return bytes(out)


cdef enum:
    LAG_BINS = 1000          # 100 per decade from 1 us to 10**10 us


cdef class Lateness:
    """How late packets were fed against their schedule: a histogram with 100 bins per decade
    (2.3 % resolution), filled in compiled code for a batch at a time."""
    cdef uint64_t bins[LAG_BINS]
    cdef uint64_t count
    cdef int64_t worst

    def add(self, const uint8_t[::1] meta, Py_ssize_t start, Py_ssize_t stop, int64_t t0_us,
            int64_t wall0_us, double speed, int64_t now_us):
        """Packets start..stop fed at now_us; packet time t was due at wall0 + (t - t0) / speed."""
        cdef Py_ssize_t n, i
        cdef const PacketMeta* m = packet_metas(meta, &n)
        cdef int64_t lag
        cdef int b
        for i in range(start, stop):
            lag = now_us - wall0_us - <int64_t>((packet_time_us(&m[i]) - t0_us) / speed)
            if lag > self.worst:
                self.worst = lag
            b = 0 if lag < 1 else <int>(log10(<double>lag) * 100)
            self.bins[min(b, LAG_BINS - 1)] += 1
            self.count += 1

    def quantile(self, double q):
        """Seconds: the lateness at or under which a share q of the packets were fed."""
        cdef uint64_t seen = 0, want
        cdef int b
        if self.count == 0:
            return 0.0
        want = <uint64_t>(q * self.count)
        for b in range(LAG_BINS):
            seen += self.bins[b]
            if seen > want or seen == self.count:    # (a bin's upper edge may pass the worst lag seen)
                return 0.0 if b == 0 else min(10 ** ((b + 1) / 100.0), <double>self.worst) / 1e6
        return self.worst / 1e6

    @property
    def worst_seconds(self):
        return max(self.worst, 0) / 1e6

    @property
    def packets(self):
        return self.count
