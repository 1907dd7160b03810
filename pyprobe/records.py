"""Flow records as the meter hands them out: packed structs, unpacked only for display.

The layout is the field table's (pyprobe/fields.py), which also generates the
meter's ext/record.pxd. Exporters read the packed bytes; printing and tests unpack
them into FlowRecord tuples whose names are the JSON keys.
"""

import socket
import struct
import sys
from collections import namedtuple

from . import _encode, _meter
from ._encode import json_lines
from .fields import (CLASSIC_FORMAT, CLASSIC_SHOWN, CLASSIC_SIZE, END_REASONS, LENGTH_BYTES, MEMBER, MEMBERS,
                     RECORD_FORMAT, RECORD_SIZE, bounded)

RECORD = struct.Struct(RECORD_FORMAT)
CLASSIC = struct.Struct(CLASSIC_FORMAT)       # a classic record: its members are RECORD's first ones
# The compiled modules that write and read records were built from the field table as it is.
assert {(m.RECORD_SIZE, m.CLASSIC_SIZE) for m in (_meter, _encode)} == {(RECORD_SIZE, CLASSIC_SIZE)}, \
    "ext/record.pxd is older than pyprobe/fields.py: rebuild (make)"
_LAYOUTS = {RECORD_SIZE: RECORD, CLASSIC_SIZE: CLASSIC}

SHOWN = CLASSIC_SHOWN                 # the predefined records' (JSON, FlowRecord)
_MEMBER_INDEX = {m.name: i for i, m in enumerate(MEMBERS)}
_IPVER = _MEMBER_INDEX["ipver"]
_Record = namedtuple("FlowRecord", [f.json for f in SHOWN])


class FlowRecord(_Record):
    """One flow record; start and end are epoch seconds."""

    __slots__ = ()

    def as_dict(self):
        return self._asdict()


def _address(raw, ipver):
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if ipver == 4 else socket.inet_ntop(socket.AF_INET6, raw)


def _bounded(raw):
    """A bounded member's value (pyprobe/fields.py, text:N or octets:N): its slot's bytes."""
    return raw[LENGTH_BYTES:LENGTH_BYTES + min(int.from_bytes(raw[:LENGTH_BYTES], sys.byteorder),
                                               len(raw) - LENGTH_BYTES)]


_SHOW = {
    "int": lambda value, ipver: value,
    "text": lambda raw, ipver: _bounded(raw).decode(errors="replace"),     # (as JSON: invalid UTF-8 is U+FFFD)
    "hex": lambda raw, ipver: _bounded(raw).hex(),
    "address": _address,
    "mac": lambda raw, ipver: raw.hex(":"),
    "seconds": lambda us, ipver: us / 1e6,
    "end_reason": lambda code, ipver: END_REASONS.get(code, "active_now"),
}
def shown_values(buf, fields, stride=RECORD_SIZE):
    """Each record's values of these fields (rows of the field table), as JSON shows them:
    the table output of a record definition. stride: the records' (RECORD_SIZE, or
    CLASSIC_SIZE: classic records, which have the classic members only)."""
    columns = [(_MEMBER_INDEX[f.source], _SHOW[f.show]) for f in fields]
    return [[show(values[i], values[_IPVER]) for i, show in columns] for values in _LAYOUTS[stride].iter_unpack(buf)]


def unpack(buf, stride=RECORD_SIZE):
    """Turn the meter's packed records into FlowRecord tuples."""
    return [FlowRecord._make(values) for values in shown_values(buf, SHOWN, stride)]


# ext/_encode.pyx's
SHOW_CODES = {"int": 1, "address": 2, "mac": 3, "seconds": 4, "end_reason": 5, "text": 6, "hex": 7}


def _json_columns(fields):
    return [(f.json, SHOW_CODES[f.show], MEMBER[f.source].offset, MEMBER[f.source].size) for f in fields]


_JSON_COLUMNS = _json_columns(SHOWN)


def to_json_lines(buf, fields=None, stride=RECORD_SIZE):
    """The records as JSON lines (bytes), made in compiled code: the same text as
    json.dumps of each unpacked record's as_dict(); fields: the rows of the field table
    to show (a record definition's), default the predefined records'."""
    columns = _JSON_COLUMNS if fields is None else _json_columns(fields)
    return json_lines(buf, stride, columns, MEMBER["ipver"].offset, END_REASONS)


def pack(**values):
    """One packed record from member values (the rest 0): for tests and generated records.
    A bounded member's value is bytes, or a str (UTF-8), within its capacity."""
    unknown = set(values) - set(_MEMBER_INDEX)
    if unknown:
        raise ValueError(f"no record member {sorted(unknown)[0]!r}")
    row = [_packed(m, values[m.name]) if m.name in values else b"" if m.ctype in ("address", "mac") or bounded(m.ctype)
           else 0 for m in MEMBERS]
    return RECORD.pack(*row)


def _packed(member, value):
    """A member's value as struct packs it: a bounded member's slot (its length, its bytes)."""
    if not bounded(member.ctype):
        return value
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) > member.size - LENGTH_BYTES:
        raise ValueError(f"{member.name}: {len(raw)} bytes, room for {member.size - LENGTH_BYTES}")
    return len(raw).to_bytes(LENGTH_BYTES, sys.byteorder) + raw
