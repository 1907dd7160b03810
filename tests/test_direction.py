"""--direction (issue 12, part): which way each packet crossed its interface decides whether
it is metered and which interface a record names. Capture files of Linux cooked capture
(SLL, SLL2: tcpdump -i any) say it per packet; a forwarded packet appears twice, received
on one interface and sent on another, and must be counted once per direction."""

import json
import struct
import subprocess

import pytest

import packets as P
import wire

T0 = 1_700_000_000_000_000
N = 7
IN_IF, OUT_IF = 3, 5


def sll2(ifindex, pkttype, ip):
    return struct.pack(">HHIHBB8s", 0x0800, 0, ifindex, 1, pkttype, 6, b"\x02\0\0\0\0\x01") + ip


def sll(pkttype, ip):
    return struct.pack(">HHH8sH", pkttype, 1, 6, b"\x02\0\0\0\0\x01", 0x0800) + ip


def forwarded(linktype):
    """N packets of one UDP flow, each seen received on IN_IF and sent on OUT_IF."""
    frames = []
    for i in range(N):
        ip = P.ip_packet(4, "192.0.2.1", "198.51.100.2", 17, 5000, 53, payload=b"q" * i)
        if linktype == 276:
            frames += [(T0 + i * 1000, sll2(IN_IF, 0, ip)), (T0 + i * 1000 + 10, sll2(OUT_IF, 4, ip))]
        else:
            frames += [(T0 + i * 1000, sll(0, ip)), (T0 + i * 1000 + 10, sll(4, ip))]
    return frames


def run(tmp_path, linktype, *args):
    path = P.write_pcap(str(tmp_path / "fwd.pcap"), forwarded(linktype), linktype=linktype)
    proc = subprocess.run([wire.PYPROBE, "-r", path, "--json", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def seen(records):
    return sorted((r["direction"], r["in_if"], r["out_if"], r["packets"]) for r in records)


@pytest.mark.parametrize("linktype", [276, 113])
def test_ingress_counts_a_forwarded_packet_once(tmp_path, linktype):
    records, err = run(tmp_path, linktype, "--direction", "ingress")
    assert seen(records) == [(0, IN_IF if linktype == 276 else 0, 0, N)]
    assert f"other_direction {N}" in err


@pytest.mark.parametrize("linktype", [276, 113])
def test_egress_names_the_output_interface(tmp_path, linktype):
    records, _ = run(tmp_path, linktype, "--direction", "egress")
    assert seen(records) == [(1, 0, OUT_IF if linktype == 276 else 0, N)]


def test_both_counts_once_per_direction_and_is_the_default_for_files(tmp_path):
    assert run(tmp_path, 276)[0] == run(tmp_path, 276, "--direction", "both")[0]
    records, err = run(tmp_path, 276)
    assert seen(records) == [(0, IN_IF, 0, N), (1, 0, OUT_IF, N)]
    assert "other_direction" not in err or "other_direction 0" in err


@pytest.mark.parametrize("version", [9, 10])
def test_flow_direction_on_the_wire(tmp_path, version):
    path = P.write_pcap(str(tmp_path / "fwd.pcap"), forwarded(276), linktype=276)
    collector = wire.UdpCollector()
    try:
        wire.run_pyprobe(["-r", path, "-n", collector.address, "-v", str(version), "--direction", "both"])
        collector.drain()
        got = sorted((r[61], r[10], r[14], r[wire.IN_PKTS]) for m in collector.messages() for r in m.records)
    finally:
        collector.close()
    assert got == [(0, IN_IF, 0, N), (1, 0, OUT_IF, N)]
