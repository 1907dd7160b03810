"""Records with a bounded string member (pyprobe/fields.py, "text:N") for the tests of
variable-length fields: no row of the field table is one yet, so the member is appended
to the table's record, and the encoders are given the table with it (Layout's table).

The member is applicationName (IANA 96, a string in IPFIX and in v9)."""

import socket
import struct
from types import SimpleNamespace

from pyprobe.fields import (BY_NAME, CTYPES, LENGTH_BYTES, MEMBER, RECORD_SIZE, VARIABLE, VARLEN, Element, Field,
                            Member)
from pyprobe.records import pack

CAPACITY = 300
APPLICATION = Field("application", f"text:{CAPACITY}", "application", "text",
                    ipfix=Element("applicationName", 96, VARIABLE, VARLEN))
SLOT = CTYPES[APPLICATION.ctype][1]
OFFSET = RECORD_SIZE
STRIDE = RECORD_SIZE + SLOT + (-SLOT % 8)
TABLE = ({**BY_NAME, APPLICATION.name: APPLICATION},
         {**MEMBER, APPLICATION.name: Member(APPLICATION.name, APPLICATION.ctype, OFFSET)})
RECORD = SimpleNamespace(fields=["src", "dst", "proto", "sport", "dport", "packets", "octets", "first_us",
                                 "last_us", APPLICATION.name], ipver=4)
# Lengths about the boundaries of the one-octet and three-octet length forms, and none.
NAMES = ["", "DNS", "TLS.YouTube", "é-ü " * 20, "x" * 254, "y" * 255, "z" * 256, "w" * CAPACITY]
T0_US = 1_700_000_000_000_000
SPORT = 1000            # record i has source port SPORT + i


def slot(raw, length=None):
    """A bounded member's slot holding raw (its length field: len(raw), unless given)."""
    return struct.pack("=H", len(raw) if length is None else length) + raw.ljust(SLOT - LENGTH_BYTES, b"\0")


def records(values):
    """One packed record per value (bytes, or a str as UTF-8) in its appended member."""
    out = []
    for i, value in enumerate(values):
        raw = value.encode() if isinstance(value, str) else value
        out.append(pack(src=socket.inet_aton("10.0.0.1"), dst=socket.inet_aton("10.0.0.2"), ipver=4, proto=17,
                        sport=SPORT + i, dport=53, packets=1, octets=100, first_us=T0_US, last_us=T0_US + 1000)
                   + slot(raw) + b"\0" * (STRIDE - OFFSET - SLOT))
    return b"".join(out)
