"""Live capture on network interfaces through libpcap (pcapy-ng), in batches.

Each interface and direction metered is one libpcap capture of its own, so every
batch knows the interface its packets crossed (its ifIndex) and which way. `-i any`
is every interface of the network namespace, watched over netlink: interfaces that
appear later (a VPN tunnel, a new VLAN) are captured as they come up.

An interface is its ifIndex. Its capture's socket is bound to that index, so it outlives
a rename (the capture just takes the new name) and a down (the kernel resumes it the
moment the interface is up, before any event could tell the probe): a capture ends only
when its interface is deleted. Packets an interface carried while it could not be
captured (it came up, or appeared, before its capture was open) are counted as missed,
from the interface's own counters.

libpcap's own cooked 'any' device is not used: the libpcap pcapy-ng bundles (1.9) gives
it no interface index per packet, and a cooked capture drops the VLAN tags that tell a
parent interface's copy of a sub-interface's packet apart (see vlans_elsewhere).
"""

import os
import select
import socket
import struct
import threading
import time

import pcapy

from .._meter import HEADER_BYTES, SUPPORTED_LINKTYPES, linktype_name
from ..errors import InputError
from ..logs import logger
from .interfaces import InterfaceSpec
from .batch import Batch
from .._capture import attach_filter, filter_batch, ip_octets, socket_filter
from .bpf import DLT_EN10MB, compile_filter, directed, live_program, names_vlan
from .file import BATCH_PACKETS

log = logger("pyprobe")

PCAP_DIRECTIONS = {"ingress": pcapy.PCAP_D_IN, "egress": pcapy.PCAP_D_OUT}
WAYS = ("ingress", "egress")
# pcap_activate()'s errors, which pcapy-ng returns rather than raises
PCAP_ERRORS = {-5: "no such device", -8: "permission denied", -9: "the interface is down",
               -11: "promiscuous mode not permitted", -1: "error"}
PCAP_ERROR_IFACE_NOT_UP = -9
DRAIN_BATCHES = 64
ENDING_SECONDS = 0.25             # longer than libpcap's block timeout (READ_TIMEOUT_MS)
PCAP_ERROR_NO_SUCH_DEVICE = -5
READ_ERRORS_IN_A_ROW = 5          # a capture whose reads keep failing is opened afresh
# The interface's own counters (/sys/class/net/IF/statistics) of what it carried and dropped
# in each direction: "drop" of /proc/net/dev, as libpcap reads it, is rx_dropped + rx_missed_errors.
CARRIED = {"ingress": "rx_packets", "egress": "tx_packets"}
DROPPED = {"ingress": ("rx_dropped", "rx_missed_errors"), "egress": ("tx_dropped",)}
IFF_UP = 0x1
FIRST_FILTER_MARGIN_SECONDS = 0.005   # kernel timestamps against time.time(): the same clock
REJECT_ALL = b"\x06\x00\x00\x00\x00\x00\x00\x00"


class Capture:
    """One libpcap capture: one interface (ifIndex), one direction, and its counts."""

    def __init__(self, name, ifindex, in_if, way, handle, explicit=False):
        self.name, self.ifindex, self.in_if, self.way = name, ifindex, in_if, way
        self.explicit = explicit             # named by -i: kept even as a bridge port or renamed
        self.handle = handle
        self.lock = threading.Lock()
        self.fd = handle.getfd()
        self.linktype = handle.datalink()
        self.vlans_elsewhere = None          # see _mark_subinterfaces
        self.vlan = 0
        self.more = False                    # the last read was a full batch: there may be more
        self.ending = 0.0                    # the interface went: when to close (see LiveSource._end)
        self.down = False                    # the interface is down: the socket waits for it
        self.errors = 0                      # reads that failed in a row
        self.failed = False                  # ended by failing reads: its interface is captured afresh
        self.filter_by_libpcap = False       # its filter was put on by libpcap (see LiveSource._install)
        self.fresh = True                    # not read yet
        self.unfiltered = None               # (program, until): see LiveSource._filter_the_first
        self.packets = 0
        self.ip_octets = 0                   # as the IP headers state them: what the flows count
        self.missed = 0                      # what the interface carried before this capture opened
        self.received = Total32()            # libpcap's counts, which are 32-bit and wrap
        self.dropped = Total32()
        self.if_dropped = Total()
        self._if_dropped_at_open = interface_drops(name, way)

    def read(self, size):
        packets, meta = self.handle.next_batch(size)
        self.fresh = False
        if self.unfiltered is not None and meta:
            meta = self._filtered(packets, meta)
        self.packets += len(meta) // 16
        self.ip_octets += ip_octets(packets, meta, self.linktype)
        return packets, meta

    def _filtered(self, packets, meta):
        """The batch through the filter here, while it may hold packets the socket took before
        it had its filter; the first batch wholly after that ends it."""
        program, until = self.unfiltered
        if struct.unpack_from("=II", meta) > until:
            self.unfiltered = None
            return meta
        return filter_batch(packets, meta, program)

    def counts(self):
        """(received, dropped by libpcap, dropped by the interface) since the capture opened,
        kept past the close. (The metrics thread asks too: never of a handle being closed.)"""
        with self.lock:
            if self.handle is not None:
                try:
                    received, dropped, _ = self.handle.stats()
                except pcapy.PcapError:
                    pass
                else:
                    self.received.see(received)
                    self.dropped.see(dropped)
                # (libpcap reads the interface's drops by the name it was opened with: wrong
                # once it is renamed; the interface's counters by its name now are right)
                drops = interface_drops(self.name, self.way)
                if drops is not None and self._if_dropped_at_open is not None:
                    self.if_dropped.see(drops - self._if_dropped_at_open)
            return self.received.total, self.dropped.total, self.if_dropped.total

    def add(self, other):
        """Take in the counts of an earlier capture of the same interface and direction."""
        self.packets += other.packets
        self.ip_octets += other.ip_octets
        self.missed += other.missed
        for mine, theirs in ((self.received, other.received), (self.dropped, other.dropped),
                             (self.if_dropped, other.if_dropped)):
            mine.total += theirs.total

    def close(self):
        self.counts()
        with self.lock:
            if self.handle is not None:
                self.handle.close()
                self.handle = None


class Total:
    """A total from readings of a counter that only grows: a reading below the last one (the
    counter was reset, or is another's) adds nothing rather than a negative amount."""

    def __init__(self):
        self.total = 0
        self._last = 0

    def see(self, reading):
        if reading > self._last:
            self.total += reading - self._last
        self._last = reading


class Total32(Total):
    """A total from readings of a 32-bit counter that wraps (libpcap's statistics)."""

    def see(self, reading):
        self.total += (reading - self._last) & 0xFFFFFFFF
        self._last = reading


class LiveSource:
    """Batches from network interfaces: InterfaceSpecs (interfaces.py), 'any' for all.

    The read returns at least every READ_TIMEOUT_MS even on a quiet link, with an
    empty batch, so the caller's clock ticks and idle flows still expire."""

    READ_TIMEOUT_MS = 100
    RESCAN_SECONDS = 5.0          # look for interfaces even if netlink said nothing (it may drop)

    live = True
    ticking = True               # the clock runs between batches: the wall clock
    dating = None                # record times are the packets' own

    def __init__(self, interfaces, snaplen=HEADER_BYTES, promiscuous=True, buffer_bytes=None, fanout_group=None,
                 direction="ingress"):
        if isinstance(interfaces, (str, InterfaceSpec)):
            interfaces = [interfaces if isinstance(interfaces, InterfaceSpec) else InterfaceSpec(interfaces)]
        self.everything = any(spec.name == InterfaceSpec.ANY for spec in interfaces)
        self.named = {spec.name: spec.index for spec in interfaces if spec.name != InterfaceSpec.ANY}
        self.path = ",".join(spec.name for spec in interfaces)
        self.size = None
        self.truncated = False
        self.stopping = False
        self.packets = 0
        self.bytes_read = 0
        self.serial = 0                       # +1 each time the set of interfaces changes
        self._open_args = (snaplen, promiscuous, buffer_bytes, fanout_group)
        self._ways = WAYS if direction == "both" else (direction,)
        self._bpf = None
        self._captures = {}                   # (ifindex, way) -> Capture
        self._closed = []                     # the counts of captures that ended
        self._refused = {}                    # ifindex -> (name, why it is not captured)
        self._down = set()                    # names seen down, to log them once
        self._uncaptured = {}                 # (ifindex, way) -> what it had carried when it was not captured
        self._ports = set()                   # (port, master) left out, to log them once
        present = interface_indexes()
        for name in self.named:
            if name not in present:
                raise InputError(f"no such interface: {name}")
        if not may_capture():
            raise InputError(f"cannot capture on {self.path}: capturing needs root or the CAP_NET_RAW capability "
                             f"(running as uid {os.geteuid()}); e.g. sudo setcap cap_net_raw,cap_net_admin+ep "
                             "on the Python interpreter, or run as root with --user to drop privileges")
        self._events = link_events()
        try:
            self._rescan(present, starting=True)
        except InputError:
            self.close()
            raise
        first = next(iter(self._captures.values()), None)
        self.linktype = first.linktype if first else DLT_EN10MB

    # -- which interfaces ---------------------------------------------------------

    def _wanted(self, present):
        """The interfaces to capture of those present. 'any' leaves out the ports of a bridge
        or bond (unless named): what they receive goes up to their master, where it is
        metered once, as on the router interface it is."""
        names = set(self.named) & set(present)
        if self.everything:
            for name in set(present) - names:
                master = interface_master(name)
                if master is None:
                    names.add(name)
                elif (name, master) not in self._ports:
                    log.info("not capturing on %s: a port of %s, whose packets are metered there", name, master)
                    self._ports.add((name, master))
        return sorted(names, key=present.get)

    def _rescan(self, present=None, starting=False):
        """Follow the interfaces: a capture whose interface is gone is closed, one renamed takes
        the new name, one down waits for it; new interfaces (or ones back up that had no
        capture) are opened: at start, on every netlink link event and every RESCAN_SECONDS."""
        present = interface_indexes() if present is None else present
        self._last_scan = time.monotonic()
        names = {index: name for name, index in present.items()}
        wanted = {present[name] for name in self._wanted(present)}
        changed = False
        for capture in self._captures.values():
            if capture.ending:
                continue
            name = names.get(capture.ifindex)
            if name is None:
                log.info("interface %s (ifIndex %d) is gone", capture.name, capture.ifindex)
                self._end(capture)
                continue
            if name != capture.name:
                log.info("interface %s (ifIndex %d) is now called %s", capture.name, capture.ifindex, name)
                capture.name = name
                changed = True
            if capture.ifindex not in wanted and not capture.explicit:    # it became a bridge or bond port
                self._end(capture)
            elif capture.down and interface_up(name):
                log.info("interface %s is up again: its capture goes on", name)
                capture.down = False
        for key in [key for key in self._uncaptured if key[0] not in names]:
            del self._uncaptured[key]
        for index in sorted(wanted):
            if index in self._refused:
                continue
            for way in self._ways:
                if (index, way) not in self._captures:
                    changed |= self._open(names[index], index, way, starting)
        if changed:
            self._changed()

    def _open(self, name, ifindex, way, starting):
        """Start capturing one interface in one direction; True if it now is."""
        explicit = name in self.named
        if not starting:          # it appeared, or came up, while the probe runs
            self._uncaptured.setdefault((ifindex, way), interface_count(name, CARRIED[way]))
        try:
            handle = self._activate(name, ifindex, way)
        except CaptureRefused as e:
            if e.code == PCAP_ERROR_IFACE_NOT_UP:
                self._uncaptured.setdefault((ifindex, way), interface_count(name, CARRIED[way]))
                if name not in self._down:
                    (log.warning if explicit else log.info)("interface %s is down: capturing it once it is up", name)
                    self._down.add(name)
                return False
            if e.code == PCAP_ERROR_NO_SUCH_DEVICE and not starting:
                return False                   # gone between the scan and the open
            if explicit and starting:
                raise InputError(f"cannot capture on {name}: {e}") from None
            if name not in self._down:             # (tried again at the next rescan)
                log.warning("not capturing on %s for now: %s", name, e)
                self._down.add(name)
            return False
        self._down.discard(name)
        index = self.named.get(name)
        capture = Capture(name, ifindex, index if index is not None else ifindex, way, handle, explicit)
        try:
            why = self._unusable(capture)
        except InterfaceDown as e:         # (between the open and the filter: tried again at the next rescan)
            capture.close()
            log.info("not capturing on %s for now: %s", name, e)
            return False
        if why:
            capture.close()
            self._refuse(capture, why, fatal=explicit and starting)
            return False
        capture.missed = self._missed(capture)
        if not starting:
            log.info("capturing on %s (ifIndex %d, %s)%s", name, ifindex, way,
                     f"; {capture.missed} packets crossed it before" if capture.missed else "")
        self._captures[ifindex, way] = capture
        return True

    def _missed(self, capture):
        """What the interface carried in the capture's direction while it was wanted but not
        captured: by its own counter, from when it was first seen so until now."""
        before = self._uncaptured.pop((capture.ifindex, capture.way), None)
        now = interface_count(capture.name, CARRIED[capture.way])
        return max(0, now - before) if before is not None and now is not None else 0

    def _activate(self, name, ifindex, way):
        snaplen, promiscuous, buffer_bytes, fanout_group = self._open_args
        try:
            handle = pcapy.create(name)
            handle.set_snaplen(snaplen)
            handle.set_promisc(promiscuous)
            handle.set_timeout(self.READ_TIMEOUT_MS)
            if buffer_bytes:
                handle.set_buffer_size(buffer_bytes)
            status = handle.activate()
            if status is not None and status < 0:
                handle.close()
                raise CaptureRefused(status, PCAP_ERRORS.get(status, f"libpcap error {status}"))
        except pcapy.PcapError as e:
            raise CaptureRefused(-1, str(e)) from None
        try:
            handle.setdirection(PCAP_DIRECTIONS[way])
            if fanout_group is not None:
                # Workers share each interface: the kernel hashes each flow to one of them. A
                # group per interface and direction, the same number in every worker.
                group = (fanout_group + 2 * ifindex + WAYS.index(way)) & 0xFFFF
                handle.set_fanout(group, pcapy.PACKET_FANOUT_HASH)
            # libpcap's own timeout does not fire on a quiet Linux link, and next_batch would
            # block holding the GIL: read non-blocking and wait in select() instead.
            handle.setnonblock(1)
        except pcapy.PcapError as e:
            handle.close()
            raise CaptureRefused(-1, str(e)) from None
        return handle

    def _unusable(self, capture):
        """Why packets of this capture cannot be metered, or None."""
        if capture.linktype not in SUPPORTED_LINKTYPES:
            return f"link type {capture.linktype} ({linktype_name(capture.linktype)}) is not decoded"
        return self._install(capture, self._bpf)

    def _install(self, capture, bpf):
        """Put the filter (None: none) on the capture's socket, after a test of the capture's
        direction (bpf.directed); why it cannot be, or None. The program replaces the one
        there in one step, so no packet goes unfiltered or is lost meanwhile (libpcap's
        setfilter rejects every packet for a moment first). Only what a program made here
        cannot do is left to libpcap: VLAN tests (see names_vlan), a cooked capture reading
        its made-up header, a program the kernel refuses."""
        program = None
        if not (names_vlan(bpf) or capture.filter_by_libpcap):
            try:
                program = live_program(bpf, capture.linktype, self._open_args[0])
            except pcapy.PcapError as e:
                return f"the filter {bpf!r} does not apply to its link type ({e})"
        if program is not None:
            try:
                attach_filter(capture.fd, directed(program, capture.way))
            except (OSError, ValueError):
                return self._install_by_libpcap(capture, bpf)
            if capture.fresh and bpf:
                self._filter_the_first(capture, bpf)
            return None
        return self._install_by_libpcap(capture, bpf)

    @staticmethod
    def _filter_the_first(capture, bpf):
        """A capture not read yet: what its socket took between its opening and its filter is
        in its buffer with what came after, so the batches that may hold such packets (stamped
        up to a little after now) go through the filter here too (for the others that changes
        nothing). (A filter changed later does not: what came before was taken under the old.)"""
        until = time.time() + FIRST_FILTER_MARGIN_SECONDS
        capture.unfiltered = (compile_filter(bpf, capture.linktype) or REJECT_ALL,
                              (int(until), int(until % 1 * 1e6)))

    def _install_by_libpcap(self, capture, bpf):
        """libpcap's setfilter; once used, a capture keeps it (libpcap then filters the packets
        already in its buffer itself, with the program it knows). InterfaceDown if it fails
        because the interface went down or away: libpcap then left the socket with no filter."""
        capture.filter_by_libpcap = True
        error = None
        for _ in range(2):        # (an interface that went down makes it fail once; it takes the filter off)
            try:
                capture.handle.setfilter(bpf or "")
                self._direct_libpcaps(capture)
                return None
            except pcapy.PcapError as e:
                error = e
        if capture.ifindex not in interface_indexes().values():
            raise InterfaceDown(f"interface {capture.name} went away")
        if not interface_up(capture.name):
            raise InterfaceDown(f"interface {capture.name} is down")
        return f"the filter {bpf!r} could not be put on it ({error})"

    def _direct_libpcaps(self, capture):
        """The program libpcap put on the socket, after a test of the capture's direction
        (bpf.directed). (Not in the expression: libpcap also runs the program on what its
        buffer held before, in user space, where a test of the direction passes nothing.)"""
        try:
            program = socket_filter(capture.fd) or live_program(None, capture.linktype, self._open_args[0])
            attach_filter(capture.fd, directed(program, capture.way))
        except (OSError, ValueError, pcapy.PcapError) as e:
            log.info("capture on %s: its direction left to libpcap, its statistics counting both (%s)",
                     capture.name, e)

    def _refuse(self, capture, why, fatal):
        """This interface's packets cannot be metered (link type, filter): an error for one
        named at start, else a warning, and it is not tried again."""
        if fatal:
            raise InputError(f"cannot capture on {capture.name}: {why}")
        log.warning("not capturing on %s: %s", capture.name, why)
        self._refused[capture.ifindex] = (capture.name, why)

    def _changed(self):
        """Captures opened or closed: which VLANs a parent leaves to its sub-interfaces may be
        different, and the collectors are told the interfaces again (serial)."""
        self._mark_subinterfaces()
        self.serial += 1

    def _end(self, capture):
        """The interface went down or away: what the kernel held for it comes out once its
        buffer block times out, so the capture is read for that long before it is closed."""
        capture.ending = time.monotonic() + ENDING_SECONDS

    def _retire(self, key):
        """Close a capture, its counts kept: added to those of its interface's earlier
        captures in that direction (an interface captured afresh is one row, by its name now)."""
        capture = self._captures.pop(key)
        capture.close()
        if capture.failed:             # what crosses it until the new capture opens is missed
            self._uncaptured.setdefault(key, interface_count(capture.name, CARRIED[capture.way]))
        for earlier in self._closed:
            if (earlier.ifindex, earlier.way) == (capture.ifindex, capture.way):
                capture.add(earlier)
                self._closed.remove(earlier)
                break
        self._closed.append(capture)

    def _mark_subinterfaces(self):
        """A packet of a VLAN sub-interface crosses its parent too, tagged: when both are
        captured, the parent's copy is left to the sub-interface (counted as such)."""
        captured = {capture.name for capture in self._captures.values()}
        by_parent, own = {}, {}
        for name, vid, parent in vlan_subinterfaces():
            own[name] = vid
            if name in captured and parent in captured:
                by_parent.setdefault(parent, []).append(vid)
        for capture in self._captures.values():
            vids = by_parent.get(capture.name)
            capture.vlans_elsewhere = vlan_bitmap(vids) if vids else None
            capture.vlan = own.get(capture.name, 0)

    # -- the source interface ---------------------------------------------------------

    def set_filter(self, bpf):
        """The filter (None or '': none) for every capture, now and to come. The same filter
        again changes nothing: the captures go on as they are."""
        bpf = bpf or None
        if bpf == self._bpf:
            return
        if bpf is not None:
            compile_filter(bpf, DLT_EN10MB)         # a bad filter is an error, whatever is captured
        for capture in self._captures.values():     # ... as is one for the link type of a named interface
            if capture.explicit and not capture.ending:
                try:
                    live_program(bpf, capture.linktype, self._open_args[0])
                except pcapy.PcapError as e:
                    raise InputError(f"cannot capture on {capture.name}: the filter {bpf!r} does not apply "
                                     f"to its link type ({e})") from None
        self._bpf = bpf
        for key, capture in list(self._captures.items()):
            if capture.ending:
                continue
            try:
                why = self._install(capture, bpf)
            except InterfaceDown as e:     # its socket was left with no filter: captured afresh when back
                log.info("capture on %s stopped: %s", capture.name, e)
                capture.failed = True
                self._retire(key)
                self._changed()
                continue
            if why:
                self._refuse(capture, why, fatal=False)
                self._retire(key)
                self._changed()

    def batches(self, size=BATCH_PACKETS):
        """Yield Batches until stopped, then what the kernel still holds; an empty one when
        every link is quiet."""
        poller, polled = None, None
        while not self.stopping:
            if polled != self.serial:          # the captures changed: poll their fds
                poller, polled = self._poller(), self.serial
            try:
                ready = {fd for fd, _ in poller.poll(self.READ_TIMEOUT_MS)}
            except InterruptedError:
                ready = set()
            if self._events is not None and self._events.fileno() in ready:
                drain(self._events)
                self._rescan()
            elif time.monotonic() - self._last_scan >= self.RESCAN_SECONDS:
                self._rescan()
            quiet, now = True, time.monotonic()
            for key, capture in list(self._captures.items()):
                if capture.ending and now >= capture.ending:
                    self._retire(key)
                    self._changed()
                    self._last_scan = 0.0          # (it may be back already: look at once)
                    continue
                # (libpcap may hold the rest of a block a full batch left: read it unasked)
                if capture.fd not in ready and not capture.more and not capture.ending:
                    continue
                try:
                    packets, meta = capture.read(size)
                except pcapy.PcapError as e:
                    self._read_failed(capture, e)
                    continue
                capture.errors = 0
                capture.more = len(meta) // 16 >= size
                if not meta:
                    continue
                quiet = False
                yield self._batch(capture, packets, meta)
            if quiet:
                yield Batch(b"", b"", self.linktype)
        yield from self._drain(size)

    def _read_failed(self, capture, error):
        """libpcap says once that the interface went down. Its socket stays bound to the
        interface and the kernel has it capture again the moment the interface is up, so the
        capture waits (a new one would open only after an event, missing what came meanwhile).
        A capture whose interface is gone, or whose reads keep failing, ends (and one of an
        interface still there is opened afresh)."""
        if capture.ending:
            return
        capture.errors += 1
        if capture.errors < READ_ERRORS_IN_A_ROW and capture.ifindex in interface_indexes().values():
            if not capture.down:
                capture.down = True
                (log.warning if capture.explicit else log.info)(
                    "interface %s is down (%s): capturing again the moment it is up", capture.name, error)
            return
        log.info("capture on %s stopped: %s", capture.name, error)
        capture.failed = True
        self._end(capture)

    def _batch(self, capture, packets, meta):
        """A capture's packets as a Batch for the meter, counted for progress."""
        self.packets += len(meta) // 16
        self.bytes_read += len(packets) + len(meta)
        return Batch(packets, meta, capture.linktype, 0, capture.way, capture.in_if, capture.vlans_elsewhere,
                     capture.vlan)

    def _poller(self):
        poller = select.poll()
        for capture in self._captures.values():
            poller.register(capture.fd, select.POLLIN)
        if self._events is not None:
            poller.register(self._events.fileno(), select.POLLIN)
        return poller

    def _drain(self, size, most=DRAIN_BATCHES):
        """At the stop: the packets captured before it, still in the kernel's buffers (at
        most `most` batches per capture, should traffic go on). The kernel hands over a
        buffer block once it is full or READ_TIMEOUT_MS old: wait that long first."""
        time.sleep(1.5 * self.READ_TIMEOUT_MS / 1000)
        for capture in list(self._captures.values()):
            for _ in range(most):
                try:
                    packets, meta = capture.read(size)
                except pcapy.PcapError:
                    break
                if meta:
                    yield self._batch(capture, packets, meta)
                if len(meta) // 16 < size:
                    break

    @staticmethod
    def clock_us():
        return time.time_ns() // 1000

    def stop(self):
        self.stopping = True

    def close(self):
        for key in list(self._captures):
            self._retire(key)
        if self._events is not None:
            self._events.close()
            self._events = None

    def drops(self):
        """libpcap's (received, dropped, dropped by the interface), over all its captures."""
        counts = [c.counts() for c in list(self._captures.values()) + self._closed]
        return tuple(sum(c[i] for c in counts) for i in range(3))

    def interfaces(self):
        """The interfaces captured now: [(ifIndex as the flows carry it, name, description)],
        for the collectors' interface options records."""
        seen = {}
        for capture in self._captures.values():
            seen.setdefault(capture.in_if, (capture.in_if, capture.name, interface_description(capture.name)))
        return sorted(seen.values())

    def statistics(self):
        """Per capture: interface, direction, packets read, their IP octets (as the IP headers
        state them: what the flows count), what the kernel took for it (received: read, dropped
        or still buffered) and dropped; then the interfaces not captured and why (the summary,
        ctl interfaces)."""
        rows = []
        for capture, state in ([(c, "down" if c.down else "capturing") for c in self._captures.values()]
                               + [(c, "stopped") for c in self._closed]):
            received, dropped, if_dropped = capture.counts()
            rows.append({"name": capture.name, "ifindex": capture.ifindex, "in_if": capture.in_if,
                         "direction": capture.way, "linktype": linktype_name(capture.linktype),
                         "state": state, "packets": capture.packets, "ip_octets": capture.ip_octets,
                         "received": received, "dropped": dropped, "dropped_by_interface": if_dropped,
                         "missed": capture.missed})
        present = interface_indexes()
        names = {index: name for name, index in present.items()}
        left_out = ([(name, f"a port of {master}") for name, master in self._ports if interface_master(name) == master]
                    + [(names.get(index, name), why) for index, (name, why) in self._refused.items()]
                    + [(name, "down") for name in self._down])
        for name, why in sorted(left_out):
            if name in present:
                rows.append({"name": name, "ifindex": present[name], "state": f"not captured: {why}"})
        return {"interfaces": rows}

    @staticmethod
    def status():
        return ""


class InterfaceDown(Exception):
    """The interface went down or away while its capture was being set up."""


class CaptureRefused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# -- what the kernel says about interfaces ---------------------------------------------

CAP_NET_RAW = 13
RTMGRP_LINK = 1
VLAN_CONFIG = "/proc/net/vlan/config"


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


def interface_indexes():
    """{name: ifIndex} of every interface of this network namespace."""
    return {name: index for index, name in socket.if_nameindex()}


def interface_count(name, counter):
    """One of the interface's own counters (/sys/class/net/NAME/statistics), or None."""
    try:
        with open(f"/sys/class/net/{name}/statistics/{counter}") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def interface_drops(name, way):
    """What the interface dropped in that direction (its counters), or None."""
    counts = [interface_count(name, counter) for counter in DROPPED[way]]
    return None if None in counts else sum(counts)


def interface_up(name):
    """Whether the interface is administratively up."""
    try:
        with open(f"/sys/class/net/{name}/flags") as f:
            return bool(int(f.read(), 16) & IFF_UP)
    except (OSError, ValueError):
        return False


def interface_description(name):
    """The interface's alias (ip link set NAME alias TEXT), else its name: what SNMP's
    ifAlias/ifDescr would say."""
    try:
        with open(f"/sys/class/net/{name}/ifalias", errors="replace") as f:
            return f.read().strip() or name
    except OSError:
        return name


def interface_master(name):
    """The bridge or bond an interface is a port of, or None (also for the masters that do
    not take their ports' packets up as their own: Open vSwitch, a VRF)."""
    try:
        master = os.path.basename(os.readlink(f"/sys/class/net/{name}/master"))
    except OSError:
        return None
    if os.path.exists(f"/sys/class/net/{master}/bridge") or os.path.exists(f"/sys/class/net/{master}/bonding"):
        return master
    return None


def vlan_subinterfaces():
    """[(name, VLAN id, parent)] of the 802.1Q sub-interfaces (none if 8021q is not loaded)."""
    try:
        with open(VLAN_CONFIG) as f:
            return parse_vlan_config(f.read())
    except OSError:
        return []


def parse_vlan_config(text):
    """/proc/net/vlan/config: two heading lines, then 'NAME | VID | PARENT' per sub-interface."""
    found = []
    for line in text.splitlines()[2:]:
        parts = [part.strip() for part in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            found.append((parts[0], int(parts[1]), parts[2]))
    return found


def vlan_bitmap(vids):
    """4096 bits, one per VLAN id, as the meter reads them."""
    bits = bytearray(512)
    for vid in vids:
        bits[vid >> 3] |= 1 << (vid & 7)
    return bytes(bits)


def link_events():
    """A netlink socket that becomes readable when an interface is added, removed or changes
    state (None if the kernel will not give one: the periodic rescan still runs)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        sock.bind((0, RTMGRP_LINK))
    except OSError:
        return None
    return sock


def drain(sock):
    """Read every waiting message: what changed is read from the kernel afresh anyway."""
    while True:
        try:
            if not sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:               # ENOBUFS: events were lost; the rescan reads them all
            return
