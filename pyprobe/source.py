"""Packet sources: capture files (pcap, pcapng, gzip, stdin) and live
interfaces, read in batches.

A source yields (packet_bytes, packed_meta) batches straight from pcapy-ng's
next_batch, so no Python runs per packet. Plain files go to libpcap directly.
Standard input and gzip files go through a small feeder process that writes
whole capture records into a pipe: libpcap sees an ordinary capture, and a
stream cut mid-record is trimmed to its last whole record instead of costing
the batch it falls in. (It is a process, not a thread, because next_batch holds
the GIL while it waits for data.)
"""

import gzip
import logging
import os
import queue
import select
import signal
import struct
import threading
import sys

import pcapy

log = logging.getLogger(__name__)

BATCH_PACKETS = 4096
READ_AHEAD = 2                   # batches read ahead of the meter
GZIP_MAGIC = b"\x1f\x8b"
PCAP_MAGICS = {b"\xa1\xb2\xc3\xd4": ">", b"\xd4\xc3\xb2\xa1": "<",      # microsecond
               b"\xa1\xb2\x3c\x4d": ">", b"\x4d\x3c\xb2\xa1": "<"}      # nanosecond
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
FEEDER_TRUNCATED = 3     # feeder exit status: the stream ended inside a record


class CaptureError(Exception):
    """A capture cannot be opened or read; the message is for the operator."""


class FileSource:
    """Batches from a capture file, '-' for standard input."""

    live = False

    def __init__(self, path):
        self.path = path
        self.truncated = False
        self.stopping = False
        self.packets = 0
        self._feeder_pid = None
        self._wake_fds = ()
        self.size = None
        if path == "-":
            self._reader = self._open_fed(sys.stdin.buffer)
        else:
            self._reader = self._open_path(path)
        self.linktype = self._reader.datalink()

    def set_filter(self, bpf):
        try:
            self._reader.setfilter(bpf)
        except pcapy.PcapError as e:
            raise CaptureError(f"bad filter {bpf!r}: {e}") from None

    def drops(self):
        return None

    def _open_path(self, path):
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
            self.size = os.path.getsize(path)
        except OSError as e:
            raise CaptureError(f"cannot read {path}: {e.strerror}") from None
        if magic[:2] == GZIP_MAGIC:
            self.size = None
            return self._open_fed(gzip.open(path, "rb"))
        check_magic(magic, path)
        return self._open_pcap(path)

    def _open_pcap(self, path):
        try:
            return pcapy.open_offline(path)
        except pcapy.PcapError as e:
            raise CaptureError(f"cannot read {self.path}: {e}") from None

    def _open_fed(self, stream):
        """Start a feeder process that copies whole records from stream into a pipe."""
        head = stream.read(4)
        if head[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=_Prepend(head, stream))
            head = stream.read(4)
        check_magic(head, self.path)
        blocking_fd = sys.stdin.fileno() if self.path == "-" else None
        rfd, wfd = os.pipe()
        wake_r, wake_w = os.pipe()
        pid = os.fork()
        if pid == 0:                      # feeder
            os.close(rfd)
            os.close(wake_w)
            # Ctrl-C reaches the whole process group: the parent decides when the feeder ends.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            status = 1
            try:
                status = feed_records(head, stream, wfd, blocking_fd, wake_r)
            finally:                      # the parent reports; the child must not unwind into its code
                os._exit(status)
        os.close(wfd)
        # A signal to us writes a byte here at once, even while next_batch blocks in C:
        # the feeder then ends the stream at a record boundary, so the batch being
        # read completes instead of being lost to an interrupted read. We keep the read
        # end open too, so a signal after the feeder has gone meets no broken pipe.
        self._wake_fds = (wake_r, wake_w)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self._feeder_pid = pid
        try:
            return self._open_pcap(f"/dev/fd/{rfd}")
        finally:
            os.close(rfd)                 # libpcap has its own descriptor now

    def batches(self, size=BATCH_PACKETS):
        """Yield (packet_bytes, packed_meta) until the capture ends.

        A reader thread fetches the next batch while the caller meters this one:
        the meter runs without the GIL, so reading and metering overlap."""
        ahead = queue.Queue(maxsize=READ_AHEAD)
        threading.Thread(target=self._read_ahead, args=(size, ahead), daemon=True).start()
        while True:
            item = ahead.get()
            if item is None:
                break
            if isinstance(item, pcapy.PcapError):
                if not self.stopping:      # a signal interrupting the read is no damage
                    yield from self._after_read_error(item)
                break
            self.packets += len(item[1]) // 16
            yield item
        self._reap_feeder()

    def _read_ahead(self, size, ahead):
        """The reader thread: batches, then None at the end (or the read error)."""
        while True:
            try:
                packets, meta = self._reader.next_batch(size)
            except pcapy.PcapError as e:
                ahead.put(e)
                return
            if not meta:
                ahead.put(None)
                return
            ahead.put((packets, meta))

    def _after_read_error(self, error):
        """The batch that hit a damaged record was lost whole: reread it one packet at a time."""
        self.truncated = True
        log.warning("%s: %s; metering the packets before it", self.path, error)
        if self._feeder_pid is not None:
            return                         # cannot happen: the feeder sends whole records only
        reader = self._open_pcap(self.path)
        skip = self.packets
        while skip:
            _, meta = reader.next_batch(min(skip, BATCH_PACKETS))
            skip -= len(meta) // 16
        while True:
            try:
                packets, meta = reader.next_batch(1)
            except pcapy.PcapError:
                return
            if not meta:
                return
            self.packets += 1
            yield packets, meta

    def stop(self):
        """Called from a signal handler: the next read ends the batches."""
        self.stopping = True

    def close(self):
        """Stop the feeder, if any, without waiting for its input to end."""
        if self._feeder_pid is not None:
            os.kill(self._feeder_pid, signal.SIGTERM)
            os.waitpid(self._feeder_pid, 0)
            self._feeder_pid = None
        if self._wake_fds:
            signal.set_wakeup_fd(-1)
            for fd in self._wake_fds:
                os.close(fd)
            self._wake_fds = ()

    def _reap_feeder(self):
        if self._feeder_pid is None or self.stopping:
            return
        _, status = os.waitpid(self._feeder_pid, 0)
        self._feeder_pid = None
        code = os.waitstatus_to_exitcode(status)
        if code == FEEDER_TRUNCATED:
            self.truncated = True
            log.warning("%s: capture ends in the middle of a record; metered the packets before it", self.path)
        elif code != 0:
            self.truncated = True
            log.warning("%s: reading the input failed part way (gzip data damaged?)", self.path)


def check_magic(magic, path):
    if magic == PCAPNG_MAGIC or magic in PCAP_MAGICS:
        return
    if not magic:
        raise CaptureError(f"{path} is empty")
    raise CaptureError(f"{path} is not a pcap or pcapng capture (magic {magic.hex()})")


class _Prepend:
    """A read-only stream that returns some already-read bytes first."""

    def __init__(self, head, stream):
        self.head, self.stream = head, stream

    def read(self, n=-1):
        if not self.head:
            return self.stream.read(n)
        if 0 <= n <= len(self.head):
            data, self.head = self.head[:n], self.head[n:]
            return data
        data, self.head = self.head, b""
        return data + self.stream.read(n - len(data) if n > 0 else -1)

    read1 = read


def feed_records(head, stream, out_fd, blocking_fd, wake_fd):
    """Copy a capture from stream to out_fd, whole records only, until the stream ends
    or wake_fd becomes readable; FEEDER_TRUNCATED if the stream was cut mid-record."""
    buf = bytearray(head)
    framing = _Framing()
    read = getattr(stream, "read1", stream.read)   # read1: what is there now, not a full megabyte
    watched = [wake_fd] if blocking_fd is None else [wake_fd, blocking_fd]
    try:
        while True:
            ready, _, _ = select.select(watched, [], [], 0 if blocking_fd is None else None)
            if wake_fd in ready:
                return 0                   # asked to stop: what was sent is whole
            chunk = read(1 << 20)
            buf += chunk
            complete = framing.complete_prefix(buf)
            _write_all(out_fd, bytes(buf[:complete]))
            del buf[:complete]
            if not chunk:
                return FEEDER_TRUNCATED if buf else 0
    except BrokenPipeError:
        return 0                           # the reader went away first: nothing to report


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


class _Framing:
    """Knows where records end in a pcap or pcapng byte stream."""

    def __init__(self):
        self.format = None        # "pcap" or "pcapng"
        self.order = "<"

    def complete_prefix(self, buf):
        """Length of the longest prefix of buf made of whole headers and records."""
        pos = 0
        if self.format is None:
            if len(buf) < 24:
                return 0
            magic = bytes(buf[:4])
            if magic in PCAP_MAGICS:
                self.format, self.order = "pcap", PCAP_MAGICS[magic]
                pos = 24
            else:
                self.format = "pcapng"
        if self.format == "pcap":
            caplen = struct.Struct(self.order + "8xI")
            while pos + 16 <= len(buf):
                end = pos + 16 + caplen.unpack_from(buf, pos)[0]
                if end > len(buf):
                    break
                pos = end
            return pos
        while pos + 12 <= len(buf):
            if buf[pos:pos + 4] == PCAPNG_MAGIC:   # section header: its own byte order
                self.order = "<" if buf[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack_from(self.order + "I", buf, pos + 4)[0]
            if length < 12 or pos + length > len(buf):
                break
            pos += length
        return pos


class LiveSource:
    """Batches from a network interface through libpcap.

    The read returns at least every READ_TIMEOUT_MS even on a quiet link, with an
    empty batch, so the caller's clock ticks and idle flows still expire."""

    READ_TIMEOUT_MS = 100

    live = True

    def __init__(self, interface, snaplen=65535, promiscuous=True, bpf=None, buffer_bytes=None,
                 fanout_group=None):
        self.path = interface
        self.size = None
        self.truncated = False
        self.stopping = False
        self.packets = 0
        if interface != "any" and not os.path.exists(f"/sys/class/net/{interface}"):
            raise CaptureError(f"no such interface: {interface}")
        try:
            cap = pcapy.create(interface)
            cap.set_snaplen(snaplen)
            cap.set_promisc(promiscuous)
            cap.set_timeout(self.READ_TIMEOUT_MS)
            if buffer_bytes:
                cap.set_buffer_size(buffer_bytes)
            cap.activate()
            if fanout_group is not None:
                # Workers share the interface: the kernel hashes each flow to one of them.
                cap.set_fanout(fanout_group, pcapy.PACKET_FANOUT_HASH)
            if bpf:
                cap.setfilter(bpf)
            # libpcap's own timeout does not fire on a quiet Linux link, and next_batch would
            # block holding the GIL: read non-blocking and wait in select() instead.
            cap.setnonblock(1)
        except pcapy.PcapError as e:
            raise CaptureError(f"cannot capture on {interface}: {e}") from None
        self._reader = cap
        self._fd = cap.getfd()
        self.linktype = cap.datalink()

    def batches(self, size=BATCH_PACKETS):
        """Yield (packet_bytes, packed_meta) until stopped; empty ones when the link is quiet."""
        while not self.stopping:
            try:
                select.select([self._fd], [], [], self.READ_TIMEOUT_MS / 1000)
            except InterruptedError:
                pass
            try:
                packets, meta = self._reader.next_batch(size)
            except pcapy.PcapError as e:
                raise CaptureError(f"capture on {self.path} failed: {e}") from None
            self.packets += len(meta) // 16
            yield packets, meta

    def stop(self):
        self.stopping = True

    def close(self):
        self._reader.close()

    def drops(self):
        """libpcap's (received, dropped, dropped by the interface)."""
        return self._reader.stats()


def interface_index(name):
    """The kernel's ifIndex of an interface, 0 if it has none (e.g. 'any')."""
    try:
        with open(f"/sys/class/net/{name}/ifindex") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0
