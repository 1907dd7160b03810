"""Bad input gives one clear line on stderr and no traceback; odd but valid input
(stdin, gzip, truncated capture) gives the same records as the plain file."""

import gzip
import json
import re
import struct
import sys
from pathlib import Path

import dpkt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402
from test_conservation import CORPUS, parse_records, ref_sums, run_pyprobe, \
    sum_records  # noqa: E402

ECHO_GZ = CORPUS / "zeek" / "echo-connections.pcap.gz"
SMALL_PCAPNG = CORPUS / "zeek" / "issue-32.pcapng"


def assert_error(proc, code=2):
    """Exit `code`, exactly one non-empty stderr line starting 'pyprobe: ', no traceback."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pyprobe: "), err
    assert proc.stdout.strip() == b"", proc.stdout[:200]
    return lines[0]


def udp_frame(i, sport=1000, dport=53, payload=b"x" * 18):
    """A plain Ethernet/IPv4/UDP frame, built by hand."""
    udp = struct.pack(">HHHH", sport + i % 3, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip


def write_pcap(path, frames, t0=1_600_000_000.0):
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=1)
        for i, frame in enumerate(frames):
            w.writepkt(frame, ts=t0 + i * 0.25)
    return path


@pytest.fixture
def small_pcap(tmp_path):
    return write_pcap(tmp_path / "small.pcap", [udp_frame(i) for i in range(10)])


def canonical(records):
    """Records as a multiset (order is expiry order, which tests must not rely on)."""
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def records_of(args, **kw):
    proc = run_pyprobe(args, **kw)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return parse_records(proc.stdout)


# ---- errors -------------------------------------------------------------------------

def test_nonexistent_path(tmp_path):
    assert_error(run_pyprobe(["-r", str(tmp_path / "no-such-file.pcap"), "--json"]))


def test_not_a_capture(tmp_path):
    p = tmp_path / "notes.pcap"
    p.write_bytes(b"this is not a capture file, just some text\n" * 20)
    assert_error(run_pyprobe(["-r", str(p), "--json"]))


def test_gzip_of_not_a_capture(tmp_path):
    p = tmp_path / "notes.pcap.gz"
    p.write_bytes(gzip.compress(b"plain text, gzipped\n" * 20))
    assert_error(run_pyprobe(["-r", str(p), "--json"]))


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    assert_error(run_pyprobe(["-r", str(p), "--json"]))


def test_empty_stdin():
    assert_error(run_pyprobe(["-r", "-", "--json"], input_bytes=b""))


def test_header_only_capture_is_valid(tmp_path):
    p = write_pcap(tmp_path / "noframes.pcap", [])
    assert records_of(["-r", str(p), "--json"]) == []


@pytest.mark.parametrize("flag", [["-m", "abc"], ["-t", "bogus=3"], ["-T", "nonsense"],
                                  ["-t", "inactive=abc"], ["--no-such-flag"]],
                         ids=lambda f: " ".join(f))
def test_bad_flag(small_pcap, flag):
    assert_error(run_pyprobe(["-r", str(small_pcap), "--json"] + flag))


# ---- truncated captures ---------------------------------------------------------------

@pytest.mark.parametrize("where", ["mid_data", "mid_header"])
def test_truncated_capture(tmp_path, where):
    frames = [udp_frame(i) for i in range(10)]
    full = write_pcap(tmp_path / "full.pcap", frames).read_bytes()
    rec_len = 16 + len(frames[-1])                    # pcap record header + data
    cut = rec_len // 2 if where == "mid_data" else 7  # bytes of the last record kept
    truncated = tmp_path / "truncated.pcap"
    truncated.write_bytes(full[:len(full) - rec_len + cut])
    # Ground truth: the same capture without its last record.
    want = ref_sums(reference.totals(full[:len(full) - rec_len]))
    assert sum(v[0] for v in want.values()) == 9

    proc = run_pyprobe(["-r", str(truncated), "--json"])
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert re.search(r"trunc|warn|short|incomplete|premature", err, re.I), \
        "no warning about the truncated capture: %r" % err
    assert sum_records(parse_records(proc.stdout)) == want


def test_truncated_single_record_is_error(tmp_path):
    full = write_pcap(tmp_path / "one.pcap", [udp_frame(0)]).read_bytes()
    p = tmp_path / "one-truncated.pcap"
    p.write_bytes(full[:-10])
    proc = run_pyprobe(["-r", str(p), "--json"])
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    assert proc.stdout.strip() == b""


# ---- stdin and gzip -------------------------------------------------------------------

def test_stdin_same_as_path(small_pcap):
    from_path = records_of(["-r", str(small_pcap), "--json"])
    with open(small_pcap, "rb") as f:
        from_stdin = records_of(["-r", "-", "--json"], stdin=f)
    assert from_path and canonical(from_stdin) == canonical(from_path)
    assert sum_records(from_path) == ref_sums(reference.totals(str(small_pcap)))


def test_stdin_pcapng():
    if not SMALL_PCAPNG.exists():
        pytest.skip("corpus file missing")
    from_path = records_of(["-r", str(SMALL_PCAPNG), "--json"])
    with open(SMALL_PCAPNG, "rb") as f:
        from_stdin = records_of(["-r", "-", "--json"], stdin=f)
    assert from_path and canonical(from_stdin) == canonical(from_path)


def test_gzip_small_capture(small_pcap, tmp_path):
    gz = tmp_path / "small.pcap.gz"
    gz.write_bytes(gzip.compress(small_pcap.read_bytes()))
    named_oddly = tmp_path / "small.bin"          # detection is by magic, not by name
    named_oddly.write_bytes(gz.read_bytes())
    plain = canonical(records_of(["-r", str(small_pcap), "--json"]))
    assert plain
    assert canonical(records_of(["-r", str(gz), "--json"])) == plain
    assert canonical(records_of(["-r", str(named_oddly), "--json"])) == plain
    with open(gz, "rb") as f:
        assert canonical(records_of(["-r", "-", "--json"], stdin=f)) == plain


def test_gzip_corpus_capture(tmp_path):
    if not ECHO_GZ.exists():
        pytest.skip("corpus file missing")
    plain_path = tmp_path / "echo-connections.pcap"
    plain_path.write_bytes(gzip.decompress(ECHO_GZ.read_bytes()))
    plain = records_of(["-r", str(plain_path), "--json"])
    assert sum_records(plain) == ref_sums(reference.totals(str(plain_path)))
    plain = canonical(plain)
    assert canonical(records_of(["-r", str(ECHO_GZ), "--json"])) == plain
    with open(ECHO_GZ, "rb") as f:
        assert canonical(records_of(["-r", "-", "--json"], stdin=f)) == plain


# ---- errors at start print that one line and nothing else (issue 11, item 12) ----------------

ANDROID_PCAP = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")


def test_control_socket_that_cannot_be_made_prints_nothing_to_stdout(tmp_path):
    proc = run_pyprobe(["-r", ANDROID_PCAP, "-c", str(tmp_path / "no" / "such" / "dir" / "ctl.sock")])
    assert proc.returncode == 2
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and "control socket" in lines[0], lines


def as_nobody(args):
    import os
    import subprocess
    from test_conservation import pyprobe_exe
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", pyprobe_exe()]
    if subprocess.run(cmd + ["--version"], capture_output=True).returncode != 0:
        pytest.skip("the pyprobe executable is not reachable by nobody here")
    return subprocess.run(cmd + args, capture_output=True, timeout=30)


def test_live_capture_without_privileges_says_what_it_needs():
    proc = as_nobody(["-i", "lo"])
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and "needs root or the CAP_NET_RAW capability" in lines[0], lines
