"""pyprobe generate against hostile options and profiles (issue 22): sizes beyond memory,
rates beyond the machine, signals at any rate, absurd profile values, unwritable outputs,
too few file descriptors; and --expect telling the truth (--pcap read back by pyprobe -r,
IPv6 records a NetFlow v5 collector never gets)."""

import json
import math
import re
import resource
import signal
import subprocess
import time
from collections import Counter

import pytest

import wire

ONE_PROTOCOL = "packets = {fixed = 1}\nbytes = {fixed = 100}\nduration = {fixed = 1}\n"


def generate(*args, check=0, timeout=60, stdout=subprocess.PIPE, **kwargs):
    proc = subprocess.run([wire.PYPROBE, "generate", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, **kwargs)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def refused(*args, **kwargs):
    """The command exits 2 with one line, pyprobe generate: ...; that line, without the
    paths of the test's own files (which hold the test's name)."""
    proc = generate(*args, check=2, **kwargs)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyprobe generate: "), proc.stderr
    return re.sub(r"/tmp/\S*", "FILE", lines[0])


def write_profile(tmp_path, text):
    path = tmp_path / "profile.toml"
    path.write_text(text)
    return str(path)


def multiset(lines):
    return Counter(json.dumps(json.loads(line), sort_keys=True) for line in lines if line.strip())


def statistics_records(stderr):
    """The records count of the summary."""
    line = next(line for line in stderr.splitlines() if line.strip().startswith("records "))
    return int(line.split()[1])


# -- 5: sizes checked before any allocation ---------------------------------------------------

@pytest.mark.parametrize("count", ["4611686018427387904", "100000000000"])
def test_pcap_count_beyond_memory_is_refused(tmp_path, count):
    line = refused("--pcap", str(tmp_path / "x.pcap"), "--count", count, timeout=20)
    assert "--count" in line and "memory" in line, line
    assert not (tmp_path / "x.pcap").exists()


def test_pcap_packets_beyond_memory_are_refused(tmp_path):
    """Each record valid (4e9 packets: a long flow), all of them more packets than memory holds."""
    profile = write_profile(tmp_path, "[[protocol]]\nname = 'udp'\npackets = {fixed = 4000000000}\n"
                                      "bytes = {fixed = 100}\nduration = {fixed = 1}\n")
    line = refused("--pcap", str(tmp_path / "x.pcap"), "--count", "1000", "--profile", profile, timeout=20)
    assert "packets" in line and "memory" in line, line


def test_packets_past_what_a_record_holds_are_refused(tmp_path):
    profile = write_profile(tmp_path, "[[protocol]]\nname = 'udp'\npackets = {fixed = 1152921504606846976, "
                                      "max = 2e18}\nbytes = {fixed = 100}\nduration = {fixed = 1}\n")
    line = refused("--pcap", str(tmp_path / "x.pcap"), "--count", "10", "--profile", profile, timeout=20)
    assert "packets" in line, line


# -- 9: a rate the machine cannot sustain ----------------------------------------------------

def test_rate_beyond_the_machine_keeps_time_and_reports_the_lag(tmp_path):
    sink, expect = wire.UdpCollector(), tmp_path / "expect.json"
    try:
        started = time.monotonic()
        proc = generate("-n", sink.address, "-v", "10", "--rate", "1e9", "--duration", "1", "--expect", str(expect),
                        timeout=30)
        took = time.monotonic() - started
    finally:
        sink.close()
    assert took < 4, took
    assert "achieved" in proc.stderr and "behind" in proc.stderr, proc.stderr
    sent = statistics_records(proc.stderr)
    assert sent > 0
    assert sum(1 for _ in open(expect)) == sent


def test_sigterm_at_a_rate_beyond_the_machine_ends_at_once_with_every_record_expected(tmp_path):
    sink, expect = wire.UdpCollector(), tmp_path / "expect.json"
    try:
        proc = subprocess.Popen([wire.PYPROBE, "generate", "-n", sink.address, "-v", "10", "--rate", "1e9",
                                 "--expect", str(expect)], stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    finally:
        sink.close()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert took < 1.0, took
    assert sum(1 for _ in open(expect)) == statistics_records(err) > 0


@pytest.mark.long
def test_a_rate_beyond_the_machine_holds_memory_bounded(tmp_path):
    proc = subprocess.Popen([wire.PYPROBE, "generate", "--rate", "5e6", "--json", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)
        with open(f"/proc/{proc.pid}/status") as f:
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert rss_kb < 200_000, rss_kb


# -- 10: signals and deadlines at low rates --------------------------------------------------

@pytest.mark.parametrize("rate", ["1e-9", "0.01"])
def test_sigterm_at_a_low_rate_ends_at_once(rate):
    proc = subprocess.Popen([wire.PYPROBE, "generate", "--rate", rate, "--count", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    try:
        _, err = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert time.monotonic() - signalled < 0.5
    assert proc.returncode == 0 and "pyprobe generate statistics" in err, err


def test_duration_ends_a_low_rate_run():
    started = time.monotonic()
    generate("--rate", "1e-9", "--duration", "0.5", "-q", timeout=10)
    assert time.monotonic() - started < 3


# -- 11, 19, also unclear: profile values -------------------------------------------------------

@pytest.mark.parametrize("text,names", [
    ("[[protocol]]\nnumber = 256\n" + ONE_PROTOCOL, "number"),
    ("[[protocol]]\nnumber = -1\n" + ONE_PROTOCOL, "number"),
    ("[[protocol]]\nname = 'tcp'\npackets = { lognormal = [1] }\nbytes = {fixed = 100}\nduration = {fixed = 1}\n",
     "packets"),
    ("client_ports = [inf, 5]\n", "client_ports"),
    ("client_ports = [5]\n", "client_ports"),
    ("[[protocol]]\nname = 'tcp'\nports = [[inf, 1]]\n" + ONE_PROTOCOL, "ports"),
    ("active_timeout = inf\n", "active_timeout"),
    ("[[protocol]]\nname = 'tcp'\nduration = { fixed = nan }\npackets = {fixed = 3}\nbytes = {fixed = 100}\n",
     "duration"),
    ("[[protocol]]\nname = 'tcp'\npackets = { fixed = nan }\nbytes = {fixed = 100}\nduration = {fixed = 1}\n",
     "packets"),
    ("[[protocol]]\nname = 'tcp'\npackets = { lognormal = [1e6, 1e6] }\nbytes = {fixed = 100}\n"
     "duration = {fixed = 1}\n", "packets"),
    ("active_timeout = -5\n", "active_timeout"),
    ("[[protocol]]\nname = 'tcp'\nweight = nan\n" + ONE_PROTOCOL, "weight"),
    ("[[protocol]]\nname = 'tcp'\nbytes = { fixed = 100, min = 100, max = 10 }\npackets = {fixed = 1}\n"
     "duration = {fixed = 1}\n", "bytes"),
    ("[[protocol]]\nname = 'gre'\nports = [[80, 1]]\n" + ONE_PROTOCOL, "ports"),
    ("tos = 5\n", "tos"),
    ("source = [{prefix = '10.0.0.0/8', weight = inf}]\n", "weight"),
])
def test_absurd_profile_values_are_refused_naming_the_key(tmp_path, text, names):
    line = refused("--profile", write_profile(tmp_path, text), "--count", "3", "--json", "-q", timeout=20)
    assert "--profile" in line and names in line, line


def test_unknown_protocol_name_lists_the_names(tmp_path):
    line = refused("--profile", write_profile(tmp_path, "[[protocol]]\nname = 'quic'\n" + ONE_PROTOCOL), "--count", "1")
    assert "unknown" in line and "tcp" in line and "udp" in line and "number" in line, line


def test_missing_protocol_key_is_named(tmp_path):
    line = refused("--profile", write_profile(tmp_path, "[[protocol]]\nname = 'tcp'\nbytes = {fixed = 100}\n"
                                                        "duration = {fixed = 1}\n"), "--count", "1")
    assert "missing" in line and "'packets'" in line, line


MINIMUM_IP_LENGTH = {(4, 6): 40, (4, 17): 28, (4, 1): 28, (6, 6): 60, (6, 17): 48, (6, 58): 48}


def test_records_at_the_profile_extremes_are_whole(tmp_path):
    """Tiny and huge sizes within the limits: every record's octets between its headers and 65535
    bytes a packet, its start not after its end, every line valid JSON."""
    profile = write_profile(tmp_path, """
ipv6_share = 0.5
both_directions = 0.5
active_timeout = 0.001
[[protocol]]
name = "tcp"
packets = { lognormal = [22, 10] }
bytes = { fixed = 1 }
duration = { pareto = [1e9, 0.01] }
[[protocol]]
name = "udp"
packets = { fixed = 4294967295 }
bytes = { fixed = 65535 }
duration = { fixed = 0 }
[[protocol]]
name = "icmp"
packets = { lognormal = [0, 10] }
bytes = { lognormal = [0, 10] }
duration = { lognormal = [0, 10] }
""")
    proc = generate("--profile", profile, "--count", "3000", "--rate", "0", "--seed", "5", "--start-time",
                    "1700000000", "--json", "-q")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 3000
    for r in records:
        low = MINIMUM_IP_LENGTH[r["ipver"], r["proto"]]
        assert 1 <= r["packets"] <= 2**32 - 1, r
        assert low * r["packets"] <= r["octets"] <= 65535 * r["packets"], r
        assert r["start"] <= r["end"], r
        assert math.isfinite(r["start"]) and r["end"] - r["start"] <= 0.001 + 1e-6, r


# -- 12: the time line ---------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["nan", "inf", "-inf", "1e17", "-5"])
def test_start_time_out_of_range_is_refused(when):
    line = refused("--count", "2", f"--start-time={when}", "--json")
    assert "--start-time" in line, line


def test_a_time_line_past_what_records_carry_is_refused():
    # (records 0, 1, 2 end in 2026, 2057 and 2089; record 3 would end in 2121)
    line = refused("--count", "4", "--rate", "1e-9", "--start-time", "2026-01-01T00:00:00", "--json")
    assert "--start-time" in line or "--rate" in line, line


# -- 13: outputs that cannot be written ---------------------------------------------------------

def test_pcap_in_a_missing_directory_is_one_line():
    line = refused("--pcap", "/nonexistent/x.pcap", "--count", "10")
    assert "/nonexistent/x.pcap" in line, line


def test_expect_on_a_full_device_is_one_line():
    line = refused("--count", "10", "--expect", "/dev/full", "-q")
    assert "/dev/full" in line and "No space left" in line, line


def test_pcap_expect_on_a_full_device_is_one_line(tmp_path):
    line = refused("--pcap", str(tmp_path / "x.pcap"), "--count", "10", "--expect", "/dev/full")
    assert "/dev/full" in line, line


def test_standard_output_on_a_full_device_is_one_line():
    with open("/dev/full", "w") as full:
        line = refused("--count", "10", "--json", "-q", stdout=full)
    assert "standard output" in line, line


# -- 14: more exporters than file descriptors ------------------------------------------------------

def test_more_exporters_than_file_descriptors_is_one_line():
    def small_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    line = refused("-n", "127.0.0.1:9", "--count", "1000", "--exporters", "2000", preexec_fn=small_limit)
    assert "--exporters" in line and "1024" in line, line


def test_exporters_within_the_hard_limit_raise_the_soft_one():
    def soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
    sink = wire.UdpCollector()
    try:
        proc = generate("-n", sink.address, "--count", "1000", "--exporters", "500", "--rate", "0",
                        preexec_fn=soft_limit)
    finally:
        sink.close()
    assert statistics_records(proc.stderr) == 1000


# -- 20: --pcap --expect is what pyprobe -r makes of the capture ----------------------------------

NO_PORTS_PROFILE = """
ipv6_share = 0.2
source = [{prefix = "10.0.0.0/24"}, {prefix = "2001:db8::/120"}]
destination = [{prefix = "198.51.100.0/28"}, {prefix = "2001:db8:1::/124"}]
[[protocol]]
name = "gre"
packets = { lognormal = [1.5, 1.0], max = 200 }
bytes = { lognormal = [6, 0.5], max = 1500 }
duration = { lognormal = [0.5, 1.5], max = 100 }
[[protocol]]
name = "esp"
packets = { lognormal = [1.5, 1.0], max = 200 }
bytes = { fixed = 100 }
duration = { lognormal = [0.5, 1.5], max = 100 }
[[protocol]]
number = 255
packets = { fixed = 3 }
bytes = { fixed = 30 }
duration = { fixed = 2 }
[[protocol]]
name = "udp"
ports = [[53, 1]]
packets = { fixed = 2 }
bytes = { fixed = 60 }
duration = { fixed = 1 }
"""


@pytest.mark.parametrize("profile,timeouts", [
    (NO_PORTS_PROFILE, []),
    (None, ["-t", "active=10"]),
    (None, ["-t", "active=3", "-t", "inactive=2", "-t", "tcp.fin=1"]),
], ids=["no-ports", "active-10", "active-3"])
def test_pcap_expect_is_exactly_what_pyprobe_r_makes(tmp_path, profile, timeouts):
    pcap, expect = tmp_path / "g.pcap", tmp_path / "expect.json"
    extra = ["--profile", write_profile(tmp_path, profile)] if profile else []
    generate("--pcap", str(pcap), "--count", "4000", "--rate", "400", "--seed", "3", "--start-time", "1700000000",
             "--expect", str(expect), *extra, *timeouts, "-q")
    want = multiset(expect.read_text().splitlines())
    got = multiset(wire.run_pyprobe(["-r", str(pcap), "--json", "-q", "-m", "1000000", *timeouts]).stdout.splitlines())
    assert sum(want.values()) == 4000
    assert sum((want - got).values()) == 0, sorted(want - got)[:3]
    assert got == want


def test_pcap_of_too_few_distinct_flows_is_refused(tmp_path):
    profile = write_profile(tmp_path, "ipv6_share = 0.0\nsource = [{prefix = '10.0.0.1/32'}]\n"
                                      "destination = [{prefix = '10.0.0.2/32'}]\n[[protocol]]\nname = 'gre'\n"
                                      + ONE_PROTOCOL)
    line = refused("--pcap", str(tmp_path / "x.pcap"), "--count", "10", "--profile", profile)
    assert "distinct" in line, line


# -- 21: --expect says which records a NetFlow v5 collector never gets ----------------------------

def test_expect_marks_the_ipv6_records_v5_cannot_carry(tmp_path):
    sink, expect = wire.UdpCollector(), tmp_path / "expect.json"
    try:
        generate("-n", sink.address, "-v", "5", "--count", "3000", "--rate", "20000", "--seed", "4",
                 "--expect", str(expect), "-q")
        sink.drain()
        received = sum(len(m.records) for m in sink.messages())
    finally:
        sink.close()
    records = [json.loads(line) for line in open(expect)]
    assert len(records) == 3000
    not_sent = [r for r in records if r.get("faults")]
    assert not_sent and all(r["ipver"] == 6 for r in not_sent)
    assert all(r["faults"] == [{"collector": sink.address, "fault": "ipv6-not-carried", "record": "not_sent"}]
               for r in not_sent)
    assert all(not r.get("faults") for r in records if r["ipver"] == 4)
    assert received == len(records) - len(not_sent)


# -- every profile key with hostile values: refused with a message, or records that are whole ----

HOSTILE_VALUES = [math.nan, math.inf, -math.inf, -1, 0, 0.5, 1, 255, 256, 65536, 2**32, 2**64, -2**63, 1e300, True,
                  "x", "", "x" * 10000, [], {}, [1], [math.inf, 5], [[1]], [[1, 2, 3]], [[math.nan, 1]],
                  [[1, math.nan]], [[1, -1]], [[1, 0]], [{"prefix": "10.0.0.0/8", "weight": math.nan}],
                  [{"prefix": "::/0"}], [{"prefix": "10.0.0.0/33"}], [{}], {"fixed": math.nan},
                  {"lognormal": [1e6, 1e6]}, {"lognormal": [1]}, {"pareto": [0, 1]}, {"pareto": [1, 1e-300]},
                  {"fixed": 1, "min": 100, "max": 10}, {"fixed": 1, "max": 2e18}, {"gauss": 1}]


def hostile_profiles(seed, count):
    """Profiles with one key, top-level or a [[protocol]]'s, set to a hostile value."""
    import random
    from pyprobe.generate import profile as profiles
    rng = random.Random(seed)
    protocol_keys = sorted(profiles.PROTOCOL_KEYS)
    for _ in range(count):
        profile = json.loads(json.dumps(profiles.DEFAULT))
        value = rng.choice(HOSTILE_VALUES)
        if rng.random() < 0.5:
            profile[rng.choice(sorted(profiles.TOP_KEYS))] = value
        else:
            profile["protocol"][rng.randrange(3)][rng.choice(protocol_keys)] = value
        yield profile


def test_hostile_profile_values_are_refused_or_make_whole_records():
    """A few hundred seeded cases in-process: tables() refuses with ValueError (one line, which
    generate prints after --profile FILE) or the records made are whole."""
    from pyprobe import _generate
    from pyprobe.generate import profile as profiles
    from pyprobe.records import unpack
    made = 0
    for profile in hostile_profiles(22, 600):
        try:
            tables = profiles.tables(profile)
        except ValueError as e:
            assert "\n" not in str(e) and len(str(e)) < 400, e
            continue
        made += 1
        for r in unpack(_generate.RecordGenerator(tables, 1).make(200, 1_700_000_000_000_000, 1000.0)):
            assert 1 <= r.packets <= 2**32 - 1 and r.start <= r.end, r
            assert MINIMUM_IP_LENGTH.get((r.ipver, r.proto), 20) * r.packets <= r.octets <= 65535 * r.packets, r
    assert made > 20
