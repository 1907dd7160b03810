"""Stress runs for `make test-long` (not in `make test`): a large synthetic capture
through small caches and tight timeouts, totals against what the generator wrote."""

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
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "--shape", "mix", "--packets", "300000",
                    "--flows", "60000", "--seed", "7", "-o", str(path)], check=True, timeout=600,
                   stdout=subprocess.DEVNULL)
    return path, json.loads(path.with_name(path.name + ".json").read_text())


@pytest.mark.parametrize("flags", [[], ["-m", "64"], ["-m", "1000", "-t", "inactive=1", "-t", "active=2"],
                                   ["-T", "ip", "-m", "500"]])
def test_every_generated_packet_ends_in_a_record(capture, flags):
    path, truth = capture
    out = subprocess.run([PYPROBE, "-r", str(path), "--json", "-q", *flags], capture_output=True, text=True,
                         timeout=900, check=True).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert sum(r["packets"] for r in records) == truth["packets"]
    assert sum(r["octets"] for r in records) == truth["octets"]      # IP lengths, as the generator wrote them
