"""pyprobe generate: synthetic flow records for testing collectors, exported through the
probe's own encoders, transports and flags, with the records written beside (--expect).

The records are made in compiled code (ext/_generate.pyx) from a traffic profile
(profile.py), paced evenly (Pacer), dealt out to N simulated exporters (each an
Exporter of its own: observation domain, sequence numbers, uptime, templates,
optionally its own source address), and printed when no collector is given.
"""

import ipaddress
import json
import os
import re
import resource
import signal
import struct
import sys
import time

from .. import _generate
from .._generate import RecordGenerator
from .._meter import DEFAULT_TIMEOUTS
from ..errors import OutputError, SettingsError, one_line
from ..export import capabilities
from ..exporter import Exporter
from ..fields import MEMBER, RECORD_SIZE
from ..logs import configure, logger
from ..output import JsonWriter, TableWriter, discard_standard_output, standard_output
from ..parsers import INACTIVE_CLASSES, LAST_EXPORT_SECOND
from ..records import to_json_lines
from . import profile as profiles
from .faults import Faults, check_faults

log = logger("pyprobe")

# A classic pcap header: microseconds, native (little-endian) byte order, Ethernet.
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
SLOT = 0.01                 # seconds: records go out every 10 ms, so pacing is even within 100 ms
MAX_BATCH = 8192            # records a step, paced or not: memory stays flat at any rate, kept or not
STEP_S = 0.02               # a step takes at most about this (fewer records a step if they take longer),
                            # so a stop is seen within it
DEFAULT_RATE = 1000.0       # records/s without --rate: a collector's pace, and a pinned time line's spacing
LAG_WARNING_S = 0.25        # seconds behind the rate that are logged (once)
EXPECT_CHUNK = 65536        # --pcap: records written to --expect at a time
BOOT_LEAD_STEP_MS = 7919    # each simulated router booted a little earlier than the one before
MAX_CAPTURE_RECORDS = 2**32 - 1      # a capture's packets name their record in 32 bits (ext/_generate.pyx Slot)
KEY_TABLE_BYTES = 16        # per record at most, while each record's flow key is made distinct
RESERVED_DESCRIPTORS = 64   # open files beside the exporters' sockets: standard streams, --expect, Python's own
IPV6_RECORD = re.compile(b"\x06")
NOT_CARRIED = {"fault": "ipv6-not-carried", "record": "not_sent"}


def paced_rate(settings):
    """Records/s to pace at: --rate if given; without it, DEFAULT_RATE towards a collector and
    as fast as possible (0) when only printing (nothing downstream to overrun)."""
    if settings.rate is not None:
        return settings.rate
    return DEFAULT_RATE if settings.collectors else 0.0


class Pacer:
    """How many records are due at each step: rate records/s dealt out in slots of SLOT
    seconds (each slot the records due by its end), so every 100 ms holds its share. A step
    is at most `batch` records, as many as take about STEP_S (MAX_BATCH at most): a rate the
    machine cannot keep makes it fall behind (lag()), never its steps grow."""

    def __init__(self, rate, limit, deadline=None):
        self.rate = rate
        self.limit = limit          # records in all (0: none)
        self.deadline = deadline    # monotonic seconds (None: none)
        self.started = time.monotonic()
        self.sent = 0
        self.batch = MAX_BATCH

    def took(self, n, seconds):
        """n records were made and sent in `seconds`: the next steps' size follows."""
        self.sent += n
        if seconds > STEP_S:
            self.batch = max(1, int(n * STEP_S / seconds))
        elif seconds < STEP_S / 2 and n == self.batch:
            self.batch = min(MAX_BATCH, 2 * self.batch)

    def due(self, stopped):
        """Records to make now, after sleeping until some are due (in steps of at most SLOT,
        looking at stopped() and the deadline); 0 when stopped, past the deadline or at the limit."""
        while True:
            now = time.monotonic()
            if stopped() or (self.limit and self.sent >= self.limit) or (
                    self.deadline is not None and now >= self.deadline):
                return 0
            if self.rate == 0:
                n = self.batch
                break
            slot = int((now - self.started) / SLOT)
            n = int((slot + 1) * SLOT * self.rate) - self.sent
            if n > 0:
                break
            time.sleep(max(0.0, (slot + 1) * SLOT - (now - self.started)))
        n = min(n, self.batch)
        return min(n, self.limit - self.sent) if self.limit else n

    def lag(self):
        """Seconds the records made so far are behind the rate (0: on time, or no rate)."""
        if not self.rate:
            return 0.0
        return max(0.0, time.monotonic() - self.started - self.sent / self.rate)


def exporter_settings(settings, index):
    """Simulated router `index`: its domain / source id / engine id, boot time and address."""
    address = None
    if settings.exporter_address:
        network = ipaddress.ip_network(settings.exporter_address)
        if index + 1 >= network.num_addresses:
            raise SettingsError(f"--exporter-address {network} has no room for {settings.exporters} exporters")
        address = str(network.network_address + index + 1)
    return settings.export._replace(source_id=(settings.source_id + index) & 0xffffffff,
                                    engine_id=(settings.engine_id + index) & 0xff, source_address=address,
                                    boot_lead_ms=60_000 + (index * BOOT_LEAD_STEP_MS) % 540_000,
                                    stride=RECORD_SIZE,     # (the generator makes whole records)
                                    flush_interval=0)       # (its paced steps are its datagrams)


def memory_available():
    """Bytes this process may still allocate: the memory the system has available, within
    the process's address-space limit and its control group's memory limit."""
    room = []
    try:
        with open("/proc/meminfo") as f:
            room += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError):
        pass
    if not room:
        room.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        room.append(soft - _own_kib("VmSize") * 1024)
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes",
                                                            "memory/memory.usage_in_bytes")):
        try:
            with open(f"/sys/fs/cgroup/{limit}") as f, open(f"/sys/fs/cgroup/{usage}") as g:
                room.append(int(f.read()) - int(g.read()))
        except (OSError, ValueError):          # (no such group, or "max")
            pass
    return max(0, min(room))


def _own_kib(name):
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) for line in f if line.startswith(name + ":")), 0)


def rate_text(rate):
    return f"{rate:,.0f}" if rate >= 1 else f"{rate:g}"


def gib(size):
    return f"{size / 2**30:,.1f} GiB"


def make_room_for_sockets(settings):
    """The open-file limit raised (as far as its hard limit) to hold every exporter's sockets."""
    needed = settings.exporters * len(settings.collectors) + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise SettingsError(f"--exporters {settings.exporters} to {len(settings.collectors)} collector(s) need "
                            f"{needed - RESERVED_DESCRIPTORS} sockets, more than the open-file limit {hard} leaves "
                            "room for (ulimit -n)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def ipv6_indices(batch):
    """The indices of the IPv6 records in packed records."""
    return [m.start() for m in IPV6_RECORD.finditer(batch[MEMBER["ipver"].offset::RECORD_SIZE])]


class Generator:
    """One run of pyprobe generate."""

    def __init__(self, settings):
        if settings.pcap and (settings.collectors or not settings.count):
            raise SettingsError("--pcap writes a capture of --count records' packets, and exports nothing "
                                "(give --count, no -n)")
        if settings.pcap and dict(DEFAULT_TIMEOUTS, **settings.timeouts)["maxlife"] <= 0:
            raise SettingsError("--pcap with -t active=0 cuts every flow at its second packet: no record would be "
                                "one flow (give more than 0)")
        self.pace = paced_rate(settings)
        settings = settings._replace(rate=DEFAULT_RATE if settings.rate is None else settings.rate)
        self.settings = settings
        self.exporters = []
        self.closed = False
        self.expect = self.capture = self.writer = None
        self.stop_requested = False
        self.made = 0
        self.started = None
        self.pacer = None
        self.lag = None             # seconds behind the rate when the run ended
        self.lag_warned = False
        self.turn = 0
        self.packets = 0
        # record i ends at start + i * step_us when the time line is pinned (--start-time, --pcap)
        self.step_us = 1e6 / settings.rate if settings.rate else 1.0
        self.start_s = (settings.start_time if settings.start_time is not None else
                        time.time() if settings.pcap else None)
        if settings.pcap:
            self.check_capture_records()
        self.limit = self.records_in_time_line()
        tables = profiles.load(settings.profile) if settings.profile else profiles.default_tables()
        self.seed = settings.seed if settings.seed is not None else time.time_ns() & (2**64 - 1)
        try:
            self.records = RecordGenerator(tables, self.seed)
        except (ValueError, TypeError) as e:
            raise SettingsError(f"--profile: {e}") from None
        try:
            self.open_outputs()
            self.open_exporters()
        except (SettingsError, OutputError):
            self.abandon()
            raise

    def records_in_time_line(self):
        """--count, or with a pinned time line the records that end by the last second an export
        can state (SettingsError if --count asks more)."""
        settings = self.settings
        if self.start_s is None:
            return settings.count
        fit = int((LAST_EXPORT_SECOND - self.start_s) * 1e6 / self.step_us) + 1
        if settings.count > fit:
            start = "--start-time" if settings.start_time is not None else "now"
            raise SettingsError(f"--count {settings.count} at --rate {settings.rate:g} from {start}: the records after "
                                f"the first {fit} would end past {LAST_EXPORT_SECOND} (2106-02-07), the last time a "
                                "NetFlow header can state")
        return settings.count or fit

    def check_capture_records(self):
        """--pcap holds its records in memory: refuse a --count it cannot hold, before any is made."""
        count = self.settings.count
        needed, room = count * (RECORD_SIZE + KEY_TABLE_BYTES), memory_available()
        if count > MAX_CAPTURE_RECORDS or needed > room:
            raise SettingsError(f"--pcap --count {count}: the records need {gib(needed)} of memory, and {gib(room)} "
                                f"is available (a capture holds at most {MAX_CAPTURE_RECORDS} records)")

    def open_outputs(self):
        settings = self.settings
        if settings.pcap:
            try:
                self.capture = open(settings.pcap, "wb")
            except OSError as e:
                raise SettingsError(f"--pcap: cannot write {settings.pcap}: {e.strerror}") from None
        if settings.expect:
            try:
                self.expect = open(settings.expect, "w")
            except OSError as e:
                raise SettingsError(f"--expect: cannot write {settings.expect}: {e.strerror}") from None
        if (not settings.collectors and not settings.pcap) or settings.json:
            with standard_output():
                self.writer = JsonWriter(sys.stdout) if settings.json else TableWriter(sys.stdout)

    def open_exporters(self):
        settings = self.settings
        if not settings.collectors:
            return
        interpose = None
        if settings.faults:
            if settings.round_robin:
                raise SettingsError("--fault cannot be combined with -l yet")
            for spec in settings.collectors:
                check_faults(settings.faults, capabilities(spec.version))
            interpose = lambda encoder: Faults(settings.faults, encoder)     # noqa: E731 (one per collector)
        make_room_for_sockets(settings)
        for i in range(settings.exporters):
            try:
                self.exporters.append(Exporter(settings.collectors, exporter_settings(settings, i),
                                               settings.round_robin, interpose))
            except OSError as e:
                raise SettingsError(f"--exporters {settings.exporters}: exporter {i} cannot open its socket: "
                                    f"{e.strerror}") from None

    def clock_us(self, index):
        """When record `index` ends: the pinned epoch plus index/rate, or the wall clock."""
        if self.start_s is not None:
            return int(self.start_s * 1e6 + index * self.step_us)
        return time.time_ns() // 1000

    def run(self):
        if self.settings.pcap:
            return self.write_capture()
        settings = self.settings
        self.started = time.monotonic()
        self.pacer = pacer = Pacer(self.pace, self.limit,
                                   self.started + settings.duration if settings.duration else None)
        for exporter in self.exporters:
            exporter.start(self.clock_us(0) // 1000)
        progress = Progress(settings) if settings.progress == "always" or (
            settings.progress == "auto" and sys.stderr.isatty()) else None
        step_us = self.step_us if self.start_s is not None else 0.0    # (else: all end now)
        while True:
            n = pacer.due(lambda: self.stop_requested)
            if n <= 0:
                break
            began = time.monotonic()
            end_us = self.clock_us(self.made)
            batch = self.records.make(n, end_us, step_us)
            self.put(batch, (end_us + int(step_us * (n - 1))) // 1000)
            self.made += n
            pacer.took(n, time.monotonic() - began)
            self.warn_of_lag()
            if progress:
                progress.update(self.made, time.monotonic() - self.started)
        self.lag = pacer.lag()
        if progress:
            progress.finish()
        self.close()

    def warn_of_lag(self):
        if not self.lag_warned and self.pacer.lag() > LAG_WARNING_S:
            self.lag_warned = True
            made = self.made / (time.monotonic() - self.started)
            log.warning("cannot keep --rate %s records/s: %s records/s made, %.1f s behind and going on as fast "
                        "as it can", rate_text(self.pace), rate_text(made), self.pacer.lag())

    def write_capture(self):
        """--pcap: every record's packets, in time order, and the records a probe must make."""
        settings = self.settings
        self.started = time.monotonic()
        timeouts = dict(DEFAULT_TIMEOUTS, **settings.timeouts)
        try:
            records = self.records.make_distinct(settings.count, self.clock_us(0), self.step_us)
        except ValueError as e:
            raise SettingsError(f"--pcap: {e}") from None
        # gaps and durations a little inside the timeouts, so that each record is one flow
        _generate.settle(records, 0.9 * min(timeouts[name] for name in INACTIVE_CLASSES), 0.9 * timeouts["maxlife"])
        self.packets = _generate.packet_total(records)
        needed, room = self.packets * _generate.SLOT_BYTES, memory_available()
        if needed > room:
            raise SettingsError(f"--pcap: the {settings.count} records' {self.packets} packets need {gib(needed)} of "
                                f"memory to be put in time order, and {gib(room)} is available (give a smaller "
                                "--count, or fewer packets a flow in --profile)")
        capture = _generate.Capture(records)
        capture.end_reasons({name: int(round(seconds * 1e6)) for name, seconds in timeouts.items()})
        if not self.write_packets(capture):
            return self.close()
        del capture
        self.made = settings.count
        for start in range(0, len(records), EXPECT_CHUNK * RECORD_SIZE):
            self.put(bytes(records[start:start + EXPECT_CHUNK * RECORD_SIZE]), 0)   # (no exporters)
        self.close()

    def write_packets(self, capture):
        """The capture file; False if stopped before its end (what was written is left, and said)."""
        try:
            self.capture.write(PCAP_HEADER)
            for chunk in capture.frames(self.settings.pcap_snaplen):
                if self.stop_requested:
                    log.warning("stopped: %s holds the packets of its first seconds only, and no records were "
                                "written to --expect", self.settings.pcap)
                    return False
                self.capture.write(chunk)
            self.capture.close()
        except OSError as e:
            raise OutputError(f"--pcap: cannot write {self.settings.pcap}: {e.strerror}") from None
        return True

    def put(self, batch, now_ms):
        """Deal the records out to the exporters (each a whole share), print and note them."""
        marks = self.export(batch, now_ms) if self.exporters else {}
        if self.writer is not None:
            with standard_output():
                self.writer.write(batch)
        if self.expect is not None:
            text = to_json_lines(batch).decode()
            if marks:                       # the few records a fault touched carry what it did
                lines = text.split("\n")
                for i, faults in marks.items():
                    lines[i] = lines[i][:-1] + ', "faults": ' + json.dumps(faults) + "}"
                text = "\n".join(lines)
            try:
                self.expect.write(text)
            except OSError as e:
                raise OutputError(f"--expect: cannot write {self.settings.expect}: {e.strerror}") from None

    def export(self, batch, now_ms):
        """The records to the exporters; {record index: [what befell it at a collector]}: faults,
        and IPv6 records a collector's version cannot carry."""
        marks = {}
        n = len(batch) // RECORD_SIZE
        share = -(-n // len(self.exporters))
        for start in range(0, n, share):
            exporter = self.exporters[self.turn]
            part = batch[start * RECORD_SIZE:(start + share) * RECORD_SIZE]
            exporter.export(part, now_ms)
            exporter.pump()
            ipv6 = None
            for collector in exporter.collectors:
                for indices, mark, kind in collector.marks:
                    for i in indices:
                        marks.setdefault(start + i, []).append(
                            {"collector": collector.name, "fault": kind, "record": mark})
                collector.marks.clear()
                if not collector.capabilities.ipv6:
                    ipv6 = ipv6_indices(part) if ipv6 is None else ipv6
                    lost = NOT_CARRIED if not exporter.round_robin or not any(
                        c.capabilities.ipv6 for c in exporter.collectors) else dict(NOT_CARRIED, record="may_lack")
                    for i in ipv6:
                        marks.setdefault(start + i, []).append({"collector": collector.name, **lost})
            self.turn = (self.turn + 1) % len(self.exporters)
        return marks

    def close(self):
        """The end of a run: everything sent, written and closed (OutputError if it cannot be)."""
        if not self.closed:
            self.closed = True
            for exporter in self.exporters:
                exporter.close()
        for name, f in (("--expect", self.expect), ("--pcap", self.capture)):
            if f is not None:
                try:
                    f.close()
                except OSError as e:
                    raise OutputError(f"{name}: cannot write {f.name}: {e.strerror}") from None
        self.expect = self.capture = None
        with standard_output():
            sys.stdout.flush()

    def abandon(self):
        """After a failure: close what is open, the failure said already."""
        try:
            self.close()
        except (OSError, OutputError):
            for f in (self.expect, self.capture):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            self.expect = self.capture = None
            discard_standard_output()

    def summary(self):
        seconds = time.monotonic() - self.started if self.started else 0.0
        rate = self.made / seconds if seconds > 0 else 0.0
        lines = ["pyprobe generate statistics:",
                 f"  records               {self.made:>12}   ({seconds:.2f} s, {rate:,.0f} records/s; seed {self.seed})"]
        if self.lag is not None and self.pace:
            lines.append(f"  rate                  asked {rate_text(self.pace)} records/s, achieved "
                         f"{rate:,.0f}: " + (f"{self.lag:.2f} s behind at the end" if self.lag >= 0.1 else "on time"))
        if self.settings.pcap:
            lines.append(f"  packets               {self.packets:>12}   written to {self.settings.pcap}")
        for i, exporter in enumerate(self.exporters):
            for c, collector in zip(exporter.statistics(), exporter.collectors):
                faults = collector.interposed.counts if collector.interposed else {}
                lines.append(f"  exporter {i} to {c['collector']} ({c['version']}): {c['datagrams']} datagrams, "
                             f"{c['records']} records, {c['send_errors']} send errors"
                             + "".join(f", {kind} {n}" for kind, n in sorted(faults.items())))
        return "\n".join(lines)


class Progress:
    def __init__(self, settings):
        self.settings = settings
        self.next_update = 0.0

    def update(self, made, elapsed):
        now = time.monotonic()
        if now < self.next_update:
            return
        self.next_update = now + 0.25
        rate = made / elapsed if elapsed > 0 else 0.0
        left = ""
        if self.settings.count and rate:
            left = f"  {max(0.0, (self.settings.count - made) / rate):.0f} s left"
        elif self.settings.duration:
            left = f"  {max(0.0, self.settings.duration - elapsed):.0f} s left"
        sys.stderr.write(f"\r  {made:,} records  {rate:,.0f}/s  {elapsed:.0f} s{left} ")
        sys.stderr.flush()

    @staticmethod
    def finish():
        sys.stderr.write("\r" + " " * 80 + "\r")
        sys.stderr.flush()


def main(settings):
    """Make and send the records of these settings (pyprobe/cli.py parses them); the exit status."""
    try:
        configure(debug=settings.debug)
        generator = Generator(settings)
    except BrokenPipeError:                 # (the reader of the records went away: not an error)
        discard_standard_output()
        return 0
    except (SettingsError, OutputError) as e:
        print(f"pyprobe generate: {one_line(e)}", file=sys.stderr)
        return 2

    def stop(signum, frame):
        generator.stop_requested = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        generator.run()
    except BrokenPipeError:
        generator.abandon()
        return 0
    except (SettingsError, OutputError) as e:
        generator.abandon()
        print(f"pyprobe generate: {one_line(e)}", file=sys.stderr)
        return 2
    if not settings.quiet:
        print(generator.summary(), file=sys.stderr, flush=True)
    return 0


__all__ = ["Generator", "main"]
