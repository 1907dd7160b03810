# Capture files read in compiled code: pcap and pcapng records parsed straight out of
# the file's bytes into batches (pyprobe/source/batch.py's layout). One parser serves
# every input path (a memory-mapped file, whose packets are never copied, and streams
# read in chunks: standard input, gzip, FIFOs), so they all read the same packets and
# stop at the same damaged record. A tcpdump filter runs here too, as a classic BPF
# program (compiled by libpcap, pyprobe/source/bpf.py).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport realloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

cdef extern from *:
    void prefetch "__builtin_prefetch" (const void* address) noexcept nogil

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void* address, size_t length, int advice)
    int MADV_DONTNEED

cdef extern from "<sys/socket.h>" nogil:
    int setsockopt(int fd, int level, int name, const void* value, unsigned int length)
    int getsockopt(int fd, int level, int name, void* value, unsigned int* length)
    int SOL_SOCKET
    int SO_ATTACH_FILTER
    int SO_GET_FILTER

cdef extern from "<linux/filter.h>" nogil:
    struct sock_filter:
        pass
    struct sock_fprog:
        unsigned short len
        sock_filter* filter
    int BPF_MAXINSNS

from libc.errno cimport errno

from decode cimport Packet, PacketMeta, decode_packet

import os

from pyprobe._meter import SUPPORTED_LINKTYPES

cdef enum:
    CAPLEN_LIMIT = 262144        # libpcap's largest snap length: a record claiming more is damage
    BLOCK_LIMIT = 16 << 20       # libpcap's largest pcapng block
    BATCH_SPAN = 1 << 30         # a batch's packets lie within this many bytes (offsets are 32-bit)
    # Each record's place depends on the previous one's length, so a plain walk waits for
    # memory at every record; reading the bytes this far ahead into the cache, a line at a
    # time, turns that chain of misses into one stream, as read(2) into a buffer would be.
    STREAM_AHEAD = 4096
    CACHE_LINE = 64

# What parse() stopped at.
cdef enum:
    ST_READY = 0        # max_packets read, a change of link type or a long skip: call again
    ST_MORE = 1         # the bytes end inside a record: call again with more (at the end: cut short)
    ST_DAMAGED = 2      # a record that cannot be read; .damage says which and where
    ST_NEW_LINKTYPE = 3 # an interface of a link type with no filter program yet: give one, call again

MAX_CAPLEN = CAPLEN_LIMIT
READY, MORE, DAMAGED, NEW_LINKTYPE = ST_READY, ST_MORE, ST_DAMAGED, ST_NEW_LINKTYPE

cdef enum:
    UNKNOWN = 0
    PCAP = 1
    PCAPNG = 2
    NO_FILTER = 0
    FILTER_PROGRAM = 1
    FILTER_NOTHING = 2       # the filter cannot apply to this link type: no packet passes

cdef struct Interface:
    int linktype
    bint decoded             # the meter decodes this link type
    uint64_t units           # timestamp units per second
    int64_t offset_s         # if_tsoffset
    uint32_t snaplen
    int filter_state
    const uint8_t* program   # 8-byte BPF instructions
    Py_ssize_t program_len

cdef inline Py_ssize_t stream_ahead(const uint8_t* buf, Py_ssize_t streamed, Py_ssize_t pos,
                                    Py_ssize_t end) noexcept nogil:
    """Prefetch the lines up to STREAM_AHEAD bytes past pos; returns how far that now reaches."""
    cdef Py_ssize_t until = pos + STREAM_AHEAD
    if until > end:
        until = end
    if streamed < pos:
        streamed = pos
    while streamed < until:
        prefetch(buf + streamed)
        streamed += CACHE_LINE
    return streamed


cdef inline uint16_t bswap16(uint16_t v) noexcept nogil:
    return <uint16_t>((v >> 8) | (v << 8))

cdef inline uint32_t bswap32(uint32_t v) noexcept nogil:
    return ((v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24))


def give_back(const uint8_t[::1] mapped, Py_ssize_t start, Py_ssize_t end):
    """Drop mapped[start:end] (whole pages) from this process's memory: a file's bytes stay in
    the page cache and come back if read again. The GIL is let go meanwhile: the reader
    thread does this while the meter goes on (unmapping costs as much as a tenth of metering)."""
    if 0 <= start < end <= mapped.shape[0]:
        with nogil:
            madvise(<void*>&mapped[start], end - start, MADV_DONTNEED)


# -- classic BPF ----------------------------------------------------------------------

def attach_filter(int fd, const uint8_t[::1] program):
    """Put a classic BPF program (8 bytes per instruction) on a packet socket. The kernel
    swaps it for the socket's filter in one step: every packet meets the old program or the
    new one (libpcap's own setfilter rejects every packet for a moment first). OSError if the
    kernel refuses it (ValueError: not whole instructions, none, or too many)."""
    cdef Py_ssize_t size = program.shape[0]
    cdef sock_fprog fprog
    if size == 0 or size % 8 or size // 8 > BPF_MAXINSNS:
        raise ValueError(f"a BPF program of {size} bytes")
    fprog.len = <unsigned short>(size // 8)
    fprog.filter = <sock_filter*>&program[0]
    if setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)) != 0:
        raise OSError(errno, os.strerror(errno))


def socket_filter(int fd):
    """The classic BPF program on a socket (8 bytes per instruction), b"" for none."""
    out = PyBytes_FromStringAndSize(NULL, 8 * BPF_MAXINSNS)
    cdef unsigned int length = BPF_MAXINSNS          # (in instructions, both ways)
    if getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, PyBytes_AS_STRING(out), &length) != 0:
        raise OSError(errno, os.strerror(errno))
    return out[:8 * length]


cdef inline uint32_t load_be(const uint8_t* p, int size) noexcept nogil:
    if size == 4:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    if size == 2:
        return (<uint32_t>p[0] << 8) | p[1]
    return p[0]

cdef uint32_t run_bpf(const uint8_t* prog, Py_ssize_t n_insns, const uint8_t* pkt, uint32_t caplen,
                      uint32_t wirelen) noexcept nogil:
    """A classic BPF program over one packet, as libpcap's bpf_filter: nonzero passes.
    Loads past the captured bytes, division by zero and a jump out of the program reject."""
    cdef uint32_t A = 0, X = 0, k, mem[16]
    cdef Py_ssize_t pc = 0
    cdef uint16_t code
    cdef uint8_t jt, jf
    cdef int size, cls, op
    cdef uint64_t at
    cdef bint taken
    for size in range(16):
        mem[size] = 0
    while 0 <= pc < n_insns:
        code = (<const uint16_t*>(prog + 8 * pc))[0]
        jt = prog[8 * pc + 2]
        jf = prog[8 * pc + 3]
        k = (<const uint32_t*>(prog + 8 * pc + 4))[0]
        pc += 1
        cls = code & 0x07
        if cls == 0x00 or cls == 0x01:                   # LD, LDX
            size = 4 if (code & 0x18) == 0x00 else (2 if (code & 0x18) == 0x08 else 1)
            op = code & 0xe0
            if op == 0x00:                               # IMM
                at = k
            elif op == 0x80:                             # LEN
                at = wirelen
            elif op == 0x60:                             # MEM
                if k >= 16:
                    return 0
                at = mem[k]
            elif op == 0xa0 and cls == 0x01:             # MSH: X = 4 * (pkt[k] & 0xf)
                if k >= caplen:
                    return 0
                X = 4 * (pkt[k] & 0x0f)
                continue
            elif op == 0x20 or op == 0x40:               # ABS, IND
                at = <uint64_t>k + (X if op == 0x40 else 0)
                if at + size > caplen:
                    return 0
                at = load_be(pkt + at, size)
            else:
                return 0
            if cls == 0x00:
                A = <uint32_t>at
            else:
                X = <uint32_t>at
        elif cls == 0x02 or cls == 0x03:                 # ST, STX
            if k >= 16:
                return 0
            mem[k] = A if cls == 0x02 else X
        elif cls == 0x04:                                # ALU
            if (code & 0x08):
                k = X
            op = code & 0xf0
            if op == 0x00:
                A = A + k
            elif op == 0x10:
                A = A - k
            elif op == 0x20:
                A = A * k
            elif op == 0x30:
                if k == 0:
                    return 0
                A = A // k
            elif op == 0x90:
                if k == 0:
                    return 0
                A = A % k
            elif op == 0x40:
                A = A | k
            elif op == 0x50:
                A = A & k
            elif op == 0xa0:
                A = A ^ k
            elif op == 0x60:
                A = (A << k) if k < 32 else 0
            elif op == 0x70:
                A = (A >> k) if k < 32 else 0
            elif op == 0x80:
                A = <uint32_t>(-(<int64_t>A))
            else:
                return 0
        elif cls == 0x05:                                # JMP
            op = code & 0xf0
            if op == 0x00:                               # JA
                pc += k
                continue
            if (code & 0x08):
                k = X
            if op == 0x10:
                taken = A == k
            elif op == 0x20:
                taken = A > k
            elif op == 0x30:
                taken = A >= k
            elif op == 0x40:
                taken = (A & k) != 0
            else:
                return 0
            pc += jt if taken else jf
        elif cls == 0x06:                                # RET
            op = code & 0x18
            return k if op == 0x00 else (X if op == 0x08 else A)
        else:                                            # MISC: TAX, TXA
            if (code & 0xf8) == 0x00:
                X = A
            else:
                A = X
    return 0


def filter_batch(const uint8_t[::1] packets, meta, const uint8_t[::1] program):
    """A batch's meta (Batch's layout) with only the packets the BPF program passes. The
    meta does not carry a packet's length on the wire: its captured length stands for it."""
    cdef const uint8_t[::1] view = meta
    cdef Py_ssize_t n = view.shape[0] // sizeof(PacketMeta), i, kept = 0, n_insns = program.shape[0] // 8
    cdef const PacketMeta* inp = <const PacketMeta*>&view[0] if n else NULL
    out = PyBytes_FromStringAndSize(NULL, n * sizeof(PacketMeta))
    cdef PacketMeta* outp = <PacketMeta*>PyBytes_AS_STRING(out)
    cdef const uint8_t* prog = &program[0] if n_insns else NULL
    cdef const uint8_t* base = &packets[0] if packets.shape[0] else NULL
    with nogil:
        for i in range(n):
            if <Py_ssize_t>inp[i].offset + inp[i].length > packets.shape[0]:
                continue
            if run_bpf(prog, n_insns, base + inp[i].offset, inp[i].length, inp[i].length) != 0:
                outp[kept] = inp[i]
                kept += 1
    return out[:kept * sizeof(PacketMeta)]


def ip_octets(const uint8_t[::1] packets, meta, int linktype):
    """The octets of a batch's IP packets (Batch's layout) as their IP headers state them,
    read by the meter's own decoding: what a flow counts as its octets. Packets with no IP
    header add nothing (ARP, LLDP)."""
    cdef const uint8_t[::1] view = meta
    cdef Py_ssize_t n = view.shape[0] // sizeof(PacketMeta), i
    cdef const PacketMeta* m = <const PacketMeta*>&view[0] if n else NULL
    cdef const uint8_t* base = &packets[0] if packets.shape[0] else NULL
    cdef uint64_t total = 0
    cdef Packet pkt
    with nogil:
        for i in range(n):
            if <Py_ssize_t>m[i].offset + m[i].length > packets.shape[0]:
                continue
            pkt.key.ipver = 0
            decode_packet(base + m[i].offset, m[i].length, linktype, &pkt)
            if pkt.key.ipver:               # (an IP header was read: its length is known)
                total += pkt.octets
    return total


# -- the parser ------------------------------------------------------------------------

cdef class CaptureParser:
    """Reads a pcap or pcapng capture from successive byte windows.

    parse(data, pos, max_packets) reads whole records from data[pos:] and returns
    (meta, linktype, end, status): meta as Batch's (offsets from pos), the batch's link
    type (-1 for none) and where it stopped. Records whose time a flow record cannot
    carry are counted and skipped, as are packets of link types the meter does not decode."""

    cdef int format
    cdef bint swapped
    cdef bint nanoseconds
    cdef Interface* interfaces
    cdef Py_ssize_t n_interfaces, interfaces_room
    cdef object programs              # link type -> bytes of BPF instructions, or None: nothing passes
    cdef bint filtering
    cdef public int wanted_linktype   # after ST_NEW_LINKTYPE
    cdef public int linktype          # the first interface's (-1 until known)
    cdef public object damage         # after ST_DAMAGED: what, in words
    cdef public uint64_t offset       # bytes of the capture before data[0] (for messages)
    cdef public uint64_t bad_times, undecoded, filtered
    cdef uint32_t last_sec, last_usec

    def __cinit__(self):
        self.interfaces = NULL
        self.n_interfaces = self.interfaces_room = 0
        self.programs = {}
        self.linktype = -1
        self.wanted_linktype = -1

    def __dealloc__(self):
        free(self.interfaces)

    def set_filtering(self):
        """From now on every interface needs a program (ST_NEW_LINKTYPE until it has one)."""
        self.filtering = True

    def linktypes(self):
        """The link types of the interfaces defined so far."""
        return sorted({self.interfaces[i].linktype for i in range(self.n_interfaces)})

    def set_program(self, int linktype, program):
        """The filter for packets of this link type: bytes of BPF instructions, None: none pass."""
        self.programs[linktype] = program
        for i in range(self.n_interfaces):
            if self.interfaces[i].linktype == linktype:
                self._use_program(&self.interfaces[i])

    cdef void _use_program(self, Interface* iface):
        program = self.programs.get(iface.linktype, b"")
        if not self.filtering:
            iface.filter_state = NO_FILTER
        elif program is None:
            iface.filter_state = FILTER_NOTHING
        else:
            iface.filter_state = FILTER_PROGRAM
            iface.program = <const uint8_t*>PyBytes_AS_STRING(program)
            iface.program_len = len(program) // 8

    cdef inline uint32_t u32(self, const uint8_t* p) noexcept nogil:
        cdef uint32_t v = (<const uint32_t*>p)[0]
        return bswap32(v) if self.swapped else v

    cdef inline uint16_t u16(self, const uint8_t* p) noexcept nogil:
        cdef uint16_t v = (<const uint16_t*>p)[0]
        return bswap16(v) if self.swapped else v

    cdef int _add_interface(self, int linktype, uint32_t snaplen, uint64_t units, int64_t offset_s) except -1:
        cdef Interface* grown
        if self.n_interfaces == self.interfaces_room:
            self.interfaces_room = max(8, 2 * self.interfaces_room)
            grown = <Interface*>realloc(self.interfaces, self.interfaces_room * sizeof(Interface))
            if grown == NULL:
                raise MemoryError()
            self.interfaces = grown
        cdef Interface* iface = &self.interfaces[self.n_interfaces]
        iface.linktype = linktype
        iface.decoded = linktype in SUPPORTED_LINKTYPES
        iface.units = units
        iface.offset_s = offset_s
        iface.snaplen = snaplen
        self._use_program(iface)
        self.n_interfaces += 1
        if self.linktype < 0:
            self.linktype = linktype
        return 0

    def parse(self, data, Py_ssize_t pos, Py_ssize_t max_packets):
        cdef const uint8_t[::1] view = data
        cdef Py_ssize_t end = view.shape[0]
        cdef const uint8_t* buf = &view[0] if end else NULL
        meta = PyBytes_FromStringAndSize(NULL, max_packets * sizeof(PacketMeta))
        cdef PacketMeta* out = <PacketMeta*>PyBytes_AS_STRING(meta)
        cdef Py_ssize_t n = 0, base = pos
        cdef int batch_linktype = -1
        cdef int status = ST_READY
        while True:
            if self.format == UNKNOWN:
                status = self._file_header(buf, pos, end)
                if status != ST_READY:
                    break
                pos = pos + 24 if self.format == PCAP else pos
                continue
            if self.format == PCAP:
                status = self._pcap_records(buf, &pos, end, base, max_packets, out, &n, &batch_linktype)
            else:
                status = self._pcapng_blocks(buf, &pos, end, base, max_packets, out, &n, &batch_linktype)
            break
        return (meta if n == max_packets else meta[:n * sizeof(PacketMeta)]), batch_linktype, pos, status

    cdef int _file_header(self, const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end) except -1:
        if end - pos < 24:
            return ST_MORE
        cdef uint32_t magic = (<const uint32_t*>(buf + pos))[0]
        if magic == 0x0A0D0D0A:
            self.format = PCAPNG                 # its section header is read as a block
            return ST_READY
        if magic in (0xa1b2c3d4, 0xa1b23c4d):
            self.swapped = False
        elif magic in (0xd4c3b2a1, 0x4d3cb2a1):
            self.swapped = True
        else:
            return self._damaged(pos, f"not a pcap or pcapng capture (magic {magic:08x})")
        self.format = PCAP
        self.nanoseconds = self.u32(buf + pos) == 0xa1b23c4d
        self._add_interface(self.u32(buf + pos + 20) & 0x03FFFFFF, self.u32(buf + pos + 16), 1000000, 0)
        return ST_READY

    cdef int _damaged(self, Py_ssize_t pos, str what) except -1:
        self.damage = f"{what} (at byte {self.offset + pos:,})"
        return ST_DAMAGED

    cdef int _pcap_records(self, const uint8_t* buf, Py_ssize_t* at, Py_ssize_t end, Py_ssize_t base,
                           Py_ssize_t max_packets, PacketMeta* out, Py_ssize_t* count, int* batch_linktype) except -1:
        cdef Py_ssize_t pos = at[0], n = count[0]
        cdef const uint8_t* rec
        cdef uint32_t caplen, sec, frac
        cdef Interface* iface = &self.interfaces[0]
        cdef int status = ST_READY
        cdef Py_ssize_t streamed = pos
        if self.filtering and iface.filter_state == NO_FILTER:
            self.wanted_linktype = iface.linktype
            return ST_NEW_LINKTYPE
        with nogil:
            while True:
                if n == max_packets or pos - base > BATCH_SPAN:
                    break
                streamed = stream_ahead(buf, streamed, pos, end)
                if end - pos < 16:
                    status = ST_MORE
                    break
                rec = buf + pos
                caplen = self.u32(rec + 8)
                if caplen > CAPLEN_LIMIT:
                    status = ST_DAMAGED
                    break
                if end - pos - 16 < caplen:
                    status = ST_MORE
                    break
                sec = self.u32(rec)
                frac = self.u32(rec + 4)
                if self.nanoseconds:
                    frac = 1000000000 if frac >= 1000000000 else frac // 1000
                pos += 16 + caplen
                if frac >= 1000000:
                    self.bad_times += 1
                    continue
                if self._keep(iface, rec + 16, caplen, self.u32(rec + 12)):
                    out[n].seconds = sec
                    out[n].microseconds = frac
                    out[n].offset = <uint32_t>(pos - caplen - base)
                    # more than the file's snap length: cut to it, as libpcap does
                    out[n].length = caplen if iface.snaplen == 0 or caplen <= iface.snaplen else iface.snaplen
                    n += 1
        at[0], count[0] = pos, n
        if n:
            batch_linktype[0] = iface.linktype
        if status == ST_DAMAGED:
            return self._damaged(pos, f"a record claims {caplen:,} captured bytes; the most libpcap "
                                      f"allows is {CAPLEN_LIMIT:,}")
        return status

    cdef inline bint _keep(self, Interface* iface, const uint8_t* pkt, uint32_t caplen,
                           uint32_t wirelen) noexcept nogil:
        """Whether a packet goes to the meter: its link type decoded and the filter passing it."""
        if not iface.decoded:
            self.undecoded += 1
            return False
        if iface.filter_state == FILTER_NOTHING or (
                iface.filter_state == FILTER_PROGRAM
                and run_bpf(iface.program, iface.program_len, pkt, caplen, wirelen) == 0):
            self.filtered += 1
            return False
        return True

    cdef int _pcapng_blocks(self, const uint8_t* buf, Py_ssize_t* at, Py_ssize_t end, Py_ssize_t base,
                            Py_ssize_t max_packets, PacketMeta* out, Py_ssize_t* count, int* batch_linktype) except -1:
        cdef Py_ssize_t pos = at[0], n = count[0]
        cdef const uint8_t* block
        cdef uint32_t btype, length, if_id, caplen, wirelen, sec, usec
        cdef uint64_t ts, units
        cdef int64_t s
        cdef Interface* iface
        cdef int status = ST_READY
        cdef uint32_t bom
        cdef str problem = None
        while True:
            if pos - base > BATCH_SPAN:
                break
            if end - pos < 12:
                status = ST_MORE
                break
            block = buf + pos
            btype = self.u32(block)
            if btype == 0x0A0D0D0A:                    # section header: its own byte order
                bom = (<const uint32_t*>(block + 8))[0]
                if bom == 0x1A2B3C4D:
                    self.swapped = False
                elif bom == 0x4D3C2B1A:
                    self.swapped = True
                else:
                    problem = "a pcapng section header with a bad byte-order magic"
                    break
            length = self.u32(block + 4)
            if length < 12 or length % 4 or length > BLOCK_LIMIT:
                problem = f"a pcapng block of {length:,} bytes"
                break
            if end - pos < length:
                status = ST_MORE
                break
            if self.u32(block + length - 4) != length:
                problem = "a pcapng block whose trailing length differs from its leading one"
                break
            if btype == 0x0A0D0D0A:
                if length < 28:
                    problem = "a pcapng section header too short"
                    break
                self.n_interfaces = 0                    # interface ids start again
            elif btype == 1:                             # interface description
                if length < 20:
                    problem = "a pcapng interface description too short"
                    break
                if self.filtering and self.programs.get(self.u16(block + 8), b"") == b"":
                    self.wanted_linktype = self.u16(block + 8)
                    status = ST_NEW_LINKTYPE
                    break
                problem = self._interface(block, length)
                if problem is not None:
                    break
            elif btype == 6 or btype == 2 or btype == 3:   # enhanced, obsolete, simple packet
                if n == max_packets:
                    break
                if btype == 3:
                    if length < 16:
                        problem = "a pcapng simple packet block too short"
                        break
                    if_id = 0
                    wirelen = self.u32(block + 8)
                    caplen = min(wirelen, length - 16)
                else:
                    if length < 32:
                        problem = "a pcapng packet block too short"
                        break
                    if_id = self.u32(block + 8) if btype == 6 else self.u16(block + 8)
                    caplen = self.u32(block + 20)
                    wirelen = self.u32(block + 24)
                    if caplen > length - 32:
                        problem = f"a pcapng packet block shorter than its {caplen:,} captured bytes"
                        break
                if if_id >= self.n_interfaces:
                    problem = (f"a pcapng packet names interface {if_id}; its section describes "
                               f"{self.n_interfaces}")
                    break
                iface = &self.interfaces[if_id]
                if btype == 3 and iface.snaplen:
                    caplen = min(caplen, iface.snaplen)
                if caplen > CAPLEN_LIMIT:
                    problem = (f"a packet claims {caplen:,} captured bytes; the most libpcap "
                               f"allows is {CAPLEN_LIMIT:,}")
                    break
                if n and iface.linktype != batch_linktype[0] and iface.decoded:
                    break                                # a batch has one link type
                pos += length
                if btype == 3:                           # no time of its own: the one before
                    sec, usec = self.last_sec, self.last_usec
                else:
                    ts = (<uint64_t>self.u32(block + 12) << 32) | self.u32(block + 16)
                    units = iface.units
                    s = <int64_t>(ts // units) + iface.offset_s
                    if s < 0 or s > 0xFFFFFFFF:
                        self.bad_times += 1
                        continue
                    sec = <uint32_t>s
                    ts = ts % units
                    if units == 1000000:
                        usec = <uint32_t>ts
                    elif units > 1000000 and units % 1000000 == 0:
                        usec = <uint32_t>(ts // (units // 1000000))
                    else:
                        usec = min(<uint32_t>(<double>ts * 1e6 / <double>units), 999999)
                    self.last_sec, self.last_usec = sec, usec
                if self._keep(iface, block + (12 if btype == 3 else 28), caplen, wirelen):
                    out[n].seconds = sec
                    out[n].microseconds = usec
                    out[n].offset = <uint32_t>(pos - length + (12 if btype == 3 else 28) - base)
                    out[n].length = caplen
                    n += 1
                    batch_linktype[0] = iface.linktype
                continue
            pos += length                                # statistics, name resolution, custom: skipped
        at[0], count[0] = pos, n
        if problem is not None:
            return self._damaged(pos, problem)
        return status

    cdef str _interface(self, const uint8_t* block, uint32_t length):
        """Define the interface an interface description block describes; a problem or None."""
        cdef int linktype = self.u16(block + 8)
        cdef uint32_t snaplen = self.u32(block + 12)
        cdef uint64_t units = 1000000
        cdef int64_t offset_s = 0
        cdef Py_ssize_t p = 16, stop = length - 4
        cdef uint16_t code, size
        cdef uint8_t resol
        cdef int i
        while p + 4 <= stop:
            code = self.u16(block + p)
            size = self.u16(block + p + 2)
            p += 4
            if code == 0:
                break
            if p + size > stop:
                return "a pcapng interface option runs past its block"
            if code == 9 and size == 1:                  # if_tsresol
                resol = block[p]
                if resol & 0x80:
                    if (resol & 0x7f) > 63:
                        return f"a pcapng interface with time resolution 2^-{resol & 0x7f}"
                    units = (<uint64_t>1) << (resol & 0x7f)
                else:
                    if resol > 19:
                        return f"a pcapng interface with time resolution 10^-{resol}"
                    units = 1
                    for i in range(resol):
                        units *= 10
            elif code == 14 and size == 8:               # if_tsoffset: seconds
                offset_s = <int64_t>((<uint64_t>self.u32(block + p + (4 if not self.swapped else 0)) << 32)
                                     | self.u32(block + p + (0 if not self.swapped else 4)))
            p += (size + 3) & ~3
        self._add_interface(linktype, snaplen, units, offset_s)
        return None
