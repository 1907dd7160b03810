"""pyprobe generate against real collectors: nfcapd/nfdump store exactly the records
written to --expect, field by field, with no sequence failure; many simulated exporters
(by observation domain, and by source address); same seed and start time, same bytes;
tshark decodes generated v9 and IPFIX with no malformed record."""

import json
import subprocess
import time
from collections import Counter

import pytest

import wire

from collectors import NFDUMP, PEER_ENV, PYPROBE, NfcapdCollector, UdpSink, nfdump_flow, norm_addr, tshark_decode, \
    tshark_expert, write_pcap  # noqa: E402

IPV4_ONLY_PROFILE = "ipv6_share = 0.0\n"


def generate(*args, timeout=120):
    proc = subprocess.run([PYPROBE, "generate", *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def expected_rows(path):
    """The --expect file's records as nfdump shows them (times in ms)."""
    with open(path) as f:
        return rows_of(json.loads(line) for line in f)


def rows_of(records):
    """Records as nfdump shows them: ICMP without a source port, times in ms, TCP flags for TCP."""
    rows = Counter()
    for r in records:
        icmp = r["proto"] in (1, 58)
        rows[(r["ipver"], norm_addr(r["src"]), norm_addr(r["dst"]), r["proto"], 0 if icmp else r["sport"],
              r["dport"], r["packets"], r["octets"], int(round(r["start"] * 1e6)) // 1000,
              int(round(r["end"] * 1e6)) // 1000, r["tcp_flags"] if r["proto"] == 6 else 0, r["tos"],
              r["in_if"], r["out_if"])] += 1
    return rows


def flag_bits(text):
    return sum(1 << (7 - i) for i, c in enumerate(text or "........") if c not in ".")


def nfdump_rows(collector, without_addresses=None):
    """nfdump's records as rows_of's; records with no address (the unknown-field fault's own
    record, which carries only octets and an unknown element) are counted in without_addresses."""
    rows = Counter()
    flows = [r for r in collector.raw_json() if r.get("type", "FLOW") == "FLOW"]
    addressed = [r for r in flows if "src4_addr" in r or "src6_addr" in r]
    if without_addresses is not None:
        without_addresses.append(len(flows) - len(addressed))
    for r in map(nfdump_flow, addressed):
        rows[(r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"], r["packets"], r["octets"],
              r["first_ms"], r["last_ms"], flag_bits(r["tcp_flags"]) if r["proto"] == 6 else 0, r["tos"],
              r["input"], r["output"])] += 1
    return rows


@pytest.mark.parametrize("version,seconds", [(9, 4), pytest.param(9, 10, marks=pytest.mark.long), (10, 4), (5, 4)])
def test_nfcapd_stores_exactly_the_expected_records(tmp_path, version, seconds):
    expect = str(tmp_path / "expect.json")
    extra = []
    if version == 5:
        profile = tmp_path / "ipv4.toml"
        profile.write_text(IPV4_ONLY_PROFILE)
        extra = ["--profile", str(profile)]
    rate_sink = wire.TimedCollector() if version == 9 else None   # a second collector: the pacing
    with NfcapdCollector() as col:
        targets = ["-n", "127.0.0.1:%d" % col.port] + (["-n", rate_sink.address] if rate_sink else [])
        started = time.monotonic()
        proc = generate(*targets, "-v", str(version), "--rate", "50000", "--duration", str(seconds),
                        "--expect", expect, *extra)
        took = time.monotonic() - started
    try:
        want = expected_rows(expect)
        got = nfdump_rows(col)
        failures = col.sequence_failures()
    finally:
        col.cleanup()
    made = sum(want.values())
    assert abs(made - 50000 * seconds) <= 0.02 * 50000 * seconds, (made, proc.stderr)
    assert took < seconds + 2
    missing, extra_rows = want - got, got - want
    assert not missing and not extra_rows, (f"{sum(missing.values())} expected records not in nfdump, "
                                            f"{sum(extra_rows.values())} not expected: "
                                            f"{list(missing)[:3]} / {list(extra_rows)[:3]}")
    assert failures == 0
    if rate_sink:
        arrived = rate_sink.records()
        first = arrived[0][0]
        per_second = Counter(int(when - first) for when, _, _ in arrived)
        full = [per_second[s] for s in range(seconds - 1)]          # the whole seconds of the run
        assert all(abs(n - 50000) <= 5000 for n in full), full


def test_same_seed_and_start_time_give_the_same_datagrams():
    runs = []
    for _ in range(2):
        with UdpSink() as sink:
            generate("-n", "127.0.0.1:%d" % sink.port, "-v", "10", "--seed", "7", "--start-time",
                     "2026-01-01T00:00:00", "--count", "3000", "--rate", "0", "-q")
        runs.append(sink.datagrams)
    assert runs[0] and runs[0] == runs[1]
    with UdpSink() as sink:
        generate("-n", "127.0.0.1:%d" % sink.port, "-v", "10", "--seed", "8", "--start-time",
                 "2026-01-01T00:00:00", "--count", "3000", "--rate", "0", "-q")
    assert sink.datagrams != runs[0]


def exporters_of(collector):
    """nfdump -E: (address, observation domain / source id) -> (flows, sequence failures), every
    exporter nfcapd listed (one that sent no flow as (0, 0))."""
    return {exporter: counts for exporter, (counts, _) in exporter_listing(collector).items()}


def exporter_listing(collector):
    """nfdump -E: (address, observation domain / source id) -> ((flows, sequence failures),
    [(packet interval, packet space) of each sampler nfdump applies to its flows])."""
    out, current = {}, None
    for path in collector.files():
        text = subprocess.run([NFDUMP, "-E", path], capture_output=True, text=True, env=PEER_ENV,
                              timeout=60).stdout
        for line in text.splitlines():
            if line.startswith("SysID:"):
                parts = dict(p.strip().split(":", 1) for p in line.split(",") if ":" in p)
                address = line.split("IP:")[1].split(",")[0].strip()
                domain = int(parts["ID"].split("-")[0])
                counts = (int(parts["flows"]), int(parts["Sequence failures"])) if "flows" in parts else (0, 0)
                current = out.setdefault((address, domain), (counts, []))
            elif line.strip().startswith("Sampler:") and current is not None:
                fields = dict(p.strip().split(": ")[-2:] for p in line.split(",") if ": " in p)
                current[1].append((int(fields["packet interval"]), int(fields["packet space"])))
    return out


@pytest.mark.parametrize("version", [9, 10])
def test_one_exporter_per_router_with_its_sampling(tmp_path, version):
    """nfcapd lists each simulated router once, options and flows alike (IPFIX options once
    went in observation domain 0: a second exporter per address), and applies the sampling
    the options announce to that router's flows: nfdump scales their counts by 10."""
    expect = tmp_path / "expect.json"
    with NfcapdCollector() as col:
        generate("-n", "127.0.0.1:%d" % col.port, "-v", str(version), "--exporters", "3", "-s", "10",
                 "--count", "600", "--rate", "0", "--seed", "3", "--expect", str(expect), "-q")
    try:
        listing = exporter_listing(col)
        stored_packets = sum(r["packets"] for r in map(nfdump_flow, col.raw_json()))
    finally:
        col.cleanup()
    assert sorted(listing) == [("127.0.0.1", domain) for domain in (1, 2, 3)], listing
    assert all(samplers == [(1, 9)] and failures == 0 for (_, failures), samplers in listing.values()), listing
    with open(expect) as f:
        assert stored_packets == 10 * sum(json.loads(line)["packets"] for line in f)


@pytest.mark.parametrize("address", [None, "127.0.1.0/24"])
def test_fifty_exporters(address):
    with NfcapdCollector() as col:
        generate("-n", "127.0.0.1:%d" % col.port, "-v", "10", "--exporters", "50", "--rate", "20000",
                 "--count", "20000", *(["--exporter-address", address] if address else []))
    try:
        exporters = exporters_of(col)
    finally:
        col.cleanup()
    assert len(exporters) == 50, exporters
    assert all(failures == 0 for _, failures in exporters.values())
    assert sum(flows for flows, _ in exporters.values()) == 20000
    assert {domain for _, domain in exporters} == set(range(1, 51))
    addresses = {a for a, _ in exporters}
    assert addresses == ({"127.0.1.%d" % i for i in range(1, 51)} if address else {"127.0.0.1"})


@pytest.mark.parametrize("version", [9, 10])
def test_tshark_decodes_generated_export(tmp_path, version):
    with UdpSink() as sink:
        generate("-n", "127.0.0.1:%d" % sink.port, "-v", str(version), "--count", "5000", "--rate", "0",
                 "--seed", "3", "--expect", str(tmp_path / "e.json"), "-q")
    pcap = tmp_path / "export.pcap"
    write_pcap(sink.datagrams, pcap, sink.port)
    assert tshark_expert(pcap, sink.port) == []
    flows = [f for frame in tshark_decode(pcap, sink.port) for f in frame["flows"]]
    assert len(flows) == 5000
    with open(tmp_path / "e.json") as f:
        want = Counter((norm_addr(r["src"]), norm_addr(r["dst"]), r["packets"], r["octets"])
                       for r in map(json.loads, f))
    assert Counter((f["src"], f["dst"], f["packets"], f["octets"]) for f in flows) == want


# -- faults on purpose ---------------------------------------------------------------------

def injected(stderr, kind):
    """How many of a fault the summary says were injected (over every exporter)."""
    import re
    return sum(int(n) for n in re.findall(rf"{re.escape(kind)} (\d+)", stderr))


@pytest.mark.parametrize("version", [5, 9, 10])
def test_seq_gap_count_equals_nfdump_sequence_failures(tmp_path, version):
    profile = tmp_path / "ipv4.toml"
    profile.write_text(IPV4_ONLY_PROFILE)
    with NfcapdCollector() as col:
        proc = generate("-n", "127.0.0.1:%d" % col.port, "-v", str(version), "--rate", "20000", "--count", "20000",
                        "--fault", "seq-gap=40", "--profile", str(profile))
    try:
        failures = col.sequence_failures()
        stored = len(col.records())
    finally:
        col.cleanup()
    gaps = injected(proc.stderr, "seq-gap")
    assert gaps >= 5
    assert failures == gaps
    assert stored == 20000                     # a gap in the numbers loses no record


@pytest.mark.parametrize("version,kind", [(9, "reorder"), (10, "reorder"), (9, "duplicate"), (10, "duplicate"),
                                          (10, "truncate")])
def test_tshark_flags_the_fault(tmp_path, version, kind):
    with UdpSink() as sink:
        proc = generate("-n", "127.0.0.1:%d" % sink.port, "-v", str(version), "--count", "3000", "--rate", "20000",
                        "--fault", f"{kind}=25")
    pcap = tmp_path / "faulty.pcap"
    write_pcap(sink.datagrams, pcap, sink.port)
    flagged = [line for line in tshark_expert(pcap, sink.port) if "Unexpected flow sequence" in line]
    assert injected(proc.stderr, kind) >= 3
    assert len(flagged) >= injected(proc.stderr, kind)


@pytest.mark.parametrize("version", [9, 10])
def test_nfcapd_survives_every_fault_and_keeps_what_it_can(tmp_path, version):
    """Every kind at once: nfcapd keeps running and stores every record the expect file says
    a correct collector must have, and nothing it does not list."""
    kinds = ["seq-gap=30", "duplicate=17", "reorder=13", "data-before-template", "template-redefine=37",
             "truncate=23", "bad-set-length=29", "unknown-field=41"]
    if version == 10:
        kinds.append("template-withdraw=43")
    expect = tmp_path / "expect.json"
    with NfcapdCollector() as col:
        proc = generate("-n", "127.0.0.1:%d" % col.port, "-v", str(version), "--rate", "20000", "--count", "20000",
                        "--expect", str(expect), *[x for k in kinds for x in ("--fault", k)])
        alive = col.proc.poll() is None
    junk = []
    try:
        got = nfdump_rows(col, junk)
    finally:
        col.cleanup()
    assert alive
    assert junk[0] <= injected(proc.stderr, "unknown-field")
    must, may = Counter(), Counter()
    with open(expect) as f:
        for line in f:
            r = json.loads(line)
            row = next(iter(rows_of([r])))
            effects = {m["record"] for m in r.get("faults", [])}
            if "may_lack" in effects:
                may[row] += 1
            elif "may_repeat" in effects:
                must[row] += 1
                may[row] += 1
            else:
                must[row] += 1
    for kind in (k.split("=")[0] for k in kinds):
        assert injected(proc.stderr, kind) >= 1, kind
    assert not must - got, f"{sum((must - got).values())} records a collector must have are missing"
    assert not got - (must + may), f"{sum((got - must - may).values())} records that were not sent"


# -- packets: the generated capture through softflowd and pmacct ------------------------------

@pytest.fixture(scope="module")
def generated_capture(tmp_path_factory):
    d = tmp_path_factory.mktemp("generated")
    pcap, expect = d / "g.pcap", d / "expect.json"
    generate("--pcap", str(pcap), "--count", "4000", "--rate", "400", "--seed", "21", "--start-time",
             "2026-05-01T08:00:00", "--expect", str(expect), "-q")
    return pcap, expect


def test_softflowd_reads_the_generated_capture_within_its_explained_differences(generated_capture):
    """The softflowd interop test's rules, on a capture the generator wrote: pyprobe's export equals
    the expected records' totals, softflowd's equals it plus the explained per-packet differences."""
    import test_softflowd as sfd
    pcap, expect = generated_capture
    want = Counter()
    with open(expect) as f:
        for r in map(json.loads, f):
            key = (r["ipver"], norm_addr(r["src"]), norm_addr(r["dst"]), r["proto"], r["sport"], r["dport"])
            want[key + ("packets",)] += r["packets"]
            want[key + ("octets",)] += r["octets"]
    delta, rules = sfd.explained_delta(pcap)
    assert not [r for r in rules if r.startswith("UNEXPLAINED")], rules
    pyprobe = sfd.nfdump_totals(lambda port: sfd.run_pyprobe(pcap, port), check_sequence=True)
    got = Counter()
    for key, (packets, octets) in pyprobe.items():
        got[key + ("packets",)] += packets
        got[key + ("octets",)] += octets
    assert got == want
    softflowd = sfd.nfdump_totals(lambda port: sfd.run_softflowd(pcap, port))
    assert softflowd == sfd.add(pyprobe, delta), sfd.diff(softflowd, sfd.add(pyprobe, delta), "softflowd",
                                                           "pyprobe+rules")


@pytest.mark.parametrize("version", [9, 10])
def test_nfacctd_accounts_generated_records(tmp_path, version):
    from pmacct import NfacctdCollector, regroup
    expect = tmp_path / "expect.json"
    col = NfacctdCollector()
    try:
        with col:
            generate("-n", "127.0.0.1:%d" % col.port, "-v", str(version), "--count", "3000", "--rate", "20000",
                     "--seed", "5", "--expect", str(expect), "-q")
        got = col.totals()
        problems = col.problems()
    finally:
        col.cleanup()
    assert not problems, "nfacctd's log:\n" + "\n".join(problems)
    want = {}
    with open(expect) as f:
        for r in map(json.loads, f):
            key = (r["ipver"], norm_addr(r["src"]), norm_addr(r["dst"]), r["proto"], r["sport"], r["dport"])
            entry = want.setdefault(key, [0, 0])
            entry[0] += r["packets"]
            entry[1] += r["octets"]
    assert got == regroup(want)
