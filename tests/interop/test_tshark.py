"""Interop: pyprobe's export datagrams (v5, v9, IPFIX) dissected by tshark's cflow dissector.

A few representative captures are exported to a plain UDP socket; the datagrams
are wrapped into a pcap and handed to tshark (`-d udp.port==PORT,cflow`).  Checks:

  * tshark finds no malformed packet and no expert error;
  * tshark's decoded flows add up, per key (ipver, src, dst, proto, sport,
    dport), to the packets/octets of tests/reference.py (v5: IPv4 keys only,
    and no IPv6 flow at all), ICMP type*256+code included;
  * per key, the earliest start / latest end tshark decodes (absolute ms,
    computed from sysUptime/unix_secs for v5/v9, flowStart/EndMilliseconds for
    IPFIX) equal the key's first/last packet time in the capture (ms truncated,
    running-maximum clock);
  * v9 and IPFIX: per key, the lowest minimumTTL and highest maximumTTL tshark
    decodes equal the lowest and highest IPv4 TTL / IPv6 hop limit of the key's
    packets in the capture;
  * framing, by an independent parse of the same bytes (collectors.parse_export)
    and by tshark: every header count equals the records present (v9 counts
    template and options records too), tshark dissects every data record of
    every datagram (it stops at the header count), sequence numbers follow
    v5 (flows before) / v9 (packets before) / RFC 7011 (data records before),
    no datagram is larger than 1472 bytes, no data set without a template.
"""

import subprocess
from collections import defaultdict

import pytest

import reference  # noqa: E402
from collectors import (CORPUS, PYPROBE, UdpSink, fmt, ground_truth, time_problems, parse_export, tshark_decode,  # noqa: E402
                        tshark_expert, write_pcap)


CAPTURES = [
    "ndpi/anyconnect-vpn.pcap",        # IPv4 + IPv6, ICMP and ICMPv6
    "zeek/icmp_dot1q.pcap",            # 802.1Q VLAN, ICMP
    "zeek/pppoe-over-qinq.pcap",       # QinQ + PPPoE
    "ndpi/syslog.pcap",                # time jumps of decades (32-bit ms uptime wraps)
    "ndpi/1kxun.pcap",                 # many flows, IPv4 + IPv6
    "zeek/echo-connections.pcap.gz",   # 1000 flows, timestamps stepping backwards, gzip
    "zeek/ipv6-http-atomic-frag.pcap", # IPv6 fragments, ICMPv6, backwards timestamps
]

MAX_DATAGRAM = 1472


def _params():
    for rel in CAPTURES:
        for version in (5, 9, 10):
            yield pytest.param(rel, version, id="%s-v%d" % (rel, version))


def reference_ttls(path):
    """Per key, (lowest, highest) TTL / hop limit of its packets, as the capture has them."""
    ttls = {}
    for _, decoded in reference.walk(str(path)):
        if decoded is not None:
            low, high = ttls.get(decoded[:6], (256, -1))
            ttls[decoded[:6]] = (min(low, decoded[8]), max(high, decoded[8]))
    return ttls


def check_framing(version, messages, tshark_frames):
    problems = []
    flows_before = 0
    records_before = {}          # IPFIX: per observation domain
    for i, m in enumerate(messages):
        where = "datagram %d" % i
        if m["version"] != version:
            problems.append("%s: version %s, expected %d" % (where, m["version"], version))
            continue
        if m["length"] > MAX_DATAGRAM:
            problems.append("%s: %d bytes > %d" % (where, m["length"], MAX_DATAGRAM))
        for e in m["errors"]:
            problems.append("%s: %s" % (where, e))
        if m.get("unknown_sets"):
            problems.append("%s: data sets %s sent before their template" % (where, m["unknown_sets"]))
        if version == 5:
            if m["count"] > 30:
                problems.append("%s: v5 count %d > 30" % (where, m["count"]))
            if m["sequence"] != flows_before:
                problems.append("%s: v5 flow_sequence %d, expected %d (flows before)"
                                % (where, m["sequence"], flows_before))
            flows_before += m["records"]
        elif version == 9:
            if m["count"] != m["records"]:
                problems.append("%s: v9 count %d but the packet holds %d records "
                                "(templates %d, options templates %d, data %s, options data %s)"
                                % (where, m["count"], m["records"], m["template_records"],
                                   m["options_template_records"], m["data_records"],
                                   m["options_data_records"]))
            if m["sequence"] != i:
                problems.append("%s: v9 sequence %d, expected %d (packets before)" % (where, m["sequence"], i))
        else:
            before = records_before.get(m["domain"], 0)
            if m["sequence"] != before:
                problems.append("%s: IPFIX sequence %d, expected %d (data records before in domain %d)"
                                % (where, m["sequence"], before, m["domain"]))
            records_before[m["domain"]] = before + m["records"]
        # tshark must have dissected every flow data record of this datagram
        if i < len(tshark_frames):
            want = m["records"] if version == 5 else sum(m["data_records"].values())
            got = len(tshark_frames[i]["flows"])
            if got != want:
                problems.append("%s: tshark dissected %d flow records, the datagram holds %d"
                                % (where, got, want))
    if len(tshark_frames) != len(messages):
        problems.append("tshark read %d frames, %d datagrams sent" % (len(tshark_frames), len(messages)))
    return problems


@pytest.mark.parametrize("rel,version", list(_params()))
def test_tshark_dissects_pyprobe_export(rel, version, tmp_path):
    path = CORPUS / rel
    if not path.exists():
        pytest.skip("capture not in corpus: %s" % rel)
    totals, first, last = ground_truth(path)
    if version == 5:
        totals = {k: v for k, v in totals.items() if k[0] == 4}

    with UdpSink() as sink:
        res = subprocess.run([PYPROBE, "-r", str(path), "-n", "127.0.0.1:%d" % sink.port,
                              "-v", str(version), "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    pcap = tmp_path / ("export-v%d.pcap" % version)
    write_pcap(sink.datagrams, pcap, sink.port)

    problems = []
    expert = tshark_expert(pcap, sink.port)
    if expert:
        problems.append("tshark malformed/expert errors:%s" % fmt(expert, 20))

    frames = tshark_decode(pcap, sink.port)
    messages = parse_export(sink.datagrams)
    problems += check_framing(version, messages, frames)

    got = defaultdict(lambda: [0, 0])
    got_ttls = {}
    firsts, lasts, incomplete = {}, {}, []
    for fr in frames:
        for f in fr["flows"]:
            if not all(k in f for k in ("src", "dst", "proto", "sport", "dport", "packets", "octets")):
                incomplete.append((fr["frame"], sorted(f["fields"])))
                continue
            ipver = 6 if ":" in f["src"] else 4
            key = (ipver, f["src"], f["dst"], f["proto"], f["sport"], f["dport"])
            got[key][0] += f["packets"]
            got[key][1] += f["octets"]
            if version != 5:
                low, high = got_ttls.get(key, (256, -1))
                got_ttls[key] = (min(low, f.get("min_ttl", 256)), max(high, f.get("max_ttl", -1)))
            if f["proto"] in (1, 58) and "icmp_type_code" in f and f["icmp_type_code"] != f["dport"]:
                problems.append("frame %d: ICMP type/code field %d != destination port %d for %s"
                                % (fr["frame"], f["icmp_type_code"], f["dport"], key))
            if "start_ms" in f and "end_ms" in f:
                firsts[key] = min(firsts.get(key, f["start_ms"]), f["start_ms"])
                lasts[key] = max(lasts.get(key, f["end_ms"]), f["end_ms"])
            else:
                incomplete.append((fr["frame"], "no start/end time", key))
    if incomplete:
        problems.append("%d flow records tshark could not fully decode:%s"
                        % (len(incomplete), fmt(incomplete)))
    got = dict(got)
    missing = [(k, totals[k]) for k in totals if k not in got]
    extra = [(k, got[k]) for k in got if k not in totals]
    wrong = [(k, "expected", totals[k], "tshark", got[k]) for k in totals if k in got and got[k] != totals[k]]
    if missing:
        problems.append("%d keys missing in tshark's decode:%s" % (len(missing), fmt(missing)))
    if extra:
        problems.append("%d keys in tshark's decode not in the capture:%s" % (len(extra), fmt(extra)))
    if wrong:
        problems.append("%d keys with wrong packets/octets:%s" % (len(wrong), fmt(wrong)))

    problems += time_problems(firsts, lasts, first, last, "tshark")
    if version != 5:
        ttls = reference_ttls(path)
        wrong_ttl = [(k, "expected", ttls[k], "tshark", got_ttls[k]) for k in got_ttls if got_ttls[k] != ttls.get(k)]
        if wrong_ttl:
            problems.append("%d keys with wrong minimum/maximum TTL:%s" % (len(wrong_ttl), fmt(wrong_ttl)))

    if problems and sink.datagrams:
        problems.append("first datagram (%d bytes): %s" % (len(sink.datagrams[0]),
                                                          sink.datagrams[0][:96].hex()))
    assert not problems, "%s -v %d (%d datagrams):\n%s" % (rel, version, len(sink.datagrams),
                                                          "\n".join(problems))
