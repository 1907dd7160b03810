"""The predefined records (-T full, port, proto, ip, vlan, ether) export byte for byte
what they did before record definitions existed: v5, v9 and IPFIX datagrams and the
JSON lines, on corpus captures, against the digests tests/golden_exports.py wrote
with the code of that time (tests/data/predefined_exports.json)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import golden_exports as G  # noqa: E402

PYPROBE = [os.path.join(os.path.dirname(sys.executable), "pyprobe")]


def test_predefined_records_export_what_they_did():
    if not all(os.path.exists(os.path.join(G.CORPUS, rel)) for rel in G.CAPTURES):
        pytest.skip("corpus captures missing")
    with open(G.GOLDEN) as f:
        golden = json.load(f)
    now = G.digests(PYPROBE)
    assert set(now) == set(golden)
    changed = sorted(k for k in golden if now[k] != golden[k])
    assert changed == []
