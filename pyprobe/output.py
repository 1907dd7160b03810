"""What a person reads: flow records as a table or JSON lines (when no collector is
given, or with --json), and the progress line of a long run."""

import contextlib
import os
import sys
import time
from collections import namedtuple

from .errors import OutputError
from .fields import BY_NAME, END_REASONS, ICMP_PROTOCOLS, RECORD_SIZE, bounded
from .records import shown_values, to_json_lines, unpack

@contextlib.contextmanager
def standard_output():
    """Writing to standard output: a failure (a full disk) is OutputError's one line; a reader
    that went away (BrokenPipeError) is not a failure, and ends the run quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write the records to standard output: {e.strerror or e}") from None


def discard_standard_output():
    """Standard output that failed: what is still buffered goes nowhere, not again at exit
    (the interpreter's last flush would add a second complaint)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


PROTOCOL_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH",
                  58: "ICMP6", 89: "OSPF", 103: "PIM", 132: "SCTP"}
TCP_FLAG_LETTERS = "CEUAPRSF"     # CWR ECE URG ACK PSH RST SYN FIN, high bit first as nfdump shows them


class Column(namedtuple("Column", "heading align least most")):
    """A column of the table: its heading, how its texts align ('<' or '>'), the width it has
    at least (what the usual values need: the table keeps its shape) and the one it widens
    to when a text needs more (what the longest values need: it widens once)."""

    __slots__ = ()

    @property
    def width(self):
        return max(self.least, len(self.heading))


def _heading(name, suffix=""):
    return BY_NAME[name].column + suffix


IPV6_TEXT = len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
COUNT_TEXT = len(str(2 ** 64 - 1))
# nfdump's -o line: its columns fit IPv4 addresses and a capture's usual counts at least.
CLASSIC_COLUMNS = (Column(_heading("first_us"), "<", 23, 23),
                   Column("Duration", ">", 9, len(f"{2 ** 32:.3f}")),
                   Column(_heading("proto"), "<", 5, 5),
                   Column(_heading("src", ":Port"), ">", 21, len("[]:65535") + IPV6_TEXT),
                   Column(_heading("dst", ":Port"), "<", 21, len("[]:255.255") + IPV6_TEXT),     # (ICMP type.code)
                   Column(_heading("tcp_flags"), "<", 8, 8),
                   Column(_heading("packets"), ">", 8, COUNT_TEXT),
                   Column(_heading("octets"), ">", 10, COUNT_TEXT),
                   Column(_heading("end_reason"), "<", 0, 0))
CLASSIC_GAPS = (" ", " ", " ", " -> ", " ", " ", " ", "  ")


def own_column(field):
    """A record definition's column of this field (pyprobe/fields.py): a string's or octet
    array's is left-aligned and as wide as its longest value, up to the member's capacity."""
    if field.show in ("text", "hex"):
        capacity = bounded(field.ctype)[1]
        return Column(field.json, "<", 8, capacity * (2 if field.show == "hex" else 1))
    least = {"address": 15, "mac": 17, "seconds": 23}.get(field.show, 6)
    most = {"address": IPV6_TEXT, "end_reason": max(map(len, END_REASONS.values())),
            "mac": 17, "seconds": 23}.get(field.show, COUNT_TEXT)
    return Column(field.json, ">", least, most)


def printable(text):
    """A string field's text on one line of the table: what does not print (a newline, a
    control character off the wire) as '?'."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def tcp_flags_text(flags):
    return "".join(letter if flags >> (7 - bit) & 1 else "." for bit, letter in enumerate(TCP_FLAG_LETTERS))


def endpoint(address, port, ipver):
    return f"[{address}]:{port}" if ipver == 6 else f"{address}:{port}"


def format_time(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}"


def dport_text(record):
    """ICMP type.code the way nfdump shows it; the port otherwise."""
    if record.proto in ICMP_PROTOCOLS:
        return f"{record.dport >> 8}.{record.dport & 0xff}"
    return str(record.dport)


def own_fields(record):
    """The fields a record definition shows, or None for a predefined record (the classic output:
    the table's nfdump-style line, JSON's classic keys)."""
    return None if record is None or record.predefined else record.shown_fields()


class TableWriter:
    """nfdump -o line style, times in UTC; a record definition of the user's gets a column per
    field instead. A column has the width its usual values need (IPv4 addresses) until rows
    need more (an IPv6 address, a capture's days-long duration): then it widens, for good,
    and the heading is printed again above them, so each row lines up with the heading above
    it. The heading goes out with the first rows, sized to them (or alone, on a write of no
    records). stride: of the packed records (pyprobe/records.py)."""

    def __init__(self, stream, record=None, monitor=None, stride=RECORD_SIZE):
        self.stream = stream
        self.stride = stride
        self.fields = own_fields(record)
        if self.fields is None:
            self.columns, self.gaps = CLASSIC_COLUMNS, CLASSIC_GAPS
        else:
            self.columns = tuple(map(own_column, self.fields))
            self.gaps = ("  ",) * (len(self.fields) - 1)
            self.shows = [{"seconds": format_time, "text": printable}.get(f.show, str) for f in self.fields]
        self.widths = [c.width for c in self.columns]
        if self.columns and self.columns[-1].align == "<":
            self.widths.pop()                    # (a left-aligned last column: as long as its text)
        self.monitor = monitor                   # (several monitors: which one's the row is)
        self.row_format = None                   # for the widths of the last heading printed

    def write(self, packed):
        if not self.columns:                     # (a record definition that shows no field)
            return
        texts = self._classic_texts(packed) if self.fields is None else self._own_texts(packed)
        widths = list(map(_widened, self.widths, self.columns, texts))
        heading = ""
        if self.row_format is None or widths != self.widths:
            self.widths = widths
            blank = [" " * len(gap) for gap in self.gaps]          # (no arrow between the headings)
            heading = self._format(blank, "Monitor").format(*(c.heading for c in self.columns))
            self.row_format = self._format(self.gaps, self.monitor)
        self.stream.write(heading + "".join(map(self.row_format.format, *texts)))

    def _format(self, gaps, monitor):
        """A line's format string for the current widths, with these gaps between the columns
        and, with several monitors, this first column (a monitor's name, or its heading)."""
        cells = [f"{{:{c.align}{width}}}" for c, width in zip(self.columns, self.widths)]
        cells += ["{}"] * (len(self.columns) - len(cells))
        prefix = ""
        if self.monitor:
            prefix = f"{monitor:<{max(12, len(self.monitor))}} ".replace("{", "{{").replace("}", "}}")
        return prefix + "".join(cell + gap for cell, gap in zip(cells, [*gaps, "\n"]))

    def _own_texts(self, packed):
        """A record definition's columns of these records, each a list of texts."""
        rows = shown_values(packed, self.fields, self.stride)
        if not rows:
            return [[] for _ in self.fields]
        return [list(map(show, column)) for show, column in zip(self.shows, zip(*rows))]

    def _classic_texts(self, packed):
        records = unpack(packed, self.stride)
        return [[format_time(r.start) for r in records],
                [f"{r.end - r.start:.3f}" for r in records],
                [PROTOCOL_NAMES.get(r.proto, str(r.proto)) for r in records],
                [endpoint(r.src, r.sport, r.ipver) for r in records],
                [endpoint(r.dst, dport_text(r), r.ipver) for r in records],
                [tcp_flags_text(r.tcp_flags) if r.proto == 6 else "" for r in records],
                [str(r.packets) for r in records],
                [str(r.octets) for r in records],
                [r.end_reason for r in records]]


def _widened(width, column, texts):
    """A column's width that holds these texts too: as it was, or at once what its longest
    values need (so a table widens once, not an address at a time)."""
    widest = max(map(len, texts), default=0)
    return width if widest <= width else max(column.most, widest)


class JsonWriter:
    """One JSON object per flow record, one per line, written in compiled code; a record
    definition's fields, or the classic ones. stride: of the packed records."""

    def __init__(self, stream, record=None, monitor=None, stride=RECORD_SIZE):
        self.stream = stream
        self.stride = stride
        self.fields = own_fields(record)
        self.prefix = None
        if monitor:                      # several monitors: each object starts with the monitor's name
            import json                  # (only then: every start would pay for it)
            self.prefix = ('{"monitor": ' + json.dumps(monitor) + ", ").encode()

    def write(self, packed):
        lines = to_json_lines(packed, self.fields, self.stride)
        if self.prefix and lines:
            lines = self.prefix + lines[1:].replace(b"\n{", b"\n" + self.prefix)
        self.stream.write(lines.decode())


class Progress:
    """A one-line progress display on a terminal, at most four updates a second."""

    def __init__(self, stream, total_bytes):
        self.stream = stream
        self.total = total_bytes
        self.done = 0
        self.next_update = 0.0

    def update(self, bytes_read, packets, active_flows, status=""):
        self.done = bytes_read
        now = time.monotonic()
        if now < self.next_update:
            return
        self.next_update = now + 0.25
        share = f"{self.share():5.1f}%  " if self.total else ""
        status = f"  {status}" if status else ""
        self.stream.write(f"\r  {share}{packets:,} packets  {active_flows:,} flows active{status} ")
        self.stream.flush()

    def share(self):
        """Percent done, rounded down: 100.0 only once all is read."""
        return min(1000, 1000 * self.done // self.total) / 10

    def finish(self):
        self.stream.write("\r" + " " * 110 + "\r")
        self.stream.flush()


def open_progress(source, mode):
    """By default, progress only where someone watches it: a terminal, and input worth waiting
    for (a large file, a stream, a live capture or a real-time replay)."""
    small = source.size is not None and source.size < 32 << 20 and not source.ticking
    if mode == "never" or (mode == "auto" and (not sys.stderr.isatty() or small)):
        return None
    return Progress(sys.stderr, source.size)
