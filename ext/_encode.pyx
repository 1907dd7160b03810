# Export records in compiled code: the per-record and per-message work of the v5, v9
# and IPFIX encoders. Python decides when templates go and what a version's header
# holds; these loops sort, measure and write the records straight from the meter's
# packed FlowRecords, and a run of data messages, headers and all, in one call.
#
# A record layout (a v9/IPFIX template, or v5's fixed record) arrives as a
# program: one op per field, made by pyprobe/export/encoder.py's Layout from the
# field table (pyprobe/fields.py). The ops are the encodings named there.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.unicode cimport PyUnicode_DecodeUTF8

from json.encoder import encode_basestring_ascii

from record cimport FlowRecord, CLASSIC_RECORD_SIZE
from codes cimport END_ACTIVE, END_EOF, END_FORCED, END_IMMEDIATE
from decode cimport is_icmp

# Encodings (pyprobe/fields.py names them; the values must agree: tests/test_fields.py reads
# back a record of every field through every template).
cdef enum:
    OP_UNSIGNED = 1
    OP_BYTES = 2
    OP_ZERO = 3
    OP_MILLISECONDS = 4
    OP_UPTIME_MS = 5
    OP_END_REASON = 6
    OP_VARLEN = 7
    VARIABLE = 65535      # an element's wire length that is IPFIX's variable length
    LENGTH_BYTES = 2      # a bounded member's native uint16 length before its bytes

# Record classes: which template a record goes out in. Routers send ICMP flows in
# templates of their own, which add the ICMP type and code, so that no collector
# takes an ICMP element for another protocol's port (pyprobe/export/encoder.py).
cdef enum:
    CLASS_IPV4 = 0
    CLASS_IPV4_ICMP = 1
    CLASS_IPV6 = 2
    CLASS_IPV6_ICMP = 3
    N_CLASSES = 4

CLASSES = N_CLASSES
OP_SIZE = 8           # bytes per op: uint16 encoding, member width, wire length, member offset

RECORD_SIZE = sizeof(FlowRecord)
CLASSIC_SIZE = CLASSIC_RECORD_SIZE

# Every function here takes the records' stride: RECORD_SIZE, or CLASSIC_SIZE for classic
# records (the first bytes of a record, pyprobe/fields.py), which the ops of a layout made
# for them (pyprobe/export/encoder.py) read no further into.


cdef struct Op:
    uint16_t encoding
    uint16_t width        # bytes of the record member
    uint16_t length       # bytes on the wire
    uint16_t offset       # of the member in the record


cdef inline int64_t ms(int64_t us) noexcept nogil:
    """Microseconds to milliseconds, rounding down (also before 1970)."""
    return us // 1000 if us >= 0 else -((-us + 999) // 1000)


cdef inline uint64_t load(const uint8_t* p, int width) noexcept nogil:
    """A native unsigned integer of 1, 2, 4 or 8 bytes (records may sit unaligned in a buffer)."""
    cdef uint16_t v16
    cdef uint32_t v32
    cdef uint64_t v64
    if width == 1:
        return p[0]
    if width == 2:
        memcpy(&v16, p, 2)
        return v16
    if width == 4:
        memcpy(&v32, p, 4)
        return v32
    memcpy(&v64, p, 8)
    return v64


cdef inline uint8_t* put(uint8_t* p, uint64_t v, int length) noexcept nogil:
    """v big-endian in `length` bytes (its low bytes)."""
    cdef int i
    if length == 1:
        p[0] = <uint8_t>v
    elif length == 2:
        p[0] = <uint8_t>(v >> 8)
        p[1] = <uint8_t>v
    elif length == 4:
        p[0] = <uint8_t>(v >> 24)
        p[1] = <uint8_t>(v >> 16)
        p[2] = <uint8_t>(v >> 8)
        p[3] = <uint8_t>v
    elif length == 8:
        p[0] = <uint8_t>(v >> 56)
        p[1] = <uint8_t>(v >> 48)
        p[2] = <uint8_t>(v >> 40)
        p[3] = <uint8_t>(v >> 32)
        p[4] = <uint8_t>(v >> 24)
        p[5] = <uint8_t>(v >> 16)
        p[6] = <uint8_t>(v >> 8)
        p[7] = <uint8_t>v
    else:
        for i in range(length - 1, -1, -1):
            p[i] = <uint8_t>v
            v >>= 8
    return p + length


cdef inline int64_t load_time(const uint8_t* p) noexcept nogil:
    cdef int64_t t
    memcpy(&t, p, 8)
    return t


cdef inline const FlowRecord* record_at(const uint8_t[::1] buf, Py_ssize_t stride, uint32_t i) noexcept nogil:
    return <const FlowRecord*>(&buf[0] + <Py_ssize_t>i * stride)


cdef Py_ssize_t count_of(const uint8_t[::1] buf, Py_ssize_t stride) except -1:
    """The records in buf, of this stride (ValueError for one that no record has): whole or
    classic records, or whole records with members appended beyond the field table's (a
    multiple of 8 bytes more, which only a Layout given those members reads)."""
    if stride != CLASSIC_RECORD_SIZE and (stride < <Py_ssize_t>sizeof(FlowRecord) or stride % 8):
        raise ValueError(f"records are {sizeof(FlowRecord)} (or more, in 8s) or {CLASSIC_RECORD_SIZE} bytes, "
                         f"not {stride}")
    if buf.shape[0] % stride:
        raise ValueError(f"{buf.shape[0]} bytes are not records of {stride} bytes")
    return buf.shape[0] // stride


cdef inline int class_of(const FlowRecord* r) noexcept nogil:
    cdef int icmp = is_icmp(r.proto)
    return (CLASS_IPV6 if r.ipver == 6 else CLASS_IPV4) + icmp


def order_by_class(const uint8_t[::1] buf, Py_ssize_t stride, carried):
    """Record indices grouped by record class, each class in arrival order, the classes
    that carried[class] says a version can send first; and each class's record count."""
    cdef Py_ssize_t n = count_of(buf, stride)
    cdef Py_ssize_t i, pos = 0
    cdef Py_ssize_t start[N_CLASSES]
    cdef Py_ssize_t counts[N_CLASSES]
    cdef int c, k
    order = bytearray(4 * n)
    cdef uint32_t[::1] out = memoryview(order).cast("I")
    for c in range(N_CLASSES):
        counts[c] = 0
    for i in range(n):
        counts[class_of(record_at(buf, stride, i))] += 1
    for k in range(2):                       # carried classes, then the others
        for c in range(N_CLASSES):
            if bool(carried[c]) == (k == 0):
                start[c] = pos
                pos += counts[c]
    for i in range(n):
        c = class_of(record_at(buf, stride, i))
        out[start[c]] = i
        start[c] += 1
    return order, [counts[c] for c in range(N_CLASSES)]


cdef struct ClassSize:
    Py_ssize_t fixed      # bytes of each record of the class on the wire
    const Op* ops         # or NULL; else its records' sizes vary, each measured by its program (wire_size)
    Py_ssize_t n_ops


cdef int load_sizes(sizes, ClassSize* out, list keep, Py_ssize_t stride) except -1:
    """sizes[class]: bytes per record, or the program of a layout whose records' sizes vary;
    keep holds the programs while out points into them."""
    cdef const uint8_t[::1] program
    cdef Py_ssize_t k
    cdef int c
    for c in range(N_CLASSES):
        out[c].fixed, out[c].ops, out[c].n_ops = 0, NULL, 0
        if isinstance(sizes[c], int):
            out[c].fixed = sizes[c]
            continue
        program = sizes[c]
        keep.append(program)
        out[c].ops = <const Op*>&program[0]
        out[c].n_ops = program.shape[0] // sizeof(Op)
        for k in range(out[c].n_ops):
            if out[c].ops[k].offset + reads(&out[c].ops[k]) > stride:
                raise ValueError(f"a program reads past a record of {stride} bytes")
    return 0


def take(const uint8_t[::1] buf, Py_ssize_t stride, order, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t budget, sizes,
         int set_overhead, int64_t max_span_ms, Py_ssize_t max_records=-1):
    """How many records from order[start:stop] fit one datagram: within `budget` bytes
    (sizes[class] per record, or its program that measures each: load_sizes; set_overhead
    more for each class's set), at most max_records, and spanning no more than max_span_ms
    from earliest first to latest last. Returns (end, first_ms, last_ms)."""
    cdef const uint32_t[::1] idx = memoryview(order).cast("I")
    cdef ClassSize size_of[N_CLASSES]
    cdef list keep = []
    cdef int64_t lo = 0, hi = 0
    load_sizes(sizes, size_of, keep, stride)
    count_of(buf, stride)
    start = take_one(buf, stride, idx, start, stop, budget, size_of, set_overhead, max_span_ms, max_records, &lo, &hi)
    return start, lo, hi


cdef Py_ssize_t take_one(const uint8_t[::1] buf, Py_ssize_t stride, const uint32_t[::1] idx, Py_ssize_t start, Py_ssize_t stop,
                         Py_ssize_t budget, const ClassSize* size_of, int set_overhead, int64_t max_span_ms,
                         Py_ssize_t max_records, int64_t* lo_out, int64_t* hi_out) noexcept:
    cdef Py_ssize_t i = start, used = 0, size
    cdef int64_t lo = 0, hi = 0, first, last
    cdef int c, previous = -1
    cdef const FlowRecord* r
    while i < stop and (max_records < 0 or i - start < max_records):
        r = record_at(buf, stride, idx[i])
        c = class_of(r)
        size = size_of[c].fixed if size_of[c].ops == NULL else wire_size(<const uint8_t*>r, size_of[c].ops,
                                                                         size_of[c].n_ops)
        size += set_overhead if c != previous else 0
        first = ms(r.first_us)
        last = ms(r.last_us)
        if i > start:
            first = min(first, lo)
            last = max(last, hi)
        if used + size > budget or (i > start and last - first > max_span_ms):
            break                                # (a record alone always spans what it spans)
        used += size
        lo, hi = first, last
        previous = c
        i += 1
    lo_out[0] = lo
    hi_out[0] = hi
    return i


cdef struct Run:
    uint16_t set_id
    Py_ssize_t first, end           # its records' places in order
    const Op* ops
    Py_ssize_t n_ops, record_size   # (a variable run's: unused, each record is measured)
    bint variable                   # its records' sizes vary (a variable-length element)


cdef inline Py_ssize_t reads(const Op* op) noexcept nogil:
    """How many bytes of the record from op.offset an op reads (pack_record)."""
    if op.encoding == OP_UNSIGNED:
        return op.width
    if op.encoding == OP_BYTES:
        return op.length
    if op.encoding == OP_MILLISECONDS or op.encoding == OP_UPTIME_MS:
        return 8
    if op.encoding == OP_VARLEN:
        return op.width
    return 1 if op.encoding == OP_END_REASON else 0


cdef int load_runs(runs, Run* out, list keep, Py_ssize_t stride) except -1:
    """runs are (set id, first, end, program, record size) over order; keep holds the programs
    while the Runs point into them. (ValueError for a program that reads past a record.)"""
    cdef const uint8_t[::1] program
    cdef const Op* ops
    cdef int n = 0, k
    if len(runs) > N_CLASSES:
        raise ValueError("more runs than record classes")
    for set_id, first, end, prog, record_size in runs:
        program = prog
        keep.append(program)
        out[n].set_id, out[n].first, out[n].end = set_id, first, end
        out[n].ops = <const Op*>&program[0]
        out[n].n_ops = program.shape[0] // sizeof(Op)
        out[n].record_size = record_size
        out[n].variable = False
        ops = out[n].ops
        for k in range(out[n].n_ops):
            if ops[k].offset + reads(&ops[k]) > stride:
                raise ValueError(f"template {set_id} reads past a record of {stride} bytes")
            if ops[k].encoding == OP_VARLEN:
                if ops[k].width <= LENGTH_BYTES or (ops[k].length != VARIABLE and
                                                    ops[k].length > ops[k].width - LENGTH_BYTES):
                    raise ValueError(f"template {set_id}: a string of {ops[k].length} bytes from a member of "
                                     f"{ops[k].width}")
                if ops[k].length == VARIABLE:
                    out[n].variable = True
        n += 1
    return n


cdef Py_ssize_t run_body(const Run* run, const uint8_t[::1] buf, Py_ssize_t stride, const uint32_t[::1] idx,
                         Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Bytes that the run's records order[lo:hi] take on the wire."""
    cdef Py_ssize_t body = 0, i
    if not run.variable:
        return (hi - lo) * run.record_size
    for i in range(lo, hi):
        body += wire_size(<const uint8_t*>record_at(buf, stride, idx[i]), run.ops, run.n_ops)
    return body


cdef Py_ssize_t wire_size(const uint8_t* r, const Op* ops, Py_ssize_t n_ops) noexcept nogil:
    """Bytes that pack_record writes of record r."""
    cdef Py_ssize_t size = 0, k, n
    for k in range(n_ops):
        if ops[k].encoding == OP_VARLEN and ops[k].length == VARIABLE:
            n = bounded_length(r + ops[k].offset, ops[k].width)
            size += n + (1 if n < 255 else 3)
        else:
            size += ops[k].length
    return size


cdef inline Py_ssize_t bounded_length(const uint8_t* p, Py_ssize_t width) noexcept nogil:
    """The length of a bounded member's value (held within its slot)."""
    cdef uint16_t n
    memcpy(&n, p, LENGTH_BYTES)
    return min(<Py_ssize_t>n, width - LENGTH_BYTES)


cdef Py_ssize_t runs_size(const Run* runs, int n_runs, const uint8_t[::1] buf, Py_ssize_t stride,
                          const uint32_t[::1] idx, Py_ssize_t start, Py_ssize_t stop, bint set_headers,
                          bint pad) noexcept nogil:
    """Bytes that order[start:stop] takes, written by write_runs."""
    cdef Py_ssize_t size = 0, body, lo, hi
    cdef int k
    for k in range(n_runs):
        lo, hi = max(runs[k].first, start), min(runs[k].end, stop)
        body = run_body(&runs[k], buf, stride, idx, lo, hi) if lo < hi else 0
        if body > 0:
            size += set_length(body, pad) if set_headers else body
    return size


cdef uint8_t* write_runs(uint8_t* p, const uint8_t[::1] buf, Py_ssize_t stride, const uint32_t[::1] idx,
                         const Run* runs,
                         int n_runs, Py_ssize_t start, Py_ssize_t stop, bint set_headers, bint pad,
                         int64_t boot_ms) noexcept nogil:
    """Records order[start:stop], each written by the program of the run it falls in; with
    set_headers each run present becomes a set (header; padded to 4 bytes if pad)."""
    cdef Py_ssize_t lo, hi, body, length = 0
    cdef int k
    for k in range(n_runs):
        lo, hi = max(runs[k].first, start), min(runs[k].end, stop)
        if lo >= hi:
            continue
        body = run_body(&runs[k], buf, stride, idx, lo, hi)
        if set_headers:
            length = set_length(body, pad)
            p = put(p, runs[k].set_id, 2)
            p = put(p, length, 2)
        p = pack_range(p, buf, stride, idx, lo, hi, runs[k].ops, runs[k].n_ops, boot_ms)
        if set_headers:
            memset(p, 0, length - 4 - body)
            p += length - 4 - body
    return p


def pack_runs(const uint8_t[::1] buf, Py_ssize_t stride, order, Py_ssize_t start, Py_ssize_t stop, runs, bint set_headers,
              bint pad, int64_t boot_ms=0):
    """Records order[start:stop] as one bytes object (write_runs). Uptime times are relative
    to boot_ms."""
    cdef const uint32_t[::1] idx = memoryview(order).cast("I")
    cdef Run run_of[N_CLASSES]
    cdef list keep = []
    cdef int n_runs = load_runs(runs, run_of, keep, stride)
    count_of(buf, stride)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, runs_size(run_of, n_runs, buf, stride, idx, start, stop,
                                                               set_headers, pad))
    write_runs(<uint8_t*>PyBytes_AS_STRING(out), buf, stride, idx, run_of, n_runs, start, stop, set_headers, pad, boot_ms)
    return out


# -- message headers ------------------------------------------------------------------------
# Each version declares its header as data beside its encoder (pyprobe/export/): a field per
# op, in wire order, from one of these sources. The data messages of a run are written here
# whole; Python writes its few others (templates, options) with message_header().

cdef enum:
    H_CONSTANT = 1       # the op's value (version number, source ID, engine, sampling)
    H_RECORDS = 2        # records in the message, as the version counts them
    H_LENGTH = 3         # bytes in the message
    H_UPTIME_MS = 4      # export time less boot time (v5, v9)
    H_SECONDS = 5        # export time, whole seconds (held at the 32-bit end)
    H_NANOSECONDS = 6    # the export time's milliseconds, as nanoseconds (v5)
    H_SEQUENCE = 7       # the sequence number before this message

HEADER_CONSTANT, HEADER_RECORDS, HEADER_LENGTH = H_CONSTANT, H_RECORDS, H_LENGTH
HEADER_UPTIME_MS, HEADER_SECONDS, HEADER_NANOSECONDS, HEADER_SEQUENCE = H_UPTIME_MS, H_SECONDS, H_NANOSECONDS, H_SEQUENCE
HEADER_OP_SIZE = 8       # bytes per header op: uint16 source, uint16 length, uint32 value


cdef struct HeaderOp:
    uint16_t source
    uint16_t length
    uint32_t value


cdef uint8_t* write_header(uint8_t* p, const HeaderOp* ops, Py_ssize_t n_ops, int64_t export_ms,
                           int64_t uptime_ms, uint64_t records, uint64_t length, uint64_t sequence) noexcept nogil:
    cdef Py_ssize_t k
    cdef uint64_t v
    for k in range(n_ops):
        if ops[k].source == H_CONSTANT:
            v = ops[k].value
        elif ops[k].source == H_RECORDS:
            v = records
        elif ops[k].source == H_LENGTH:
            v = length
        elif ops[k].source == H_UPTIME_MS:
            v = <uint64_t>uptime_ms
        elif ops[k].source == H_SECONDS:
            v = seconds_of(export_ms)
        elif ops[k].source == H_NANOSECONDS:
            v = <uint64_t>(export_ms - floor_div(export_ms, 1000) * 1000) * 1000000
        else:
            v = sequence
        p = put(p, v, ops[k].length)
    return p


cdef Py_ssize_t header_length(const HeaderOp* ops, Py_ssize_t n_ops) noexcept nogil:
    cdef Py_ssize_t size = 0, k
    for k in range(n_ops):
        size += ops[k].length
    return size


def message_header(const uint8_t[::1] program, int64_t export_ms, int64_t uptime_ms, uint64_t records,
                   uint64_t length, uint64_t sequence):
    """One message's header, as the version's program says (the data messages of a run are
    written by data_messages)."""
    cdef const HeaderOp* ops = <const HeaderOp*>&program[0]
    cdef Py_ssize_t n_ops = program.shape[0] // sizeof(HeaderOp)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, header_length(ops, n_ops))
    write_header(<uint8_t*>PyBytes_AS_STRING(out), ops, n_ops, export_ms, uptime_ms, records, length, sequence)
    return out


def data_messages(const uint8_t[::1] buf, Py_ssize_t stride, order, Py_ssize_t start, Py_ssize_t stop, runs,
                  Py_ssize_t max_size, sizes, int set_overhead, int64_t max_span_ms, Py_ssize_t max_records,
                  Py_ssize_t most, bint set_headers, bint pad, const uint8_t[::1] header,
                  Uptime uptime, int64_t now_ms, uint64_t sequence, bint sequence_counts_records,
                  bint hold_last=False):
    """Messages of records alone from order[start:stop], at most `most` (-1: until the records
    run out): as many records in each as take() allows within max_size bytes, after the
    header (its program: header), dated by uptime (None: records carry absolute times,
    the export time is now_ms). The sequence goes up by one per message, or by its records.
    hold_last: the message the records run out in is not made (its records wait for more).
    Returns (messages, where each message's records end, the sequence after them, whether
    the last message was held)."""
    cdef const uint32_t[::1] idx = memoryview(order).cast("I")
    cdef Run run_of[N_CLASSES]
    cdef list keep = []
    cdef int n_runs = load_runs(runs, run_of, keep, stride)
    cdef const HeaderOp* ops = <const HeaderOp*>&header[0]
    cdef Py_ssize_t n_ops = header.shape[0] // sizeof(HeaderOp)
    cdef Py_ssize_t header_size = header_length(ops, n_ops)
    cdef ClassSize size_of[N_CLASSES]
    cdef Py_ssize_t end, length
    cdef int64_t lo = 0, hi = 0, export_ms, uptime_ms, boot_ms
    cdef bytes out
    cdef uint8_t* p
    load_sizes(sizes, size_of, keep, stride)
    count_of(buf, stride)
    messages, ends = [], []
    while start < stop and (most < 0 or len(messages) < most):
        end = take_one(buf, stride, idx, start, stop, max_size - header_size, size_of, set_overhead, max_span_ms,
                       max_records, &lo, &hi)
        if end == start:
            break                                # (not one record fits: the caller says so)
        if hold_last and end == stop:
            return messages, ends, sequence, True
        export_ms, uptime_ms, boot_ms = now_ms, 0, 0
        if uptime is not None:
            uptime.times(now_ms, lo, hi, &export_ms, &uptime_ms)
            boot_ms = uptime.boot_ms
        length = header_size + runs_size(run_of, n_runs, buf, stride, idx, start, end, set_headers, pad)
        out = PyBytes_FromStringAndSize(NULL, length)
        p = write_header(<uint8_t*>PyBytes_AS_STRING(out), ops, n_ops, export_ms, uptime_ms, end - start,
                         length, sequence)
        write_runs(p, buf, stride, idx, run_of, n_runs, start, end, set_headers, pad, boot_ms)
        sequence += <uint64_t>(end - start) if sequence_counts_records else 1
        messages.append(out)
        ends.append(end)
        start = end
    return messages, ends, sequence, False


def gather(const uint8_t[::1] buf, Py_ssize_t stride, order, Py_ssize_t start, Py_ssize_t stop):
    """Records order[start:stop] of buf, packed back to back in that order."""
    cdef const uint32_t[::1] idx = memoryview(order).cast("I")
    cdef Py_ssize_t k
    count_of(buf, stride)
    out = PyBytes_FromStringAndSize(NULL, (stop - start) * stride)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    for k in range(start, stop):
        memcpy(p + (k - start) * stride, &buf[idx[k] * stride], stride)
    return out


# -- sysUptime-relative times (NetFlow v5 and v9) ----------------------------------------------
# v5 and v9 give a record's first/last as milliseconds of exporter uptime, and the header
# gives the uptime and the wall time of export: a collector computes absolute time =
# export time - (uptime - first). Those are 32-bit counters, and a replayed capture may
# jump by years, so each message gets an export time and a boot time under which all its
# records fit, and the records are grouped so that they can. In the common case the boot
# time stays put and the uptime just runs.

cdef enum:
    SAFE_MS_ = 2147483647            # collectors differ on signed/unsigned arithmetic: stay in the safe half
    BOOT_LEAD_MS_ = 60000            # "booted" a minute before the first flow: nfdump reads an uptime of 0 as no time
    MAX_SPAN_MS_ = SAFE_MS_ - 2 * 10 * BOOT_LEAD_MS_     # room for the longest boot lead

cdef int64_t MAX_HEADER_SECONDS_ = 0xFFFFFFFF     # export headers carry 32-bit seconds: the end of the year 2106
SAFE_MS = SAFE_MS_
BOOT_LEAD_MS = BOOT_LEAD_MS_
MAX_SPAN_MS = MAX_SPAN_MS_
MAX_ACTIVE_SECONDS = 24 * 86400      # the longest flow such times can state, in whole days
MAX_HEADER_SECONDS = MAX_HEADER_SECONDS_


cdef inline int64_t floor_div(int64_t a, int64_t b) noexcept nogil:
    """a // b rounded down, as Python's (cdivision: C's rounds towards zero)."""
    cdef int64_t q = a / b
    return q - 1 if (a % b != 0) and ((a < 0) != (b < 0)) else q


cdef inline uint64_t seconds_of(int64_t ms) noexcept nogil:
    """An export header's 32-bit seconds for a time in ms: a time past 2106 (a corrupt or
    shifted capture) is held at the field's end rather than wrapped to 1970."""
    cdef int64_t s = floor_div(ms, 1000)
    return <uint64_t>(0 if s < 0 else (MAX_HEADER_SECONDS_ if s > MAX_HEADER_SECONDS_ else s))


def header_seconds(int64_t ms):
    return seconds_of(ms)


cdef class Uptime:
    """The boot time that a v5/v9 exporter's uptimes count from, moved when a message's
    records would not fit under it."""
    cdef public int64_t boot_ms
    cdef public bint booted
    cdef public int64_t boot_lead_ms

    def __init__(self, int64_t boot_lead_ms=BOOT_LEAD_MS_):
        self.booted = False
        self.boot_ms = 0
        self.boot_lead_ms = min(boot_lead_ms, BOOT_LEAD_MS_ * 10)

    cdef void times(self, int64_t now_ms, int64_t first_ms, int64_t last_ms, int64_t* export_out,
                    int64_t* uptime_out) noexcept:
        """The export time is a whole second (the v9 header has no finer field), rounded up
        so that no record ends after it."""
        cdef int64_t export_ms = now_ms if now_ms - first_ms <= MAX_SPAN_MS_ else last_ms
        export_ms = -floor_div(-export_ms, 1000)
        export_ms = min(export_ms, MAX_HEADER_SECONDS_) * 1000
        if not self.booted or self.boot_ms > first_ms or export_ms - self.boot_ms > SAFE_MS_:
            self.boot_ms = first_ms - self.boot_lead_ms     # first run, or a replayed time jump: "reboot"
            self.booted = True
        export_out[0] = export_ms
        uptime_out[0] = export_ms - self.boot_ms

    def header_times(self, int64_t now_ms, int64_t first_ms, int64_t last_ms):
        """(export_ms, uptime_ms) for a message whose records span first_ms..last_ms."""
        cdef int64_t export_ms = 0, uptime_ms = 0
        self.times(now_ms, first_ms, last_ms, &export_ms, &uptime_ms)
        return export_ms, uptime_ms


cdef inline Py_ssize_t set_length(Py_ssize_t body, bint pad) noexcept nogil:
    """A set's length: its 4-byte header and body, padded to 4 bytes if pad (v9).
    (No negative modulo here: with cdivision, C keeps the sign of the dividend.)"""
    cdef Py_ssize_t length = 4 + body
    if pad and length % 4:
        length += 4 - length % 4
    return length


cdef uint8_t* pack_range(uint8_t* p, const uint8_t[::1] buf, Py_ssize_t stride, const uint32_t[::1] idx, Py_ssize_t lo,
                         Py_ssize_t hi, const Op* ops, Py_ssize_t n_ops, int64_t boot_ms) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        p = pack_record(p, <const uint8_t*>record_at(buf, stride, idx[i]), ops, n_ops, boot_ms)
    return p


cdef uint8_t* pack_record(uint8_t* p, const uint8_t* r, const Op* ops, Py_ssize_t n_ops,
                          int64_t boot_ms) noexcept nogil:
    cdef Py_ssize_t k
    cdef const Op* op
    cdef uint64_t v
    for k in range(n_ops):
        op = &ops[k]
        if op.encoding == OP_UNSIGNED:
            p = put(p, load(r + op.offset, op.width), op.length)
        elif op.encoding == OP_BYTES:
            memcpy(p, r + op.offset, op.length)
            p += op.length
        elif op.encoding == OP_ZERO:
            memset(p, 0, op.length)
            p += op.length
        elif op.encoding == OP_MILLISECONDS:
            p = put(p, <uint64_t>ms(load_time(r + op.offset)), op.length)
        elif op.encoding == OP_UPTIME_MS:
            p = put(p, <uint64_t>(ms(load_time(r + op.offset)) - boot_ms), op.length)
        elif op.encoding == OP_END_REASON:
            v = r[op.offset]            # forced and immediate are ours: IPFIX's forcedEnd, activeTimeout
            p = put(p, END_EOF if v == END_FORCED else END_ACTIVE if v == END_IMMEDIATE else v, op.length)
        elif op.encoding == OP_VARLEN:
            p = put_bounded(p, r + op.offset, op.width, op.length)
    return p


cdef inline uint8_t* put_bounded(uint8_t* p, const uint8_t* member, Py_ssize_t width, Py_ssize_t length) noexcept nogil:
    """A bounded member's bytes: RFC 7011 section 7's variable-length form for an element of
    VARIABLE length (a length octet, or 255 and two; then the bytes), else `length` bytes
    zero-padded (v9)."""
    cdef Py_ssize_t n = bounded_length(member, width)
    if length == VARIABLE:
        if n < 255:
            p[0] = <uint8_t>n
            p += 1
        else:
            p[0] = 255
            p = put(p + 1, n, 2)
        memcpy(p, member + LENGTH_BYTES, n)
        return p + n
    n = min(n, length)
    memcpy(p, member + LENGTH_BYTES, n)
    memset(p + n, 0, length - n)
    return p + length


def set_records(const uint8_t[::1] body, const uint8_t[::1] program):
    """How many records of this program's template a data set's body holds (its records'
    sizes vary: IPFIX's variable-length elements); set padding shorter than a record is not one."""
    cdef const Op* ops = <const Op*>&program[0]
    cdef Py_ssize_t n_ops = program.shape[0] // sizeof(Op), k, pos = 0, end = body.shape[0], count = 0, at
    cdef Py_ssize_t least = 0
    for k in range(n_ops):
        least += 1 if ops[k].encoding == OP_VARLEN and ops[k].length == VARIABLE else ops[k].length
    while least and pos + least <= end:
        at = pos
        for k in range(n_ops):
            if ops[k].encoding == OP_VARLEN and ops[k].length == VARIABLE and at < end:
                if body[at] < 255:
                    at += 1 + body[at]
                elif at + 3 <= end:
                    at += 3 + (body[at + 1] << 8 | body[at + 2])
                else:
                    at = end + 1
            else:
                at += ops[k].length
        if at > end:
            break
        count += 1
        pos = at
    return count


def retime(const uint8_t[::1] buf, Py_ssize_t stride, int64_t t0_us, int64_t new_t0_us, double speed):
    """Records with their first/last times moved from a time line starting at t0_us to one
    starting at new_t0_us and running `speed` times as fast (a replay dated now)."""
    cdef Py_ssize_t n = count_of(buf, stride), i
    out = bytearray(buf)
    cdef FlowRecord* r
    cdef uint8_t* base = <uint8_t*>(<char*>out)
    for i in range(n):
        r = <FlowRecord*>(base + i * stride)
        r.first_us = new_t0_us + <int64_t>((r.first_us - t0_us) / speed)
        r.last_us = new_t0_us + <int64_t>((r.last_us - t0_us) / speed)
    return bytes(out)


def whole_records(const uint8_t[::1] buf, Py_ssize_t stride):
    """Records of `stride` bytes as whole records (RECORD_SIZE): a classic record's other
    members are 0. (For dump-flows, which joins the records of several monitors.)"""
    cdef Py_ssize_t n = count_of(buf, stride), i
    if stride == sizeof(FlowRecord):
        return bytes(buf)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n * sizeof(FlowRecord))
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    memset(p, 0, n * sizeof(FlowRecord))
    for i in range(n):
        memcpy(p + i * sizeof(FlowRecord), &buf[0] + i * stride, stride)
    return out


# -- JSON lines (pyprobe -r --json, pyprobe generate --expect) ------------------------------

cdef extern from "arpa/inet.h" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)

cdef extern from "stdio.h" nogil:
    int snprintf(char* s, size_t n, const char* fmt, ...)

cdef enum:
    SHOW_INT = 1
    SHOW_ADDRESS = 2
    SHOW_MAC = 3
    SHOW_SECONDS = 4
    SHOW_END_REASON = 5
    SHOW_TEXT = 6         # a bounded member's bytes as UTF-8 (an invalid sequence: U+FFFD), a JSON string
    SHOW_HEX = 7          # a bounded member's bytes as a string of hex digits
    AF_INET = 2
    AF_INET6 = 10


def json_lines(const uint8_t[::1] buf, Py_ssize_t stride, columns, int ipver_offset, end_reason_names):
    """Records as JSON lines, exactly as json.dumps(FlowRecord._asdict()) writes them:
    columns are (key, show, member offset, member width) from the field table
    (pyprobe/records.py), end_reason_names the names by code (others: "active_now")."""
    cdef Py_ssize_t n = count_of(buf, stride), i, c
    cdef Py_ssize_t ncols = len(columns)
    cdef int show, offset, width, ipver
    cdef const uint8_t* r
    cdef char text[64]
    cdef int64_t us
    cdef int length
    names = {code: ('"' + name + '"').encode() for code, name in end_reason_names.items()}
    keys = [(('{"' if c == 0 else ', "') + key + '": ').encode() for c, (key, _, _, _) in enumerate(columns)]
    shows = [s for _, s, _, _ in columns]
    offsets = [o for _, _, o, _ in columns]
    widths = [w for _, _, _, w in columns]
    if any(o + w > stride for o, w in zip(offsets, widths)):
        raise ValueError(f"a column is past the end of a record of {stride} bytes")
    out = bytearray()
    for i in range(n):
        r = <const uint8_t*>record_at(buf, stride, i)
        ipver = r[ipver_offset]
        for c in range(ncols):
            out += keys[c]
            show, offset, width = shows[c], offsets[c], widths[c]
            if show == SHOW_INT:
                length = snprintf(text, 64, "%llu", <unsigned long long>load(r + offset, width))
            elif show == SHOW_ADDRESS:
                text[0] = 34
                inet_ntop(AF_INET if ipver == 4 else AF_INET6, r + offset, text + 1, 62)
                length = 1
                while text[length]:
                    length += 1
                text[length] = 34
                length += 1
            elif show == SHOW_MAC:
                length = snprintf(text, 64, "\"%02x:%02x:%02x:%02x:%02x:%02x\"", r[offset], r[offset + 1],
                                  r[offset + 2], r[offset + 3], r[offset + 4], r[offset + 5])
            elif show == SHOW_SECONDS:
                us = load_time(r + offset)
                if us != 0 and -100 < us < 100:        # repr writes these with an exponent (1e-06)
                    out += repr(us / 1e6).encode()
                    continue
                length = seconds_text(text, us)
            elif show == SHOW_TEXT:
                out += encode_basestring_ascii(PyUnicode_DecodeUTF8(<const char*>r + offset + LENGTH_BYTES,
                                                                    bounded_length(r + offset, width),
                                                                    "replace")).encode()
                continue
            elif show == SHOW_HEX:
                out += b'"' + PyBytes_FromStringAndSize(<const char*>r + offset + LENGTH_BYTES,
                                                        bounded_length(r + offset, width)).hex().encode() + b'"'
                continue
            else:
                code = r[offset]
                out += names.get(code, b'"active_now"')
                continue
            out += text[:length]
        out += b"}\n" if ncols else b"{}\n"      # (a record of fields JSON does not show)
    return bytes(out)


cdef int seconds_text(char* text, int64_t us) noexcept nogil:
    """Microseconds as Python's repr(us / 1e6): the six decimals without trailing zeros
    (at least one), which is the shortest text of that double for any epoch time."""
    cdef int64_t whole, frac
    cdef int length, k
    cdef const char* sign = ""
    if us < 0:
        sign = "-"
        us = -us
    whole = us // 1000000
    frac = us % 1000000
    length = snprintf(text, 64, "%s%lld.%06lld", sign, <long long>whole, <long long>frac)
    k = length
    while k > 0 and text[k - 1] == 48 and text[k - 2] != 46:      # '0', not after '.'
        k -= 1
    return k
