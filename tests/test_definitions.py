"""Record definitions (pyprobe/definitions.py): what a definition keys on and collects,
metered from built packets, and what is refused at start."""

import json
import os
import struct
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import packets as P  # noqa: E402
import reference  # noqa: E402
from pyprobe import records  # noqa: E402
from pyprobe._meter import Meter  # noqa: E402
from pyprobe.definitions import define, predefined, resolve  # noqa: E402

PYPROBE = os.path.join(os.path.dirname(sys.executable), "pyprobe")
T0 = 1_700_000_000_000_000


def meter(definition, frames):
    """Records of these frames [(time_us, bytes)] with this definition, the cache flushed."""
    m = Meter(P.DLT_EN10MB, record=definition)
    packed = m.process(*P.make_batch(frames)) + m.flush()
    return m, [r for r in records.RECORD.iter_unpack(packed)], packed


def json_records(packed, definition):
    return [json.loads(line) for line in records.to_json_lines(packed, definition.shown_fields()).decode().splitlines()]


def test_prefix_keys_merge_hosts_of_a_prefix_and_show_the_prefix():
    d = define("p", ["sourceIPv4Address/24", "destinationIPv4Address/16"], ["packetDeltaCount"])
    frames = [(T0 + i, P.eth_ip_packet(4, f"10.1.2.{i}", f"192.168.{i}.1", 17, 1000 + i, 53)) for i in range(1, 6)]
    _, _, packed = meter(d, frames)
    got = [(r.src, r.dst, r.packets, r.sport) for r in records.unpack(packed)]
    assert got == [("10.1.2.0", "192.168.0.0", 5, 0)]     # ports are not in the key: not shown either


def test_ipv4_only_record_counts_ipv6_packets_as_unmatched():
    d = define("v4", ["sourceIPv4Address", "destinationIPv4Address"], ["packetDeltaCount"])
    assert d.ipver == 4
    frames = [(T0, P.eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 6, 1, 2)),
              (T0 + 1, P.eth_ip_packet(6, "2001:db8::1", "2001:db8::2", 6, 1, 2)),
              (T0 + 2, P.eth_ip_packet(6, "2001:db8::1", "2001:db8::3", 17, 1, 2))]
    m, recs, _ = meter(d, frames)
    assert len(recs) == 1
    assert m.stats()["packets_ignored"]["unmatched"] == 2
    assert m.packets_unmetered == 2


def test_dscp_key_splits_flows_by_dscp_not_by_ecn():
    d = define("d", ["sourceIPv4Address", "ipDiffServCodePoint"], ["packetDeltaCount"])
    frames = [(T0 + i, P.eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 5, 6, tos=tos))
              for i, tos in enumerate([0xb8, 0xb9, 0xba, 0x00, 0x01])]     # EF with ECN bits; best effort
    _, _, packed = meter(d, frames)
    got = sorted((rec["dscp"], rec["packets"]) for rec in json_records(packed, d))
    assert got == [(0, 2), (46, 3)]


def test_collected_statistics_follow_the_packets():
    d = define("s", ["sourceIPv4Address"], ["minimumIpTotalLength", "maximumIpTotalLength", "octetDeltaSumOfSquares",
                                             "tcpSynTotalCount", "tcpFinTotalCount", "tcpRstTotalCount",
                                             "minimumTTL", "maximumTTL"])
    assert d.measured
    sizes = [0, 100, 7, 500]
    flags = [0x02, 0x12, 0x11, 0x04]
    frames = [(T0 + i, P.eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 6, 1, 2, flags=f, payload=b"x" * n, ttl=60 + i))
              for i, (n, f) in enumerate(zip(sizes, flags))]
    _, _, packed = meter(d, frames)
    lengths = [40 + n for n in sizes]
    (r,) = json_records(packed, d)
    assert (r["min_length"], r["max_length"]) == (min(lengths), max(lengths))
    assert r["octets_squared"] == sum(n * n for n in lengths)
    assert (r["syn_packets"], r["fin_packets"], r["rst_packets"]) == (2, 1, 1)
    assert (r["min_ttl"], r["max_ttl"]) == (60, 63)


def test_tcp_windows_are_the_smallest_and_largest_of_the_flow():
    d = define("w", ["sourceIPv4Address", "protocolIdentifier"],
               ["packetDeltaCount", "transportTcpWindowSizeMinimum", "transportTcpWindowSizeMaximum"])
    windows = [29200, 512, 65535, 4096]

    def segment(window):         # a TCP header with this window field
        return struct.pack("!HHIIBBHHH", 1, 2, 1, 0, 5 << 4, 0x10, window, 0, 0)
    frames = [(T0 + i, P.ethernet(P.ipv4("10.0.0.1", "10.0.0.2", 6, segment(w)), P.ETH_IPV4))
              for i, w in enumerate(windows)]
    frames += [(T0 + 9, P.eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 1, 2)),          # UDP: no window
               (T0 + 10, P.ethernet(P.ipv4("10.0.0.1", "10.0.0.2", 6, segment(7)[:15]), P.ETH_IPV4))]   # cut short
    _, _, packed = meter(d, frames)
    got = {r["proto"]: (r["packets"], r["min_tcp_window"], r["max_tcp_window"]) for r in json_records(packed, d)}
    assert got == {6: (5, min(windows), max(windows)), 17: (1, 0, 0)}


def test_inner_vlan_of_a_qinq_frame_is_collected():
    d = define("q", ["vlanId", "dot1qCustomerVlanId"], ["packetDeltaCount"])
    ip = P.ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 1, 2)
    frame = (P.mac_bytes("02:00:00:00:00:02") + P.mac_bytes("02:00:00:00:00:01")
             + struct.pack("!HHHH", 0x88a8, 100, 0x8100, 200) + struct.pack("!H", 0x0800) + ip)
    _, _, packed = meter(d, [(T0, frame)])
    (r,) = json_records(packed, d)
    assert (r["vlan"], r["inner_vlan"], r["packets"]) == (100, 200, 1)


def test_predefined_records_are_the_tracking_levels():
    for level in ("ip", "proto", "port", "full", "vlan", "ether"):
        assert resolve(level).predefined and resolve(level) == predefined(level)
    with pytest.raises(ValueError, match="unknown record 'mine'"):
        resolve("mine")


@pytest.mark.parametrize("match,collect,message", [
    ([], ["packetDeltaCount"], "match names no key field"),
    (["sourceIPv4Adress"], [], "did you mean sourceIPv4Address"),
    (["protocolIdentifier/8"], [], "only an address takes a prefix length"),
    (["sourceIPv4Address/33"], [], "from 0 to 32"),
    (["packetDeltaCount"], [], "cannot be a key"),
    (["sourceIPv4Address"], ["sourceTransportPort"], "can only be a key"),
    (["sourceIPv4Address", "sourceIPv4Address/8"], [], "named twice"),
])
def test_bad_definitions_are_refused_with_a_reason(match, collect, message):
    with pytest.raises(ValueError, match=message):
        define("bad", match, collect)


ANDROID = os.path.join(os.path.dirname(__file__), "..", "pcaps", "android.pcap")


def _run(tmp_path, config, *args):
    path = tmp_path / "r.toml"
    path.write_text(config)
    return subprocess.run([PYPROBE, "-r", ANDROID, "-f", str(path), *args], capture_output=True, text=True, timeout=60)


def test_v5_refuses_a_defined_record_in_one_line(tmp_path):
    res = _run(tmp_path, '[[record]]\nname = "r"\nmatch = ["sourceIPv4Address"]\n', "-T", "r", "-n", "127.0.0.1:9",
               "-v", "5")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "pyprobe: NetFlow v5 carries its fixed record only: record 'r' needs NetFlow v9 (-v 9) or IPFIX (-v 10)"]


def test_bad_record_in_config_exits_2_naming_it(tmp_path):
    res = _run(tmp_path, '[[record]]\nname = "r"\nmatch = ["sourceIPv4Address"]\ncolour = "red"\n', "-T", "r")
    assert res.returncode == 2 and "unknown key 'colour'" in res.stderr and "Traceback" not in res.stderr
    res = _run(tmp_path, '[[record]]\nname = "r"\nmatch = ["sourceIPv4Address"]\n', "-T", "s")
    assert res.returncode == 2 and "-T/--record: unknown record 's'" in res.stderr


def test_json_shows_the_definitions_fields_in_order(tmp_path):
    res = _run(tmp_path, '[[record]]\nname = "r"\nmatch = ["sourceIPv4Address/16", "protocolIdentifier"]\n'
               'collect = ["octetDeltaCount", "packetDeltaCount"]\n', "-T", "r", "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines and all(list(r) == ["src", "proto", "octets", "packets"] for r in lines)
    ipv4 = [v for k, v in reference.totals(ANDROID).totals.items() if k[0] == 4]    # (an IPv4-only record)
    assert sum(r["packets"] for r in lines) == sum(p for p, _ in ipv4)
    assert sum(r["octets"] for r in lines) == sum(o for _, o in ipv4)


def test_json_of_a_record_without_json_fields_is_an_empty_object_per_record(tmp_path):
    """The ICMP type-code has no JSON key: a record of it alone printed lines of '}'."""
    capture = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "pcaps", "corpus", "zeek",
                           "icmp_dot1q.pcap")
    path = tmp_path / "r.toml"
    path.write_text('[[record]]\nname = "r"\nmatch = ["icmpTypeCodeIPv4"]\ncollect = []\n')
    res = subprocess.run([PYPROBE, "-r", capture, "-f", str(path), "-T", "r", "--json", "-q"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines and [json.loads(line) for line in lines] == [{}] * len(lines)


# -- any definition: refused with a reason, or metered with nothing lost -----------------------

from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from pyprobe.definitions import ELEMENTS  # noqa: E402
from pyprobe.fields import BY_NAME  # noqa: E402

NAMES = sorted(ELEMENTS) + ["sourceIPv4Adress", "", "packetDeltaCount/8", "sourceIPv6Address/129"]


def _element():
    return st.one_of(st.sampled_from(NAMES),
                     st.builds(lambda n, k: f"{n}/{k}", st.sampled_from(NAMES), st.integers(-1, 130)))


MIXED = [(T0 + i, P.eth_ip_packet(4 if i % 3 else 6, f"10.0.{i % 4}.{i % 7}" if i % 3 else f"2001:db8::{i % 5}",
                                  "10.9.0.1" if i % 3 else "2001:db8::99", (6, 17, 1)[i % 3] if i % 3 else 17,
                                  1000 + i % 11, 80 + i % 2, flags=0x12 if i % 5 == 0 else 0x10, tos=i % 4 * 8,
                                  payload=b"x" * (i % 9)))
         for i in range(200)]


@hsettings(max_examples=150, deadline=None)
@given(match=st.lists(_element(), max_size=6), collect=st.lists(_element(), max_size=6), biflow=st.booleans())
def test_any_definition_is_refused_with_a_reason_or_loses_no_packet(match, collect, biflow):
    try:
        d = define("any", match, collect, biflow)
    except ValueError as e:
        assert str(e).startswith("record 'any': ")
        return
    m, recs, packed = meter(d, MIXED)
    counted = sum(r.packets for r in records.unpack(packed))
    reverse = sum(row[0] for row in records.shown_values(packed, [BY_NAME["reverse_packets"]]))
    stats = m.stats()
    assert stats["packets_metered"] + sum(stats["packets_ignored"].values()) == len(MIXED)
    assert counted + reverse == stats["packets_metered"]      # (a biflow's responder in the reverse counter)
    assert reverse == 0 or biflow


def test_mpls_label_and_exp_of_the_top_entry():
    """Label 1000, EXP 5 on top of label 17 (bottom of stack): the top entry's label and EXP, as
    JSON shows them and as IPFIX's mplsTopLabelStackSection carries them (label << 4 | EXP << 1)."""
    ip = P.ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 1, 2)
    top = (1000 << 12) | (5 << 9) | 64                    # TTL 64, not the bottom
    bottom = (17 << 12) | (1 << 8) | 64
    frame = (P.mac_bytes("02:00:00:00:00:02") + P.mac_bytes("02:00:00:00:00:01") + struct.pack("!H", 0x8847)
             + struct.pack("!II", top, bottom) + ip)
    d = define("m", ["sourceIPv4Address", "mplsTopLabelExp"], ["mplsTopLabelStackSection", "packetDeltaCount"])
    _, _, packed = meter(d, [(T0, frame)])
    (r,) = json_records(packed, d)
    assert (r["mpls_exp"], r["mpls_stack"]) == (5, (1000 << 4) | (5 << 1))
    _, _, packed = meter(predefined("full"), [(T0, frame)])
    assert [x.mpls_label for x in records.unpack(packed)] == [1000]
