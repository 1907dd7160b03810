"""Transports: a collector that is down (UDP), IPFIX over TCP (RFC 7011 section 10.4),
a TCP collector restarted while pyprobe runs, and TCP refused for v9."""

import fcntl
import ipaddress
import re
import socket
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest

import reference
import wire
from packets import eth_ip_packet, pcap_bytes, write_pcap

ANDROID = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")
T0 = 1_660_000_000_000_000



class TcpCollector:
    """A listener on 127.0.0.1 that accepts connections one after another and keeps each one's bytes."""

    def __init__(self, port=0):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.streams = []              # one bytearray per accepted connection
        self.conn = None
        self.finished = 0              # connections the peer closed (or we stopped)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            data = bytearray()
            with self.lock:
                self.conn = conn
                self.streams.append(data)
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                with self.lock:
                    data += chunk
            conn.close()
            with self.lock:
                self.finished += 1

    def wait_finished(self, n=1, timeout=10):
        """Wait until n connections have ended (pyprobe closed them): everything they carried is read."""
        deadline = time.monotonic() + timeout
        while self.finished < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.finished >= n, "the connection was not closed by pyprobe"

    def stop(self):
        """Close the listener and the current connection (a collector going away)."""
        self.listener.close()
        with self.lock:
            if self.conn is not None:
                try:
                    self.conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.thread.join(5)

    def messages(self, index):
        """Split connection `index`'s byte stream into IPFIX messages by their length field and parse them."""
        with self.lock:
            data = bytes(self.streams[index])
        parser, out, pos = wire.Parser(), [], 0
        while pos < len(data):
            assert len(data) - pos >= 16, "stream ends inside a message header"
            version, length = struct.unpack_from(">HH", data, pos)
            assert version == 10 and length >= 16 and pos + length <= len(data), (pos, version, length)
            out.append(parser.parse(data[pos:pos + length], ("tcp", index)))
            pos += length
        return out


def check_tcp_stream(msgs):
    """Templates first, every data set decodable."""
    assert msgs, "no message on the connection"
    assert msgs[0].templates or msgs[0].options_templates, "a new connection starts with the templates"
    flows = wire.flow_stream(msgs)
    assert flows and flows[0].templates, "the flows' domain starts with the templates"
    for m in msgs:
        assert not m.unknown_sets


def check_tcp_sequence(msgs):
    """RFC 7011: sequence = data records sent before this message in its observation domain; within one
    stream nothing is lost, so each message's sequence is the previous one's (same domain) plus its data records."""
    by_domain = {}
    for m in msgs:
        by_domain.setdefault(m.header["domain_id"], []).append(m)
    for stream in by_domain.values():
        steps = [(m.header["sequence"], m.count_data_records + m.count_options_data_records) for m in stream]
        for (seq_a, n_a), (seq_b, _) in zip(steps, steps[1:]):
            assert seq_b == (seq_a + n_a) & 0xffffffff, steps


def totals(msgs):
    got = {}
    for m in msgs:
        for r in m.records:
            ipver, src, dst, proto, sport, dport = wire.flow_key(r)
            key = (ipver, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), proto, sport, dport)
            entry = got.setdefault(key, [0, 0])
            entry[0] += r[wire.IN_PKTS]
            entry[1] += r[wire.IN_BYTES]
    return got


def reference_totals(path):
    return {(k[0], str(ipaddress.ip_address(k[1])), str(ipaddress.ip_address(k[2])), *k[3:]): v
            for k, v in reference.totals(path).totals.items()}


# -- UDP collector down ------------------------------------------------------------------

@pytest.fixture(scope="module")
def busy_capture(tmp_path_factory):
    """10,000 one-packet flows over 40 s: many datagrams across several batches (each batch's
    datagrams go in one sendmmsg call, which hears of a refusal at the next call)."""
    frames = [(T0 + i * 4_000, eth_ip_packet(4, f"10.{20 + i // 62500}.{i // 250 % 250}.{i % 250}", "10.21.0.1",
                                             17, 53, 53))
              for i in range(10_000)]
    return str(write_pcap(tmp_path_factory.mktemp("down") / "busy.pcap", frames))


@pytest.mark.parametrize("version", [5, 9, 10])
def test_collector_down_udp(busy_capture, version):
    port = wire.free_udp_port()
    proc = wire.run_pyprobe(["-r", busy_capture, "-v", str(version), "-t", "inactive=1",
                             "-n", f"127.0.0.1:{port}"], check_exit=0)
    assert "Traceback" not in proc.stderr
    line = re.search(r"export to 127\.0\.0\.1:\d+ \([^)]*\): (\d+) datagrams, (\d+) records, (\d+) send errors",
                     proc.stderr)
    assert line, proc.stderr
    assert int(line[3]) > 1, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("pyprobe: ") and "127.0.0.1" in ln]
    assert len(warnings) == 1, proc.stderr           # rate limited: at most once a minute


# -- IPFIX over TCP --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def android_over_tcp():
    collector = TcpCollector()
    try:
        proc = wire.run_pyprobe(["-r", ANDROID, "-v", "10", "-P", "tcp", "-n", f"127.0.0.1:{collector.port}"])
        assert "Traceback" not in proc.stderr
        collector.wait_finished(1)
        msgs = collector.messages(0)
    finally:
        collector.stop()
    assert len(collector.streams) == 1
    return msgs


def test_ipfix_over_tcp_totals(android_over_tcp):
    msgs = android_over_tcp
    check_tcp_stream(msgs)
    assert sum(1 for m in msgs if m.templates) == 1, "over TCP templates go once per connection"
    assert sum(1 for m in msgs if m.options_templates) <= 1
    assert totals(msgs) == reference_totals(ANDROID)


def test_ipfix_over_tcp_sequence(android_over_tcp):
    check_tcp_sequence(android_over_tcp)


def test_tcp_refused_for_v9():
    proc = wire.run_pyprobe(["-r", ANDROID, "-v", "9", "-P", "tcp", "-n", "127.0.0.1:4739"], check_exit=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyprobe: "), proc.stderr
    assert "Traceback" not in proc.stderr


def frames_part(prefix, start_us, flows, per_flow, step_us):
    """`flows` flows of `per_flow` UDP packets each, one after another, `step_us` apart."""
    out = []
    t = start_us
    for f in range(flows):
        src = f"{prefix}.{f // 250}.{f % 250}"
        for _ in range(per_flow):
            out.append((t, eth_ip_packet(4, src, "10.99.0.1", 17, 7000, 7001)))
            t += step_us
    return out


def records_of(frames):
    return pcap_bytes(frames)[24:]           # the records, without the file header


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    """(messages on the first connection, on the second, pyprobe's stderr)."""
    tmp_path = tmp_path_factory.mktemp("restart")
    first = TcpCollector()
    port = first.port
    err = open(tmp_path / "stderr", "w+")
    proc = subprocess.Popen([wire.PYPROBE, "-r", "-", "-v", "10", "-P", "tcp", "-t", "inactive=1",
                             "-n", f"127.0.0.1:{port}"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=err)
    second = None
    try:
        # part 1: 100 flows of 100 packets over 10 s; flows end (idle 1 s) while it is read
        part1 = frames_part("10.80", T0, 100, 100, 1000)
        proc.stdin.write(pcap_bytes(part1))
        proc.stdin.flush()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if first.streams and any(m.records for m in first.messages(0)):
                break
            time.sleep(0.05)
        before = first.messages(0)
        assert any(m.records for m in before), "nothing arrived before the restart"
        time.sleep(1.2)                                  # past pyprobe's reconnect back-off
        first.stop()                                     # the collector goes away...
        second = TcpCollector(port)                      # ...and comes back on the same port
        # part 2a: later packets, enough to be read at once: pyprobe writes, finds the connection gone
        part2a = frames_part("10.85", T0 + 100_000_000, 82, 100, 1000)
        proc.stdin.write(records_of(part2a))
        proc.stdin.flush()
        time.sleep(1.5)
        # part 2b: the records that must reach the restarted collector
        part2b = frames_part("10.90", T0 + 200_000_000, 20, 10, 10_000)
        proc.stdin.write(records_of(part2b))
        proc.stdin.close()
        assert proc.wait(30) == 0
        second.wait_finished(1)
        assert len(second.streams) == 1, "pyprobe did not reconnect"
        after = second.messages(0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if second is not None:
            second.stop()
        err.seek(0)
        stderr = err.read()
        err.close()
    return before, after, stderr


def test_tcp_collector_restarted(restarted):
    before, after, stderr = restarted
    assert "Traceback" not in stderr
    check_tcp_stream(before)
    check_tcp_stream(after)                             # the new connection starts with templates
    got = totals(after)
    for f in range(20):
        key = (4, f"10.90.0.{f}", "10.99.0.1", 17, 7000, 7001)
        assert got.get(key, [0])[0] == 10, (key, got.get(key))
    assert re.search(r"connections 2\b", stderr), stderr


def whole_messages(data):
    """The IPFIX messages wholly inside a byte stream's prefix, parsed."""
    parser, out, pos = wire.Parser(), [], 0
    while len(data) - pos >= 16:
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if length < 16 or pos + length > len(data):
            break
        out.append(parser.parse(data[pos:pos + length], "tcp"))
        pos += length
    return out


def test_tcp_collector_killed_with_data_unacknowledged_loses_only_what_it_took():
    """A collector that stops reading, its window closes and pyprobe's kernel queue fills,
    then it dies (reset). What its TCP had acknowledged is in its buffer, lost with it
    (the test peeks at it to know what); everything else must reach the next connection:
    together, every record pyprobe made."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    listener.settimeout(20)
    proc = subprocess.Popen([wire.PYPROBE, "-r", "-", "-v", "10", "-P", "tcp", "-t", "inactive=1",
                             "-n", f"127.0.0.1:{listener.getsockname()[1]}"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # 20,000 one-packet flows over 20 s of capture time, ending as it is read: megabytes of records
        frames = [(T0 + i * 1000, eth_ip_packet(4, f"10.70.{i // 250}.{i % 250}", "10.99.0.1", 17, 7000, 7001))
                  for i in range(20_000)]
        proc.stdin.write(pcap_bytes(frames))
        proc.stdin.flush()
        first, _ = listener.accept()
        unread, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 1.0:           # until the window is shut and nothing moves
            time.sleep(0.1)
            now = struct.unpack("i", fcntl.ioctl(first.fileno(), termios.FIONREAD, b"\0" * 4))[0]
            if now != unread:
                unread, stable_since = now, time.monotonic()
        taken = first.recv(unread, socket.MSG_PEEK | socket.MSG_WAITALL)   # acknowledged, never read
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        first.close()                                           # dies: a reset
        second, _ = listener.accept()
        proc.stdin.close()
        second.settimeout(30)
        data = b"".join(iter(lambda: second.recv(1 << 16), b""))
        err = proc.stderr.read().decode()
        assert proc.wait(30) == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    lost_with_it = sum(m.count_data_records for m in whole_messages(taken))
    delivered = sum(m.count_data_records for m in whole_messages(data))
    made = int(re.search(r"records\s+(\d+)", err).group(1))
    assert made == 20_000
    assert lost_with_it + delivered == made, (lost_with_it, delivered, err)
    assert re.search(r"resent [1-9]", err), err


def test_tcp_collector_restarted_sequence(restarted):
    before, after, _ = restarted
    check_tcp_sequence(before)
    check_tcp_sequence(after)
