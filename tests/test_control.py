"""The control socket (pyprobe -c PATH) and pyprobe ctl, against a real probe.

The probe captures live on loopback, filtered to one UDP port, so it keeps running
and its main loop polls the socket at least every 100 ms; the test makes flows by
sending datagrams to that port, one flow per sending socket."""

import json
import os
import queue
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

PYPROBE = shutil.which("pyprobe", path=str(Path(sys.executable).parent))
ANDROID = Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap"
COMMANDS = ("statistics", "dump-flows", "expire-all", "delete-all", "timeouts", "send-template", "shutdown")

live = pytest.mark.skipif(os.geteuid() != 0, reason="live capture on loopback needs root")


@pytest.fixture
def sockdir():
    # Short: a unix socket path has at most 107 bytes, pytest's tmp_path may be longer.
    path = tempfile.mkdtemp(prefix="ppctl")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def ctl(path, *args, timeout=15):
    return subprocess.run([PYPROBE, "ctl", "-c", str(path), *args], capture_output=True, text=True,
                          timeout=timeout)


class LiveProbe:
    """pyprobe -i lo -c SOCK --json udp port PORT, with a receiver bound to PORT."""

    def __init__(self, sock_path, *extra):
        self.sock_path = sock_path
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.port = self.receiver.getsockname()[1]
        self.proc = subprocess.Popen([PYPROBE, "-i", "lo", "-c", str(sock_path), "--json", *extra,
                                      "udp", "port", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read_stdout, daemon=True)
        self.reader.start()
        self.senders = []
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"pyprobe did not open its control socket: {self.proc.stderr.read()}")
            time.sleep(0.02)

    def _listening(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.sock_path))
            except OSError:
                return False
            return True

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def flow(self, packets, payload=b"x" * 20):
        """A new flow of `packets` datagrams to the probe's port; returns its source port."""
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        self.senders.append(sender)
        for _ in range(packets):
            sender.sendto(payload, ("127.0.0.1", self.port))
        return sender.getsockname()[1]

    def ctl(self, *args):
        return ctl(self.sock_path, *args)

    def ctl_json(self, *args):
        result = self.ctl(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_packets(self, count, timeout=10):
        """Statistics (JSON) once the probe has read `count` packets."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.ctl_json("statistics")
            if stats["meter"]["packets_read"] >= count or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    def record(self, timeout=10):
        """The next JSON record pyprobe prints, or None at its end / after the timeout."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if line is None else json.loads(line)

    def wait_exit(self, timeout=15):
        """Wait for pyprobe to end: (exit status, remaining records, stderr)."""
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        records = []
        while (record := self.record(timeout=0.1)) is not None:
            records.append(record)
        err = self.proc.stderr.read()
        self.close()
        return rc, records, err

    def close(self):
        for s in self.senders + [self.receiver]:
            s.close()
        self.senders = []

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.close()


@pytest.fixture
def probe(sockdir):
    p = LiveProbe(sockdir / "ctl.sock")
    yield p
    p.kill()


def flows_by_port(flows):
    return {f["sport"]: f for f in flows}


# -- live: the commands ------------------------------------------------------------

@live
def test_socket_mode_and_statistics(probe):
    mode = os.stat(probe.sock_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    probe.flow(5)
    stats = probe.wait_packets(5)
    assert stats["meter"]["packets_read"] == 5
    assert stats["meter"]["flows_active"] == 1
    assert stats["timeouts"]["udp"] == 15
    text = probe.ctl("statistics")
    assert text.returncode == 0
    assert "packets read" in text.stdout and "flows created" in text.stdout
    assert text.stdout.split("packets read")[1].split()[0] == "5"


@live
def test_dump_flows(probe):
    a, b = probe.flow(3), probe.flow(2)
    probe.wait_packets(5)
    flows = probe.ctl_json("dump-flows")
    by_port = flows_by_port(flows)
    assert set(by_port) == {a, b}
    for sport, packets in ((a, 3), (b, 2)):
        f = by_port[sport]
        assert (f["src"], f["dst"], f["proto"], f["dport"]) == ("127.0.0.1", "127.0.0.1", 17, probe.port)
        assert f["packets"] == packets and f["octets"] == packets * (20 + 8 + 20)
    text = probe.ctl("dump-flows")
    assert text.returncode == 0
    rows = [line for line in text.stdout.splitlines() if f"127.0.0.1:{a} " in line]
    assert len(rows) == 1 and rows[0].split()[-3:-1] == ["3", str(3 * 48)]
    assert "2 active flows" in text.stdout
    # Dumping does not end anything.
    assert probe.record(timeout=0.3) is None
    assert probe.wait_packets(5)["meter"]["flows_active"] == 2


@live
def test_expire_all_exports_the_flow(probe):
    sport = probe.flow(4)
    probe.wait_packets(4)
    answer = probe.ctl("expire-all")
    assert answer.returncode == 0 and answer.stdout.strip() == "expired 1 flow"
    record = probe.record()
    assert record is not None, "expire-all printed no record"
    assert (record["sport"], record["dport"], record["packets"]) == (sport, probe.port, 4)
    assert probe.ctl_json("expire-all") == {"expired": 0}
    assert probe.ctl_json("dump-flows") == []
    assert probe.ctl("shutdown").returncode == 0
    rc, records, _ = probe.wait_exit()
    assert rc == 0 and records == []          # expired once, recorded once


@live
def test_delete_all_forgets_flows(probe):
    probe.flow(2)
    probe.flow(1)
    probe.wait_packets(3)
    answer = probe.ctl("delete-all")
    assert answer.returncode == 0 and answer.stdout.strip() == "deleted 2 flows"
    stats = probe.ctl_json("statistics")
    assert stats["meter"]["flows_active"] == 0
    assert probe.ctl_json("delete-all") == {"deleted": 0}
    assert probe.ctl("shutdown").returncode == 0
    rc, records, err = probe.wait_exit()
    assert rc == 0 and records == []          # no record for a deleted flow, not even at exit
    assert "pyprobe statistics" in err


@live
def test_timeouts_read_and_set(probe):
    text = probe.ctl("timeouts")
    assert text.returncode == 0
    current = dict(line.split() for line in text.stdout.splitlines())
    assert current["udp"] == "15" and current["maxlife"] == "1800"
    answer = probe.ctl("timeouts", "udp=1", "active=1h", "--json")
    assert answer.returncode == 0
    assert json.loads(answer.stdout)["udp"] == 1 and json.loads(answer.stdout)["maxlife"] == 3600
    back = probe.ctl_json("timeouts")
    assert back["udp"] == 1 and back["maxlife"] == 3600 and back["tcp"] == 15
    assert probe.ctl_json("statistics")["timeouts"] == back
    # The new inactive timeout applies: the flow ends by itself after a second of quiet.
    sport = probe.flow(2)
    record = probe.record(timeout=8)
    assert record is not None and record["sport"] == sport and record["end_reason"] == "idle"
    # Bad settings are refused, one line, and change nothing.
    for bad in (["bogus=1"], ["udp"], ["udp=soon"]):
        refused = probe.ctl("timeouts", *bad)
        assert refused.returncode == 1 and refused.stdout == ""
        assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith("pyprobe ctl: ")
    assert probe.ctl_json("timeouts") == back


@live
def test_send_template_unknown_command_and_a_silent_client(probe):
    answer = probe.ctl("send-template")
    assert answer.returncode == 0 and answer.stdout.strip() == "ok"
    unknown = probe.ctl("frobnicate")           # ctl knows its commands: a usage error (2), not a refusal (1)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "unknown command 'frobnicate'" in unknown.stderr and len(unknown.stderr.splitlines()) == 1
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:      # the probe refuses it too
        raw.connect(str(probe.sock_path))
        raw.sendall(b"frobnicate --json\n")
        assert "unknown command" in json.loads(raw.makefile().read())["error"]
    assert probe.ctl("statistics", "extra").returncode == 1
    # A client that connects and says nothing holds up neither the meter nor other clients.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(probe.sock_path))
        probe.flow(3)
        started = time.monotonic()
        assert probe.wait_packets(3)["meter"]["packets_read"] == 3
        assert time.monotonic() - started < 3
        # Given up on after a while: the server closes the connection unanswered.
        silent.settimeout(8)
        assert silent.recv(100) == b""
    assert probe.proc.poll() is None


@live
def test_shutdown_exits_and_removes_the_socket(probe):
    sport = probe.flow(3)
    probe.wait_packets(3)
    answer = probe.ctl("shutdown")
    assert answer.returncode == 0 and answer.stdout.strip() == "ok"
    rc, records, err = probe.wait_exit()
    assert rc == 0
    # shutdown ends the flow while the capture goes on: forced (forcedEnd on the wire), not eof
    assert [(r["sport"], r["packets"], r["end_reason"]) for r in records] == [(sport, 3, "forced")]
    assert "pyprobe statistics" in err
    assert not os.path.exists(probe.sock_path)
    gone = ctl(probe.sock_path, "statistics")
    assert gone.returncode == 2 and "cannot connect" in gone.stderr


@live
def test_stale_socket_is_replaced_and_a_live_one_is_not(sockdir):
    path = sockdir / "ctl.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()                             # the file stays, nobody listens
    first = LiveProbe(path)
    try:
        assert first.ctl("statistics").returncode == 0
        # A second probe on the same path must not take the socket from the first.
        second = subprocess.run([PYPROBE, "-i", "lo", "-c", str(path), "udp", "port", "9"],
                                capture_output=True, text=True, timeout=15)
        assert second.returncode == 2 and "listening" in second.stderr
        assert first.ctl("statistics").returncode == 0
        assert first.ctl("shutdown").returncode == 0
        assert first.wait_exit()[0] == 0
    finally:
        first.kill()
    assert not path.exists()


# -- no capture privileges needed ---------------------------------------------------

def test_unreachable_socket_exits_2_with_one_line(sockdir):
    result = ctl("/nonexistent", "statistics")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "pyprobe ctl: cannot connect to /nonexistent: No such file or directory\n"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sockdir / "stale.sock"))
    stale.close()
    refused = ctl(sockdir / "stale.sock", "statistics")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "Connection refused" in refused.stderr


def test_help_lists_the_commands():
    result = subprocess.run([PYPROBE, "ctl", "--help"], capture_output=True, text=True, timeout=15)
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"\n  {command} " in result.stdout
    missing = subprocess.run([PYPROBE, "ctl", "statistics"], capture_output=True, text=True, timeout=15)
    assert missing.returncode == 2


OPTION_VALUES = {"by": "flows", "watch": "2", "monitor": "m"}


def whole(answer):
    return answer if isinstance(answer, str) else "".join(answer)


def test_every_command_of_the_table_is_served_helped_and_checked(sockdir):
    """ctl's one table of commands: the server answers each (a request of one with arguments
    it does not take is refused), --help shows each with its help, and ctl refuses an option
    for a command that does not take it."""
    from pyprobe import ctl as ctl_module, settings
    from pyprobe.control import ControlServer
    from pyprobe.probe import Probe
    help_text = ctl_module.build_parser().format_help()
    probe = Probe(settings.parse(["-r", str(ANDROID), "-q"]))
    server = ControlServer(str(sockdir / "ctl.sock"), probe)
    try:
        for name, command in ctl_module.COMMANDS.items():
            assert command.help and f"\n  {name} " in help_text and command.help[:30] in " ".join(help_text.split())
            assert not whole(server.handle(f"{name} --json")).startswith('{"error"'), name
            extra = whole(server.handle(f"{name} 1"))
            assert ("takes no arguments" in extra) == (not command.arguments), (name, extra)
            for dest in set(ctl_module.OPTIONS_OF_COMMANDS) - set(command.options):
                with pytest.raises(SystemExit) as refused:
                    ctl_module.main(["-c", "/nonexistent", f"--{dest}={OPTION_VALUES[dest]}", name])
                assert refused.value.code == 2
    finally:
        server.close()
        probe.source.close()


def test_path_that_is_not_a_socket_is_refused(sockdir):
    path = sockdir / "precious.txt"
    path.write_text("keep me\n")
    result = subprocess.run([PYPROBE, "-r", str(ANDROID), "-q", "-c", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "not a socket" in result.stderr and len(result.stderr.splitlines()) == 1
    assert path.read_text() == "keep me\n"


def test_file_run_serves_and_removes_the_socket(sockdir):
    path = sockdir / "ctl.sock"
    result = subprocess.run([PYPROBE, "-r", str(ANDROID), "-q", "--json", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout                      # the records, as without -c
    assert not path.exists()


# -- many clients, idle clients, a large dump (issue 11, item 11) ----------------------------

class StreamProbe:
    """pyprobe -r - -c SOCK --json, fed `capture` on standard input, which stays open."""

    def __init__(self, sock_path, capture):
        self.sock_path = sock_path
        self.proc = subprocess.Popen([PYPROBE, "-r", "-", "-c", str(sock_path), "--json", "-m", "300000"],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc.stdin.write(capture)
        self.proc.stdin.flush()

    def packets_read(self):
        answer = ctl(self.sock_path, "statistics", "--json")
        assert answer.returncode == 0, answer.stderr
        return json.loads(answer.stdout)["meter"]["packets_read"]

    def wait_packets(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.sock_path) and self.packets_read() >= n:
                return
            time.sleep(0.1)
        raise AssertionError(f"the probe did not read {n} packets")

    def finish(self):
        self.proc.stdin.close()
        err = self.proc.stderr.read()
        self.proc.wait(timeout=60)
        assert self.proc.returncode == 0 and b"Traceback" not in err, err.decode()


def udp_flows(n, first_port=1):
    """A capture of n one-packet UDP flows (distinct source address and port)."""
    import packets as P
    t0 = 1_700_000_000_000_000
    frames = [(t0 + i, P.eth_ip_packet(4, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "10.255.0.1", 17,
                                       first_port + i % 60000, 53)) for i in range(n)]
    return P.pcap_bytes(frames)


def connected(path, deadline):
    """A unix socket connected to path, retrying while the listen queue is full."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(str(path))
            return s
        except BlockingIOError:
            s.close()
            assert time.monotonic() < deadline, "the listen queue stayed full"
            time.sleep(0.01)


@live
def test_fifty_clients_at_once_are_all_answered(probe):
    """Fifty connections in the same instant, each asking for statistics, and fifty pyprobe ctl
    processes at once: every one is answered."""
    clients = []
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect(str(probe.sock_path))           # a full listen queue raises here
        s.send(b"statistics\n")
        clients.append(s)
    for s in clients:
        s.settimeout(20)
        assert b"packets read" in b"".join(iter(lambda: s.recv(65536), b""))
        s.close()
    procs = [subprocess.Popen([PYPROBE, "ctl", "-c", str(probe.sock_path), "statistics"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(50)]
    results = [(c.wait(timeout=60), c.stderr.read()) for c in procs]
    assert [rc for rc, _ in results] == [0] * 50, [err for rc, err in results if rc]


@live
def test_idle_clients_do_not_lock_out_a_real_one(probe):
    """300 connections that never send a line, replaced as the probe drops them: real
    clients are still answered, each within seconds."""
    stop = threading.Event()

    def hold_idle():
        idle = []
        while not stop.is_set():
            idle = [s for s in idle if not _closed_by_peer(s)]
            while len(idle) < 300 and not stop.is_set():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(str(probe.sock_path))
                except BlockingIOError:
                    s.close()
                    break
                idle.append(s)
            time.sleep(0.01)
        for s in idle:
            s.close()
    holder = threading.Thread(target=hold_idle)
    holder.start()
    try:
        time.sleep(1)
        for _ in range(3):
            started = time.monotonic()
            answer = ctl(probe.sock_path, "statistics", timeout=20)
            assert answer.returncode == 0, answer.stderr
            assert time.monotonic() - started < 5
    finally:
        stop.set()
        holder.join()


def _closed_by_peer(s):
    try:
        if s.recv(1) == b"":
            s.close()
            return True
    except BlockingIOError:
        return False
    except OSError:
        s.close()
        return True
    return False


def test_a_quiet_stream_still_answers(sockdir):
    """Standard input open and silent: the probe still serves its control socket."""
    probe = StreamProbe(sockdir / "c", udp_flows(10))
    probe.wait_packets(10)
    probe.finish()


def test_a_large_dump_is_streamed_while_the_meter_goes_on(sockdir):
    """200,000 flows: a client that asks for dump-flows and does not read yet holds up no one:
    statistics are answered and new packets metered meanwhile; then the dump arrives whole."""
    flows = 200_000
    probe = StreamProbe(sockdir / "c", udp_flows(flows))
    probe.wait_packets(flows, timeout=60)
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(str(sockdir / "c"))
    slow.sendall(b"dump-flows --json\n")
    time.sleep(0.5)
    more = udp_flows(1000, first_port=61000)[24:]          # records only: the stream goes on
    probe.proc.stdin.write(more)
    probe.proc.stdin.flush()
    started = time.monotonic()
    probe.wait_packets(flows + 1000, timeout=10)
    assert time.monotonic() - started < 5
    chunks = []
    slow.settimeout(30)
    while True:
        chunk = slow.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    dumped = json.loads(b"".join(chunks))
    assert len(dumped) == flows and sum(f["packets"] for f in dumped) == flows
    probe.finish()


# -- never its own export (issue 12, item 6) ----------------------------------------------------

def rounds_on_lo(probe):
    """Three rounds of 5 UDP datagrams to a socket on 127.0.0.1, 2 s apart so that records go
    out between them, over lo; then the probe is stopped. Checks that it exited 0 and
    printed the 15 packets; returns (its printed records, its stderr)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    other = receiver.getsockname()[1]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(3):
                for _ in range(5):
                    sender.sendto(b"x" * 32, ("127.0.0.1", other))
                time.sleep(2.0)
    finally:
        probe.terminate()
        out, err = probe.communicate(timeout=30)
        receiver.close()
    assert probe.returncode == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert sum(r["packets"] for r in printed if r["dport"] == other) == 15
    return printed, err


@live
def test_own_export_is_never_metered():
    """Capturing on lo, where the export to a collector on 127.0.0.1 goes: the flows of other
    traffic are exported, the export datagrams themselves never become flows."""
    import wire
    collector = wire.TimedCollector()
    port = int(collector.address.rsplit(":", 1)[1])
    probe = subprocess.Popen([PYPROBE, "-i", "lo", "-n", collector.address, "-v", "9", "-t", "inactive=1",
                              "--json", "udp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    printed, err = rounds_on_lo(probe)
    exported = collector.records()
    assert exported, "nothing was exported"
    assert not [r for r in printed if port in (r["sport"], r["dport"])], "the probe metered its own export"


@live
def test_a_collector_added_by_a_reload_is_not_metered_either(tmp_path):
    """SIGHUP brings a second collector on 127.0.0.1: the capture's filter is made again, so
    its export datagrams on lo never become flows either."""
    import wire
    first, second = wire.TimedCollector(), wire.TimedCollector()
    config = tmp_path / "probe.toml"
    config.write_text(f'[[collector]]\naddress = "{first.address}"\n')
    probe = subprocess.Popen([PYPROBE, "-i", "lo", "-f", str(config), "-t", "inactive=1", "--json", "udp"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    config.write_text(f'[[collector]]\naddress = "{first.address}"\n'
                      f'[[collector]]\naddress = "{second.address}"\n')
    probe.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    printed, err = rounds_on_lo(probe)               # records go out to both between the rounds
    assert second.records(), "the new collector got nothing"
    ports = {int(c.address.rsplit(":", 1)[1]) for c in (first, second)}
    assert not [r for r in printed if {r["sport"], r["dport"]} & ports], "the probe metered its own export"
