"""The v5/v9/IPFIX encoders as pure functions: packed records in, datagrams out,
read back with tests/wire.py (written from the RFCs, independent of pyprobe).

Expected values come from the records the tests packed and from the RFC rules."""

import ipaddress
import random
import struct
import subprocess
import sys
from collections import Counter

import pytest

import wire
from packets import eth_ip_packet, make_batch
from pyprobe._meter import Meter
from pyprobe.export import ipfix, v9
from pyprobe.export.ipfix import IpfixEncoder
from pyprobe.export.v5 import V5Encoder
from pyprobe.export.v9 import V9Encoder
from pyprobe.records import RECORD, pack

T2024 = 1_710_000_000_000_000          # microseconds
T2005 = 1_110_000_000_123_456
MS = 1000
EOF_REASON = 4


def rec(src="10.0.0.1", dst="10.0.0.2", first_us=T2024, last_us=None, packets=1, octets=100, proto=17,
        sport=1000, dport=53, tos=0, tcp_flags=0, in_if=0, vlan=0, end_reason=1):
    """One packed meter record (the field table's layout, pyprobe.records)."""
    ip_src, ip_dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    ipver = ip_src.version
    return pack(src=ip_src.packed, dst=ip_dst.packed, packets=packets, octets=octets, first_us=first_us,
                last_us=first_us if last_us is None else last_us, in_if=in_if, sport=sport, dport=dport,
                vlan=vlan, ipver=ipver, proto=proto, tos=tos, tcp_flags=tcp_flags, end_reason=end_reason)


def expected_row(src, dst, first_us, last_us, packets, octets, proto, sport, dport):
    ip = ipaddress.ip_address(src)
    return (ip.version, str(ip), str(ipaddress.ip_address(dst)), proto, sport, dport, packets, octets,
            first_us // 1000, last_us // 1000)


def many_records(n, seed=1, v6_share=0.3, base_us=T2024):
    """n records, IPv4 and IPv6 mixed; returns (packed, expected rows)."""
    rnd = random.Random(seed)
    buf, rows = b"", []
    for i in range(n):
        if rnd.random() < v6_share:
            src, dst = f"2001:db8::{i + 1:x}", f"2001:db8:1::{rnd.randrange(1, 65535):x}"
        else:
            src, dst = f"10.{i // 250}.{i % 250}.1", f"192.168.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        first = base_us + rnd.randrange(0, 60_000_000)
        last = first + rnd.randrange(0, 30_000_000)
        packets, octets = rnd.randrange(1, 10_000), rnd.randrange(40, 10**7)
        proto = rnd.choice((6, 17, 132))
        sport, dport = rnd.randrange(65536), rnd.randrange(65536)
        buf += rec(src, dst, first, last, packets, octets, proto, sport, dport)
        rows.append(expected_row(src, dst, first, last, packets, octets, proto, sport, dport))
    return buf, rows


def decoded_rows(messages):
    """Rows (key, packets, octets, first ms, last ms) decoded from the datagrams."""
    rows = []
    for msg in messages:
        for r in msg.records:
            first, last = wire.absolute_ms(msg, r)
            rows.append(wire.flow_key(r) + (r[wire.IN_PKTS], r[wire.IN_BYTES], first, last))
    return rows


def now_after(rows):
    return max(r[9] for r in rows) + 5_000


# -- NetFlow v5 ------------------------------------------------------------------------

def test_v5_counts_sizes_sequence_and_ipv6_skipped():
    buf, rows = many_records(200, seed=5)
    state = V5Encoder(engine_type=3, engine_id=9)
    datagrams = state.encode(buf, now_after(rows))
    datagrams += state.encode(buf[:RECORD.size * 41], now_after(rows) + 1000)   # a second call goes on
    msgs = wire.parse_all(datagrams)
    sent = 0
    for d, m in zip(datagrams, msgs):
        assert m.version == 5
        assert 1 <= m.header["count"] <= 30
        assert len(d) == 24 + 48 * m.header["count"]
        assert m.header["flow_sequence"] == sent
        assert (m.header["engine_type"], m.header["engine_id"]) == (3, 9)
        sent += m.header["count"]
    v4_rows = [r for r in rows if r[0] == 4]
    v4_second = [r for r in rows[:41] if r[0] == 4]
    assert Counter(decoded_rows(msgs)) == Counter(v4_rows + v4_second)
    assert state.records_not_carried == (len(rows) - len(v4_rows)) + (41 - len(v4_second))


@pytest.mark.parametrize("random_mode,mode", [(False, 1), (True, 2)])
def test_v5_sampling_header(random_mode, mode):
    state = V5Encoder(sampling_interval=10, sampling_random=random_mode)
    msg = wire.parse_all(state.encode(rec(), T2024 // 1000 + 1000))[0]
    assert msg.header["sampling"] >> 14 == mode
    assert msg.header["sampling"] & 0x3fff == 10


# -- NetFlow v9 ------------------------------------------------------------------------

def test_v9_count_sequence_and_records():
    buf, rows = many_records(300, seed=9)
    state = V9Encoder(domain_id=77)
    datagrams = []
    for i in range(0, len(buf), RECORD.size * 37):         # several calls, state carried
        datagrams += state.encode(buf[i:i + RECORD.size * 37], now_after(rows))
    msgs = wire.parse_all(datagrams)
    assert msgs[0].templates[:2] and set(msgs[0].templates) == set(v9.TEMPLATE_IDS.values())
    for i, (d, m) in enumerate(zip(datagrams, msgs)):
        assert m.version == 9
        assert m.header["sequence"] == i                   # export packets sent before this one
        assert m.header["source_id"] == 77
        assert m.header["count"] == m.count_all_records    # templates + options templates + data + options data
        assert not m.unknown_sets
        assert len(d) <= 1472
    assert Counter(decoded_rows(msgs)) == Counter(rows)


def test_v9_template_refresh_by_datagram_count():
    buf, rows = many_records(400, seed=3)
    state = V9Encoder(refresh_packets=3, refresh_ms=0, max_size=600)
    datagrams = state.encode(buf, now_after(rows))
    assert len(datagrams) >= 10
    msgs = wire.parse_all(datagrams)
    with_templates = [i for i, m in enumerate(msgs) if m.templates]
    assert with_templates == list(range(0, len(msgs), 3))
    for i in with_templates:
        assert msgs[i].options_templates == [258, 263] and msgs[i].count_options_data_records == 2


def test_v9_template_refresh_by_flow_clock():
    state = V9Encoder(refresh_packets=0, refresh_ms=60_000)
    t0 = T2024 // 1000
    calls = [0, 10_000, 59_999, 60_000, 60_001, 119_999, 120_000, 500_000]
    parser = wire.Parser()
    got = []
    for dt in calls:
        out = state.encode(rec(first_us=(t0 + dt) * 1000 - 500_000), t0 + dt)
        assert len(out) == 1
        got.append(bool(parser.parse(out[0]).templates))
    # first datagram, then the first datagram at or after 60 s of flow clock since the last templates
    assert got == [True, False, False, True, False, False, True, True]


def test_v9_sampling_options():
    for random_mode, algorithm in ((False, 1), (True, 2)):
        state = V9Encoder(sampling_interval=25, sampling_random=random_mode)
        msg = wire.parse_all(state.encode(rec(), T2024 // 1000 + 1000))[0]
        # in records of their own: nfdump 1.7.1 takes a template with 34 and 35 for no sampler
        interval, kind = msg.options_records
        assert interval[34] == 25 and 35 not in interval
        assert kind[35] == algorithm and 34 not in kind
        assert list(interval["scope"]) == list(kind["scope"]) == [1]          # scope: System


# -- IPFIX -----------------------------------------------------------------------------

def test_ipfix_length_sequence_and_records():
    buf, rows = many_records(300, seed=10)
    state = IpfixEncoder(domain_id=4242, refresh_packets=4)
    datagrams = []
    for i in range(0, len(buf), RECORD.size * 50):
        datagrams += state.encode(buf[i:i + RECORD.size * 50], now_after(rows))
    msgs = wire.parse_all(datagrams)
    for d, m in zip(datagrams, msgs):
        assert m.header["length"] == len(d) <= 1472
        assert not m.unknown_sets
        # flows and options alike in the configured domain: a collector sees one exporter
        assert m.header["domain_id"] == 4242
    wire.check_sequences(msgs)          # data records (options data included) before, per domain
    flows = wire.flow_stream(msgs)
    assert {m.header["domain_id"] for m in flows} == {4242}
    assert set(flows[0].templates) == set(ipfix.TEMPLATE_IDS.values())
    assert sum(1 for m in flows if m.templates) >= 2
    assert Counter(decoded_rows(msgs)) == Counter(rows)


@pytest.mark.parametrize("random_mode,algorithm", [(False, 1), (True, 3)])
def test_ipfix_sampling_options(random_mode, algorithm):
    state = IpfixEncoder(sampling_interval=10, sampling_random=random_mode, domain_id=5)
    msgs = wire.parse_all(state.encode(rec(), T2024 // 1000 + 1000))
    sampling = [o for m in msgs for o in m.options_records if 305 in o]
    selector = [o for m in msgs for o in m.options_records if 304 in o]
    assert len(sampling) == len(selector) == 1
    # RFC 5477: 1 packet selected, then 9 not selected; IANA selectorAlgorithm 1 systematic count, 3 random n-of-N
    assert (sampling[0][305], sampling[0][306], selector[0][304]) == (1, 9, algorithm)
    # nfdump 1.7.1 takes an options template with 306 as a sampler only without 302 and 304
    assert 304 not in sampling[0] and 302 not in sampling[0]
    assert sampling[0]["scope"] == selector[0]["scope"] == {149: 5}     # the flows' observation domain
    assert {m.header["domain_id"] for m in msgs} == {5}


def test_ipfix_options_data_at_start_interval_and_request_only():
    """nfdump 1.7.1 leaves options data records out of its sequence check: they go at start,
    every template interval of flow clock and on request, in messages without flow records,
    not at each count refresh (templates alone then)."""
    state = IpfixEncoder(refresh_packets=1, refresh_ms=60_000)
    t0 = T2024 // 1000
    parser = wire.Parser()
    got = []
    for dt, request in [(0, False), (1000, False), (2000, False), (61_000, False), (62_000, True), (63_000, False)]:
        if request:
            state.request_templates()
        msgs = [parser.parse(d) for d in state.encode(rec(first_us=(t0 + dt) * 1000 - 500_000), t0 + dt)]
        assert msgs[0].templates                                           # refresh every datagram
        assert all(not (m.records and m.options_records) for m in msgs)    # never with flow records
        got.append(sum(len(m.options_records) for m in msgs))
    assert got == [3, 0, 0, 3, 3, 0]        # sampling, selector algorithm, statistics


def options_template_sets(datagram, set_id, header_size):
    """Each options template set of one datagram: (set length, template id, its field count)."""
    pos, sets = header_size, []
    while pos + 4 <= len(datagram):
        sid, length = struct.unpack_from(">HH", datagram, pos)
        if sid == set_id:
            template_id, count, scopes = struct.unpack_from(">HHH", datagram, pos + 4)
            # IPFIX: field count (scope included); v9: scope and option lengths in bytes
            sets.append((length, template_id, count if set_id == 3 else (count + scopes) // 4))
        pos += length
    return sets


@pytest.mark.parametrize("encoder,set_id,header_size", [(IpfixEncoder, 3, 16), (V9Encoder, 1, 20)])
def test_each_options_template_in_a_set_of_its_own(encoder, set_id, header_size):
    """pmacct's nfacctd 1.7.7 steps from one IPFIX options template to the next of the same
    set by (field count + scope field count) * 4 bytes: a set of several is misread there."""
    state = encoder(sampling_interval=10)
    state.interfaces = [(1, "eth0", "uplink")]
    sets = [s for d in state.encode(rec(), T2024 // 1000 + 1000)
            for s in options_template_sets(d, set_id, header_size)]
    assert len(sets) >= 3 and len({template_id for _, template_id, _ in sets}) == len(sets)
    for length, template_id, fields in sets:       # set header, template header, fields, padding
        assert length - 4 - 6 - 4 * fields in range(4), (template_id, length, fields)


# -- all three: sizes, times ----------------------------------------------------------

def _size_cases():
    for name, encoder in (("v9", V9Encoder), ("ipfix", IpfixEncoder)):
        for size in (256, 300, 400, 512, 600, 1000, 1452, 1472, 9000):
            yield pytest.param(encoder, size, id=f"{name}-{size}")


@pytest.mark.parametrize("encoder,size", list(_size_cases()))
def test_no_datagram_exceeds_max_size(encoder, size):
    buf, rows = many_records(500, seed=size)
    state = encoder(max_size=size, refresh_packets=5)
    datagrams = []
    for i in range(0, len(buf), RECORD.size * 120):
        datagrams += state.encode(buf[i:i + RECORD.size * 120], now_after(rows))
    assert max(len(d) for d in datagrams) <= size
    assert Counter(decoded_rows(wire.parse_all(datagrams))) == Counter(rows)


def time_jump_records():
    """Records years apart in one call, as a replayed capture with a time jump gives, and some in 1970."""
    spec = [(0, 1_500_000), (1_000_999, 3_000_001), (59_999_999, 61_000_000),          # 1970
            (T2005, T2005 + 1_999), (T2005 + 7_000_000, T2005 + 90_000_000),           # 2005
            (T2024, T2024 + 123_456_789), (T2024 + 3_600_000_000, T2024 + 3_600_000_500)]   # 2024
    buf, rows = b"", []
    for i, (first, last) in enumerate(spec):
        buf += rec(f"10.9.0.{i + 1}", "10.9.1.1", first, last, packets=i + 1, octets=100 * (i + 1))
        rows.append(expected_row(f"10.9.0.{i + 1}", "10.9.1.1", first, last, i + 1, 100 * (i + 1), 17, 1000, 53))
    return buf, rows


@pytest.mark.parametrize("encoder", [V5Encoder, V9Encoder, IpfixEncoder], ids=["v5", "v9", "ipfix"])
@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
def test_absolute_times_across_years(encoder, order):
    buf, rows = time_jump_records()
    chunks = [buf[i:i + RECORD.size] for i in range(0, len(buf), RECORD.size)]
    pairs = list(zip(chunks, rows))
    if order == "descending":
        pairs.reverse()
    elif order == "shuffled":
        random.Random(4).shuffle(pairs)
    now_ms = (T2024 + 3_600_000_000) // 1000 + 20_000
    state = encoder()
    datagrams = state.encode(b"".join(c for c, _ in pairs), now_ms)
    # and once more, a later call going back to 1970 (the capture jumps backwards)
    datagrams += state.encode(chunks[1], now_ms + 1000)
    msgs = wire.parse_all(datagrams)
    for m in msgs:
        if m.version in (5, 9):
            for r in m.records:
                assert r[wire.FIRST_SWITCHED] <= r[wire.LAST_SWITCHED] <= m.header["sys_uptime"]
    assert Counter(decoded_rows(msgs)) == Counter(rows + [rows[1]])


ENCODE_IN_CHILD = """
import sys
from pyprobe.export import ENCODERS
buf = bytes.fromhex(sys.argv[1])
for d in ENCODERS[{version}]().encode(buf, int(sys.argv[2])):
    print(d.hex())
"""


@pytest.mark.parametrize("version", [5, 9, 10])
def test_flow_lasting_thirty_days(version):
    """Run in a child process with a time limit: an encoder that never returns fails instead of hanging."""
    first, last = T2024, T2024 + 30 * 86_400_000_000
    buf = rec(first_us=first, last_us=last, end_reason=2)
    proc = subprocess.run([sys.executable, "-c", ENCODE_IN_CHILD.format(version=version), buf.hex(),
                           str(last // 1000 + 1000)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr[-500:]
    msgs = wire.parse_all([bytes.fromhex(line) for line in proc.stdout.split()])
    assert decoded_rows(msgs) == [expected_row("10.0.0.1", "10.0.0.2", first, last, 1, 100, 17, 1000, 53)]


# -- records made by the meter itself ------------------------------------------------

def test_meter_records_through_every_encoder():
    """Packets built here -> Meter -> each encoder: per-key totals equal what the test sent."""
    frames, expected = [], Counter()
    t = T2024
    rnd = random.Random(2)
    for i in range(3000):
        v6 = rnd.random() < 0.25
        src = f"2001:db8::{rnd.randrange(1, 40):x}" if v6 else f"10.1.{rnd.randrange(4)}.{rnd.randrange(1, 30)}"
        dst = "2001:db8:ff::1" if v6 else "10.2.0.1"
        proto = rnd.choice((6, 17))
        sport, dport = rnd.randrange(1024, 1034), 80
        payload = b"x" * rnd.randrange(0, 200)
        frame = eth_ip_packet(6 if v6 else 4, src, dst, proto, sport, dport, flags=0x10, payload=payload)
        t += rnd.randrange(0, 400_000)
        frames.append((t, frame))
        octets = (40 if v6 else 20) + (20 if proto == 6 else 8) + len(payload)
        key = (6 if v6 else 4, src, dst, proto, sport, dport)
        expected[key + ("packets",)] += 1
        expected[key + ("octets",)] += octets
    meter = Meter(1, timeouts={"general": 5, "tcp": 5, "udp": 5, "icmp": 5, "maxlife": 60})
    packed = b""
    for i in range(0, len(frames), 500):
        packed += meter.process(*make_batch(frames[i:i + 500]))
    packed += meter.flush()
    now_ms = t // 1000 + 1000
    for encoder in (V5Encoder, V9Encoder, IpfixEncoder):
        got = Counter()
        for m in wire.parse_all(encoder().encode(packed, now_ms)):
            for r in m.records:
                key = wire.flow_key(r)
                got[key + ("packets",)] += r[wire.IN_PKTS]
                got[key + ("octets",)] += r[wire.IN_BYTES]
        want = expected if encoder is not V5Encoder else Counter({k: v for k, v in expected.items() if k[0] == 4})
        assert got == want, encoder.__name__
