"""Interop: pyprobe exports (NetFlow v5, v9, IPFIX) received by nfcapd and read back by nfdump.

For every capture under ../shared/pcaps/corpus whose link type pyprobe decodes
(new files are picked up automatically) and every export version, one nfcapd is
started, `pyprobe -r FILE -n 127.0.0.1:PORT -v V` exports into it, and what nfdump
decodes is compared with:

  * tests/reference.py (independent decoder): per key (ipver, src, dst, proto,
    sport, dport) packets and octets.  ICMP/ICMPv6 type*256+code is part of the
    key's dport, so it must reach nfdump (JSON icmp_type/icmp_code; CSV dp);
  * the capture's packet times: per key, the earliest record start equals the
    key's first packet time and the latest record end the key's last packet
    time, in ms truncated, the packet time being the running maximum of the
    timestamps so far (pyprobe's clock never goes backwards);
  * pyprobe's own `--json` run of the same file: every nfdump record's
    first/last (ms) equal the start/end of a matching pyprobe record (matched as
    multisets on key + packets + octets);
  * nfdump's own bookkeeping: 0 sequence failures (v5, v9).  For IPFIX, nfdump
    1.7.1 does not count options data records in its sequence check, so a copy
    of the messages is taken (second -n) and checked against RFC 7011, and
    nfdump's failure count must be exactly what its rule gives for them.

v5 cannot carry IPv6: for v5 only the IPv4 keys are compared and no IPv6 flow
may show up.
"""

import functools
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import reference  # noqa: E402
from collectors import (CORPUS, NFDUMP, PEER_ENV, PYPROBE, NfcapdCollector, UdpSink, fmt, ground_truth,  # noqa: E402
                        norm_addr, parse_export, time_problems)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".gz", ".pcap.gz", ".pcapng.gz")


def _captures():
    """(relative name, supported) for every capture file in the corpus."""
    out = []
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or not path.name.endswith(CAPTURE_SUFFIXES):
            continue
        try:
            reference.read(path)
        except reference.UnsupportedLinkType:
            continue
        except Exception:           # not a capture at all: not this file's business
            continue
        out.append(path)
    return out


CAPTURES = _captures()

def _params():
    for path in CAPTURES:
        rel = str(path.relative_to(CORPUS))
        for version in (5, 9, 10):
            yield pytest.param(path, version, id="%s-v%d" % (rel, version))


def key_of(rec):
    return (rec["ipver"], rec["src"], rec["dst"], rec["proto"], rec["sport"], rec["dport"])


@functools.lru_cache(maxsize=None)
def pyprobe_json(path):
    """pyprobe's own records of the file: Counter of (key, packets, octets, first_ms, last_ms)."""
    res = subprocess.run([PYPROBE, "-r", str(path), "--json", "-q"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    out = []
    for line in res.stdout.decode().splitlines():
        r = json.loads(line)
        out.append((key_of(r), r["packets"], r["octets"],
                    int(round(r["start"] * 1e6)) // 1000, int(round(r["end"] * 1e6)) // 1000))
    return out


def export(path, version, *ports):
    targets = []
    for port in ports:
        targets += ["-n", "127.0.0.1:%d" % port]
    res = subprocess.run([PYPROBE, "-r", str(path)] + targets + ["-v", str(version), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    return res


@pytest.mark.parametrize("path,version", list(_params()))
def test_nfdump_receives_pyprobe_export(path, version):
    totals, first, last = ground_truth(path)
    if version == 5:
        totals = {k: v for k, v in totals.items() if k[0] == 4}

    # IPFIX: a second collector (a plain socket) gets a copy of every message, so the
    # sequence numbers can be checked against RFC 7011 and nfdump 1.7.1's own rule.
    sink = UdpSink() if version == 10 else None
    with NfcapdCollector() as col:
        if sink:
            with sink:
                res = export(path, version, col.port, sink.port)
        else:
            res = export(path, version, col.port)
    try:
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        records = col.records()
        seq_failures = col.sequence_failures()
        csv_rows = col.csv_rows() if any(k[3] in (1, 58) for k in totals) else []
    finally:
        col.cleanup()

    problems = []

    # -- per key packets / octets against the reference decoder
    got = defaultdict(lambda: [0, 0])
    for r in records:
        got[key_of(r)][0] += r["packets"]
        got[key_of(r)][1] += r["octets"]
    got = dict(got)
    missing = [(k, totals[k]) for k in totals if k not in got]
    extra = [(k, got[k]) for k in got if k not in totals]
    wrong = [(k, "expected", totals[k], "nfdump", got[k]) for k in totals
             if k in got and got[k] != totals[k]]
    if missing:
        problems.append("%d keys missing in nfdump (key, [packets, octets]):%s"
                        % (len(missing), fmt(missing)))
    if extra:
        problems.append("%d keys in nfdump not in the capture:%s" % (len(extra), fmt(extra)))
    if wrong:
        problems.append("%d keys with wrong packets/octets:%s" % (len(wrong), fmt(wrong)))
    if version == 5:
        v6 = [r for r in records if r["ipver"] == 6]
        if v6:
            problems.append("v5 export carried %d IPv6 records" % len(v6))

    # -- ICMP type/code in the destination port, in nfdump's CSV (dp = type*256+code)
    if csv_rows:
        icmp_ref = Counter()
        for k, (p, o) in totals.items():
            if k[3] in (1, 58):
                icmp_ref[(k[1], k[2], k[5])] += p
        icmp_csv = Counter()
        for row in csv_rows:
            if row.get("pr") in ("ICMP", "ICMP6", "1", "58"):
                icmp_csv[(norm_addr(row["sa"]), norm_addr(row["da"]),
                          int(row["dp"]))] += int(row["ipkt"])
        if icmp_csv != icmp_ref:
            problems.append("ICMP (src, dst, type*256+code) -> packets differ between the capture "
                            "and nfdump -o csv dp:\n  expected %s\n  nfdump   %s"
                            % (sorted(icmp_ref.items())[:10], sorted(icmp_csv.items())[:10]))

    # -- record times against the capture's packet times
    firsts, lasts = {}, {}
    for r in records:
        k = key_of(r)
        firsts[k] = min(firsts.get(k, r["first_ms"]), r["first_ms"])
        lasts[k] = max(lasts.get(k, r["last_ms"]), r["last_ms"])
        if r["last_ms"] < r["first_ms"]:
            problems.append("record ends before it starts: %s first %d last %d"
                            % (k, r["first_ms"], r["last_ms"]))
    problems += time_problems(firsts, lasts, first, last, "nfdump")

    # -- every record's first/last equal pyprobe's own --json record (multiset match)
    own = Counter(r for r in pyprobe_json(path) if version != 5 or r[0][0] == 4)
    exported = Counter((key_of(r), r["packets"], r["octets"], r["first_ms"], r["last_ms"])
                       for r in records)
    if own != exported:
        only_own = own - exported
        only_nf = exported - own
        problems.append("records (key, packets, octets, first_ms, last_ms) differ from pyprobe --json:"
                        "\n only in --json:%s\n only in nfdump:%s"
                        % (fmt(only_own.elements()), fmt(only_nf.elements())))

    # -- nfdump's sequence check
    if version != 10 and seq_failures != 0:
        problems.append("nfdump reports %d sequence failures" % seq_failures)
    if version == 10:
        # nfdump 1.7.1 does not count options data records in its IPFIX sequence
        # check (RFC 7011 3.1 does), and they share the flows' observation domain.
        # Check the RFC rule, domain by domain, on the copy, and nfdump's count by its rule.
        messages = parse_export(sink.datagrams)
        if seq_failures != nfdump_ipfix_sequence_failures(messages):
            problems.append("nfdump reports %d sequence failures, its rule gives %d for the messages sent"
                            % (seq_failures, nfdump_ipfix_sequence_failures(messages)))
        expected_seq, bad_seq = {}, []
        for i, m in enumerate(messages):
            if m.get("version") != 10:
                bad_seq.append((i, "version", m.get("version")))
                continue
            want = expected_seq.get(m["domain"], 0)
            if m["sequence"] != want:
                bad_seq.append((i, "sequence", m["sequence"], "expected", want))
            expected_seq[m["domain"]] = (want + m["records"]) & 0xFFFFFFFF
            if m["errors"] or m["unknown_sets"]:
                bad_seq.append((i, m["errors"], "sets without template", m["unknown_sets"]))
        if bad_seq:
            problems.append("IPFIX messages break RFC 7011 sequence/framing (message index, ...):%s"
                            % fmt(bad_seq))

    assert not problems, "%s -v %d:\n%s" % (path.relative_to(CORPUS), version, "\n".join(problems))


def nfdump_ipfix_sequence_failures(messages):
    """The sequence failures nfdump 1.7.1 counts for these IPFIX messages (parse_export's):
    per observation domain it expects the previous message's sequence number plus its flow
    (not options) data records, and counts a mismatch once it has seen flow records."""
    expected, flows_seen, failures = {}, set(), 0
    for m in messages:
        domain = m["domain"]
        if m["sequence"] != expected.get(domain, 0) and domain in flows_seen:
            failures += 1
        flows = sum(m["data_records"].values())
        expected[domain] = (m["sequence"] + flows) & 0xFFFFFFFF
        if flows:
            flows_seen.add(domain)
    return failures


def test_nfdump_ipfix_sequence_rule():
    m = lambda seq, flows, options=0: {"domain": 1, "sequence": seq, "data_records": {256: flows},  # noqa: E731
                                       "options_data_records": {258: options}}
    assert nfdump_ipfix_sequence_failures([m(0, 0, 3), m(3, 10), m(13, 5)]) == 0     # options before flows
    assert nfdump_ipfix_sequence_failures([m(0, 10), m(10, 0, 3), m(13, 5)]) == 1    # options after flows
    assert nfdump_ipfix_sequence_failures([m(0, 10), m(11, 5)]) == 1                 # a lost record


@pytest.mark.parametrize("version", [9, 10])
def test_pyprobe_is_one_exporter_with_its_sampling(version):
    """nfcapd lists pyprobe -r once (options and flows in one observation domain / source id)
    and applies the 1-in-10 sampling its options announce: nfdump scales the counts by 10."""
    path = CORPUS / "ndpi/http_ipv6.pcap"
    with NfcapdCollector() as col:
        res = subprocess.run([PYPROBE, "-r", str(path), "-n", "127.0.0.1:%d" % col.port, "-v", str(version),
                              "-s", "10", "-q"], capture_output=True, timeout=120)
    try:
        assert res.returncode == 0, res.stderr
        listing = "".join(subprocess.run([NFDUMP, "-E", f], capture_output=True, text=True, env=PEER_ENV,
                                         timeout=60).stdout for f in col.files())
        records = col.records()
    finally:
        col.cleanup()
    exporters = [line for line in listing.splitlines() if line.startswith("SysID:")]
    samplers = [line.strip() for line in listing.splitlines() if line.strip().startswith("Sampler:")]
    assert len(exporters) == 1 and "ID:  1," in exporters[0], listing
    assert len(samplers) == 1 and "packet interval: 1, packet space: 9" in samplers[0], listing
    assert records and all(r["packets"] % 10 == 0 for r in records)


def test_corpus_is_not_empty():
    assert len(CAPTURES) >= 10, "corpus not found or mostly unsupported: %s" % CORPUS


def port_protocols_capture(path):
    """SCTP, UDP-Lite, UDP and ICMP flows, IPv4 and IPv6: (path, {key: [packets, octets]})
    from the packets built here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from packets import eth_ip_packet, write_pcap
    frames, want, t = [], defaultdict(lambda: [0, 0]), 1_700_000_000_000_000
    flows = [(4, "10.7.0.1", "10.7.0.2", 132, 36412, 38412), (6, "2001:db8::7", "2001:db8::8", 132, 2905, 2906),
             (4, "10.7.0.3", "10.7.0.4", 136, 5004, 5005), (6, "2001:db8::9", "2001:db8::a", 136, 7000, 7001),
             (4, "10.7.0.5", "10.7.0.6", 17, 1234, 53), (4, "10.7.0.7", "10.7.0.8", 1, 0, 8 * 256),
             (6, "2001:db8::b", "2001:db8::c", 58, 0, 128 * 256)]
    for i in range(5):
        for ipver, src, dst, proto, sport, dport in flows:
            frame = eth_ip_packet(ipver, src, dst, proto, sport, dport, payload=b"p" * (10 + i))
            t += 1000
            frames.append((t, frame))
            entry = want[(ipver, src, dst, proto, sport, dport)]
            entry[0] += 1
            entry[1] += len(frame) - 14
    write_pcap(str(path), frames)
    return str(path), dict(want)


@pytest.mark.parametrize("version", [9, 10])
def test_nfdump_reads_sctp_and_udplite_ports(tmp_path, version):
    """nfdump 1.7 takes an IPFIX icmpTypeCode element over the destination port for any
    protocol but TCP/UDP: only ICMP flows' templates may carry it, or SCTP shows port 0."""
    path, want = port_protocols_capture(tmp_path / "ports.pcap")
    with NfcapdCollector() as col:
        res = export(path, version, col.port)
    try:
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        got = defaultdict(lambda: [0, 0])
        for r in col.records():
            got[key_of(r)][0] += r["packets"]
            got[key_of(r)][1] += r["octets"]
    finally:
        col.cleanup()
    assert dict(got) == want
