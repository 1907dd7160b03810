# A batch decoded once for several monitors (pyprobe._meter, included by ext/_meter.pyx).

cdef class DecodedBatch:
    """A batch decoded once for several meters (monitors) that meter the same packets:
    DecodedBatch(linktype, direction) with the meters' link type and direction, decode(),
    then each meter's meter_decoded()."""
    cdef Decoder decoder
    cdef object packets             # the batch: its packets' payloads point into it
    cdef Packet* pkts
    cdef int* reasons
    cdef int64_t* times
    cdef Py_ssize_t n
    cdef Py_ssize_t cap

    def __cinit__(self, int linktype, direction="ingress"):
        decoder_init(&self.decoder, linktype, direction)

    def __dealloc__(self):
        free(self.pkts)
        free(self.reasons)
        free(self.times)

    def decode(self, packets, meta, int linktype=-1, int shift_round=0, direction="ingress",
               uint32_t in_if=0, vlans_elsewhere=None, uint16_t vlan=0):
        """Decode one batch (Meter.process's arguments)."""
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
        begin_batch(&self.decoder, linktype, shift_round, direction, in_if, vlans_elsewhere, vlan)
        with nogil:
            for k in range(n):
                self.reasons[k] = decode_one(&self.decoder, &buf[0] if buflen else NULL, buflen, &metas[k],
                                             &self.pkts[k], &self.times[k])
        end_batch(&self.decoder)
        self.packets = packets
        self.n = n
