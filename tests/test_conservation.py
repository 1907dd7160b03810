"""Conservation: whatever the timeouts and cache size, pyprobe's records must add up,
per key, to exactly the packets and octets an independent decoder finds in the capture.

Runs over every capture under ../shared/pcaps/corpus (new files are picked up
automatically) in three modes: default timeouts, 1-second timeouts (flows split many
times) and a 16-flow cache (always full).
"""

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPUS = (REPO / ".." / "shared" / "pcaps" / "corpus").resolve()

END_REASONS = {"idle", "active", "tcp_end", "cache_full", "eof"}
RECORD_KEYS = {"src", "dst", "ipver", "proto", "sport", "dport", "packets", "octets",
               "start", "end", "tcp_flags", "tos", "vlan", "in_if", "src_mac", "dst_mac",
               "mpls_label", "end_reason"}
# libpcap names, in case pyprobe names the link type rather than printing its number.
DLT_NAMES = {9: "PPP", 104: "HDLC", 107: "FRELAY", 226: "IPNET", 239: "NFLOG",
             10: "FDDI", 105: "802_11", 127: "RADIOTAP", 50: "PPP_SERIAL", 51: "PPP_ETHER"}

MODES = {
    "default": [],
    "timeouts1s": ["-t", "inactive=1", "-t", "active=1"],
    "maxflows16": ["-m", "16"],
}
TIMEOUT = 300


def pyprobe_exe():
    """The venv's pyprobe: next to the running interpreter, else on PATH, else repo .venv."""
    for cand in (Path(sys.executable).parent / "pyprobe", shutil.which("pyprobe"),
                 REPO / ".venv" / "bin" / "pyprobe"):
        if cand and os.access(str(cand), os.X_OK):
            return str(cand)
    pytest.fail("pyprobe executable not found (run `make venv`)")


def run_pyprobe(args, stdin=None, input_bytes=None):
    return subprocess.run([pyprobe_exe()] + args, stdin=stdin, input=input_bytes,
                          capture_output=True, timeout=TIMEOUT)


def capture_files():
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")


FILES = capture_files()


@functools.lru_cache(maxsize=None)
def ref_result(path):
    """Reference totals, or the UnsupportedLinkType exception."""
    try:
        return reference.totals(path)
    except reference.UnsupportedLinkType as e:
        return e


def canon(ipver, addr):
    """Canonical text form of an address (so '::ffff:1.2.3.4' style differences don't matter)."""
    fam = socket.AF_INET if ipver == 4 else socket.AF_INET6
    return socket.inet_ntop(fam, socket.inet_pton(fam, addr))


def parse_records(stdout):
    records = []
    for line in stdout.decode().splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)   # --json: nothing but JSON objects on stdout
        assert isinstance(obj, dict), line
        records.append(obj)
    return records


def sum_records(records):
    sums = {}
    for r in records:
        key = (r["ipver"], canon(r["ipver"], r["src"]), canon(r["ipver"], r["dst"]),
               r["proto"], r["sport"], r["dport"])
        entry = sums.setdefault(key, [0, 0])
        entry[0] += r["packets"]
        entry[1] += r["octets"]
    return sums


def ref_sums(result):
    return {(k[0], canon(k[0], k[1]), canon(k[0], k[2])) + k[3:]: list(v)
            for k, v in result.totals.items()}


def cache_must_overflow(path, max_flows=16, inactive_us=15_000_000, maxlife_us=1_800_000_000):
    """True if, with default timeouts, more than max_flows flows must be live at once.

    Sound lower bound, independent of pyprobe: within a window of packets spanning less
    than the inactive timeout no flow created or touched in the window can idle out, and
    a key none of whose packets in the window carry FIN/RST cannot tcp_end out.  Keys that
    ever stay busy long enough to reach the active timeout are left out.  If more such keys
    than max_flows are present in one window, the meter must have evicted (cache_full).
    """
    events, run_start, last_seen, long_lived = [], {}, {}, set()
    now = None
    for ts, d in reference.walk(path):
        if d is None:
            continue
        now = ts if now is None else max(now, ts)
        key, finrst = d[:6], d[3] == 6 and bool(d[7] & 0x05)
        if key not in last_seen or now - last_seen[key] > inactive_us - 1_000_000:
            run_start[key] = now
        last_seen[key] = now
        if now - run_start[key] >= maxlife_us - 1_000_000:
            long_lived.add(key)
        events.append((now, key, finrst))
    window = inactive_us - 1_000_000   # margin for rounding of timestamps
    count, finrst_count, alive, i = Counter(), Counter(), 0, 0

    def is_alive(k):
        return count[k] > 0 and finrst_count[k] == 0 and k not in long_lived

    for now, key, finrst in events:
        before = is_alive(key)
        count[key] += 1
        finrst_count[key] += finrst
        alive += is_alive(key) - before
        while now - events[i][0] > window:
            _, k, f = events[i]
            before = is_alive(k)
            count[k] -= 1
            finrst_count[k] -= f
            alive += is_alive(k) - before
            i += 1
        if alive > max_flows:
            return True
    return False


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_conservation(path, mode):
    ref = ref_result(str(path))
    proc = run_pyprobe(["-r", str(path), "--json"] + MODES[mode])
    stderr = proc.stderr.decode(errors="replace")

    if isinstance(ref, reference.UnsupportedLinkType):
        lt = ref.linktype
        assert proc.returncode == 2, stderr
        assert "Traceback" not in stderr
        lines = [l for l in stderr.splitlines() if l.strip()]
        assert len(lines) == 1, stderr
        assert lines[0].startswith("pyprobe: "), stderr
        name = DLT_NAMES.get(lt, "\0")
        assert str(lt) in lines[0] or name.lower() in lines[0].lower(), \
            "error line does not name link type %d: %r" % (lt, lines[0])
        assert proc.stdout.strip() == b""
        return

    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    records = parse_records(proc.stdout)

    for r in records:
        missing = RECORD_KEYS - set(r)
        assert not missing, "record lacks %s: %r" % (missing, r)
        assert r["start"] <= r["end"], r
        assert r["end_reason"] in END_REASONS, r
        assert r["packets"] >= 1, r

    got, want = sum_records(records), ref_sums(ref)
    missing = sorted(set(want) - set(got), key=str)
    extra = sorted(set(got) - set(want), key=str)
    assert not missing and not extra, \
        "key sets differ: missing %s ... extra %s ..." % (missing[:5], extra[:5])
    wrong = sorted(((k, got[k], want[k]) for k in want if got[k] != want[k]), key=str)
    assert not wrong, "per-key [packets, octets] (pyprobe, reference) differ: %s" % wrong[:5]
    assert sum(v[0] for v in got.values()) == ref.packets - ref.ignored

    if mode == "maxflows16" and len(want) > 16:
        reasons = Counter(r["end_reason"] for r in records)
        if cache_must_overflow(str(path)):
            assert reasons["cache_full"] > 0, reasons
        assert len(records) >= len(want)
