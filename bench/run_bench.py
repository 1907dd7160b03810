#!/usr/bin/env python3
"""Benchmark pyprobe against softflowd on a synthetic capture.

    .venv/bin/python bench/run_bench.py            # 500k packets / 100k flows
    .venv/bin/python bench/run_bench.py --quick    # small smoke run

1. generates the capture into bench/.cache/ unless it is already there (bench/gen_capture.py);
2. times the metering loop alone: the whole file is read with pcapy's next_batch into memory
   first, then Meter.process over all batches + flush is timed (best of --runs);
3. times whole runs of `pyprobe -r FILE --json -m M > /dev/null`, `softflowd -r FILE -v 9 -m M`
   and softflowd with its default -m (exporting to a UDP sink on 127.0.0.1 that only drains),
   alternating the tools run by run; median wall time and peak RSS (wait4's ru_maxrss) of each;
4. prints a table, the ratios pyprobe/softflowd, and sanity checks of every tool's totals
   against what the generator wrote (packets, records, octets).

This is a measurement, not a test: nothing here asserts on timings.
"""
import argparse
import collections
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CACHE = os.path.join(BENCH, ".cache")
BATCH = 4096  # packets per next_batch, as pyprobe.source reads


def parse_args():
    p = argparse.ArgumentParser(description="pyprobe vs softflowd benchmark")
    p.add_argument("--packets", type=int, default=None, help="packets in the capture (default 500000)")
    p.add_argument("--flows", type=int, default=None, help="flows in the capture (default 100000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per tool (default: 5 if one round is quick, else 3)")
    p.add_argument("--quick", action="store_true", help="small capture (20k packets, 4k flows) for a smoke run")
    p.add_argument("--max-flows", "-m", type=int, default=1_000_000,
                   help="-m given to both pyprobe and softflowd (default %(default)s: nothing force-expired)")
    p.add_argument("--capture", help="use this capture instead of generating one (no totals check)")
    p.add_argument("--no-softflowd", action="store_true", help="skip softflowd")
    p.add_argument("--no-cli", action="store_true", help="only time the in-memory metering loop")
    a = p.parse_args()
    if a.quick:
        a.packets = a.packets or 20_000
        a.flows = a.flows or 4_000
    a.packets = a.packets or 500_000
    a.flows = a.flows or 100_000
    return a


# ---------------------------------------------------------------------------- capture

def ensure_capture(a):
    """Path of the cached capture and its sidecar of expected totals, generating them if missing."""
    if a.capture:
        return a.capture, None
    os.makedirs(CACHE, exist_ok=True)
    base = os.path.join(CACHE, f"synth_p{a.packets}_f{a.flows}_s{a.seed}.pcap")
    side = base + ".json"
    if not (os.path.exists(base) and os.path.exists(side)):
        tmp = base + ".tmp"
        print(f"generating {os.path.relpath(base, REPO)} ...", file=sys.stderr)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(BENCH, "gen_capture.py"), "-o", tmp,
                        "--packets", str(a.packets), "--flows", str(a.flows), "--seed", str(a.seed)],
                       check=True)
        os.replace(tmp, base)
        os.replace(tmp + ".json", side)  # the sidecar last: its presence means the capture is whole
        print(f"generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    with open(side) as f:
        return base, json.load(f)


# ---------------------------------------------------------------------------- metering loop

def bench_meter(path, runs, max_flows):
    """Best-of-runs seconds of Meter.process over in-memory batches + flush, and the records."""
    try:
        import pcapy
        from pyprobe._meter import Meter
        from pyprobe import records
    except ImportError as e:
        print(f"[meter] skipped: {e}", file=sys.stderr)
        return None
    t_read = time.perf_counter()
    cap = pcapy.open_offline(path)
    linktype = cap.datalink()
    batches = []
    npk = 0
    while True:
        pk, meta = cap.next_batch(BATCH)
        if not meta:
            break
        batches.append((pk, meta))
        npk += len(meta) // 16
    del cap
    t_read = time.perf_counter() - t_read
    times = []
    out = None
    for _ in range(runs):
        m = Meter(linktype, max_flows=max_flows)
        proc = m.process
        bufs = []
        t0 = time.perf_counter()
        for pk, meta in batches:
            bufs.append(proc(pk, meta))
        bufs.append(m.flush())
        times.append(time.perf_counter() - t0)
        stats = m.stats()
        out = bufs
        del m
    t0 = time.perf_counter()
    recs = records.unpack(b"".join(out))
    t_unpack = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in recs:
        json.dumps(r.as_dict())
    t_json = time.perf_counter() - t0
    tot = {"records": len(recs), "packets": sum(r.packets for r in recs), "octets": sum(r.octets for r in recs),
           "ipv6_packets": sum(r.packets for r in recs if r.ipver == 6),
           "vlan_packets": sum(r.packets for r in recs if r.vlan),
           "end_reason": dict(collections.Counter(r.end_reason for r in recs))}
    return {"read_packets": npk, "times": times, "best": min(times), "totals": tot, "stats": stats,
            "t_read": t_read, "t_unpack": t_unpack, "t_json": t_json}


# ---------------------------------------------------------------------------- NetFlow sink

class Sink:
    """UDP socket on 127.0.0.1 whose thread only drains datagrams (kept for a NetFlow v9 tally)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 64 << 20)
                break
            except OSError:
                continue
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.datagrams = []
        self.last = time.monotonic()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        recv = self.sock.recv
        while True:
            d = recv(65535)
            with self.lock:
                self.datagrams.append(d)
                self.last = time.monotonic()

    def take(self, quiet=0.2, limit=5.0):
        """Wait until nothing arrived for `quiet` seconds, then return and reset what came in."""
        t0 = time.monotonic()
        while time.monotonic() < t0 + limit:
            with self.lock:
                if time.monotonic() - max(self.last, t0) >= quiet:
                    break
            time.sleep(0.02)
        with self.lock:
            d, self.datagrams = self.datagrams, []
        return d


def tally_v9(datagrams):
    """Records, packets and octets in NetFlow v9 datagrams (IN_BYTES = 1, IN_PKTS = 2)."""
    templates = {}
    recs = pkts = octs = 0
    for d in datagrams:
        if len(d) < 20 or struct.unpack_from("!H", d)[0] != 9:
            continue
        off = 20
        while off + 4 <= len(d):
            fsid, flen = struct.unpack_from("!HH", d, off)
            if flen < 4:
                break
            end = min(off + flen, len(d))
            p = off + 4
            if fsid == 0:
                while p + 4 <= end:
                    tid, fc = struct.unpack_from("!HH", d, p)
                    p += 4
                    pos = 0
                    boff = poff = None
                    for _ in range(fc):
                        t, ln = struct.unpack_from("!HH", d, p)
                        p += 4
                        if t == 1:
                            boff = (pos, ln)
                        elif t == 2:
                            poff = (pos, ln)
                        pos += ln
                    templates[tid] = (pos, boff, poff)
            elif fsid >= 256 and fsid in templates:
                rl, boff, poff = templates[fsid]
                while rl and p + rl <= end:
                    if boff:
                        octs += int.from_bytes(d[p + boff[0]:p + boff[0] + boff[1]], "big")
                    if poff:
                        pkts += int.from_bytes(d[p + poff[0]:p + poff[0] + poff[1]], "big")
                    recs += 1
                    p += rl
            off += flen
    return {"records": recs, "packets": pkts, "octets": octs, "datagrams": len(datagrams)}


# ---------------------------------------------------------------------------- whole-program runs

GNU_TIME = "/usr/bin/time"
RSS_FILE = os.path.join(tempfile.gettempdir(), f"pyprobe-bench-rss.{os.getpid()}")


def run_timed(cmd, stdout=subprocess.DEVNULL, stderr_path=None):
    """Wall seconds, peak RSS (MiB) and exit code of one child.

    Peak RSS is the child's ru_maxrss from wait4.  That number cannot come from this process's
    own wait4: Linux starts an exec'ed child's maxrss at the hiwater RSS of the address space it
    replaced, and subprocess forks with vfork, so every child would report at least this
    process's RSS (hundreds of MiB once the capture is loaded for the metering loop).  GNU time
    is a ~1 MiB process whose fork+exec child starts clean; it wait4()s and prints ru_maxrss (%M).
    Without /usr/bin/time, our own wait4 is used and the figure is only an upper bound.
    """
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    use_time = os.access(GNU_TIME, os.X_OK)
    full = [GNU_TIME, "-f", "%M", "-o", RSS_FILE] + cmd if use_time else cmd
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stderr_path:
            err.close()
    rss_kib = ru.ru_maxrss
    if use_time:
        try:
            with open(RSS_FILE) as f:
                rss_kib = int(f.read().split()[-1])
            os.unlink(RSS_FILE)
        except (OSError, ValueError, IndexError):
            rss_kib = float("nan")
    return dt, rss_kib / 1024.0, p.returncode


def pyprobe_cmd():
    exe = os.path.join(REPO, ".venv", "bin", "pyprobe")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "pyprobe"]


def tally_json(path):
    tot = {"records": 0, "packets": 0, "octets": 0, "ipv6_packets": 0, "vlan_packets": 0}
    reasons = collections.Counter()
    bad = 0
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                bad += 1
                continue
            tot["records"] += 1
            tot["packets"] += r["packets"]
            tot["octets"] += r["octets"]
            if r.get("ipver") == 6:
                tot["ipv6_packets"] += r["packets"]
            if r.get("vlan"):
                tot["vlan_packets"] += r["packets"]
            reasons[r.get("end_reason")] += 1
    tot["end_reason"] = dict(reasons)
    tot["bad_lines"] = bad
    return tot


def tail(path, n=12):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).rstrip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------- report

def check(label, got, want, key, issues, note=""):
    if want is None or got is None or key not in want or key not in got:
        return
    ok = got[key] == want[key]
    mark = "ok" if ok else ("differs" if note else "MISMATCH")
    print(f"  {label:<28} {key:<13} got {got[key]:>12}  expected {want[key]:>12}  {mark}{note}")
    if not ok and not note:
        issues.append(f"{label}: {key} {got[key]} != expected {want[key]}")


def fmt_rate(n, s):
    return f"{n / s:,.0f}" if s > 0 else "-"


def main():
    a = parse_args()
    path, exp = ensure_capture(a)
    size_mib = os.path.getsize(path) / 2**20
    print(f"capture: {os.path.relpath(path, REPO)}  ({size_mib:.1f} MiB)", file=sys.stderr)
    if exp:
        print(f"  generated: {exp['packets']} packets, {exp['flows']} flows, {exp['octets']} IP octets, "
              f"IPv6 {exp['ipv6_packets']} pkts, VLAN {exp['vlan_packets']} pkts, "
              f"{exp['flows_ge_1000_packets']} flows >= 1000 pkts (max {exp['max_flow_packets']})", file=sys.stderr)
    want = None
    if exp:
        want = {"packets": exp["packets"], "records": exp["flows"], "octets": exp["octets"],
                "ipv6_packets": exp["ipv6_packets"], "vlan_packets": exp["vlan_packets"]}
    meter_runs = a.runs or 3
    issues = []
    rows = []

    # --- metering loop in memory
    print(f"[meter] Meter.process over in-memory batches + flush, best of {meter_runs} ...", file=sys.stderr)
    mres = bench_meter(path, meter_runs, a.max_flows)
    if mres:
        rows.append(("Meter.process+flush (in memory)", mres["totals"]["packets"], mres["totals"]["records"],
                     mres["best"], None, mres["read_packets"]))

    # --- whole programs
    cli = {}
    if not a.no_cli:
        tmpd = tempfile.mkdtemp(prefix="pyprobe-bench-")
        sink = None if a.no_softflowd or not shutil.which("softflowd") else Sink()
        m = str(a.max_flows)
        tools = [("pyprobe --json -m " + m, pyprobe_cmd() + ["-r", path, "--json", "-m", m], "pyprobe")]
        if sink:
            # -c none: no control socket.  With one, softflowd 1.1.0 in -r mode tests the revents of
            # a pollfd array it never polled (stack garbage) and can block in accept() for ever,
            # depending on the environment and argument lengths.
            sfd = ["softflowd", "-r", path, "-n", f"127.0.0.1:{sink.port}", "-v", "9", "-d",
                   "-p", os.path.join(tmpd, "softflowd.pid"), "-c", "none"]
            tools.append(("softflowd -v 9 -m " + m, sfd + ["-m", m], "softflowd"))
            tools.append(("softflowd -v 9 (default -m 8192)", sfd, "softflowd"))
        elif not a.no_softflowd:
            print("softflowd not found: skipped", file=sys.stderr)

        # untimed validation (and warm-up) run of each tool, output kept
        for name, cmd, kind in tools:
            errp = os.path.join(tmpd, "validate.err")
            if kind == "pyprobe":
                outp = os.path.join(tmpd, "pyprobe.jsonl")
                with open(outp, "wb") as out:
                    dt, rss, rc = run_timed(cmd, stdout=out, stderr_path=errp)
                tot = tally_json(outp)
                os.unlink(outp)
            else:
                sink.take(quiet=0.05)
                dt, rss, rc = run_timed(cmd, stderr_path=errp)
                tot = tally_v9(sink.take())
            tot["rc"] = rc
            tot["stderr"] = tail(errp)
            cli[name] = {"validate": tot, "times": [], "rss": []}
            if rc != 0:
                issues.append(f"{name}: exit status {rc}: {tail(errp, 3)}")

        # timed runs, alternating tools, the starting tool rotating each round
        runs = a.runs
        rnd = 0
        while True:
            t_round = time.perf_counter()
            order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
            for name, cmd, kind in order:
                dt, rss, rc = run_timed(cmd)
                if sink:
                    sink.take(quiet=0.05)
                cli[name]["times"].append(dt)
                cli[name]["rss"].append(rss)
            rnd += 1
            if runs is None:
                runs = 5 if time.perf_counter() - t_round < 20 else 3
            print(f"[cli] round {rnd}/{runs}: " + ", ".join(
                f"{n.split()[0]}{'' if 'default' not in n else '(def -m)'} {cli[n]['times'][-1]:.2f}s" for n, _, _ in tools),
                file=sys.stderr)
            if rnd >= runs:
                break
        shutil.rmtree(tmpd, ignore_errors=True)
        for name, _, _ in tools:
            v = cli[name]["validate"]
            rows.append((name, v["packets"], v["records"], statistics.median(cli[name]["times"]),
                         max(cli[name]["rss"]), None))

    # --- table
    npk = exp["packets"] if exp else (mres["read_packets"] if mres else 0)
    print()
    print(f"capture: {os.path.relpath(path, REPO)}: {npk} packets, "
          f"{exp['flows'] if exp else '?'} flows, {size_mib:.1f} MiB; -m {a.max_flows}; "
          f"meter best of {meter_runs}, programs median of {len(next(iter(cli.values()))['times']) if cli else 0}")
    hdr = f"{'tool':<34} {'packets':>9} {'flows':>8} {'seconds':>8} {'packets/s':>11} {'peak RSS MiB':>13}"
    print(hdr)
    print("-" * len(hdr))
    for name, pk, fl, sec, rss, _ in rows:
        print(f"{name:<34} {pk:>9} {fl:>8} {sec:>8.3f} {fmt_rate(npk, sec):>11} "
              f"{('%.1f' % rss) if rss is not None else '-':>13}")
    print("(packets/flows: totals in each tool's own output; packets/s: capture packets / seconds; "
          + ("peak RSS: GNU time's ru_maxrss)" if os.access(GNU_TIME, os.X_OK)
             else "peak RSS: wait4 ru_maxrss, an UPPER BOUND (includes this process's RSS at spawn))"))
    pp = next((n for n in cli if n.startswith("pyprobe")), None)
    for sf in [n for n in cli if n.startswith("softflowd")]:
        tp, ts = statistics.median(cli[pp]["times"]), statistics.median(cli[sf]["times"])
        rp, rs = max(cli[pp]["rss"]), max(cli[sf]["rss"])
        print(f"ratio pyprobe / {sf}: time {tp / ts:.2f}x, packets/s {ts / tp:.2f}x, peak RSS {rp / rs:.2f}x")
    if mres:
        print(f"in-process pieces (one pass each): next_batch read of the file {mres['t_read']:.3f} s, "
              f"Meter.process+flush {mres['best']:.3f} s, records.unpack {mres['t_unpack']:.3f} s, "
              f"as_dict+json.dumps {mres['t_json']:.3f} s")
    if mres and pp:
        print(f"metering loop share of the pyprobe run: {mres['best'] / statistics.median(cli[pp]['times']):.0%}")

    # --- sanity checks
    print()
    print("sanity checks against the generator's totals:")
    if not exp:
        print("  (no sidecar for --capture: skipped)")
    if mres:
        if mres["read_packets"] != npk:
            issues.append(f"pcapy next_batch read {mres['read_packets']} packets, generated {npk}")
        t = mres["totals"]
        for k in ("packets", "records", "octets", "ipv6_packets", "vlan_packets"):
            check("Meter", t, want, k, issues)
        print(f"  {'Meter':<28} end reasons   {t['end_reason']}")
    for name, d in cli.items():
        v = d["validate"]
        if name.startswith("pyprobe"):
            for k in ("packets", "records", "octets", "ipv6_packets", "vlan_packets"):
                check("pyprobe --json", v, want, k, issues)
            print(f"  {'pyprobe --json':<28} end reasons   {v['end_reason']}")
            if v["bad_lines"]:
                issues.append(f"pyprobe --json: {v['bad_lines']} stdout lines that are not JSON")
            if v["stderr"]:
                print("  pyprobe stderr (validation run):")
                print("    " + v["stderr"].replace("\n", "\n    "))
        else:
            label = "softflowd" + (" (default -m)" if "default" in name else "")
            check(label, v, want, "packets", issues)
            check(label, v, want, "records", issues,
                  "" if "default" not in name else "  (forced expiry splits flows: informational)")
            if exp and "frame_l3_octets" in exp:
                w = {"octets": exp["frame_l3_octets"]}
                check(label, v, w, "octets", issues, "  (softflowd counts frame bytes after L2 incl. padding)")
    print()
    if issues:
        print("PROBLEMS:")
        for i in issues:
            print("  - " + i)
    else:
        print("all totals match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
