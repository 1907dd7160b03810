"""Several monitors ([[monitor]]): one pass over the packets, each monitor with its own
record, cache, timeouts and collectors, gives what separate runs give."""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import golden_exports as G  # noqa: E402

PYPROBE = os.path.join(os.path.dirname(sys.executable), "pyprobe")
CAPTURES = [os.path.join(os.path.dirname(__file__), "..", "pcaps", "android.pcap"),
            os.path.join(G.CORPUS, "ndpi/1kxun.pcap")]
RECORDS = """
[[record]]
name = "prefixes"
match = ["sourceIPv4Address/16", "destinationIPv4Address/16", "protocolIdentifier"]
collect = ["packetDeltaCount", "octetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds"]
"""
# (monitor name, its table lines, the flags of the separate run that must give the same)
MONITORS = [
    ("security", ['record = "full"'], ["-T", "full"]),
    ("matrix", ['record = "prefixes"', "max_flows = 500", "[monitor.timeouts]", "inactive = 5"],
     ["-T", "prefixes", "-m", "500", "-t", "inactive=5"]),
    ("ddos", ['record = "ip"', 'cache = "immediate"'], ["-T", "ip", "--cache", "immediate"]),
]


def config(tmp_path, tables):
    path = tmp_path / "monitors.toml"
    path.write_text(RECORDS + "".join("\n[[monitor]]\nname = \"%s\"\n%s\n" % (name, "\n".join(lines))
                                      for name, lines in tables))
    return str(path)


def run(*args):
    res = subprocess.run([PYPROBE, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.parametrize("capture", CAPTURES)
def test_monitors_give_the_records_of_separate_runs(capture, tmp_path):
    if not os.path.exists(capture):
        pytest.skip("capture missing")
    path = config(tmp_path, [(name, lines) for name, lines, _ in MONITORS])
    together = {}
    for line in run("-r", capture, "-f", path, "--json", "-q").stdout.splitlines():
        record = json.loads(line)
        together.setdefault(record.pop("monitor"), []).append(record)
    assert set(together) == {name for name, _, _ in MONITORS}
    for name, _, flags in MONITORS:
        records_only = tmp_path / "records.toml"
        records_only.write_text(RECORDS)
        alone = [json.loads(line) for line in run("-r", capture, "-f", str(records_only), "--json", "-q",
                                                   *flags).stdout.splitlines()]
        assert together[name] == alone, name


def test_each_monitor_exports_to_its_collectors_what_a_run_of_its_own_does(tmp_path):
    capture = CAPTURES[1]
    if not os.path.exists(capture):
        pytest.skip("capture missing")
    sinks = [G.sink() for _ in MONITORS]
    try:
        tables = [(name, lines + ["[[monitor.collector]]", 'address = "127.0.0.1:%d"' % sink.getsockname()[1],
                                  "version = %d" % (9 + i % 2)])
                  for i, ((name, lines, _), sink) in enumerate(zip(MONITORS, sinks))]
        run("-r", capture, "-f", config(tmp_path, tables), "-q")
        together = [G.drain(sink) for sink in sinks]
        records_only = tmp_path / "records.toml"
        records_only.write_text(RECORDS)
        for i, ((name, _, flags), sink) in enumerate(zip(MONITORS, sinks)):
            run("-r", capture, "-f", str(records_only), "-q", "-v", str(9 + i % 2),
                "-n", "127.0.0.1:%d" % sink.getsockname()[1], *flags)
            assert G.drain(sink) == together[i], name
    finally:
        for sink in sinks:
            sink.close()


@pytest.mark.parametrize("tables,message", [
    ('[[monitor]]\nrecord = "full"\n', "every monitor needs a name"),
    ('[[monitor]]\nname = "a"\n[[monitor]]\nname = "a"\n', "two monitors of that name"),
    ('[[monitor]]\nname = "a"\ncolour = 1\n', "unknown key 'colour'"),
    ('[[monitor]]\nname = "a"\nrecord = "nope"\n', "record: unknown record 'nope'"),
    ('[[monitor]]\nname = "a"\ncache = "big"\n', "cache:"),
    ('[[monitor]]\nname = "a"\n[monitor.timeouts]\nnap = 3\n', "timeouts:"),
])
def test_bad_monitors_exit_2_in_one_line(tables, message, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(tables)
    res = subprocess.run([PYPROBE, "-r", CAPTURES[0], "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
