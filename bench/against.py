#!/usr/bin/env python3
"""pyprobe against an earlier pyprobe: is a change a regression?

    .venv/bin/python bench/against.py 8eb8b6a                 # the mix, 31 alternating runs each
    .venv/bin/python bench/against.py HEAD~3 --capture flood --runs 21 -- -T ip

Builds the earlier commit in a git worktree (bench/.cache/against-COMMIT, made once), then
runs `python -m pyprobe -r CAPTURE -n SINK -v 9 -q -m 1000000 [FLAGS]` from each tree in
turn (old, new, old, new, ...: the machine's drift hits both alike), the export going to a
UDP socket here that holds it until the run ends, and prints the wall and CPU (user +
system) time of each: minimum, first quartile, median, and the ratio new / old. The
capture is the bench's own (bench/run_bench.py makes it if missing). A measurement, not a
test; on a shared machine, read the minimum and the first quartile.
"""

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import run_bench  # noqa: E402


def worktree(commit):
    """A built checkout of the commit: its own extensions, this venv's Python and Cython."""
    sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", commit], capture_output=True, text=True,
                         check=True).stdout.strip()
    path = os.path.join(run_bench.CACHE, f"against-{sha}")
    if not os.path.exists(os.path.join(path, ".built")):
        subprocess.run(["git", "-C", REPO, "worktree", "add", "-f", path, sha], check=True, capture_output=True)
        subprocess.run([run_bench.venv_python(), "setup.py", "-q", "build_ext", "--inplace"], cwd=path, check=True,
                       capture_output=True)
        subprocess.run([run_bench.venv_python(), "-m", "compileall", "-q", "pyprobe"], cwd=path, check=True)
        open(os.path.join(path, ".built"), "w").close()
    return path, sha


def timed(tree, args, sink):
    """(wall, CPU) seconds of one run from `tree` (python -m pyprobe: that tree's package)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([run_bench.venv_python(), "-m", "pyprobe", *args], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        while True:
            sink.recv(65536)
    except BlockingIOError:
        pass
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def figures(values):
    ordered = sorted(values)
    return ordered[0], ordered[len(ordered) // 4], statistics.median(ordered)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the earlier pyprobe (any git revision)")
    parser.add_argument("--capture", choices=sorted(run_bench.CAPTURES), default="mix")
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("flags", nargs="*", help="more pyprobe flags, after --")
    # (argparse gives a positional list only what comes straight after the one before it:
    # the flags after "--" are split off here, wherever --runs and --capture stand)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = parser.parse_args(argv[:cut])
    a.flags += argv[cut + 1:]
    cfg = run_bench.CAPTURES[a.capture]
    path, _ = run_bench.ensure_capture(a.capture, dict(cfg["gen"]), 1)
    run_bench.warm(path)
    old, sha = worktree(a.commit)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    args = ["-r", path, "-n", f"127.0.0.1:{sink.getsockname()[1]}", "-v", "9", "-q", "-m", "1000000", *a.flags]
    runs = {"old": [], "new": []}
    for _ in range(a.runs):
        runs["old"].append(timed(old, args, sink))
        runs["new"].append(timed(REPO, args, sink))
    print(f"{a.capture}, {a.runs} runs each, {sha} (old) against the working tree (new):")
    for what, index in (("wall", 0), ("CPU", 1)):
        o, n = figures([r[index] for r in runs["old"]]), figures([r[index] for r in runs["new"]])
        print(f"  {what:<4}  old min {o[0]:.4f} p25 {o[1]:.4f} median {o[2]:.4f}   new min {n[0]:.4f} "
              f"p25 {n[1]:.4f} median {n[2]:.4f}   new/old {n[0] / o[0]:.3f} {n[1] / o[1]:.3f} {n[2] / o[2]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
