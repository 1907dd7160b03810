"""The TOML configuration file (-f): honoured, overridden by flags, refused when wrong;
and -n addresses that cannot be parsed."""

from pathlib import Path

import pytest

import wire
from packets import eth_ip_packet, write_pcap

ANDROID = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")
T0 = 1_670_000_000_000_000
S = 1_000_000
MAIN_TIMES = [0, 1, 2, 10, 11, 12]          # seconds; sport alternates 1000 / 1001
BACKGROUND = 200


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    frames = [(T0 + t * S, eth_ip_packet(4, "10.1.0.1", "10.2.0.1", 17, 1000 + i % 2, 53))
              for i, t in enumerate(MAIN_TIMES)]
    frames += [(T0 + 20 * S + k * 10_000, eth_ip_packet(4, f"10.3.{k // 250}.{k % 250 + 1}", "10.4.0.1", 17, 5, 6))
               for k in range(BACKGROUND)]
    return str(write_pcap(tmp_path_factory.mktemp("config") / "cfg.pcap", frames))


def write_config(path, text):
    path.write_text(text)
    return str(path)


def full_config(tmp_path, read, port_a, port_b):
    return write_config(tmp_path / "probe.toml", f"""
[probe]
read = "{read}"
record = "proto"
sampling = 2

[timeouts]
inactive = 5

[export]
version = 9
source_id = 7
engine_type = 4
engine_id = 5
template_refresh = 3
template_interval = 0
max_datagram = 600

[[collector]]
address = "127.0.0.1:{port_a}"
version = 5

[[collector]]
address = "127.0.0.1:{port_b}"
version = 10
""")


def main_flow(msgs):
    """(sport, dport, packets, first ms, last ms) of the records between 10.1.0.1 and 10.2.0.1, sorted."""
    out = []
    for m in msgs:
        for r in m.records:
            if r.get(wire.IPV4_SRC_ADDR) == "10.1.0.1":
                out.append((r[wire.L4_SRC_PORT], r[wire.L4_DST_PORT], r[wire.IN_PKTS]) + wire.absolute_ms(m, r))
    return sorted(out)


def background_records(msgs):
    return sum(1 for m in msgs for r in m.records if r.get(wire.IPV4_DST_ADDR) == "10.4.0.1")


def run_two(tmp_path, config_args):
    a, b = wire.UdpCollector(), wire.UdpCollector()
    try:
        args = [arg.format(a=a.port, b=b.port) for arg in config_args(a.port, b.port)]
        proc = wire.run_pyprobe(args)
        a.drain()
        b.drain()
        return proc, a.messages(), b.messages(), [d for d, _ in b.datagrams]
    finally:
        a.close()
        b.close()


def ms(seconds):
    return (T0 + seconds * S) // 1000


def test_config_file_is_honoured(tmp_path, capture):
    proc, v5msgs, ipfix_msgs, raw_b = run_two(
        tmp_path, lambda pa, pb: ["-f", full_config(tmp_path, capture, pa, pb)])
    assert v5msgs and all(m.version == 5 for m in v5msgs)
    assert ipfix_msgs and all(m.version == 10 for m in ipfix_msgs)
    # [probe] sampling = 2 (packets 0, 2, 4 of the main flow kept), record = "proto" (ports 0),
    # [timeouts] inactive = 5 (a gap of 9 s between packets 2 and 4 ends the flow)
    want = [(0, 0, 1, ms(11), ms(11)), (0, 0, 2, ms(0), ms(2))]
    assert main_flow(v5msgs) == want
    assert main_flow(ipfix_msgs) == want
    assert background_records(ipfix_msgs) == BACKGROUND // 2
    # [export]
    assert all((m.header["engine_type"], m.header["engine_id"]) == (4, 5) for m in v5msgs)
    assert all(m.header["sampling"] == (1 << 14 | 2) for m in v5msgs)
    flows = wire.flow_stream(ipfix_msgs)
    assert flows and all(m.header["domain_id"] == 7 for m in flows)
    assert max(len(d) for d in raw_b) <= 600
    assert len(flows) >= 7
    assert [i for i, m in enumerate(flows) if m.templates] == list(range(0, len(flows), 3))


def test_flags_override_config(tmp_path, capture):
    def args(pa, pb):
        cfg = full_config(tmp_path, "/nonexistent/from-config.pcap", pa, pb)
        return ["-f", cfg, "-r", capture, "-s", "1", "-T", "full", "-t", "inactive=60", "--source-id", "9",
                "--engine-id", "77", "--template-refresh", "0", "--max-datagram", "1400"]
    proc, v5msgs, ipfix_msgs, raw_b = run_two(tmp_path, args)
    want = [(1000, 53, 3, ms(0), ms(11)), (1001, 53, 3, ms(1), ms(12))]
    assert main_flow(v5msgs) == want
    assert main_flow(ipfix_msgs) == want
    assert background_records(ipfix_msgs) == BACKGROUND
    assert all((m.header["engine_type"], m.header["engine_id"]) == (4, 77) for m in v5msgs)
    assert all(m.header["sampling"] & 0x3fff in (0, 1) for m in v5msgs)
    flows = wire.flow_stream(ipfix_msgs)
    assert flows and all(m.header["domain_id"] == 9 for m in flows)
    assert [i for i, m in enumerate(flows) if m.templates] == [0]
    assert max(len(d) for d in raw_b) > 600


def test_n_flag_replaces_config_collectors(tmp_path, capture):
    c = wire.UdpCollector()
    unused = wire.UdpCollector()
    try:
        cfg = full_config(tmp_path, capture, unused.port, unused.port)
        wire.run_pyprobe(["-f", cfg, "-n", c.address, "-v", "10"])
        c.drain()
        assert unused.drain(0.2) == []
        msgs = c.messages()
        flows = wire.flow_stream(msgs)
        assert flows and all(m.version == 10 and m.header["domain_id"] == 7 for m in flows)
    finally:
        c.close()
        unused.close()


BAD_CONFIGS = {
    "unknown_key": '[probe]\nread = "{capture}"\ncolour = "blue"\n',
    "unknown_section": '[probe]\nread = "{capture}"\n[exporter]\nversion = 9\n',
    "bad_toml": '[probe\nread = "{capture}"\n',
    "bad_version": '[probe]\nread = "{capture}"\n[export]\nversion = 7\n[[collector]]\naddress = "127.0.0.1:2055"\n',
    "bad_collector_version": '[probe]\nread = "{capture}"\n[[collector]]\naddress = "127.0.0.1:2055"\nversion = 8\n',
    "bad_collector_address": '[probe]\nread = "{capture}"\n[[collector]]\naddress = "nohostport"\n',
    "bad_timeout": '[probe]\nread = "{capture}"\n[timeouts]\nsoon = 5\n',
    "tcp_v9_collector": '[probe]\nread = "{capture}"\n[[collector]]\naddress = "127.0.0.1:4739"\nversion = 9\n'
                        'transport = "tcp"\n',
}


def assert_usage_error(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyprobe: "), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config(tmp_path, capture, name):
    cfg = write_config(tmp_path / f"{name}.toml", BAD_CONFIGS[name].format(capture=capture))
    assert_usage_error(wire.run_pyprobe(["-f", cfg], check_exit=None))


def test_missing_config_file(tmp_path, capture):
    proc = wire.run_pyprobe(["-f", str(tmp_path / "absent.toml"), "-r", capture], check_exit=None)
    assert_usage_error(proc)
    assert "absent.toml" in proc.stderr


@pytest.mark.parametrize("address", ["nohostport", "::1:2055", "127.0.0.1:", "127.0.0.1:70000", ":2055"])
def test_bad_collector_address(capture, address):
    assert_usage_error(wire.run_pyprobe(["-r", capture, "-n", address], check_exit=None))
