"""Every consumer of the field table (pyprobe/fields.py) agrees with it: the generated
record layout, the meter's records, the records module, the v9/IPFIX templates and
their packed records as tests/wire.py reads them, v5's fixed layout, JSON and --help.

Values are checked against what the test put into packets and records, and read back
with tests/wire.py (which does not import pyprobe), in the table's names and order."""

import ipaddress
import json
import random
import struct
from pathlib import Path

import pytest

import wire
from packets import eth_ip_packet, make_batch, write_pcap
from pyprobe import _encode, _meter, fields, records
from pyprobe.definitions import ELEMENTS
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


def test_meter_fills_every_member():
    """One flow of three packets: the record holds what the packets said, member by member."""
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
    for line in wire.run_pyprobe(["--help"]).stdout.split("\nrecords (-T NAME)", 1)[1].splitlines()[1:]:
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
