"""pyprobe's NetFlow v9 and IPFIX export, collected by pmacct's nfacctd (print plugin).

Per key (ipver, src, dst, proto, sport, dport), packets and octets as nfacctd
accounted them must equal tests/reference.py's totals (pmacct.pmacct_key: nfacctd
1.7.7 reports the transport port fields as they are, which for pyprobe's ICMP
records is 0 / type*256+code, like the reference), and nfacctd's log must report no
problem (pmacct.PROBLEM: errors, warnings, malformed input, sequence jumps).

The harness (tests/interop/pmacct.py) is validated first with softflowd as the
exporter: what nfacctd accounts from softflowd's export must equal what
nfcapd/nfdump decode from the very same export (softflowd counts octets its own
way, so it is compared collector against collector, not against the reference).
softflowd is run with -v 10 and -v 5 there: nfacctd 1.7.7 drops the data of
softflowd's first v9 datagram (see pmacct.py), a softflowd/pmacct quirk that says
nothing about the harness.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

import reference  # noqa: E402
from collectors import CORPUS, PYPROBE, NfcapdCollector, softflowd  # noqa: E402
from pmacct import NFACCTD, MARKER_KEY, PROBE_KEY, NfacctdCollector, pmacct_key, regroup  # noqa: E402


pytestmark = pytest.mark.skipif(not shutil.which(NFACCTD) and not Path(NFACCTD).exists(),
                                reason="pmacct's nfacctd is not installed (scripts/install-peers)")

CAPTURES = [
    "ndpi/google_ssl.pcap",          # one IPv4 TCP connection
    "ndpi/http_ipv6.pcap",           # IPv6 TCP + UDP
    "zeek/5-pings.pcap",             # ICMP: dport = type*256+code
    "zeek/icmp_dot1q.pcap",          # 802.1Q tagged ICMP
    "ndpi/dns_fragmented.pcap",      # IPv6 fragments (later fragments: ports 0), DNS/TCP
    "ndpi/KakaoTalk_chat.pcap",      # Linux SLL, TCP/UDP/ICMP
    "zeek/icmp6-ping.pcap",          # ICMPv6 echo
]


def diff(got, want, got_name="nfacctd", want_name="reference"):
    lines = []
    for key in sorted(set(got) | set(want), key=str):
        if got.get(key) != want.get(key):
            lines.append("  %s: %s %s, %s %s" % (key, got_name, got.get(key), want_name, want.get(key)))
    return "\n".join(lines)


def run_pyprobe(capture, port, version):
    cmd = [str(PYPROBE), "-r", str(CORPUS / capture), "-n", "127.0.0.1:%d" % port,
           "-v", str(version), "-q"]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")


def collect_nfacctd(exporter):
    """What nfacctd accounted from exporter(port); its log must report no problem."""
    col = NfacctdCollector()
    try:
        with col:
            exporter(col.port)
        problems = col.problems()
        assert not problems, "nfacctd's log:\n" + "\n".join(problems)
        return col.totals()
    finally:
        col.cleanup()


# ---------------------------------------------------------------- harness check

@pytest.mark.parametrize("capture,version", [
    ("ndpi/http_ipv6.pcap", 10), ("ndpi/KakaoTalk_chat.pcap", 10), ("zeek/icmp6-ping.pcap", 10),
    ("ndpi/KakaoTalk_chat.pcap", 5), ("zeek/5-pings.pcap", 5)])
def test_harness_agrees_with_nfdump_on_softflowd(capture, version):
    """nfacctd (this harness) and nfcapd/nfdump decode the same softflowd export alike.

    One explained difference: softflowd's IPFIX templates for ICMP carry
    icmpTypeCodeIPv4/IPv6 and no transport ports; nfdump turns the type/code into
    its dport, nfacctd reads only the port fields and reports dport 0."""
    def sfd(port):
        res = softflowd(CORPUS / capture, "127.0.0.1:%d" % port, version=version)
        assert res.returncode == 0, res.stderr.decode(errors="replace")

    got = collect_nfacctd(sfd)

    nf = NfcapdCollector()
    try:
        with nf:
            sfd(nf.port)
        want = {}
        for r in nf.records():
            key = (r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"])
            entry = want.setdefault(key, [0, 0])
            entry[0] += r["packets"]
            entry[1] += r["octets"]
    finally:
        nf.cleanup()
    if version == 10:
        want = regroup(want, lambda k: k[:4] + (0, 0) if k[3] in (1, 58) else k)
    want = regroup(want)
    assert want, "nfdump decoded nothing from softflowd"
    assert got == want, "nfacctd vs nfdump on softflowd -v %d:\n%s" % (
        version, diff(got, want, "nfacctd", "nfdump"))


def test_pmacct_key_rule():
    assert pmacct_key((4, "a", "b", 1, 0, 2048)) == (4, "a", "b", 1, 0, 2048)
    assert pmacct_key((4, "a", "b", 47, 0, 0)) == (4, "a", "b", 47, 0, 0)
    with pytest.raises(ValueError):
        pmacct_key((6, "a", "b", 132, 5, 6))


# ---------------------------------------------------------------- pyprobe

@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("capture", CAPTURES)
def test_pyprobe_export_accounted_by_nfacctd(capture, version):
    want = regroup(reference.totals(str(CORPUS / capture)).totals)
    assert MARKER_KEY not in want and PROBE_KEY not in want
    got = collect_nfacctd(lambda port: run_pyprobe(capture, port, version))
    assert got == want, "%s -v %d:\n%s" % (capture, version, diff(got, want))


@pytest.mark.parametrize("capture", ["ndpi/google_ssl.pcap", "zeek/icmp_dot1q.pcap"])
def test_pyprobe_v5_accounted_by_nfacctd(capture):
    want = regroup({k: v for k, v in reference.totals(str(CORPUS / capture)).totals.items() if k[0] == 4})
    got = collect_nfacctd(lambda port: run_pyprobe(capture, port, 5))
    assert got == want, "%s -v 5:\n%s" % (capture, diff(got, want))
