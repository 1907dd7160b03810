"""pyprobe generate: synthetic flow records for testing collectors, exported through the
probe's own encoders, transports and flags, with the records written beside (--expect).

The records are made in compiled code (ext/_generate.pyx) from a traffic profile
(profile.py), paced evenly (Pacer), dealt out to N simulated exporters (each an
Exporter of its own: observation domain, sequence numbers, uptime, templates,
optionally its own source address), and printed when no collector is given.
"""

import ipaddress
import json
import signal
import struct
import sys
import time

from .. import settings as settings_module
from .. import _generate
from .._generate import RecordGenerator
from .._meter import DEFAULT_TIMEOUTS, RECORD_SIZE
from ..errors import SettingsError
from ..export import capabilities
from ..exporter import Exporter
from ..logs import configure, logger
from ..output import JsonWriter, TableWriter
from ..records import to_json_lines, unpack
from . import profile as profiles
from .faults import Faults, check_faults

log = logger("pyprobe")

# A classic pcap header: microseconds, native (little-endian) byte order, Ethernet.
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
SLOT = 0.01                 # seconds: records go out every 10 ms, so pacing is even within 100 ms
FAST_BATCH = 8192           # records per step at --rate 0
BOOT_LEAD_STEP_MS = 7919    # each simulated router booted a little earlier than the one before


class Pacer:
    """How many records are due at each step: rate records/s dealt out in slots of SLOT
    seconds (each slot the records due by its end), so every 100 ms holds its share."""

    def __init__(self, rate, limit):
        self.rate = rate
        self.limit = limit          # records in all (0: none)
        self.started = time.monotonic()
        self.sent = 0

    def due(self):
        """Records to make now, after sleeping until some are due; 0 when the limit is reached."""
        if self.limit and self.sent >= self.limit:
            return 0
        if self.rate == 0:
            n = FAST_BATCH
        else:
            while True:
                slot = int((time.monotonic() - self.started) / SLOT)
                n = int((slot + 1) * SLOT * self.rate) - self.sent
                if n > 0:
                    break
                time.sleep(max(0.0, (slot + 1) * SLOT - (time.monotonic() - self.started)))
        return min(n, self.limit - self.sent) if self.limit else n


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
                                    stride=RECORD_SIZE)     # (the generator makes whole records)


class Generator:
    """One run of pyprobe generate."""

    def __init__(self, settings):
        if settings.pcap and (settings.collectors or not settings.count):
            raise SettingsError("--pcap writes a capture of --count records' packets, and exports nothing "
                                "(give --count, no -n)")
        self.settings = settings
        # record i ends at start + i * step_us when the time line is pinned (--start-time, --pcap)
        self.step_us = 1e6 / settings.rate if settings.rate else 1.0
        tables = profiles.load(settings.profile) if settings.profile else profiles.default_tables()
        self.seed = settings.seed if settings.seed is not None else time.time_ns() & (2**64 - 1)
        try:
            self.records = RecordGenerator(tables, self.seed)
        except (ValueError, TypeError) as e:
            raise SettingsError(f"--profile: {e}") from None
        self.exporters = []
        self.expect = None
        interpose = None
        if settings.faults:
            if settings.round_robin:
                raise SettingsError("--fault cannot be combined with -l yet")
            for spec in settings.collectors:
                check_faults(settings.faults, capabilities(spec.version))
            interpose = lambda encoder: Faults(settings.faults, encoder)     # noqa: E731 (one per collector)
        try:
            for i in range(settings.exporters if settings.collectors else 0):
                self.exporters.append(Exporter(settings.collectors, exporter_settings(settings, i),
                                               settings.round_robin, interpose))
        except SettingsError:
            self.close()
            raise
        self.writer = None
        if (not settings.collectors and not settings.pcap) or settings.json:
            self.writer = JsonWriter(sys.stdout) if settings.json else TableWriter(sys.stdout)
        try:
            self.expect = open(settings.expect, "w") if settings.expect else None
        except OSError as e:
            self.close()
            raise SettingsError(f"--expect: cannot write {settings.expect}: {e.strerror}") from None
        self.stop_requested = False
        self.made = 0
        self.started = None
        self.turn = 0
        self.packets = 0

    def clock_us(self, index):
        """When record `index` ends: the pinned epoch plus index/rate, or the wall clock."""
        if self.settings.start_time is not None:
            return int(self.settings.start_time * 1e6 + index * self.step_us)
        return time.time_ns() // 1000

    def run(self):
        if self.settings.pcap:
            return self.write_capture()
        settings = self.settings
        self.started = time.monotonic()
        pacer = Pacer(settings.rate, settings.count)
        deadline = self.started + settings.duration if settings.duration else None
        for exporter in self.exporters:
            exporter.start(self.clock_us(0) // 1000)
        progress = Progress(settings) if settings.progress == "always" or (
            settings.progress == "auto" and sys.stderr.isatty()) else None
        while not self.stop_requested:
            n = pacer.due()
            if n <= 0 or (deadline is not None and time.monotonic() >= deadline):
                break
            end_us = self.clock_us(self.made)
            step_us = self.step_us if settings.start_time is not None else 0.0    # (else: all end now)
            batch = self.records.make(n, end_us, step_us)
            self.put(batch, (end_us + int(step_us * (n - 1))) // 1000)
            self.made += n
            pacer.sent += n
            if progress:
                progress.update(self.made, time.monotonic() - self.started)
        if progress:
            progress.finish()
        self.close()

    def write_capture(self):
        """--pcap: every record's packets, in time order, and the records a probe must make."""
        settings = self.settings
        self.started = time.monotonic()
        timeouts = dict(DEFAULT_TIMEOUTS, **settings.timeouts)
        inactive = min(timeouts[name] for name in ("general", "tcp", "udp", "icmp"))
        records = self.records.make(settings.count, self.clock_us(0), self.step_us)
        # gaps and durations a little inside the timeouts, so that each record is one flow
        records = _generate.settle(records, 0.9 * inactive, 0.9 * timeouts["maxlife"])
        self.packets, capture_end_us = _generate.packets_and_end(records)
        try:
            with open(settings.pcap, "wb") as f:
                f.write(PCAP_HEADER)
                for chunk in _generate.pcap_frames(records, settings.pcap_snaplen):
                    f.write(chunk)
        except OSError as e:
            raise SettingsError(f"--pcap: cannot write {settings.pcap}: {e.strerror}") from None
        expected = _generate.end_reasons(records, capture_end_us,
                                         {name: int(round(seconds * 1e6)) for name, seconds in timeouts.items()})
        self.made = settings.count
        self.put(expected, 0)                 # (no exporters: printed and written to --expect only)
        self.close()

    def put(self, batch, now_ms):
        """Deal the records out to the exporters (each a whole share), print and note them."""
        faulted = {}
        if self.exporters:
            n = len(batch) // RECORD_SIZE
            share = -(-n // len(self.exporters))
            for start in range(0, n, share):
                exporter = self.exporters[self.turn]
                exporter.export(batch[start * RECORD_SIZE:(start + share) * RECORD_SIZE], now_ms)
                exporter.pump()
                for collector in exporter.collectors:
                    for indices, mark, kind in collector.marks:
                        for i in indices:
                            faulted.setdefault(start + i, []).append(
                                {"collector": collector.name, "fault": kind, "record": mark})
                    collector.marks.clear()
                self.turn = (self.turn + 1) % len(self.exporters)
        if self.writer is not None:
            self.writer.write(batch)
        if self.expect is not None:
            if not faulted:
                self.expect.write(to_json_lines(batch).decode())
            else:                       # the few records a fault touched carry what it did
                self.expect.write("".join(json.dumps(dict(r.as_dict(), faults=faulted[i]) if i in faulted
                                                     else r.as_dict()) + "\n" for i, r in enumerate(unpack(batch))))

    def close(self):
        for exporter in self.exporters:
            exporter.close()
        if self.expect:
            self.expect.close()
            self.expect = None
        sys.stdout.flush()

    def summary(self):
        seconds = time.monotonic() - self.started if self.started else 0.0
        rate = self.made / seconds if seconds > 0 else 0.0
        lines = ["pyprobe generate statistics:",
                 f"  records               {self.made:>12}   ({seconds:.2f} s, {rate:,.0f} records/s; seed {self.seed})"]
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


def main(argv):
    try:
        settings = settings_module.parse(argv, command="generate")
        configure(debug=settings.debug)
        generator = Generator(settings)
    except SettingsError as e:
        print(f"pyprobe generate: {e}", file=sys.stderr)
        return 2

    def stop(signum, frame):
        generator.stop_requested = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        generator.run()
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    if not settings.quiet:
        print(generator.summary(), file=sys.stderr, flush=True)
    return 0


__all__ = ["Generator", "main"]
