"""Export through the pyprobe command to real UDP sockets on 127.0.0.1, read back
with tests/wire.py. Expected values come from the captures the tests wrote, from
tests/reference.py, or from the RFC rules; never from pyprobe's own output."""

import ipaddress
import random
import re
from collections import Counter
from pathlib import Path

import pytest

import reference
import wire
from packets import eth_ip_packet, write_pcap

ANDROID = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")
T0 = 1_650_000_000_000_000


def norm_key(key):
    ipver, src, dst, proto, sport, dport = key
    return (ipver, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), proto, sport, dport)


def totals_from(messages):
    got = {}
    for m in messages:
        for r in m.records:
            entry = got.setdefault(norm_key(wire.flow_key(r)), [0, 0])
            entry[0] += r[wire.IN_PKTS]
            entry[1] += r[wire.IN_BYTES]
    return got


def reference_totals(path, keep=lambda index: True, ipv4_only=False):
    out = {}
    for index, (_, decoded) in enumerate(reference.walk(path)):
        if decoded is None or not keep(index) or (ipv4_only and decoded[0] != 4):
            continue
        entry = out.setdefault(norm_key(decoded[:6]), [0, 0])
        entry[0] += 1
        entry[1] += decoded[6]
    return out


def export(args, collectors=1):
    """Run pyprobe with -n to `collectors` fresh UDP collectors; returns (proc, [messages per collector])."""
    sinks = [wire.UdpCollector() for _ in range(collectors)]
    try:
        flags = [x for s in sinks for x in ("-n", s.address)]
        proc = wire.run_pyprobe([*args, *flags])
        for s in sinks:
            s.drain()
        return proc, [s.messages() for s in sinks], [[d for d, _ in s.datagrams] for s in sinks]
    finally:
        for s in sinks:
            s.close()


def export_lines(stderr):
    """'export to ADDR (...): N datagrams, R records, E send errors, T template sends' -> dicts."""
    rows = []
    for m in re.finditer(r"export to (\S+) \(([^)]*)\): (\d+) datagrams, (\d+) records, (\d+) send errors, "
                         r"(\d+) template sends", stderr):
        rows.append({"collector": m[1], "version": m[2], "datagrams": int(m[3]), "records": int(m[4]),
                     "send_errors": int(m[5]), "template_sends": int(m[6])})
    return rows


# -- captures --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def many_flows(tmp_path_factory):
    """~1500 flows, IPv4 and IPv6, over 60 s; returns (path, expected totals per key)."""
    rnd = random.Random(11)
    frames, expected = [], {}
    t = T0
    for i in range(6000):
        v6 = rnd.random() < 0.3
        n = rnd.randrange(1500)
        src = f"2001:db8::{n + 1:x}" if v6 else f"10.{n // 200}.{n % 200}.7"
        dst = "2001:db8:99::1" if v6 else "172.16.0.1"
        proto = rnd.choice((6, 17))
        payload = b"p" * rnd.randrange(0, 300)
        frames.append((t, eth_ip_packet(6 if v6 else 4, src, dst, proto, 4000 + n % 7, 443, flags=0x18,
                                        payload=payload)))
        t += rnd.randrange(0, 20_000)
        key = norm_key((6 if v6 else 4, src, dst, proto, 4000 + n % 7, 443))
        entry = expected.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += (40 if v6 else 20) + (20 if proto == 6 else 8) + len(payload)
    path = tmp_path_factory.mktemp("wire") / "many.pcap"
    write_pcap(path, frames)
    return str(path), expected


# -- sequence numbers and counts -------------------------------------------------------

@pytest.mark.parametrize("version", [5, 9, 10])
def test_headers_over_a_multi_datagram_run(many_flows, version):
    path, expected = many_flows
    proc, (msgs,), (raw,) = export(["-r", path, "-v", str(version), "-t", "inactive=5"])
    assert len(msgs) > 10
    stats = export_lines(proc.stderr)
    assert len(stats) == 1 and stats[0]["datagrams"] == len(msgs) and stats[0]["send_errors"] == 0
    assert stats[0]["records"] == sum(len(m.records) for m in msgs)
    for i, (m, d) in enumerate(zip(msgs, raw)):
        assert m.version == version
        assert not m.unknown_sets, f"datagram {i}: data set before its template"
        if version == 5:
            assert m.header["count"] <= 30 and len(d) == 24 + 48 * m.header["count"]
        elif version == 10:
            assert m.header["length"] == len(d)
        assert len(d) <= 1472
    wire.check_sequences(msgs)
    if version != 5:
        flows = wire.flow_stream(msgs)
        assert flows[0].templates, "templates in the first datagram"
        assert sum(1 for m in flows if m.templates) == stats[0]["template_sends"]
    want = {k: v for k, v in expected.items() if version != 5 or k[0] == 4}
    assert totals_from(msgs) == want


@pytest.mark.parametrize("version", [5, 9, 10])
def test_android_totals_equal_reference(version):
    proc, (msgs,), _ = export(["-r", ANDROID, "-v", str(version)])
    assert totals_from(msgs) == reference_totals(ANDROID, ipv4_only=version == 5)
    if version == 5:
        _, (v9msgs,), _ = export(["-r", ANDROID, "-v", "9"])
        ipv6_records = sum(1 for m in v9msgs for r in m.records if wire.IPV6_SRC_ADDR in r)
        assert ipv6_records > 0
        assert re.search(rf"ipv6 not sent {ipv6_records}\b", proc.stderr), proc.stderr
        warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("pyprobe: ") and "IPv6" in ln]
        assert len(warnings) == 1, proc.stderr          # warned once


# -- templates ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", [9, 10])
def test_template_refresh_every_third_datagram(many_flows, version):
    path, _ = many_flows
    _, (msgs,), _ = export(["-r", path, "-v", str(version), "-t", "inactive=5", "--template-refresh", "3",
                            "--template-interval", "0"])
    msgs = wire.flow_stream(msgs)           # the flows' domain (IPFIX options may have domain 0 to themselves)
    assert len(msgs) >= 12
    assert [i for i, m in enumerate(msgs) if m.templates] == list(range(0, len(msgs), 3))
    for m in msgs:
        if m.templates:
            assert sorted(m.templates) == [256, 257, 260, 261]   # IPv4, IPv6; their ICMP twins


@pytest.fixture(scope="module")
def hundred_seconds(tmp_path_factory):
    """100 s of flow clock, 2048 packets a second (batches of packets keep the clock moving
    within the file), and one short flow a second that ends after 1 s idle."""
    heavy = eth_ip_packet(4, "10.50.0.1", "10.50.0.2", 17, 1111, 2222)
    frames = []
    for second in range(100):
        base = T0 + second * 1_000_000
        frames.append((base, eth_ip_packet(4, f"10.60.{second // 200}.{second % 200 + 1}", "10.50.0.2", 17,
                                           3333, 4444)))
        frames.extend((base + 1 + k * 488, heavy) for k in range(2047))
    path = tmp_path_factory.mktemp("clock") / "hundred.pcap"
    write_pcap(path, frames)
    return str(path)


@pytest.mark.parametrize("version", [9, 10])
def test_template_interval_by_flow_clock(hundred_seconds, version):
    args = ["-r", hundred_seconds, "-v", str(version), "-t", "inactive=1", "--template-refresh", "0"]
    _, (msgs,), _ = export([*args, "--template-interval", "10"])
    msgs = wire.flow_stream(msgs)
    time_key = "unix_secs" if version == 9 else "export_time"
    times = [m.header[time_key] for m in msgs]
    assert times[-1] - times[0] >= 95
    sends = [i for i, m in enumerate(msgs) if m.templates]
    assert sends[0] == 0
    # header times are whole seconds (v9 rounds up, IPFIX down) and the clock moves in batches of ~2 s
    gaps = [times[b] - times[a] for a, b in zip(sends, sends[1:])]
    assert all(9 <= g <= 14 for g in gaps), gaps
    assert 7 <= len(sends) <= 12, sends
    # a datagram without templates never comes more than interval + slack after the last templates
    last = None
    for i, m in enumerate(msgs):
        if m.templates:
            last = times[i]
        else:
            assert times[i] - last <= 11, (i, times[i], last)
    # the control: without the interval (default 600 s) only the first datagram has templates
    _, (control,), _ = export(args)
    assert [i for i, m in enumerate(wire.flow_stream(control)) if m.templates] == [0]


# -- several collectors ----------------------------------------------------------------------

def record_rows(msgs):
    rows = []
    for m in msgs:
        for r in m.records:
            rows.append(wire.flow_key(r) + (r[wire.IN_PKTS], r[wire.IN_BYTES]) + wire.absolute_ms(m, r))
    return rows


@pytest.mark.parametrize("version", [5, 9, 10])
def test_two_collectors_copy_mode(many_flows, version):
    path, _ = many_flows
    _, (a, b), (raw_a, raw_b) = export(["-r", path, "-v", str(version), "-t", "inactive=5"], collectors=2)
    assert len(a) > 10
    assert raw_a == raw_b, "copy mode: every datagram to every collector"


@pytest.mark.parametrize("version", [5, 9, 10])
def test_two_collectors_round_robin(many_flows, version):
    path, expected = many_flows
    args = ["-r", path, "-v", str(version), "-t", "inactive=5"]
    _, (a, b), (raw_a, raw_b) = export([*args, "-l"], collectors=2)
    _, (whole,), _ = export(args)
    assert len(a) >= 3 and len(b) >= 3
    rows_a, rows_b = Counter(record_rows(a)), Counter(record_rows(b))
    assert not (set(rows_a) & set(rows_b)), "a record went to both collectors"
    assert rows_a + rows_b == Counter(record_rows(whole))
    assert totals_from(a + b) == {k: v for k, v in expected.items() if version != 5 or k[0] == 4}
    for msgs in (a, b):                                   # each collector has its own consecutive sequence
        assert msgs[0].version == version
        assert all(not m.unknown_sets for m in msgs)
        wire.check_sequences(msgs)


# -- sizes, ids, sampling -------------------------------------------------------------------

@pytest.mark.parametrize("version", [
    5, 9, 10])
def test_max_datagram_600(many_flows, version):
    path, expected = many_flows
    _, (msgs,), (raw,) = export(["-r", path, "-v", str(version), "-t", "inactive=5", "--max-datagram", "600"])
    assert max(len(d) for d in raw) <= 600
    assert totals_from(msgs) == {k: v for k, v in expected.items() if version != 5 or k[0] == 4}


@pytest.mark.parametrize("version,field", [(9, "source_id"), (10, "domain_id")])
def test_source_id(version, field):
    _, (msgs,), _ = export(["-r", ANDROID, "-v", str(version), "--source-id", "7"])
    flows = wire.flow_stream(msgs)
    assert flows and all(m.header[field] == 7 for m in flows)
    assert all(m.header[field] in (7, 0) and (m.header[field] == 7 or not m.records) for m in msgs)
    if version == 10:
        scopes = [o["scope"] for m in msgs for o in m.options_records if 305 in o]
        assert scopes and all(s == {149: 7} for s in scopes)


def test_v5_engine_fields():
    _, (msgs,), _ = export(["-r", ANDROID, "-v", "5", "--engine-type", "2", "--engine-id", "33"])
    assert msgs and all((m.header["engine_type"], m.header["engine_id"]) == (2, 33) for m in msgs)


@pytest.mark.parametrize("version", [5, 9, 10])
def test_sampling_one_in_ten(version):
    packets_read = sum(1 for _ in reference.walk(ANDROID))
    proc, (msgs,), _ = export(["-r", ANDROID, "-v", str(version), "-s", "10"])
    # count mode: packets 1, 11, 21, ... of every packet read are kept
    want = reference_totals(ANDROID, keep=lambda i: i % 10 == 0, ipv4_only=version == 5)
    assert totals_from(msgs) == want
    kept = (packets_read + 9) // 10
    line = re.search(r"packets sampled out\s+(\d+)", proc.stderr)
    assert line and int(line[1]) == packets_read - kept, proc.stderr
    if version == 5:
        assert all(m.header["sampling"] == (1 << 14 | 10) for m in msgs)
    elif version == 9:
        # the interval and the algorithm in records of their own (nfdump 1.7.1 takes 34 alone only)
        intervals = [o[34] for m in msgs for o in m.options_records if 34 in o]
        algorithms = [o[35] for m in msgs for o in m.options_records if 35 in o]
        assert intervals and set(intervals) == {10} and set(algorithms) == {1}
    else:
        options = [o for m in msgs for o in m.options_records if 305 in o]
        assert options and all((o[305], o[306]) == (1, 9) and 304 not in o for o in options)
        assert {o[304] for m in msgs for o in m.options_records if 304 in o} == {1}


def test_sampling_random_mode_keeps_one_in_each_run(tmp_path):
    """--sampling random: exactly one packet of each run of 10 (each packet its own flow here)."""
    frames = [(T0 + i * 1000, eth_ip_packet(4, f"10.70.{i // 250}.{i % 250}", "10.71.0.1", 17, 5, 6))
              for i in range(1000)]
    path = write_pcap(tmp_path / "runs.pcap", frames)
    _, (msgs,), _ = export(["-r", str(path), "-v", "10", "-s", "10", "--sampling", "random"])
    sources = [int(ipaddress.IPv4Address(r[wire.IPV4_SRC_ADDR])) - int(ipaddress.IPv4Address("10.70.0.0"))
               for m in msgs for r in m.records]
    indices = sorted((s >> 8) * 250 + (s & 0xff) for s in sources)
    assert [i // 10 for i in indices] == list(range(100))
    assert {o[304] for m in msgs for o in m.options_records if 304 in o} == {3}


@pytest.mark.parametrize("version", [
    5,
    9, 10])
def test_round_robin_alternates_datagrams(version):
    _, (a, b), _ = export(["-r", ANDROID, "-v", str(version), "-l"], collectors=2)
    data_a = sum(1 for m in a if m.records)
    data_b = sum(1 for m in b if m.records)
    assert data_a + data_b >= 5
    assert abs(data_a - data_b) <= 1, (data_a, data_b)
