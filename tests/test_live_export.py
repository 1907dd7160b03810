"""Live capture at 100,000 new flows per second through the export buffer (issue 23): the
records leave in datagrams at least 90% full on average, a part-filled one at most about
once per flush interval; none waits longer than its timeout, the flush interval and a
tick; SIGTERM right after the traffic sends every flow still in the cache; and nfcapd at
its default socket buffer stores every record.

Namespaces A and B joined by a veth pair (test_live.NetnsHosts). tcpreplay in B sends a
capture of single-packet UDP flows, each its own port pair, at 100,000 packets/s for 2.5 s;
pyprobe captures on A's end with a 1 s inactive timeout, so flows end ~10,000 a tick while
the traffic runs, and exports to nfcapd (no -B) and to a sink that notes when each datagram
arrives, both on A's loopback. The probe is stopped as soon as tcpreplay is done: the flows
of the last second end forced. One run per export version feeds both tests."""

import contextlib
import ctypes
import signal
import socket
import struct
import subprocess
import time
from collections import Counter, namedtuple

import pytest

import wire
from interop.collectors import NfcapdCollector
from packets import eth_ip_packet
import test_live
from test_live import ADDR_A, ADDR_B, PYPROBE, NetnsHosts
from test_live_hostile import libpcap_counts

pytestmark = [test_live.pytestmark, pytest.mark.long]      # (root, ip, tcpdump) two runs of ~10 s each

RATE, SECONDS = 100_000, 2.5
FLOWS = int(RATE * SECONDS)
CACHE = 262_144                  # every flow of the last second and more fits (no cache_full ends)
INACTIVE_S, FLUSH_S = 1, 1
TICK_SLACK_S = 0.2               # the expiry tick (100 ms) and the tick that flushes
MAX_DATAGRAM = 1472              # pyprobe's default: an IPv4 datagram in a 1500-byte MTU
FULL = 0.9
FIRST_SPORT, FIRST_DPORT, PORTS = 1024, 2000, 50_000
CLONE_NEWNET = 0x40000000

Run = namedtuple("Run", "sent pps received dropped if_dropped metered summary stored_flows stored_packets "
                        "datagrams elapsed overflows")
Datagram = namedtuple("Datagram", "arrived size message")


@contextlib.contextmanager
def inside(namespace):
    """This thread in the network namespace: the sockets it makes and the processes it starts
    are there (nfcapd and the sink on A's loopback, beside the probe)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{namespace}") as there:
        if libc.setns(there.fileno(), CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            libc.setns(home.fileno(), CLONE_NEWNET)


def single_packet_flows(path, count):
    """A pcap of count UDP packets B -> A, each a flow of its own (source port, destination
    port), to a MAC address that is not A's: A's kernel drops them once the capture has them."""
    frame = bytearray(eth_ip_packet(4, ADDR_B, ADDR_A, 17, FIRST_SPORT, FIRST_DPORT, payload=b"f" * 18,
                                    dst_mac="02:00:00:00:99:99"))
    ports = 14 + 20
    header = struct.pack("<IIII", 0, 0, len(frame), len(frame))
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(count):
            struct.pack_into("!HH", frame, ports, FIRST_SPORT + i % PORTS, FIRST_DPORT + i // PORTS)
            out.write(header + frame)


def replay(hosts, pcap):
    """tcpreplay at RATE from B: (packets sent, packets/s reached)."""
    result = hosts.run(hosts.b, "tcpreplay", "-i", hosts.if_b, "-K", "--no-flow-stats", "--pps", str(RATE),
                       str(pcap), text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sent = int(next(line for line in lines if "Actual:" in line).split()[1])
    pps = float(next(line for line in lines if "Rated:" in line).split(",")[-1].split()[0])
    return sent, pps


def summary_line(err, first_word):
    return next(line for line in err.splitlines() if line.strip().startswith(first_word))


def udp_receive_errors():
    """This namespace's UDP receive buffer overflows."""
    with open("/proc/net/snmp") as f:
        udp = [line.split() for line in f if line.startswith("Udp:")]
    return int(dict(zip(udp[0], udp[1]))["RcvbufErrors"])


def timed_sink():
    """wire.TimedCollector with room for the shutdown's burst (as root, past rmem_max)."""
    sink = wire.TimedCollector()
    sink.sock.setsockopt(socket.SOL_SOCKET, wire.SO_RCVBUFFORCE, 64 << 20)
    return sink


def run_probe(hosts, pcap, version, *collectors):
    """pyprobe on A's end of the veth during the replay, stopped as soon as it is sent:
    (packets sent, packets/s reached, the probe's standard error, seconds it ran)."""
    export = [arg for collector in collectors for arg in ("-n", collector)]
    started = time.monotonic()
    probe = subprocess.Popen([PYPROBE, "-i", hosts.if_a, *export, "-v", str(version),
                              "-t", f"inactive={INACTIVE_S}", "-m", str(CACHE), "--flush-interval", str(FLUSH_S),
                              "udp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)                          # capturing before the first packet
        assert probe.poll() is None, probe.communicate()
        sent, pps = replay(hosts, pcap)
        probe.send_signal(signal.SIGTERM)
        _, err = probe.communicate(timeout=60)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    assert probe.returncode == 0, err
    return sent, pps, err, time.monotonic() - started


def capture_and_export(hosts, pcap, version):
    """One run, and what the probe, nfcapd and the sink counted."""
    with inside(hosts.a), NfcapdCollector(bufsize=0) as nfcapd:
        try:
            sink = timed_sink()
            try:
                sent, pps, err, elapsed = run_probe(hosts, pcap, version, f"127.0.0.1:{nfcapd.port}", sink.address)
                time.sleep(0.3)                  # the sink has read the last datagrams
            finally:
                records = sink.records()
            overflows = udp_receive_errors()
            nfcapd.stop()
            stat = nfcapd.stat()
        finally:
            nfcapd.cleanup()
    received, dropped, if_dropped = libpcap_counts(err)
    metered = int(summary_line(err, "packets metered").split()[2])
    datagrams = {}              # those that carry flow records; arrived: when the sink's thread read it (no sooner)
    for arrived, message, _ in records:
        datagrams.setdefault(id(message), Datagram(arrived, message.size, message))
    return Run(sent, pps, received, dropped, if_dropped, metered, summary_line(err, "records"),
               int(stat["Flows"]), int(stat["Packets"]), list(datagrams.values()), elapsed, overflows)


@pytest.fixture(scope="module")
def flows_pcap(tmp_path_factory):
    path = tmp_path_factory.mktemp("live_export") / "flows.pcap"
    single_packet_flows(path, FLOWS)
    return path


@pytest.fixture(scope="module", params=[10, 9], ids=["ipfix", "v9"])
def run(request, flows_pcap):
    hosts = NetnsHosts()
    try:
        yield capture_and_export(hosts, flows_pcap, request.param)
    finally:
        hosts.close()


def end_reasons(summary):
    """{'idle': n, 'forced': n, ...} of the summary's records line."""
    words = summary.split(None, 2)[2].replace(",", "").split()
    return dict(zip(words[::2], map(int, words[1::2])))


def report(run):
    records = sum(len(d.message.records) for d in run.datagrams)
    print(f"\nsent {run.sent} at {run.pps:,.0f} pps; libpcap received {run.received}, dropped {run.dropped}, "
          f"by the interface {run.if_dropped}; metered {run.metered}; nfcapd stored {run.stored_flows} flows, "
          f"{run.stored_packets} packets; sink: {len(run.datagrams)} datagrams, {records} records, "
          f"{sum(d.size for d in run.datagrams) / len(run.datagrams) / MAX_DATAGRAM:.3f} full on average, "
          f"{sum(d.size < FULL * MAX_DATAGRAM for d in run.datagrams)} under {FULL:.0%}; "
          f"UDP receive overflows in A {run.overflows}; probe ran {run.elapsed:.1f} s; {run.summary.strip()}")


def test_records_leave_full_on_time_and_all_at_shutdown(run):
    report(run)
    assert run.pps > 0.9 * RATE and run.metered > 0.9 * run.sent     # (the kernel may drop some: reported)
    reasons = end_reasons(run.summary)
    assert reasons["idle"] > FLOWS / 4 and reasons["forced"] > FLOWS / 10, reasons   # while running, and at stop
    records = [(d, r) for d in run.datagrams for r in d.message.records]
    keys = Counter((r[wire.L4_SRC_PORT], r[wire.L4_DST_PORT]) for _, r in records)
    assert len(keys) == len(records) == run.metered            # every packet metered is one flow, sent once
    assert sum(r[wire.IN_PKTS] for _, r in records) == run.metered

    sizes = [d.size for d in run.datagrams]
    part_filled = [d for d in run.datagrams if d.size < FULL * MAX_DATAGRAM]
    assert sum(sizes) / len(sizes) >= FULL * MAX_DATAGRAM
    assert len(part_filled) <= run.elapsed / FLUSH_S + 1, [(d.size, len(d.message.records)) for d in part_filled]

    waits = [d.arrived - wire.absolute_ms(d.message, r)[1] / 1000 for d, r in records]
    print(f"waits from the flow's last packet to the sink: max {max(waits):.3f} s, "
          f"mean {sum(waits) / len(waits):.3f} s")
    assert max(waits) <= INACTIVE_S + FLUSH_S + TICK_SLACK_S


def test_nfcapd_at_its_default_buffer_stores_every_record(run):
    assert (run.stored_flows, run.stored_packets) == (run.metered, run.metered), \
        f"{run.overflows} datagrams overflowed a socket buffer in A"   # (the sink's takes them all)
