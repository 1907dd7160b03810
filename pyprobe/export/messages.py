"""What v9 and IPFIX messages share: templates sent when due, data records
packed into sets up to a size limit, and the state that carries between calls."""

import struct
from dataclasses import dataclass, field

from .. import _encode

SET_HEADER = struct.Struct(">HH")


@dataclass
class TemplateState:
    """Exporter state of one v9/IPFIX exporting process towards one collector."""

    domain_id: int = 1                 # v9 source ID / IPFIX observation domain (0: exporter-wide)
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
    order, ipv4_count = _encode.order_by_version(buf)
    total = len(order) // 4
    v4_size, v6_size = protocol.TEMPLATES[4].record_size, protocol.TEMPLATES[6].record_size
    messages = []
    start = 0
    while True:
        control, control_records = b"", 0
        if state.templates_due(now_ms):
            messages.extend(protocol.side_messages(state, now_ms, ignored_packets))
            control, control_records = protocol.control_sets(state, now_ms, ignored_packets)
            state.templates_wanted = False
            state.since_templates = 0
            state.templates_ms = now_ms
            state.template_sends += 1
        budget = state.max_size - protocol.HEADER_SIZE - len(control) - 2 * (SET_HEADER.size + 3)
        end, first_ms, last_ms = _encode.take(buf, order, start, total, budget, v4_size, v6_size,
                                              protocol.MAX_SPAN_MS)
        if end == start and not control:
            if start < total:
                raise ValueError(f"a datagram of {state.max_size} bytes cannot hold one record")
            break
        batch = RecordBatch(buf, order, start, end, ipv4_count)
        span = (first_ms, last_ms) if end > start else (now_ms, now_ms)
        messages.append(protocol.message(state, now_ms, control, control_records, batch, span))
        state.messages_sent += 1
        state.since_templates += 1
        state.records_sent += end - start
        start = end
        if start >= total:
            break
    return messages


def records_per_datagram(protocol, state):
    """Records that always fit one message, templates included: round robin deals these out."""
    control, _ = protocol.control_sets(state, 0, 0)
    largest = max(t.record_size for t in protocol.TEMPLATES.values())
    return max(1, (state.max_size - protocol.HEADER_SIZE - len(control) - 2 * (SET_HEADER.size + 3)) // largest)


class RecordBatch:
    """Records order[start:end] of a packed buffer, IPv4 ones (before ipv4_end) first."""

    def __init__(self, buf, order, start, end, ipv4_end):
        self.buf, self.order, self.start, self.end, self.ipv4_end = buf, order, start, end, ipv4_end

    def __len__(self):
        return self.end - self.start

    def data_sets(self, templates, boot_ms, pad):
        """One set per IP version present, written by the compiled encoder."""
        sets = []
        for template, lo, hi in ((templates[4], self.start, min(self.end, self.ipv4_end)),
                                 (templates[6], max(self.start, self.ipv4_end), self.end)):
            if lo < hi:
                body = _encode.pack(self.buf, self.order, lo, hi, template.layout, boot_ms)
                sets.append(set_bytes(template.id, body, pad))
        return b"".join(sets)
