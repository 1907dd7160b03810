"""What the export versions in use demand of the meter, applied alike at start, on
SIGHUP reload and from the control socket: the active timeout v5/v9 times can state,
and v5's 32-bit counters.

In-process: a real Probe on a real capture file, reloaded through the function SIGHUP
runs (daemon.reload_settings) and asked through the control socket's handler, with
datagrams read back from a UDP socket by tests/wire.py."""

import json
import struct

import pytest

import wire
from packets import eth_ip_packet, pcap_bytes
from pyprobe import settings as settings_module
from pyprobe.control import ControlServer
from pyprobe.daemon import reload_settings
from pyprobe.probe import Probe

DAY = 86400
UPTIME_LIMIT = 24 * DAY            # 2**31 ms of uptime, in whole days
T0 = 1_700_000_000_000_000


@pytest.fixture
def collector():
    c = wire.UdpCollector()
    yield c
    c.close()


@pytest.fixture
def capture(tmp_path):
    frames = [(T0 + i * 1000, eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 17, 1000, 53)) for i in range(3)]
    path = tmp_path / "small.pcap"
    path.write_bytes(pcap_bytes(frames))
    return str(path)


def write_config(path, version, address, active):
    path.write_text(f'[timeouts]\nactive = "{active}"\n[[collector]]\naddress = "{address}"\nversion = {version}\n')
    return str(path)


def start(argv):
    return Probe(settings_module.parse(argv))


@pytest.mark.parametrize("version,limited", [(5, True), (9, True), (10, False)])
def test_start_reload_and_control_agree_on_the_active_timeout(tmp_path, capture, collector, version, limited):
    expected = UPTIME_LIMIT if limited else 30 * DAY
    cfg = write_config(tmp_path / "probe.toml", version, collector.address, "30d")
    argv = ["-f", cfg, "-r", capture]
    probe = start(argv)
    server = ControlServer(str(tmp_path / "ctl.sock"), probe)
    try:
        assert probe.timeouts["maxlife"] == expected                       # at start
        write_config(tmp_path / "probe.toml", version, collector.address, "40d")
        reload_settings(probe, argv, lambda s: s)                          # what SIGHUP does
        assert probe.timeouts["maxlife"] == (expected if limited else 40 * DAY)
        probe.monitors[0].set_timeouts({"maxlife": 60})
        answer = server.handle("timeouts active=30d")                      # pyprobe ctl timeouts
        assert not answer.startswith("error"), answer
        assert probe.timeouts["maxlife"] == expected
        assert json.loads(server.handle("timeouts --json"))["maxlife"] == expected
        assert ("note: active timeout" in answer) == limited
    finally:
        server.close()
        probe.source.close()


def test_reload_from_ipfix_to_v9_clamps(tmp_path, capture, collector):
    """The clamp follows the collectors: IPFIX allows 30 days, a reload onto v9 shortens it."""
    cfg = write_config(tmp_path / "probe.toml", 10, collector.address, "30d")
    argv = ["-f", cfg, "-r", capture]
    probe = start(argv)
    try:
        assert probe.timeouts["maxlife"] == 30 * DAY
        write_config(tmp_path / "probe.toml", 9, collector.address, "30d")
        reload_settings(probe, argv, lambda s: s)
        assert probe.timeouts["maxlife"] == UPTIME_LIMIT
    finally:
        probe.source.close()


def big_flow_capture(path, packets):
    """One UDP flow whose packets claim 65535 IP octets each but are captured short (42 bytes):
    `packets` of them pass 2**32 octets."""
    frame = bytearray(eth_ip_packet(4, "10.1.0.1", "10.1.0.2", 17, 5000, 6000))
    struct.pack_into("!H", frame, 14 + 2, 65535)            # IPv4 total length
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(struct.pack("<IIII", T0 // 10**6 + i // 1000, (i % 1000) * 1000, len(frame), 65535 + 14)
                       + frame for i in range(packets))
    path.write_bytes(header + records)
    return str(path)


def test_reload_onto_v5_keeps_counters_within_32_bits(tmp_path, collector):
    """Started towards v9 (64-bit counters), reloaded onto v5 before the flow passes 2**32
    octets: v5 records must not wrap, and every octet is in exactly one record."""
    packets = 70_000
    capture = big_flow_capture(tmp_path / "big.pcap", packets)
    cfg = write_config(tmp_path / "probe.toml", 9, collector.address, "30m")
    argv = ["-f", cfg, "-r", capture, "-q"]
    probe = start(argv)
    write_config(tmp_path / "probe.toml", 5, collector.address, "30m")
    reload_settings(probe, argv, lambda s: s)
    probe.run()
    collector.drain()
    v5 = [r for m in collector.messages() if m.version == 5 for r in m.records]
    assert all(r[wire.IN_BYTES] <= 0xffffffff for r in v5)
    assert sum(r[wire.IN_PKTS] for r in v5) == packets
    assert sum(r[wire.IN_BYTES] for r in v5) == packets * 65535
    assert len(v5) >= 2


def test_reload_keeps_an_unchanged_collector_going(tmp_path, collector):
    """SIGHUP with the same collector: its v9 sequence goes on (no restart at 0), and the
    records it counts are every record sent; a changed one starts afresh, counts kept."""
    frames = [(T0 + i * 1000, eth_ip_packet(4, "10.2.0.%d" % (1 + i % 50), "10.2.1.1", 17, 1000 + i, 53))
              for i in range(3000)]
    path = tmp_path / "many.pcap"
    path.write_bytes(pcap_bytes(frames))
    cfg = write_config(tmp_path / "probe.toml", 9, collector.address, "30m")
    argv = ["-f", cfg, "-r", str(path), "-q", "-t", "inactive=0.5"]
    probe = start(argv)
    first = probe.sinks.exporter.collectors[0]
    batches = iter(probe.source.batches())
    batch = next(batches)                                    # meter part of the capture, export it
    probe.sinks.put(probe.meter.process(batch.packets, batch.meta, batch.linktype))
    reload_settings(probe, argv, lambda s: s)
    assert probe.sinks.exporter.collectors[0] is first       # the same collector, going on
    for batch in batches:
        probe.sinks.put(probe.meter.process(batch.packets, batch.meta, batch.linktype))
    probe.expire_all(forced=False)
    probe.sinks.close()
    collector.drain()
    messages = [m for m in collector.messages() if m.version == 9]
    assert [m.header["sequence"] for m in messages] == list(range(len(messages)))
    sent = sum(len(m.records) for m in messages)
    stats = probe.statistics()
    assert sent == sum(s["records"] for s in stats["collectors"])     # the statistics add up
    assert sent == sum(stats["meter"]["records"].values()) > 100     # every record the meter made


# -- times a format cannot carry (issue 11, item 5) ------------------------------------------

def edge_of_time_capture(path):
    """Packets in the last second 32-bit export headers can state (0xffffffff, in 2106), and
    one record whose microseconds field says 1,500,000 (a corrupt header)."""
    last = 0xFFFFFFFF * 1_000_000
    good = [(last + i * 1000, eth_ip_packet(4, "10.0.0.1", "10.0.0.2", 6, 1000 + i % 3, 80)) for i in range(40)]
    data = bytearray(pcap_bytes(good))
    data += struct.pack("<IIII", 0xFFFFFFF0, 1_500_000, len(good[0][1]), len(good[0][1])) + good[0][1]
    path.write_bytes(bytes(data))
    return str(path)


@pytest.mark.parametrize("version", [5, 9, 10])
def test_times_at_the_end_of_32_bits_and_corrupt_microseconds_export(tmp_path, collector, version):
    path = edge_of_time_capture(tmp_path / "2106.pcap")
    proc = wire.run_pyprobe(["-r", path, "-n", collector.address, "-v", str(version)])
    assert "Traceback" not in proc.stderr
    assert "with a time no record can carry 1" in proc.stderr, proc.stderr
    collector.drain()
    msgs = collector.messages()
    assert sum(r[wire.IN_PKTS] for m in msgs for r in m.records) == 40
    seconds = {m.header["unix_secs" if version != 10 else "export_time"] for m in msgs}
    assert seconds == {0xFFFFFFFF}                     # held at the field's end, not wrapped to 1970


def test_reload_keeps_the_record_the_cache_was_made_with(tmp_path, collector, caplog):
    """SIGHUP after the config names another record (a definition of other members, another
    record layout): the cache and its collectors go on with the record they started with,
    the change is logged as needing a restart, and every packet is in a record."""
    frames = [(T0 + i * 1000, eth_ip_packet(4, "10.3.0.%d" % (1 + i % 20), "10.3.1.1", 17, 1000 + i % 7, 53, tos=i % 3))
              for i in range(600)]
    path = tmp_path / "some.pcap"
    path.write_bytes(pcap_bytes(frames))
    cfg = tmp_path / "probe.toml"
    collectors = f'[[collector]]\naddress = "{collector.address}"\nversion = 9\n'
    cfg.write_text(collectors)
    argv = ["-f", str(cfg), "-r", str(path), "-q"]
    probe = start(argv)
    cfg.write_text('[probe]\ntracking = "dscp"\n[[record]]\nname = "dscp"\nmatch = ["ipDiffServCodePoint"]\n'
                   'collect = ["packetDeltaCount", "octetDeltaCount"]\n' + collectors)
    reload_settings(probe, argv, lambda s: s)
    assert any("-T changed; that needs a restart" in r.getMessage() for r in caplog.records)
    probe.run()
    collector.drain()
    records = [r for m in collector.messages() if m.version == 9 for r in m.records]
    assert sum(r[wire.IN_PKTS] for r in records) == len(frames)
    assert {r[wire.L4_SRC_PORT] for r in records} == set(range(1000, 1007))    # still the full record's keys
