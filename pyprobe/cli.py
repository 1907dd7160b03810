"""The pyprobe command: read packets, meter flows, print or export the records."""

import argparse
import contextlib
import logging
import logging.handlers
import os
import pwd
import signal
import sys

from . import __version__, config
from ._meter import DEFAULT_TIMEOUTS
from .exporter import MIN_DATAGRAM, CollectorSpec, ExportSettings
from .probe import ConfigError, Probe, install_signal_handlers, write_pidfile
from .source import CaptureError
from .transport import parse_address

log = logging.getLogger("pyprobe")


DESCRIPTION = """\
pyprobe meters IP traffic into flows, the way a NetFlow-enabled router does, and
hands out one record per flow when the flow ends. It captures on a network
interface (-i) or reads a capture file (-r: pcap or pcapng, plain or
gzip-compressed, or standard input) and sends the records to NetFlow v5/v9 or
IPFIX collectors, or, with no collector given, prints them. A tcpdump-style
filter expression may follow the options."""

EPILOG = f"""\
timeouts (-t name=seconds, repeatable, applied in order; suffixes s m h d w allowed):
  inactive   sets general, tcp, udp and icmp at once      (default 15)
  active     a flow is cut after this long, even if busy    (default {DEFAULT_TIMEOUTS['maxlife']}; alias maxlife)
  tcp, udp, icmp, general
             inactive timeout for TCP, UDP, ICMP/ICMPv6 and every other protocol
  tcp.fin, tcp.rst
             once a TCP flow has seen FIN (RST), it ends after this much quiet;
             0 (the default) ends it with the FIN or RST packet itself
  A flow ends when it has been idle longer than its inactive timeout, when it has
  lasted the active timeout, at TCP FIN/RST, when the cache is full (-m: the least
  recently used flow makes room), or at the end of the input. These are Cisco's
  defaults; softflowd's names are accepted so its command lines keep working.

tracking levels (-T), what makes two packets the same flow (flows are one-way):
  full     addresses, protocol, ports, TOS, input interface (default, as classic NetFlow)
  port     the same without TOS (softflowd's "full")
  proto    addresses and protocol      ip     addresses only
  vlan     full plus the VLAN id       ether  vlan plus both MAC addresses

input:
  Link types: Ethernet (802.1Q/802.1ad tags to any depth, MPLS, PPPoE), Linux
  cooked SLL and SLL2, raw IP, BSD loopback. The flow is keyed on the outermost
  IP header; ICMP type and code are carried as the destination port
  (type*256+code), as Cisco does. Octets count the IP packet as its header states
  it, so captures cut short by a snap length still count right. Packets that are
  not IP or are damaged are counted by reason in the statistics and skipped.
  When reading a file, packet timestamps are the clock: the same file always gives
  the same records. Capturing live (-i), the clock is the wall clock and idle
  flows expire even when no packet arrives (the capture is polled every 100 ms).
  The flows' input interface is the kernel's ifIndex of the capture interface,
  or IDX from -i IDX:IFACE. SIGTERM or SIGINT stop the capture, expire every
  flow, export and exit 0.

export:
  -n host:port sends the records to a collector as NetFlow v9 (default), v5
  (-v 5) or IPFIX (-v 10), over UDP, or TCP for IPFIX (-P tcp). Give -n several
  times to send every datagram to every collector, or add -l to send each datagram
  to the next one in turn. v9 and IPFIX templates go out at start, every
  --template-refresh datagrams and every --template-interval seconds of flow
  clock (over TCP once per connection), and on SIGUSR1. Times in the records are
  the packets' times, also when a replayed capture jumps by years. An unreachable
  collector is logged (once a minute) and counted; pyprobe keeps running.
  v5 carries no IPv6: such flows are counted and not sent, and flows end before
  their 32-bit v5 counters would wrap. With -s N, one packet in N is metered and
  the interval is announced (v5 header, v9 and IPFIX options records).

config file (-f FILE, TOML; flags override it):
  [probe]     read, max_flows, tracking, sampling, sampling_mode
  [timeouts]  any -t name = seconds
  [export]    version, round_robin, source_id, engine_type, engine_id,
              template_refresh, template_interval, max_datagram
  [[collector]]  address = "host:port", version = 5|9|10, transport = "udp"|"tcp"
              (one table per collector; -n on the command line replaces them)

output:
  With no collector, a table on standard output, or with --json one JSON object per record with the
  keys src dst ipver proto sport dport packets octets start end tcp_flags tos vlan
  in_if src_mac dst_mac mpls_label end_reason (idle, active, tcp_end, cache_full,
  eof). Statistics go to standard error at the end.

examples:
  pyprobe -i eth0 -n 192.0.2.10:2055 not port 2055
  pyprobe -r capture.pcap
  pyprobe -r capture.pcapng --json -t inactive=60 -t active=300 > flows.json
  zcat old.pcap.gz | pyprobe -r - -T proto
  pyprobe -r capture.pcap -n 127.0.0.1:2055 -v 10
  pyprobe -r capture.pcap -n collector1:9995 -n [2001:db8::9]:9995 -s 100

exit status:
  0 success; 2 bad usage, or input that cannot be used (not a capture, an
  unsupported link type, a damaged capture with no readable packet).
"""


class UsageError(Exception):
    """Bad flags or settings: one line, exit 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    parser = Parser(prog="pyprobe", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("-r", dest="read", metavar="FILE", help="read packets from a capture file ('-' for standard input)")
    add("-i", dest="interface", metavar="[IDX:]IFACE",
        help="capture live on an interface; IDX sets the flows' input interface (default: its ifIndex)")
    add("-C", dest="snaplen", metavar="BYTES", help="live capture: bytes captured per packet (default 65535)")
    add("-N", dest="no_promisc", action="store_true", help="live capture: do not put the interface in promiscuous mode")
    add("-B", dest="buffer", metavar="BYTES", help="live capture: kernel capture buffer size")
    add("-p", dest="pidfile", metavar="FILE", help="write the process id to FILE")
    add("-c", dest="control", metavar="PATH",
        help="listen for control commands on this unix socket (mode 0600; see pyprobe ctl --help)")
    add("--metrics", metavar="[HOST:]PORT", help="serve Prometheus metrics over HTTP here")
    add("--user", metavar="NAME", help="drop root privileges to this user once the capture is open")
    add("--workers", metavar="N", default="1",
        help="live capture: N processes in one PACKET_FANOUT group, a flow always in the same one "
             "(default 1); worker i exports as observation domain / source id / engine id BASE+i")
    add("--syslog", action="store_true", help="log to syslog (daemon facility) instead of standard error")
    add("filter", nargs="*", metavar="BPF", help="a tcpdump-style filter expression, e.g. 'tcp port 443'")
    add("-f", dest="config", metavar="FILE", help="read settings from a TOML file (flags override it)")
    add("-t", dest="timeouts", metavar="NAME=SECONDS", action="append", default=[],
        help="set a timeout (see timeouts below)")
    add("-m", dest="max_flows", metavar="N", help="most flows tracked at once (default 65536)")
    add("-T", dest="level", metavar="LEVEL",
        help="tracking level: full, port, proto, ip, vlan or ether (default full)")
    add("-s", dest="sampling", metavar="N", help="meter 1 packet in N (default 1: every packet)")
    add("--sampling", dest="sampling_mode", choices=("count", "random"),
        help="count: the first packet of every N (default); random: a random one of every N")
    export = parser.add_argument_group("export")
    export.add_argument("-n", dest="collectors", metavar="HOST:PORT", action="append", default=[],
                        help="send records to this collector (repeatable; IPv6 as [addr]:port)")
    export.add_argument("-v", dest="export_version", metavar="5|9|10",
                        help="NetFlow v5, v9 or IPFIX (10) (default 9)")
    export.add_argument("-P", dest="transport", choices=("udp", "tcp"),
                        help="transport to the collectors: udp (default) or tcp (IPFIX only)")
    export.add_argument("-l", dest="round_robin", action="store_true", default=None,
                        help="round robin: each datagram to the next collector, not to all")
    export.add_argument("--source-id", metavar="N", help="v9 source ID / IPFIX observation domain of the flows (default 1)")
    export.add_argument("--engine-type", metavar="N", help="NetFlow v5 engine type (default 0)")
    export.add_argument("--engine-id", metavar="N", help="NetFlow v5 engine id (default 0)")
    export.add_argument("--template-refresh", metavar="N",
                        help="resend v9/IPFIX templates every N datagrams (default 20, 0: never)")
    export.add_argument("--template-interval", metavar="SECONDS",
                        help="and every this many seconds of flow clock (default 600, 0: never)")
    export.add_argument("--max-datagram", metavar="BYTES",
                        help="largest export datagram (default fits a 1500-byte MTU)")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="print records as JSON lines (with -n: print them as well)")
    output.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress line on standard error: auto shows it on a terminal for files "
                             "over 32 MiB or streams (default auto)")
    output.add_argument("-q", "--quiet", action="store_true", help="no statistics at the end")
    output.add_argument("-d", dest="foreground", action="store_true",
                        help="stay in the foreground (always so; accepted for softflowd users)")
    output.add_argument("-D", "--debug", action="store_true", help="log debugging detail")
    output.add_argument("--version", action="version", version=f"pyprobe {__version__}")
    return parser


def _pick(flag, table, key, default):
    """A flag beats the config file, which beats the default."""
    if flag is not None:
        return flag
    return table.get(key, default)


def parse_settings(argv):
    """Flags and config file -> one namespace of checked settings; UsageError if anything is off."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config.load_file(args.config) if args.config else {}
        probe, export = cfg.get("probe", {}), cfg.get("export", {})
        args.read = _pick(args.read, probe, "read", None)
        args.interface = _pick(args.interface, probe, "interface", None)
        if (args.read is None) == (args.interface is None):
            raise ValueError("give either a capture file (-r FILE) or an interface (-i IFACE)")
        args.snaplen = config.parse_count(_pick(args.snaplen, probe, "snaplen", 65535), "snap length", 64, 262144)
        if args.buffer is not None:
            args.buffer = config.parse_count(args.buffer, "capture buffer size", 65536, 2**31 - 1)
        args.filter = " ".join(args.filter) or probe.get("filter")
        args.workers = config.parse_count(args.workers, "worker count", 1, 64)
        if args.workers > 1 and args.interface is None:
            raise ValueError("--workers is for live capture (-i)")
        if args.metrics:
            from .metrics import parse_listen_address
            try:
                parse_listen_address(args.metrics)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        if args.workers > 1 and (args.control or args.metrics):
            raise ValueError("--workers cannot be combined with -c or --metrics yet")
        args.timeouts = config.parse_timeouts(config.timeout_specs(cfg.get("timeouts", {})) + args.timeouts)
        args.max_flows = config.parse_max_flows(_pick(args.max_flows, probe, "max_flows", 65536))
        args.level = config.parse_key_level(_pick(args.level, probe, "tracking", "full"))
        args.sampling = config.parse_count(_pick(args.sampling, probe, "sampling", 1), "sampling interval",
                                           1, 2**31)
        args.sampling_mode = _pick(args.sampling_mode, probe, "sampling_mode", "count")
        if args.sampling_mode not in ("count", "random"):
            raise ValueError(f"bad sampling mode {args.sampling_mode!r}: count or random")
        args.export = ExportSettings(
            source_id=config.parse_count(_pick(args.source_id, export, "source_id", 1), "source id", 0, 2**32 - 1),
            engine_type=config.parse_count(_pick(args.engine_type, export, "engine_type", 0), "engine type", 0, 255),
            engine_id=config.parse_count(_pick(args.engine_id, export, "engine_id", 0), "engine id", 0, 255),
            template_refresh=config.parse_count(_pick(args.template_refresh, export, "template_refresh", 20),
                                                "template refresh", 0, 2**31),
            template_interval=config.parse_duration(str(_pick(args.template_interval, export,
                                                              "template_interval", 600))),
            max_datagram=(config.parse_count(_pick(args.max_datagram, export, "max_datagram", None),
                                             "datagram size", MIN_DATAGRAM, 65507)
                          if _pick(args.max_datagram, export, "max_datagram", None) is not None else None),
            sampling=args.sampling, sampling_random=args.sampling_mode == "random")
        args.round_robin = bool(_pick(args.round_robin, export, "round_robin", False))
        args.collectors = collector_specs(args, cfg, export)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return args


def collector_specs(args, cfg, export):
    """-n flags replace the config file's collectors; -v and -P apply to the -n ones."""
    version = config.parse_version(_pick(args.export_version, export, "version", 9))
    transport = args.transport or "udp"
    if args.collectors:
        specs = [CollectorSpec(address, version, transport) for address in args.collectors]
    else:
        specs = [CollectorSpec(c["address"], config.parse_version(c.get("version", version)),
                               c.get("transport", transport))
                 for c in cfg.get("collector", [])]
    for spec in specs:
        parse_address(spec.address)
        if spec.transport == "tcp" and spec.version != 10:
            raise ValueError(f"collector {spec.address}: TCP transport is for IPFIX (-v 10) only")
    return specs


def drop_privileges(user, owned_paths=()):
    """Become `user` for good: supplementary groups, group, then user (which clears every capability).
    Files we made as root for later use (the control socket) are handed over first."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"no such user: {user}") from None
    try:
        for path in owned_paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise ConfigError(f"cannot become {user}: pyprobe is not running as root") from None
    log.info("running as %s", user)


def reload_settings(probe, argv):
    """SIGHUP: read the flags and the config file again; new timeouts and collectors, same cache."""
    try:
        args = parse_settings(argv)
    except UsageError as e:
        log.error("reload failed, keeping the running settings: %s", e)
        return
    probe.set_timeouts(args.timeouts)
    probe.sinks.replace_collectors(args)
    log.warning("configuration reloaded")


def run_workers(args, argv):
    """Fork one probe per worker in a fanout group; forward signals; exit with the worst status."""
    group = os.getpid() & 0xffff
    sys.stdout.reconfigure(line_buffering=True)     # whole JSON lines from every worker
    children = []
    for index in range(args.workers):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                status = run_worker(args, argv, index, group)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children.append(pid)

    def forward(signum, frame):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)
    if args.pidfile:
        write_pidfile(args.pidfile)
    status = 0
    for child in children:
        while True:
            try:
                _, code = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        status = max(status, os.waitstatus_to_exitcode(code))
    if args.pidfile:
        with contextlib.suppress(OSError):
            os.unlink(args.pidfile)
    return status


def run_worker(args, argv, index, group):
    args.fanout_group = group
    args.pidfile = None
    args.export.source_id += index
    args.export.engine_id = (args.export.engine_id + index) & 0xff
    args.summary_title = f"worker {index}"
    return run(args, argv)


def run(args, argv):
    if args.workers > 1 and not hasattr(args, "fanout_group"):
        return run_workers(args, argv)
    probe = Probe(args)
    probe.reload = lambda: reload_settings(probe, argv)
    if args.pidfile:
        write_pidfile(args.pidfile)
    install_signal_handlers(probe)
    services = []
    try:
        if args.control:
            from .control import ControlServer
            services.append(ControlServer(args.control, probe))
        if args.metrics:
            from .metrics import MetricsServer
            services.append(MetricsServer(args.metrics, probe))
        if args.user:
            drop_privileges(args.user, [args.control] if args.control else [])
        probe.run()
    finally:
        for service in services:
            service.close()
        if args.pidfile:
            with contextlib.suppress(OSError):
                os.unlink(args.pidfile)
    stats = probe.statistics()
    if not args.quiet:
        title = getattr(args, "summary_title", None)
        print(probe.summary() if title is None else probe.summary().replace("pyprobe statistics:",
                                                                           f"pyprobe statistics ({title}):"),
              file=sys.stderr, flush=True)
    if probe.source.truncated and stats["meter"]["packets_read"] == 0:
        log.error("%s: no packet could be read", args.read)
        return 2
    return 0


def use_syslog():
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.handlers.SysLogHandler(address="/dev/log", facility="daemon")
    handler.setFormatter(logging.Formatter("pyprobe[%(process)d]: %(message)s"))
    root.addHandler(handler)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        from .ctl import main as ctl_main
        return ctl_main(argv[1:])
    logging.basicConfig(format="pyprobe: %(message)s", level=logging.WARNING)
    try:
        args = parse_settings(argv)
        if args.debug:
            logging.getLogger().setLevel(logging.DEBUG)
        if args.syslog:
            use_syslog()
        return run(args, argv)
    except UsageError as e:
        print(f"pyprobe: {e} (see pyprobe --help)", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"pyprobe: {e}", file=sys.stderr)
        return 2
    except CaptureError as e:
        print(f"pyprobe: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (pyprobe ... | head): not an error.
        sys.stderr.close()
        return 0
