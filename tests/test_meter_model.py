"""Property test: the Cython Meter against the pure-Python flow model (tests/flowmodel.py).

Random packet sequences over a small pool of hosts / ports (so flows repeat),
random small timeouts, cache sizes, key levels and batch splits. The records
the Meter returns must equal the model's as multisets, on every field, and
per batch: process() returns exactly what the model expires while metering
that batch's packets.
"""
import os
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))

import packets as P  # noqa: E402
from flowmodel import KEY_LEVELS, RECORD_FIELDS, FlowModel, Pkt  # noqa: E402

meter_mod = pytest.importorskip("pyprobe._meter")
records_mod = pytest.importorskip("pyprobe.records")
Meter = meter_mod.Meter
predefined = pytest.importorskip("pyprobe.definitions").predefined
unpack = records_mod.unpack

LINKTYPE = P.DLT_EN10MB
BASE_US = 1_700_000_000_000_000

HOSTS = {4: ["10.0.0.1", "10.0.0.2", "192.168.1.9"], 6: ["2001:db8::1", "2001:db8::2", "fe80::1"]}
PORTS = [80, 1234, 65535]
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02"]
ICMP_TYPES = {4: [(8, 0), (0, 0), (3, 1)], 6: [(128, 0), (129, 0), (1, 4)]}
TCP_FLAGS = [0x02, 0x12, 0x10, 0x18, 0x00, 0x01, 0x11, 0x04, 0x14, 0x19]
OTHER_PROTO = 47  # GRE: "general" timeout class, ports 0

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- strategies

@st.composite
def time_step(draw):
    """Microseconds to the next packet: often on the 0.5 s grid that all timeouts
    are on (hits the exact boundaries, +-1 us), sometimes anywhere, sometimes backwards."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return -draw(st.integers(1, 3_000_000))
    if kind <= 2:
        return draw(st.integers(0, 1_000_000))
    if kind <= 3:
        return draw(st.integers(0, 12_000_000))
    return max(0, draw(st.integers(0, 24)) * 500_000 + draw(st.sampled_from([-1, 0, 0, 0, 1])))


@st.composite
def frame_and_pkt(draw, time_us, in_if):
    """One Ethernet frame and the decoded packet the model sees for it."""
    ipver = draw(st.sampled_from([4, 6]))
    src = draw(st.sampled_from(HOSTS[ipver]))
    dst = draw(st.sampled_from(HOSTS[ipver]))
    proto = draw(st.sampled_from([6, 17, 1 if ipver == 4 else 58, OTHER_PROTO]))
    tos = draw(st.sampled_from([0, 0x10, 0xB8]))
    vlan = draw(st.sampled_from([None, None, 10, 20]))
    src_mac = draw(st.sampled_from(MACS))
    dst_mac = draw(st.sampled_from(MACS))
    payload = bytes(draw(st.integers(0, 40)))
    frag_offset = 0
    if ipver == 4 and draw(st.integers(0, 15)) == 0:
        frag_offset = 185  # non-first fragment: no L4 parse, ports 0
    sport = dport = flags = 0
    if not frag_offset:
        if proto == 6:
            sport, dport = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
            flags = draw(st.one_of(st.sampled_from(TCP_FLAGS), st.integers(0, 255)))
        elif proto == 17:
            sport, dport = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
        elif proto in (1, 58):
            t, c = draw(st.sampled_from(ICMP_TYPES[ipver]))
            dport = t * 256 + c
    ip = P.ip_packet(ipver, src, dst, proto, sport, dport, flags, tos, payload, frag_offset)
    frame = P.ethernet(ip, P.ETH_IPV4 if ipver == 4 else P.ETH_IPV6, src_mac, dst_mac, vlan)
    pkt = Pkt(time_us=time_us, ipver=ipver, src=src, dst=dst, proto=proto, sport=sport, dport=dport,
              tos=tos, in_if=in_if, vlan=vlan or 0, src_mac=src_mac, dst_mac=dst_mac, mpls_label=0,
              octets=len(ip), tcp_flags=flags)
    return frame, pkt


def half_seconds(lo, hi):
    return st.integers(2 * lo, 2 * hi).map(lambda x: x / 2)


@st.composite
def timeouts_st(draw):
    """Small random timeouts (multiples of 0.5 s); sometimes a key is left out (= default)."""
    t = {}
    for name in ("general", "tcp", "udp", "icmp"):
        t[name] = draw(half_seconds(1, 5))
    t["maxlife"] = draw(half_seconds(2, 10))
    t["tcp.fin"] = draw(st.sampled_from([0, 0, 1, 2.5, 4]))
    t["tcp.rst"] = draw(st.sampled_from([0, 0, 1, 2.5, 4]))
    for name in list(t):
        if draw(st.integers(0, 9)) == 0:
            del t[name]
    return t


@st.composite
def scenario(draw, max_packets=60):
    in_if = draw(st.sampled_from([0, 7]))
    n = draw(st.integers(1, max_packets))
    time_us = BASE_US + draw(st.integers(0, 999_999))
    frames, pkts = [], []
    for _ in range(n):
        time_us += draw(time_step())
        frame, pkt = draw(frame_and_pkt(time_us, in_if))
        frames.append((time_us, frame))
        pkts.append(pkt)
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=6)))) if n > 1 else []
    return dict(
        frames=frames,
        pkts=pkts,
        cuts=cuts,
        in_if=in_if,
        key_level=draw(st.sampled_from(KEY_LEVELS)),
        timeouts=draw(timeouts_st()),
        max_flows=draw(st.one_of(st.integers(1, 8), st.just(65536))),
    )


# ---------------------------------------------------------------- helpers

def as_model_record(r):
    d = r._asdict() if hasattr(r, "_asdict") else dict(r.as_dict())
    out = {k: d[k] for k in RECORD_FIELDS if k not in ("first_us", "last_us")}
    out["first_us"] = int(round(d["start"] * 1_000_000))
    out["last_us"] = int(round(d["end"] * 1_000_000))
    return out


def rkey(r):
    return tuple(r[k] for k in RECORD_FIELDS)


def multiset(records):
    return Counter(rkey(r) for r in records)


def batches(items, cuts):
    bounds = [0] + list(cuts) + [len(items)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


def run_meter(s, cuts=None):
    """Feed the scenario to a Meter batch by batch, then flush.
    Returns a list (one per batch, then one for flush) of lists of model-shaped records."""
    m = Meter(LINKTYPE, max_flows=s["max_flows"], record=predefined(s["key_level"]),
              timeouts=dict(s["timeouts"]))
    out = []
    for batch in batches(s["frames"], s["cuts"] if cuts is None else cuts):
        out.append([as_model_record(r) for r in unpack(m.process(*P.make_batch(batch), in_if=s["in_if"]))])
    out.append([as_model_record(r) for r in unpack(m.flush())])
    assert m.active_flows == 0
    return out


def run_model_batched(s):
    m = FlowModel(s["key_level"], s["timeouts"], s["max_flows"])
    out = []
    for batch in batches(s["pkts"], s["cuts"]):
        recs = []
        for p in batch:
            recs += m.packet(p)
        out.append(recs)
    out.append(m.flush())
    return out


def describe(s):
    lines = [f"key_level={s['key_level']} max_flows={s['max_flows']} timeouts={s['timeouts']} "
             f"in_if={s['in_if']} cuts={s['cuts']}"]
    for p in s["pkts"]:
        lines.append(f"  {p}")
    return "\n".join(lines)


def diff(expected, got):
    e, g = multiset(expected), multiset(got)
    return (f"\nmissing (model has, meter not): {[dict(zip(RECORD_FIELDS, k)) for k in (e - g)]}"
            f"\nextra (meter has, model not): {[dict(zip(RECORD_FIELDS, k)) for k in (g - e)]}")


# ---------------------------------------------------------------- tests

@settings(max_examples=300, **SETTINGS)
@given(scenario())
def test_meter_equals_model(s):
    got = run_meter(s)
    want = run_model_batched(s)
    all_got = [r for b in got for r in b]
    all_want = [r for b in want for r in b]
    assert multiset(all_got) == multiset(all_want), describe(s) + diff(all_want, all_got)
    # and each process() call / the flush returns exactly what expired during it
    for i, (g, w) in enumerate(zip(got, want)):
        assert multiset(g) == multiset(w), f"batch {i}:\n" + describe(s) + diff(w, g)


@settings(max_examples=100, **SETTINGS)
@given(scenario(), st.data())
def test_batch_split_does_not_change_result(s, data):
    n = len(s["frames"])
    one = run_meter(s, cuts=[])
    each = run_meter(s, cuts=list(range(1, n)))
    other = sorted(set(data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=8)))) if n > 1 else []
    rnd = run_meter(s, cuts=other)
    flat = [multiset([r for b in res for r in b]) for res in (one, each, rnd)]
    assert flat[0] == flat[1] == flat[2], describe(s)
    # the eof records do not depend on the split either
    assert multiset(one[-1]) == multiset(each[-1]) == multiset(rnd[-1])


@settings(max_examples=100, **SETTINGS)
@given(scenario(max_packets=30), st.lists(st.integers(0, 15_000_000), min_size=1, max_size=6), st.data())
def test_expire_ticks_equal_model(s, tick_offsets, data):
    """meter.expire(now_us) between batches: a clock tick without a packet."""
    m = Meter(LINKTYPE, max_flows=s["max_flows"], record=predefined(s["key_level"]),
              timeouts=dict(s["timeouts"]))
    model = FlowModel(s["key_level"], s["timeouts"], s["max_flows"])
    got, want = [], []
    frames_b = batches(s["frames"], s["cuts"])
    pkts_b = batches(s["pkts"], s["cuts"])
    for fb, pb in zip(frames_b, pkts_b):
        got += [as_model_record(r) for r in unpack(m.process(*P.make_batch(fb), in_if=s["in_if"]))]
        for p in pb:
            want += model.packet(p)
        # tick somewhere around the last packet's time (may be behind the clock)
        tick = pb[-1].time_us - 3_000_000 + data.draw(st.sampled_from(tick_offsets))
        g = [as_model_record(r) for r in unpack(m.expire(tick))]
        w = model.expire(tick)
        assert multiset(g) == multiset(w), f"tick {tick}:\n" + describe(s) + diff(w, g)
        got += g
        want += w
        assert m.active_flows == len(model.flows)
    got += [as_model_record(r) for r in unpack(m.flush())]
    want += model.flush()
    assert multiset(got) == multiset(want), describe(s) + diff(want, got)
