#!/usr/bin/env python3
"""Generator benchmark: records/s of `pyprobe generate --rate 0` to a counting UDP sink on
one core, for NetFlow v9 and IPFIX, side by side with nfdump's nfreplay sending the same
records; and the highest rate at which nfcapd stores every record.

    .venv/bin/python bench/generate.py        # part of `make bench`

  * the records: `pyprobe generate --count N --seed 1` into nfcapd at a rate it takes in
    full, so that nfreplay has the same records to send from nfcapd's file;
  * senders run pinned to CPU 0 (taskset), the sink on CPU 1: a socket that counts the data
    records of every datagram (v9/IPFIX sets after the templates);
  * nfcapd: --rate R for 3 s, R doubling from 25,000, until nfdump holds fewer records than
    were sent; the last rate with none lost is reported.

Writes bench/generate-results.md. A measurement, not a test.
"""
import datetime
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PYPROBE = os.path.join(REPO, ".venv", "bin", "pyprobe")
RECORDS = 1_000_000
RUNS = 3


class CountingSink:
    """Counts flow data records in v5/v9/IPFIX datagrams (sets with ids >= 256 except options)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)       # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.5)
        self.sizes = {}
        self.records = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        os.sched_setaffinity(0, {1 % os.cpu_count()})
        while self.running:
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            self.records += self._count(data)

    def _count(self, data):
        version = struct.unpack_from(">H", data)[0]
        if version == 5:
            return struct.unpack_from(">H", data, 2)[0]
        pos, count = (20, 0) if version == 9 else (16, 0)
        template_set = 0 if version == 9 else 2
        while pos + 4 <= len(data):
            set_id, length = struct.unpack_from(">HH", data, pos)
            if length < 4:
                break
            if set_id == template_set:
                t = pos + 4
                while t + 4 <= pos + length:
                    tid, n = struct.unpack_from(">HH", data, t)
                    if n == 0:
                        break
                    self.sizes[tid] = sum(struct.unpack_from(">H", data, t + 6 + 4 * i)[0] for i in range(n))
                    t += 4 + 4 * n
            elif set_id >= 256 and self.sizes.get(set_id) and set_id not in (258, 259):
                count += (length - 4) // self.sizes[set_id]
            pos += length
        return count

    def wait_quiet(self, seconds=1.0):
        last = -1
        while last != self.records:
            last = self.records
            time.sleep(seconds)
        return self.records

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def timed(cmd):
    started = time.monotonic()
    proc = subprocess.run(["taskset", "-c", "0", *cmd], capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-1000:]}")
    return took


def nfcapd_file(tmp, count, rate):
    """Records generated into nfcapd: (the file, records stored)."""
    flows = os.path.join(tmp, "flows")
    os.makedirs(flows, exist_ok=True)
    port = free_port()
    nfcapd = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", flows, "-t", "3600",
                               "-B", str(64 << 20)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        subprocess.run([PYPROBE, "generate", "-n", f"127.0.0.1:{port}", "-v", "9", "--count", str(count),
                        "--rate", str(rate), "--seed", "1", "-q"], check=True, timeout=600)
        time.sleep(1.0)
    finally:
        nfcapd.terminate()
        nfcapd.wait(timeout=30)
    files = sorted(f for f in os.listdir(flows) if f.startswith("nfcapd.") and "current" not in f)
    path = os.path.join(flows, files[-1])
    info = subprocess.run(["nfdump", "-r", path, "-I"], capture_output=True, text=True).stdout
    stored = int(next(line.split(":")[1] for line in info.splitlines() if line.startswith("Flows:")))
    return path, stored


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    for tool in ("nfcapd", "nfdump", "nfreplay", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench/generate.py needs {tool} (scripts/install-peers)")
    tmp = tempfile.mkdtemp(prefix="pyprobe-generate-bench-")
    lines = ["# Generator", "", f"`bench/generate.py` on {datetime.date.today()}: {RECORDS:,} records, "
             f"median of {RUNS} runs, the sender on CPU 0 and a counting UDP sink on CPU 1.", ""]
    try:
        path, stored = nfcapd_file(tmp, RECORDS, 100_000)
        print(f"nfreplay's input: {stored:,} records in {os.path.basename(path)}", flush=True)
        rows = []
        for name, cmd_of in (("pyprobe generate -v 9", lambda port: [PYPROBE, "generate", "-n", f"127.0.0.1:{port}",
                                                                      "-v", "9", "--rate", "0", "--count", str(stored),
                                                                      "--seed", "1", "-q"]),
                             ("pyprobe generate -v 10", lambda port: [PYPROBE, "generate", "-n", f"127.0.0.1:{port}",
                                                                       "-v", "10", "--rate", "0", "--count",
                                                                       str(stored), "--seed", "1", "-q"]),
                             ("nfreplay -v 9 -d 0", lambda port: ["nfreplay", "-r", path, "-H", "127.0.0.1", "-p",
                                                                 str(port), "-v", "9", "-d", "0"])):
            times, received = [], []
            for _ in range(RUNS):
                sink = CountingSink()
                try:
                    times.append(timed(cmd_of(sink.port)))
                    received.append(sink.wait_quiet(0.5))
                finally:
                    sink.close()
            took = sorted(times)[len(times) // 2]
            rate = stored / took
            rows.append((name, took, rate, min(received)))
            print(f"{name}: {took:.2f} s, {rate:,.0f} records/s, sink counted {min(received):,}", flush=True)
        lines += ["| sender | seconds | records/s | records the sink counted (fewest) |", "|---|--:|--:|--:|"]
        lines += [f"| {n} | {t:.2f} | {r:,.0f} | {c:,} |" for n, t, r, c in rows]
        nfr = next(r for n, _, r, _ in rows if n.startswith("nfreplay"))
        lines += ["", f"pyprobe generate (v9) / nfreplay: **{rows[0][2] / nfr:.2f}x** records/s "
                      f"(IPFIX {rows[1][2] / nfr:.2f}x).", ""]

        rate, best = 25_000, None
        lines += ["## nfcapd storing every record", "", "| --rate | sent | stored |", "|--:|--:|--:|"]
        while rate <= 1_600_000:
            _, stored_now = nfcapd_file(os.path.join(tmp, f"r{rate}"), rate * 3, rate)
            lines.append(f"| {rate:,} | {rate * 3:,} | {stored_now:,} |")
            print(f"nfcapd at {rate:,} records/s: {stored_now:,} of {rate * 3:,} stored", flush=True)
            if stored_now < rate * 3:
                break
            best = rate
            rate *= 2
        lines += ["", f"Highest rate with every record stored: **{best:,} records/s**" if best
                  else "nfcapd lost records at every rate tried.", ""]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = os.path.join(BENCH, "generate-results.md")
    with open(out, "w") as f:
        f.write("\n".join(lines))
    print(f"written to {os.path.relpath(out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
