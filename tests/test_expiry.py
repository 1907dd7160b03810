"""End-to-end expiry tests through the CLI: `pyprobe -r FILE --json` on captures written here.

Every expected number is derived from the packets the test writes (times, counts,
IP lengths), never copied from pyprobe's output.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from pyprobe import fields

sys.path.insert(0, os.path.dirname(__file__))

import packets as P  # noqa: E402

SEC = 1_000_000
T0 = 1_700_000_000 * SEC + 123_456  # a non-zero microsecond part on purpose

JSON_KEYS = set(fields.JSON_KEYS)        # every record carries every field of the table

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


def pyprobe_exe():
    exe = os.path.join(os.path.dirname(sys.executable), "pyprobe")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("pyprobe")
    if found:
        return [found]
    pytest.skip("pyprobe console script not installed")


def run_pyprobe(tmp_path, frames, *args, name="cap.pcap"):
    """Write frames [(time_us, bytes)] to a pcap, run pyprobe -r it --json ARGS; return the records."""
    path = P.write_pcap(str(tmp_path / name), frames)
    proc = subprocess.run(pyprobe_exe() + ["-r", path, "--json", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    recs = []
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        assert set(rec) == JSON_KEYS, line
        recs.append(rec)
    return recs


def us(x):
    """JSON start/end (epoch seconds float) -> integer microseconds."""
    return int(round(x * SEC))


class Host:
    """A flow endpoint pair; .pkt(t, ...) makes (time_us, frame) and remembers the IP length."""

    def __init__(self, src, dst, proto=17, sport=1000, dport=53, ipver=4):
        self.src, self.dst, self.proto, self.sport, self.dport, self.ipver = src, dst, proto, sport, dport, ipver

    def ip(self, flags=0, payload=b"", sport=None, dport=None):
        return P.ip_packet(self.ipver, self.src, self.dst, self.proto,
                           self.sport if sport is None else sport,
                           self.dport if dport is None else dport, flags, 0, payload)

    def pkt(self, t, flags=0, payload=b"", sport=None, dport=None):
        ip = self.ip(flags, payload, sport, dport)
        eth = P.ethernet(ip, P.ETH_IPV4 if self.ipver == 4 else P.ETH_IPV6)
        return (t, eth)


def octets_of(frame):
    """IP length of an untagged Ethernet frame we built (= what pyprobe must count)."""
    return len(frame) - 14


def find(recs, **match):
    return [r for r in recs if all(r[k] == v for k, v in match.items())]


def check(rec, frames, reason):
    """rec accounts exactly for `frames` (the packets of one flow record) and ended with `reason`."""
    assert rec["packets"] == len(frames), rec
    assert rec["octets"] == sum(octets_of(f) for _, f in frames), rec
    assert us(rec["start"]) == frames[0][0], rec
    assert us(rec["end"]) == frames[-1][0], rec
    assert rec["end_reason"] == reason, rec


A_UDP = dict(src="10.0.0.1", dst="10.0.0.2", proto=17, sport=1000, dport=53)
B_TCP = dict(src="10.9.9.9", dst="10.8.8.8", proto=6, sport=40000, dport=443)


# ------------------------------------------------------------------- idle

@pytest.mark.parametrize("proto", [6, 17, 1])
@pytest.mark.parametrize("args,timeout", [([], 15), (["-t", "inactive=5"], 5)])
def test_idle_gap_longer_than_timeout_splits_flow(tmp_path, proto, args, timeout):
    a = Host("10.0.0.1", "10.0.0.2", proto=proto, sport=0 if proto == 1 else 1000,
             dport=8 * 256 if proto == 1 else 53)
    b = Host(**B_TCP)
    t1 = T0 + SEC
    t2 = t1 + timeout * SEC + 1                  # one microsecond past the timeout
    t3 = t2 + timeout * SEC + 1
    a1 = [a.pkt(T0, payload=b"x" * 10), a.pkt(t1, payload=b"y" * 3)]
    a2 = [a.pkt(t2)]
    b1 = [b.pkt(t3, ACK)]
    recs = run_pyprobe(tmp_path, a1 + a2 + b1, *args)
    assert len(recs) == 3, recs
    ra = sorted(find(recs, src="10.0.0.1"), key=lambda r: r["start"])
    assert len(ra) == 2, recs
    check(ra[0], a1, "idle")
    check(ra[1], a2, "idle")
    (rb,) = find(recs, src="10.9.9.9")
    check(rb, b1, "eof")
    assert ra[0]["proto"] == proto and ra[0]["ipver"] == 4


@pytest.mark.parametrize("args,timeout", [([], 15), (["-t", "inactive=5"], 5), (["-t", "udp=3"], 3)])
def test_idle_gap_exactly_timeout_keeps_flow(tmp_path, args, timeout):
    a = Host(**A_UDP)
    b = Host(**B_TCP)
    a1 = [a.pkt(T0), a.pkt(T0 + timeout * SEC), a.pkt(T0 + 2 * timeout * SEC)]
    b1 = [b.pkt(T0 + 3 * timeout * SEC, ACK)]  # exactly the timeout after A's last: A stays
    recs = run_pyprobe(tmp_path, a1 + b1, *args)
    assert len(recs) == 2, recs
    (ra,) = find(recs, src="10.0.0.1")
    check(ra, a1, "eof")
    (rb,) = find(recs, src="10.9.9.9")
    check(rb, b1, "eof")


def test_per_class_inactive_timeout(tmp_path):
    """-t udp=2: a UDP flow splits on a 3 s gap, a TCP flow (default 15) with the same gap does not."""
    a = Host(**A_UDP)
    b = Host(**B_TCP)
    frames = [a.pkt(T0), b.pkt(T0 + 1, ACK), a.pkt(T0 + 3 * SEC), b.pkt(T0 + 3 * SEC + 1, ACK)]
    recs = run_pyprobe(tmp_path, frames, "-t", "udp=2")
    ra = sorted(find(recs, src="10.0.0.1"), key=lambda r: r["start"])
    assert [r["packets"] for r in ra] == [1, 1], recs
    check(ra[0], [frames[0]], "idle")
    check(ra[1], [frames[2]], "eof")
    (rb,) = find(recs, src="10.9.9.9")
    check(rb, [frames[1], frames[3]], "eof")


# ------------------------------------------------------------------- active

def test_active_timeout_cuts_long_flow(tmp_path):
    active = 30
    n = 100
    a = Host(**A_UDP)
    frames = [a.pkt(T0 + i * SEC, payload=bytes(i % 7)) for i in range(n)]  # one per second
    recs = run_pyprobe(tmp_path, frames, "-t", f"active={active}")
    # expected: a new flow starts at packet k*active; it is cut when a packet arrives
    # `active` seconds after its first one (now - first >= active)
    chunks = [frames[i:i + active] for i in range(0, n, active)]
    reasons = ["active"] * (len(chunks) - 1) + ["eof"]
    recs.sort(key=lambda r: r["start"])
    assert len(recs) == len(chunks), recs
    for rec, chunk, reason in zip(recs, chunks, reasons):
        check(rec, chunk, reason)
    assert sum(r["packets"] for r in recs) == n


def test_active_timeout_boundary_is_inclusive(tmp_path):
    """-t active=10 with packets every 4 s: the packet at first+12 s (>= 10) starts a new flow;
    a flow whose span is 8 s (< 10) is not cut."""
    a = Host(**A_UDP)
    frames = [a.pkt(T0 + i * 4 * SEC) for i in range(6)]  # 0, 4, 8 | 12, 16, 20
    recs = sorted(run_pyprobe(tmp_path, frames, "-t", "active=10"), key=lambda r: r["start"])
    assert len(recs) == 2, recs
    check(recs[0], frames[:3], "active")
    check(recs[1], frames[3:], "eof")

    b = Host(**A_UDP)
    frames = [b.pkt(T0), b.pkt(T0 + 5 * SEC), b.pkt(T0 + 10 * SEC)]  # exactly first + 10: cut
    recs = sorted(run_pyprobe(tmp_path, frames, "-t", "active=10", name="b.pcap"), key=lambda r: r["start"])
    assert len(recs) == 2, recs
    check(recs[0], frames[:2], "active")
    check(recs[1], frames[2:], "eof")


# ------------------------------------------------------------------- TCP end

@pytest.mark.parametrize("end_flags", [FIN | ACK, RST, RST | ACK])
def test_fin_rst_end_flow_at_once(tmp_path, end_flags):
    a = Host(**B_TCP)
    first = [a.pkt(T0, SYN), a.pkt(T0 + 100, ACK | PSH, b"hello"), a.pkt(T0 + 200, end_flags)]
    second = [a.pkt(T0 + 300, ACK), a.pkt(T0 + 400, ACK)]  # same key after the end: a new flow
    recs = sorted(run_pyprobe(tmp_path, first + second), key=lambda r: r["start"])
    assert len(recs) == 2, recs
    check(recs[0], first, "tcp_end")
    assert recs[0]["tcp_flags"] == SYN | ACK | PSH | end_flags
    check(recs[1], second, "eof")
    assert recs[1]["tcp_flags"] == ACK


def test_fin_flags_on_udp_do_nothing(tmp_path):
    """TCP end applies only to proto 6; a UDP flow is not ended by anything."""
    a = Host(**A_UDP)
    frames = [a.pkt(T0), a.pkt(T0 + SEC)]
    recs = run_pyprobe(tmp_path, frames)
    (r,) = recs
    check(r, frames, "eof")
    assert r["tcp_flags"] == 0


@pytest.mark.parametrize("name,end_flags", [("tcp.fin", FIN | ACK), ("tcp.rst", RST)])
def test_tcp_end_timeout_waits(tmp_path, name, end_flags):
    wait = 5
    a = Host(**B_TCP)
    b = Host(**A_UDP)
    t_end = T0 + SEC
    fl = [a.pkt(T0, SYN), a.pkt(t_end, end_flags), a.pkt(t_end + SEC, ACK)]
    t_last = t_end + SEC
    other = [b.pkt(t_last + wait * SEC),        # exactly `wait` after the last packet: still there
             b.pkt(t_last + wait * SEC + 1)]    # one microsecond later: expired, tcp_end
    after = [a.pkt(t_last + wait * SEC + 2, ACK)]  # same key again: a new flow
    recs = run_pyprobe(tmp_path, fl + other + after, "-t", f"{name}={wait}")
    assert len(recs) == 3, recs
    ra = sorted(find(recs, src="10.9.9.9"), key=lambda r: r["start"])
    assert len(ra) == 2, recs
    check(ra[0], fl, "tcp_end")
    assert ra[0]["tcp_flags"] == SYN | ACK | end_flags
    check(ra[1], after, "eof")
    (rb,) = find(recs, src="10.0.0.1")
    check(rb, other, "eof")


def test_fin_timeout_shorter_than_inactive(tmp_path):
    """-t tcp.fin=2 with the default 15 s inactive timeout: after FIN the flow goes after 2 s."""
    a = Host(**B_TCP)
    fl = [a.pkt(T0, SYN), a.pkt(T0 + SEC, FIN | ACK)]
    later = [a.pkt(T0 + 3 * SEC + 1, ACK)]  # 2 s + 1 us after the FIN
    recs = sorted(run_pyprobe(tmp_path, fl + later, "-t", "tcp.fin=2"), key=lambda r: r["start"])
    assert len(recs) == 2, recs
    check(recs[0], fl, "tcp_end")
    check(recs[1], later, "eof")


# ------------------------------------------------------------------- cache full

def test_cache_full_evicts_least_recently_used(tmp_path):
    a = Host("10.0.0.1", "10.0.0.2")
    b = Host("10.0.0.3", "10.0.0.4")
    c = Host("10.0.0.5", "10.0.0.6")
    # A created first but touched again after B: B is the least recently used when C arrives
    fa = [a.pkt(T0), a.pkt(T0 + 2 * SEC)]
    fb = [b.pkt(T0 + SEC)]
    fc = [c.pkt(T0 + 3 * SEC)]
    frames = sorted(fa + fb + fc)
    recs = run_pyprobe(tmp_path, frames, "-m", "2")
    assert len(recs) == 3, recs
    (ra,) = find(recs, src="10.0.0.1")
    (rb,) = find(recs, src="10.0.0.3")
    (rc,) = find(recs, src="10.0.0.5")
    check(rb, fb, "cache_full")
    check(ra, fa, "eof")
    check(rc, fc, "eof")


def test_cache_full_chain(tmp_path):
    """-m 1: every new flow evicts the previous one."""
    hosts = [Host(f"10.1.0.{i}", "10.2.0.1") for i in range(1, 5)]
    frames = [h.pkt(T0 + i * 1000) for i, h in enumerate(hosts)]
    recs = run_pyprobe(tmp_path, frames, "-m", "1")
    assert len(recs) == 4, recs
    for i, (t, f) in enumerate(frames):
        (r,) = find(recs, src=f"10.1.0.{i + 1}")
        check(r, [(t, f)], "eof" if i == len(frames) - 1 else "cache_full")


# ------------------------------------------------------------------- record fields / key levels

def test_record_times_and_fields(tmp_path):
    t1 = T0 + 987_654
    ip = P.ip_packet(6, "2001:db8::10", "2001:db8::20", 6, 5555, 22, SYN, tos=0x28, payload=b"abc")
    frame = P.ethernet(ip, P.ETH_IPV6, src_mac="02:aa:bb:cc:dd:01", dst_mac="02:aa:bb:cc:dd:02", vlan=42)
    frames = [(T0, frame), (t1, frame)]
    (r,) = run_pyprobe(tmp_path, frames)
    assert us(r["start"]) == T0 and us(r["end"]) == t1
    assert (r["src"], r["dst"], r["ipver"], r["proto"], r["sport"], r["dport"]) == \
        ("2001:db8::10", "2001:db8::20", 6, 6, 5555, 22)
    assert r["packets"] == 2 and r["octets"] == 2 * len(ip) == 2 * (40 + 20 + 3)
    assert r["tos"] == 0x28 and r["vlan"] == 42 and r["tcp_flags"] == SYN
    assert r["src_mac"] == "02:aa:bb:cc:dd:01" and r["dst_mac"] == "02:aa:bb:cc:dd:02"
    assert r["mpls_label"] == 0 and r["end_reason"] == "eof"


def test_key_level_proto_merges_ports(tmp_path):
    a = Host(**A_UDP)
    t = Host("10.0.0.1", "10.0.0.2", proto=6, sport=2000, dport=80)
    udp = [a.pkt(T0, sport=1000 + i, dport=53 + i % 2) for i in range(3)]
    udp = [(T0 + i * 1000, f) for i, (_, f) in enumerate(udp)]
    tcp = [t.pkt(T0 + 5000, ACK), (T0 + 6000, t.pkt(0, SYN, sport=2001)[1])]
    frames = sorted(udp + tcp)

    recs = run_pyprobe(tmp_path, frames, "-T", "proto")
    assert len(recs) == 2, recs
    (ru,) = find(recs, proto=17)
    (rt,) = find(recs, proto=6)
    check(ru, udp, "eof")
    check(rt, tcp, "eof")
    for r in recs:
        assert (r["sport"], r["dport"]) == (0, 0) and (r["src"], r["dst"]) == ("10.0.0.1", "10.0.0.2")
    assert rt["tcp_flags"] == ACK | SYN

    # the same capture at the default level: one flow per distinct port pair
    full = run_pyprobe(tmp_path, frames, name="full.pcap")
    pairs = {(17, 1000 + i, 53 + i % 2) for i in range(3)} | {(6, 2000, 80), (6, 2001, 80)}
    assert sorted((r["proto"], r["sport"], r["dport"]) for r in full) == sorted(pairs)
    assert all(r["packets"] == 1 for r in full)


def test_key_level_ip_merges_protocols(tmp_path):
    a = Host(**A_UDP)
    t = Host("10.0.0.1", "10.0.0.2", proto=6, sport=2000, dport=80)
    frames = [a.pkt(T0), t.pkt(T0 + 10, RST)]  # RST on a TCP packet: key proto is 0, no tcp_end
    recs = run_pyprobe(tmp_path, frames, "-T", "ip")
    (r,) = recs
    check(r, frames, "eof")
    assert (r["proto"], r["sport"], r["dport"]) == (0, 0, 0)
