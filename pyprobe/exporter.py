"""Collectors: each has an encoder (its state) and a transport; records go to every
collector (copy mode) or to one after another (round robin, softflowd's -l)."""

import socket
from collections import namedtuple

from .errors import SettingsError
from .export import ENCODERS, capabilities
from .fields import RECORD_SIZE
from .logs import logger
from .transport import TRANSPORTS, parse_address

log = logger(__name__)

IPV4_UDP_PAYLOAD = 1500 - 20 - 8       # largest datagram that fits a 1500-byte MTU
IPV6_UDP_PAYLOAD = 1500 - 40 - 8
MIN_DATAGRAM = 256


class ExportSettings(namedtuple("ExportSettings", "source_id engine_type engine_id template_refresh template_interval "
                                                  "max_datagram sampling sampling_random source_address boot_lead_ms "
                                                  "record totals stride multicast_ttl flush_interval export_rate",
                                 defaults=(1, 0, 0, 20, 600.0, None, 1, False, None, 60_000, None, False,
                                           RECORD_SIZE, 1, 0.0, 0))):
    """What every collector's exporting process shares (flags and config file). source_address:
    send from this local address (pyprobe generate's routers); boot_lead_ms: v5/v9 uptime at
    the first record (each simulated router its own); record: the record definition
    (pyprobe/definitions.py), None: the predefined full record; totals: the counters are
    running totals (a permanent cache), not deltas; stride: bytes per packed record handed
    to export (the meter's, pyprobe/definitions.py record_stride); multicast_ttl: the hops
    a datagram to a multicast collector may cross; flush_interval: seconds a record may wait
    for others to fill its datagram (0: each batch's records go at once); export_rate:
    datagrams a second to each UDP collector at most (0: no limit)."""

    __slots__ = ()


class CollectorSpec(namedtuple("CollectorSpec", "address version transport", defaults=(9, "udp"))):
    __slots__ = ()

    def check(self):
        """SettingsError if this collector cannot work (address, transport for the version)."""
        try:
            parse_address(self.address)
        except ValueError as e:
            raise SettingsError(str(e)) from None
        if self.transport not in TRANSPORTS:
            raise SettingsError(f"collector {self.address}: unknown transport {self.transport!r} "
                                f"({' or '.join(TRANSPORTS)})")
        if TRANSPORTS[self.transport].stream and not capabilities(self.version).tcp:
            tcp_versions = " or ".join(f"{capabilities(v).name} (-v {v})" for v in ENCODERS if capabilities(v).tcp)
            raise SettingsError(f"collector {self.address}: {self.transport.upper()} transport is for {tcp_versions} "
                                "only")


def new_encoder(version, settings, max_size, over_stream):
    """The encoder of one collector, from the shared export settings."""
    caps = capabilities(version)
    common = dict(max_size=max_size, sampling_interval=settings.sampling, sampling_random=settings.sampling_random,
                  stride=settings.stride)
    record = settings.record
    flexible = " or ".join(f"{capabilities(v).name} (-v {v})" for v in ENCODERS if capabilities(v).flexible)
    if record is not None and not record.predefined:
        if not caps.flexible:
            raise SettingsError(f"{caps.name} carries its fixed record only: record {record.name!r} needs {flexible}")
        common["record"] = record
    if settings.totals:
        if not caps.flexible:
            raise SettingsError(f"{caps.name} carries delta counters only: a permanent cache needs {flexible}")
        common["totals"] = True
    if caps.uptime:
        common["boot_lead_ms"] = settings.boot_lead_ms
    if not caps.templates:
        return ENCODERS[version](engine_type=settings.engine_type, engine_id=settings.engine_id, **common)
    return ENCODERS[version](
        domain_id=settings.source_id,
        # Over TCP the templates go once per connection (the transport asks for them).
        refresh_packets=0 if over_stream else settings.template_refresh,
        refresh_ms=0 if over_stream else int(settings.template_interval * 1000),
        templates_wanted=not over_stream, **common)


class Collector:
    """One collector: its encoder and its transport. To a stream transport it is the peer
    that gives a new connection its first messages and numbers messages for it.

    Records wait in an export buffer until they fill a datagram or the oldest has waited
    flush_interval (as a router's export buffer does): few records ending at a time would
    otherwise each make a near-empty datagram, and a collector drops what its socket buffer
    cannot queue.

    interpose(encoder), if given, makes an object whose apply(datagrams, spans, now_ms)
    returns (datagrams to send, marks) between encoder and transport, and whose finish()
    returns what it still holds at the end: pyprobe generate's faults (its datagrams are
    its steps: nothing waits). Its marks [(record indices, mark, kind)] collect in `marks`."""

    def __init__(self, spec, settings, interpose=None):
        spec.check()
        self.spec = spec
        self.settings = settings
        self.name = spec.address
        self.version = spec.version
        self.capabilities = capabilities(spec.version)
        host, port = parse_address(spec.address)
        try:
            self.transport = TRANSPORTS[spec.transport](self.name, host, port, self, settings.source_address,
                                                         settings.multicast_ttl, settings.export_rate)
        except ValueError as e:
            raise SettingsError(str(e)) from None
        default_size = IPV6_UDP_PAYLOAD if self.transport.family == socket.AF_INET6 else IPV4_UDP_PAYLOAD
        size = settings.max_datagram or default_size
        if size < MIN_DATAGRAM:
            raise SettingsError(f"datagram size {size} is too small (at least {MIN_DATAGRAM})")
        self.encoder = new_encoder(spec.version, settings, size, self.transport.stream)
        self.interposed = interpose(self.encoder) if interpose else None
        self.hold_ms = 0 if interpose else settings.flush_interval * 1000
        self.held = b""                  # the export buffer: packed records waiting
        self.held_since_ms = 0           # when its oldest record came
        self.marks = []
        self.now_ms = 0
        self.ignored = 0
        self.datagrams = 0
        self.not_carried_warned = False

    # -- the stream peer interface (TcpTransport) --------------------------------

    def stream_start(self):
        messages = self.encoder.stream_start(self.now_ms, self.ignored)
        self.datagrams += len(messages)
        return messages

    def renumber(self, message, counters):
        return self.encoder.renumber(message, counters)

    # -- exporting --------------------------------------------------------------

    def export(self, records, now_ms, ignored):
        self.now_ms, self.ignored = now_ms, ignored
        if self.interposed is None and self.hold_ms:
            waiting = len(self.held) // self.settings.stride
            messages = self.encoder.encode(self.held + records if waiting else records, now_ms, ignored, hold=True)
            if not self.encoder.held_from:
                self.held = b""
            else:
                if not waiting or min(self.encoder.held_from) >= waiting:   # (none of those that waited)
                    self.held_since_ms = now_ms
                self.held = self.encoder.held
        elif self.interposed is None:
            messages = self.encoder.encode(records, now_ms, ignored)
        else:
            spans = []
            messages = self.encoder.encode(records, now_ms, ignored, spans)
            messages, marks = self.interposed.apply(messages, spans, now_ms)
            self.marks += marks
        self.datagrams += self.transport.send_many(messages)
        if self.encoder.records_not_carried and not self.not_carried_warned:
            self.not_carried_warned = True
            log.warning("collector %s: %s cannot carry IPv6 flows; they are counted, not sent",
                        self.name, self.capabilities.name)

    def flush_due(self, now_ms):
        """The export buffer goes if its oldest record has waited flush_interval, or with
        templates asked for (SIGUSR1, send-templates: they go now, not with the next records)."""
        waited = self.held and now_ms - self.held_since_ms >= self.hold_ms
        if waited or (self.hold_ms and self.encoder.templates_wanted):
            self.flush(now_ms)

    def flush(self, now_ms):
        """Everything in the export buffer goes now, the last datagram part-filled."""
        held, self.held = self.held, b""
        self.datagrams += self.transport.send_many(self.encoder.encode(held, now_ms, self.ignored))

    def records_per_datagram(self):
        return self.encoder.records_per_datagram()

    def request_templates(self):
        self.encoder.request_templates()

    def pump(self):
        self.transport.pump()

    def close(self):
        if self.held:
            self.flush(self.now_ms)
        if self.interposed is not None:      # a datagram a fault held back for later goes now
            self.datagrams += self.transport.send_many(self.interposed.finish())
        self.transport.close()

    def statistics(self):
        return {"collector": self.name, "version": self.capabilities.name, "datagrams": self.datagrams,
                **self.encoder.statistics(), **self.transport.statistics()}


class Exporter:
    """Hands expired records to the collectors."""

    def __init__(self, specs, settings, round_robin=False, interpose=None, running=()):
        """running: collectors of the exporter this one replaces (a reload); one with the same
        spec and settings is kept as it is (its sequence numbers, template timers, counters)."""
        kept = {(c.spec, c.settings): c for c in running}
        self.collectors = []
        made = []
        try:
            for spec in specs:
                collector = kept.pop((spec, settings), None)
                if collector is None:
                    collector = Collector(spec, settings, interpose)
                    made.append(collector)
                self.collectors.append(collector)
        except SettingsError:
            for collector in made:
                collector.close()
            raise
        self.left_over = list(kept.values())      # the replaced exporter's to close
        self.round_robin = round_robin and len(self.collectors) > 1
        self.turn = 0
        self.stride = settings.stride

    def start(self, now_ms):
        """Templates go out at start, before any flow has expired, to every collector."""
        for collector in self.collectors:
            collector.export(b"", now_ms, 0)

    def export(self, records, now_ms, ignored=0):
        if not self.round_robin:
            for collector in self.collectors:
                collector.export(records, now_ms, ignored)
            return
        # Round robin: deal out what one datagram of the collector whose turn it is holds.
        start = 0
        while start < len(records) or start == 0:
            collector = self.collectors[self.turn]
            self.turn = (self.turn + 1) % len(self.collectors)
            end = start + collector.records_per_datagram() * self.stride
            collector.export(records[start:end], now_ms, ignored)
            start = end

    def flush_due(self, now_ms):
        """Each export buffer whose oldest record has waited long enough goes."""
        for collector in self.collectors:
            collector.flush_due(now_ms)

    def pump(self):
        for collector in self.collectors:
            collector.pump()

    def request_templates(self):
        for collector in self.collectors:
            collector.request_templates()

    def set_interfaces(self, interfaces):
        """The interfaces captured, [(ifIndex, name, description)]: their options records go
        to every collector now, and again with every template refresh."""
        for collector in self.collectors:
            collector.encoder.interfaces = interfaces
            collector.request_templates()

    def close(self):
        for collector in self.collectors:
            collector.close()

    def statistics(self):
        return [c.statistics() for c in self.collectors]
