"""What a person reads: flow records as a table or JSON lines (when no collector is
given, or with --json), and the progress line of a long run."""

import contextlib
import os
import sys
import time

from .errors import OutputError
from .fields import BY_NAME, ICMP_PROTOCOLS, RECORD_SIZE
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


def _column(name):
    return BY_NAME[name].column


TABLE_HEADER = (f"{_column('first_us'):<23} {'Duration':>9} {_column('proto'):<5} {_column('src') + ':Port':>21}"
                f"    {_column('dst') + ':Port':<21} {_column('tcp_flags'):<8} {_column('packets'):>8} "
                f"{_column('octets'):>10}  {_column('end_reason')}")


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
    """nfdump -o line style, times in UTC. write() takes packed records, write_records()
    unpacked ones. A record definition of the user's gets a column per field instead.
    stride: of the packed records (pyprobe/records.py)."""

    def __init__(self, stream, header=True, record=None, monitor=None, stride=RECORD_SIZE):
        self.stream = stream
        self.stride = stride
        self.fields = own_fields(record)
        self.prefix = f"{monitor:<12} " if monitor else ""      # (several monitors: which one's)
        if header:
            stream.write((f"{'Monitor':<12} " if monitor else "") + (
                TABLE_HEADER if self.fields is None else
                "  ".join(f"{f.json:>{_width(f)}}" for f in self.fields)) + "\n")

    def write(self, packed):
        if self.fields is None:
            self.write_records(unpack(packed, self.stride))
            return
        shown = {"seconds": format_time}
        self.stream.write("".join(self.prefix + "  ".join(f"{shown.get(f.show, str)(v):>{_width(f)}}"
                                                          for f, v in zip(self.fields, row))
                                  + "\n" for row in shown_values(packed, self.fields, self.stride)))

    def write_records(self, records):
        lines = []
        for r in records:
            proto = PROTOCOL_NAMES.get(r.proto, str(r.proto))
            flags = tcp_flags_text(r.tcp_flags) if r.proto == 6 else ""
            src = endpoint(r.src, r.sport, r.ipver)
            dst = endpoint(r.dst, dport_text(r), r.ipver)
            lines.append(f"{self.prefix}{format_time(r.start)} {r.end - r.start:9.3f} {proto:<5} {src:>21} -> {dst:<21} "
                         f"{flags:<8} {r.packets:>8} {r.octets:>10}  {r.end_reason}\n")
        self.stream.write("".join(lines))


def _width(field):
    """A column wide enough for the field's values (an IPv6 address is wider: it shifts the row)."""
    return max(len(field.json), {"address": 15, "mac": 17, "seconds": 23}.get(field.show, 6))


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
