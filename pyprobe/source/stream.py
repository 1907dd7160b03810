"""The feeder: standard input and gzip files reach libpcap through a pipe.

A small process copies whole capture records from the stream into a pipe, so
libpcap sees an ordinary capture, and a stream cut mid-record is trimmed to its
last whole record instead of costing the batch it falls in. (A process, not a
thread, because next_batch holds the GIL while it waits for data.)
"""

import os
import select
import signal
import struct
import sys

from .formats import PCAP_MAGICS, PCAPNG_MAGIC

FEEDER_TRUNCATED = 3     # feeder exit status: the stream ended inside a record


class Feeder:
    """A feeder process copying `stream` (its first bytes already read: `head`) into a
    pipe; `pcap_path` is where libpcap reads it."""

    def __init__(self, head, stream, from_stdin):
        blocking_fd = sys.stdin.fileno() if from_stdin else None
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
        self.wake_fds = (wake_r, wake_w)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.pid = pid
        self.read_fd = rfd
        self.pcap_path = f"/dev/fd/{rfd}"

    def opened(self):
        """libpcap has its own descriptor of the pipe now."""
        os.close(self.read_fd)

    def wait(self):
        """Wait for the feeder to end its stream: its exit status (0, FEEDER_TRUNCATED, other)."""
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.waitstatus_to_exitcode(status)

    def close(self):
        """Stop the feeder, if still running, without waiting for its input to end."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
            self.pid = None
        if self.wake_fds:
            signal.set_wakeup_fd(-1)
            for fd in self.wake_fds:
                os.close(fd)
            self.wake_fds = ()


class Prepend:
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


