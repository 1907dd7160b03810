"""What v9 and IPFIX messages share: templates sent when due, data records
packed into sets up to a size limit, and the state that carries between calls."""

import struct
from dataclasses import dataclass, field

from .records import export_records
from .uptime import fits_span

SET_HEADER = struct.Struct(">HH")


@dataclass
class TemplateState:
    """Exporter state of one v9/IPFIX exporting process towards one collector."""

    domain_id: int = 0                 # v9 source ID / IPFIX observation domain
    max_size: int = 1472               # bytes per datagram
    refresh_packets: int = 20          # templates every this many messages (0: never)
    refresh_ms: int = 600_000          # and every this much flow clock (0: never)
    sampling_interval: int = 1
    sampling_random: bool = False
    sequence: int = 0
    messages_sent: int = 0
    records_sent: int = 0
    template_sends: int = 0
    since_templates: int = 0
    templates_ms: int = None
    templates_wanted: bool = True      # at start, on request, after a TCP reconnect
    extra: dict = field(default_factory=dict)

    def templates_due(self, now_ms):
        return (self.templates_wanted
                or (self.refresh_packets and self.since_templates >= self.refresh_packets)
                or (self.refresh_ms and now_ms - self.templates_ms >= self.refresh_ms))


def set_bytes(set_id, body, pad):
    if pad:
        body += b"\0" * (-len(body) % 4)
    return SET_HEADER.pack(set_id, SET_HEADER.size + len(body)) + body


def encode(protocol, buf, state, now_ms, ignored_packets=0):
    """Packed meter records -> messages (bytes), templates included when due.

    With no records, a message is made only if templates are due."""
    records = sorted(export_records(buf), key=lambda r: r.ipver)
    messages = []
    i = 0
    while True:
        control, control_records = b"", 0
        if state.templates_due(now_ms):
            control, control_records = protocol.control_sets(state, now_ms, ignored_packets)
            state.templates_wanted = False
            state.since_templates = 0
            state.templates_ms = now_ms
            state.template_sends += 1
        budget = state.max_size - protocol.HEADER_SIZE - len(control) - 2 * (SET_HEADER.size + 3)
        start = i
        used = 0
        first = last = None
        while i < len(records):
            r = records[i]
            size = protocol.TEMPLATES[r.ipver].record_size
            lo = r.first_ms if first is None else min(first, r.first_ms)
            hi = r.last_ms if last is None else max(last, r.last_ms)
            if used + size > budget or not fits_span(lo, hi):
                break
            used += size
            first, last = lo, hi
            i += 1
        taken = records[start:i]
        if not taken and not control:
            break
        if not taken and i < len(records):
            raise ValueError(f"a datagram of {state.max_size} bytes cannot hold one record")
        messages.append(protocol.message(state, now_ms, control, control_records, taken,
                                         (first, last) if taken else (now_ms, now_ms)))
        state.messages_sent += 1
        state.since_templates += 1
        state.records_sent += len(taken)
        if i >= len(records):
            break
    return messages


def data_sets(protocol, records, context, pad):
    """One set per template, records already sorted by IP version."""
    sets = []
    for ipver in (4, 6):
        template = protocol.TEMPLATES[ipver]
        body = b"".join(template.pack(r, context) for r in records if r.ipver == ipver)
        if body:
            sets.append(set_bytes(template.id, body, pad))
    return b"".join(sets)
