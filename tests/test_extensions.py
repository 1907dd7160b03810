"""The flow-extension interface (ext/extension.pxd): a test extension built here
(tests/extension/payload_octets.pyx) sums each flow's TCP and UDP payload octets into the
record member it is lent; per flow they equal what tshark's dissection says, and a meter
allocates its per-flow state only while it has the extension, frees every one it allocated,
and frees a flow's at once when the extension is done with it."""

import importlib.util
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import reference
from packets import make_batch
from pyprobe import _meter
from pyprobe.definitions import define
from pyprobe.fields import MEMBER, RECORD_SIZE
from pyprobe.records import unpack

REPO = Path(__file__).resolve().parent.parent
CORPUS = (REPO / ".." / "shared" / "pcaps" / "corpus").resolve()
CAPTURES = ["ndpi/1kxun.pcap", "ndpi/ssh.pcap", "ndpi/quic.pcap"]
# A record that collects no per-packet measure: the member lent to the extension is its alone.
RECORD = define("five", ["sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address",
                         "destinationIPv6Address", "protocolIdentifier", "sourceTransportPort",
                         "destinationTransportPort"], ["packetDeltaCount"])
LENT = MEMBER["octets_squared"]
BUILD = f"""
from Cython.Build import cythonize
from setuptools import Extension, setup
setup(script_args=["-q", "build_ext", "--inplace"], ext_modules=cythonize(
    [Extension("payload_octets", ["payload_octets.pyx"])], include_path=[{str(REPO / "ext")!r}],
    quiet=True, language_level=3))
"""


@pytest.fixture(scope="module")
def payload_octets(tmp_path_factory):
    where = tmp_path_factory.mktemp("extension")
    shutil.copy(REPO / "tests" / "extension" / "payload_octets.pyx", where)
    subprocess.run([sys.executable, "-c", BUILD], cwd=where, check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("payload_octets", next(where.glob("payload_octets*.so")))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def capture(rel):
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"capture not in corpus: {rel}")
    return path


def meter_capture(path, extension=None):
    """The capture's records through a meter of RECORD (with the extension lent LENT), and its stats:
    (records, stats once the capture is metered, stats once its flows are flushed, the flushed records)."""
    linktype, frames = reference.read(str(path))
    packets, meta = make_batch((int(round(float(ts) * 1e6)), bytes(frame)) for ts, frame in frames)
    meter = _meter.Meter(linktype, record=RECORD)
    if extension is not None:
        meter.add_extension(extension, LENT.name)
    records = meter.process(packets, meta)
    during = meter.stats()
    flushed = meter.flush()
    return records + flushed, during, meter.stats(), flushed


def lent(records):
    """Each record's LENT member."""
    return [int.from_bytes(records[i + LENT.offset:i + LENT.offset + 8], sys.byteorder)
            for i in range(0, len(records), RECORD_SIZE)]


def lent_per_flow(records):
    """Per five-tuple, the sum of its records' LENT member."""
    totals = Counter()
    for r, value in zip(unpack(records), lent(records)):
        totals[(r.src, r.dst, r.proto, r.sport, r.dport)] += value
    return totals


def tshark_payload_octets(path):
    """Per five-tuple, tshark's TCP segment lengths and UDP lengths less their header."""
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp or udp", "-T", "fields", "-E", "occurrence=f",
                          "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.srcport",
                          "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "tcp.len",
                          "-e", "udp.length"], capture_output=True, text=True, check=True).stdout
    totals = Counter()
    for line in out.splitlines():
        src4, src6, dst4, dst6, tsport, tdport, usport, udport, tlen, ulen = line.split("\t")
        proto, sport, dport, octets = ((6, tsport, tdport, int(tlen)) if tlen else
                                       (17, usport, udport, int(ulen) - 8))
        totals[(src4 or src6, dst4 or dst6, proto, int(sport), int(dport))] += octets
    return totals


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
@pytest.mark.parametrize("rel", CAPTURES)
def test_payload_octets_per_flow_are_tsharks(rel, payload_octets):
    path = capture(rel)
    records, during, stats, _ = meter_capture(path, payload_octets.extension())
    got = {k: v for k, v in lent_per_flow(records).items() if k[2] in (6, 17)}
    want = tshark_payload_octets(path)
    assert sum(want.values()) > 10000
    assert got == want
    assert stats["extension_states_allocated"] == stats["flows_created"]
    assert stats["extension_states_freed"] == stats["extension_states_allocated"]


@pytest.mark.parametrize("rel", CAPTURES)
def test_a_meter_without_the_extension_allocates_no_state(rel):
    records, during, stats, _ = meter_capture(capture(rel))
    assert stats["flows_created"] > 0
    assert (stats["extension_states_allocated"], stats["extension_states_freed"]) == (0, 0)
    assert set(lent_per_flow(records).values()) == {0}


@pytest.mark.parametrize("rel", CAPTURES)
def test_a_flows_state_is_freed_when_the_extension_is_done_with_it(rel, payload_octets):
    path = capture(rel)
    whole, _, _, whole_flushed = meter_capture(path, payload_octets.extension())
    done, during, stats, done_flushed = meter_capture(path, payload_octets.extension(done_at=1000))
    # Done with a flow once a later packet takes it to 1000 octets: its record, with no state
    # left to fill it from, has 0 (the meters' records come in the same order).
    assert all(d == w or (d == 0 and w >= 1000) for d, w in zip(lent(done), lent(whole)))
    assert any(d != w for d, w in zip(lent(done), lent(whole)))
    # The active flows' states, before the flush: those not done with only.
    live = during["extension_states_allocated"] - during["extension_states_freed"]
    assert live == sum(d == w for d, w in zip(lent(done_flushed), lent(whole_flushed))) < during["flows_active"]
    assert stats["extension_states_freed"] == stats["extension_states_allocated"]
