"""What every export version shares: record layouts made from the field table,
the one loop that fills datagrams, and the declaration of what a version can carry.

An encoder turns packed meter records into datagrams (bytes) and keeps its own
state (sequence numbers, template timers, uptime base); it opens no socket, so
tests read its bytes directly. Each version (v5.py, v9.py, ipfix.py) is a
subclass that declares its message header as data (header_fields) and says what
goes before the records; ext/_encode.pyx writes a run of data messages whole.
"""

import struct
from collections import namedtuple

from .. import _encode
from ..fields import BY_NAME, BYTES, LENGTH_BYTES, MEMBER, RECORD_SIZE, TOTAL_COUNTERS, UNSIGNED, VARIABLE, VARLEN, ZERO

SET_HEADER = struct.Struct(">HH")
OP = struct.Struct("=HHHH")          # ext/_encode.pyx's Op: encoding, member width, wire length, offset
assert OP.size == _encode.OP_SIZE

# What a message header field holds (ext/_encode.pyx's header ops): a header is declared as
# (source, length) per field, (CONSTANT, length, value) for a fixed value, in wire order.
HEADER_OP = struct.Struct("=HHI")
assert HEADER_OP.size == _encode.HEADER_OP_SIZE
CONSTANT = _encode.HEADER_CONSTANT           # the version number, source ID, engine, sampling
RECORDS = _encode.HEADER_RECORDS             # records in the message, as the version counts them
LENGTH = _encode.HEADER_LENGTH               # bytes in the message
UPTIME_MS = _encode.HEADER_UPTIME_MS         # export time less boot time (v5, v9)
EXPORT_SECONDS = _encode.HEADER_SECONDS      # export time, whole seconds
EXPORT_NANOSECONDS = _encode.HEADER_NANOSECONDS
SEQUENCE = _encode.HEADER_SEQUENCE           # the sequence number before this message


def header_program(fields):
    """A header declaration as the compiled writer's ops."""
    return b"".join(HEADER_OP.pack(field[0], field[1], field[2] if len(field) > 2 else 0) for field in fields)
_FORMAT_BY_LENGTH = {1: "B", 2: "H", 4: "I", 8: "Q"}

# Record classes (ext/_encode.pyx sorts records into them): IPv4 or IPv6, ICMP or not.
CLASSES = ((4, False), (4, True), (6, False), (6, True))
assert len(CLASSES) == _encode.CLASSES


# What an export version can carry. Every check of a version reads this.
#   ipv6                IPv6 flows (v5: counted and not sent)
#   counter_bits        packet and octet counters (32: flows end before they wrap)
#   uptime              record times relative to the exporter's uptime (32-bit ms; ext/_encode.pyx, Uptime)
#   max_active_seconds  longest flow its times can state
#   templates           v9/IPFIX templates, resent on request
#   options             options records (sampling, exporter statistics)
#   tcp                 may go over TCP (RFC 7011 section 10.4)
#   withdrawal          templates can be withdrawn (RFC 7011 section 8.1)
#   enterprise_fields   enterprise-specific information elements (RFC 7011 3.2)
#   flexible            records of any definition (pyprobe/definitions.py), not a fixed format's
Capabilities = namedtuple("Capabilities", "name ipv6 counter_bits uptime max_active_seconds templates options tcp "
                                          "withdrawal enterprise_fields flexible", defaults=(False, False, True))


class Filler:
    """Bytes a fixed format has and pyprobe leaves zero (v5's next hop, AS numbers, pads)."""

    __slots__ = ("length",)

    def __init__(self, length):
        self.length = length


class Layout:
    """How records of one class are written: a v9/IPFIX data template, or v5's fixed record.

    `items` are field names from pyprobe/fields.py, (name, length) to give a fixed format's
    length, or Filler(length). The compiled packer runs `program`, one op per item, over
    records of `stride` bytes: in classic records (fields.CLASSIC_SIZE) a member past their
    end is 0, so its op writes zeros. table: (fields by name, members by name), the field
    table's unless records carry members beyond it (appended to its record).

    A bounded member (text:N, octets:N) goes out in IPFIX's variable-length form, so the
    records' sizes vary (`variable`; record_size is then the largest): the packer measures
    each one as it fills datagrams. In v9 it goes in its N bytes, zero-padded."""

    def __init__(self, template_id, items, dialect, ipver, stride=RECORD_SIZE, table=(BY_NAME, MEMBER)):
        by_name, members = table
        self.id = template_id
        self.stride = stride
        self.elements = []           # (Element or None for fillers) in wire order
        self.record_size = 0
        self.variable = False        # the records' sizes vary (IPFIX's variable-length elements)
        ops = []
        for item in items:
            if isinstance(item, Filler):
                self.elements.append(None)
                ops.append(OP.pack(ZERO, 0, item.length, 0))
                self.record_size += item.length
                continue
            name, length = item if isinstance(item, tuple) else (item, None)
            element = by_name[name].element(dialect, ipver)
            if element is None:
                raise ValueError(f"{dialect} cannot carry the field {name}")
            member = members[by_name[name].source]
            if element.encoding == VARLEN and element.length == VARIABLE and dialect != "ipfix":
                length = member.size - LENGTH_BYTES if length is None else length     # (v9: fixed, padded)
            if length is not None:
                element = element._replace(length=length)
            variable = element.encoding == VARLEN and element.length == VARIABLE
            room = member.size - (LENGTH_BYTES if element.encoding == VARLEN else 0)
            if element.encoding in (BYTES, VARLEN) and not variable and element.length > room:
                raise ValueError(f"{name}: {element.length} bytes on the wire, the record has {room}")
            width = member.size if element.encoding in (UNSIGNED, VARLEN) else 0
            if member.offset >= stride:          # (an empty value: a variable length of 0)
                ops.append(OP.pack(ZERO, 0, 1 if variable else element.length, 0))
                self.record_size += 1 if variable else element.length
            else:
                ops.append(OP.pack(element.encoding, width, element.length, member.offset))
                self.record_size += 3 + member.size - LENGTH_BYTES if variable else element.length
                self.variable |= variable
            self.elements.append(element)
        self.field_names = [item if isinstance(item, str) else item[0] for item in items
                            if not isinstance(item, Filler)]
        self.program = b"".join(ops)
        self._template_record = None

    def template_record(self):
        """Template ID, field count, then (type, length) pairs: the same in v9 and IPFIX; an
        enterprise-specific element (IPFIX) has the enterprise bit and its number after it."""
        if self._template_record is None:
            self._template_record = struct.pack(">HH", self.id, len(self.elements)) + b"".join(
                struct.pack(">HHI", e.id | 0x8000, e.length, e.pen) if e.pen else struct.pack(">HH", e.id, e.length)
                for e in self.elements)
        return self._template_record


def data_templates(dialect, fields, icmp_fields, ids, record=None, totals=False, stride=RECORD_SIZE,
                   table=(BY_NAME, MEMBER)):
    """One Layout per record class: `fields` for port-carrying flows, `icmp_fields` for
    ICMP/ICMPv6 flows; ids maps (ipver, icmp) -> template id. A record definition's own
    fields instead, for every class of the IP versions it meters (None for the others).
    totals: the counters go out as running totals (TOTAL_COUNTERS), a permanent cache's;
    stride, table: of the packed records (Layout)."""
    def named(names):
        return [TOTAL_COUNTERS.get(name, name) for name in names] if totals else names
    if record is not None:                # (without the fields this version has no element for: v9's biflows)
        return [Layout(ids[ipver, icmp], [name for name in named(record.fields)
                                          if table[0][name].element(dialect, ipver) is not None], dialect, ipver,
                       stride, table)
                if record.ipver in (0, ipver) else None
                for ipver, icmp in CLASSES]
    return [Layout(ids[ipver, icmp], named(icmp_fields if icmp else fields), dialect, ipver, stride, table)
            for ipver, icmp in CLASSES]


class OptionsTemplate:
    """An options template: scope fields, then option fields, as (element id, length), or
    (element id, length, TEXT) for a string of that fixed length (UTF-8, zero-padded)."""

    def __init__(self, template_id, scope, options):
        self.id = template_id
        self.scope = [field[:2] for field in scope]
        self.options = [field[:2] for field in options]
        self.text = [len(field) > 2 for field in scope + options]
        self.struct = struct.Struct(">" + "".join(f"{field[1]}s" if len(field) > 2 else _FORMAT_BY_LENGTH[field[1]]
                                                  for field in scope + options))
        self.record_size = self.struct.size

    def pack(self, values):
        return self.struct.pack(*(_fixed_text(v, length) if text else v
                                  for v, text, (_, length) in zip(values, self.text, self.scope + self.options)))

    def pairs(self):
        return [n for ie, length in self.scope + self.options for n in (ie, length)]

    def data_sets(self, rows, max_size, pad):
        """Data sets of these rows, each small enough for one datagram of max_size with
        any header: [(set bytes, records in it)]."""
        per_set = max(1, (max_size - MAX_HEADER - SET_HEADER.size - 3) // self.record_size)
        return [(set_bytes(self.id, b"".join(self.pack(row) for row in rows[i:i + per_set]), pad=pad),
                 len(rows[i:i + per_set]))
                for i in range(0, len(rows), per_set)]


TEXT = "text"
MAX_HEADER = 20                   # the largest message header (v9's)


def _fixed_text(value, length):
    """UTF-8 cut to whole characters within length (struct pads it with zeros)."""
    return value.encode(errors="replace")[:length].decode("utf-8", "ignore").encode()


# What the interface options records carry: (ifIndex, name, description) per interface.
INTERFACE_NAME_BYTES = 16         # IFNAMSIZ
INTERFACE_DESCRIPTION_BYTES = 64


def set_bytes(set_id, body, pad):
    if pad:
        body += b"\0" * (-len(body) % 4)
    return SET_HEADER.pack(set_id, SET_HEADER.size + len(body)) + body


def record_span(order, start, end):
    """Which records a datagram holds: their indices into the packed buffer, order[start:end]."""
    return memoryview(order)[4 * start:4 * end].cast("I")


class RecordBatch:
    """Records order[start:end] of a packed buffer (records of `stride` bytes), runs being
    each class's part of order."""

    def __init__(self, buf, stride, order, start, end, runs):
        self.buf, self.stride, self.order, self.start, self.end, self.runs = buf, stride, order, start, end, runs

    def __len__(self):
        return self.end - self.start

    def packed(self, boot_ms=0, sets=True, pad=False):
        """The records written by their classes' layouts in one compiled call: as one set per
        class present (v9, IPFIX; padded to 4 bytes if pad), or back to back (v5)."""
        return _encode.pack_runs(self.buf, self.stride, self.order, self.start, self.end, self.runs, sets, pad, boot_ms)


class Encoder:
    """The datagram-filling loop. A subclass sets the class attributes and implements
    message(); template-carrying versions (TemplateEncoder) also template_sets()."""

    VERSION = None
    CAPABILITIES = None
    HEADER_SIZE = 0
    SETS = True                # records go in sets (v9, IPFIX), or back to back (v5)
    PAD = False                # sets padded to 4 bytes (v9)
    SET_OVERHEAD = 0           # bytes a set adds around its records (header, worst-case padding)
    MAX_SPAN_MS = 2**62        # how far apart the times of records sharing a datagram may be
    MAX_RECORDS = -1           # records per datagram (-1: as many as fit)
    SEQUENCE_COUNTS_RECORDS = True   # the sequence number counts records (v5, IPFIX), or messages (v9)

    def __init__(self, layouts, max_size, sampling_interval=1, sampling_random=False):
        self.layouts = layouts       # per record class; None: this version cannot carry that class
        self.max_size = max_size
        self.sampling_interval = sampling_interval
        self.sampling_random = sampling_random
        self.messages_sent = 0
        self.records_sent = 0
        self.records_not_carried = 0
        self.template_sends = 0
        self.since_templates = 0     # datagrams since the templates last went out
        self.carried = [layout is not None for layout in layouts]
        self.interfaces = []         # [(ifIndex, name, description)]: options records (v9, IPFIX)
        # each class's bytes per record, or the program that measures records whose sizes vary
        self.sizes = [0 if not layout else layout.program if layout.variable else layout.record_size
                      for layout in layouts]
        self.stride = next(layout.stride for layout in layouts if layout)     # of the records encoded
        self.sequence = 0
        self.held, self.held_from = b"", ()      # what encode(hold=True) kept back
        self.uptime = None           # v5/v9: the boot time record times count from (_encode.Uptime)
        self._header = None

    @property
    def header(self):
        """This encoder's header program (its fields are fixed for its life)."""
        if self._header is None:
            fields = self.header_fields()
            assert sum(field[1] for field in fields) == self.HEADER_SIZE
            self._header = header_program(fields)
        return self._header

    def header_fields(self):
        raise NotImplementedError

    def encode(self, buf, now_ms, ignored_packets=0, spans=None, hold=False):
        """Packed meter records -> datagrams, templates included when due.
        With no records, a datagram is made only if templates are due. If spans is a
        list, it gets one (record indices into buf, as a uint32 array, of each datagram).
        hold: the datagram of records alone that the records run out in is not made; its
        records are left in self.held (packed, their indices into buf in self.held_from)
        to go with later ones, so datagrams leave full."""
        self.held, self.held_from = b"", ()
        order, counts = _encode.order_by_class(buf, self.stride, self.carried)
        runs, pos = [], 0
        for layout, count in zip(self.layouts, counts):
            if layout is not None:
                runs.append((layout.id, pos, pos + count, layout.program, layout.record_size))
                pos += count
        self.records_not_carried += len(order) // 4 - pos
        datagrams, start, pending, templates_only = [], 0, [], False
        while True:
            # (after a datagram of templates alone the records go next: were the templates due
            # again at once, as with --template-refresh 1 in a small datagram, none would go)
            if not pending and not (templates_only and start < pos):
                if (hold and start < pos and not self.templates_wanted and self.templates_due(now_ms)
                        and self._fit_one(buf, order, start, pos)):
                    self._hold(buf, order, start, pos)      # (templates go with a datagram's worth)
                    return datagrams
                side, pending = self.control_records(now_ms, ignored_packets)
                datagrams += side
                if spans is not None:
                    spans += [record_span(order, 0, 0)] * len(side)
            if not pending:
                if start >= pos:
                    return datagrams
                start = self._data_datagrams(buf, order, start, pos, runs, now_ms, datagrams, spans, hold)
                if self.held_from:
                    return datagrams
                templates_only = False
                continue
            control, control_records, pending = self._control_that_fits(pending)
            # Records ride with the last of the control sets only: they follow the templates.
            budget = self.max_size - self.HEADER_SIZE - len(control) if not pending else 0
            end, first_ms, last_ms = _encode.take(buf, self.stride, order, start, pos, budget, self.sizes,
                                                  self.SET_OVERHEAD, self.MAX_SPAN_MS, self.MAX_RECORDS)
            span = (first_ms, last_ms) if end > start else (now_ms, now_ms)
            datagrams.append(self.message(now_ms, control, control_records,
                                          RecordBatch(buf, self.stride, order, start, end, runs), span))
            self._sent(1, end - start)
            if spans is not None:
                spans.append(record_span(order, start, end))
            templates_only = end == start
            start = end
            if start >= pos and not pending:
                return datagrams

    def _data_datagrams(self, buf, order, start, pos, runs, now_ms, datagrams, spans, hold):
        """Datagrams of records alone, until the records run out or templates are due again,
        written in one compiled call. Returns where the records taken end; hold: the records
        of the last datagram are kept back (self.held) instead."""
        messages, ends, self.sequence, held = _encode.data_messages(
            buf, self.stride, order, start, pos, runs, self.max_size, self.sizes, self.SET_OVERHEAD, self.MAX_SPAN_MS,
            self.MAX_RECORDS, self.datagrams_before_templates(), self.SETS, self.PAD, self.header,
            self.uptime, now_ms, self.sequence, self.SEQUENCE_COUNTS_RECORDS, hold)
        end = ends[-1] if ends else start
        if held:
            self._hold(buf, order, end, pos)
        elif not messages:
            raise ValueError(f"a datagram of {self.max_size} bytes cannot hold one record")
        datagrams += messages
        self._sent(len(messages), end - start)
        if spans is not None:
            for each in ends:
                spans.append(record_span(order, start, each))
                start = each
        return end

    def _fit_one(self, buf, order, start, pos):
        """Records order[start:pos] fit one datagram of records alone."""
        end, _, _ = _encode.take(buf, self.stride, order, start, pos, self.max_size - self.HEADER_SIZE, self.sizes,
                                 self.SET_OVERHEAD, self.MAX_SPAN_MS, self.MAX_RECORDS)
        return end == pos

    def _hold(self, buf, order, start, pos):
        self.held = _encode.gather(buf, self.stride, order, start, pos)
        self.held_from = record_span(order, start, pos)

    templates_wanted = False     # asked for (SIGUSR1), not due by count or time; never for v5

    def templates_due(self, now_ms):
        """Templates go in the next datagram (never, for v5)."""
        return False

    def _sent(self, messages, records):
        """Count datagrams sent and the records in them."""
        self.messages_sent += messages
        self.since_templates += messages
        self.records_sent += records

    def message(self, now_ms, control, control_records, batch, span):
        """One message: control sets (templates, options) and records."""
        export_ms, uptime_ms = self.uptime.header_times(now_ms, *span) if self.uptime else (now_ms, 0)
        body = control + batch.packed(self.uptime.boot_ms if self.uptime else 0, self.SETS, self.PAD)
        return self.framed(body, control_records + len(batch), export_ms, uptime_ms)

    def framed(self, body, records, export_ms, uptime_ms=0, header=None, sequence=None):
        """body after a header (this encoder's, or the header program given, numbered from
        sequence; else the encoder's sequence number moves on)."""
        own = header is None
        message = _encode.message_header(self.header if own else header, export_ms, uptime_ms, records,
                                         self.HEADER_SIZE + len(body), self.sequence if own else sequence) + body
        if own:
            self.sequence += records if self.SEQUENCE_COUNTS_RECORDS else 1
        return message

    def datagrams_before_templates(self):
        """How many datagrams may go before templates are due again, at this flow clock
        (-1: no limit; v5 has no templates)."""
        return -1

    def _control_that_fits(self, chunks):
        """As many control sets (templates, options) as fit one datagram, at least one:
        (their bytes, their record count, the sets left for the next datagram)."""
        if not chunks:
            return b"", 0, chunks
        room = self.max_size - self.HEADER_SIZE
        taken, size = 0, 0
        while taken < len(chunks) and (taken == 0 or size + len(chunks[taken][0]) <= room):
            size += len(chunks[taken][0])
            taken += 1
        if taken and size > room:
            raise ValueError(f"a datagram of {self.max_size} bytes cannot hold one template")
        return (b"".join(c for c, _ in chunks[:taken]), sum(n for _, n in chunks[:taken]), chunks[taken:])

    def control_records(self, now_ms, ignored_packets):
        """(datagrams to send first, the control sets due now): the sets are (bytes, how many
        records they hold), each a whole set, to go before the data records."""
        return [], []

    def records_per_datagram(self):
        """Records that always fit one datagram with the templates that go before them:
        round robin deals these out."""
        chunks = self.template_sets(0, 0, preview=True)[1]
        control = sum(len(c) for c, _ in chunks)
        largest = max(layout.record_size for layout in self.layouts if layout)
        fit = (self.max_size - self.HEADER_SIZE - control - len(CLASSES) * self.SET_OVERHEAD) // largest
        return max(1, fit if self.MAX_RECORDS < 0 else min(fit, self.MAX_RECORDS))

    def template_sets(self, now_ms, ignored_packets, preview=False):
        """(datagrams to send first, control sets) when templates are due; none for v5."""
        return [], []

    def skip_sequence(self):
        """Leave a gap in the sequence numbers: the next datagram's is one more than due
        (pyprobe generate --fault seq-gap)."""
        self.sequence += 1

    def request_templates(self):
        """SIGUSR1, send-template: templates in the next datagram (nothing for v5)."""

    def stream_start(self, now_ms, ignored_packets):
        """The datagrams a new TCP connection starts with (its templates)."""
        return []

    def renumber(self, message, counters):
        """Number a message for its place in a new stream (only IPFIX goes over TCP)."""
        raise NotImplementedError(f"{self.CAPABILITIES.name} does not go over TCP")

    def statistics(self):
        stats = {"records": self.records_sent, "template_sends": self.template_sends}
        if not self.CAPABILITIES.ipv6:
            stats["ipv6_not_sent"] = self.records_not_carried
        return stats


class TemplateEncoder(Encoder):
    """v9 and IPFIX: templates go out at start, every refresh_packets datagrams, every
    refresh_ms of flow clock and on request. The subclass gives template_sets()."""

    def __init__(self, layouts, max_size, domain_id=1, refresh_packets=20, refresh_ms=600_000,
                 sampling_interval=1, sampling_random=False, templates_wanted=True):
        super().__init__(layouts, max_size, sampling_interval, sampling_random)
        self.domain_id = domain_id       # v9 source ID / IPFIX observation domain
        self.refresh_packets = refresh_packets
        self.refresh_ms = refresh_ms
        self.templates_ms = None
        self.templates_wanted = templates_wanted

    def templates_due(self, now_ms):
        return (self.templates_wanted
                or (self.refresh_packets and self.since_templates >= self.refresh_packets)
                or (self.refresh_ms and now_ms - self.templates_ms >= self.refresh_ms))

    def control_records(self, now_ms, ignored_packets):
        if not self.templates_due(now_ms):
            return [], []
        self.templates_wanted = False
        self.since_templates = 0
        self.templates_ms = now_ms
        self.template_sends += 1
        return self.template_sets(now_ms, ignored_packets)

    def request_templates(self):
        self.templates_wanted = True

    def datagrams_before_templates(self):
        # (called just after control_records() found them not due: only the count can make them due)
        return max(1, self.refresh_packets - self.since_templates) if self.refresh_packets else -1

    def control_message(self, now_ms, sets, records, data_records):
        """A datagram of these sets alone (`records` records, `data_records` of them data),
        numbered in this exporter's stream: for template changes and test faults."""
        raise NotImplementedError

    def stream_start(self, now_ms, ignored_packets):
        self.request_templates()
        return self.encode(b"", now_ms, ignored_packets)
