"""A real-time replay into nfcapd at its default socket buffer: records end a few at a time,
and the export buffer sends them in full datagrams, so nfcapd stores every one.

The capture is made by pyprobe generate (20,000 flows); a plain socket gets a copy of
every datagram, to measure how full they are; nfdump's per-key totals are compared with
the capture's own headers (tests/reference.py)."""

import subprocess
import time
from collections import defaultdict

import pytest

import wire
from collectors import PYPROBE, NfcapdCollector, UdpSink, ground_truth

FLOWS = 20_000
MAX_DATAGRAM = 1472                  # to a collector over IPv4 (pyprobe's default)
FULL = 0.9


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("realtime") / "generated.pcap"
    run = subprocess.run([PYPROBE, "generate", "--pcap", str(path), "--count", str(FLOWS), "--rate", "1000",
                          "--seed", "3", "--start-time", "1700000000", "-q"], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return path


def replay(capture, version, speed):
    """(nfdump's per-key [packets, octets], the datagrams a copy collector got, seconds taken)."""
    with NfcapdCollector(bufsize=0) as nfcapd:          # (nfcapd's own default buffer)
        with UdpSink() as sink:
            started = time.monotonic()
            run = subprocess.run([PYPROBE, "-r", str(capture), f"--realtime={speed}", "-q", "-v", str(version),
                                  "-n", f"127.0.0.1:{nfcapd.port}", "-n", f"127.0.0.1:{sink.port}"],
                                 capture_output=True, timeout=600)
            seconds = time.monotonic() - started
    try:
        assert run.returncode == 0, run.stderr
        stored = defaultdict(lambda: [0, 0])
        for r in nfcapd.records():
            key = (r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"])
            stored[key][0] += r["packets"]
            stored[key][1] += r["octets"]
    finally:
        nfcapd.cleanup()
    return {k: tuple(v) for k, v in stored.items()}, sink.datagrams, seconds


def check(capture, version, speed):
    stored, datagrams, seconds = replay(capture, version, speed)
    totals, _, _ = ground_truth(str(capture))
    assert len(totals) == FLOWS
    # Every record stored: nfdump's totals per key are the capture's.
    assert stored == {k: tuple(v) for k, v in totals.items()}
    # In full datagrams: those with flow records are 90% full on average, and the ones
    # below that are the last of a flush interval (1 s) and the one at the end.
    parser = wire.Parser()
    sizes = [len(d) for d in datagrams if parser.parse(d).records]
    assert sum(sizes) / len(sizes) >= FULL * MAX_DATAGRAM
    part_filled = sum(size < FULL * MAX_DATAGRAM for size in sizes)
    assert part_filled <= seconds + 2, (part_filled, len(sizes), seconds)
    return len(sizes)


def test_a_quick_realtime_replay_fills_its_datagrams(capture):
    """--realtime=100 (5 s): without the buffer, 3,655 datagrams of 407 bytes on average."""
    assert check(capture, 10, 100) < 1100


@pytest.mark.long
@pytest.mark.parametrize("version", [9, 10])
def test_realtime_10_into_nfcapd_stores_every_record_in_full_datagrams(capture, version):
    """Issue 23's case (52 s each): without the buffer 11,561 datagrams of 156 bytes on
    average, and nfcapd at its default buffer lost a quarter of them."""
    check(capture, version, 10)
