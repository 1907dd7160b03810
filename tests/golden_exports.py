"""Digests of the predefined records' export and JSON output, to hold them byte for byte.

tests/data/predefined_exports.json was written by this script with the code before
record definitions existed (commit 8eb8b6a): `python tests/golden_exports.py
[PYTHON -m pyprobe ...]` from that checkout. tests/test_predefined_records.py runs the
same exports with today's code and compares. A change that alters a predefined
record's bytes on purpose regenerates the file, and says so in its commit.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "pcaps", "corpus"))
CAPTURES = ["ndpi/anyconnect-vpn.pcap", "zeek/icmp_dot1q.pcap", "zeek/pppoe-over-qinq.pcap", "ndpi/syslog.pcap",
            "ndpi/1kxun.pcap", "zeek/ipv6-http-atomic-frag.pcap"]
LEVELS = ("full", "port", "proto", "ip", "vlan", "ether")
VERSIONS = (5, 9, 10)
GOLDEN = os.path.join(HERE, "data", "predefined_exports.json")


def sink():
    """A UDP socket on loopback that holds what is sent to it until drain()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)              # (over loopback every datagram is queued once sent)
    return sock


def drain(sock):
    """sha256 over the datagrams queued at the sink, each after its 4-byte length."""
    digest = hashlib.sha256()
    try:
        while True:
            datagram = sock.recv(65536)
            digest.update(len(datagram).to_bytes(4, "big") + datagram)
    except BlockingIOError:
        return digest.hexdigest()


def export_digest(command, capture, version, level):
    """drain()'s digest of the datagrams that `command -r capture` sends."""
    sock = sink()
    try:
        run = subprocess.run(command + ["-r", capture, "-T", level, "-v", str(version), "-q",
                                        "-n", "127.0.0.1:%d" % sock.getsockname()[1]],
                             capture_output=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return drain(sock)
    finally:
        sock.close()


def json_digest(command, capture, level):
    run = subprocess.run(command + ["-r", capture, "-T", level, "--json"], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return hashlib.sha256(run.stdout).hexdigest()


def digests(command):
    out = {}
    for rel in CAPTURES:
        capture = os.path.join(CORPUS, rel)
        for level in LEVELS:
            out[f"{rel} -T {level} --json"] = json_digest(command, capture, level)
            for version in VERSIONS:
                out[f"{rel} -T {level} -v {version}"] = export_digest(command, capture, version, level)
    return out


if __name__ == "__main__":
    command = sys.argv[1:] or [sys.executable, "-m", "pyprobe"]
    with open(GOLDEN, "w") as f:
        json.dump(digests(command), f, indent=1, sort_keys=True)
        f.write("\n")
