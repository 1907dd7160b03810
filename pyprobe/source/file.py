"""Capture files and streams (pcap, pcapng, gzip, standard input), read in batches.

Plain files go to libpcap directly; standard input and gzip files through the
feeder (stream.py). A reader thread fetches the next batch while the meter,
running without the GIL, works on this one.
"""

import gzip
import logging
import os
import queue
import sys
import threading

import pcapy

from ..errors import InputError
from .batch import Batch
from .formats import GZIP_MAGIC, check_magic
from .stream import FEEDER_TRUNCATED, Feeder, Prepend

log = logging.getLogger(__name__)

BATCH_PACKETS = 4096
READ_AHEAD = 2                   # batches read ahead of the meter


class FileSource:
    """Batches from a capture file, '-' for standard input."""

    live = False
    ticking = False
    in_if = 0

    def __init__(self, path):
        self.path = path
        self.truncated = False
        self.stopping = False
        self.packets = 0
        self.bytes_read = 0          # of the batches handed out (progress)
        self._feeder = None
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
            self.close()
            raise InputError(f"bad filter {bpf!r}: {e}") from None

    def drops(self):
        return None

    def _open_path(self, path):
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
            self.size = os.path.getsize(path)
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None
        if magic[:2] == GZIP_MAGIC:
            self.size = None
            return self._open_fed(gzip.open(path, "rb"))
        check_magic(magic, path)
        return self._open_pcap(path)

    def _open_pcap(self, path):
        try:
            return pcapy.open_offline(path)
        except pcapy.PcapError as e:
            raise InputError(f"cannot read {self.path}: {e}") from None

    def _open_fed(self, stream):
        """Read a stream through a feeder process that copies whole records into a pipe."""
        head = stream.read(4)
        if head[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=Prepend(head, stream))
            head = stream.read(4)
        check_magic(head, self.path)
        self._feeder = Feeder(head, stream, from_stdin=self.path == "-")
        try:
            return self._open_pcap(self._feeder.pcap_path)
        finally:
            self._feeder.opened()

    def batches(self, size=BATCH_PACKETS):
        """Yield Batches until the capture ends.

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
            self.bytes_read += len(item[0]) + len(item[1])
            yield Batch(item[0], item[1], self.linktype)
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
        if self._feeder is not None:
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
            yield Batch(packets, meta, self.linktype)

    def stop(self):
        """Called from a signal handler: the next read ends the batches."""
        self.stopping = True

    def close(self):
        """Stop the feeder, if any, without waiting for its input to end."""
        if self._feeder is not None:
            self._feeder.close()

    def _reap_feeder(self):
        if self._feeder is None or self._feeder.pid is None or self.stopping:
            return
        code = self._feeder.wait()
        if code == FEEDER_TRUNCATED:
            self.truncated = True
            log.warning("%s: capture ends in the middle of a record; metered the packets before it", self.path)
        elif code != 0:
            self.truncated = True
            log.warning("%s: reading the input failed part way (gzip data damaged?)", self.path)
