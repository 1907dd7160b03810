"""The running probe: a packet source, the flow meter and where records go,
driven batch by batch, with the operations an operator may ask for."""

import sys
import time

from ._encode import whole_records
from ._meter import DEFAULT_TIMEOUTS, DecodedBatch, Meter
from .errors import ControlError, InputError, SettingsError
from .export import clamp_timeouts, export_limits
from .exporter import Exporter
from .logs import logger
from .output import JsonWriter, TableWriter, open_progress, standard_output
from .source import open_source, without_own_traffic
from .summary import format_summary

log = logger("pyprobe")

FLUSH_CHUNK = 8192                  # records per step when the cache empties
REAL_TIME_EXPORT_RATE = 10_000      # datagrams/s to a collector while capturing or replaying in real time


def make_exporter(settings, ticking, running=()):
    """The collectors' exporter; ticking: the source runs in real time, where a collector
    takes the records as they come (paced), not a file read as fast as it can be."""
    if not settings.collectors:
        return None
    export = settings.export
    if export.export_rate is None:
        export = export._replace(export_rate=REAL_TIME_EXPORT_RATE if ticking else 0)
    return Exporter(settings.collectors, export, settings.round_robin, running=running)


class RecordSinks:
    """Where expired records go: collectors, the screen, or both."""

    def __init__(self, settings, meter, source, monitor=None):
        self.meter = meter
        self.monitor = monitor               # printed records carry it (several monitors)
        self.ticking = source.ticking        # a live or real-time run: records are read (and collected) as they come
        self.dating = source.dating          # a real-time replay dated now, or None
        self.writer = None
        self.record = settings.record_definition    # what the screen's writer shows
        self.stride = meter.stride           # bytes per record
        self.retired = []                    # statistics of collectors a reload closed
        self.interfaces = []                 # what the collectors are told is captured
        self._attach(settings, make_exporter(settings, self.ticking))

    def _attach(self, settings, exporter):
        """Export to these collectors; print when asked to (--json) or when there are none."""
        self.exporter = exporter
        self.started = False
        if self.writer is None and (settings.json or exporter is None):
            self.writer = JsonWriter if settings.json else TableWriter

    def _open_writer(self):
        """The screen's writer is made when the run begins (a table's heading, with its first rows),
        so an error at start (a control socket that cannot be made) is all that is printed."""
        if isinstance(self.writer, type):
            self.writer = self.writer(sys.stdout, record=self.record, monitor=self.monitor, stride=self.stride)

    def put(self, records):
        with standard_output():
            self._open_writer()
        if records and self.dating is not None:
            records = self.dating.dated_records(records, self.stride)
        if self.exporter is not None:
            clock_us = self.meter.clock_us
            now_ms = (self.dating.export_time_us(clock_us) if self.dating is not None else clock_us) // 1000
            if not self.started:
                self.exporter.start(now_ms)
                self.started = True
            if records:
                self.exporter.export(records, now_ms, self.meter.packets_unmetered)
            self.exporter.flush_due(now_ms)
            self.exporter.pump()
        if self.writer is not None and records:
            with standard_output():
                self.writer.write(records)
                if self.ticking:
                    sys.stdout.flush()

    def replace_collectors(self, settings):
        """Collectors from reloaded settings (SettingsError: the running ones stay). A collector
        whose spec and settings did not change goes on as it was; the others are new, and the
        ones no longer asked for are closed (TCP drains first), their counts kept."""
        running = self.exporter.collectors if self.exporter is not None else ()
        exporter = make_exporter(settings, self.ticking, running)
        gone = exporter.left_over if exporter is not None else list(running)
        for collector in gone:
            collector.close()
        self.retired += [c.statistics() for c in gone]
        self._attach(settings, exporter)      # (start() then gives only the new collectors templates)
        if exporter is not None and self.interfaces:
            exporter.set_interfaces(self.interfaces)

    def set_interfaces(self, interfaces):
        self.interfaces = interfaces
        if self.exporter is not None:
            self.exporter.set_interfaces(interfaces)

    def close(self):
        with standard_output():
            self._open_writer()
            if self.writer is not None:
                self.writer.write(b"")         # (a table that had no rows: its heading alone)
        if self.exporter is not None:
            self.exporter.close()
        with standard_output():
            sys.stdout.flush()

    def statistics(self):
        """Every collector's counts, the ones a reload retired too (so the totals add up)."""
        return self.retired + (self.exporter.statistics() if self.exporter is not None else [])


class Monitor:
    """One monitor: a record definition and cache kind metering the probe's packets into a
    flow table of its own, with its own timeouts and collectors (a [[monitor]] of the
    config file; with none, the flags make the one monitor)."""

    def __init__(self, name, settings, source, named=False):
        """named: records printed carry the monitor's name (there is more than one)."""
        self.name = name
        self.settings = settings
        self.versions = settings.versions
        self.timeouts = {}
        self.meter = Meter(source.linktype, max_flows=settings.max_flows, record=settings.record_definition,
                           sampling=settings.sampling, sampling_mode=settings.sampling_mode,
                           direction=settings.metered_direction, cache=settings.cache, update=settings.update,
                           stride=settings.stride)
        self._apply_export_limits()
        self.set_timeouts(dict(settings.timeouts))
        self.sinks = RecordSinks(settings, self.meter, source, name if named else None)

    def expire_all(self, forced=True):
        """End every flow now and export it; returns how many. forced: the input goes on
        (or was cut off), so the records say forced rather than eof."""
        count = 0
        while True:
            records = self.meter.flush(FLUSH_CHUNK, forced)
            self.sinks.put(records)
            if not records:
                return count
            count += len(records) // self.meter.stride

    def set_timeouts(self, timeouts):
        """The one way timeouts change (start, SIGHUP, control socket): shortened to what the
        export versions in use can state, with a warning; returns the warning or None."""
        self.timeouts, warning = clamp_timeouts(timeouts, self.versions, DEFAULT_TIMEOUTS["maxlife"])
        if warning:
            log.warning("%s", warning)
        self.meter.set_timeouts(self.timeouts)
        return warning

    def _apply_export_limits(self):
        _, counters_32bit = export_limits(self.versions)
        self.meter.set_limit_32bit(counters_32bit)

    def apply(self, settings):
        """Reloaded settings of this monitor: its collectors and timeouts."""
        self.sinks.replace_collectors(settings)
        self.settings = settings
        self.versions = settings.versions
        self._apply_export_limits()
        self.set_timeouts(dict(settings.timeouts))

    def statistics(self):
        return {"name": self.name, "meter": self.meter.stats(), "collectors": self.sinks.statistics(),
                "timeouts": dict(DEFAULT_TIMEOUTS, **self.timeouts)}


# What a flow cache is made with: a reload keeps it (a change needs a restart). The record
# decides the meter's key and the records' layout, which its collectors' encoders must share.
FIXED_AT_START = ("sampling", "sampling_mode", "record", "records", "routes", "cache", "update")


def _as_started(running, settings, whose):
    """Reloaded settings with what FIXED_AT_START names as it runs, a warning for each change."""
    for name in FIXED_AT_START:
        if getattr(settings, name) != getattr(running, name):
            log.warning("reload: %s%s changed; that needs a restart (kept as it runs)", settings.named(name), whose)
    return settings._replace(**{name: getattr(running, name) for name in FIXED_AT_START})


class Probe:
    """A running probe: source, its monitors (each a meter and record sinks), and what the
    control socket, the metrics endpoint and signals may ask of it between two batches."""

    def __init__(self, settings, fanout_group=None):
        self.settings = settings
        self.source = open_source(settings, fanout_group)
        try:
            specs = settings.monitor_specs
            self.monitors = [Monitor(name, each, self.source, named=len(specs) > 1) for name, each in specs]
        except SettingsError:
            self.source.close()
            raise
        self.decoded = (DecodedBatch(self.source.linktype, settings.metered_direction)   # (once for them all)
                        if len(self.monitors) > 1 else None)
        self.route_watch = None
        if settings.routes:
            from . import routes         # (only with routes: it imports subprocess and ipaddress)
            try:
                self._read_routes()
                if settings.routes == routes.KERNEL:
                    self.route_watch = routes.KernelWatch()
            except SettingsError:
                self.source.close()
                raise
        self.started = time.monotonic()
        self.stop_requested = False
        self.stopped_by = None
        self.reload_requested = False
        self.reload = lambda: None        # set by the daemon: read the flags and config file again
        self.pollers = []                 # called once per batch: control socket, ...
        self.capture_drops = None
        self.interfaces_serial = 0

    def _read_routes(self):
        from . import routes
        table = routes.load(self.settings.routes)
        for m in self.monitors:
            m.meter.set_routes(table)
        log.info("routes: %d from %s", len(table), self.settings.routes)

    def _routes_changed(self):
        """--routes kernel: the kernel's table changed, so new flows look up the new one."""
        if self.route_watch is not None and self.route_watch.take_change():
            try:
                self._read_routes()
            except SettingsError as e:
                log.warning("%s; the routes are as they were", e)

    @property
    def meter(self):
        """The first monitor's meter (the only one without [[monitor]] sections)."""
        return self.monitors[0].meter

    @property
    def sinks(self):
        return self.monitors[0].sinks

    @property
    def timeouts(self):
        return self.monitors[0].timeouts

    # -- the loop ---------------------------------------------------------------

    def _meter(self, batch):
        """Each monitor's records of one batch, the batch decoded once."""
        args = (batch.packets, batch.meta, batch.linktype, batch.round, batch.direction, batch.in_if,
                batch.vlans_elsewhere, batch.vlan)
        if self.decoded is None:
            return [self.meter.process(*args)]
        self.decoded.decode(*args)
        return [m.meter.meter_decoded(self.decoded) for m in self.monitors]

    def run(self):
        progress = open_progress(self.source, self.settings.progress)
        for batch in self.source.batches():
            if self.source.serial != self.interfaces_serial:    # interfaces came or went
                self.interfaces_serial = self.source.serial
                interfaces = self.source.interfaces()
                for m in self.monitors:
                    m.sinks.set_interfaces(interfaces)
            for m, records in zip(self.monitors, self._meter(batch)):
                m.sinks.put(records)
            if self.source.ticking:          # the clock runs on between packets
                clock_us = self.source.clock_us()
                for m in self.monitors:
                    m.sinks.put(m.meter.expire(clock_us))
            if progress:
                progress.update(self.source.bytes_read, self.source.packets,
                                sum(m.meter.active_flows for m in self.monitors), self.source.status())
            self._routes_changed()
            for poll in self.pollers:
                poll()
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            # (after stop() a source's batches end soon: a live one's with what it still holds)
        if self.stopped_by:
            log.warning("stopped by %s: expiring every flow", self.stopped_by)
        input_ended = not self.stop_requested and not self.source.live
        self.capture_drops = self.source.drops()
        self.source.close()
        if self.route_watch is not None:
            self.route_watch.close()
        if progress:
            progress.finish()
        for m in self.monitors:
            if self.source.packets:             # (a capture whose clock reads 0 still has flows to flush)
                m.expire_all(forced=not input_ended)
            m.sinks.close()

    # -- what an operator may ask -----------------------------------------------

    def stop(self, by=None):
        """End the run soon; `by` (a signal): said in the log once the run loop sees it."""
        if by and not self.stop_requested:
            self.stopped_by = by
        self.stop_requested = True
        self.source.stop()

    def expire_all(self, forced=True):
        """End every flow of every monitor now and export it; returns how many."""
        return sum(m.expire_all(forced) for m in self.monitors)

    def delete_all(self):
        return sum(m.meter.delete_all() for m in self.monitors)

    def dump_flows(self):
        """The active flows of every monitor as whole packed records (RECORD_SIZE), as they
        stand (dated as the records are)."""
        out = []
        for m in self.monitors:
            records = m.meter.snapshot()
            if m.sinks.dating:
                records = m.sinks.dating.dated_records(records, m.meter.stride)
            out.append(whole_records(records, m.meter.stride))
        return b"".join(out)

    def monitor(self, name=None):
        """The monitor of that name (None: the first); ControlError if there is none."""
        if name is None:
            return self.monitors[0]
        for m in self.monitors:
            if m.name == name:
                return m
        raise ControlError(f"no monitor {name!r} (one of {', '.join(str(m.name) for m in self.monitors)})")

    def send_templates(self):
        for m in self.monitors:
            if m.sinks.exporter is not None:
                m.sinks.exporter.request_templates()

    def apply(self, settings):
        """Reloaded settings: new timeouts and collectors (a live capture's filter leaving out
        their export too), the same flow caches. The rest (input, monitors, cache size, key,
        sampling) needs a restart. SettingsError: nothing changed."""
        settings = _as_started(self.settings, settings, "")
        specs = dict(settings.monitor_specs)
        if list(specs) != [m.name for m in self.monitors]:
            log.warning("reload: the monitors changed; that needs a restart (their collectors and timeouts "
                        "are reloaded where the names match)")
        for m in self.monitors:
            if m.name in specs:
                m.apply(_as_started(m.settings, specs[m.name], f" of monitor {m.name}" if m.name else ""))
        if self.source.live:             # the filter that leaves out the probe's own export
            try:
                self.source.set_filter(without_own_traffic(settings.filter, settings))
            except InputError as e:
                log.warning("reload: %s; the capture filter is as it was", e)
        self.settings = settings

    def statistics(self):
        """Everything countable, as plain data (control socket, metrics, summary): the first
        monitor's as "meter", "collectors" and "timeouts", and every monitor's in "monitors"."""
        drops = self.capture_drops if self.capture_drops is not None else self.source.drops()
        monitors = [m.statistics() for m in self.monitors]
        first = monitors[0]
        return {"seconds": time.monotonic() - self.started, "meter": first["meter"],
                "source": self.source.statistics(),
                "capture": None if drops is None else dict(zip(("received", "dropped", "if_dropped"), drops)),
                "collectors": first["collectors"], "timeouts": first["timeouts"], "monitors": monitors}

    def summary(self, title=None):
        stats = self.statistics()
        capture = stats["capture"]
        drops = None if capture is None else (capture["received"], capture["dropped"], capture["if_dropped"])
        if len(stats["monitors"]) == 1:
            return format_summary(stats["meter"], stats["seconds"], stats["collectors"], drops, title, stats["source"])
        return "\n".join(format_summary(m["meter"], stats["seconds"], m["collectors"], drops,
                                        f"monitor {m['name']}" + (f", {title}" if title else ""), stats["source"])
                         for m in stats["monitors"])
