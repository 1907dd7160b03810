"""Record definitions, in the Flexible NetFlow model: what makes a flow (the key
fields a record matches on) and what its record collects.

A definition names fields by their IPFIX information element names, from the
field table (pyprobe/fields.py); an address key may be a prefix
(sourceIPv4Address/24). It becomes what the meter needs, a mask over the flow
key (ext/decode.pxd's FlowKey) for each IP version, and what the encoders need,
the record's fields in template order. The predefined records are softflowd's
tracking levels (-T full, port, proto, ip, vlan, ether): their templates are the
exporters' own (pyprobe/export/), unchanged by this module.

In the config file:

    [[record]]
    name = "prefixes"
    match = ["sourceIPv4Address/24", "destinationIPv4Address/24", "protocolIdentifier"]
    collect = ["packetDeltaCount", "octetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds"]
"""

import sys
from collections import namedtuple

from ._meter import AS_KEYED, KEY_MEMBERS, KEY_SIZE
from .fields import (BY_NAME, CLASSIC_SHOWN, CLASSIC_SIZE, COLLECT, EITHER, FIELDS, MATCH, MEMBER_CLASSIC,
                     PER_PACKET_FIELDS, RECORD_SIZE, ROUTE_AS, Element)
from .parsers import whole_number

# Always part of the key: flows of the two IP versions never merge, nor the two directions.
ALWAYS_KEYED = ("ipver", "direction")
# softflowd's tracking levels, least detailed first: each keys on the members the ones before it do.
LEVELS = {
    "ip": ("src", "dst", "in_if"),
    "proto": ("src", "dst", "in_if", "proto"),
    "port": ("src", "dst", "in_if", "proto", "sport", "dport"),
    "full": ("src", "dst", "in_if", "proto", "sport", "dport", "tos"),
    "vlan": ("src", "dst", "in_if", "proto", "sport", "dport", "tos", "vlan"),
    "ether": ("src", "dst", "in_if", "proto", "sport", "dport", "tos", "vlan", "src_mac", "dst_mac"),
}


# A biflow's record carries the responder's counters beside each of these (RFC 5103).
REVERSE_FIELDS = {"packets": "reverse_packets", "octets": "reverse_octets", "tcp_flags": "reverse_tcp_flags"}


class Definition(namedtuple("Definition", "name match collect fields key_mask export_mask ipver measured biflow "
                                          "route_as", defaults=(False, 0))):
    """A record definition, ready for the meter and the encoders.

    match/collect: the element names as written; fields: the record's field names
    (pyprobe/fields.py) in template order, None for a predefined record (the
    exporters' own templates); key_mask/export_mask: FlowKey masks, the IPv4 one then
    the IPv6 one (the meter's); ipver: 4 or 6 when only that version is metered, else 0;
    measured: whether it has a field the meter measures over the packets (pyprobe/fields.py
    PER_PACKET_FIELDS: the meter then keeps FlowMeasures beside each flow); biflow: both
    directions make one flow (RFC 5103), the initiator's counters and the responder's (reverse elements);
    route_as: AS_KEYED bits of the addresses whose route's origin AS is keyed on instead
    (bgpSourceAsNumber, bgpDestinationAsNumber as keys: they need --routes)."""

    __slots__ = ()

    @property
    def predefined(self):
        return self.fields is None

    def shown_fields(self):
        """The fields JSON and the table show: a predefined record's are the classic ones."""
        if self.predefined:
            return list(CLASSIC_SHOWN)
        return [BY_NAME[name] for name in self.fields if BY_NAME[name].json]


def _elements():
    """IPFIX element name -> (Field, the IP version it is of, or 0)."""
    names = {}
    for f in FIELDS:
        if f.ipfix is None or f.ctype is None and f.key is None:
            continue
        chosen = (f.ipfix,) if isinstance(f.ipfix, Element) else f.ipfix
        for i, element in enumerate(chosen):
            names.setdefault(element.name, (f, (4, 6)[i] if len(chosen) == 2 else 0))
    return names


ELEMENTS = _elements()


def _member_mask(member, bits=None, prefix=None):
    """(offset, mask bytes) of one FlowKey member: all its bits, an integer mask of them
    (native byte order), or an address prefix of `prefix` bits."""
    offset, size = KEY_MEMBERS[member]
    if prefix is not None:
        return offset, (((1 << prefix) - 1) << (size * 8 - prefix)).to_bytes(size, "big")
    if bits is None:
        return offset, b"\xff" * size
    return offset, bits.to_bytes(size, sys.byteorder)


def _mask(parts):
    """A FlowKey mask from (offset, mask bytes) parts, OR-ed together."""
    mask = bytearray(KEY_SIZE)
    for offset, bits in parts:
        for i, b in enumerate(bits):
            mask[offset + i] |= b
    return bytes(mask)


def _either_parts():
    """What a record shows of the first packet's key beyond its own key: the EITHER fields'
    members (not an AS's: its value is the route's, not the key's)."""
    return [_member_mask(f.key[0]) for f in FIELDS if f.role == EITHER and f.key and f.key[1] != ROUTE_AS]


def predefined(level):
    """The predefined record of a tracking level: its key as softflowd's; the record shows
    the first packet's TOS, VLAN and MACs where it does not key on them, and zero for the
    ports and protocol a coarse level merges. (Made once per level: settings ask often.)"""
    if level not in _PREDEFINED:
        key = _mask(_member_mask(m) for m in LEVELS[level] + ALWAYS_KEYED)
        shown = _mask([(0, key)] + _either_parts())
        _PREDEFINED[level] = Definition(level, (), (), None, key * 2, shown * 2, 0, False)
    return _PREDEFINED[level]


_PREDEFINED = {}


def _parse_name(text, record):
    """'sourceIPv4Address/24' -> (Field, ip version of the element, prefix or None)."""
    if not isinstance(text, str):
        raise ValueError(f"record {record!r}: {text!r} is not an element name")
    name, slash, length = text.partition("/")
    if name not in ELEMENTS:
        import difflib          # (only when a name is wrong)
        close = difflib.get_close_matches(name, ELEMENTS, 1)
        hint = f" (did you mean {close[0]}?)" if close else " (pyprobe --help lists the fields)"
        raise ValueError(f"record {record!r}: unknown field {name!r}{hint}")
    field, ipver = ELEMENTS[name]
    if not slash:
        return field, ipver, None
    if field.ctype != "address":
        raise ValueError(f"record {record!r}: {text!r}: only an address takes a prefix length")
    most = 32 if ipver == 4 else 128
    bits = whole_number(length)
    if bits is None or not 0 <= bits <= most:
        raise ValueError(f"record {record!r}: {text!r}: the prefix length is a number from 0 to {most}")
    return field, ipver, bits


def define(name, match, collect=(), biflow=False):
    """A user's record definition; ValueError says what is wrong with it."""
    if not isinstance(biflow, bool):
        raise ValueError(f"record {name!r}: biflow is true or false")
    if not isinstance(name, str) or not name:
        raise ValueError("a record needs a name")
    if name in LEVELS:
        raise ValueError(f"record {name!r}: that name is predefined ({', '.join(LEVELS)})")
    for what, names in (("match", match), ("collect", collect)):
        if not isinstance(names, (list, tuple)):
            raise ValueError(f"record {name!r}: {what} is a list of element names")
    if not match:
        raise ValueError(f"record {name!r}: match names no key field")
    seen = set()
    keys = {4: [], 6: []}
    fields = []
    families = set()
    route_as = 0
    keyed_members = {}
    for what, names in (("match", match), ("collect", collect)):
        for text in names:
            field, ipver, prefix = _parse_name(text, name)
            element = text.partition("/")[0]
            if element in seen:
                raise ValueError(f"record {name!r}: {element} is named twice")
            seen.add(element)
            if field.name in REVERSE_FIELDS.values() and not biflow:
                raise ValueError(f"record {name!r}: {element} is a biflow's (biflow = true)")
            if what == "match" and field.role == COLLECT:
                raise ValueError(f"record {name!r}: {element} cannot be a key (it goes in collect)")
            if what == "collect" and field.role == MATCH:
                raise ValueError(f"record {name!r}: {element} can only be a key (it goes in match)")
            if what == "match" and field.key:            # (flowDirection: always keyed)
                if field.ctype == "address":
                    families.add(ipver)
                member, bits = field.key
                kind = keyed_members.setdefault(member, (bits == ROUTE_AS, element))
                if kind[0] != (bits == ROUTE_AS):    # an address and its AS share the key's place
                    raise ValueError(f"record {name!r}: {element} and {kind[1]} cannot both be keys "
                                     "(an AS key stands in its address's place)")
                if bits == ROUTE_AS:         # the AS number, in the address's first 4 bytes
                    route_as |= AS_KEYED[member]
                    bits, prefix = None, 32
                for version in ((ipver,) if ipver else (4, 6)):
                    keys[version].append(_member_mask(member, bits, prefix))
            if field.name not in fields:
                fields.append(field.name)
                if biflow and field.name in REVERSE_FIELDS:
                    fields.append(REVERSE_FIELDS[field.name])
    if biflow and route_as not in (0, AS_KEYED["src"] | AS_KEYED["dst"]):
        raise ValueError(f"record {name!r}: a biflow keys on both ends alike: both AS numbers, or neither")
    # A record keyed on addresses of one IP version only meters that version (Flexible
    # NetFlow's ipv4 and ipv6 records); others key on their fields whatever the version.
    only = families.pop() if len(families) == 1 else 0
    always = [_member_mask(m) for m in ALWAYS_KEYED]
    key = {v: _mask(keys[v] + always) for v in (4, 6)}
    shown = {v: _mask([(0, key[v])] + _either_parts()) for v in (4, 6)}
    return Definition(name, tuple(match), tuple(collect), tuple(fields), key[4] + key[6], shown[4] + shown[6],
                      only, bool(PER_PACKET_FIELDS & set(fields)), biflow, route_as)


def record_stride(definition, routed=False):
    """The bytes per record the meter packs for this definition: a classic record
    (fields.CLASSIC_SIZE) when it has no member past a classic record's to fill, which is
    the predefined records' case unless routes give flows next hops and AS numbers; whole
    records otherwise. (The encoders and writers then read the same stride.)"""
    classic = definition.predefined or all(MEMBER_CLASSIC[BY_NAME[name].source] for name in definition.fields)
    return CLASSIC_SIZE if classic and not routed else RECORD_SIZE


def element_names(role):
    """The element names a field of this role (pyprobe/fields.py MATCH, EITHER, COLLECT) goes by."""
    return [name for name, (field, _) in ELEMENTS.items() if field.role == role]


RECORD_KEYS = ("name", "match", "collect", "biflow")     # a [[record]] table's


def from_config(tables):
    """The [[record]] tables of a config file -> {name: Definition}; ValueError if one is wrong."""
    records = {}
    for table in tables:               # (the config reader refuses keys not in RECORD_KEYS)
        definition = define(table.get("name"), table.get("match", ()), table.get("collect", ()),
                            table.get("biflow", False))
        if definition.name in records:
            raise ValueError(f"record {definition.name!r} is defined twice")
        records[definition.name] = definition
    return records


def resolve(name, records=None):
    """The Definition -T names: a predefined record or one of the config file's."""
    if name in LEVELS:
        return predefined(name)
    if records and name in records:
        return records[name]
    defined = list(LEVELS) + list(records or ())
    raise ValueError(f"unknown record {name!r} (one of {', '.join(defined)})")
