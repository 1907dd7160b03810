"""pyprobe generate without a collector of its own: the capture it writes (--pcap) read back
by pyprobe -r gives exactly the records it expects; the profile, the options and the
signals behave; records printed as pyprobe -r prints them."""

import json
import signal
import subprocess
import time
from collections import Counter

import pytest

import reference
import wire
from pyprobe import fields


def generate(*args, check=0, timeout=120):
    proc = subprocess.run([wire.PYPROBE, "generate", *args], capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def multiset(lines):
    return Counter(json.dumps(json.loads(line), sort_keys=True) for line in lines if line.strip())


@pytest.mark.parametrize("timeouts", [[], ["-t", "inactive=5", "-t", "active=60"],
                                      ["-t", "tcp.fin=2", "-t", "udp=3"]], ids=["default", "short", "fin-wait"])
def test_capture_reads_back_as_the_expected_records(tmp_path, timeouts):
    pcap, expect = tmp_path / "g.pcap", tmp_path / "expect.json"
    profile = tmp_path / "p.toml"
    profile.write_text("both_directions = 0.3\nvlan = [[0, 3], [42, 1]]\n")
    generate("--pcap", str(pcap), "--count", "5000", "--rate", "500", "--seed", "11", "--start-time",
             "2026-03-01T12:00:00", "--expect", str(expect), "--profile", str(profile), *timeouts, "-q")
    want = multiset(expect.read_text().splitlines())
    got = multiset(wire.run_pyprobe(["-r", str(pcap), "--json", "-q", "-m", "1000000", *timeouts]).stdout.splitlines())
    assert sum(want.values()) == 5000
    assert got == want
    # and the packets are what tests/reference.py decodes of the file
    totals = Counter()
    for line in expect.read_text().splitlines():
        r = json.loads(line)
        totals[(r["ipver"], r["src"], r["dst"], r["proto"], r["sport"], r["dport"])] += r["packets"]
    ref = reference.totals(str(pcap)).totals
    assert Counter({k: v[0] for k, v in ref.items()}) == totals
    reasons = Counter(json.loads(line)["end_reason"] for line in expect.read_text().splitlines())
    assert reasons["tcp_end"] and reasons["eof"], reasons
    assert bool(reasons["idle"]) == bool(timeouts), reasons     # 10 s of capture: idle only under short timeouts


def test_records_print_like_pyprobe_r():
    proc = generate("--count", "20", "--seed", "2", "--start-time", "1700000000", "--json", "-q")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 20 and all(tuple(r) == fields.JSON_KEYS for r in records)
    assert all(1699999000 < r["start"] <= r["end"] <= 1700000001 for r in records)
    again = generate("--count", "20", "--seed", "2", "--start-time", "1700000000", "--json", "-q")
    assert again.stdout == proc.stdout


@pytest.mark.parametrize("args", [["--rate", "fast"], ["--fault", "bogus"], ["--fault", "seq-gap=0"],
                                  ["--fault", "seq-gap=1_000"], ["--fault", "seq-gap= 5"],
                                  ["--pcap", "x.pcap"], ["--exporters", "0"], ["--start-time", "yesterday"],
                                  ["--profile", "/nonexistent.toml"], ["-n", "nohost"], ["--seed", "-1"],
                                  ["-n", "127.0.0.1:2055", "-v", "9", "--fault", "template-withdraw"],
                                  ["-n", "127.0.0.1:2055", "--exporters", "300", "--exporter-address",
                                   "127.0.1.0/24"]])
def test_bad_options_exit_2_with_one_line(args):
    proc = generate(*args, "--count", "10", check=2) if "--pcap" not in args else generate(*args, check=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyprobe generate: "), proc.stderr


@pytest.mark.parametrize("text", ["colour = 1\n", "ipv6_share = 2\n", "[[protocol]]\nname = 'tcp'\n",
                                  "source = [{prefix = '10.0.0.0/33'}]\n", "tos = [[300, 1]]\n",
                                  "[[protocol]]\nname = 'udp'\npackets = {gauss = [1, 2]}\nbytes = {fixed = 100}\n"
                                  "duration = {fixed = 1}\n"])
def test_bad_profile_names_the_problem(tmp_path, text):
    profile = tmp_path / "bad.toml"
    profile.write_text(text)
    proc = generate("--profile", str(profile), "--count", "1", check=2)
    assert "--profile" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_sigterm_ends_cleanly_with_whole_datagrams():
    sink = wire.UdpCollector()
    try:
        proc = subprocess.Popen([wire.PYPROBE, "generate", "-n", sink.address, "-v", "10", "--rate", "5000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        sink.drain()
        messages = sink.messages()           # wire.Parser raises on any datagram cut short
    finally:
        sink.close()
    assert proc.returncode == 0, err
    assert "pyprobe generate statistics" in err
    sent = sum(len(m.records) for m in messages)
    assert 3000 < sent < 12000
    assert f"{sent} records" in err


def test_the_readme_profile_is_a_valid_profile(tmp_path):
    """README's full example profile: every key it shows is one the generator reads."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("ipv6_share = 0.15")
    profile = tmp_path / "readme.toml"
    profile.write_text(readme[start:readme.index("```", start)])
    records = [json.loads(line) for line in
               generate("--profile", str(profile), "--count", "2000", "--seed", "1", "--json", "-q").stdout.splitlines()]
    assert {r["proto"] for r in records} == {1, 6, 17, 58}
    assert {r["vlan"] for r in records} == {0, 100}


def test_printing_runs_as_fast_as_it_can_unless_rate_is_given():
    """Without a collector there is nothing to overrun: printed records are not paced at the
    collector's default 1000/s (20,000 took 20 s); --rate given paces them all the same."""
    started = time.monotonic()
    fast = generate("--count", "20000", "--json", "-q")
    took = time.monotonic() - started
    assert len(fast.stdout.splitlines()) == 20000
    assert took < 5, took                         # paced at 1000/s it took 20 s
    started = time.monotonic()
    paced = generate("--count", "1500", "--rate", "1000", "-q")
    took = time.monotonic() - started
    lines = paced.stdout.splitlines()        # the records, under the table's heading (again when IPv6 widens it)
    assert lines[0].startswith("Date first seen") and sum(not line.startswith("Date") for line in lines) == 1500
    assert 1.4 <= took <= 1.5 + 1.0, took
