"""Collectors: each has an encoder state and a transport; records go to every
collector (copy mode) or to one after another (round robin, softflowd's -l)."""

import logging
import socket
from dataclasses import dataclass

from ._meter import RECORD_SIZE
from .export import ipfix, v5, v9
from .transport import TcpTransport, UdpTransport, parse_address

log = logging.getLogger(__name__)

ENCODERS = {5: v5, 9: v9, 10: ipfix}
VERSION_NAMES = {5: "NetFlow v5", 9: "NetFlow v9", 10: "IPFIX"}
IPV4_UDP_PAYLOAD = 1500 - 20 - 8       # largest datagram that fits a 1500-byte MTU
IPV6_UDP_PAYLOAD = 1500 - 40 - 8
MIN_DATAGRAM = 256


@dataclass
class ExportSettings:
    """What every collector's exporting process shares (flags and config file)."""

    source_id: int = 1
    engine_type: int = 0
    engine_id: int = 0
    template_refresh: int = 20
    template_interval: float = 600.0
    max_datagram: int = None
    sampling: int = 1
    sampling_random: bool = False


@dataclass
class CollectorSpec:
    address: str
    version: int = 9
    transport: str = "udp"


class Collector:
    def __init__(self, spec, settings):
        self.name = spec.address
        self.version = spec.version
        self.encoder = ENCODERS[spec.version]
        host, port = parse_address(spec.address)
        if spec.transport == "tcp":
            if spec.version != 10:
                raise ValueError(f"collector {spec.address}: TCP transport is for IPFIX (-v 10) only")
            self.transport = TcpTransport(self.name, host, port, self._templates_messages, ipfix.renumber)
        elif spec.transport == "udp":
            self.transport = UdpTransport(self.name, host, port)
        else:
            raise ValueError(f"collector {spec.address}: unknown transport {spec.transport!r} (udp or tcp)")
        self.state = self._new_state(settings, spec.transport == "tcp")
        self.now_ms = 0
        self.ignored = 0
        self.datagrams = 0
        self.ipv6_warned = False

    def _new_state(self, settings, over_tcp):
        default_size = IPV6_UDP_PAYLOAD if self.transport.family == socket.AF_INET6 else IPV4_UDP_PAYLOAD
        size = settings.max_datagram or default_size
        if size < MIN_DATAGRAM:
            raise ValueError(f"datagram size {size} is too small (at least {MIN_DATAGRAM})")
        if self.version == 5:
            return v5.new_state(engine_type=settings.engine_type, engine_id=settings.engine_id, max_size=size,
                                sampling_interval=settings.sampling, sampling_random=settings.sampling_random)
        return self.encoder.new_state(
            domain_id=settings.source_id, max_size=size, sampling_interval=settings.sampling,
            sampling_random=settings.sampling_random,
            # Over TCP the templates go once per connection (the transport asks for them).
            refresh_packets=0 if over_tcp else settings.template_refresh,
            refresh_ms=0 if over_tcp else int(settings.template_interval * 1000),
            templates_wanted=not over_tcp)

    def _templates_messages(self):
        self.state.templates_wanted = True
        messages = self.encoder.encode(b"", self.state, self.now_ms, self.ignored)
        self.datagrams += len(messages)
        return messages

    def export(self, records, now_ms, ignored):
        self.now_ms, self.ignored = now_ms, ignored
        for message in self.encoder.encode(records, self.state, now_ms, ignored):
            if self.transport.send(message):
                self.datagrams += 1
        if self.version == 5 and self.state.ipv6_skipped and not self.ipv6_warned:
            self.ipv6_warned = True
            log.warning("collector %s: NetFlow v5 cannot carry IPv6 flows; they are counted, not sent", self.name)

    def records_per_datagram(self):
        return self.encoder.records_per_datagram(self.state)

    def request_templates(self):
        if self.version != 5:
            self.state.templates_wanted = True

    def close(self):
        self.transport.close()

    def statistics(self):
        stats = {"collector": self.name, "version": VERSION_NAMES[self.version],
                 "datagrams": self.datagrams, "records": self.state.records_sent,
                 "send_errors": self.transport.errors,
                 "template_sends": getattr(self.state, "template_sends", 0)}
        if self.version == 5:
            stats["ipv6_not_sent"] = self.state.ipv6_skipped
        if isinstance(self.transport, TcpTransport):
            stats["dropped"] = self.transport.dropped
            stats["connections"] = self.transport.connections
        return stats


class Exporter:
    """Hands expired records to the collectors."""

    def __init__(self, specs, settings, round_robin=False):
        self.collectors = [Collector(spec, settings) for spec in specs]
        self.round_robin = round_robin and len(self.collectors) > 1
        self.turn = 0

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
            end = start + collector.records_per_datagram() * RECORD_SIZE
            collector.export(records[start:end], now_ms, ignored)
            start = end

    def pump(self):
        for collector in self.collectors:
            if isinstance(collector.transport, TcpTransport):
                collector.transport.pump()

    def request_templates(self):
        for collector in self.collectors:
            collector.request_templates()

    def close(self):
        for collector in self.collectors:
            collector.close()

    def statistics(self):
        return [c.statistics() for c in self.collectors]
