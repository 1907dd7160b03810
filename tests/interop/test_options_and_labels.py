"""Interop: the TCP option kinds (tcpOptions, IANA 209) and the MPLS label stack
(mplsTopLabelStackSection, mplsLabelStackSection2..10: IANA 70..79) of each flow, exported as
v9 and IPFIX and decoded by tshark, against tshark's own dissection of the same captures.

Per flow (5-tuple), the truth is the OR of the option kinds below 64 of its TCP packets, laid
out as RFC 5102 draws tcpOptions (the element's octet k holds kinds 8k+7 .. 8k), and its first
packet's label stack entries (label, EXP, bottom of stack), as many as the elements carry.
The captures: corpus ones with TCP options (end of list, SACK, TCP Fast Open's experiment
254, which the element cannot carry) and with MPLS (one label; two under a VLAN tag), and one
written here with deeper stacks (eleven entries: the eleventh is not exported) and rarer kinds.
"""

import subprocess

import pytest

from collectors import CORPUS, PYPROBE, UdpSink, _tshark, tshark_expert, tshark_json, write_pcap as write_export
from packets import ipv4, ipv6, labelled, tcp_segment, udp, write_pcap

CAPTURES = ["tcpdump/tfo-5c1fa7f9ae91.pcap", "ndpi/tcp_scan.pcapng", "zeek/pppoe-over-qinq.pcap",
            "zeek/fin_retransmission.pcap", "zeek/mpls-in-vlan.pcap", "arkime/mpls-basic.pcap"]
SECTIONS = 10                  # mplsTopLabelStackSection and mplsLabelStackSection2..10
RECORD = """[[record]]
name = "labels"
match = ["sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address", "destinationIPv6Address",
         "protocolIdentifier", "sourceTransportPort", "destinationTransportPort"]
collect = ["packetDeltaCount", "tcpOptions", "mplsTopLabelStackSection", %s]
""" % ", ".join(f'"mplsLabelStackSection{n}"' for n in range(2, SECTIONS + 1))
ONE_RECORD_PER_FLOW = ["-t", "inactive=1d", "-t", "active=1d", "-t", "tcp.fin=1d", "-t", "tcp.rst=1d"]
TRANSPORTS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
FIELDS = ["frame.time_epoch", "frame.protocols", "ip.src", "ip.dst", "ip.proto", "ipv6.src", "ipv6.dst", "ipv6.nxt",
          "tcp.srcport",
          "tcp.dstport", "udp.srcport", "udp.dstport", "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
          "tcp.option_kind", "mpls.label", "mpls.exp", "mpls.bottom"]


def written_capture(path):
    """Flows with what the corpus lacks: stacks of three and eleven entries (the first packet's
    counts, not a later one's), a lone label with its bottom-of-stack bit, kinds 30, 34, 63, 64."""
    t0 = 1_700_000_000_000_000
    eleven = [(100 + i, i % 8) for i in range(11)]
    syn = tcp_segment(40000, 80, 0x02, options=b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07")
    rare = tcp_segment(40000, 80, 0x10, options=b"\x3f\x02\x40\x02\x1e\x04\x00\x00\x01\x00")
    fast_open = tcp_segment(40001, 80, 0x02, options=b"\x22\x02\x05\x0a" + bytes(8) + b"\x00")
    frames = [
        (t0, labelled(ipv4("10.0.0.1", "10.0.0.2", 6, syn), eleven, vlans=(5,))),
        (t0 + 10, labelled(ipv4("10.0.0.1", "10.0.0.2", 6, rare), [(7, 1)])),
        (t0 + 20, labelled(ipv4("10.0.0.3", "10.0.0.4", 17, udp(53, 53)), [(19, 0)])),
        (t0 + 30, labelled(ipv4("10.0.0.5", "10.0.0.6", 6, fast_open), [(1000, 5), (2000, 6), (3000, 7)])),
        (t0 + 40, labelled(ipv6("2001:db8::1", "2001:db8::2", 6, rare), [])),
    ]
    write_pcap(str(path), frames)
    return path


def tcp_options_element(kinds):
    octets = bytearray(8)
    for kind in kinds:
        if kind < 64:
            octets[kind // 8] |= 1 << kind % 8
    return bytes(octets)


def dissected(path):
    """tshark's reading of a capture: [(time_us, flow key, TCP option kinds, stack entries)]
    for each IP packet, keyed on its outermost IP header as a flow is."""
    res = _tshark(["-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-T", "fields",
                   "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"] +
                  [arg for field in FIELDS for arg in ("-e", field)])
    assert res.returncode == 0, res.stderr
    packets = []
    for line in res.stdout.decode().splitlines():
        row = dict(zip(FIELDS, (cell.split(",") if cell else [] for cell in line.split("\t"))))
        layers = row["frame.protocols"][0].split(":")
        ip = next((layer for layer in layers if layer in ("ip", "ipv6")), None)
        if ip is None:
            continue
        after = layers[layers.index(ip) + 1:]
        proto = TRANSPORTS.get(after[0]) if after else None
        sport = dport = 0
        if proto is None:           # another protocol: the header's own (past IPv6 extension headers)
            proto = int(row["ip.proto"][0] if ip == "ip" else row["ipv6.nxt"][-1])
        elif proto in (6, 17):
            name = "tcp" if proto == 6 else "udp"
            sport, dport = int(row[f"{name}.srcport"][0]), int(row[f"{name}.dstport"][0])
        elif proto in (1, 58):
            name = "icmp" if proto == 1 else "icmpv6"
            dport = int(row[f"{name}.type"][0]) * 256 + int(row[f"{name}.code"][0])
        key = (row[f"{ip}.src"][0], row[f"{ip}.dst"][0], proto, sport, dport)
        kinds = [int(k) for k in row["tcp.option_kind"]] if proto == 6 else []
        stack = [int(label) << 4 | int(exp) << 1 | int(bottom == "1") for label, exp, bottom in
                 zip(row["mpls.label"], row["mpls.exp"], row["mpls.bottom"])]
        seconds, _, fraction = row["frame.time_epoch"][0].partition(".")
        packets.append((int(seconds) * 1_000_000 + int((fraction + "000000")[:6]), key, kinds, stack))
    return packets


def truth(paths):
    """Per flow of the captures read as one stream: (tcpOptions' octets, the first packet's stack
    entries, SECTIONS of them, 0 past its bottom)."""
    flows = {}
    for _, key, kinds, stack in sorted((p for path in paths for p in dissected(path)), key=lambda p: p[0]):
        options, first = flows.get(key, (set(), stack))
        flows[key] = (options | set(kinds), first)
    return {key: (tcp_options_element(kinds), (stack + [0] * SECTIONS)[:SECTIONS])
            for key, (kinds, stack) in flows.items()}


def flow_nodes(node):
    """The data records of tshark's JSON that carry tcpOptions."""
    if isinstance(node, dict):
        if "cflow.tcp_option_map" in node:
            yield node
            return
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from flow_nodes(item)


def exported(paths, version, tmp_path):
    """The flows pyprobe exports from the captures read as one stream, as tshark decodes them
    (finding nothing wrong): key -> (tcpOptions' octets, stack entries)."""
    config = tmp_path / "record.toml"
    config.write_text(RECORD)
    with UdpSink() as sink:
        res = subprocess.run([PYPROBE, "-r", *map(str, paths), "-n", f"127.0.0.1:{sink.port}", "-v", str(version),
                              "-q", "-f", str(config), "-T", "labels", *ONE_RECORD_PER_FLOW],
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    pcap = tmp_path / "export.pcap"
    write_export(sink.datagrams, pcap, sink.port)
    assert tshark_expert(pcap, sink.port) == []
    flows = {}
    for node in flow_nodes(tshark_json(pcap, sink.port)):
        key = (node.get("cflow.srcaddr") or node["cflow.srcaddrv6"], node.get("cflow.dstaddr") or node["cflow.dstaddrv6"],
               int(node["cflow.protocol"]), int(node["cflow.srcport"]), int(node["cflow.dstport"]))
        sections = {int(name.split(":")[0][len("MPLS-Label"):]): value for name, value in node.items()
                    if name.startswith("MPLS-Label")}
        stack = [int(sections[n]["cflow.mpls_label"]) << 4 | int(sections[n]["cflow.mpls_exp"]) << 1 |
                 int(sections[n]["cflow.mpls_bos"]) for n in range(1, SECTIONS + 1)]
        assert key not in flows, key
        flows[key] = (bytes.fromhex(node["cflow.tcp_option_map"].replace(":", "")), stack)
    return flows


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    paths = [CORPUS / rel for rel in CAPTURES if (CORPUS / rel).exists()]
    return [written_capture(tmp_path_factory.mktemp("labels") / "written.pcap")] + paths


@pytest.fixture(scope="module")
def want(captures):
    return truth(captures)


@pytest.mark.parametrize("version", [9, 10])
def test_options_and_label_stack_match_tshark_dissection(captures, want, version, tmp_path):
    got = exported(captures, version, tmp_path)
    assert got == want
    stacks = [stack for _, stack in want.values()]
    assert any(stack[SECTIONS - 1] for stack in stacks) and any(stack[1] for stack in stacks)
    assert (19 << 4 | 1) in (stack[0] for stack in stacks)       # a lone label: its bottom-of-stack bit (issue 25)
    kinds = {k for options, _ in want.values() for k in range(64) if options[k // 8] >> k % 8 & 1}
    assert {0, 5, 30, 34, 63} <= kinds
