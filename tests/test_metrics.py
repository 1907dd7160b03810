"""The Prometheus endpoint (--metrics) of a live pyprobe capturing on loopback:
UDP datagrams sent by the test, scraped over HTTP, checked against what was sent,
what a collector socket received, and the statistics pyprobe prints at exit."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import wire

prometheus_parser = pytest.importorskip("prometheus_client.parser")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="live capture on loopback needs root")

N = 25                 # datagrams sent by a test


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Traffic:
    """A UDP receiver on 127.0.0.1 (so no ICMP unreachable) and one sender socket: one flow."""

    def __init__(self):
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.port = self.rx.getsockname()[1]
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))

    def send(self, n, size=100):
        for i in range(n):
            self.tx.sendto(bytes(size), ("127.0.0.1", self.port))

    def close(self):
        self.rx.close()
        self.tx.close()


@pytest.fixture
def traffic():
    t = Traffic()
    yield t
    t.close()


class Running:
    """pyprobe -i lo --metrics 127.0.0.1:PORT --json ARGS udp port UPORT, until stop()."""

    def __init__(self, udp_port, *args):
        self.metrics_port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.proc = subprocess.Popen(
            [wire.PYPROBE, "-i", "lo", "--metrics", f"127.0.0.1:{self.metrics_port}", "--json", *args,
             "udp", "port", str(udp_port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The endpoint starts after the capture is open: once it answers, packets are seen.
        deadline = time.monotonic() + 10
        while True:
            try:
                self.scrape()
                break
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None:
                    raise AssertionError(f"pyprobe exited {self.proc.returncode}: {self.proc.stderr.read()}")
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise AssertionError("the metrics endpoint never answered")
                time.sleep(0.05)

    def scrape(self):
        """{sample name: value} for unlabelled samples, {(name, labels as sorted tuple): value} otherwise."""
        with urllib.request.urlopen(self.url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
        samples = {}
        for family in prometheus_parser.text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items()))) if s.labels else s.name
                samples[key] = s.value
        return samples

    def wait_for(self, condition, timeout=10):
        """Scrape until condition(samples) holds; returns the samples."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.scrape()
            if condition(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError(f"condition never held; last scrape: {samples}")
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def summary_value(err, label):
    """The first number of a statistics line ('  packets metered   25   2500 octets')."""
    match = re.search(rf"^  {label}\s+(\d+)", err, re.M)
    assert match, f"no {label!r} line in:\n{err}"
    return int(match.group(1))


def records_total(samples):
    return sum(v for k, v in samples.items() if isinstance(k, tuple) and k[0] == "pyprobe_records_total")


def test_metrics_count_live_packets(traffic):
    probe = Running(traffic.port)
    try:
        traffic.send(N)
        s = probe.wait_for(lambda s: s["pyprobe_packets_metered_total"] >= N)
        time.sleep(0.3)                  # nothing more is coming
        s = probe.scrape()
        assert s["pyprobe_packets_metered_total"] == N
        assert s["pyprobe_packets_total"] == N
        assert s["pyprobe_octets_metered_total"] == N * (20 + 8 + 100)
        assert s["pyprobe_flows_active"] == 1
        assert s["pyprobe_flows_created_total"] == 1
        assert s["pyprobe_pcap_received_total"] >= N
        assert s["pyprobe_pcap_dropped_total"] == 0
        assert "pyprobe_pcap_if_dropped_total" in s
        assert s["pyprobe_packets_sampled_out_total"] == 0
        lo = (("direction", "ingress"), ("interface", "lo"))
        assert s[("pyprobe_interface_packets_total", lo)] == N       # (the filter passes only those)
        assert s[("pyprobe_interface_octets_total", lo)] == N * (20 + 8 + 100)    # IP octets
        assert s[("pyprobe_interface_dropped_total", lo)] == 0
        assert s[("pyprobe_packets_ignored_total", (("reason", "non_ip"),))] == 0
        assert {dict(k[1])["reason"] for k in s if isinstance(k, tuple) and k[0] == "pyprobe_records_total"} \
            == {"idle", "active", "tcp_end", "eof", "cache_full", "forced", "immediate"}
        assert records_total(s) == 0
        assert not any(isinstance(k, str) and k.startswith("pyprobe_export_") for k in s)   # no collector
        code, out, err = probe.stop()
    finally:
        probe.kill()
    assert code == 0, err
    assert "Traceback" not in err
    assert summary_value(err, "packets metered") == s["pyprobe_packets_metered_total"]
    assert summary_value(err, "packets read") == s["pyprobe_packets_total"]
    # The flow still active at the last scrape ends at exit, as a forced record (the capture went on).
    assert summary_value(err, "records") == records_total(s) + s["pyprobe_flows_active"]
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["packets"], r["end_reason"]) for r in records] == [(N, "forced")]


def test_export_counters_match_the_collector(traffic):
    sink = wire.UdpCollector()
    probe = Running(traffic.port, "-n", sink.address, "-t", "inactive=1")
    try:
        traffic.send(N)
        s = probe.wait_for(lambda s: s[("pyprobe_records_total", (("reason", "idle"),))] == 1, timeout=15)
        labels = (("collector", sink.address), ("version", "NetFlow v9"))
        s = probe.wait_for(lambda s: s[("pyprobe_export_records_total", labels)] == 1)
        datagrams = sink.drain(timeout=0.5)
        s = probe.scrape()
        assert s["pyprobe_packets_metered_total"] == N
        assert s["pyprobe_flows_active"] == 0
        assert s["pyprobe_flows_created_total"] == 1
        assert records_total(s) == 1
        assert s[("pyprobe_export_datagrams_total", labels)] == len(datagrams)
        messages = sink.messages()
        assert s[("pyprobe_export_records_total", labels)] == sum(m.count_data_records for m in messages) == 1
        assert s[("pyprobe_export_send_errors_total", labels)] == 0
        template_messages = sum(1 for m in messages if m.templates)
        assert s[("pyprobe_export_template_sends_total", labels)] >= 1
        assert template_messages >= 1
        code, out, err = probe.stop()
    finally:
        probe.kill()
        sink.close()
    assert code == 0, err
    assert "Traceback" not in err
    assert summary_value(err, "packets metered") == s["pyprobe_packets_metered_total"]
    assert summary_value(err, "records") == records_total(s) + s["pyprobe_flows_active"] == 1
    export = re.search(r"export to (\S+) \(NetFlow v9\): (\d+) datagrams, (\d+) records, (\d+) send errors, "
                       r"(\d+) template sends", err)
    assert export, err
    assert export.group(1) == sink.address
    assert [int(g) for g in export.groups()[1:]] == [
        s[("pyprobe_export_datagrams_total", labels)], s[("pyprobe_export_records_total", labels)],
        s[("pyprobe_export_send_errors_total", labels)], s[("pyprobe_export_template_sends_total", labels)]]
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["packets"], r["end_reason"]) for r in records] == [(N, "idle")]


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "::1:9100", "taken"])
def test_bad_metrics_address_is_one_line(address):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if address == "taken":
            address = f"127.0.0.1:{busy.getsockname()[1]}"
        proc = wire.run_pyprobe(["-i", "lo", "--metrics", address, "udp", "port", "9"], timeout=20,
                                check_exit=None)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pyprobe: ") and "metrics" in lines[0], lines[0]
