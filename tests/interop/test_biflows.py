"""Interop: biflows (a record with biflow = true, RFC 5103) exported as IPFIX, with the
responder's counters as reverse elements (enterprise 29305), and as v9 (OUT_BYTES,
OUT_PKTS, as softflowd -b sends them); decoded by tshark with no warning. Per pair of
endpoints, the initiator's plus the responder's counts equal the capture's one-way
totals (tests/reference.py), and the record of a pair's first packet names that
packet's sender as its source."""


import pytest

import reference  # noqa: E402
from collectors import CORPUS, norm_addr, pyprobe_record_to_tshark  # noqa: E402

CAPTURES = ["ndpi/1kxun.pcap", "ndpi/anyconnect-vpn.pcap", "zeek/echo-connections.pcap.gz"]
RECORD = """[[record]]
name = "bi"
biflow = true
match = ["sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address", "destinationIPv6Address",
         "protocolIdentifier", "sourceTransportPort", "destinationTransportPort"]
collect = ["packetDeltaCount", "octetDeltaCount", "tcpControlBits", "flowStartMilliseconds", "flowEndMilliseconds"]
"""


def pair(src, dst, proto, sport, dport):
    return (proto,) + tuple(sorted([(src, sport), (dst, dport)]))


def two(value):
    """tshark lists a forward element and its reverse under one name: (forward, reverse)."""
    return (int(value[0], 0), int(value[1], 0)) if isinstance(value, list) else (int(value, 0), 0)


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("rel", CAPTURES)
def test_biflow_counts_add_up_to_the_one_way_totals(rel, version, tmp_path):
    path = CORPUS / rel
    if not path.exists():
        pytest.skip("capture not in corpus: %s" % rel)
    flows, _ = pyprobe_record_to_tshark(path, version, tmp_path, RECORD, "bi")
    want, first_sender = {}, {}
    for (_, src, dst, proto, sport, dport), (packets, octets) in reference.totals(str(path)).totals.items():
        t = want.setdefault(pair(src, dst, proto, sport, dport), [0, 0])
        t[0] += packets
        t[1] += octets
    for _, d in reference.walk(str(path)):
        if d is not None:
            first_sender.setdefault(pair(d[1], d[2], d[3], d[4], d[5]), (d[1], d[4]))
    got, earliest = {}, {}
    for f in flows:
        fields = f["fields"]
        if version == 9:
            packets = (int(fields["cflow.packets64"] if "cflow.packets64" in fields else fields["cflow.packets"]),
                       int(fields.get("cflow.post_packets", 0)))
            octets = (int(fields["cflow.octets64"] if "cflow.octets64" in fields else fields["cflow.octets"]),
                      int(fields.get("cflow.post_octets", 0)))
        else:
            packets, octets = two(fields["cflow.packets"]), two(fields["cflow.octets"])
        key = pair(f["src"], f["dst"], f["proto"], f.get("sport", 0), f.get("dport", 0))
        t = got.setdefault(key, [0, 0])
        t[0] += sum(packets)
        t[1] += sum(octets)
        if key not in earliest or f["start_ms"] < earliest[key][0]:
            earliest[key] = (f["start_ms"], (norm_addr(f["src"]), f.get("sport", 0)))
    assert got == want
    assert {k: v[1] for k, v in earliest.items()} == first_sender
