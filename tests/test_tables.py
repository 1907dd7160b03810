"""The table a person reads (pyprobe -r FILE without --json, pyprobe ctl dump-flows and top):
every row's columns line up with the heading above it, IPv6 addresses (up to 39
characters) included, and a table of IPv4 flows keeps nfdump's narrow -o line layout.
The truth is the same run's --json records: each value must stand in its heading's column
(a left-aligned one starting where its heading starts, a right-aligned one ending where
its heading ends)."""

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import packets as P  # noqa: E402
from pyprobe import records  # noqa: E402
from pyprobe.output import TableWriter  # noqa: E402

PYPROBE = os.path.join(os.path.dirname(sys.executable), "pyprobe")
ANDROID = Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap"     # IPv4 flows, then IPv6 ones
# nfdump's -o line, as wide as the table of IPv4 flows has always been
NARROW = ("Date first seen          Duration Proto      Src IP Addr:Port    Dst IP Addr:Port      Flags     "
          "Packets      Bytes  End")
LONGEST_A = "2001:db8:85a3:1234:5678:8a2e:370:7334"                    # 37 characters
LONGEST_B = "2001:db80:85a3:1234:5678:8a2e:3700:7335"                  # 39: an IPv6 address's most
T0 = 1_700_000_000_000_000


def ipv4_flows():
    """(ipver, src, dst, proto, sport, dport, TCP flags): the longest IPv4 endpoints among them."""
    return [(4, "10.0.0.1", "255.255.255.255", 6, 1234, 65535, 0x12),
            (4, "192.168.100.200", "10.0.0.2", 17, 53, 40000, 0),
            (4, "10.0.0.3", "10.0.0.4", 1, 0, 8 << 8, 0)]


def ipv6_flows():
    return [(6, LONGEST_A, LONGEST_B, 6, 65535, 65535, 0x18), (6, LONGEST_B, "ff02::fb", 17, 5353, 5353, 0),
            (6, "fe80::1", LONGEST_A, 58, 0, 135 << 8, 0)]


def capture(path, flows):
    """Each flow two packets a second apart, each flow's payload its own size (distinct octets)."""
    frames = []
    for i, (ipver, src, dst, proto, sport, dport, flags) in enumerate(flows):
        for k in range(2):
            frames.append((T0 + i * 10_000 + k * 1_000_000,
                           P.eth_ip_packet(ipver, src, dst, proto, sport, dport, flags, payload=b"x" * (10 * i + k))))
    frames.sort()
    return P.write_pcap(path, frames)


def pyprobe(*args):
    result = subprocess.run([PYPROBE, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---- the checks: each value in its heading's column -----------------------------------

def token(line, start=None, end=None):
    """The word of the line that starts (or ends) at this offset, or None."""
    for m in re.finditer(r"\S+", line):
        if m.start() == start or m.end() == end:
            return m.group()
    return None


def endpoint(address, port):
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def dport_text(record):
    """ICMP's type.code, as nfdump shows it; the port otherwise."""
    port = record["dport"]
    return f"{port >> 8}.{port & 0xff}" if record["proto"] in (1, 58) else port


def flag_letters(flags):
    return "".join(letter if flags & 1 << (7 - i) else "." for i, letter in enumerate("CEUAPRSF"))


# heading, alignment, the text a record shows there
CLASSIC = [("Date first seen", "<", lambda r: time.strftime("%Y-%m-%d", time.gmtime(r["start"]))),
           ("Duration", ">", lambda r: f"{r['end'] - r['start']:.3f}"),
           ("Proto", "<", lambda r: {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMP6"}[r["proto"]]),
           ("Src IP Addr:Port", ">", lambda r: endpoint(r["src"], r["sport"])),
           ("Dst IP Addr:Port", "<", lambda r: endpoint(r["dst"], dport_text(r))),
           ("Flags", "<", lambda r: flag_letters(r["tcp_flags"]) if r["proto"] == 6 else None),
           ("Packets", ">", lambda r: str(r["packets"])),
           ("Bytes", ">", lambda r: str(r["octets"])),
           ("End", "<", lambda r: r["end_reason"])]


def assert_lined_up(text, wanted, columns=CLASSIC):
    """Each line of the table is a heading or the row of the next wanted record, whose
    values stand in the columns of the heading above it; returns the headings."""
    words = " ".join(name for name, _, _ in columns).split()
    headings, rows, heading = [], [], None
    for line in text.splitlines():
        if line.split() == words:
            heading = line
            headings.append(line)
        else:
            assert heading is not None, f"a row before any heading: {line!r}"
            rows.append((heading, line))
    assert len(rows) == len(wanted) > 0
    for (heading, row), record in zip(rows, wanted):
        for name, align, shown in columns:
            at = heading.index(name)
            got = token(row, start=at) if align == "<" else token(row, end=at + len(name))
            assert got == shown(record), f"{name!r} of\n{heading}\n{row}"
    return headings


# ---- pyprobe -r FILE -----------------------------------------------------------------

def test_a_table_of_ipv4_flows_keeps_its_narrow_layout(tmp_path):
    path = str(capture(tmp_path / "v4.pcap", ipv4_flows()))
    headings = assert_lined_up(pyprobe("-r", path), records_of(path))
    assert headings == [NARROW]


def test_ipv6_addresses_stay_in_their_columns(tmp_path):
    path = str(capture(tmp_path / "v6.pcap", ipv6_flows()))
    headings = assert_lined_up(pyprobe("-r", path), records_of(path))
    assert len(headings) == 1 and len(headings[0]) > len(NARROW)


def test_rows_that_need_wider_columns_come_under_a_wider_heading():
    """IPv4 flows, then IPv6 ones: the IPv4 rows under the narrow heading, the rest under
    one that fits them."""
    text = pyprobe("-r", str(ANDROID))
    wanted = records_of(str(ANDROID))
    headings = assert_lined_up(text, wanted)
    assert headings[0] == NARROW and len(headings) > 1 and len(headings[-1]) > len(NARROW)
    assert wanted[0]["ipver"] == 4 and any(r["ipver"] == 6 for r in wanted)


def test_a_record_definitions_table(tmp_path):
    path = str(capture(tmp_path / "both.pcap", ipv4_flows() + ipv6_flows()))
    config = tmp_path / "r.toml"
    config.write_text('[[record]]\nname = "pairs"\nmatch = ["sourceIPv6Address", "destinationIPv6Address"]\n'
                      'collect = ["packetDeltaCount", "octetDeltaCount"]\n')
    columns = [(key, ">", lambda r, key=key: str(r[key])) for key in ("src", "dst", "packets", "octets")]
    wanted = records_of(path, "-f", str(config), "-T", "pairs")
    assert {r["src"] for r in wanted} == {LONGEST_A, LONGEST_B, "fe80::1"}
    assert_lined_up(pyprobe("-r", path, "-f", str(config), "-T", "pairs"), wanted, columns)


def records_of(path, *args):
    return [json.loads(line) for line in pyprobe("-r", path, "--json", *args).splitlines()]


# ---- the writer itself: widths kept from one write to the next -----------------------

def packed(ipver, src, dst, start_s, end_s, octets=100):
    family = 2 if ipver == 4 else 10
    return records.pack(ipver=ipver, src=_address(family, src), dst=_address(family, dst), proto=17, sport=53,
                        dport=53, packets=1, octets=octets, first_us=int(start_s * 1e6), last_us=int(end_s * 1e6))


def _address(family, text):
    raw = socket.inet_pton(family, text)
    return raw + bytes(16 - len(raw))


def test_a_widened_column_stays_wide_and_the_heading_comes_once_a_width():
    out = io.StringIO()
    writer = TableWriter(out)
    writer.write(b"")                                          # no rows: the heading alone
    writer.write(packed(4, "10.0.0.1", "10.0.0.2", 1_700_000_000, 1_700_000_001))
    writer.write(packed(6, LONGEST_B, LONGEST_A, 1_700_000_000, 1_700_000_001))
    writer.write(packed(4, "10.0.0.1", "10.0.0.3", 1_700_000_000, 1_700_000_002))
    writer.write(packed(4, "10.0.0.1", "10.0.0.4", 1_700_000_000, 1_700_400_000, octets=10 ** 12))   # days, a TB
    writer.write(b"")
    lines = out.getvalue().splitlines()
    headings = [i for i, line in enumerate(lines) if line.startswith("Date first seen")]
    assert headings == [0, 2, 5] and lines[0] == NARROW
    assert lines[4].index(" -> ") == lines[3].index(" -> ") > NARROW.index("    Dst")
    assert token(lines[6], end=lines[5].index("Duration") + len("Duration")) == "400000.000"
    assert token(lines[6], end=lines[5].index("Bytes") + len("Bytes")) == str(10 ** 12)


# ---- pyprobe ctl dump-flows and top --------------------------------------------------

@pytest.fixture
def probe(tmp_path):
    """pyprobe -r - -c SOCK fed IPv4 and IPv6 flows on a standard input that stays open: the
    flows stay active."""
    where = Path(tempfile.mkdtemp(prefix="pptab"))       # (a socket's path is short)
    sock = where / "c"
    flows = ipv4_flows() + ipv6_flows()
    data = capture(tmp_path / "both.pcap", flows).read_bytes()
    proc = subprocess.Popen([PYPROBE, "-r", "-", "-c", str(sock), "--json"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while not (sock.exists() and ctl(sock, "statistics", "--json")["meter"]["packets_read"] == 2 * len(flows)):
            assert time.monotonic() < deadline and proc.poll() is None, "the probe did not read the capture"
            time.sleep(0.1)
        yield sock
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        shutil.rmtree(where, ignore_errors=True)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr.read()


def ctl(sock, *args):
    answer = subprocess.run([PYPROBE, "ctl", "-c", str(sock), *args], capture_output=True, text=True, timeout=20)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout) if "--json" in args else answer.stdout


def test_ctl_tables_line_up(probe):
    flows = ctl(probe, "dump-flows", "--json")
    assert {f["src"] for f in flows} >= {LONGEST_A, LONGEST_B}
    text = ctl(probe, "dump-flows")
    assert text.endswith(f"\n{len(flows)} active flows\n")
    assert_lined_up(text.rsplit("\n", 2)[0], flows)
    top = ctl(probe, "top")
    assert top.startswith("top 10 flows by octets, of 6 active flows\n")
    assert_lined_up(top.split("\n", 1)[1], ctl(probe, "top", "--json"))
