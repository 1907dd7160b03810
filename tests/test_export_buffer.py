"""The export buffer (exporter.Collector): records wait until they fill a datagram or the
oldest has waited --flush-interval, and closing sends what waits. Records are fed a few
at a time on a moving clock, as the run loop does at every tick; the datagrams are read
back from a loopback socket after every step with tests/wire.py, so when each record
left is known to the step."""

import random
import socket
from collections import Counter

import pytest

import wire
from pyprobe.exporter import Collector, CollectorSpec, ExportSettings
from test_export_encoders import many_records

FLUSH_MS = 1000
MAX_DATAGRAM = 1472


class LoopbackSink:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)        # (over loopback a datagram is queued once sent)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]

    def take(self):
        out = []
        try:
            while True:
                out.append(self.sock.recv(65536))
        except BlockingIOError:
            return out


def row_key(row):
    return row[:6]          # ipver, src, dst, proto, sport, dport: unique in many_records


def decoded(parser, datagrams):
    return [[wire.flow_key(r) for r in parser.parse(d).records] for d in datagrams]


def trickle(version, flush_interval, seed=7, n=3000):
    """Feed n records in batches of 0 to 7 on a clock moving 10 to 300 ms a step. Returns
    (records sent at each step: [(now_ms, 'export'|'flush'|'close', [datagram sizes],
    [keys])], arrival ms of each key)."""
    rnd = random.Random(seed)
    buf, rows = many_records(n, seed=seed, v6_share=0.0 if version == 5 else 0.3)
    stride = len(buf) // n
    sink = LoopbackSink()
    collector = Collector(CollectorSpec(sink.address, version),
                          ExportSettings(flush_interval=flush_interval, max_datagram=MAX_DATAGRAM))
    parser = wire.Parser()
    arrived, steps = {}, []
    now_ms, i = 1_710_000_100_000, 0

    def sent(kind):
        datagrams = sink.take()
        keys = decoded(parser, datagrams)
        steps.append((now_ms, kind, [len(d) for d in datagrams], [k for each in keys for k in each]))

    try:
        collector.export(b"", now_ms, 0)
        sent("export")
        while i < n:
            now_ms += rnd.randrange(10, 300)
            take = min(rnd.randrange(0, 8), n - i)
            for row in rows[i:i + take]:
                arrived[row_key(row)] = now_ms
            collector.export(buf[i * stride:(i + take) * stride], now_ms, 0)
            sent("export")
            collector.flush_due(now_ms)
            sent("flush")
            i += take
        collector.close()
        sent("close")
    finally:
        sink.sock.close()
    return steps, arrived, Counter(row_key(r) for r in rows)


@pytest.mark.parametrize("version", [5, 9, 10])
def test_records_fill_datagrams_and_wait_no_longer_than_the_flush_interval(version):
    steps, arrived, every = trickle(version, FLUSH_MS / 1000)
    # Every record leaves exactly once; the last ones when the collector closes.
    assert Counter(k for _, _, _, keys in steps for k in keys) == every
    # None waits longer than the flush interval: at each step, what has not left yet
    # arrived less than FLUSH_MS ago.
    left = {}
    for now_ms, _, _, keys in steps:
        for k in keys:
            left[k] = now_ms
    for now_ms, kind, _, _ in steps:
        if kind == "flush":
            waiting = [k for k, t in arrived.items() if t <= now_ms < left[k]]
            assert all(now_ms - arrived[k] < FLUSH_MS for k in waiting)
    # Datagrams that leave because they are full are at least 90% full on average; the
    # others are the last of a flush interval (at most one each) and the close.
    full = [size for _, kind, sizes, _ in steps if kind == "export" for size in sizes]
    flushed = [sizes for _, kind, sizes, _ in steps if kind == "flush" and sizes]
    assert full and sum(full) / len(full) >= 0.9 * MAX_DATAGRAM
    span_ms = steps[-1][0] - steps[0][0]
    assert len(flushed) <= span_ms // FLUSH_MS + 1


@pytest.mark.parametrize("version", [5, 9, 10])
def test_no_flush_interval_sends_each_batch_at_once(version):
    steps, arrived, every = trickle(version, 0, n=600)
    assert Counter(k for _, _, _, keys in steps for k in keys) == every
    for now_ms, kind, _, keys in steps:
        assert all(arrived[k] == now_ms for k in keys) and (kind == "export" or not keys)


def test_datagrams_to_a_udp_collector_are_paced_at_the_export_rate():
    """--export-rate: 32 at once, then the rate; none lost on the way (a collector's default
    socket buffer holds some 90 full datagrams)."""
    import time
    from pyprobe.transport import UdpTransport
    sink = LoopbackSink()
    host, port = sink.address.split(":")
    transport = UdpTransport(sink.address, host, int(port), rate=2000)
    try:
        started = time.monotonic()
        sent = transport.send_many([b"x" * 1400] * 232)
        took = time.monotonic() - started
        assert sent == 232 and len(sink.take()) == 232
        assert took >= (232 - 32) / 2000 * 0.95, took          # 0.1 s at least: the rate
        assert transport.statistics()["paced_seconds"] > 0
    finally:
        transport.close()
        sink.sock.close()
