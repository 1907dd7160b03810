"""The interfaces live capture is given (-i [IDX:]IFACE): their names, checked as Linux
takes them, and the ifIndex each one's flows are to carry."""

import os
from collections import namedtuple

from ..parsers import parse_text, whole_number

IFNAMSIZ = 16                     # Linux interface names are at most 15 bytes


class InterfaceSpec(namedtuple("InterfaceSpec", "name index", defaults=(None,))):
    """An interface to capture on ('any': every one), and the ifIndex its flows are to carry
    (None: the kernel's own)."""

    __slots__ = ()
    ANY = "any"


def parse_interface(text):
    """'eth0', 'any' or 'IDX:eth0' -> InterfaceSpec."""
    text = parse_text(text)
    index, sep, name = text.partition(":")
    number = whole_number(index) if sep else None
    if number is not None:
        if not 0 < number < 2**32:
            raise ValueError(f"bad interface index {index}: 1 to 4294967295")
        if name == InterfaceSpec.ANY:
            raise ValueError("'any' has no index of its own: give IDX:IFACE for the interface it is to name")
    else:
        name = text
    if not name or len(os.fsencode(name)) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"bad interface name {name!r}")
    return InterfaceSpec(name, number)
