"""Prometheus metrics over HTTP (--metrics [HOST:]PORT).

The counters are read from Probe.statistics() when a scrape arrives, in the HTTP
server's thread: nothing is done per packet. statistics() only reads counters
(the meter's under the GIL), so a scrape sees a consistent enough picture while
the main loop runs; whatever goes wrong in a scrape is logged, never raised into
the server thread."""

import errno
import socket
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .errors import SettingsError
from .logs import logger
from .parsers import parse_listen_address

log = logger("pyprobe")

ERROR_LOG_INTERVAL = 60.0          # seconds between two logged scrape failures

EXPORT_COUNTERS = (
    ("datagrams", "pyprobe_export_datagrams_total", "Export datagrams sent to the collector."),
    ("records", "pyprobe_export_records_total", "Flow records sent to the collector."),
    ("send_errors", "pyprobe_export_send_errors_total", "Export datagrams that could not be sent."),
    ("template_sends", "pyprobe_export_template_sends_total", "Times the v9/IPFIX templates were sent."),
)


class ProbeCollector:
    """A prometheus_client collector whose samples are the probe's statistics at scrape time."""

    def __init__(self, probe):
        self.probe = probe
        self.last_error_log = -ERROR_LOG_INTERVAL

    def describe(self):
        # Nothing to declare up front: registering must not call collect() (and statistics()).
        return []

    def collect(self):
        try:
            families = self.families(self.read_statistics())
        except Exception:
            now = time.monotonic()
            if now - self.last_error_log >= ERROR_LOG_INTERVAL:
                self.last_error_log = now
                log.warning("metrics: reading the statistics failed", exc_info=True)
            families = []
        yield from families

    def read_statistics(self):
        try:
            return self.probe.statistics()
        except Exception:
            # The main loop may be closing the capture between our two reads of its state
            # (statistics() then uses the drops it saved): one more try, then give up.
            return self.probe.statistics()

    @staticmethod
    def families(stats):
        meter = stats["meter"]
        out = []

        def counter(name, doc, value):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            out.append(family)

        counter("pyprobe_packets_total", "Packets read from the capture.", meter["packets_read"])
        counter("pyprobe_packets_metered_total", "Packets counted into flows.", meter["packets_metered"])
        counter("pyprobe_octets_metered_total", "Octets (IP length) counted into flows.", meter["octets_metered"])
        ignored = CounterMetricFamily("pyprobe_packets_ignored_total",
                                      "Packets skipped, by reason (not IP, damaged, ...).", labels=["reason"])
        for reason, n in sorted(meter["packets_ignored"].items()):
            ignored.add_metric([reason], n)
        out.append(ignored)
        counter("pyprobe_packets_sampled_out_total", "Packets passed over by packet sampling (-s).",
                meter["packets_sampled_out"])

        capture = stats.get("capture")
        if capture is not None:
            counter("pyprobe_pcap_received_total", "Packets libpcap received.", capture["received"])
            counter("pyprobe_pcap_dropped_total", "Packets libpcap dropped (buffer full).", capture["dropped"])
            counter("pyprobe_pcap_if_dropped_total", "Packets the interface dropped.", capture["if_dropped"])

        captured = {}                  # an interface captured again after a flap: its counts summed
        for row in (stats.get("source") or {}).get("interfaces", []):
            if "direction" in row:
                sums = captured.setdefault((row["name"], row["direction"]), [0, 0, 0])
                for i, key in enumerate(("packets", "ip_octets", "dropped")):
                    sums[i] += row[key]
        if captured:
            for i, (name, doc) in enumerate((("pyprobe_interface_packets_total", "Packets captured, per interface."),
                                             ("pyprobe_interface_octets_total",
                                              "IP octets captured (the IP headers' lengths), per interface."),
                                             ("pyprobe_interface_dropped_total", "Packets libpcap dropped, per interface."))):
                family = CounterMetricFamily(name, doc, labels=["interface", "direction"])
                for (ifname, way), sums in sorted(captured.items()):
                    family.add_metric([ifname, way], sums[i])
                out.append(family)

        active = GaugeMetricFamily("pyprobe_flows_active", "Flows in the cache now.")
        active.add_metric([], meter["flows_active"])
        out.append(active)
        counter("pyprobe_flows_created_total", "Flows created.", meter["flows_created"])
        records = CounterMetricFamily("pyprobe_records_total",
                                      "Flow records produced, by end reason (idle, active, tcp_end, eof, forced, immediate; "
                                      "cache_full: evicted from a full cache).", labels=["reason"])
        for reason, n in meter["records"].items():
            records.add_metric([reason], n)
        out.append(records)

        monitors = stats.get("monitors") or []
        several = len(monitors) > 1
        if several:                      # the totals above are the first monitor's: each one's here
            for key, name, doc in MONITOR_COUNTERS:
                family = (GaugeMetricFamily if key == "flows_active" else CounterMetricFamily)(
                    name, doc, labels=["monitor"])
                for m in monitors:
                    family.add_metric([m["name"]], m["meter"][key])
                out.append(family)
        collectors = [(c, m["name"]) for m in monitors for c in m["collectors"]] if several else \
            [(c, None) for c in stats.get("collectors") or []]
        if collectors:
            for key, name, doc in EXPORT_COUNTERS:
                family = CounterMetricFamily(name, doc, labels=["collector", "version"] + (["monitor"] if several else []))
                for c, monitor in collectors:
                    family.add_metric([str(c["collector"]), str(c["version"])] + ([monitor] if several else []), c[key])
                out.append(family)
        return out


# Per monitor, when there are several ([[monitor]]): (meter statistic, metric, help).
MONITOR_COUNTERS = (
    ("packets_metered", "pyprobe_monitor_packets_metered_total", "Packets counted into the monitor's flows."),
    ("octets_metered", "pyprobe_monitor_octets_metered_total", "Octets counted into the monitor's flows."),
    ("flows_created", "pyprobe_monitor_flows_created_total", "Flows the monitor created."),
    ("flows_active", "pyprobe_monitor_flows_active", "Flows in the monitor's cache now."),
)


class MetricsServer:
    """Serves /metrics for a probe from a daemon thread until close()."""

    def __init__(self, address, probe):
        try:
            host, port = parse_listen_address(address)
        except ValueError as e:
            raise SettingsError(str(e)) from None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ProbeCollector(probe))
        self.server, self.thread = self._start(host, port, address)
        bound = self.server.server_address
        log.debug("serving metrics on http://%s/metrics",
                  f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}")

    def _start(self, host, port, address):
        # Only a port: every address, IPv6 and IPv4 alike where the host has IPv6
        # (as node_exporter's ':9100'), else every IPv4 address.
        hosts = ("::", "0.0.0.0") if host == "" else (host,)
        for i, addr in enumerate(hosts):
            try:
                return start_http_server(port, addr=addr, registry=self.registry)
            except OSError as e:
                if i + 1 < len(hosts) and e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    continue
                reason = e.strerror or str(e)
                if isinstance(e, socket.gaierror):
                    reason = f"unknown host {host!r}"
                raise SettingsError(f"cannot serve metrics on {address}: {reason}") from None

    def close(self):
        if self.server is None:
            return
        self.server.shutdown()          # waits for serve_forever to return (within its 0.5 s poll)
        self.server.server_close()
        self.thread.join(timeout=5)
        self.server = None
