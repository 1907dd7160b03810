"""A flow's times are its packets' own capture times, however the packets were read.

With several captures (-i any, or -i r1 -i r2 on the router of tests/test_router.py) the
probe meters one interface's batch after another's and ticks its clock with the wall
clock between them, while the kernel may still hold packets of the other interface (it
hands a buffer block over once full or 100 ms old). Those packets' flows must still
start and end when the kernel stamped them, as tcpdump shows them, not when the clock
had got to: each packet here is a flow of its own, one every 10 ms, while traffic the
other way keeps the other interface's capture busy."""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

import test_router
from pyprobe._meter import Meter
from packets import DLT_EN10MB, eth_ip_packet, make_batch
from pyprobe.records import unpack
from test_router import NET4, PYPROBE, Router

pytestmark = test_router.pytestmark

FLOWS, APART_S = 20, 0.010
PORT, BUSY_PORT, FIRST_SPORT = 5353, 5354, 41000
TOLERANCE_S = 0.001
# Each packet from a port of its own, so that each is a flow whose start is that packet's time.
SEND = """
import socket, time
for i in range({flows}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(({src!r}, {first} + i))
    s.sendto(b"t" * 40, ({dst!r}, {port}))
    s.close()
    time.sleep({apart})
"""
# The other way, a packet every 2 ms until killed.
BUSY = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    s.sendto(b"b" * 40, ({dst!r}, {port}))
    time.sleep(0.002)
"""


@pytest.fixture(scope="module")
def router():
    r = Router()
    try:
        yield r
    finally:
        r.close()


def pcap_times(path):
    """{source port: capture time} of the UDP packets of a tcpdump -i any capture (Linux
    cooked v1 or v2 headers, IPv4)."""
    data = path.read_bytes()
    linktype = struct.unpack_from("<I", data, 20)[0]
    link_bytes = {113: 16, 276: 20}[linktype]
    times, pos = {}, 24
    while pos + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, pos)
        ip = pos + 16 + link_bytes
        ihl = (data[ip] & 0x0F) * 4
        sport = struct.unpack_from("!H", data, ip + ihl)[0]
        times.setdefault(sport, sec + usec / 1e6)
        pos += 16 + caplen
    return times


def start_ns(router, *args, **kwargs):
    return router.start(router.r, *args, **kwargs)


def wait_listening(tcpdump):
    """tcpdump says so on standard error once its capture is open."""
    for line in tcpdump.stderr:
        if "listening" in line:
            return
    pytest.fail("tcpdump ended before it listened")


@pytest.mark.parametrize("interfaces", [("any",), ("r1", "r2")], ids=["any", "r1-r2"])
def test_flow_times_are_the_packets_kernel_times(router, tmp_path, interfaces):
    h1, h2 = f"{NET4[0]}.2", f"{NET4[1]}.2"
    dump = tmp_path / "truth.pcap"
    tcpdump = start_ns(router, "tcpdump", "-i", "any", "-Q", "in", "-U", "-w", str(dump), "-n",
                       f"udp and dst port {PORT}", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    probe = start_ns(router, PYPROBE, *[a for name in interfaces for a in ("-i", name)], "--json",
                     "-t", "udp=30", f"udp and dst port {PORT} or dst port {BUSY_PORT}",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy = router.start(router.h2, sys.executable, "-c", BUSY.format(dst=h1, port=BUSY_PORT))
    try:
        wait_listening(tcpdump)
        time.sleep(1.5)                  # the probe's captures open
        sent = router.run(router.h1, sys.executable, "-c", SEND.format(
            flows=FLOWS, src=h1, dst=h2, port=PORT, first=FIRST_SPORT, apart=APART_S))
        assert sent.returncode == 0, sent.stderr
        time.sleep(0.3)                  # (the kernel hands over what it holds within 100 ms)
    finally:
        busy.kill()
        busy.wait()
        for proc in (probe, tcpdump):
            proc.send_signal(signal.SIGTERM)
        out, err = probe.communicate(timeout=30)
        tcpdump.communicate(timeout=30)
    assert probe.returncode == 0, err
    records = {r["sport"]: r for r in map(json.loads, out.splitlines()) if r["dport"] == PORT}
    truth = pcap_times(dump)
    assert sorted(truth) == sorted(records) == list(range(FLOWS + FIRST_SPORT))[FIRST_SPORT:]
    late = {sport: round((records[sport]["start"] - t) * 1000, 3) for sport, t in truth.items()
            if abs(records[sport]["start"] - t) > TOLERANCE_S or abs(records[sport]["end"] - t) > TOLERANCE_S}
    assert not late, f"flows whose start or end is not their packet's time (ms later than tcpdump's): {late}"
    assert any(r["dport"] == BUSY_PORT for r in map(json.loads, out.splitlines()))


def test_meter_keeps_times_behind_its_clock():
    """The meter's side of it, on its own: a batch older than the one before, and packets
    older than a tick, keep their own times in the records (first and last); the
    timeouts still run on the clock."""
    base = 1_700_000_000_000_000
    meter = Meter(DLT_EN10MB, timeouts={"udp": 10})

    def batch(*packets):
        return make_batch([(base + ms * 1000, eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 17, sport, PORT))
                           for ms, sport in packets])
    meter.process(*batch((50, 1)))
    meter.expire(base + 80_000)
    meter.process(*batch((10, 2), (20, 3), (30, 2), (90, 3), (25, 3)))
    assert meter.clock_us == base + 90_000
    times = {r.sport: (round(r.start * 1000) - base // 1000, round(r.end * 1000) - base // 1000)
             for r in unpack(meter.flush())}
    assert times == {1: (50, 50), 2: (10, 30), 3: (20, 90)}
