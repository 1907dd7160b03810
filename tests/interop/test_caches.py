"""Interop: the immediate and permanent caches (--cache), exported as v9 and IPFIX and
decoded by tshark, against the capture.

immediate: one record per metered packet, the records filling whole datagrams.
permanent (--update 10): a 60 s capture gives six exports of the whole cache, five
updates and the one at the end of the input; each flow's running totals grow from
export to export and end at the capture's totals for its key.
"""

import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

import reference  # noqa: E402
from collectors import CORPUS, PYPROBE, pyprobe_to_tshark  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import packets as P  # noqa: E402


def key(flow):
    return (flow.get("ipver", 4 if "." in flow["src"] else 6), flow["src"], flow["dst"], flow["proto"],
            flow.get("sport", 0), flow.get("dport", 0))


@pytest.mark.parametrize("version", [9, 10])
def test_immediate_cache_gives_a_record_per_packet_in_full_datagrams(version, tmp_path):
    capture = CORPUS / "ndpi/1kxun.pcap"
    if not capture.exists():
        pytest.skip("capture not in corpus")
    truth = reference.totals(str(capture)).totals
    flows, datagrams = pyprobe_to_tshark(capture, version, tmp_path, "--cache", "immediate")
    assert all(f["packets"] == 1 for f in flows)
    assert len(flows) == sum(p for p, _ in truth.values())
    got = defaultdict(lambda: [0, 0])
    for f in flows:
        got[key(f)][0] += 1
        got[key(f)][1] += f["octets"]
    assert dict(got) == {k: list(v) for k, v in truth.items()}
    assert datagrams * 15 < len(flows)            # (whole datagrams: 20 and more records each)


def sixty_seconds(path):
    """Three flows over 60 s: a packet of each every 0.5 s (sizes vary), and one flow
    that starts at 35 s."""
    t0 = 1_700_000_000_000_000
    frames = []
    for i in range(120):
        for n, (proto, sport) in enumerate(((6, 1000), (17, 2000), (1, 0))):
            frames.append((t0 + i * 500_000 + n, P.eth_ip_packet(4, "10.0.0.1", f"10.0.1.{n}", proto, sport, 80,
                                                                 flags=0x10, payload=b"x" * (i % 7 * 10))))
        if i >= 70:
            frames.append((t0 + i * 500_000 + 9, P.eth_ip_packet(6, "2001:db8::1", "2001:db8::2", 17, 5, 6)))
    P.write_pcap(str(path), frames)
    return path


@pytest.mark.parametrize("version", [9, 10])
def test_permanent_cache_exports_running_totals_every_update(version, tmp_path):
    capture = sixty_seconds(tmp_path / "sixty.pcap")
    truth = reference.totals(str(capture)).totals
    flows, _ = pyprobe_to_tshark(capture, version, tmp_path, "--cache", "permanent", "--update", "10")
    series = defaultdict(list)
    for f in flows:                              # (in the order they were exported)
        assert "packets" not in f, "a permanent cache sends totals, not deltas"
        series[key(f)].append((f["packets_total"], f["octets_total"]))
    assert set(series) == set(truth)
    for k, totals in series.items():
        assert totals == sorted(totals), k       # growing
        assert list(totals[-1]) == list(truth[k]), k
    # updates at 10, 20, 30, 40 and 50 s and the end: six exports of the flows there from the start
    assert {len(v) for k, v in series.items() if k[0] == 4} == {6}
    assert [len(v) for k, v in series.items() if k[0] == 6] == [3]       # (started at 35 s: 40, 50, end)


def test_permanent_cache_when_full_counts_new_flows_as_not_monitored(tmp_path):
    capture = sixty_seconds(tmp_path / "sixty.pcap")
    res = subprocess.run([PYPROBE, "-r", str(capture), "--cache", "permanent", "-m", "2", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    # two flows fit; the third IPv4 flow (120 packets) and the IPv6 one (50) are not monitored
    assert "170 packets not monitored" in res.stderr and "Traceback" not in res.stderr
    assert sum(json.loads(line)["packets"] for line in res.stdout.splitlines()) == 240
