"""NetFlow v5 counters are 32-bit: a flow is ended before its octets would wrap,
and the pieces add up to what was sent. v9/IPFIX carry 64-bit counters whole."""

import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from packets import ethernet, ETH_IPV4, udp

PYPROBE = shutil.which("pyprobe", path=str(Path(sys.executable).parent))
PACKETS = 70_000          # x 65535 octets = 4.59e9 > 2**32
TOTAL_LENGTH = 65535
SNAPLEN = 42              # only the headers are captured: octets come from the IP header


def jumbo_capture(path):
    """One UDP flow of maximum-size IPv4 packets, captured headers-only, 1 ms apart."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, TOTAL_LENGTH, 1, 0, 64, 17, 0,
                     socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    frame = ethernet(ip + udp(5000, 6000), ETH_IPV4)[:SNAPLEN]
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))
        for i in range(PACKETS):
            t = 1_600_000_000_000_000 + i * 1000
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), 14 + TOTAL_LENGTH) + frame)


def export_records(capture, version):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    port = sink.getsockname()[1]
    subprocess.run([PYPROBE, "-r", str(capture), "-n", f"127.0.0.1:{port}", "-v", str(version), "-q",
                    "-t", "active=1d"], check=True, timeout=120)
    datagrams = []
    try:
        while True:
            datagrams.append(sink.recv(65535))
    except socket.timeout:
        pass
    return datagrams


def v5_records(datagrams):
    """(packets, octets) of every v5 record, read by the v5 layout."""
    out = []
    for d in datagrams:
        version, count = struct.unpack_from("!HH", d)
        assert version == 5
        for i in range(count):
            packets, octets = struct.unpack_from("!II", d, 24 + 48 * i + 16)
            out.append((packets, octets))
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("jumbo") / "jumbo.pcap"
    jumbo_capture(path)
    return path


def test_v5_splits_flow_before_32bit_wrap(capture):
    records = v5_records(export_records(capture, 5))
    assert len(records) == 2, records
    assert all(octets <= 0xFFFFFFFF for _, octets in records)
    assert sum(p for p, _ in records) == PACKETS
    assert sum(o for _, o in records) == PACKETS * TOTAL_LENGTH
    # the first piece is as full as 32 bits allow
    assert records[0][1] == (0xFFFFFFFF // TOTAL_LENGTH) * TOTAL_LENGTH


def test_json_keeps_one_64bit_flow(capture):
    out = subprocess.run([PYPROBE, "-r", str(capture), "--json", "-q", "-t", "active=1d"],
                         capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert len(out) == 1
    assert f'"octets": {PACKETS * TOTAL_LENGTH}' in out[0]
