"""The running probe: a packet source, the flow meter and where records go,
driven batch by batch, with the operations an operator may ask for."""

import logging
import os
import signal
import sys
import time

from ._meter import DEFAULT_TIMEOUTS, RECORD_SIZE, SUPPORTED_LINKTYPES, Meter
from .exporter import Exporter
from .output import JsonWriter, TableWriter
from .records import unpack
from .source import CaptureError, FileSource, LiveSource, interface_index
from .summary import format_summary

log = logging.getLogger("pyprobe")

FLUSH_CHUNK = 8192                  # records per step when the cache empties
MAX_UPTIME_ACTIVE = 24 * 86400      # v5/v9: 2**31 ms of uptime, less a margin


class ConfigError(Exception):
    """Settings that cannot work: one line, exit 2."""


LINKTYPE_NAMES = {0: "BSD loopback", 1: "Ethernet", 9: "PPP", 10: "FDDI", 12: "raw IP", 14: "raw IP",
                  101: "raw IP", 104: "Cisco HDLC", 105: "802.11", 107: "Frame Relay", 108: "OpenBSD loopback",
                  113: "Linux cooked (SLL)", 127: "802.11 radiotap", 226: "Solaris IPNET", 228: "raw IPv4",
                  229: "raw IPv6", 239: "Linux NFLOG", 276: "Linux cooked v2 (SLL2)"}


def install_signal_handlers(probe):
    """SIGINT/SIGTERM: stop reading, expire every flow, report. SIGHUP: re-read the settings.
    SIGUSR1: resend templates."""
    def stop(signum, frame):
        if not probe.stop_requested:
            log.warning("stopped by a signal: expiring every flow")
        probe.stop()

    def reload(signum, frame):
        probe.reload_requested = True

    for sig, handler in ((signal.SIGINT, stop), (signal.SIGTERM, stop), (signal.SIGHUP, reload),
                         (signal.SIGUSR1, lambda signum, frame: probe.send_templates())):
        signal.signal(sig, handler)
        # Restart interrupted reads: a stream's feeder ends it cleanly instead (see source.py).
        signal.siginterrupt(sig, False)


class Progress:
    """A one-line progress display on a terminal, at most four updates a second."""

    def __init__(self, stream, total_bytes):
        self.stream = stream
        self.total = total_bytes
        self.done = 0
        self.next_update = 0.0

    def update(self, batch_bytes, packets, active_flows):
        self.done += batch_bytes
        now = time.monotonic()
        if now < self.next_update:
            return
        self.next_update = now + 0.25
        share = f"{min(100.0, 100.0 * self.done / self.total):5.1f}%  " if self.total else ""
        self.stream.write(f"\r  {share}{packets:,} packets  {active_flows:,} flows active ")
        self.stream.flush()

    def finish(self):
        self.stream.write("\r" + " " * 70 + "\r")
        self.stream.flush()


def open_progress(source, mode):
    """By default, progress only where someone watches it: a terminal, and input worth waiting for."""
    if mode == "never" or (mode == "auto" and (not sys.stderr.isatty()
                                               or (source.size is not None and source.size < 32 << 20))):
        return None
    return Progress(sys.stderr, source.size)


def make_exporter(args):
    return Exporter(args.collectors, args.export, args.round_robin) if args.collectors else None


class RecordSinks:
    """Where expired records go: collectors, the screen, or both."""

    def __init__(self, args, meter):
        self.meter = meter
        self.live = args.interface is not None
        self.writer = None
        self._attach(args, make_exporter(args))

    def _attach(self, args, exporter):
        """Export to these collectors; print when asked to (--json) or when there are none."""
        self.exporter = exporter
        self.started = False
        if self.writer is None and (args.json or exporter is None):
            self.writer = JsonWriter(sys.stdout) if args.json else TableWriter(sys.stdout)

    def put(self, records):
        if self.exporter is not None:
            now_ms = self.meter.clock_us // 1000
            if not self.started:
                self.exporter.start(now_ms)
                self.started = True
            if records:
                self.exporter.export(records, now_ms, self.meter.packets_ignored)
            self.exporter.pump()
        if self.writer is not None and records:
            self.writer.write(unpack(records))
            if self.live:
                sys.stdout.flush()           # a reader of a live run wants each record when it ends

    def replace_collectors(self, args):
        """New collectors from reloaded settings; the old ones are closed (TCP drains first)."""
        try:
            exporter = make_exporter(args)
        except ValueError as e:
            log.error("reload: keeping the running collectors: %s", e)
            return
        if self.exporter is not None:
            self.exporter.close()
        self._attach(args, exporter)

    def close(self):
        if self.exporter is not None:
            self.exporter.close()
        sys.stdout.flush()

    def statistics(self):
        return self.exporter.statistics() if self.exporter is not None else []


def open_source(args):
    """The capture file or the live interface; and the input interface index for the flows."""
    if args.interface is not None:
        index, sep, name = args.interface.partition(":")
        if not sep or not index.isdigit():
            index, name = None, args.interface
        source = LiveSource(name, snaplen=args.snaplen, promiscuous=not args.no_promisc, bpf=args.filter,
                            buffer_bytes=args.buffer, fanout_group=getattr(args, "fanout_group", None))
        in_if = int(index) if index is not None else interface_index(name)
    else:
        source = FileSource(args.read)
        if args.filter:
            source.set_filter(args.filter)
        in_if = 0
    if source.linktype not in SUPPORTED_LINKTYPES:
        name = LINKTYPE_NAMES.get(source.linktype, "unknown")
        raise CaptureError(f"{source.path}: link type {source.linktype} ({name}) is not supported; "
                           "pyprobe reads Ethernet, Linux SLL/SLL2, raw IP and BSD loopback")
    return source, in_if


def write_pidfile(path):
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as e:
        raise ConfigError(f"cannot write pid file {path}: {e.strerror}") from None


def uptime_safe_timeouts(args):
    """v5/v9 records carry 32-bit uptime milliseconds: a record may not last longer."""
    if any(spec.version in (5, 9) for spec in args.collectors):
        active = args.timeouts.get("maxlife", DEFAULT_TIMEOUTS["maxlife"])
        if active > MAX_UPTIME_ACTIVE:
            log.warning("active timeout %gs is longer than NetFlow v5/v9 times can say; using %ds",
                        active, MAX_UPTIME_ACTIVE)
            return {**args.timeouts, "maxlife": MAX_UPTIME_ACTIVE}
    return args.timeouts


class Probe:
    """A running probe: source, meter, record sinks, and what the control socket,
    the metrics endpoint and signals may ask of it between two batches."""

    def __init__(self, args):
        self.args = args
        self.source, in_if = open_source(args)
        self.timeouts = uptime_safe_timeouts(args)
        needs_32bit = any(spec.version == 5 for spec in args.collectors)
        self.meter = Meter(self.source.linktype, max_flows=args.max_flows, key_level=args.level,
                           timeouts=self.timeouts, in_if=in_if, sampling=args.sampling,
                           sampling_mode=args.sampling_mode, limit_32bit=needs_32bit)
        try:
            self.sinks = RecordSinks(args, self.meter)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.started = time.monotonic()
        self.stop_requested = False
        self.reload_requested = False
        self.reload = lambda: None        # set by the command line: re-read flags and config file
        self.pollers = []                 # called once per batch: control socket, ...
        self.capture_drops = None

    # -- the loop ---------------------------------------------------------------

    def run(self):
        progress = open_progress(self.source, self.args.progress)
        for packets, meta in self.source.batches():
            self.sinks.put(self.meter.process(packets, meta))
            if self.source.live:             # the wall clock runs on even when the link is quiet
                self.sinks.put(self.meter.expire(time.time_ns() // 1000))
            if progress:
                progress.update(len(packets) + len(meta), self.source.packets, self.meter.active_flows)
            for poll in self.pollers:
                poll()
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            if self.stop_requested:
                break
        self.capture_drops = self.source.drops()
        self.source.close()
        if progress:
            progress.finish()
        if self.source.packets:             # (a capture whose clock reads 0 still has flows to flush)
            self.expire_all()
        self.sinks.close()

    # -- what an operator may ask -----------------------------------------------

    def stop(self):
        self.stop_requested = True
        self.source.stop()

    def expire_all(self):
        """End every flow now and export it; returns how many."""
        count = 0
        while True:
            records = self.meter.flush(FLUSH_CHUNK)
            self.sinks.put(records)
            if not records:
                return count
            count += len(records) // RECORD_SIZE

    def delete_all(self):
        return self.meter.delete_all()

    def dump_flows(self):
        return unpack(self.meter.snapshot())

    def send_templates(self):
        if self.sinks.exporter is not None:
            self.sinks.exporter.request_templates()

    def set_timeouts(self, timeouts):
        self.timeouts = timeouts
        self.meter.set_timeouts(timeouts)

    def statistics(self):
        """Everything countable, as plain data (control socket, metrics, summary)."""
        drops = self.capture_drops if self.capture_drops is not None else self.source.drops()
        return {"seconds": time.monotonic() - self.started, "meter": self.meter.stats(),
                "capture": None if drops is None else dict(zip(("received", "dropped", "if_dropped"), drops)),
                "collectors": self.sinks.statistics(), "timeouts": dict(DEFAULT_TIMEOUTS, **self.timeouts)}

    def summary(self):
        stats = self.statistics()
        capture = stats["capture"]
        drops = None if capture is None else (capture["received"], capture["dropped"], capture["if_dropped"])
        return format_summary(stats["meter"], stats["seconds"], self.source, stats["collectors"], drops)
