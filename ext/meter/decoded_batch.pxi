# A batch decoded once for several monitors (pyprobe._meter, included by ext/_meter.pyx).

cdef class DecodedBatch:
    """A batch decoded once for several meters (monitors) that meter the same packets:
    decode() with the first meter's settings, then each meter's meter_decoded()."""
    cdef Packet* pkts
    cdef int* reasons
    cdef int64_t* times
    cdef Py_ssize_t n
    cdef Py_ssize_t cap

    def __dealloc__(self):
        free(self.pkts)
        free(self.reasons)
        free(self.times)

    def decode(self, Meter meter, packets, meta, int linktype=-1, int shift_round=0, direction="ingress",
               uint32_t in_if=0, vlans_elsewhere=None, uint16_t vlan=0):
        """Decode one batch (Meter.process's arguments) as `meter` would."""
        cdef const uint8_t[::1] buf = packets
        cdef const uint8_t[::1] raw_meta = meta
        cdef Py_ssize_t n, buflen = buf.shape[0], k
        cdef const PacketMeta* metas = packet_metas(raw_meta, &n)
        if n > self.cap:
            free(self.pkts)
            free(self.reasons)
            free(self.times)
            self.pkts = <Packet*>malloc(n * sizeof(Packet))
            self.reasons = <int*>malloc(n * sizeof(int))
            self.times = <int64_t*>malloc(n * sizeof(int64_t))
            if self.pkts == NULL or self.reasons == NULL or self.times == NULL:
                self.cap = self.n = 0
                raise MemoryError("cannot decode a batch this large")
            self.cap = n
        meter._begin_batch(linktype, shift_round, direction, in_if, vlans_elsewhere, vlan)
        with nogil:
            for k in range(n):
                self.reasons[k] = meter._decode(&buf[0] if buflen else NULL, buflen, &metas[k], &self.pkts[k],
                                                &self.times[k])
        meter.vlans_elsewhere = NULL
        self.n = n
