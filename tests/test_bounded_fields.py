"""Bounded string and octet array members (pyprobe/fields.py, text:N and octets:N) on the
wire and in JSON: the datagrams are read back by a parser of RFC 7011 / RFC 3954 written
here, from the templates the datagrams themselves carry; JSON is compared with the
json module's text of the same values. (tests/interop/test_varlen_fields.py: tshark.)"""

import json
import struct

import pytest

import bounded
from pyprobe import _encode
from pyprobe.export.ipfix import IpfixEncoder
from pyprobe.export.v9 import V9Encoder
from pyprobe.fields import CLASSIC_SIZE
from pyprobe.output import own_column, printable
from pyprobe.records import SHOW_CODES

SOURCE_PORT = 7       # IANA sourceTransportPort
APPLICATION_NAME = 96


def parse(datagrams, version):
    """Each datagram's data records (of the data templates), each as {element id: bytes};
    each IPFIX header's length checked against what the datagram holds."""
    templates, out = {}, []
    header = 16 if version == 10 else 20
    for datagram in datagrams:
        if version == 10:
            assert struct.unpack_from(">H", datagram, 2)[0] == len(datagram)
        pos, records = header, []
        while pos < len(datagram):
            set_id, length = struct.unpack_from(">HH", datagram, pos)
            body = datagram[pos + 4:pos + length]
            if set_id == (2 if version == 10 else 0):
                template_id, count = struct.unpack_from(">HH", body)
                templates[template_id] = [struct.unpack_from(">HH", body, 4 + 4 * k) for k in range(count)]
            elif set_id in templates:
                records += read_records(body, templates[set_id])
            pos += length
        assert pos == len(datagram)
        out.append(records)
    return out


def read_records(body, template):
    """A data set's records; a field of length 65535: RFC 7011 section 7's variable length."""
    records, pos = [], 0
    fixed = sum(length for _, length in template if length != 65535)
    while len(body) - pos >= fixed + sum(1 for _, length in template if length == 65535):
        record = {}
        for element, length in template:
            if length == 65535:
                length, pos = body[pos], pos + 1
                if length == 255:
                    length, pos = struct.unpack_from(">H", body, pos)[0], pos + 2
            record[element] = body[pos:pos + length]
            pos += length
        records.append(record)
    assert not any(body[pos:]), "set padding is zeros"
    return records


def encode(encoder_class, values, max_size=1472):
    encoder = encoder_class(max_size=max_size, record=bounded.RECORD, stride=bounded.STRIDE, table=bounded.TABLE)
    datagrams = encoder.encode(bounded.records(values), bounded.T0_US // 1000 + 5000)
    assert max(map(len, datagrams)) <= max_size
    return encoder, datagrams


def names_by_port(datagrams):
    return {int.from_bytes(r[SOURCE_PORT], "big") - bounded.SPORT: r[APPLICATION_NAME]
            for records in datagrams for r in records}


@pytest.mark.parametrize("max_size", [1472, 400])
def test_ipfix_variable_length(max_size):
    """Each string in its own length, one octet before it under 255, three from 255; the
    records fill datagrams whole, every set and message length what it holds."""
    values = bounded.NAMES * 5
    encoder, datagrams = encode(IpfixEncoder, values, max_size)
    assert names_by_port(parse(datagrams, 10)) == {i: v.encode() for i, v in enumerate(values)}
    assert encoder.records_sent == len(values)
    assert any(b"\x03DNS" in d for d in datagrams)
    assert any(b"\xff\x00\xff" + b"y" * 255 in d for d in datagrams)
    assert any(b"\xfe" + b"x" * 254 in d for d in datagrams)


def test_ipfix_datagrams_leave_full():
    """Each record measured as it is, not at its largest: a datagram ends only where the next
    record would not fit it."""
    values = [chr(97 + i % 26) * (i * 37 % 280) for i in range(300)]
    encoder = IpfixEncoder(max_size=1472, record=bounded.RECORD, stride=bounded.STRIDE, table=bounded.TABLE,
                           refresh_packets=0, refresh_ms=0)
    datagrams = encoder.encode(bounded.records(values), bounded.T0_US // 1000)
    per_datagram = parse(datagrams, 10)
    fixed = 4 + 4 + 1 + 2 + 2 + 8 + 8 + 8 + 8        # the template's other elements
    taken = 0
    for datagram, records in zip(datagrams, per_datagram):
        taken += len(records)
        if records and taken < len(values):
            following = len(values[taken])
            assert len(datagram) + fixed + following + (1 if following < 255 else 3) > 1472
    assert taken == len(values) and max(map(len, datagrams)) <= 1472
    assert len(datagrams) < len(values) // 4        # (at their largest, 4 records would fill one)


def test_ipfix_counts_records_of_variable_size():
    """A TCP stream's renumbering counts the data records of a message whose sizes vary."""
    values = bounded.NAMES * 2
    encoder, datagrams = encode(IpfixEncoder, values, 1000)
    counts = [encoder.data_record_count(d) for d in datagrams]
    flows = [len(records) for records in parse(datagrams, 10)]
    assert [c for c, n in zip(counts, flows) if n] == [n for n in flows if n]
    assert sum(counts) == len(values) + 3            # (the options records: sampling, selector, statistics)


@pytest.mark.parametrize("max_size", [1472, 400])
def test_v9_fixed_length_padded(max_size):
    """v9 has no variable length: the template gives the member's capacity, the string is
    zero-padded to it."""
    values = bounded.NAMES * 2
    _, datagrams = encode(V9Encoder, values, max_size)
    got = names_by_port(parse(datagrams, 9))
    assert got == {i: v.encode().ljust(bounded.CAPACITY, b"\0") for i, v in enumerate(values)}


def test_length_past_capacity_is_cut():
    """A slot whose length field says more than it holds gives its capacity's bytes."""
    packed = bytearray(bounded.records(["a" * bounded.CAPACITY]))
    struct.pack_into("=H", packed, bounded.OFFSET, 65535)
    encoder = IpfixEncoder(record=bounded.RECORD, stride=bounded.STRIDE, table=bounded.TABLE)
    assert names_by_port(parse(encoder.encode(bytes(packed), bounded.T0_US // 1000), 10)) == {
        0: b"a" * bounded.CAPACITY}


@pytest.mark.parametrize("encoder_class, empty", [(IpfixEncoder, b""), (V9Encoder, b"\0" * bounded.CAPACITY)])
def test_classic_records_carry_it_empty(encoder_class, empty):
    """Classic records (the first CLASSIC_SIZE bytes of a record) have no such member: it goes
    out empty, a length of 0 in IPFIX."""
    packed = b"".join(bounded.records(["unseen"] * 3)[i * bounded.STRIDE:][:CLASSIC_SIZE] for i in range(3))
    encoder = encoder_class(record=bounded.RECORD, stride=CLASSIC_SIZE, table=bounded.TABLE)
    assert names_by_port(parse(encoder.encode(packed, bounded.T0_US // 1000), encoder.VERSION)) == {
        i: empty for i in range(3)}


TEXTS = [b"", b"plain", b'quote " backslash \\ slash /', b"tab\tnewline\ncontrol\x01\x1f del\x7f",
         "é ü 日本 🎉".encode(), b"invalid \xff\xfe utf-8 \xc3", b"nul \0 inside"]


@pytest.mark.parametrize("show", ["text", "hex"])
def test_json(show):
    """JSON's text of a string is json.dumps' of its UTF-8 (invalid sequences: U+FFFD); an
    octet array's, its hex digits."""
    packed = bounded.records(TEXTS)
    columns = [("name", SHOW_CODES[show], bounded.OFFSET, bounded.SLOT)]
    lines = _encode.json_lines(packed, bounded.STRIDE, columns, 0, {}).decode().splitlines()
    expected = [raw.decode(errors="replace") if show == "text" else raw.hex() for raw in TEXTS]
    assert [json.loads(line)["name"] for line in lines] == expected
    assert lines == [json.dumps({"name": value}) for value in expected]


def test_table_column():
    """A string's column: left-aligned, as wide as its capacity at most; what does not print
    shows as '?'."""
    column = own_column(bounded.APPLICATION._replace(json="application"))
    assert (column.align, column.most) == ("<", bounded.CAPACITY)
    assert printable("a\tb\nc\x1b[31m é") == "a?b?c?[31m é"
