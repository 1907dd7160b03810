"""Replaying captures: several files as one stream, --loop (with --shift-addresses),
and --realtime pacing with records dated now.

Captures are written here from packets the tests build; what is expected comes from
those packets (and tests/reference.py), datagrams are read back by tests/wire.py and
by nfcapd/nfdump, arrival times on the collector's side of the socket."""

import ipaddress
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import reference
import wire
from packets import eth_ip_packet, ip_packet, write_pcap

sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from collectors import NfcapdCollector  # noqa: E402

ANDROID = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")
T0 = 1_600_000_000_000_000
SEC = 1_000_000
SYN, FIN, ACK = 0x02, 0x01, 0x10


def summary_value(stderr, label):
    match = re.search(rf"^\s*{label}\s+(\d+)", stderr, re.M)
    assert match, stderr
    return int(match.group(1))


def json_records(proc):
    return [json.loads(line) for line in proc.stdout.splitlines()]


def key(r):
    return (r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"])


def totals(records):
    out = Counter()
    for r in records:
        out[key(r) + ("packets",)] += r["packets"]
        out[key(r) + ("octets",)] += r["octets"]
    return out


def reference_totals(path):
    out = Counter()
    for k, (packets, octets) in reference.totals(path).totals.items():
        out[k + ("packets",)] += packets
        out[k + ("octets",)] += octets
    return out


# -- several files ----------------------------------------------------------------------

def frames_of(path):
    """[(time_us, frame)] of a pcap, in file order."""
    import dpkt
    with open(path, "rb") as f:
        return [(int(round(float(ts) * SEC)), bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]


def record_set(records):
    return Counter(json.dumps({k: v for k, v in r.items()}, sort_keys=True) for r in records)


def test_two_halves_give_the_records_of_the_whole(tmp_path):
    frames = frames_of(ANDROID)
    first = write_pcap(str(tmp_path / "part-1.pcap"), frames[:230])
    second = write_pcap(str(tmp_path / "part-2.pcap"), frames[230:])
    whole = json_records(wire.run_pyprobe(["-r", ANDROID, "--json", "-q"]))
    halves = json_records(wire.run_pyprobe(["-r", first, second, "--json", "-q"]))
    assert record_set(halves) == record_set(whole)
    # the same as a glob pyprobe expands itself, with the files named out of order
    globbed = json_records(wire.run_pyprobe(["-r", str(tmp_path / "part-*.pcap"), "--json", "-q"]))
    assert record_set(globbed) == record_set(whole)
    backwards = json_records(wire.run_pyprobe(["-r", second, first, "--json", "-q"]))
    assert record_set(backwards) == record_set(whole)


def test_overlapping_captures_merge_by_time(tmp_path):
    """Two captures whose packets interleave give the records of one capture of both, in time order."""
    a = [(T0 + i * 300_000, eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 1000 + i % 3, 53, payload=b"a" * i))
         for i in range(40)]
    b = [(T0 + 150_000 + i * 280_000, eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 1000 + i % 4, 53,
                                                     payload=b"b" * i)) for i in range(40)]
    path_a = write_pcap(str(tmp_path / "a.pcap"), a)
    path_b = write_pcap(str(tmp_path / "b.pcap"), b)
    merged = write_pcap(str(tmp_path / "merged.pcap"), sorted(a + b, key=lambda f: f[0]))
    args = ["--json", "-q", "-t", "inactive=1", "-t", "active=4"]
    want = json_records(wire.run_pyprobe(["-r", merged, *args]))
    got = json_records(wire.run_pyprobe(["-r", path_a, path_b, *args]))
    assert record_set(got) == record_set(want)
    assert len(want) > 8                       # the timeouts split the flows: order matters


def test_files_of_different_link_types(tmp_path):
    """An Ethernet capture and a raw-IP one (link type 101) through one cache."""
    eth = [(T0 + i * SEC, eth_ip_packet(4, "10.1.0.1", "10.1.0.2", 6, 4000, 80, flags=ACK)) for i in range(5)]
    raw = [(T0 + i * SEC + 500_000, ip_packet(6, "2001:db8::1", "2001:db8::2", 17, 5000, 53)) for i in range(5)]
    path_eth = write_pcap(str(tmp_path / "eth.pcap"), eth)
    path_raw = write_pcap(str(tmp_path / "raw.pcap"), raw, linktype=101)
    got = totals(json_records(wire.run_pyprobe(["-r", path_eth, path_raw, "--json", "-q"])))
    assert got == reference_totals(path_eth) + reference_totals(path_raw)


def test_words_after_the_files_are_the_filter(tmp_path):
    frames = frames_of(ANDROID)
    first = write_pcap(str(tmp_path / "one.pcap"), frames[:250])
    second = write_pcap(str(tmp_path / "two.pcap"), frames[250:])
    records = json_records(wire.run_pyprobe(["-r", first, second, "udp", "--json", "-q"]))
    assert records and {r["proto"] for r in records} == {17}
    want = Counter({k: v for k, v in reference_totals(ANDROID).items() if k[3] == 17})
    assert totals(records) == want


# -- looping -----------------------------------------------------------------------------

def shifted(address, k):
    ip = ipaddress.ip_address(address)
    raw = bytearray(ip.packed)
    if ip.version == 4:
        raw[0] = (raw[0] + k) % 256
    else:
        group = ((raw[4] << 8 | raw[5]) + k) % 65536
        raw[4], raw[5] = group >> 8, group & 0xff
    return str(ipaddress.ip_address(bytes(raw)))


def test_loop_three_rounds_with_shifted_addresses():
    proc = wire.run_pyprobe(["-r", ANDROID, "--loop", "3", "--shift-addresses", "--json"])
    records = json_records(proc)
    ref = reference_totals(ANDROID)
    want = Counter()
    for k in range(3):                      # each round: the capture's keys, shifted by the round
        for (ipver, src, dst, proto, sport, dport, what), n in ref.items():
            want[(ipver, shifted(src, k), shifted(dst, k), proto, sport, dport, what)] += n
    assert totals(records) == want
    assert len({k[:6] for k in want}) == 3 * len({k[:6] for k in ref})     # no key repeats across rounds
    assert summary_value(proc.stderr, "packets read") == 3 * reference.totals(ANDROID).packets


def test_loop_continues_the_time_line():
    """Without shifting the keys repeat: totals are three times the capture's, and each round's
    records come after the last round's (no overlap)."""
    records = json_records(wire.run_pyprobe(["-r", ANDROID, "--loop", "3", "--json", "-q"]))
    ref = reference_totals(ANDROID)
    assert totals(records) == Counter({k: 3 * n for k, n in ref.items()})
    times = sorted(t for r in records for t in (r["start"], r["end"]))
    first, last = times[0], times[-1]
    one_round = json_records(wire.run_pyprobe(["-r", ANDROID, "--json", "-q"]))
    span = max(r["end"] for r in one_round) - min(r["start"] for r in one_round)
    assert first == min(r["start"] for r in one_round)
    assert 3 * span <= last - first <= 3 * span + 3      # three spans, gaps no longer than the capture's own


def test_loop_refuses_standard_input():
    proc = wire.run_pyprobe(["-r", "-", "--loop", "2"], stdin="", check_exit=2)
    assert "--loop" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# -- real time ------------------------------------------------------------------------------

PAUSE_CUT = 16 * SEC     # the capture's pause from 13 s to 30 s, cut to --max-gap's default 1 s


def paced_capture(path):
    """30 s of traffic, most of it quiet: flows that end idle, at a FIN, at the active timeout,
    and one idle in a long silent gap. Returns (path, {sport: (first_us, last_us, end_us)}):
    end_us is when a live probe with -t inactive=5 -t active=12 ends each flow (its record's due time)."""
    frames, expect = [], {}

    def flow(sport, times, proto=17, fin_at_end=False):
        for i, t in enumerate(times):
            flags = FIN | ACK if fin_at_end and i == len(times) - 1 else ACK
            frames.append((T0 + t, eth_ip_packet(4, "10.9.0.1", "10.9.0.2", proto, sport, 80, flags=flags)))

    flow(1001, [0, 1 * SEC, 2 * SEC])                                   # idle: ends at 2 + 5 s
    expect[1001] = (0, 2 * SEC, 7 * SEC)
    flow(1002, [3 * SEC, 6 * SEC, 10 * SEC], proto=6, fin_at_end=True)  # FIN at 10 s
    expect[1002] = (3 * SEC, 10 * SEC, 10 * SEC)
    flow(1003, [i * SEC for i in range(14)])                             # active timeout at 12 s, then idle
    expect[1003] = (0, 11 * SEC, 12 * SEC)
    expect[1004] = (12 * SEC, 13 * SEC, 18 * SEC)                       # its second record, in the silent gap
    flow(1005, [30 * SEC])                                               # the last packet: end of the capture
    expect[1005] = (30 * SEC, 30 * SEC, 30 * SEC)
    frames.sort(key=lambda f: f[0])
    return write_pcap(str(path), frames), expect


def named_records(arrived):
    """[(arrival, first_ms, last_ms, test flow)]: flow 1003's later record is 1004."""
    out, seen = [], set()
    decoded = [(when, *wire.absolute_ms(msg, r), r[wire.L4_SRC_PORT]) for when, msg, r in arrived]
    for when, first_ms, last_ms, sport in sorted(decoded, key=lambda d: d[1]):
        if sport in seen:
            sport += 1
        seen.add(sport)
        out.append((when, first_ms, last_ms, sport))
    return out


def on_replay(capture_us):
    """Where a packet time of paced_capture falls on a real-time replay's time line: the
    pause after 13 s waits 1 s (--max-gap), not 17."""
    return capture_us if capture_us <= 13 * SEC else capture_us - PAUSE_CUT


@pytest.mark.skipif(not shutil.which("nfcapd"), reason="nfcapd not installed")
def test_realtime_replay_paces_and_dates_records_now(tmp_path):
    """Records leave when a live probe would send them, dated as the replay fed their packets;
    the capture's 17 s pause is cut to 1 s: the flow idle in it ends at the cut, and the packets
    after it are dated when they were fed."""
    path, capture = paced_capture(tmp_path / "paced.pcap")
    cut_at = 14 * SEC                                          # the end of the 1 s wait
    expect = {flow: (on_replay(first), on_replay(last), max(on_replay(due), min(due, cut_at)))
              for flow, (first, last, due) in capture.items()}
    sink = wire.TimedCollector()
    with NfcapdCollector() as nfcapd:
        started = time.time()
        proc = subprocess.run([wire.PYPROBE, "-r", path, "--realtime", "-v", "10", "-n", sink.address,
                               "-n", "127.0.0.1:%d" % nfcapd.port, "-t", "inactive=5", "-t", "active=12",
                               "--flush-interval", "0"],      # (how long records wait: test_export_buffer)
                              capture_output=True, text=True, timeout=60)
        took = time.time() - started
    assert proc.returncode == 0, proc.stderr
    assert 14 - 0.5 <= took <= 14 + 0.5 + 0.3, took          # (+0.3: the process's own start and exit)
    records = named_records(sink.records())
    assert sorted(r[3] for r in records) == sorted(expect)
    # Dated now: one shift maps every packet time onto the replay's time line, starting at its start.
    shifts = [first_ms * 1000 - expect[flow][0] for _, first_ms, _, flow in records]
    assert max(shifts) - min(shifts) < 1000                   # the same shift, to the millisecond
    start_us = max(shifts)                                    # the replay's start (within 1 ms)
    assert started <= start_us / 1e6 <= started + 1.0
    for when, first_ms, last_ms, flow in records:
        first, last, due = expect[flow]
        assert abs(first_ms - (start_us + first) / 1000) <= 1 and abs(last_ms - (start_us + last) / 1000) <= 1
        # the record arrives when a live probe would have sent it: within 1 s after it was due
        late = when - (start_us + due) / 1e6
        assert -0.05 <= late <= 1.0, (flow, late)
    # nfdump files the records with the same dates
    got = sorted((r["first_ms"], r["last_ms"]) for r in nfcapd.records())
    nfcapd.cleanup()
    want = sorted((first_ms, last_ms) for _, first_ms, last_ms, _ in records)
    assert got == want
    assert "real time" in proc.stderr and "late by median" in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "--max-gap" in line] == [
        "pyprobe: the capture pauses 17.0 s at 2020-09-13 12:26:53: --realtime waits at most 1 s between packets "
        "(--max-gap); longer pauses are cut to that, the time line moving on"], proc.stderr


def test_realtime_speed_and_keep_time(tmp_path):
    """At 10x the capture's 30 s take 3 s, less its 17 s pause (1.7 s) cut to 1 s: the records
    keep the capture's own times all the same."""
    path, expect = paced_capture(tmp_path / "paced.pcap")
    started = time.monotonic()
    proc = wire.run_pyprobe(["-r", path, "--realtime=10", "--keep-time", "--json", "-t", "inactive=5",
                             "-t", "active=12"])
    took = time.monotonic() - started
    assert 2.3 - 0.2 <= took <= 2.3 + 0.2 + 0.3, took
    records = json_records(proc)
    got = sorted((round(r["start"] * SEC), round(r["end"] * SEC)) for r in records)
    assert got == sorted((T0 + first, T0 + last) for first, last, _ in expect.values())


def test_sigterm_midway_loses_nothing(tmp_path):
    frames = [(T0 + i * 50_000, eth_ip_packet(4, "10.3.0.%d" % (1 + i % 7), "10.3.1.1", 17, 2000 + i % 11, 53))
              for i in range(400)]                              # 20 s of packets
    path = write_pcap(str(tmp_path / "long.pcap"), frames)
    collector = wire.UdpCollector()
    try:
        proc = subprocess.Popen([wire.PYPROBE, "-r", path, "--realtime", "-n", collector.address],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        collector.drain()
        records = [r for m in collector.messages() for r in m.records]
    finally:
        collector.close()
    metered = summary_value(err, "packets metered")
    assert 20 < metered < 400                                  # stopped midway
    assert sum(r[wire.IN_PKTS] for r in records) == metered
    assert summary_value(err, "packets read") == metered


def test_control_socket_and_progress_during_a_realtime_replay(tmp_path):
    """A real-time replay answers the control socket between packets and shows replay time,
    wall time and lag on the progress line."""
    frames = [(T0 + i * 100_000, eth_ip_packet(4, "10.4.0.1", "10.4.0.2", 17, 3000, 53)) for i in range(40)]
    path = write_pcap(str(tmp_path / "four-seconds.pcap"), frames)
    sock = str(tmp_path / "ctl.sock")
    proc = subprocess.Popen([wire.PYPROBE, "-r", path, "--realtime", "--json", "-c", sock, "--progress", "always"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        while not Path(sock).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        answer = subprocess.run([wire.PYPROBE, "ctl", "-c", sock, "statistics", "--json"],
                                capture_output=True, text=True, timeout=10)
        assert answer.returncode == 0, answer.stderr
        stats = json.loads(answer.stdout)
        assert 5 <= stats["meter"]["packets_read"] < 40           # fed at the pace of the capture
        assert stats["source"]["speed"] == 1.0
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert [r["packets"] for r in json_records(subprocess.CompletedProcess([], 0, out))] == [40]
    assert re.search(r"replay \d+\.\d s  wall \d+\.\d s  lag \d+\.\d\d s", err), err[-500:]


def test_lateness_percentiles_never_exceed_the_worst_lag():
    """The histogram reports a bin's upper edge: clamped to the worst lag seen (a 99th
    percentile of 12302.7 ms beside a maximum of 12113.8 ms was reported)."""
    import random
    import struct

    from pyprobe._meter import Lateness
    rng = random.Random(7)
    for lags_us in ([12_113_800], [rng.randrange(1, 10**8) for _ in range(500)], [3, 3, 3], [0, 1, 2]):
        lateness = Lateness()
        # every packet due at time 0 (t0 = wall0 = 0, speed 1), fed at now = its lag: one add per packet
        for lag in lags_us:
            lateness.add(struct.pack("<IIII", 0, 0, 60, 60), 0, 1, 0, 0, 1.0, lag)
        worst = max(lags_us) / 1e6
        assert lateness.worst_seconds == worst
        for q in (0.5, 0.9, 0.99, 1.0):
            assert 0 <= lateness.quantile(q) <= worst
        assert lateness.quantile(0.99) >= sorted(lags_us)[int(0.99 * len(lags_us)) - 1] / 1e6 * 0.97


# -- long pauses (--max-gap) ------------------------------------------------------------------

YEARS_5 = 5 * 365 * 86400 * SEC


def pausing_capture(path, pause_us):
    """Two flows, a pause of pause_us, then one of them again and a third: [(time_us, frame)]."""
    def udp(host, t):
        return (T0 + t, eth_ip_packet(4, host, "10.6.1.1", 17, 5000, 53))
    frames = [udp("10.6.0.1", 0), udp("10.6.0.2", 100_000), udp("10.6.0.1", 200_000),
              udp("10.6.0.1", 200_000 + pause_us), udp("10.6.0.3", 300_000 + pause_us)]
    return write_pcap(str(path), frames)


def test_realtime_cuts_a_pause_of_years_with_one_warning(tmp_path):
    """A capture that pauses for 5 years replays in about 1.3 s (its 0.3 s of packets and
    --max-gap's default 1 s); one warning says so; the records are those of a full-speed
    replay (the flows idle in the pause end in it), dated as the replay fed their packets."""
    path = pausing_capture(tmp_path / "years.pcap", YEARS_5)
    started = time.time()
    proc = wire.run_pyprobe(["-r", path, "--realtime", "--json", "-t", "inactive=5"], timeout=30)
    ended = time.time()
    assert ended - started < 1.3 + 1.0, ended - started
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("pyprobe:") and "pauses" in line]
    assert len(warnings) == 1 and "5.0 years" in warnings[0], proc.stderr
    records = json_records(proc)
    full_speed = json_records(wire.run_pyprobe(["-r", path, "--json", "-t", "inactive=5"]))
    assert sorted((key(r), r["packets"]) for r in records) == sorted((key(r), r["packets"]) for r in full_speed)
    assert len(records) == 4                                 # 10.6.0.1's flow ended idle in the pause
    for r in records:
        assert started <= r["start"] <= r["end"] <= ended, (r, started, ended)
    first = min(r["start"] for r in records)
    after = max(r["start"] for r in records)
    assert abs(after - first - 1.3) < 0.1                    # 0.2 s, the 1 s wait, then 0.1 s
    reached = float(re.search(r"([\d.]+)x reached", proc.stderr).group(1))
    assert 0.95 <= reached <= 1.05, proc.stderr               # replay time as the replay went


def paced_run(path, **options):
    """(seconds taken, the flow clock at each tick, ReplaySource) of a real-time replay run through."""
    from pyprobe.source.replay import ReplaySource
    source = ReplaySource([path], speed=2, **options)
    ticks = []
    started = time.monotonic()
    for batch in source.batches():
        if not batch.meta:
            ticks.append(source.clock_us())
    took = time.monotonic() - started
    source.close()
    return took, ticks, source


def test_max_gap_cuts_the_wait_and_runs_the_clock_through_the_pause(tmp_path):
    """--max-gap is wall seconds: at speed 2 a 1.2 s pause takes 0.6 s, cut to 0.25 s; the flow
    clock still reaches the end of the pause before the packet after it (flows end in it)."""
    pause = 1_200_000
    path = pausing_capture(tmp_path / "pause.pcap", pause)
    took, ticks, source = paced_run(path, max_gap=0.25)
    assert 0.1 + 0.25 - 0.02 <= took <= 0.1 + 0.25 + 0.1, took
    end_of_pause = T0 + 200_000 + pause - 1
    assert end_of_pause in ticks
    waited = ticks[:ticks.index(end_of_pause)]
    assert max(waited) <= T0 + 200_000 + 500_000                      # 0.25 s at speed 2, then the cut
    stats = source.statistics()
    assert (stats["gaps_cut"], stats["longest_gap"]) == (1, 1.2)
    took, ticks, source = paced_run(path, max_gap=0)                  # 0: no cap
    assert 0.1 + 0.6 - 0.02 <= took <= 0.1 + 0.6 + 0.1, took
    assert "gaps_cut" not in source.statistics()
