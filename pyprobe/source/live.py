"""Live capture on an interface through libpcap (pcapy-ng), in batches."""

import os
import select
import time

import pcapy

from ..errors import InputError
from .batch import Batch
from .file import BATCH_PACKETS


class LiveSource:
    """Batches from a network interface, '[IDX:]IFACE' (IDX: the flows' input interface).

    The read returns at least every READ_TIMEOUT_MS even on a quiet link, with an
    empty batch, so the caller's clock ticks and idle flows still expire."""

    READ_TIMEOUT_MS = 100

    live = True
    ticking = True               # the clock runs between batches: the wall clock
    dating = None                # record times are the packets' own

    def __init__(self, interface, snaplen=65535, promiscuous=True, buffer_bytes=None, fanout_group=None):
        index, sep, name = interface.partition(":")
        if not sep or not index.isdigit():
            index, name = None, interface
        self.path = name
        self.in_if = int(index) if index is not None else interface_index(name)
        self.size = None
        self.truncated = False
        self.stopping = False
        self.packets = 0
        self.bytes_read = 0
        if name != "any" and not os.path.exists(f"/sys/class/net/{name}"):
            raise InputError(f"no such interface: {name}")
        if not may_capture():
            raise InputError(f"cannot capture on {name}: capturing needs root or the CAP_NET_RAW capability "
                             f"(running as uid {os.geteuid()}); e.g. sudo setcap cap_net_raw,cap_net_admin+ep "
                             "on the Python interpreter, or run as root with --user to drop privileges")
        try:
            cap = pcapy.create(name)
            cap.set_snaplen(snaplen)
            cap.set_promisc(promiscuous)
            cap.set_timeout(self.READ_TIMEOUT_MS)
            if buffer_bytes:
                cap.set_buffer_size(buffer_bytes)
            cap.activate()
            if fanout_group is not None:
                # Workers share the interface: the kernel hashes each flow to one of them.
                cap.set_fanout(fanout_group, pcapy.PACKET_FANOUT_HASH)
            # libpcap's own timeout does not fire on a quiet Linux link, and next_batch would
            # block holding the GIL: read non-blocking and wait in select() instead.
            cap.setnonblock(1)
        except pcapy.PcapError as e:
            raise InputError(f"cannot capture on {name}: {e}") from None
        self._reader = cap
        self._fd = cap.getfd()
        self.linktype = cap.datalink()

    def set_filter(self, bpf):
        try:
            self._reader.setfilter(bpf)
        except pcapy.PcapError as e:
            raise InputError(f"cannot capture on {self.path}: bad filter {bpf!r}: {e}") from None

    def batches(self, size=BATCH_PACKETS):
        """Yield Batches until stopped; empty ones when the link is quiet."""
        while not self.stopping:
            try:
                select.select([self._fd], [], [], self.READ_TIMEOUT_MS / 1000)
            except InterruptedError:
                pass
            try:
                packets, meta = self._reader.next_batch(size)
            except pcapy.PcapError as e:
                raise InputError(f"capture on {self.path} failed: {e}") from None
            self.packets += len(meta) // 16
            self.bytes_read += len(packets) + len(meta)
            yield Batch(packets, meta, self.linktype)

    @staticmethod
    def clock_us():
        return time.time_ns() // 1000

    def stop(self):
        self.stopping = True

    def close(self):
        self._reader.close()

    def drops(self):
        """libpcap's (received, dropped, dropped by the interface)."""
        return self._reader.stats()

    @staticmethod
    def status():
        return ""

    @staticmethod
    def statistics():
        return {}


CAP_NET_RAW = 13


def may_capture():
    """Root, or the CAP_NET_RAW capability in effect (libpcap's own error for its absence
    is an unhelpful 'F_GETFL: Bad file descriptor')."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            effective = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return True                   # cannot tell: let libpcap say
    return bool(effective >> CAP_NET_RAW & 1)


def interface_index(name):
    """The kernel's ifIndex of an interface, 0 if it has none (e.g. 'any')."""
    try:
        with open(f"/sys/class/net/{name}/ifindex") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0
