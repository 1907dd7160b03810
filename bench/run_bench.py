#!/usr/bin/env python3
"""Benchmark pyprobe against softflowd, nfpcapd and a bare pcap read, on three synthetic captures.

    .venv/bin/python bench/run_bench.py               # everything, median of 5 runs (~6-10 min)
    .venv/bin/python bench/run_bench.py --quick       # tiny captures, smoke run (< 1 min)
    .venv/bin/python bench/run_bench.py --only flood --runs 3

Captures (`pyprobe generate --pcap` with bench/profiles/SHAPE.toml, through bench/captures.py;
seeded, the time line pinned, cached in bench/.cache/ under a name that carries their parameters
and a hash of the profile and the generator, so a change makes fresh ones):
  mix        the edge-link mix: 110k flows over 180 s, heavy-tailed sizes, IPv6, VLANs, answers;
  flood      1M one-packet flows from random IPv4 sources (SYN / DNS / ping flood) in 20 s;
  elephants  20 TCP flows x 30k MSS-sized packets.

On each capture, one round runs every tool once, in a fixed order (A B C D A B C D ...); the
table shows the median wall time over --runs rounds:
  * pyprobe -r FILE -n 127.0.0.1:SINK -v 9 -m M -q       (M large enough that no flow is
  * softflowd -r FILE -n 127.0.0.1:SINK -v 9 -d -c none -m M   force-expired: 2M for the
                                                           flood, 1M otherwise)
  * both again with their default -m (mix and flood only);
  * flood only: both with -m 1100000 and one-hour timeouts, so all 1M flows are alive at EOF
    (the peak-RSS-at-1M-concurrent-flows line);
  * nfpcapd -r FILE -w TMPDIR -e 1800,15  (pyprobe's default active / inactive timeouts);
  * the floor: bench/pcap_read.c, libpcap's pcap_next_ex loop in C reading the file and nothing else.
The exporters send NetFlow v9 to a UDP socket on 127.0.0.1 that queues them while the tool runs
(a 128 MiB receive buffer) and is drained by a thread of this process after it, so that the
collector's work takes no CPU from the tool measured on this 2-core machine; after every run
the records received (and the packets they count) are compared with the
generator's expected records, and the kernel's drop counter of the socket is read.  Every command runs
under /usr/bin/time -f '%e %M %U %S': peak RSS is the tool's whole process (ru_maxrss), seconds
are wall time measured here around it (%e is the same at 10 ms resolution).

Writes the tables as Markdown to bench/results.md (a --quick or --only run writes
bench/.cache/results-partial.md instead, so the full results are not overwritten).
This is a measurement, not a test: nothing here asserts on timings.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import captures  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CACHE = os.path.join(BENCH, ".cache")
GNU_TIME = "/usr/bin/time"
RUN_TIMEOUT = 600  # seconds: a run taking longer is killed and reported as failed

# name: generator arguments, -m that force-expires nothing, whether to run the default -m pair
# and the all-flows-alive pair
CAPTURES = {
    "mix": {"gen": {"shape": "mix"}, "m": 1_000_000,
            "default_m": True, "concurrent": None,
            "what": "the realistic mix: heavy-tailed flow sizes, TCP/UDP/ICMP, 15% IPv6, 10% VLAN-tagged"},
    "flood": {"gen": {"shape": "flood"}, "m": 2_000_000,
              "default_m": True, "concurrent": 1_100_000,
              "what": "one-packet flows from random IPv4 sources within 20 s (80% TCP SYN, 15% UDP, 5% ICMP)"},
    "elephants": {"gen": {"shape": "elephants"}, "m": 1_000_000,
                  "default_m": False, "concurrent": None,
                  "what": "long TCP flows of MSS-sized packets"},
}
QUICK = {
    "mix": {"flows": 4_000, "seconds": 10},
    "flood": {"flows": 30_000, "seconds": 5},
    "elephants": {"flows": 1, "seconds": 60},
}
LONG_PYPROBE = ["-t", "inactive=3600", "-t", "active=3600"]
LONG_SOFTFLOWD = ["-t", "maxlife=3600", "-t", "general=3600", "-t", "udp=3600", "-t", "tcp=3600",
                  "-t", "icmp=3600"]
NFPCAPD_E = "1800,15"  # active,inactive: pyprobe's defaults (nfpcapd's own are 300,60)
PYPROBE_DEFAULT_M = 65536
SOFTFLOWD_DEFAULT_M = 8192

FLOOR_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pcap_read.c")


def floor_program():
    """bench/pcap_read.c built against libpcap (libpcap-dev installed if missing), or None."""
    exe = os.path.join(CACHE, "pcap_read")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(FLOOR_SOURCE):
        return exe
    if not os.path.exists("/usr/include/pcap/pcap.h") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "libpcap-dev"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    os.makedirs(CACHE, exist_ok=True)
    built = subprocess.run(["gcc", "-O2", "-o", exe, FLOOR_SOURCE, "-lpcap"], capture_output=True, text=True)
    if built.returncode != 0:
        log("bench: cannot build the C floor (gcc and libpcap-dev needed):", built.stderr.strip())
        return None
    return exe


def parse_args():
    p = argparse.ArgumentParser(description="pyprobe vs softflowd / nfpcapd / a bare pcap read")
    p.add_argument("--runs", type=int, default=5, help="timed rounds per capture (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny captures, for a smoke run (under a minute)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only this capture: " + ", ".join(CAPTURES) + " (repeatable, or comma-separated)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default %(default)s)")
    p.add_argument("--results", help="Markdown output (default bench/results.md; "
                                     "bench/.cache/results-partial.md with --quick or --only)")
    a = p.parse_args()
    if a.runs < 1:
        p.error("--runs must be >= 1")
    names = []
    for o in a.only or []:
        for n in o.split(","):
            n = n.strip()
            if n not in CAPTURES:
                p.error(f"--only: unknown capture {n!r} (one of {', '.join(CAPTURES)})")
            if n not in names:
                names.append(n)
    a.names = [n for n in CAPTURES if n in names] if names else list(CAPTURES)
    if not a.results:
        partial = a.quick or names
        a.results = os.path.join(CACHE, "results-partial.md") if partial else os.path.join(BENCH, "results.md")
    return a


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- captures

def ensure_capture(name, gen_args, seed):
    """Path of the cached capture and what is in it, generating both if missing
    (bench/captures.py: pyprobe generate --pcap with the shape's profile)."""
    os.makedirs(CACHE, exist_ok=True)
    shape = gen_args["shape"]
    params = "-".join(f"{k[0]}{v}" for k, v in sorted(gen_args.items()) if k != "shape")
    stem = f"bench-{shape}-{params}-s{seed}"
    path = os.path.join(CACHE, f"{stem}-{captures.version_hash(shape)}.pcap")
    side = path + ".json"
    if not (os.path.exists(path) and os.path.exists(side)):
        for old in glob.glob(os.path.join(CACHE, stem + "-*.pcap*")):  # made by an older generator
            os.unlink(old)
        log(f"[{name}] generating {os.path.relpath(path, REPO)} ...")
        t0 = time.perf_counter()
        tmp = path + ".tmp"
        captures.make(shape, tmp, gen_args.get("flows"), gen_args.get("seconds"), seed)
        os.replace(tmp, path)
        os.replace(tmp + ".json", side)  # the sidecar last: its presence means the capture is whole
        log(f"[{name}] generated in {time.perf_counter() - t0:.1f} s")
    with open(side) as f:
        return path, json.load(f)


def warm(path):
    """Read the file once so that every tool, the first one included, finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


# ---------------------------------------------------------------------------- NetFlow v9 sink

class Sink:
    """UDP socket on 127.0.0.1; a thread only drains it, and not while a tool runs (hold()): the
    kernel queues the datagrams (128 MiB) so that the collector's work costs the tool measured
    no CPU, as a collector on another machine would not.  They are tallied after each run."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # SO_RCVBUFFORCE (33 on Linux; the socket module does not name it) passes net.core.rmem_max
        # when we may (CAP_NET_ADMIN): exporters flush up to ~40k datagrams in a burst at EOF,
        # several times what the default limit holds if this thread is descheduled for a moment
        force = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)
        for opt in (force, socket.SO_RCVBUF):
            if opt is None:
                continue
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 128 << 20)
                break
            except OSError:
                continue
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.lock = threading.Lock()
        self.datagrams = []
        self.last = time.monotonic()
        self.draining = threading.Event()
        self.draining.set()
        threading.Thread(target=self._drain, daemon=True).start()

    def hold(self):
        """Leave what arrives in the socket's queue until take()."""
        self.draining.clear()

    def _drain(self):
        recv = self.sock.recv
        while True:
            self.draining.wait()
            d = recv(65535)
            with self.lock:
                self.datagrams.append(d)
                self.last = time.monotonic()

    def take(self, quiet=0.1, limit=10.0):
        """Wait until nothing arrived for `quiet` seconds, then return and reset what came in."""
        self.draining.set()
        t0 = time.monotonic()
        while time.monotonic() < t0 + limit:
            with self.lock:
                if time.monotonic() - max(self.last, t0) >= quiet:
                    break
            time.sleep(0.01)
        with self.lock:
            d, self.datagrams = self.datagrams, []
        return d

    def drops(self):
        """The kernel's drop counter for this socket (/proc/net/udp), None if unreadable."""
        want = "0100007F:%04X" % self.port
        try:
            with open("/proc/net/udp") as f:
                for line in f:
                    cols = line.split()
                    if len(cols) > 12 and cols[1] == want:
                        return int(cols[-1])
        except (OSError, ValueError):
            pass
        return None


_FMT = {1: "B", 2: "H", 4: "I", 8: "Q"}


def tally_v9(datagrams):
    """Data records, and the IN_PKTS (2) / IN_BYTES (1) they carry, in NetFlow v9 datagrams."""
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
                    fmt, pos, which = "!", 0, []
                    for _ in range(fc):
                        t, ln = struct.unpack_from("!HH", d, p)
                        p += 4
                        if t in (1, 2) and ln in _FMT:
                            fmt += _FMT[ln]
                            which.append(t)
                        else:
                            fmt += f"{ln}x"
                        pos += ln
                    if pos:
                        templates[tid] = (pos, struct.Struct(fmt), which.index(2) if 2 in which else None,
                                          which.index(1) if 1 in which else None)
            elif fsid >= 256 and fsid in templates:
                rl, st, ip, ib = templates[fsid]
                n = (end - p) // rl
                recs += n
                if n and (ip is not None or ib is not None):
                    for r in st.iter_unpack(d[p:p + n * rl]):
                        if ip is not None:
                            pkts += r[ip]
                        if ib is not None:
                            octs += r[ib]
            off += flen
    return {"records": recs, "packets": pkts, "octets": octs, "datagrams": len(datagrams)}


NFPCAPD_IDENT = re.compile(r"Ident: '[^']*' Flows: (\d+), Packets: (\d+), Bytes: (\d+)")


def tally_nfpcapd(stderr_text):
    """nfpcapd prints one 'Ident: ... Flows: F, Packets: P, Bytes: B' line per file it closes."""
    recs = pkts = octs = 0
    for m in NFPCAPD_IDENT.finditer(stderr_text):
        recs += int(m.group(1))
        pkts += int(m.group(2))
        octs += int(m.group(3))
    return {"records": recs, "packets": pkts, "octets": octs}


# ---------------------------------------------------------------------------- runs

def run_timed(cmd, tmpd):
    """(wall seconds, peak RSS MiB, CPU seconds, exit status, stdout, stderr) of one command."""
    tfile = os.path.join(tmpd, "time.out")
    outp, errp = os.path.join(tmpd, "stdout"), os.path.join(tmpd, "stderr")
    full = [GNU_TIME, "-f", "%e %M %U %S", "-o", tfile] + cmd
    with open(outp, "wb") as out, open(errp, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        # a blocking wait (Popen.wait with a timeout polls, adding up to 50 ms); a timer kills a hung run
        timer = threading.Timer(RUN_TIMEOUT, os.killpg, (p.pid, signal.SIGKILL))
        timer.start()
        try:
            rc = p.wait()
        finally:
            timer.cancel()
        dt = time.perf_counter() - t0
    rss = cpu = float("nan")
    try:
        with open(tfile) as f:
            lines = f.read().strip().splitlines()
        _, m, u, s = lines[-1].split()  # GNU time puts "Command exited with non-zero status N" first
        rss, cpu = int(m) / 1024.0, float(u) + float(s)
    except (OSError, ValueError, IndexError):
        pass
    with open(outp, errors="replace") as f:
        so = f.read()
    with open(errp, errors="replace") as f:
        se = f.read()
    return dt, rss, cpu, rc, so, se


class Tool:
    def __init__(self, label, kind, cmd, expect_records=True, role=None):
        self.label = label
        self.kind = kind  # "v9" (to the sink), "nfpcapd" or "floor"
        self.cmd = cmd  # function (path, port, tmpd) -> argv
        self.expect_records = expect_records  # False: records are informational (flows may be split)
        self.role = role  # key for the ratios
        self.times, self.rss, self.cpu = [], [], []
        self.records, self.packets, self.fails, self.lost_runs, self.drops = [], [], [], 0, 0


def venv_python():
    py = os.path.join(REPO, ".venv", "bin", "python")
    return py if os.path.exists(py) else sys.executable


def pyprobe_exe():
    exe = os.path.join(REPO, ".venv", "bin", "pyprobe")
    return [exe] if os.path.exists(exe) else [venv_python(), "-m", "pyprobe"]


def make_tools(cfg, quick_flows):
    m = cfg["m"]
    have_sfd = shutil.which("softflowd") is not None
    have_nfp = shutil.which("nfpcapd") is not None

    def pyprobe(*extra):
        return lambda path, port, tmpd: pyprobe_exe() + ["-r", path, "-n", f"127.0.0.1:{port}", "-v", "9",
                                                          "-q", *extra]

    def softflowd(*extra):
        # -c none: with a control socket, softflowd 1.1.0 in -r mode tests the revents of a pollfd
        # array it never polled and can block in accept() for ever
        return lambda path, port, tmpd: ["softflowd", "-r", path, "-n", f"127.0.0.1:{port}", "-v", "9", "-d",
                                         "-c", "none", "-p", os.path.join(tmpd, "softflowd.pid"), *extra]

    tools = [Tool(f"pyprobe -m {m}", "v9", pyprobe("-m", str(m)), role="pp")]
    if have_sfd:
        tools.append(Tool(f"softflowd -m {m}", "v9", softflowd("-m", str(m)), role="sfd"))
    if cfg["default_m"]:
        tools.append(Tool(f"pyprobe (default -m {PYPROBE_DEFAULT_M})", "v9", pyprobe(),
                          expect_records=False, role="pp_def"))
        if have_sfd:
            tools.append(Tool(f"softflowd (default -m {SOFTFLOWD_DEFAULT_M})", "v9", softflowd(),
                              expect_records=False, role="sfd_def"))
    if cfg["concurrent"]:
        c = cfg["concurrent"] if not quick_flows else quick_flows + quick_flows // 10
        tools.append(Tool(f"pyprobe -m {c}, 1 h timeouts", "v9", pyprobe("-m", str(c), *LONG_PYPROBE),
                          role="pp_conc"))
        if have_sfd:
            tools.append(Tool(f"softflowd -m {c}, 1 h timeouts", "v9", softflowd("-m", str(c), *LONG_SOFTFLOWD),
                              role="sfd_conc"))
    if have_nfp:
        def nfpcapd(path, port, tmpd):
            out = os.path.join(tmpd, "nfpcapd")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            return ["nfpcapd", "-r", path, "-w", out, "-e", NFPCAPD_E]
        # nfpcapd reports every ICMP packet as a flow of its own: records are informational
        tools.append(Tool(f"nfpcapd -e {NFPCAPD_E}", "nfpcapd", nfpcapd, expect_records=False, role="nfp"))
    floor = floor_program()
    if floor:
        tools.append(Tool("libpcap read floor (C)", "floor", lambda path, port, tmpd: [floor, path], role="floor"))
    missing = [n for n, ok in (("softflowd", have_sfd), ("nfpcapd", have_nfp)) if not ok]
    return tools, missing


def bench_capture(name, cfg, path, exp, runs, sink, quick):
    tools, missing = make_tools(cfg, exp["flows"] if quick else None)
    conc_m = next((t.label.split()[2].rstrip(",") for t in tools if t.role == "pp_conc"), None)
    for mname in missing:
        log(f"[{name}] {mname} not found: skipped")
    tmpd = tempfile.mkdtemp(prefix=f"pyprobe-bench-{name}-")
    warm(path)
    try:
        for rnd in range(runs):
            for t in tools:
                sink.take(quiet=0.02, limit=1.0)  # anything late from the previous run
                d0 = sink.drops() if t.kind == "v9" else None
                sink.hold()
                dt, rss, cpu, rc, so, se = run_timed(t.cmd(path, sink.port, tmpd), tmpd)
                if t.kind == "v9":
                    tot = tally_v9(sink.take())
                    d1 = sink.drops()
                    if d0 is not None and d1 is not None:
                        t.drops += d1 - d0
                elif t.kind == "nfpcapd":
                    tot = tally_nfpcapd(se)
                    shutil.rmtree(os.path.join(tmpd, "nfpcapd"), ignore_errors=True)
                else:
                    try:
                        tot = {"records": None, "packets": int(so.split()[-1])}
                    except (ValueError, IndexError):
                        tot = {"records": None, "packets": None}
                t.times.append(dt)
                t.rss.append(rss)
                t.cpu.append(cpu)
                t.records.append(tot["records"])
                t.packets.append(tot["packets"])
                if rc != 0:
                    t.fails.append(f"run {rnd + 1}: exit status {rc}: " + " | ".join(se.strip().splitlines()[-3:]))
                if tot["packets"] != exp["packets"] or (t.expect_records and tot["records"] is not None
                                                        and tot["records"] != exp["flows"]):
                    t.lost_runs += 1
            log(f"[{name}] round {rnd + 1}/{runs}: " + ", ".join(f"{t.label.split()[0]} {t.times[-1]:.2f}s" for t in tools))
    finally:
        shutil.rmtree(tmpd, ignore_errors=True)
    return tools, conc_m


# ---------------------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt_int(n):
    return f"{n:,.0f}" if n == n else "-"


def check_text(t, exp):
    """Short sanity verdict for the table: records received against the flows generated."""
    if t.fails:
        return "FAILED"
    recs = sorted({r for r in t.records if r is not None})
    pkts = sorted({p for p in t.packets if p is not None})
    if t.kind == "floor":
        return "ok" if pkts == [exp["packets"]] else f"read {'/'.join(map(str, pkts))} packets"
    words = []
    if pkts != [exp["packets"]]:
        words.append(f"packets {'/'.join(map(str, pkts))} != {exp['packets']}")
    if t.drops:
        words.append(f"{t.drops} datagrams dropped at the sink")
    if recs == [exp["flows"]]:
        words.insert(0, "ok")
    elif t.expect_records:
        words.insert(0, f"records {'/'.join(map(str, recs))} != {exp['flows']} flows")
    else:
        words.insert(0, f"{'/'.join(map(str, recs))} records (informational)" + (", packets ok" if not words else ""))
    return ", ".join(words)


def summarize(name, cfg, path, exp, tools, runs, conc_m):
    npk = exp["packets"]
    rows = []
    for t in tools:
        sec = med(t.times)
        rows.append({"tool": t.label, "seconds": sec, "pps": npk / sec if sec > 0 else float("nan"),
                     "rss": med(t.rss), "cpu": med(t.cpu),
                     "records": med([r for r in t.records if r is not None]) if t.kind != "floor" else None,
                     "check": check_text(t, exp), "role": t.role})
    by = {r["role"]: r for r in rows}
    ratios = []

    def ratio(label, a, b, key, invert=False):
        if a in by and b in by:
            x, y = by[a][key], by[b][key]
            v = (y / x) if invert else (x / y)
            if v == v:
                ratios.append((label, v))

    ratio(f"pyprobe / softflowd, packets/s (-m {cfg['m']})", "pp", "sfd", "pps")
    if cfg["default_m"]:
        ratio("pyprobe / softflowd, packets/s (both at default -m)", "pp_def", "sfd_def", "pps")
    ratio("pyprobe / libpcap read floor (C), time", "pp", "floor", "seconds")
    ratio(f"pyprobe RSS / softflowd RSS (-m {cfg['m']})", "pp", "sfd", "rss")
    conc = None
    if "pp_conc" in by:
        conc = {"flows": exp["flows"], "m": conc_m, "pp": by["pp_conc"], "sfd": by.get("sfd_conc")}
    return {"name": name, "what": cfg["what"], "path": os.path.relpath(path, REPO), "exp": exp,
            "size_mib": os.path.getsize(path) / 2**20, "runs": runs, "rows": rows, "ratios": ratios,
            "conc": conc, "issues": [(t.label, f) for t in tools for f in t.fails]
            + [(t.label, f"{t.lost_runs} of {len(t.times)} runs with totals off: {check_text(t, exp)}")
               for t in tools if t.lost_runs and not t.fails]}


def conc_text(c):
    pp, sfd = c["pp"], c["sfd"]
    s = (f"peak RSS with {c['flows']:,} concurrent flows (flood, every flow alive until EOF, "
         f"-m {c['m']}, 1 h timeouts): pyprobe {pp['rss']:.0f} MiB ({pp['seconds']:.2f} s)")
    if sfd:
        s += (f", softflowd {sfd['rss']:.0f} MiB ({sfd['seconds']:.2f} s); "
              f"pyprobe / softflowd RSS {pp['rss'] / sfd['rss']:.2f}x")
        s += f"; RSS / flows: pyprobe {pp['rss'] * 2**20 / c['flows']:.0f} B, softflowd {sfd['rss'] * 2**20 / c['flows']:.0f} B"
    return s


def print_text(res):
    for r in res:
        e = r["exp"]
        print()
        print(f"== {r['name']}: {r['what']}")
        print(f"   {r['path']}: {e['packets']:,} packets, {e['flows']:,} flows, {r['size_mib']:.0f} MiB; "
              f"median of {r['runs']} runs")
        hdr = f"{'tool':<38} {'seconds':>8} {'packets/s':>11} {'peak RSS MiB':>13} {'CPU s':>7} {'records':>9}  check"
        print(hdr)
        print("-" * (len(hdr) + 10))
        for x in r["rows"]:
            recs = fmt_int(x["records"]) if x["records"] is not None else "-"
            print(f"{x['tool']:<38} {x['seconds']:>8.3f} {fmt_int(x['pps']):>11} {x['rss']:>13.1f} "
                  f"{x['cpu']:>7.2f} {recs:>9}  {x['check']}")
        for label, v in r["ratios"]:
            print(f"  {label:<55} {v:6.2f}x")
        if r["conc"]:
            print("  " + conc_text(r["conc"]))
    issues = [(r["name"], t, f) for r in res for t, f in r["issues"]]
    print()
    if issues:
        print("PROBLEMS:")
        for n, t, f in issues:
            print(f"  - {n}: {t}: {f}")
    else:
        print("sanity: every run of every tool saw all packets; exporters' records reached the sink in full")


def versions():
    v = {}
    for key, cmd in (("pyprobe", pyprobe_exe() + ["--version"]), ("nfpcapd", ["nfpcapd", "-V"]),
                     ("softflowd", ["softflowd", "-h"])):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out = (p.stdout + p.stderr)
            m = re.search(r"(\d+\.\d+(\.\d+)?)", out)
            v[key] = m.group(1) if m else "?"
        except (OSError, subprocess.TimeoutExpired):
            v[key] = "not found"
    try:
        p = subprocess.run([venv_python(), "-c", "import importlib.metadata as m; print(m.version('pcapy-ng'))"],
                           capture_output=True, text=True, timeout=10)
        v["pcapy-ng"] = p.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        v["pcapy-ng"] = "?"
    return v


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


STARTUP_RUNS = 21
SMALL_CAPTURE = os.path.join(REPO, "pcaps", "android.pcap")


def startup_times():
    """Median wall seconds of a whole small run (`pyprobe -r pcaps/android.pcap -q`, 500 packets)
    and of the same venv's `python -c pass`, alternating."""
    commands = {"pyprobe": pyprobe_exe() + ["-r", SMALL_CAPTURE, "-q"], "python": [venv_python(), "-c", "pass"]}
    times = {name: [] for name in commands}
    for _ in range(STARTUP_RUNS):
        for name, cmd in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    return {name: med(ts) for name, ts in times.items()}


# Several monitors ([[monitor]]): three records of the mix in one run against three runs of one.
MONITOR_RECORDS = """
[[record]]
name = "prefixes"
match = ["sourceIPv4Address/24", "destinationIPv4Address/24", "protocolIdentifier"]
collect = ["packetDeltaCount", "octetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds"]
"""
MONITORS = (("security", "full"), ("matrix", "prefixes"), ("hosts", "ip"))


def monitor_times(path, sink, runs, tmpd, m=1_000_000):
    """Median wall seconds of one run with MONITORS and of the three runs of one each
    (summed per round), alternating; v9 to the sink, every monitor at -m m."""
    records = os.path.join(tmpd, "records.toml")
    monitors = os.path.join(tmpd, "monitors.toml")
    with open(records, "w") as f:
        f.write(MONITOR_RECORDS)
    with open(monitors, "w") as f:
        f.write(MONITOR_RECORDS + "".join(f'\n[[monitor]]\nname = "{name}"\nrecord = "{record}"\nmax_flows = {m}\n'
                                          for name, record in MONITORS))
    base = pyprobe_exe() + ["-r", path, "-n", f"127.0.0.1:{sink.port}", "-v", "9", "-q"]

    def timed(cmd):
        sink.hold()
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        seconds = time.perf_counter() - t0
        sink.take()
        return seconds
    together, apart = [], []
    for _ in range(runs):
        together.append(timed(base + ["-f", monitors]))
        apart.append(sum(timed(base + ["-f", records, "-T", record, "-m", str(m)]) for _, record in MONITORS))
    return {"together": med(together), "apart": med(apart)}


def monitors_text(times):
    names = ", ".join(f"{name} (-T {record})" for name, record in MONITORS)
    return (f"Three monitors of the mix, {names}: one run {times['together']:.2f} s, three runs of one "
            f"{times['apart']:.2f} s; one run / three runs **{times['together'] / times['apart']:.2f}x** "
            f"(the packets are read and decoded once)")


def startup_text(start):
    return (f"`pyprobe -r pcaps/android.pcap -q` (500 packets, whole run) {start['pyprobe'] * 1000:.0f} ms; "
            f"`python -c pass` {start['python'] * 1000:.0f} ms (medians of {STARTUP_RUNS})")


def write_markdown(res, a, vers, path, start, monitors=None):
    L = []
    L.append("# pyprobe benchmark")
    L.append("")
    L.append(f"`{' '.join(['bench/run_bench.py'] + sys.argv[1:])}` on {datetime.date.today()}: "
             f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}; "
             f"pyprobe {vers['pyprobe']}, softflowd {vers['softflowd']}, nfpcapd (nfdump) {vers['nfpcapd']}, "
             f"pcapy-ng {vers['pcapy-ng']}. Median of {a.runs} runs per tool, tools alternating run by run; "
             f"seconds are wall time of the whole program, packets/s = capture packets / seconds, "
             f"peak RSS = the process's ru_maxrss (GNU time %M). pyprobe and softflowd export NetFlow v9 "
             f"over UDP to a local sink that counts the records (it queues them while the tool runs and drains them after, so it takes no CPU from the tool); nfpcapd writes nfcapd files; the floor "
             f"is `bench/pcap_read.c`, a C `pcap_next_ex` loop that reads the file and nothing else.")
    L.append("")
    for r in res:
        e = r["exp"]
        L.append(f"## {r['name']}: {e['packets']:,} packets, {e['flows']:,} flows ({r['size_mib']:.0f} MiB)")
        L.append("")
        L.append(r["what"][0].upper() + r["what"][1:] + ".")
        L.append("")
        L.append("| tool | seconds | packets/s | peak RSS MiB | CPU s | records |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for x in r["rows"]:
            recs = fmt_int(x["records"]) if x["records"] is not None else "-"
            if not x["check"].startswith("ok") and "informational" not in x["check"] and x["records"] is not None:
                recs += " (!)"
            L.append(f"| `{x['tool']}` | {x['seconds']:.2f} | {fmt_int(x['pps'])} | {x['rss']:.0f} | "
                     f"{x['cpu']:.2f} | {recs} |")
        L.append("")
        for label, v in r["ratios"]:
            L.append(f"- {label}: **{v:.2f}x**")
        if r["conc"]:
            L.append("- " + conc_text(r["conc"]))
        L.append("")
    notes = ["Records: received at the sink (pyprobe, softflowd) or reported by nfpcapd; every flow of "
             "the captures has its own key and no gap longer than 10 s, so a tool that force-expires "
             "nothing reports exactly the generated flows. At the default -m, softflowd (8192) "
             "splits flows when its table fills; nfpcapd reports every ICMP packet as a flow of its own.",
             "nfpcapd runs a packet thread and a flow thread (and preallocates its node cache), so it "
             "can use more than one core (CPU s = user + system time); so can pyprobe, whose reader "
             "thread parses the capture while its main thread meters and exports; softflowd is "
             "single-threaded.",
             "The floor is libpcap's own read loop in C (pcap_next_ex): what any libpcap-based probe "
             "pays before it does any work. pyprobe reads captures itself (memory-mapped, no packet "
             "copied), so on big packets it can be faster than the floor.",
             "The machine is shared: other jobs can slow single runs; the medians damp that."]
    issues = [(r["name"], t, f) for r in res for t, f in r["issues"]]
    if issues:
        notes.append("Problems in this run: " + "; ".join(f"{n}: {t}: {f}" for n, t, f in issues))
    for n in notes:
        L.append("- " + n)
    L.append("")
    L.append("## Start-up")
    L.append("")
    L.append(startup_text(start) + ".")
    L.append("")
    if monitors:
        L.append("## Several monitors")
        L.append("")
        L.append(monitors_text(monitors) + ".")
        L.append("")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L))
    os.replace(tmp, path)


def main():
    a = parse_args()
    if not os.access(GNU_TIME, os.X_OK):
        log(f"{GNU_TIME} not found: it measures peak RSS; install GNU time")
        return 2
    t_start = time.perf_counter()
    caps = {}
    for name in a.names:
        cfg = CAPTURES[name]
        gen_args = dict(cfg["gen"])
        if a.quick:
            gen_args.update(QUICK[name])
        caps[name] = ensure_capture(name, gen_args, a.seed)
    sink = Sink()
    log(f"sink: 127.0.0.1:{sink.port}, receive buffer {sink.rcvbuf >> 20} MiB"
        + ("" if sink.rcvbuf >= 64 << 20 else " (small: records may be lost in bursts; see the drop counts)"))
    res = []
    for name in a.names:
        path, exp = caps[name]
        cfg = CAPTURES[name]
        log(f"[{name}] {exp['packets']:,} packets, {exp['flows']:,} flows: {a.runs} rounds")
        t0 = time.perf_counter()
        tools, conc_m = bench_capture(name, cfg, path, exp, a.runs, sink, a.quick)
        log(f"[{name}] {time.perf_counter() - t0:.0f} s")
        res.append(summarize(name, cfg, path, exp, tools, a.runs, conc_m))
    start = startup_times()
    log("startup: " + startup_text(start))
    monitors = None
    if "mix" in caps:
        with tempfile.TemporaryDirectory() as tmpd:
            monitors = monitor_times(caps["mix"][0], sink, a.runs, tmpd)
        log("monitors: " + monitors_text(monitors))
    print_text(res)
    write_markdown(res, a, versions(), a.results, start, monitors)
    print(f"\nMarkdown: {os.path.relpath(a.results, os.getcwd())}; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
