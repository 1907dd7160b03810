"""Capture files and streams (pcap, pcapng, gzip, standard input, FIFOs), read in batches.

The compiled parser (ext/_capture.pyx) reads records out of the bytes: a regular
file is memory-mapped, so its packets reach the meter without a copy; anything
else (standard input, a FIFO, /dev/stdin, gzip) is read in chunks, each whole
record handed on once its last byte has arrived. Every path goes through the same
parser, so a capture reads the same however it arrives, and a damaged record ends
the input at the same place, after the packets before it.

A reader thread parses the next batch while the meter, which runs without the
GIL, works on this one; the caller waits at most POLL seconds at a time, and
gets an empty batch then, so a signal or a control command is acted on even
while a stream is silent.
"""

import mmap
import os
import queue
import stat
import threading
import zlib

from .._capture import DAMAGED, MORE, NEW_LINKTYPE, CaptureParser, give_back
from .._meter import linktype_name
from ..errors import InputError
from ..logs import logger
from .batch import Batch
from .bpf import compile_filter
from .formats import GZIP_MAGIC, check_magic

log = logger(__name__)

BATCH_PACKETS = 4096
READ_AHEAD = 2                   # batches parsed ahead of the meter
CHUNK = 1 << 20                  # bytes read from a stream at a time
RELEASE_STEP = 8 << 20           # bytes of a mapped file given back at a time
POLL = 0.1                       # seconds the caller waits for a batch before looking at stop()
CUT_SHORT = "the capture ends inside a record"
STREAM_ERRORS = (OSError, EOFError, zlib.error)   # gzip.BadGzipFile is an OSError


class FileSource:
    """Batches from a capture file, '-' for standard input."""

    live = False
    ticking = False

    def __init__(self, path):
        self.path = path
        self.damage = None           # why the input ended before its end, in words
        self.stopping = False
        self.packets = 0
        self.bytes_read = 0          # of the batches handed out (progress)
        self.size = None
        self.parser = CaptureParser()
        self._filter = None
        self._mapped = None
        self._released = 0           # of a mapped file: pages before this were given back
        self._metered = 0            # and the meter is done with the bytes before this
        self._stream = None          # read(n) -> bytes, b"" at the end
        self._data = b""             # the bytes being parsed: the whole mapped file, or a stream's chunk
        self._pos = 0
        self._ended = False          # no more bytes will come
        self._open()
        self.linktype = self._read_headers()

    @property
    def truncated(self):
        return self.damage is not None

    # -- opening -------------------------------------------------------------------------

    def _open(self):
        try:
            fd = os.dup(0) if self.path == "-" else os.open(self.path, os.O_RDONLY)
        except OSError as e:
            name = "standard input" if self.path == "-" else self.path
            raise InputError(f"cannot read {name}: {e.strerror}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise InputError(f"cannot read {self.path}: it is a directory")
            regular = stat.S_ISREG(info.st_mode) and info.st_size > 0
            head = os.pread(fd, 4, 0) if regular else _read_exactly(lambda n: os.read(fd, n), 4)
        except OSError as e:
            os.close(fd)
            raise InputError(f"cannot read {self.path}: {e.strerror}") from None
        except InputError:
            os.close(fd)
            raise
        if regular and head[:2] != GZIP_MAGIC:
            self._mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
            os.close(fd)
            self._data = memoryview(self._mapped)
            self._ended = True
            self.size = len(self._mapped)
            self._closers = [self._unmap]
        else:
            # A stream's first bytes are read already: gzip gets them back, the parser has them.
            raw = _FdReader(fd, head if head[:2] == GZIP_MAGIC and not regular else b"")
            self._closers = [raw.close]
            self._stream, self._data = raw.read, head
            if head[:2] == GZIP_MAGIC:
                import gzip           # (only for gzip input)
                self._stream = gzip.GzipFile(fileobj=raw, mode="rb").read1
                head = self._data = _read_exactly(self._read, 4)
                if self.damage is not None:
                    self.close()
                    raise InputError(f"cannot read {self.path}: {self.damage}")
        try:
            check_magic(bytes(head[:4]), self.path)
        except InputError:
            self.close()
            raise

    @property
    def mapped(self):
        """True: a regular file, whose bytes are all there (peek_time can read it)."""
        return self._mapped is not None

    def _read(self, n):
        """Up to n bytes of the stream, b"" at its end; damage ends it, and says what."""
        try:
            return self._stream(n)
        except STREAM_ERRORS as e:
            self.damage = f"reading it failed part way: {_reason(e)}"
            return b""

    def _read_headers(self):
        """The link type of the capture's first interface, read from its headers."""
        while True:
            _, _, self._pos, status = self.parser.parse(self._data, self._pos, 0)
            if self.parser.linktype >= 0 or status != MORE or not self._more():
                break
        if self.parser.linktype >= 0:
            return self.parser.linktype
        problem = self.parser.damage if status == DAMAGED else self.damage
        if problem is None and status == MORE and self._pos < len(self._data):
            problem = "the capture ends inside its headers"
        if problem is not None:
            self.close()
            raise InputError(f"cannot read {self.path}: {problem}")
        return 1              # no interface described yet: batches() says what comes instead

    def _more(self):
        """Keep the unread tail and add the stream's next chunk; False at the end."""
        if self._ended:
            return False
        chunk = self._read(CHUNK)
        if not chunk:
            self._ended = True
            return False
        self.parser.offset += self._pos
        self._data = self._data[self._pos:] + chunk
        self._pos = 0
        return True

    def set_filter(self, bpf):
        """Packets the tcpdump-style filter rejects are not metered (compiled per link type)."""
        self._filter = bpf
        self.parser.set_filtering()
        for linktype in self.parser.linktypes():
            self._compile_for(linktype)

    def _compile_for(self, linktype):
        program = compile_filter(self._filter, linktype)
        if program is None:
            log.warning("%s: the filter cannot apply to %s packets: none of them is metered",
                        self.path, linktype_name(linktype))
        self.parser.set_program(linktype, program)

    # -- reading ---------------------------------------------------------------------------

    def peek_time(self):
        """The first packet's time (microseconds) of a mapped file, inf if it has none, None
        if it is damaged before it. The file is left as it was, unread."""
        parser = CaptureParser()
        _, _, pos, status = parser.parse(self._data, 0, 0)
        if status != DAMAGED:
            meta, _, _, status = parser.parse(self._data, pos, 1)
            if meta:
                sec, usec = int.from_bytes(meta[0:4], "little"), int.from_bytes(meta[4:8], "little")
                return sec * 1_000_000 + usec
        return None if status == DAMAGED or status == MORE and pos < len(self._data) else float("inf")

    def batches(self, size=BATCH_PACKETS):
        """Yield Batches until the capture ends or stop() is called."""
        ahead = queue.Queue(maxsize=READ_AHEAD)
        threading.Thread(target=self._parse_ahead, args=(size, ahead), daemon=True).start()
        while not self.stopping:
            try:
                batch = ahead.get(timeout=POLL)
            except queue.Empty:           # a quiet stream: an empty batch, so the control socket is served
                yield Batch(b"", b"", self.linktype)
                continue
            if batch is None:
                break
            batch, end = batch
            self.packets += len(batch.meta) // 16
            self.bytes_read += len(batch.packets) + len(batch.meta)
            yield batch
            self._metered = end          # (the caller asks for the next only when done with it)
        if self.damage is not None and not self.stopping:
            log.warning("%s: %s; metered the %d packets before it", self.path, self.damage, self.packets)

    def _parse_ahead(self, size, ahead):
        """The reader thread: batches, then None at the end of the capture."""
        try:
            for batch in self._parse(size):
                self._hand(ahead, batch)
        except InputError as e:          # a filter for a link type first seen midway
            self.damage = str(e)
        finally:
            self._hand(ahead, None)

    def _hand(self, ahead, item):
        """Queue an item for the caller, unless it has stopped taking them."""
        while not self.stopping:
            try:
                ahead.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    def _parse(self, size):
        while not self.stopping:
            self._release(self._metered)
            meta, linktype, end, status = self.parser.parse(self._data, self._pos, size)
            if meta:
                yield Batch(memoryview(self._data)[self._pos:end], meta, linktype), end
            self._pos = end
            if status == DAMAGED:
                self.damage = self.parser.damage
                return
            if status == NEW_LINKTYPE:
                self._compile_for(self.parser.wanted_linktype)
            elif status == MORE and not self._more():
                if self._pos < len(self._data) and self.damage is None:
                    self.damage = CUT_SHORT
                return

    def _release(self, end):
        """The reader thread gives back the pages of a mapped file metered up to end: they need
        not stay resident (they would count in the process's memory as long as the file is open)."""
        start = self._released
        end -= end % mmap.PAGESIZE
        if self._mapped is not None and end - start >= RELEASE_STEP:
            give_back(self._data, start, end)
            self._released = end

    def statistics(self):
        """What the parser skipped: records with a time no flow record can carry, packets of
        interfaces whose link type is not decoded, packets the filter rejected."""
        p = self.parser
        return {"bad_times": p.bad_times, "undecoded": p.undecoded, "filtered": p.filtered}

    def drops(self):
        return None

    def stop(self):
        """Called from a signal handler: the batches end within POLL seconds."""
        self.stopping = True

    def close(self):
        """Release the file (a reader thread still waiting on a stream is left to it)."""
        for closer in getattr(self, "_closers", ()):
            closer()
        self._closers = ()

    def _unmap(self):
        self._data = b""
        try:
            self._mapped.close()
        except BufferError:          # a batch still refers to it: the mapping goes with the batch
            pass
        self._mapped = None


class _FdReader:
    """A file descriptor read as a stream (no buffer, no lock: another thread may read it
    while this one closes), with bytes already read given back first."""

    def __init__(self, fd, head):
        self.fd, self.head = fd, head

    def read(self, n=-1):
        n = CHUNK if n is None or n < 0 else n
        if self.head:
            data, self.head = self.head[:n], self.head[n:]
            return data
        return os.read(self.fd, n)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _read_exactly(read, n):
    """n bytes from read(k) (fewer at the stream's end)."""
    data = b""
    while len(data) < n:
        chunk = read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _reason(error):
    import gzip
    if isinstance(error, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"damaged gzip data ({error})"
    return getattr(error, "strerror", None) or str(error)
