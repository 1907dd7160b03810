"""Hostile input, round two (issue 22): a seeded random run over every flag, config key,
profile key, record, monitor and collector key and control command, with NaN, infinities,
huge and negative numbers, wrong types, non-UTF-8 bytes, empty and huge strings
(tests/hostile.py makes the cases from pyprobe's own tables).

Each case runs the real command for at most 5 s: no traceback, no crash, no hang, no process
left behind, at most 3 GiB, exit 0 or 2 (pyprobe ctl: 1 for a refusal), and exit 2 (or a
refusal) in one line that is not Python's own words; --json output is JSON records that could
be true. And a probe kept running on a stream is fed every
control command and reloads of hostile config files, interleaved: it answers each, is still
running afterwards, and every packet fed is in exactly one record (or counted ignored, or
in a flow delete-all forgot, which the test measures by dumping the flows around it).

The seed is printed with every failure; PYPROBE_HOSTILE_SEED changes it, and
`python tests/hostile.py INDEX --seed SEED` reruns one case."""

import concurrent.futures
import copy
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import hostile

DEFAULT_CASES = 300           # make test: some 12 s on 2 cores
LONG_CASES = 5000             # make test-long
WORKERS = 2


@pytest.fixture(scope="module")
def context():
    sinks = hostile.Sinks()
    yield sinks.context
    sinks.close()


# -- one command per case ---------------------------------------------------------------------

def run_cases(ctx, seed, count, root):
    """{signature: [(case, outcome, problems)]} of the cases that went wrong. A case that only
    ran too long is run again alone before it counts (a hang happens again; a machine busy
    with something else for a moment does not)."""
    def one(index):
        case = hostile.make_case(ctx, seed, index)
        workdir = root / f"case{index}"
        outcome = hostile.run_case(case, workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        return case, outcome, hostile.check(case, outcome)

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        results = [result for result in pool.map(one, range(count)) if result[2]]
    results = [one(case.index) if all("still running" in p for p in problems) else (case, outcome, problems)
               for case, outcome, problems in results]
    failures = {}
    for case, outcome, problems in results:
        if problems:
            failures.setdefault(hostile.signature(case, problems, outcome), []).append((case, outcome, problems))
    return failures


def failure_report(seed, count, failures):
    total = sum(len(cases) for cases in failures.values())
    lines = [f"seed {seed}: {total} of {count} cases failed, {len(failures)} kinds (PYPROBE_HOSTILE_SEED={seed}; "
             f"`python tests/hostile.py INDEX --seed {seed}` reruns case INDEX)"]
    for sig, cases in sorted(failures.items(), key=lambda item: -len(item[1])):
        case, outcome, problems = cases[0]
        err = [line for line in outcome.stderr.strip().split("\n") if line.strip()]
        lines += ["", f"== {len(cases)} x {sig}  (cases {', '.join(str(c.index) for c, _, _ in cases[:12])}"
                      f"{' ...' if len(cases) > 12 else ''})",
                  f"case {case.index}: {case.what}: {'; '.join(p[:300] for p in problems)}",
                  hostile.describe(case),
                  f"exit {outcome.rc} ({outcome.ended}, {outcome.seconds:.1f} s); stderr ends:"]
        lines += ["    " + line[:300] for line in err[-6:]]
    return "\n".join(lines)


def test_hostile_commands(context, tmp_path):
    """A few hundred seeded cases of flags, config files, profiles and pyprobe ctl."""
    failures = run_cases(context, hostile.SEED, DEFAULT_CASES, tmp_path)
    assert not failures, failure_report(hostile.SEED, DEFAULT_CASES, failures)


@pytest.mark.long
def test_hostile_commands_long(context, tmp_path):
    failures = run_cases(context, hostile.SEED, LONG_CASES, tmp_path)
    assert not failures, failure_report(hostile.SEED, LONG_CASES, failures)


def test_the_run_reaches_every_option_and_key(context):
    """The long run's cases change every flag and config key of each command, every
    [[collector]], [[record]] and [[monitor]] key and every profile key the tables name."""
    whats = [hostile.make_case(context, hostile.SEED, i).what for i in range(LONG_CASES)]
    missing = hostile.every_place() - hostile.reached(whats)
    assert not missing, f"seed {hostile.SEED}: {LONG_CASES} cases never change {sorted(missing)}"


# -- a running probe under fire ----------------------------------------------------------------

ANSWER_LIMIT = 5.0           # seconds an answer, a reload or a pyprobe ctl may take
QUIET_LIMIT = 15.0           # seconds the probe may take to read what it was fed


def capture_rounds(path=hostile.ANDROID, gap=30):
    """The capture's header, and round(k): its packets again, k * (its span + gap) seconds
    later (each round's flows idle out before the next begins)."""
    data = Path(path).read_bytes()
    header, records, offset = data[:24], [], 24
    while offset < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, offset)
        records.append((sec, data[offset + 4:offset + 16 + incl]))
        offset += 16 + incl
    shift = records[-1][0] - records[0][0] + gap

    def round_bytes(k):
        return b"".join(struct.pack("<I", sec + k * shift) + rest for sec, rest in records)
    return header, len(records), round_bytes


def base_config(ctx):
    """The running probe's config: two monitors (one of a [[record]] of IPv4 prefixes), an
    IPFIX collector at a loopback sink, timeouts of its own."""
    return {"timeouts": {"tcp": 30},
            "export": {"version": 10, "template_refresh": 5},
            "collector": [{"address": f"127.0.0.1:{ctx.udp_port}"}],
            "record": [{"name": "v4prefixes",
                        "match": ["sourceIPv4Address/24", "destinationIPv4Address/24", "protocolIdentifier"],
                        "collect": ["packetDeltaCount", "octetDeltaCount", "flowStartMilliseconds",
                                    "flowEndMilliseconds"]}],
            "monitor": [{"name": "a"}, {"name": "b", "record": "v4prefixes", "timeouts": {"inactive": 40}}]}


# What a reload may find at the end of the file it knows: bytes that are not UTF-8, not TOML,
# a key twice, a value no parser should take.
RELOAD_DAMAGE = [b"\xff\xfe", b'[probe]\nsnaplen = "\xff"\n', b"[probe\n", b"[timeouts]\ntcp = 30\n",
                 b"[export]\nversion = inf\n", b"[probe]\nmax_flows = " + b"9" * 5000 + b"\n", b"\x00",
                 b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", b"[[monitor]]\nname = 'a'\n"]


def hostile_reload(rng, ctx, base):
    """A config to reload: the base with a hostile part put in (or the whole file hostile)."""
    if rng.random() < 0.2:
        return hostile.Raw(hostile.toml_document(base) + rng.choice(RELOAD_DAMAGE)), "the config damaged"
    doc, what, _, _ = hostile.config_doc(rng, ctx, "probe")
    if isinstance(doc, bytes):
        return doc, what
    merged = copy.deepcopy(base)
    for section, value in doc.items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section].update(value)
        else:
            merged[section] = value
    return merged, what


class ProbeUnderFire:
    """pyprobe -r - -c SOCK -f CONF --json, fed rounds of a capture on its standard input;
    what it was fed and what delete-all made it forget are counted here."""

    def __init__(self, ctx, workdir, pyprobe=hostile.PYPROBE):
        self.ctx = ctx
        self.workdir = workdir
        self.sock_path = str(workdir / "ctl.sock")
        self.conf = workdir / "conf.toml"
        self.base = base_config(ctx)
        self.conf.write_bytes(hostile.toml_document(self.base))
        self.header, self.round_packets, self.round_bytes = capture_rounds()
        self.pyprobe = pyprobe
        self.proc = subprocess.Popen([pyprobe, "-r", "-", "-c", self.sock_path, "-f", str(self.conf),
                                      "--json"], cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=dict(os.environ, PYTHONFAULTHANDLER="1"))
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=self._drain, args=(self.proc.stdout, self.out), daemon=True),
                        threading.Thread(target=self._drain, args=(self.proc.stderr, self.err), daemon=True)]
        for reader in self.readers:
            reader.start()
        self.proc.stdin.write(self.header)
        self.proc.stdin.flush()
        self.rounds = 0
        self.fed = 0
        self.deleted_flows = 0
        self.deleted_packets = 0
        self.problems = {}            # kind -> [how many, the first one in full]
        self.err_checked = 0          # lines of its standard error looked at for tracebacks
        self.events = []
        self._wait_for_socket()

    @staticmethod
    def _drain(stream, lines):
        for line in stream:
            lines.append(line)

    def _wait_for_socket(self):
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock_path):
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                f"the probe did not start: {b''.join(self.err).decode(errors='replace')}"
            time.sleep(0.02)

    # -- what the test does to it ----------------------------------------------------------

    def feed(self):
        """A thread writing the next round of packets, a piece at a time."""
        data = self.round_bytes(self.rounds)
        self.rounds += 1
        self.fed += self.round_packets

        def write():
            try:
                for start in range(0, len(data), 8192):
                    self.proc.stdin.write(data[start:start + 8192])
                    self.proc.stdin.flush()
                    time.sleep(0.003)
            except (BrokenPipeError, ValueError):
                pass                      # (the probe is gone: alive() says so)
        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        return thread

    def ask(self, data, close=False, timeout=ANSWER_LIMIT):
        """Send raw bytes on the control socket, return (answer bytes, what went wrong or None)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(self.sock_path)
            except OSError as e:
                return b"", f"cannot connect: {e}"
            try:
                s.sendall(data)
                if close:
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass                      # (a huge line: the probe answered after the first 4 KiB)
            chunks = []
            deadline = time.monotonic() + timeout
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    return b"".join(chunks), f"no answer within {timeout:g} s"
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    return b"".join(chunks), f"answer not finished within {timeout:g} s"
        return b"".join(chunks), None

    def ask_json(self, request):
        answer, trouble = self.ask(request.encode() + b"\n")
        assert trouble is None, f"{request}: {trouble}"
        return json.loads(answer)

    def statistics(self):
        return self.ask_json("statistics --json")

    def wait_read(self):
        """Wait until the probe has read every packet fed; its statistics then."""
        deadline = time.monotonic() + QUIET_LIMIT
        while True:
            stats = self.statistics()
            read = stats["meter"]["packets_read"]
            if read == self.fed:
                return stats
            if read > self.fed or time.monotonic() > deadline:
                self.problem("the probe did not read every packet fed", f"{read} of {self.fed}")
                return stats
            time.sleep(0.02)

    def dump(self):
        flows = self.ask_json("dump-flows --json")
        return len(flows), sum(f["packets"] for f in flows)

    def problem(self, kind, detail=""):
        """A finding: its kind (what makes two the same), what happened, the events before it."""
        kind = re.sub(r"\d+", "N", kind)
        recent = "\n      ".join(e[:600] for e in self.events[-3:])
        entry = self.problems.setdefault(kind, [0, f"{kind}: {detail[-1500:]}\n    after:\n      {recent}"])
        entry[0] += 1

    def report(self, seed):
        return f"seed {seed}: " + "\n".join(f"{n} x {text}" for n, text in self.problems.values())

    def alive(self):
        if self.proc.poll() is None:
            return True
        self.problem(f"the probe exited (status {self.proc.returncode})", self.stderr_since(0)[-1500:])
        return False

    def stderr_since(self, mark):
        return b"".join(self.err[mark:]).decode("utf-8", "replace")

    # -- the events -------------------------------------------------------------------------

    def raw(self, data, close):
        self.events.append(f"raw request {data[:300]!r}{' (then EOF)' if close else ''}")
        answer, trouble = self.ask(data, close)
        huge = len(data) > hostile.MAX_REQUEST
        if trouble and not huge:
            self.problem(f"control request: {trouble}", repr(data[:200]))
        elif data and not answer and not huge:
            self.problem("control request closed without an answer", repr(data[:200]))
        self._plain_words(answer.decode("utf-8", "replace"), repr(data[:200]))
        first = data.split(b"\n", 1)[0].decode("utf-8", "replace").split()
        if answer and "--json" in first and not huge:
            try:
                hostile._strict_json(answer)
            except ValueError as e:
                self.problem("a --json answer that is not JSON", f"{data[:200]!r}: {e}: {answer[:200]!r}")
        self._no_traceback()
        return answer

    def client(self, words):
        self.events.append("pyprobe ctl " + " ".join(hostile.shell_word(w) for w in words))
        try:
            result = subprocess.run([self.pyprobe, "ctl"] + words, capture_output=True, timeout=ANSWER_LIMIT,
                                    cwd=self.workdir)
        except subprocess.TimeoutExpired:
            self.problem(f"pyprobe ctl still running after {ANSWER_LIMIT:g} s")
            return
        err = result.stderr.decode("utf-8", "replace")
        lines = [line for line in err.strip().split("\n") if line.strip()]
        if result.returncode not in (0, 1, 2):
            self.problem(f"pyprobe ctl exit status {result.returncode}", err[-500:])
        if "Traceback" in err:
            errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
            self.problem(f"pyprobe ctl traceback ({(errors or lines)[-1][:80]})", err[-800:])
        elif result.returncode == 2 or (result.returncode == 1 and "--json" not in words):
            if len(lines) != 1:
                self.problem(f"pyprobe ctl exit {result.returncode} with {len(lines)} lines", err[-500:])
            self._plain_words(err, self.events[-1])
        self._no_traceback()

    def reload(self, doc, what, valid):
        data = hostile.toml_document(doc)
        self.events.append(f"SIGHUP with config ({what}) {data[:600]!r}")
        self.conf.write_bytes(data)
        mark = len(self.err)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + ANSWER_LIMIT
        while not re.search(r"reloaded|reload failed", self.stderr_since(mark)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.problem(f"SIGHUP: no reload logged within {ANSWER_LIMIT:g} s")
                break
            time.sleep(0.01)
        while True:                       # (a traceback logged with the failure may still be coming)
            lines = len(self.err)
            time.sleep(0.05)
            if len(self.err) == lines:
                break
        said = self.stderr_since(mark)
        if valid and "reload failed" in said:
            self.problem("a reload of the config it started with failed", said[-500:])
        self._no_traceback()

    def templates(self):
        self.events.append("SIGUSR1")
        self.proc.send_signal(signal.SIGUSR1)

    def accounted_delete(self, event):
        """A delete-all (or what may be one), with the flows dumped before and after: the
        packets it made the probe forget are counted."""
        self.wait_read()
        flows, packets = self.dump()
        mark = len(self.out)
        answer = event()
        later_flows, later_packets = self.dump()
        if later_flows > flows or len(self.out) != mark:
            self.problem("flows changed around a delete-all", f"{flows} -> {later_flows}")
        self.deleted_flows += flows - later_flows
        self.deleted_packets += packets - later_packets
        said = re.search(rb"deleted (\d+) flow|\"deleted\": (\d+)", answer or b"")
        if said and int(said.group(1) or said.group(2)) != flows - later_flows:
            self.problem("delete-all said another count", f"{said.group(0)!r}; {flows - later_flows} flows went")

    def _plain_words(self, refusal, request):
        leak = next((words for words in hostile.PYTHON_WORDS if words in refusal), None)
        if leak:
            self.problem(f"a refusal in Python's words ({leak})", f"{request}: {refusal[:300]!r}")

    def _no_traceback(self):
        """No traceback in the probe's log since the last look."""
        said = self.stderr_since(self.err_checked)
        self.err_checked = len(self.err)
        if "Traceback" in said:
            lines = [line for line in said.strip().split("\n") if line.strip()]
            errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
            self.problem(f"traceback in the probe's log ({(errors or lines)[-1][:100]})", said[-1500:])

    # -- the end ----------------------------------------------------------------------------

    def stop(self, how):
        """Stop it (shutdown or SIGTERM) once it has read everything; check that every packet
        fed is in one record, counted ignored, or forgotten by a delete-all."""
        stats = self.wait_read()
        if how == "shutdown":
            self.ask(b"shutdown\n")
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.problem(f"still running 10 s after {how}")
            return
        for reader in self.readers:
            reader.join(timeout=10)
        if rc != 0:
            self.problem(f"exit status {rc} after {how}", self.stderr_since(0)[-1000:])
        self._no_traceback()
        self.check_conservation(stats)

    def check_conservation(self, stats):
        records = []
        for line in self.out:
            try:
                records.append(hostile._strict_json(line))
            except ValueError as e:
                self.problem("standard output is not JSON lines", f"{e}: {line[:200]!r}")
                return
        monitors = stats["monitors"]
        for m in monitors:
            meter = m["meter"]
            counted = (meter["packets_metered"] + sum(meter["packets_ignored"].values())
                       + meter["packets_sampled_out"] + meter["packets_not_monitored"])
            if meter["packets_read"] != self.fed or counted != self.fed:
                self.problem("packets fed, read and counted differ",
                             f"monitor {m['name']}: fed {self.fed} packets, read {meter['packets_read']}, "
                             f"metered + ignored + sampled out + not monitored {counted}")
        metered = sum(m["meter"]["packets_metered"] for m in monitors)
        in_records = sum(r["packets"] for r in records)
        if in_records + self.deleted_packets != metered:
            self.problem("packets metered are not all in records", f"{metered} packets metered; {in_records} in "
                         f"{len(records)} records and {self.deleted_packets} in flows delete-all forgot")
        created = sum(m["meter"]["flows_created"] for m in monitors)
        if created != len(records) + self.deleted_flows:
            self.problem("flows created are not all in records",
                         f"{created} flows created; {len(records)} records and {self.deleted_flows} flows deleted")


def under_fire(ctx, seed, rounds, events, pyprobe=hostile.PYPROBE):
    """The running-probe run: `events` control requests, pyprobe ctl commands and reloads over
    `rounds` rounds of the capture; the probe, with the problems found."""
    rng = random.Random(f"{seed}:running")
    workdir = Path(tempfile.mkdtemp(prefix="pphz"))     # (a short path: a unix socket's is at most 107 bytes)
    probe = ProbeUnderFire(ctx, workdir, pyprobe)
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for s in idle:                    # clients that connect and never finish a line
            s.connect(probe.sock_path)
        idle[0].send(b"statis")
        commands = list(hostile.ctl_module.COMMANDS)
        for r in range(rounds):
            feeder = probe.feed()
            for i in range(events // rounds):
                if not probe.alive():
                    return probe
                event_of(rng, ctx, probe, commands[(r * events // rounds + i) % len(commands)])
            feeder.join(timeout=30)
            if not probe.alive():
                return probe
            if probe.wait_read() and rng.random() < 0.5:
                probe.reload(probe.base, "the config it started with", valid=True)
        probe.stop(rng.choice(["shutdown", "SIGTERM"]))
        return probe
    finally:
        for s in idle:
            s.close()
        if probe.proc.poll() is None:
            probe.proc.kill()
            probe.proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def event_of(rng, ctx, probe, command):
    """One thing done to the probe: mostly a raw request or a pyprobe ctl, naming `command`
    (so each of ctl.COMMANDS comes in turn), sometimes a hostile reload or SIGUSR1."""
    kind = rng.random()
    if kind < 0.06:
        doc, what = hostile_reload(rng, ctx, probe.base)
        probe.reload(doc, what, valid=False)
    elif kind < 0.08:
        probe.templates()
    elif kind < 0.30:
        words = hostile.ctl_words(rng, ctx, probe.sock_path, command=command)
        request = hostile.ctl_request(words)
        acted = request and hostile.destructive(request)
        if acted == "delete-all":
            probe.accounted_delete(lambda: probe.client(words))
        elif acted != "shutdown":         # (the run's end)
            probe.client(words)
    else:
        data, close = hostile.raw_request(rng, command=command)
        acted = hostile.destructive(data)
        if acted == "delete-all":
            probe.accounted_delete(lambda: probe.raw(data, close))
        elif acted != "shutdown":
            probe.raw(data, close)


def test_running_probe_under_hostile_control_and_reloads(context):
    """Every control command with hostile arguments (raw bytes and pyprobe ctl) and reloads of
    hostile configs, interleaved with the packets: the probe answers, keeps running, and
    every packet it was fed ends in one record (or is counted, or was deleted)."""
    probe = under_fire(context, hostile.SEED, rounds=5, events=150)
    assert not probe.problems, probe.report(hostile.SEED)


@pytest.mark.long
def test_running_probe_under_hostile_control_and_reloads_long(context):
    probe = under_fire(context, hostile.SEED, rounds=30, events=1500)
    assert not probe.problems, probe.report(hostile.SEED)
