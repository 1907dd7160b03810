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

    def __init__(self, interface, snaplen=65535, promiscuous=True, buffer_bytes=None, fanout_group=None,
                 direction="ingress"):
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
        # One capture per direction metered, libpcap keeping only that direction, so each
        # batch knows which way its packets went (both: two captures, fanned out apart).
        ways = ("ingress", "egress") if direction == "both" else (direction,)
        self._captures = []
        try:
            for i, way in enumerate(ways):
                group = None if fanout_group is None else (fanout_group + i) & 0xFFFF
                cap = self._open(name, snaplen, promiscuous, buffer_bytes, group, PCAP_DIRECTIONS[way])
                self._captures.append((cap, cap.getfd(), way))
        except pcapy.PcapError as e:
            self.close()
            raise InputError(f"cannot capture on {name}: {e}") from None
        self.linktype = self._captures[0][0].datalink()

    def _open(self, name, snaplen, promiscuous, buffer_bytes, fanout_group, pcap_direction):
        cap = pcapy.create(name)
        cap.set_snaplen(snaplen)
        cap.set_promisc(promiscuous)
        cap.set_timeout(self.READ_TIMEOUT_MS)
        if buffer_bytes:
            cap.set_buffer_size(buffer_bytes)
        cap.activate()
        cap.setdirection(pcap_direction)
        if fanout_group is not None:
            # Workers share the interface: the kernel hashes each flow to one of them.
            cap.set_fanout(fanout_group, pcapy.PACKET_FANOUT_HASH)
        # libpcap's own timeout does not fire on a quiet Linux link, and next_batch would
        # block holding the GIL: read non-blocking and wait in select() instead.
        cap.setnonblock(1)
        return cap

    def set_filter(self, bpf):
        try:
            for cap, _, _ in self._captures:
                cap.setfilter(bpf)
        except pcapy.PcapError as e:
            raise InputError(f"cannot capture on {self.path}: bad filter {bpf!r}: {e}") from None

    def batches(self, size=BATCH_PACKETS):
        """Yield Batches until stopped; empty ones when the link is quiet."""
        fds = [fd for _, fd, _ in self._captures]
        while not self.stopping:
            try:
                select.select(fds, [], [], self.READ_TIMEOUT_MS / 1000)
            except InterruptedError:
                pass
            for cap, _, way in self._captures:
                try:
                    packets, meta = cap.next_batch(size)
                except pcapy.PcapError as e:
                    raise InputError(f"capture on {self.path} failed: {e}") from None
                self.packets += len(meta) // 16
                self.bytes_read += len(packets) + len(meta)
                yield Batch(packets, meta, self.linktype, 0, way)

    @staticmethod
    def clock_us():
        return time.time_ns() // 1000

    def stop(self):
        self.stopping = True

    def close(self):
        for cap, _, _ in self._captures:
            cap.close()

    def drops(self):
        """libpcap's (received, dropped, dropped by the interface), over its captures."""
        counts = [cap.stats() for cap, _, _ in self._captures]
        return tuple(sum(c[i] for c in counts) for i in range(3))

    @staticmethod
    def status():
        return ""

    @staticmethod
    def statistics():
        return {}


CAP_NET_RAW = 13
PCAP_DIRECTIONS = {"ingress": pcapy.PCAP_D_IN, "egress": pcapy.PCAP_D_OUT}


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
