#!/usr/bin/env python3
"""Real-time replay benchmark: pacing error at --realtime=1, and the highest speed at which
the mix capture replays with no lag, side by side with tcpreplay --topspeed onto a veth
with softflowd metering it.

    .venv/bin/python bench/replay.py            # part of `make bench` (the veth part needs root)

  * pacing: a short mix capture (3,000 flows ending within 10 s) replayed with
    `pyprobe -r FILE --realtime -n SINK`: wall time against the capture's span, and
    pyprobe's own statistics of how late packets were fed (median, 99th percentile, max);
  * highest speed: the bench's mix capture (670k packets over 218 s) with --realtime=S,
    S doubling from 8: "no lag" while 99% of packets are fed within 10 ms of their schedule
    and the replay reaches 98% of S; the last such S is reported;
  * side by side (root only): tcpreplay --topspeed of the same capture from one network
    namespace onto a veth, softflowd capturing on the other end (bench/live's harness): the
    packets/s tcpreplay reached, as a replay speed (capture span / tcpreplay's time), and
    whether softflowd metered every packet.

Writes bench/replay-results.md. A measurement, not a test.
"""
import datetime
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, "live"))
import run_bench  # noqa: E402
import run_live  # noqa: E402

PYPROBE = os.path.join(REPO, ".venv", "bin", "pyprobe")
NO_LAG_P99_MS = 10.0
NO_LAG_REACHED = 0.98
PACING_CAPTURE = {"shape": "mix", "flows": 3_000, "seconds": 10}


class Sink:
    """A UDP socket on 127.0.0.1 that reads and forgets (the export must not back up)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        while True:
            try:
                self.sock.recv(65535)
            except OSError:
                return


def replay(path, speed, sink):
    """(wall seconds, {speed, reached, median ms, p99 ms, max ms}) of one real-time replay."""
    started = time.monotonic()
    proc = subprocess.run([PYPROBE, "-r", path, f"--realtime={speed}", "-n", sink.address, "-m", "1000000"],
                          capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    m = re.search(r"real time\s+(\S+)x asked, (\S+)x reached; packets late by median (\S+) ms, 99% (\S+) ms, "
                  r"max (\S+) ms", proc.stderr)
    if not m:
        raise RuntimeError("no real-time statistics in:\n" + proc.stderr[-2000:])
    asked, reached, median, p99, worst = (float(x) for x in m.groups())
    return took, {"speed": asked, "reached": reached, "median": median, "p99": p99, "max": worst}


def capture_span(side):
    """Seconds from the capture's first packet to its last (the generator's sidecar)."""
    return side["last_ts"] - side["first_ts"]


def tcpreplay_topspeed(path):
    """tcpreplay --topspeed of the capture onto a veth, softflowd capturing: its result dict."""
    if os.geteuid() != 0:
        return None
    tmp = tempfile.mkdtemp(prefix="pyprobe-replay-bench-")
    filler = os.path.join(tmp, "filler.pcap")
    run_live.write_filler(filler)
    hosts = run_live.Hosts()
    try:
        args = type("Args", (), {"buffer": 0, "limit": 0})()
        return run_live.run_step(hosts, tmp, "softflowd", "top", {"file": path, "filler": filler}, args)
    finally:
        hosts.close()


def main():
    sink = Sink()
    lines = ["# Real-time replay", "",
             f"`bench/replay.py` on {datetime.date.today()}; pyprobe exports NetFlow v9 to a local UDP sink.", ""]

    path, side = run_bench.ensure_capture("pacing", PACING_CAPTURE, 1)
    took, st = replay(path, 1, sink)
    span_s = capture_span(side)
    print(f"pacing: {span_s:.3f} s of capture replayed in {took:.3f} s (process start and exit included); "
          f"late by median {st['median']} ms, 99% {st['p99']} ms, max {st['max']} ms", flush=True)
    lines += ["## Pacing at --realtime=1", "",
              "| capture | capture span | wall time | error | late: median | 99% | max |",
              "|---|--:|--:|--:|--:|--:|--:|",
              f"| mix, {side['packets']:,} packets | {span_s:.3f} s | {took:.3f} s | {took - span_s:+.3f} s | "
              f"{st['median']} ms | {st['p99']} ms | {st['max']} ms |", ""]

    mix, mix_side = run_bench.ensure_capture("mix", run_bench.CAPTURES["mix"]["gen"], 1)
    mix_span = capture_span(mix_side)
    rows, best = [], None
    speed = 8
    while True:
        took, st = replay(mix, speed, sink)
        ok = st["p99"] <= NO_LAG_P99_MS and st["reached"] >= NO_LAG_REACHED * speed
        rows.append(f"| {speed:g} | {took:.2f} s | {st['reached']:.1f}x | {st['median']} ms | {st['p99']} ms | "
                    f"{st['max']} ms | {'yes' if ok else 'no'} |")
        print(f"speed {speed:g}: {took:.2f} s, reached {st['reached']:.1f}x, late 99% {st['p99']} ms, "
              f"max {st['max']} ms{'' if ok else '  LAG'}", flush=True)
        if not ok:
            break
        best = speed
        speed *= 2
    lines += [f"## Highest speed with no lag (mix: {mix_side['packets']:,} packets over {mix_span:.0f} s)", "",
              f"No lag: 99% of packets fed within {NO_LAG_P99_MS:g} ms of their schedule and at least "
              f"{NO_LAG_REACHED:.0%} of the asked speed reached.", "",
              "| --realtime= | wall time | reached | late: median | 99% | max | no lag |",
              "|--:|--:|--:|--:|--:|--:|:-:|", *rows, "",
              f"Highest speed with no lag: **{best:g}x**" if best else "No speed tried ran without lag.", ""]

    top = tcpreplay_topspeed(mix)
    if top is None:
        lines += ["tcpreplay --topspeed with softflowd: not measured (needs root for the network namespaces).", ""]
    else:
        pps = top.get("pps") or 0
        packets = top.get("sent") or 0
        equivalent = (pps * mix_span / packets) if packets else 0
        lost = "lost packets" if top["lost"] else "metered every packet"
        print(f"tcpreplay --topspeed: {pps:,.0f} packets/s (a {equivalent:.0f}x replay); softflowd {lost}",
              flush=True)
        lines += ["## Side by side: tcpreplay --topspeed onto a veth, softflowd metering", "",
                  "| tool | packets/s | as a replay speed | every packet metered |", "|---|--:|--:|:-:|",
                  f"| tcpreplay --topspeed + softflowd | {pps:,.0f} | {equivalent:.0f}x | "
                  f"{'no' if top['lost'] else 'yes'} |",
                  f"| pyprobe -r --realtime (no interface, no root) | | {best or 0:g}x (no lag) | yes |", ""]
    out = os.path.join(BENCH, "replay-results.md")
    with open(out, "w") as f:
        f.write("\n".join(lines))
    print(f"written to {os.path.relpath(out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
