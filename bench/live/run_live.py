#!/usr/bin/env python3
"""Live-capture loss benchmark: the highest replay rate each probe takes with no packet lost.

    .venv/bin/python bench/live/run_live.py                  # everything (~4-6 min), needs root
    .venv/bin/python bench/live/run_live.py --quick          # small capture, three rates (< 1 min)
    .venv/bin/python bench/live/run_live.py --captures small --tools softflowd --rates 200000,400000,top

Two network namespaces A and B joined by a veth pair (no addresses, IPv6 off, MTU 1600 so the
802.1Q-tagged full-size frames of the capture fit).  For every capture, tool and rate, in order:
  * a NetFlow v9 sink (this script with --sink) listens on 127.0.0.1:2055 inside A;
  * the probe starts in A, capturing on A's end of the veth:
        pyprobe -i vA -n 127.0.0.1:2055                 (1 worker)
        pyprobe -i vA -n 127.0.0.1:2055 --workers 2     (PACKET_FANOUT, two processes)
        softflowd -i vA -n 127.0.0.1:2055 -v 9 -d -m 65536 -c CTL -p PIDFILE
    every one with the libpcap default capture buffer unless --buffer is given (-B for all);
  * `tcpreplay -i vB -K --no-flow-stats --pps=RATE FILE` (or --topspeed) runs in B: every packet
    of the capture crosses the veth once;
  * then 5,000 non-IP frames (ethertype 0x88b5, 20k/s): they retire libpcap's last, partly
    filled TPACKET_V3 ring block, which a capture opened with no timeout (softflowd's) would
    otherwise hold back, making its last few hundred packets look unmetered; every probe counts
    them as ignored, so they change no packets-metered count (they are in "pcap received");
  * after a short drain, the probe's own counters are read and it is stopped:
        pyprobe (SIGTERM) prints libpcap's "received, D dropped, I dropped by the interface" at
        exit (with --workers 2 one summary per worker: summed), and its "packets metered";
        softflowd prints nothing at exit, so it is asked over its control socket
        (`softflowctl -c CTL statistics`: "Packets dropped by libpcap", "... by interface",
        "Packets processed"), then `softflowctl -c CTL shutdown` stops it (SIGTERM would exit
        without exporting the flows) -- hence -c CTL, not -c none;
  * loss at a step = pcap drops (D + I) > 0, or packets metered != tcpreplay's "Actual: N packets"
    (the second signal: it also catches packets lost before libpcap sees them, e.g. the kernel's
    backlog queue).  A tool's series stops at its first lossy step.
The packets the sink counts in the exported v9 records are shown too (informational: they test
the export path, not the capture).

Captures (bench/captures.py: `pyprobe generate --pcap` with bench/profiles/mix.toml, seeded,
generated into a temporary directory):
  mix    50k flows ending within 60 s, full-size frames (the payload zeros);
  small  the same packets cut to 128-byte frames (--snaplen 128): headers only, so more packets
         per second for the same copying; the IP header still states the original length.

Writes the tables as Markdown to bench/live/results.md (--quick and partial runs write
bench/live/results-partial.md).  A measurement, not a test: nothing asserts on rates.  The
namespaces are removed on exit, also on Ctrl-C or SIGTERM.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

LIVE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(LIVE))
sys.path.insert(0, os.path.dirname(LIVE))
import captures  # noqa: E402  (bench/captures.py: pyprobe generate --pcap)
PYPROBE = shutil.which("pyprobe", path=os.path.dirname(sys.executable)) or shutil.which("pyprobe")
SINK_PORT = 2055
MTU = 1600
START_WAIT = 2.0   # seconds from a probe's start to the first packet (capture open)
DRAIN_WAIT = 1.5   # seconds after tcpreplay ends before the counters are read
FILLER_FRAMES, FILLER_PPS = 5000, 20000   # non-IP frames sent after every replay (see run_step)

CAPTURES = {
    "mix": {"flows": 50_000, "seconds": 60, "snaplen": MTU - 4,
            "what": "the edge-link mix, full-size frames"},
    "small": {"flows": 50_000, "seconds": 60, "snaplen": 128,
              "what": "the same mix cut to 128-byte frames (headers only)"},
}
QUICK = {"flows": 5_000}
TOOLS = ("pyprobe", "pyprobe-w2", "softflowd")
TOOL_LABEL = {"pyprobe": "pyprobe (1 worker)", "pyprobe-w2": "pyprobe --workers 2",
              "softflowd": "softflowd"}
DEFAULT_RATES = "50000,100000,200000,400000,800000,top"
QUICK_RATES = "100000,400000,top"


class Interrupted(Exception):
    pass


def on_sigterm(signum, frame):
    raise Interrupted(f"signal {signum}")


def sh(*args, check=True, timeout=30):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def fmt_int(n):
    return "-" if n is None else f"{n:,}"


def fmt_rate(r):
    return "topspeed" if r == "top" else f"{int(r):,} pps"


# ---------------------------------------------------------------------------------------------
# the NetFlow v9 sink (run inside namespace A as `run_live.py --sink PORT`)

def sink_main(port):
    """Count v9 datagrams, data records and the packets (IN_PKTS, type 2) they carry; print one
    JSON line when stopped by SIGTERM."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)      # SO_RCVBUFFORCE (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.1)
    print("ready", flush=True)
    templates = {}      # (peer, source id, template id) -> [(type, length)]
    counts = {"datagrams": 0, "records": 0, "packets": 0, "unknown_template_sets": 0}
    while True:
        try:
            data, peer = sock.recvfrom(65535)
        except InterruptedError:
            continue
        except socket.timeout:
            if stop:       # stopped after the exporter exited: everything queued has been read
                break
            continue
        counts["datagrams"] += 1
        if len(data) < 20 or struct.unpack_from("!H", data)[0] != 9:
            continue
        source_id = struct.unpack_from("!I", data, 16)[0]
        off = 20
        while off + 4 <= len(data):
            set_id, set_len = struct.unpack_from("!HH", data, off)
            if set_len < 4:
                break
            body, end = off + 4, min(off + set_len, len(data))
            if set_id == 0:                                   # templates
                p = body
                while p + 4 <= end:
                    tid, nfields = struct.unpack_from("!HH", data, p)
                    p += 4
                    fields = [struct.unpack_from("!HH", data, p + 4 * i) for i in range(nfields)]
                    p += 4 * nfields
                    templates[(peer, source_id, tid)] = fields
            elif set_id >= 256:                               # data
                fields = templates.get((peer, source_id, set_id))
                if fields is None:
                    counts["unknown_template_sets"] += 1
                else:
                    size = sum(length for _, length in fields)
                    p = body
                    while size and p + size <= end:
                        q = p
                        for ftype, length in fields:
                            if ftype == 2:
                                counts["packets"] += int.from_bytes(data[q:q + length], "big")
                            q += length
                        counts["records"] += 1
                        p += size
            off += set_len
    with open("/proc/net/snmp") as f:      # this namespace's UDP receive-buffer overflows
        udp = [line.split() for line in f if line.startswith("Udp:")]
    counts["udp_rcvbuf_errors"] = int(dict(zip(udp[0], udp[1])).get("RcvbufErrors", 0))
    print(json.dumps(counts), flush=True)


# ---------------------------------------------------------------------------------------------
# the hosts

class Hosts:
    """Namespaces A and B, veth vA (in A) <-> vB (in B); every process started here is tracked
    so that close() can stop what is still running before the namespaces go."""

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.a, self.b = f"plA{tag}", f"plB{tag}"
        self.if_a, self.if_b = f"lva{tag}", f"lvb{tag}"
        self.procs = []
        self.made = []
        for ns in (self.a, self.b):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
        sh("ip", "link", "add", self.if_a, "netns", self.a, "type", "veth", "peer", "name", self.if_b,
           "netns", self.b)
        for ns, ifname in ((self.a, self.if_a), (self.b, self.if_b)):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", ifname, "mtu", str(MTU))
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def start(self, ns, *args, **kwargs):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *args], **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, ns, *args, timeout=600):
        return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                              timeout=timeout)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.terminate()
                    proc.wait(timeout=15)
                except (subprocess.TimeoutExpired, OSError):
                    proc.kill()
                    proc.wait(timeout=5)
        for ns in self.made:
            sh("ip", "netns", "del", ns, check=False)


def stop(proc, timeout=60):
    """SIGTERM, then its output (once: a second call returns nothing)."""
    if getattr(proc, "collected", False):
        return "", ""
    proc.collected = True
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    return out or "", err or ""


# ---------------------------------------------------------------------------------------------
# one step: one tool at one rate

def parse_tcpreplay(text):
    sent = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", text)
    rated = re.search(r"Rated: .*?([\d.]+) pps", text)
    failed = re.search(r"Failed packets:\s+(\d+)", text)
    if not sent:
        raise RuntimeError("tcpreplay printed no 'Actual:' line:\n" + text[-2000:])
    return {"sent": int(sent.group(1)), "seconds": float(sent.group(2)),
            "pps": float(rated.group(1)) if rated else None,
            "failed": int(failed.group(1)) if failed else 0}


def parse_pyprobe(err):
    pcap = re.findall(r"libpcap\s+(\d+) received, (\d+) dropped, (\d+) dropped by the interface", err)
    metered = re.findall(r"packets metered\s+(\d+)", err)
    if not pcap or not metered:
        raise RuntimeError("pyprobe printed no statistics:\n" + err[-2000:])
    return {"received": sum(int(r) for r, _, _ in pcap), "dropped": sum(int(d) for _, d, _ in pcap),
            "if_dropped": sum(int(i) for _, _, i in pcap), "metered": sum(int(m) for m in metered),
            "summaries": len(pcap)}


def parse_softflowd(text):
    def num(label):
        m = re.search(label + r":\s+(\d+)", text)
        if not m:
            raise RuntimeError(f"softflowctl statistics without '{label}':\n" + text[-2000:])
        return int(m.group(1))
    return {"received": num("Packets received by libpcap"), "dropped": num("Packets dropped by libpcap"),
            "if_dropped": num("Packets dropped by interface"), "metered": num("Packets processed"),
            "summaries": 1}


def run_step(hosts, tmp, tool, rate, capture, args):
    sink = hosts.start(hosts.a, sys.executable, os.path.abspath(__file__), "--sink", str(SINK_PORT),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if sink.stdout.readline().strip() != "ready":
        raise RuntimeError("the v9 sink did not start: " + stop(sink)[1])
    buffer = ["-B", str(args.buffer)] if args.buffer else []
    ctl = os.path.join(tmp, "softflowd.ctl")
    if tool == "softflowd":
        if os.path.exists(ctl):
            os.unlink(ctl)
        cmd = ["softflowd", "-i", hosts.if_a, "-n", f"127.0.0.1:{SINK_PORT}", "-v", "9", "-d",
               "-m", "65536", "-c", ctl, "-p", os.path.join(tmp, "softflowd.pid"), *buffer]
    else:
        cmd = [PYPROBE, "-i", hosts.if_a, "-n", f"127.0.0.1:{SINK_PORT}", *buffer]
        if tool == "pyprobe-w2":
            cmd += ["--workers", "2"]
    probe = hosts.start(hosts.a, *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        time.sleep(START_WAIT)
        if tool == "softflowd":
            while not os.path.exists(ctl) and time.time() < deadline:
                time.sleep(0.1)
        if probe.poll() is not None:
            raise RuntimeError(f"{tool} exited early: " + stop(probe)[1][-2000:])
        speed = ["--topspeed"] if rate == "top" else [f"--pps={rate}"]
        limit = [f"--limit={args.limit}"] if args.limit else []
        replay = hosts.run(hosts.b, "tcpreplay", "-i", hosts.if_b, "-K", "--no-flow-stats", *speed,
                           *limit, capture["file"])
        if replay.returncode != 0:
            raise RuntimeError("tcpreplay failed:\n" + (replay.stdout + replay.stderr)[-2000:])
        result = parse_tcpreplay(replay.stdout + replay.stderr)
        # non-IP frames after the capture retire libpcap's last, partly filled ring block: a
        # capture opened with no timeout (softflowd's) sees its packets only when the block is
        # full, so without them its last few hundred packets look unmetered
        filler = hosts.run(hosts.b, "tcpreplay", "-i", hosts.if_b, f"--pps={FILLER_PPS}", capture["filler"])
        if filler.returncode != 0:
            raise RuntimeError("tcpreplay (filler) failed:\n" + (filler.stdout + filler.stderr)[-2000:])
        time.sleep(DRAIN_WAIT)
        if tool == "softflowd":
            st = sh("softflowctl", "-c", ctl, "statistics")
            counters = parse_softflowd(st.stdout + st.stderr)
            sh("softflowctl", "-c", ctl, "shutdown", check=False)   # SIGTERM would export nothing
            try:
                probe.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            stop(probe)
        else:
            _, err = stop(probe)
            if probe.returncode != 0:
                raise RuntimeError(f"pyprobe exited {probe.returncode}:\n" + err[-2000:])
            counters = parse_pyprobe(err)
    finally:
        stop(probe)
        out, _ = stop(sink)
    result.update(counters)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    sink_counts = json.loads(lines[-1]) if lines else {}
    result["exported"] = sink_counts.get("packets")
    result["sink_overflows"] = sink_counts.get("udp_rcvbuf_errors", 0)
    result["lost"] = result["dropped"] + result["if_dropped"] > 0 or result["metered"] != result["sent"]
    return result


# ---------------------------------------------------------------------------------------------
# report

def tool_versions():
    versions = {"pyprobe": sh(PYPROBE, "--version", check=False).stdout.strip()}
    sfd = sh("softflowd", "-h", check=False)
    m = re.search(r"softflowd version (\d+(?:\.\d+)*)", sfd.stdout + sfd.stderr)
    versions["softflowd"] = f"softflowd {m.group(1)}" if m else "softflowd"
    tr = sh("tcpreplay", "--version", check=False)
    m = re.search(r"tcpreplay version: (\d+(?:\.\d+)*)", tr.stdout + tr.stderr)
    versions["tcpreplay"] = f"tcpreplay {m.group(1)}" if m else "tcpreplay"
    return versions


def summary_rows(series):
    rows = []
    for (cap, tool), steps in series.items():
        clean = [s for s in steps if "error" not in s and not s["lost"]]
        bad = next((s for s in steps if "error" in s or s["lost"]), None)
        best = clean[-1] if clean else None
        if bad is None:
            nxt, drops, unmetered = "none lost (series ended)", "-", "-"
        elif "error" in bad:
            nxt, drops, unmetered = f"{fmt_rate(bad['rate'])}: error", "-", "-"
        else:
            nxt = f"{fmt_rate(bad['rate'])} ({fmt_int(round(bad['pps'] or 0))} pps)"
            drops = f"{fmt_int(bad['dropped'])} + {fmt_int(bad['if_dropped'])}"
            unmetered = fmt_int(bad["sent"] - bad["metered"])
        rows.append([cap, TOOL_LABEL[tool],
                     fmt_rate(best["rate"]) if best else "none (lost at the first rate)",
                     fmt_int(round(best["pps"])) if best and best["pps"] else "-",
                     nxt, drops, unmetered])
    return rows


def markdown_table(header, rows, right=()):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def text_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


SUMMARY_HEADER = ["capture", "tool", "highest loss-free rate", "tcpreplay pps there",
                  "next step (pps achieved)", "pcap drops there (libpcap + interface)",
                  "packets not metered there"]
STEP_HEADER = ["capture", "tool", "rate", "sent", "tcpreplay pps", "pcap received", "dropped",
               "if dropped", "metered", "exported (v9 sink)", "loss"]


def step_rows(series):
    rows = []
    for (cap, tool), steps in series.items():
        for s in steps:
            if "error" in s:
                rows.append([cap, TOOL_LABEL[tool], fmt_rate(s["rate"])] + ["-"] * 7 + ["error"])
                continue
            rows.append([cap, TOOL_LABEL[tool], fmt_rate(s["rate"]), fmt_int(s["sent"]),
                         fmt_int(round(s["pps"])) if s["pps"] else "-", fmt_int(s["received"]),
                         fmt_int(s["dropped"]), fmt_int(s["if_dropped"]), fmt_int(s["metered"]),
                         fmt_int(s["exported"]), "LOSS" if s["lost"] else "none"])
    return rows


def write_markdown(path, series, captures, args, versions, started, elapsed):
    cpus = os.cpu_count()
    lines = ["# pyprobe live-capture loss benchmark", "",
             f"`bench/live/run_live.py` on {started:%Y-%m-%d}: {cpus} cores, Linux {platform.release()}, "
             f"Python {platform.python_version()}; {versions['pyprobe']}, {versions['softflowd']}, "
             f"{versions['tcpreplay']}. Whole run {elapsed / 60:.1f} min.", "",
             "Method: two network namespaces joined by a veth pair; `tcpreplay -i vB -K --no-flow-stats "
             "--pps=RATE` (or `--topspeed`) replays the capture in B, the probe captures on vA in A and "
             "exports NetFlow v9 to a sink on 127.0.0.1:2055 in A. Rates rise; a tool's series stops at "
             "its first loss. Loss = libpcap drops (dropped + dropped by the interface: pyprobe's exit "
             "statistics, summed over workers; softflowd's `softflowctl statistics` read just before "
             "stopping it) > 0, or packets metered (pyprobe's `packets metered`, softflowd's `Packets "
             "processed`) != packets tcpreplay sent (`Actual:`). After each replay 5,000 non-IP filler "
             "frames retire libpcap's last ring block (softflowd opens its capture with no timeout and "
             "would otherwise not see the last few hundred packets before it is stopped); no probe "
             "meters them, but they are in \"pcap received\". Capture buffer: "
             + (f"`-B {args.buffer}` for every tool." if args.buffer else "libpcap's default for every tool.")
             + " pyprobe and softflowd with their defaults otherwise; softflowd with `-m 65536`, "
             "pyprobe's default cache size (every flow of the capture fits both).", "",
             "Captures (`pyprobe generate --pcap`, bench/profiles/mix.toml, seeded):", ""]
    for name, cap in captures.items():
        lines.append(f"- **{name}**: {cap['what']}; {cap['packets']:,} packets, {cap['flows']:,} flows, "
                     f"{cap['bytes'] / 2**20:.0f} MiB, {cap['bytes'] / cap['packets']:.0f} bytes per frame "
                     f"on average.")
    lines += ["", "## Highest loss-free rate", "",
              markdown_table(SUMMARY_HEADER, summary_rows(series), right=(3,)), "",
              "\"topspeed\" is as fast as tcpreplay sends on this host (one core, one send() per "
              "packet): a tool loss-free at topspeed may take more than this bench can offer. A "
              "requested rate above what tcpreplay reaches is sent at its ceiling, so compare the "
              "achieved pps, not the setting. One replay per step: a step near a tool's limit can go "
              "either way from run to run.", "",
              "## Every step", "",
              markdown_table(STEP_HEADER, step_rows(series), right=tuple(range(3, 10))), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------------------------------------

def write_filler(path):
    """FILLER_FRAMES minimum-size frames of the local experimental ethertype 0x88b5 (not IP:
    every probe counts them as ignored, none meters them)."""
    frame = bytes.fromhex("020000000002" "020000000001" "88b5") + bytes(46)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(FILLER_FRAMES):
            f.write(struct.pack("<IIII", 1700000000, i, len(frame), len(frame)) + frame)


def make_captures(tmp, names, quick):
    made = {}
    for name in names:
        cap = dict(CAPTURES[name])
        if quick:
            cap.update(QUICK)
        path = os.path.join(tmp, f"{name}.pcap")
        side = captures.make("mix", path, cap["flows"], cap["seconds"], seed=1, snaplen=cap["snaplen"])
        cap["packets"] = side["packets"]
        cap["file"], cap["bytes"] = path, os.path.getsize(path)
        cap["filler"] = os.path.join(tmp, "filler.pcap")
        write_filler(cap["filler"])
        made[name] = cap
    return made


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="30k-packet captures, rates " + QUICK_RATES)
    p.add_argument("--captures", default=",".join(CAPTURES),
                   help="comma-separated, of: " + ", ".join(CAPTURES) + " (default all)")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, of: " + ", ".join(TOOLS))
    p.add_argument("--rates", help=f"comma-separated packets/s, 'top' for --topspeed "
                                   f"(default {DEFAULT_RATES})")
    p.add_argument("--limit", type=int, default=0, help="tcpreplay --limit: packets per replay (default all)")
    p.add_argument("--buffer", type=int, default=0, help="-B BYTES for every tool (default: libpcap's)")
    p.add_argument("-o", "--output", help="Markdown file (default bench/live/results.md; "
                                          "results-partial.md for --quick or a subset)")
    args = p.parse_args()
    if args.sink:
        return sink_main(args.sink)

    cap_names = [c for c in args.captures.split(",") if c]
    tools = [t for t in args.tools.split(",") if t]
    rates = [r if r == "top" else int(r) for r in (args.rates or (QUICK_RATES if args.quick else DEFAULT_RATES)).split(",")]
    for c in cap_names:
        if c not in CAPTURES:
            p.error(f"unknown capture {c}")
    for t in tools:
        if t not in TOOLS:
            p.error(f"unknown tool {t}")
    if os.geteuid() != 0:
        sys.exit("run_live.py builds network namespaces: run it as root")
    for prog in ("ip", "tcpreplay", "softflowd", "softflowctl"):
        if not shutil.which(prog):
            sys.exit(f"run_live.py needs {prog} (apt-get install tcpreplay; scripts/install-peers)")
    if not PYPROBE:
        sys.exit("no pyprobe next to this python: run `make bench-live` or use .venv/bin/python")
    partial = args.quick or args.rates or args.limit or set(cap_names) != set(CAPTURES) or set(tools) != set(TOOLS)
    output = args.output or os.path.join(LIVE, "results-partial.md" if partial else "results.md")

    signal.signal(signal.SIGTERM, on_sigterm)
    started, t0 = datetime.datetime.now(), time.time()
    versions = tool_versions()
    series = {}
    hosts = None
    tmp = tempfile.mkdtemp(prefix="pyprobe-live-")
    try:
        print(f"generating captures {', '.join(cap_names)} ...", flush=True)
        captures = make_captures(tmp, cap_names, args.quick)
        hosts = Hosts()
        print(f"namespaces {hosts.a} ({hosts.if_a}) <-> {hosts.b} ({hosts.if_b})", flush=True)
        for cap in cap_names:
            for tool in tools:
                steps = series.setdefault((cap, tool), [])
                for rate in rates:
                    label = f"{cap:<6} {TOOL_LABEL[tool]:<20} {fmt_rate(rate):>12}"
                    try:
                        s = run_step(hosts, tmp, tool, rate, captures[cap], args)
                    except (RuntimeError, subprocess.SubprocessError, ValueError) as e:
                        print(f"{label}: error: {e}", flush=True)
                        steps.append({"rate": rate, "error": str(e)})
                        break
                    s["rate"] = rate
                    steps.append(s)
                    print(f"{label}: sent {s['sent']:>8,} at {s['pps'] or 0:>10,.0f} pps, "
                          f"dropped {s['dropped']:,} + {s['if_dropped']:,}, metered {s['metered']:,}, "
                          f"exported {fmt_int(s['exported'])}" + ("  LOSS" if s["lost"] else "")
                          + (f"  (tcpreplay failed {s['failed']:,})" if s["failed"] else "")
                          + (f"  (sink overflowed {s['sink_overflows']:,} datagrams)" if s["sink_overflows"] else ""),
                          flush=True)
                    if s["lost"]:
                        break
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        if hosts is not None:
            hosts.close()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.time() - t0
    print()
    print(text_table(SUMMARY_HEADER, summary_rows(series)))
    write_markdown(output, series, captures, args, versions, started, elapsed)
    print(f"\nwritten to {os.path.relpath(output, REPO)} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
