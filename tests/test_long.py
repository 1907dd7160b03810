"""Stress runs for `make test-long` (not in `make test`): a large synthetic capture
(pyprobe generate --pcap) through small caches and tight timeouts, totals against the
records the generator expects."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROBE = shutil.which("pyprobe", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.long


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "mix.pcap"
    expect = path.with_name("expect.json")
    subprocess.run([PYPROBE, "generate", "--pcap", str(path), "--count", "60000", "--rate", "600", "--seed", "7",
                    "--start-time", "1700000000", "--profile", str(ROOT / "bench" / "profiles" / "mix.toml"),
                    "--expect", str(expect), "-q"], check=True, timeout=600)
    records = [json.loads(line) for line in expect.read_text().splitlines()]
    return path, {"packets": sum(r["packets"] for r in records), "octets": sum(r["octets"] for r in records),
                  "records": records}


def test_default_settings_give_exactly_the_expected_records(capture):
    path, truth = capture
    out = subprocess.run([PYPROBE, "-r", str(path), "--json", "-q", "-m", "1000000"], capture_output=True, text=True,
                         timeout=900, check=True).stdout
    got = sorted(json.dumps(json.loads(line), sort_keys=True) for line in out.splitlines())
    assert got == sorted(json.dumps(r, sort_keys=True) for r in truth["records"])


@pytest.mark.parametrize("flags", [[], ["-m", "64"], ["-m", "1000", "-t", "inactive=1", "-t", "active=2"],
                                   ["-T", "ip", "-m", "500"]])
def test_every_generated_packet_ends_in_a_record(capture, flags):
    path, truth = capture
    out = subprocess.run([PYPROBE, "-r", str(path), "--json", "-q", *flags], capture_output=True, text=True,
                         timeout=900, check=True).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert sum(r["packets"] for r in records) == truth["packets"]
    assert sum(r["octets"] for r in records) == truth["octets"]      # IP lengths, as the generator wrote them
