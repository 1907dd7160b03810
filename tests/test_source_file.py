"""Capture input however it arrives (pyprobe/source/file.py, ext/_capture.pyx): a file by
path, standard input, gzip by path and on standard input, a FIFO, /dev/stdin. Every way
reads the same packets, a damaged record ends every way at the same place after metering
the packets before it, nothing hangs, and signals act at once (issue 11, items 1-3, 6, 8,
9 and 12's pcapng of several link types)."""

import gzip
import json
import os
import signal
import struct
import subprocess
import threading
import time

import pytest

import packets as P
from wire import PYPROBE

T0 = 1_700_000_000_000_000
TIMEOUT = 30              # a hang fails the test here


def frames(n, start=0, dst="10.0.0.2"):
    return [(T0 + (start + i) * 1000, P.eth_ip_packet(4, "10.0.0.1", dst, 6, 1000 + (start + i) % 50, 80))
            for i in range(n)]


def run(args, stdin_bytes=None, stdin=None):
    return subprocess.run([PYPROBE, *args], input=stdin_bytes, stdin=stdin, capture_output=True, timeout=TIMEOUT)


def metered(proc):
    """Packets in the records pyprobe printed (--json)."""
    return sum(json.loads(line)["packets"] for line in proc.stdout.splitlines())


def every_way(tmp_path, data):
    """{way: CompletedProcess} of `pyprobe --json` reading data by path, on standard input,
    gzipped by path and gzipped on standard input."""
    plain = tmp_path / "capture.pcap"
    plain.write_bytes(data)
    packed = gzip.compress(data)
    zipped = tmp_path / "capture.pcap.gz"
    zipped.write_bytes(packed)
    return {"path": run(["-r", str(plain), "--json"]),
            "stdin": run(["-r", "-", "--json"], stdin_bytes=data),
            "gzip": run(["-r", str(zipped), "--json"]),
            "gzip stdin": run(["-r", "-", "--json"], stdin_bytes=packed)}


def check_all_agree(results, packets, warning=None):
    for way, proc in results.items():
        assert b"Traceback" not in proc.stderr, (way, proc.stderr.decode())
        assert proc.returncode == 0, (way, proc.stderr.decode())
        assert metered(proc) == packets, (way, proc.stderr.decode())
        if warning is not None:
            assert warning.encode() in proc.stderr, (way, proc.stderr.decode())


def pcap_with_oversized_record(before):
    """A pcap whose record after `before` packets claims 300,000 captured bytes, all present."""
    data = P.pcap_bytes(frames(before))
    huge = struct.pack("<IIII", T0 // 1_000_000 + 1, 0, 300_000, 300_000) + bytes(300_000)
    return data + huge + P.pcap_bytes(frames(20, start=before))[24:]


def pcapng_with_bad_interface(before):
    """A pcapng whose packet after `before` names interface 3 of a section that has one."""
    packets = [(0, t, f) for t, f in frames(before)] + [(3, T0, frames(1)[0][1])]
    packets += [(0, t, f) for t, f in frames(20, start=before)]
    return P.pcapng_section([P.DLT_EN10MB], packets)


# -- item 1 and 2: a record libpcap rejects ends every input path at the same place ----------

@pytest.mark.parametrize("before", [50, 10_000])
def test_oversized_record_ends_every_way_after_the_packets_before_it(tmp_path, before):
    check_all_agree(every_way(tmp_path, pcap_with_oversized_record(before)), before, "300,000 captured bytes")


@pytest.mark.parametrize("before", [50, 10_000])
def test_packet_of_a_missing_interface_ends_every_way_after_the_packets_before_it(tmp_path, before):
    check_all_agree(every_way(tmp_path, pcapng_with_bad_interface(before)), before, "names interface 3")


def test_sections_in_both_byte_orders_are_read_every_way(tmp_path):
    data = P.pcapng_section([P.DLT_EN10MB], [(0, t, f) for t, f in frames(30)], "<")
    data += P.pcapng_section([P.DLT_EN10MB], [(0, t, f) for t, f in frames(30, start=30)], ">")
    check_all_agree(every_way(tmp_path, data), 60)


# -- item 3: signals while a stream is read -----------------------------------------------

def test_reload_and_template_signals_do_not_cut_a_stream_short():
    """SIGHUP and SIGUSR1, many times while standard input is being read: every packet is metered."""
    data = P.pcap_bytes(frames(200_000))
    probe = subprocess.Popen([PYPROBE, "-r", "-", "--json"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = []
    reader = threading.Thread(target=lambda: out.append(probe.stdout.read()))
    reader.start()
    step = 256 << 10
    for i, pos in enumerate(range(0, len(data), step)):
        probe.stdin.write(data[pos:pos + step])
        probe.stdin.flush()
        probe.send_signal(signal.SIGHUP if i % 2 else signal.SIGUSR1)
        time.sleep(0.02)
    probe.stdin.close()
    err = probe.stderr.read()
    probe.wait(timeout=TIMEOUT)
    reader.join()
    assert probe.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert sum(json.loads(line)["packets"] for line in out[0].splitlines()) == 200_000


# -- item 6: damaged gzip -----------------------------------------------------------------

GOOD_GZIP = gzip.compress(P.pcap_bytes(frames(10)))
DAMAGED_GZIP = {
    "just the magic": b"\x1f\x8b",
    "bad deflate stream": GOOD_GZIP[:10] + b"\xff" * 40,
    "bad method byte": GOOD_GZIP[:2] + b"\x07" + GOOD_GZIP[3:],
}


@pytest.mark.parametrize("kind", sorted(DAMAGED_GZIP))
@pytest.mark.parametrize("way", ["path", "stdin"])
def test_damaged_gzip_is_one_line_exit_2(tmp_path, kind, way):
    path = tmp_path / "damaged.pcap.gz"
    path.write_bytes(DAMAGED_GZIP[kind])
    proc = run(["-r", str(path) if way == "path" else "-"], stdin_bytes=DAMAGED_GZIP[kind] if way == "stdin" else None)
    assert proc.returncode == 2, proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyprobe: ") and "gzip" in lines[0], lines


def test_gzip_cut_short_meters_what_came_before_every_way(tmp_path):
    packed = gzip.compress(P.pcap_bytes(frames(20_000)))
    packed = packed[:len(packed) // 2]
    path = tmp_path / "half.pcap.gz"
    path.write_bytes(packed)
    by_path, by_stdin = run(["-r", str(path), "--json"]), run(["-r", "-", "--json"], stdin_bytes=packed)
    for proc in (by_path, by_stdin):
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode()
        assert b"damaged gzip data" in proc.stderr, proc.stderr.decode()
    assert 0 < metered(by_path) == metered(by_stdin) < 20_000


# -- item 8: a record too large to be one, followed by endless bytes ------------------------

def test_absurd_record_length_on_an_endless_stream_stops_at_once():
    """caplen 0x7fffffff, then bytes that never end: pyprobe meters the packets before it and
    ends while the writer is still writing (it used to buffer the stream without bound)."""
    head = P.pcap_bytes(frames(10)) + struct.pack("<IIII", T0 // 1_000_000, 0, 0x7FFFFFFF, 0x7FFFFFFF)
    probe = subprocess.Popen([PYPROBE, "-r", "-", "--json"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()

    def write_forever():
        try:
            probe.stdin.write(head)
            while probe.poll() is None:
                probe.stdin.write(bytes(1 << 16))
        except (BrokenPipeError, ValueError):
            pass
    threading.Thread(target=write_forever, daemon=True).start()
    try:
        probe.wait(timeout=10)
    except subprocess.TimeoutExpired:
        probe.kill()
        pytest.fail("pyprobe still reading an endless record after 10 s")
    out, err = probe.stdout.read(), probe.stderr.read()
    assert probe.returncode == 0, err.decode()
    assert b"2,147,483,647 captured bytes" in err
    assert sum(json.loads(line)["packets"] for line in out.splitlines()) == 10
    assert time.monotonic() - started < 10


# -- item 9: FIFOs and /dev/stdin -----------------------------------------------------------

def test_fifo_is_read_as_a_stream(tmp_path):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    data = P.pcap_bytes(frames(5_000))

    def write():
        with open(fifo, "wb") as f:
            f.write(data)
    writer = threading.Thread(target=write)
    writer.start()
    proc = run(["-r", str(fifo), "--json"])
    writer.join()
    assert proc.returncode == 0, proc.stderr.decode()
    assert metered(proc) == 5_000


def test_dev_stdin_is_read_as_a_pipe_and_as_a_file(tmp_path):
    data = P.pcap_bytes(frames(3_000))
    assert metered(run(["-r", "/dev/stdin", "--json"], stdin_bytes=data)) == 3_000
    path = tmp_path / "capture.pcap"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert metered(run(["-r", "/dev/stdin", "--json"], stdin=f)) == 3_000


def test_closed_standard_input_is_one_line_exit_2():
    proc = subprocess.run(f"'{PYPROBE}' -r - <&-", shell=True, capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and "standard input" in lines[0], lines


# -- item 12: a pcapng with interfaces of different link types --------------------------------

def mixed_linktypes():
    """Ethernet, raw IP and PPP (not decoded) interfaces, their packets interleaved:
    flows to 10.0.0.2 on Ethernet, to 10.0.0.3 as raw IP, 10.0.0.4 over PPP."""
    packets = []
    for i, ((t, eth), (_, raw)) in enumerate(zip(frames(300), frames(300, dst="10.0.0.3"))):
        packets.append((0, t, eth))
        packets.append((1, t + 1, raw[14:]))
        if i % 3 == 0:
            packets.append((2, t + 2, b"\xff\x03\x00\x21" + raw[14:]))
    return P.pcapng_section([P.DLT_EN10MB, P.DLT_RAW, 9], packets)


def per_destination(proc):
    out = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        out[r["dst"]] = out.get(r["dst"], 0) + r["packets"]
    return out


def test_pcapng_interfaces_of_different_link_types_are_each_decoded_by_their_own(tmp_path):
    results = every_way(tmp_path, mixed_linktypes())
    for way, proc in results.items():
        assert proc.returncode == 0, (way, proc.stderr.decode())
        assert per_destination(proc) == {"10.0.0.2": 300, "10.0.0.3": 300}, way
        assert b"of a link type not decoded 100" in proc.stderr, proc.stderr.decode()


def test_filter_applies_to_each_link_type_of_a_pcapng(tmp_path):
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(mixed_linktypes())
    proc = run(["-r", str(path), "--json", "tcp and not dst host 10.0.0.2"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert per_destination(proc) == {"10.0.0.3": 300}
    proc = run(["-r", str(path), "--json", "ether dst 02:00:00:00:00:02"])    # cannot apply to raw IP
    assert per_destination(proc) == {"10.0.0.2": 300}
    assert b"cannot apply to raw IP packets" in proc.stderr, proc.stderr.decode()
    assert b"rejected by the filter 300" in proc.stderr, proc.stderr.decode()
