"""Every consumer of the field table (pyprobe/fields.py) agrees with it: the generated
record layout, the meter's records, the records module, the v9/IPFIX templates and
their packed records as tests/wire.py reads them, v5's fixed layout, JSON and --help.

Values are checked against what the test put into packets and records, and read back
with tests/wire.py (which does not import pyprobe), in the table's names and order."""

import functools
import ipaddress
import json
import operator
import random
import struct
from collections import namedtuple
from pathlib import Path

import dpkt
import pytest

import wire
from packets import eth_ip_packet, labelled, make_batch, tcp_segment, write_pcap
from pyprobe import _encode, _meter, fields, records
from pyprobe.definitions import ALWAYS_KEYED, ELEMENTS, LEVELS, REVERSE_FIELDS, define, predefined, record_stride
from pyprobe.fields import BY_NAME
from pyprobe.export import ENCODERS, capabilities
from pyprobe.export.encoder import CLASSES

ROOT = Path(__file__).resolve().parent.parent
T2024 = 1_710_000_000_000_000


def test_generated_record_pxd_is_the_tables():
    """The meter was built from this table: ext/record.pxd says exactly what fields.py says."""
    assert (ROOT / "ext" / "record.pxd").read_text() == fields.record_pxd()
    assert _meter.RECORD_SIZE == _encode.RECORD_SIZE == fields.RECORD_SIZE == records.RECORD.size


def test_layout_members_follow_the_table():
    stored = [f.name for f in fields.FIELDS if f.ctype]
    assert sorted(m.name for m in fields.MEMBERS) == sorted(stored)
    offset, previous = 0, None
    classic = {f.name: f.classic for f in fields.FIELDS if f.ctype}
    for m in fields.MEMBERS:
        if previous is not None and classic[previous] and not classic[m.name]:   # the second group: aligned
            offset += -offset % 8
        previous = m.name
        assert m.offset == offset
        offset += m.size
        if m.ctype.startswith(("uint", "int")):
            assert m.offset % m.size == 0, f"{m.name} is not naturally aligned"
    assert fields.RECORD_SIZE % 8 == 0 and offset <= fields.RECORD_SIZE < offset + 8
    assert struct.calcsize(fields.RECORD_FORMAT) == fields.RECORD_SIZE
    # the predefined records' members come first, in the bytes they had before the others were added
    assert max(m.offset + m.size for m in fields.MEMBERS if classic[m.name]) <= 104


def test_every_field_row_is_complete():
    names = [f.name for f in fields.FIELDS]
    assert len(names) == len(set(names))
    keys = [f.json for f in fields.FIELDS if f.json]
    assert len(keys) == len(set(keys))
    for f in fields.FIELDS:
        assert f.ctype or f.member in fields.BY_NAME, f.name
        assert f.doc, f.name
        for dialect in ("ipfix", "v9"):
            for ipver in (4, 6):
                e = f.element(dialect, ipver)
                if e is not None:
                    # (IPFIX's top bit says "enterprise": an element number has 15; v9's types have 16)
                    assert e.name and 0 < e.id < (32768 if dialect == "ipfix" else 65536) and e.length > 0


def meter_records(frames):
    meter = _meter.Meter(1)
    return meter.process(*make_batch(frames)) + meter.flush()


def test_predefined_record_shows_what_the_packets_said():
    """One flow of three packets: the predefined record's JSON holds what the packets said."""
    frames = [(T2024 + i * 1000, eth_ip_packet(4, "192.0.2.7", "198.51.100.9", 6, 4321, 443, flags=flag,
                                               tos=0x28, ttl=ttl, src_mac="02:aa:bb:cc:dd:01",
                                               dst_mac="02:aa:bb:cc:dd:02", vlan=77, payload=b"x" * i))
              for i, (flag, ttl) in enumerate(((0x02, 61), (0x10, 64), (0x18, 58)))]
    (r,) = records.unpack(meter_records(frames))
    assert r._fields == fields.JSON_KEYS
    want = {"src": "192.0.2.7", "dst": "198.51.100.9", "ipver": 4, "proto": 6, "sport": 4321, "dport": 443,
            "packets": 3, "octets": 3 * 40 + 0 + 1 + 2, "start": T2024 / 1e6, "end": (T2024 + 2000) / 1e6,
            "tcp_flags": 0x1a, "tos": 0x28, "vlan": 77, "in_if": 0, "out_if": 0, "direction": 0,
            "src_mac": "02:aa:bb:cc:dd:01", "dst_mac": "02:aa:bb:cc:dd:02", "mpls_label": 0,
            "min_ttl": 58, "max_ttl": 64, "end_reason": "eof"}
    assert r.as_dict() == want


def test_hop_limit_is_the_ipv6_ttl():
    frames = [(T2024 + i, eth_ip_packet(6, "2001:db8::1", "2001:db8::2", 17, 53, 53, ttl=ttl))
              for i, ttl in enumerate((255, 3, 200))]
    (r,) = records.unpack(meter_records(frames))
    assert (r.min_ttl, r.max_ttl, r.ipver) == (3, 255, 6)


# -- the meter fills every member the table declares --------------------------------------
#
# Packets that make every member nonzero in some flow, metered with every record that has
# the field: the predefined records (the classic members), a definition of each field alone
# (its key or collected) and one of every field at once, each without routes and with them.
# Each member must equal what the test computes from its own reading of the same bytes
# (read_frame: struct and ipaddress, not pyprobe's decoder), aggregated over the flow's
# packets as TRUTH below says; TRUTH's aggregate for a per-packet row is the table's kind.

T0 = T2024
IN_IF, EGRESS_IF = 7, 9
ROUTES = {ipaddress.ip_network("10.2.0.0/16"): ("10.9.9.1", 5, 65002),
          ipaddress.ip_network("10.1.0.0/16"): ("10.9.9.2", 4, 65001),
          ipaddress.ip_network("2001:db8:1::/48"): ("2001:db8::ff", 6, 65006)}
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)


def ipv4_packet(src, dst, proto, l4, tos=0, ttl=64, flags_offset=0):
    return struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), 1, flags_offset, ttl, proto, 0,
                       ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed) + l4


def ipv6_packet(src, dst, proto, l4, tclass=0, flow_label=0, hop_limit=64):
    return struct.pack("!IHBB16s16s", (6 << 28) | (tclass << 20) | flow_label, len(l4), proto, hop_limit,
                       ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed) + l4


def frame_of(ip, vlans=(), mpls=()):
    return labelled(ip, mpls, vlans, src_mac="02:aa:00:00:00:01", dst_mac="02:aa:00:00:00:02")


def udp_datagram(sport, dport, payload=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


MSS, NOP, WSCALE, SACK_OK, TIMESTAMP = b"\x02\x04\x05\xb4", b"\x01", b"\x03\x03\x07", b"\x04\x02", \
    b"\x08\x0a" + bytes(8)
SACK, MPTCP = b"\x05\x0a" + bytes(8), b"\x1e\x04\x00\x00"
STACK_1 = [(16 + i, i % 8) for i in range(11)]        # the top entry and ten below (one more than kept)
STACK_2 = [(900 + i, 7 - i % 8) for i in range(4)]
DF, MF = 0x4000, 0x2000


def measured_frames():
    """[(time_us, frame, direction, in_if)] of six flows: an IPv4 TCP flow under two VLAN tags
    and an MPLS stack and its reverse, ICMP with more fragments, IPv6 UDP with a flow label,
    a TCP flow whose first segment was cut before its window, and an egress UDP flow. Each
    per-packet measure's first packet and a later one count (a SYN twice, the smallest and
    largest not first, options the first packet lacks, a window first seen later)."""
    a, b = "10.1.1.1", "10.2.2.2"
    tcp = [  # (flags, window, options, payload, ttl, MPLS stack)
        (0x02, 64240, MSS + SACK_OK + TIMESTAMP + NOP + WSCALE, b"", 61, STACK_1),
        (0x02, 64240, MSS + NOP + NOP + MPTCP, b"x" * 300, 64, STACK_2),
        (0x18, 65535, NOP + NOP + TIMESTAMP + SACK, b"x" * 1000, 58, STACK_2),
        (0x11, 502, b"", b"x" * 2, 63, STACK_2),
    ]
    frames = [(T0 + i * 1000, frame_of(ipv4_packet(a, b, 6, tcp_segment(40000, 443, f, w, o, p), tos=0xb9, ttl=t,
                                                   flags_offset=DF), vlans=(100, 200), mpls=s))
              for i, (f, w, o, p, t, s) in enumerate(tcp)]
    answer = tcp_segment(443, 40000, 0x12, 29000, MSS)
    frames.append((T0 + 500, frame_of(ipv4_packet(b, a, 6, answer, ttl=50), vlans=(100, 200))))
    for i, padding in enumerate((b"", b"y" * 20)):        # ICMP port unreachable
        icmp = struct.pack("!BBHI", 3, 4, 0, 0) + padding
        frames.append((T0 + 10 + i, frame_of(ipv4_packet("10.3.3.3", "10.2.7.7", 1, icmp, tos=0x20, flags_offset=MF))))
    for i, (size, hops) in enumerate(((10, 200), (0, 3))):
        ip = ipv6_packet("2001:db8::1", "2001:db8:1::2", 17, udp_datagram(53, 5353, bytes(size)), tclass=0x28,
                         flow_label=0x12345, hop_limit=hops)
        frames.append((T0 + 20 + i, frame_of(ip)))
    for i, (flags, window, options) in enumerate(((0x07, 4096, TIMESTAMP), (0x07, 9, WSCALE), (0x05, 3, b""))):
        frame = frame_of(ipv4_packet("10.7.7.7", "10.2.8.8", 6, tcp_segment(40000, 443, flags, window, options)))
        frames.append((T0 + 30 + i, frame[:14 + 20 + 15] if i == 0 else frame))      # the first: its window cut off
    frames = [(time, frame, "ingress", IN_IF) for time, frame in frames]
    egress = frame_of(ipv4_packet("10.5.5.5", "10.6.6.6", 17, udp_datagram(1, 2)))
    return frames + [(T0 + 40, egress, "egress", EGRESS_IF)]


Read = namedtuple("Read", "time_us direction in_if src_mac dst_mac vlans mpls ipver src dst tos ttl frag "
                          "flow_label length proto sport dport tcp_flags window options")


def read_frame(time_us, frame, direction, in_if):
    """The test's own reading of a frame it built: Ethernet, VLAN tags, MPLS stack entries
    (their 24 bits above the TTL), IPv4/IPv6, TCP/UDP/ICMP."""
    dst_mac, src_mac = frame[:6], frame[6:12]
    (etype,), off, vlans, mpls = struct.unpack("!H", frame[12:14]), 14, [], []
    while etype in VLAN_TPIDS:
        vlans.append(struct.unpack("!H", frame[off:off + 2])[0] & 0xfff)
        etype, off = struct.unpack("!H", frame[off + 2:off + 4])[0], off + 4
    while etype == 0x8847:
        (entry,) = struct.unpack("!I", frame[off:off + 4])
        mpls.append(entry >> 8)
        off += 4
        if entry & 0x100:
            etype = 0
    ip = frame[off:]
    if ip[0] >> 4 == 4:
        tos, length, flags_offset, ttl, proto = ip[1], *struct.unpack("!HH", ip[2:4] + ip[6:8]), ip[8], ip[9]
        src, dst, frag, flow_label, l4 = ip[12:16], ip[16:20], flags_offset >> 8 & 0x60, 0, ip[20:]
    else:
        (first,) = struct.unpack("!I", ip[:4])
        tos, flow_label, length = first >> 20 & 0xff, first & 0xfffff, 40 + struct.unpack("!H", ip[4:6])[0]
        proto, ttl, src, dst, frag, l4 = ip[6], ip[7], ip[8:24], ip[24:40], 0, ip[40:]
    sport, dport = struct.unpack("!HH", l4[:4]) if proto in (6, 17) else (0, l4[0] << 8 | l4[1])
    flags = l4[13] if proto == 6 else 0
    window = struct.unpack("!H", l4[14:16])[0] if proto == 6 and len(l4) >= 16 else None
    kinds = {kind for kind, _ in dpkt.tcp.parse_opts(l4[20:(l4[12] >> 4) * 4])} if proto == 6 else set()
    return Read(time_us, direction, in_if, src_mac, dst_mac, vlans, mpls, ip[0] >> 4, src.ljust(16, b"\0"),
                dst.ljust(16, b"\0"), tos, ttl, frag, flow_label, length, proto, sport, dport, flags, window, kinds)


def tcp_options_element(kinds):
    """tcpOptions' value as RFC 5102 draws it: the element's octet k holds kinds 8k+7 .. 8k."""
    octets = bytearray(8)
    for kind in kinds:
        if kind < 64:
            octets[kind // 8] |= 1 << kind % 8
    return int.from_bytes(octets, "big")


def route_value(which, index, p, context):
    """What the longest route holding the packet's source or destination says (index: 0 next
    hop, 1 out_if, 2 origin AS, 3 prefix length); 0 without one."""
    address = p.src if which == "src" else p.dst
    ip = ipaddress.ip_address(address[:4] if p.ipver == 4 else address)
    held = [(net, r) for net, r in ROUTES.items() if net.version == ip.version and ip in net]
    if not context.routed or not held:
        return bytes(16) if index == 0 else 0
    net, (hop, out_if, origin) = max(held, key=lambda item: item[0].prefixlen)
    return (ipaddress.ip_address(hop).packed.ljust(16, b"\0"), out_if, origin, net.prefixlen)[index]


def mpls_entry(n):
    return lambda p, c: p.mpls[n - 1] if len(p.mpls) >= n else 0


def initiator(value):
    return lambda p, c: None if c.responder(p) else value(p, c)


def responder(value):
    return lambda p, c: value(p, c) if c.responder(p) else None


# field -> (aggregate over the flow's packets, the value of a packet: None where it has none)
TRUTH = {
    "src": ("first", lambda p, c: p.src), "dst": ("first", lambda p, c: p.dst),
    "ipver": ("first", lambda p, c: p.ipver), "proto": ("first", lambda p, c: p.proto),
    "sport": ("first", lambda p, c: p.sport), "dport": ("first", lambda p, c: p.dport),
    "packets": ("sum", initiator(lambda p, c: 1)), "octets": ("sum", initiator(lambda p, c: p.length)),
    "first_us": ("first", lambda p, c: p.time_us), "last_us": ("last", lambda p, c: p.time_us),
    "tcp_flags": ("or", initiator(lambda p, c: p.tcp_flags)), "tos": ("first", lambda p, c: p.tos),
    "vlan": ("first", lambda p, c: p.vlans[0] if p.vlans else 0),
    "in_if": ("first", lambda p, c: p.in_if if p.direction == "ingress" else 0),
    "out_if": ("first", lambda p, c: p.in_if if p.direction == "egress" else route_value("dst", 1, p, c)),
    "next_hop": ("first", lambda p, c: route_value("dst", 0, p, c)),
    "src_as": ("first", lambda p, c: route_value("src", 2, p, c)),
    "dst_as": ("first", lambda p, c: route_value("dst", 2, p, c)),
    "src_length": ("first", lambda p, c: route_value("src", 3, p, c)),
    "dst_length": ("first", lambda p, c: route_value("dst", 3, p, c)),
    "direction": ("first", lambda p, c: int(p.direction == "egress")),
    "src_mac": ("first", lambda p, c: p.src_mac), "dst_mac": ("first", lambda p, c: p.dst_mac),
    "mpls_label": ("first", lambda p, c: p.mpls[0] >> 4 if p.mpls else 0),
    "mpls_stack": ("first", lambda p, c: p.mpls[0] if p.mpls else 0),
    "min_ttl": ("min", lambda p, c: p.ttl), "max_ttl": ("max", lambda p, c: p.ttl),
    "end_reason": ("last", lambda p, c: 4),                                   # eof: the test flushes
    "dscp": ("first", lambda p, c: p.tos >> 2), "precedence": ("first", lambda p, c: p.tos >> 5),
    "icmp_type": ("first", lambda p, c: p.dport >> 8 if p.proto in (1, 58) else 0),
    "icmp_code": ("first", lambda p, c: p.dport & 0xff if p.proto in (1, 58) else 0),
    "inner_vlan": ("first", lambda p, c: p.vlans[1] if len(p.vlans) > 1 else 0),
    "mpls_exp": ("first", lambda p, c: p.mpls[0] >> 1 & 7 if p.mpls else 0),
    **{f"mpls_label_{n}": ("first", mpls_entry(n)) for n in range(2, 2 + fields.MPLS_STACK_KEPT)},
    "flow_label": ("first", lambda p, c: p.flow_label), "frag": ("first", lambda p, c: p.frag),
    "syn_packets": ("count", lambda p, c: p.proto == 6 and p.tcp_flags & 0x02 != 0),
    "fin_packets": ("count", lambda p, c: p.proto == 6 and p.tcp_flags & 0x01 != 0),
    "rst_packets": ("count", lambda p, c: p.proto == 6 and p.tcp_flags & 0x04 != 0),
    "min_length": ("min", lambda p, c: p.length), "max_length": ("max", lambda p, c: p.length),
    "min_tcp_window": ("min", lambda p, c: p.window), "max_tcp_window": ("max", lambda p, c: p.window),
    "tcp_options": ("or", lambda p, c: tcp_options_element(p.options)),
    "reverse_packets": ("sum", responder(lambda p, c: 1)),
    "reverse_octets": ("sum", responder(lambda p, c: p.length)),
    "reverse_tcp_flags": ("or", responder(lambda p, c: p.tcp_flags)),
    "octets_squared": ("sum", lambda p, c: p.length ** 2),
}
AGGREGATES = {"first": lambda vs: vs[0], "last": lambda vs: vs[-1], "min": min, "max": max, "sum": sum,
              "or": lambda vs: functools.reduce(operator.or_, vs), "count": lambda vs: sum(map(bool, vs))}


class Context(namedtuple("Context", "routed initiators")):
    """How the test groups and reads a metering: with routes or not; a biflow's initiator
    of each pair of addresses (None: not a biflow)."""

    def responder(self, p):
        return self.initiators is not None and self.initiators[frozenset((p.src, p.dst))] != p.src


def expected(name, packets, context):
    aggregate, value = TRUTH[name]
    values = [v for v in (value(p, context) for p in packets) if v is not None]
    return AGGREGATES[aggregate](values) if values else 0


def meter_everything(definition, routed):
    """The records of measured_frames() metered with this definition: {member: value} each."""
    meter = _meter.Meter(1, record=definition, direction="both", stride=record_stride(definition, routed),
                         timeouts={"tcp.fin": 60, "tcp.rst": 60})      # (a flow that RSTs goes on: one record)
    if routed:
        table = _meter.RouteTable()
        for net, (hop, out_if, origin) in ROUTES.items():
            table.add(net.version, net.network_address.packed, net.prefixlen, ipaddress.ip_address(hop).packed,
                      out_if, origin)
        meter.set_routes(table)
    out = b""
    for direction, in_if in (("ingress", IN_IF), ("egress", EGRESS_IF)):
        batch = [(t, f) for t, f, d, i in measured_frames() if (d, i) == (direction, in_if)]
        out += meter.process(*make_batch(batch), direction=direction, in_if=in_if)
    out += meter.flush()
    layout = records.RECORD if meter.stride == fields.RECORD_SIZE else records.CLASSIC
    names = [m.name for m in fields.MEMBERS if m.offset < meter.stride]
    return [dict(zip(names, values)) for values in layout.iter_unpack(out)]


def key_value(keyed, p, context):
    """The packet's value of the field a record keys on beyond the addresses (keyed: the
    field's name and the IP version of its element, or 0), or None: 0 for the other IP
    version's packets, whose key has no such member."""
    if keyed is None:
        return None
    name, ipver = keyed
    return TRUTH[name][1](p, context) if ipver in (0, p.ipver) else 0


def flows_of(reads, biflow, keyed, routed):
    """The test's flows: packets by address pair (a biflow's unordered), direction and the
    value of the field `keyed` (key_value); the Context they are read in."""
    initiators = {}                         # a biflow's: each pair's first packet's source
    for p in sorted(reads, key=lambda p: p.time_us):
        initiators.setdefault(frozenset((p.src, p.dst)), p.src)
    context = Context(routed, initiators if biflow else None)
    flows = {}
    for p in sorted(reads, key=lambda p: p.time_us):
        pair = frozenset((p.src, p.dst)) if biflow else (p.src, p.dst)
        flows.setdefault((pair, p.direction, key_value(keyed, p, context)), []).append(p)
    return flows, context


def definitions_of_each_field():
    """(definition, the fields it shows) for every kind of record that has a field: the
    predefined ones; of each element, one that collects it and one keyed on it (as its
    role allows: a key that needs routes aside), a biflow for the reverse elements; and
    one that collects every element it can at once."""
    addresses = ["sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address", "destinationIPv6Address"]
    out, shown, keyed_on = [], {}, {}
    for level in LEVELS:
        keyed = set(LEVELS[level] + ALWAYS_KEYED)
        shown[level] = [f.name for f in fields.FIELDS if f.ctype and f.classic
                        and (f.role != fields.MATCH or f.key[0] in keyed)]
        out.append(predefined(level))
    every = []
    for name, (field, _) in ELEMENTS.items():
        if field.ctype is None or field.name in ("src", "dst"):
            continue
        reverse = field.name in REVERSE_FIELDS.values()
        if field.role != fields.MATCH:
            out.append(define(name, addresses, [name], biflow=reverse))
            every += [] if reverse else [name]
        if field.role != fields.COLLECT and field.key and field.key[1] != fields.ROUTE_AS:
            out.append(define(name + "-keyed", addresses + [name]))
            keyed_on[name + "-keyed"] = (field.name, ELEMENTS[name][1])
    out.append(define("every", addresses, every))
    return [(d, shown[d.name] if d.predefined else [n for n in d.fields if BY_NAME[n].ctype], keyed_on.get(d.name))
            for d in out]


def test_truth_covers_the_table():
    """Every field the record stores has an entry in TRUTH; a per-packet row's aggregate is the table's kind."""
    assert set(TRUTH) == {f.name for f in fields.FIELDS if f.ctype}
    for f in fields.FIELDS:
        if f.measure and f.measure.kind in fields.PER_PACKET:
            assert TRUTH[f.name][0] == f.measure.kind, f.name
    assert {f.name for f in fields.FIELDS if f.ctype and f.measure is None} == set()


def test_meter_fills_every_member():
    """For every record that has a field, each of its flows' records holds the field's value
    as the test reads it from the packets; every field is nonzero in some flow."""
    reads = [read_frame(*f) for f in measured_frames()]
    nonzero = set()
    for definition, names, keyed in definitions_of_each_field():
        for routed in (False, True):
            flows, context = flows_of(reads, definition.biflow, keyed, routed)
            got = meter_everything(definition, routed)
            assert len(got) == len(flows), definition.name
            for (_, direction, key), packets in flows.items():
                first = packets[0]
                (record,) = [r for r in got if (r["src"], r["dst"], r["direction"], keyed and r[keyed[0]]) ==
                             (first.src, first.dst, int(direction == "egress"), key)]
                for name in names:
                    want = key if keyed and name == keyed[0] else expected(name, packets, context)
                    assert record[name] == want, (definition.name, routed, name, first.src, first.dst)
                    if want:
                        nonzero.add(name)
    assert nonzero == set(TRUTH), set(TRUTH) - nonzero


def random_record(rnd, ipver, icmp):
    """Member values a test chooses, packed in the table's layout."""
    src = ipaddress.ip_address(rnd.getrandbits(32) if ipver == 4 else rnd.getrandbits(128))
    dst = ipaddress.ip_address(rnd.getrandbits(32) if ipver == 4 else rnd.getrandbits(128))
    first = T2024 + rnd.randrange(10**9)
    values = dict(src=src.packed, dst=dst.packed, ipver=ipver, proto=(1 if ipver == 4 else 58) if icmp else 132,
                  sport=0 if icmp else rnd.randrange(65536), dport=rnd.randrange(65536),
                  packets=rnd.randrange(1, 2**31), octets=rnd.randrange(1, 2**31), first_us=first,
                  last_us=first + rnd.randrange(10**8), tcp_flags=rnd.randrange(256), tos=rnd.randrange(256),
                  vlan=rnd.randrange(4096), in_if=rnd.randrange(2**32), out_if=0, min_ttl=rnd.randrange(1, 100),
                  max_ttl=rnd.randrange(100, 256), end_reason=rnd.randrange(1, 7), direction=rnd.randrange(2))
    return values


def expected_value(name, values, element):
    """What an element of field `name` must carry for these member values (from the table's row)."""
    f = fields.BY_NAME[name]
    v = values[f.source]
    if element.encoding == fields.BYTES:
        if name in ("src", "dst"):
            return str(ipaddress.ip_address(v))
        return v
    if element.encoding == fields.MILLISECONDS:
        return v // 1000
    if element.encoding == fields.END_REASON:
        return 4 if v == 6 else v          # forced goes out as IPFIX forcedEnd (4); the rest as they are
    return v & ((1 << (8 * element.length)) - 1)


@pytest.mark.parametrize("version", [9, 10])
def test_templates_and_packed_records_follow_the_table(version):
    """For each record class: the template the wire carries lists the table's elements for the
    encoder's field names, in order; each data record read back holds the test's values."""
    rnd = random.Random(version)
    encoder_class = ENCODERS[version]
    dialect = "ipfix" if version == 10 else "v9"
    module = __import__(encoder_class.__module__, fromlist=["FIELDS"])
    chosen = [(ipver, icmp, random_record(rnd, ipver, icmp)) for ipver, icmp in CLASSES for _ in range(3)]
    buf = b"".join(records.pack(**values) for _, _, values in chosen)
    encoder = encoder_class()
    now_ms = max(v["last_us"] for _, _, v in chosen) // 1000 + 1000
    parser = wire.Parser()
    msgs = [parser.parse(d, source="test") for d in encoder.encode(buf, now_ms)]
    # the templates on the wire
    on_wire = {key[-1]: entry for key, entry in parser.templates.items() if entry[0] == "data"}
    assert len(on_wire) == len(CLASSES)
    for layout, (ipver, icmp) in zip(encoder.layouts, CLASSES):
        names = module.ICMP_FIELDS if icmp else module.FIELDS
        assert layout.field_names == list(names)
        elements = [fields.BY_NAME[n].element(dialect, ipver) for n in names]
        assert on_wire[layout.id][-1] == [(e.id, e.length) for e in elements]
        assert layout.id == module.TEMPLATE_IDS[ipver, icmp]
    # the records, matched on their (unique) source port/address
    got = [r for m in msgs for r in m.records]
    assert len(got) == len(chosen)
    for ipver, icmp, values in chosen:
        names = module.ICMP_FIELDS if icmp else module.FIELDS
        src_ie = fields.BY_NAME["src"].element(dialect, ipver).id
        (record,) = [r for r in got if r.get(src_ie) == str(ipaddress.ip_address(values["src"]))]
        for name in names:
            element = fields.BY_NAME[name].element(dialect, ipver)
            if element.encoding == fields.UPTIME_MS:
                continue                  # relative to the header: checked through wire.absolute_ms
            assert record[element.id] == expected_value(name, values, element), name
        (msg,) = [m for m in msgs if record in m.records]
        assert wire.absolute_ms(msg, record) == (values["first_us"] // 1000, values["last_us"] // 1000)


def test_port_templates_carry_no_icmp_element():
    """Only ICMP flows' templates have icmpTypeCode: collectors that prefer it over the port
    (nfdump 1.7 for IPFIX) read other protocols' ports right."""
    icmp_ids = {e.id for e in fields.BY_NAME["icmp_type_code"].ipfix} | {fields.BY_NAME["icmp_type_code"].v9.id}
    for version in (9, 10):
        for layout, (_, icmp) in zip(ENCODERS[version]().layouts, CLASSES):
            assert bool(icmp_ids & {e.id for e in layout.elements}) == icmp


def test_v5_fixed_layout():
    """v5's record (Cisco's layout, read by tests/wire.py) from the table's members."""
    rnd = random.Random(5)
    values = random_record(rnd, 4, False)
    values["packets"], values["octets"] = 1234, 567890
    encoder = ENCODERS[5]()
    (msg,) = wire.parse_all(encoder.encode(records.pack(**values), values["last_us"] // 1000 + 1000))
    (r,) = msg.records
    assert (r[wire.IPV4_SRC_ADDR], r[wire.IPV4_DST_ADDR]) == (str(ipaddress.ip_address(values["src"])),
                                                              str(ipaddress.ip_address(values["dst"])))
    assert (r[wire.IN_PKTS], r[wire.IN_BYTES], r[wire.PROTOCOL], r[wire.SRC_TOS], r[wire.TCP_FLAGS]) == (
        1234, 567890, values["proto"], values["tos"], values["tcp_flags"])
    assert (r[wire.L4_SRC_PORT], r[wire.L4_DST_PORT], r[wire.INPUT_SNMP]) == (
        values["sport"], values["dport"], values["in_if"] & 0xffff)
    assert wire.absolute_ms(msg, r) == (values["first_us"] // 1000, values["last_us"] // 1000)


def test_capabilities_match_what_the_encoders_do():
    v6 = records.pack(src=ipaddress.ip_address("2001:db8::1").packed, dst=b"\0" * 16, ipver=6, proto=17,
                      packets=1, octets=60, first_us=T2024, last_us=T2024, end_reason=1)
    for version, cls in ENCODERS.items():
        caps = capabilities(version)
        encoder = cls()
        sent = sum(len(m.records) for m in wire.parse_all(encoder.encode(v6, T2024 // 1000 + 1000)))
        assert sent == (1 if caps.ipv6 else 0), caps.name
        assert bool(wire.parse_all(cls().encode(b"", T2024 // 1000))) == caps.templates, caps.name


def test_json_and_help_name_the_tables_keys(tmp_path):
    path = write_pcap(str(tmp_path / "one.pcap"),
                      [(T2024, eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 1, 2, ttl=9))])
    proc = wire.run_pyprobe(["-r", path, "--json", "-q"])
    record = json.loads(proc.stdout)
    assert tuple(record) == fields.JSON_KEYS
    assert (record["min_ttl"], record["max_ttl"]) == (9, 9)
    help_text = " ".join(wire.run_pyprobe(["--help"]).stdout.split())
    assert " ".join(fields.JSON_KEYS) in help_text


def test_compiled_json_is_json_dumps_of_the_records():
    """records.to_json_lines (compiled, used for --json and --expect) writes what json.dumps of
    each unpacked record writes, for IPv4 and IPv6, every end reason and odd times."""
    rnd = random.Random(8)
    buf = b"".join(records.pack(**random_record(rnd, ipver, icmp)) for ipver, icmp in CLASSES for _ in range(50))
    for us in (0, -1, 7, -1_500_000, 999_999, 1_582_454_779_500_000, 4_294_967_295_999_999):
        buf += records.pack(src=b"\x01\x02\x03\x04", dst=bytes(16), ipver=4, first_us=us, last_us=us, end_reason=9,
                            src_mac=b"\xaa\xbb\xcc\xdd\xee\xff")
    want = "".join(json.dumps(r.as_dict()) + "\n" for r in records.unpack(buf))
    assert records.to_json_lines(buf).decode() == want


HELP_ROLES = {"match only:": "match", "match, or collect (the flow's first packet's value):": "match or collect",
              "collect only:": "collect"}


def help_elements():
    """The element names pyprobe --help lists for record definitions -> their role there."""
    listed, role = {}, None
    for line in wire.run_pyprobe(["--help"]).stdout.split("\nrecords (-T", 1)[1].splitlines()[1:]:
        if line.strip() in HELP_ROLES:
            role = HELP_ROLES[line.strip()]
        elif role and line.startswith("    "):
            listed.update(dict.fromkeys(line.split(), role))
        elif role:
            return listed
    return listed


def readme_field_rows():
    """README's table of record fields: element -> (its role, its JSON key cell)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("  | element (IANA number) | as | JSON key | what |")
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("  |"):
            break
        element, role, key = (cell.strip() for cell in line.split("|")[1:4])
        rows[element.split("`")[1]] = (role, key)
    return rows


def test_readme_lists_the_fields_help_lists():
    """README's field table has a row for each element --help lists, the biflow's reverse
    ones too, in the role --help gives it and with its JSON key (none but these)."""
    listed, rows = help_elements(), readme_field_rows()
    assert {"reversePacketDeltaCount", "packetDeltaCount", "sourceIPv4Address"} <= set(listed)
    assert set(rows) == set(listed)
    for name, role in listed.items():
        key = ELEMENTS[name][0].json
        assert rows[name] == (role, f"`{key}`" if key else "—"), name
