"""Classic records (pyprobe/fields.py CLASSIC_SIZE): the meter packs only a record's
classic members when nothing else is filled, and every reader of records (the
encoders, JSON, the table, dating, dump-flows) reads them at that stride. The same
packets metered into classic and into whole records must give the same export,
byte for byte, and the same text."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import reference  # noqa: E402
from pyprobe import _encode, records  # noqa: E402
from pyprobe._meter import CLASSIC_SIZE, RECORD_SIZE, Meter, RouteTable  # noqa: E402
from pyprobe.definitions import LEVELS, define, predefined, record_stride  # noqa: E402
from pyprobe.export import ENCODERS  # noqa: E402
from pyprobe.export.encoder import Layout  # noqa: E402
from pyprobe.export.v9 import FIELDS as V9_FIELDS  # noqa: E402

CORPUS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "pcaps", "corpus"))
# IPv4 and IPv6, ICMP, VLAN tags (two), MPLS, PPPoE: every record class and the classic members' sources
CAPTURES = ["zeek/icmp_dot1q.pcap", "zeek/pppoe-over-qinq.pcap", "zeek/ipv6-http-atomic-frag.pcap",
            "ndpi/1kxun.pcap", "zeek/mpls-in-vlan.pcap"]


def metered(capture, level, stride):
    """A corpus capture's records, metered with a small cache (so records go out while it runs)."""
    linktype, packets = reference.read(capture)
    frames = list(packets)
    data, meta = bytearray(), bytearray()
    for ts, frame in frames:
        us = int(round(float(ts) * 1e6))
        meta += int(us // 1_000_000).to_bytes(4, sys.byteorder) + int(us % 1_000_000).to_bytes(4, sys.byteorder)
        meta += len(data).to_bytes(4, sys.byteorder) + len(frame).to_bytes(4, sys.byteorder)
        data += frame
    m = Meter(linktype, max_flows=64, record=predefined(level), stride=stride)
    return m.process(bytes(data), bytes(meta)) + m.flush()


def captures():
    found = [os.path.join(CORPUS, rel) for rel in CAPTURES if os.path.exists(os.path.join(CORPUS, rel))]
    if not found:
        pytest.skip("corpus captures missing")
    return found


@pytest.mark.parametrize("level", LEVELS)
def test_classic_records_are_whole_records_first_bytes(level):
    for capture in captures():
        whole = metered(capture, level, RECORD_SIZE)
        classic = metered(capture, level, CLASSIC_SIZE)
        n = len(whole) // RECORD_SIZE
        assert n > 0 and len(classic) == n * CLASSIC_SIZE
        assert _encode.whole_records(classic, CLASSIC_SIZE) == b"".join(
            whole[i * RECORD_SIZE:i * RECORD_SIZE + CLASSIC_SIZE] + bytes(RECORD_SIZE - CLASSIC_SIZE)
            for i in range(n))
        assert [whole[i * RECORD_SIZE:i * RECORD_SIZE + CLASSIC_SIZE] for i in range(n)] == \
            [classic[i * CLASSIC_SIZE:(i + 1) * CLASSIC_SIZE] for i in range(n)]


@pytest.mark.parametrize("version", sorted(ENCODERS))
@pytest.mark.parametrize("level", ["full", "ether", "ip"])
def test_export_of_classic_records_is_byte_identical(version, level):
    sent = 0
    for capture in captures():
        whole = metered(capture, level, RECORD_SIZE)
        classic = metered(capture, level, CLASSIC_SIZE)
        now_ms = 1_700_000_000_000
        got = ENCODERS[version](stride=CLASSIC_SIZE).encode(classic, now_ms)
        want = ENCODERS[version]().encode(whole, now_ms)
        assert got == want, capture
        sent += len(got)
    assert sent > len(captures())             # (v5 sends no datagram of an IPv6 capture)


def test_text_of_classic_records_is_the_same():
    for capture in captures():
        whole = metered(capture, "full", RECORD_SIZE)
        classic = metered(capture, "full", CLASSIC_SIZE)
        assert records.to_json_lines(classic, stride=CLASSIC_SIZE) == records.to_json_lines(whole)
        assert records.unpack(classic, CLASSIC_SIZE) == records.unpack(whole)
        assert _encode.retime(classic, CLASSIC_SIZE, 0, 5_000_000, 2.0) == b"".join(
            r[:CLASSIC_SIZE] for r in _chunks(_encode.retime(whole, RECORD_SIZE, 0, 5_000_000, 2.0), RECORD_SIZE))


def _chunks(buf, size):
    return [buf[i:i + size] for i in range(0, len(buf), size)]


def test_which_records_are_classic():
    assert record_stride(predefined("full")) == CLASSIC_SIZE
    assert record_stride(predefined("full"), routed=True) == RECORD_SIZE      # next hop, AS numbers, masks
    assert record_stride(define("c", ["sourceIPv4Address/24"], ["packetDeltaCount"])) == CLASSIC_SIZE
    assert record_stride(define("d", ["ipDiffServCodePoint"], ["packetDeltaCount"])) == RECORD_SIZE
    assert record_stride(define("x", ["sourceIPv4Address"], ["octetDeltaSumOfSquares"])) == RECORD_SIZE
    assert record_stride(define("b", ["sourceIPv4Address"], ["packetDeltaCount"], biflow=True)) == RECORD_SIZE


def test_a_classic_meter_refuses_what_it_cannot_pack():
    with pytest.raises(ValueError, match="cannot hold"):
        Meter(1, record=define("x", ["sourceIPv4Address"], ["octetDeltaSumOfSquares"]), stride=CLASSIC_SIZE)
    with pytest.raises(ValueError, match="cannot hold"):
        Meter(1, stride=CLASSIC_SIZE + 8)
    with pytest.raises(ValueError, match="routing members"):
        Meter(1, stride=CLASSIC_SIZE).set_routes(RouteTable())


def test_readers_refuse_a_stride_or_a_layout_that_does_not_fit():
    whole = records.pack(src=b"\x0a\0\0\x01", ipver=4, proto=6, packets=1)
    with pytest.raises(ValueError, match="not 100"):
        _encode.order_by_class(whole, 100, [True] * 4)
    with pytest.raises(ValueError, match="are not records of 104 bytes"):
        _encode.order_by_class(whole, CLASSIC_SIZE, [True] * 4)       # (192 bytes: not classic records)
    layout = Layout(256, V9_FIELDS + ("next_hop",), "v9", 4)              # made for whole records
    order, counts = _encode.order_by_class(whole[:CLASSIC_SIZE], CLASSIC_SIZE, [True] * 4)
    with pytest.raises(ValueError, match="reads past"):
        _encode.pack_runs(whole[:CLASSIC_SIZE], CLASSIC_SIZE, order, 0, 1, [(256, 0, 1, layout.program, 40)],
                          True, False)
    # made for classic records, the member past their end goes out as zeros
    classic = Layout(256, V9_FIELDS + ("next_hop",), "v9", 4, CLASSIC_SIZE)
    packed = _encode.pack_runs(whole[:CLASSIC_SIZE], CLASSIC_SIZE, order, 0, 1,
                               [(256, 0, 1, classic.program, classic.record_size)], False, False)
    assert packed[-4:] == bytes(4) and len(packed) == classic.record_size
