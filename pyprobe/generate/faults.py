"""Faults on purpose (pyprobe generate --fault KIND[=EVERY]): what a collector must survive.

Each collector's datagrams pass through its own Faults, which every EVERY datagrams
(default 100) injects one of the kinds asked for, counts it, and says which records a
correct collector may lack or may store twice. Datagrams that carry templates are not
duplicated, reordered, truncated or damaged (what a collector would lose after them
depends on when it next sees templates); the kinds that go between datagrams are put
after the last datagram of a batch (at most one of each per batch, every 10 ms when
paced):

  seq-gap               the sequence number skips one (nfdump counts a sequence failure);
                        counted once a datagram follows the gap
  duplicate             a datagram is sent twice                      (its records: may_repeat)
  reorder               a datagram is sent after the next one
  data-before-template  at the start, the first data goes out before the templates
                                                                     (its records: may_lack)
  template-withdraw     IPFIX: every data template is withdrawn (RFC 7011 8.1) and the
                        ids are reused, announced again before the next data
  template-redefine     v9/IPFIX: the data template ids are defined with other layouts,
                        then again as they are, before the next data
  truncate              a datagram is cut short, inside its first set's header
                                                                     (its records: may_lack)
  bad-set-length        a datagram's first set (v5: the header's count) claims too much
                                                                     (its records: may_lack)
  unknown-field         v9/IPFIX: a template with a field no collector knows (IPFIX: an
                        enterprise element), and one data record of it
"""

import struct
from collections import Counter

from ..errors import SettingsError
from ..export.encoder import set_bytes
from ..parsers import whole_number

KINDS = {    # what each fault does, for --help
    "seq-gap": "the sequence number skips one",
    "duplicate": "a datagram sent twice",
    "reorder": "a datagram sent after the next one",
    "data-before-template": "at the start, data before the templates",
    "template-withdraw": "IPFIX: the templates withdrawn (RFC 7011 8.1), ids then reused",
    "template-redefine": "the template ids defined with other layouts, then as they are",
    "truncate": "a datagram cut short",
    "bad-set-length": "a set (v5: the record count) claiming more than there is",
    "unknown-field": "a template with an element no collector knows, and a record of it",
}
DEFAULT_EVERY = 100
UNKNOWN_TEMPLATE_ID = 300
DOCUMENTATION_PEN = 32473        # RFC 5612: the enterprise number for documentation
MAY_LACK, MAY_REPEAT = "may_lack", "may_repeat"


def parse_fault(text):
    """'KIND' or 'KIND=EVERY' -> (kind, every)."""
    kind, _, every = str(text).partition("=")
    if kind not in KINDS:
        raise ValueError(f"unknown fault {kind!r} (one of {', '.join(KINDS)})")
    every = whole_number(every) if every else DEFAULT_EVERY
    if every is None:
        raise ValueError(f"bad fault {text!r}: KIND=EVERY, EVERY a number of datagrams")
    if every < 1:
        raise ValueError(f"bad fault {text!r}: EVERY must be at least 1")
    return kind, every


def check_faults(faults, capabilities):
    for kind, _ in faults:
        if kind == "template-withdraw" and not capabilities.withdrawal:
            raise SettingsError(f"--fault {kind}: {capabilities.name} cannot withdraw templates (IPFIX can)")
        if kind in ("template-redefine", "unknown-field", "data-before-template") and not capabilities.templates:
            raise SettingsError(f"--fault {kind}: {capabilities.name} has no templates")


class Faults:
    """The faults of one collector. apply() takes the datagrams its encoder made for a batch
    (and each one's record indices) and returns what to send, and marks [(indices, mark, kind)]."""

    def __init__(self, faults, encoder):
        self.faults = [(kind, every, phase) for phase, (kind, every) in enumerate(faults)]
        self.encoder = encoder
        self.index = 0                     # datagrams seen
        self.held = None                   # (datagram, kind): sent after the next one
        self.counts = Counter()
        self.started = False
        self.gaps_unseen = 0               # gaps left after the last datagram: counted once one follows
        self.gaps_made = 0

    def apply(self, datagrams, spans, now_ms):
        out, marks = [], []
        if datagrams and self.gaps_unseen:
            self.counts["seq-gap"] += self.gaps_unseen
            self.gaps_unseen = 0
        for datagram, indices in zip(datagrams, spans):
            self.index += 1
            if self.held is not None:
                held, kind = self.held
                self.held = None
                out.append(datagram)
                out.append(held)
                self.counts[kind] += 1
                if kind == "data-before-template":
                    marks.append((indices, MAY_LACK, kind))
                continue
            if not self.started:
                self.started = True
                if any(k == "data-before-template" for k, _, _ in self.faults):
                    self.held = (datagram, "data-before-template")
                    continue
            # Datagrams with templates are spared: a collector that lost them would lose the data
            # after them too, until the next refresh, which no expect file could say.
            kind = None if self._has_templates(datagram) else next(
                (k for k, every, phase in self.faults if k in ("duplicate", "reorder", "truncate", "bad-set-length")
                 and self.index % every == phase % every), None)
            if kind == "duplicate":
                out += [datagram, datagram]
                marks.append((indices, MAY_REPEAT, kind))
            elif kind == "reorder":
                self.held = (datagram, kind)
            elif kind == "truncate":
                # cut inside the first set's header: every decoder sees a message ending early
                out.append(datagram[:self.encoder.HEADER_SIZE + 2])
                marks.append((indices, MAY_LACK, kind))
            elif kind == "bad-set-length":
                out.append(self._bad_length(datagram))
                marks.append((indices, MAY_LACK, kind))
            else:
                out.append(datagram)
            if kind and kind != "reorder":         # (a reorder counts when the datagram goes out late)
                self.counts[kind] += 1
        extra = self._after_batch(now_ms)
        if extra and self.held is not None:
            out.append(self.held[0])               # template changes follow every datagram before them
            self.held = None
        return out + extra, marks

    def finish(self):
        """At the end: a datagram still held back for a reorder goes out (not reordered, not counted)."""
        held, self.held = self.held, None
        return [held[0]] if held else []

    def _after_batch(self, now_ms):
        """Faults that go between two batches: the next batch's first datagram follows them."""
        extra = []
        for kind, every, phase in self.faults:
            if self.index < 1 or kind not in ("seq-gap", "template-withdraw", "template-redefine", "unknown-field"):
                continue
            done = self.gaps_made if kind == "seq-gap" else self.counts[kind]
            if (self.index // every) <= done:
                continue                    # one per EVERY datagrams, counted on the datagrams seen
            if kind == "seq-gap":
                self.encoder.skip_sequence()
                self.gaps_made += 1
                self.gaps_unseen += 1
                continue
            self.counts[kind] += 1
            if kind == "template-withdraw":
                records = b"".join(struct.pack(">HH", layout.id, 0) for layout in self.encoder.layouts)
                extra.append(self.encoder.control_message(now_ms, set_bytes(self.encoder.TEMPLATE_SET_ID, records,
                                                                            pad=False), len(self.encoder.layouts), 0))
                self.encoder.request_templates()
            elif kind == "template-redefine":
                layouts = self.encoder.layouts
                records = b"".join(self._record_of(layouts[(i + 1) % len(layouts)], layout.id)
                                   for i, layout in enumerate(layouts))
                extra.append(self.encoder.control_message(now_ms, set_bytes(self.encoder.TEMPLATE_SET_ID, records,
                                                                            pad=False), len(layouts), 0))
                self.encoder.request_templates()
            elif kind == "unknown-field":
                extra.append(self._unknown_field(now_ms))
        return extra

    def _has_templates(self, datagram):
        """Whether the datagram holds a template or options template set."""
        if not self.encoder.CAPABILITIES.templates:
            return False
        first = self.encoder.TEMPLATE_SET_ID
        pos = self.encoder.HEADER_SIZE
        while pos + 4 <= len(datagram):
            set_id, length = struct.unpack_from(">HH", datagram, pos)
            if set_id in (first, first + 1):
                return True
            pos += max(length, 4)
        return False

    @staticmethod
    def _record_of(layout, template_id):
        """layout's template record under another id (a redefinition)."""
        record = layout.template_record()
        return struct.pack(">H", template_id) + record[2:]

    def _unknown_field(self, now_ms):
        """A template of an element nobody knows, and one record of it (octets 0x2a)."""
        caps = self.encoder.CAPABILITIES
        if caps.enterprise_fields:
            template = struct.pack(">HHHHHHI", UNKNOWN_TEMPLATE_ID, 2, 1, 8, 0x8000 | 1, 4, DOCUMENTATION_PEN)
        else:
            template = struct.pack(">HHHHHH", UNKNOWN_TEMPLATE_ID, 2, 1, 8, 32000, 4)
        data = struct.pack(">QI", 42, 0xdeadbeef)
        pad = caps.name != "IPFIX"
        sets = (set_bytes(self.encoder.TEMPLATE_SET_ID, template, pad=False)
                + set_bytes(UNKNOWN_TEMPLATE_ID, data, pad=pad))
        return self.encoder.control_message(now_ms, sets, 2, 1)

    def _bad_length(self, datagram):
        """The first set's length (v5: the header's record count) made larger than the datagram."""
        head = self.encoder.HEADER_SIZE
        if not self.encoder.CAPABILITIES.templates:
            count = struct.unpack_from(">H", datagram, 2)[0]
            return datagram[:2] + struct.pack(">H", count + 7) + datagram[4:]
        if len(datagram) < head + 4:
            return datagram
        length = struct.unpack_from(">H", datagram, head + 2)[0]
        return datagram[:head + 2] + struct.pack(">H", min(0xffff, length + len(datagram))) + datagram[head + 4:]
