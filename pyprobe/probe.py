"""The running probe: a packet source, the flow meter and where records go,
driven batch by batch, with the operations an operator may ask for."""

import sys
import time

from ._meter import DEFAULT_TIMEOUTS, RECORD_SIZE, Meter
from .errors import InputError, SettingsError
from .export import clamp_timeouts, export_limits
from .exporter import Exporter
from .logs import logger
from .output import JsonWriter, TableWriter, open_progress
from .settings import metered_direction
from .source import open_source, without_own_traffic
from .summary import format_summary

log = logger("pyprobe")

FLUSH_CHUNK = 8192                  # records per step when the cache empties


def make_exporter(settings, running=()):
    if not settings.collectors:
        return None
    return Exporter(settings.collectors, settings.export, settings.round_robin, running=running)


class RecordSinks:
    """Where expired records go: collectors, the screen, or both."""

    def __init__(self, settings, meter, source):
        self.meter = meter
        self.flush_each = source.ticking     # a reader of a live or real-time run wants each record now
        self.dating = source.dating          # a real-time replay dated now, or None
        self.writer = None
        self.record = settings.record        # what the screen's writer shows
        self.retired = []                    # statistics of collectors a reload closed
        self.interfaces = []                 # what the collectors are told is captured
        self._attach(settings, make_exporter(settings))

    def _attach(self, settings, exporter):
        """Export to these collectors; print when asked to (--json) or when there are none."""
        self.exporter = exporter
        self.started = False
        if self.writer is None and (settings.json or exporter is None):
            self.writer = JsonWriter if settings.json else TableWriter

    def _open_writer(self):
        """The screen's writer is made (and a table's header printed) when the run begins,
        so an error at start (a control socket that cannot be made) is all that is printed."""
        if isinstance(self.writer, type):
            self.writer = self.writer(sys.stdout, record=self.record)

    def put(self, records):
        self._open_writer()
        if records and self.dating is not None:
            records = self.dating.dated_records(records)
        if self.exporter is not None:
            clock_us = self.meter.clock_us
            now_ms = (self.dating.export_time_us(clock_us) if self.dating is not None else clock_us) // 1000
            if not self.started:
                self.exporter.start(now_ms)
                self.started = True
            if records:
                self.exporter.export(records, now_ms, self.meter.packets_unmetered)
            self.exporter.pump()
        if self.writer is not None and records:
            self.writer.write(records)
            if self.flush_each:
                sys.stdout.flush()

    def replace_collectors(self, settings):
        """Collectors from reloaded settings (SettingsError: the running ones stay). A collector
        whose spec and settings did not change goes on as it was; the others are new, and the
        ones no longer asked for are closed (TCP drains first), their counts kept."""
        running = self.exporter.collectors if self.exporter is not None else ()
        exporter = make_exporter(settings, running)
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
        self._open_writer()
        if self.exporter is not None:
            self.exporter.close()
        sys.stdout.flush()

    def statistics(self):
        """Every collector's counts, the ones a reload retired too (so the totals add up)."""
        return self.retired + (self.exporter.statistics() if self.exporter is not None else [])


class Probe:
    """A running probe: source, meter, record sinks, and what the control socket,
    the metrics endpoint and signals may ask of it between two batches."""

    def __init__(self, settings, fanout_group=None):
        self.settings = settings
        self.source = open_source(settings, fanout_group)
        self.versions = settings.versions
        self.timeouts = {}
        try:
            self.meter = Meter(self.source.linktype, max_flows=settings.max_flows, record=settings.record,
                               sampling=settings.sampling,
                               sampling_mode=settings.sampling_mode, direction=metered_direction(settings),
                               cache=settings.cache, update=settings.update)
            self._apply_export_limits()
            self.set_timeouts(dict(settings.timeouts))
            self.sinks = RecordSinks(settings, self.meter, self.source)
        except SettingsError:
            self.source.close()
            raise
        self.started = time.monotonic()
        self.stop_requested = False
        self.reload_requested = False
        self.reload = lambda: None        # set by the daemon: read the flags and config file again
        self.pollers = []                 # called once per batch: control socket, ...
        self.capture_drops = None
        self.interfaces_serial = 0

    # -- the loop ---------------------------------------------------------------

    def run(self):
        progress = open_progress(self.source, self.settings.progress)
        for batch in self.source.batches():
            if self.source.serial != self.interfaces_serial:    # interfaces came or went
                self.interfaces_serial = self.source.serial
                self.sinks.set_interfaces(self.source.interfaces())
            self.sinks.put(self.meter.process(batch.packets, batch.meta, batch.linktype, batch.round,
                                              batch.direction, batch.in_if, batch.vlans_elsewhere, batch.vlan))
            if self.source.ticking:          # the clock runs on between packets
                self.sinks.put(self.meter.expire(self.source.clock_us()))
            if progress:
                progress.update(self.source.bytes_read, self.source.packets, self.meter.active_flows,
                                self.source.status())
            for poll in self.pollers:
                poll()
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            # (after stop() a source's batches end soon: a live one's with what it still holds)
        input_ended = not self.stop_requested and not self.source.live
        self.capture_drops = self.source.drops()
        self.source.close()
        if progress:
            progress.finish()
        if self.source.packets:             # (a capture whose clock reads 0 still has flows to flush)
            self.expire_all(forced=not input_ended)
        self.sinks.close()

    # -- what an operator may ask -----------------------------------------------

    def stop(self):
        self.stop_requested = True
        self.source.stop()

    def expire_all(self, forced=True):
        """End every flow now and export it; returns how many. forced: the input goes on
        (or was cut off), so the records say forced rather than eof."""
        count = 0
        while True:
            records = self.meter.flush(FLUSH_CHUNK, forced)
            self.sinks.put(records)
            if not records:
                return count
            count += len(records) // RECORD_SIZE

    def delete_all(self):
        return self.meter.delete_all()

    def dump_flows(self):
        """The active flows as packed records, as they stand (dated as the records are)."""
        records = self.meter.snapshot()
        return self.sinks.dating.dated_records(records) if self.sinks.dating else records

    def send_templates(self):
        if self.sinks.exporter is not None:
            self.sinks.exporter.request_templates()

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
        """Reloaded settings: new timeouts and collectors (a live capture's filter leaving out
        their export too), the same flow cache. The rest (input, cache size, key, sampling)
        needs a restart. SettingsError: nothing changed."""
        running = self.settings
        if (settings.sampling, settings.sampling_mode) != (running.sampling, running.sampling_mode):
            log.warning("reload: sampling changes need a restart; still 1 in %d (%s)", running.sampling,
                        running.sampling_mode)
            settings = settings._replace(sampling=running.sampling, sampling_mode=running.sampling_mode)
        self.sinks.replace_collectors(settings)
        if self.source.live:             # the filter that leaves out the probe's own export
            try:
                self.source.set_filter(without_own_traffic(settings.filter, settings))
            except InputError as e:
                log.warning("reload: %s; the capture filter is as it was", e)
        self.settings = settings
        self.versions = settings.versions
        self._apply_export_limits()
        self.set_timeouts(dict(settings.timeouts))

    def statistics(self):
        """Everything countable, as plain data (control socket, metrics, summary)."""
        drops = self.capture_drops if self.capture_drops is not None else self.source.drops()
        return {"seconds": time.monotonic() - self.started, "meter": self.meter.stats(),
                "source": self.source.statistics(),
                "capture": None if drops is None else dict(zip(("received", "dropped", "if_dropped"), drops)),
                "collectors": self.sinks.statistics(), "timeouts": dict(DEFAULT_TIMEOUTS, **self.timeouts)}

    def summary(self, title=None):
        stats = self.statistics()
        capture = stats["capture"]
        drops = None if capture is None else (capture["received"], capture["dropped"], capture["if_dropped"])
        return format_summary(stats["meter"], stats["seconds"], stats["collectors"], drops, title, stats["source"])
