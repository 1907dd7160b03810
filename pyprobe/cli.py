"""The pyprobe command: read packets, meter flows, print or export the records."""

import argparse
import logging
import signal
import sys
import time

from . import __version__, config
from ._meter import DEFAULT_TIMEOUTS, SUPPORTED_LINKTYPES, Meter
from .output import JsonWriter, TableWriter
from .records import unpack
from .source import CaptureError, FileSource
from .summary import format_summary

log = logging.getLogger("pyprobe")

LINKTYPE_NAMES = {0: "BSD loopback", 1: "Ethernet", 9: "PPP", 10: "FDDI", 12: "raw IP", 14: "raw IP",
                  101: "raw IP", 104: "Cisco HDLC", 105: "802.11", 107: "Frame Relay", 108: "OpenBSD loopback",
                  113: "Linux cooked (SLL)", 127: "802.11 radiotap", 226: "Solaris IPNET", 228: "raw IPv4",
                  229: "raw IPv6", 239: "Linux NFLOG", 276: "Linux cooked v2 (SLL2)"}

DESCRIPTION = """\
pyprobe meters IP traffic into flows, the way a NetFlow-enabled router does, and
hands out one record per flow when the flow ends. It reads a capture file (pcap or
pcapng, plain or gzip-compressed, or standard input) and, with no collector given,
prints the records."""

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
  the same records.

output:
  A table on standard output, or with --json one JSON object per record with the
  keys src dst ipver proto sport dport packets octets start end tcp_flags tos vlan
  in_if src_mac dst_mac mpls_label end_reason (idle, active, tcp_end, cache_full,
  eof). Statistics go to standard error at the end.

examples:
  pyprobe -r capture.pcap
  pyprobe -r capture.pcapng --json -t inactive=60 -t active=300 > flows.json
  zcat old.pcap.gz | pyprobe -r - -T proto

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
    parser.add_argument("-r", dest="read", metavar="FILE", required=True,
                        help="read packets from a capture file ('-' for standard input)")
    parser.add_argument("-t", dest="timeouts", metavar="NAME=SECONDS", action="append", default=[],
                        help="set a timeout (see timeouts below)")
    parser.add_argument("-m", dest="max_flows", metavar="N", default="65536",
                        help="most flows tracked at once (default 65536)")
    parser.add_argument("-T", dest="level", metavar="LEVEL", default="full",
                        help="tracking level: full, port, proto, ip, vlan or ether (default full)")
    parser.add_argument("--json", action="store_true", help="print records as JSON lines")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress line on standard error: auto shows it on a terminal for files "
                             "over 32 MiB or streams (default auto)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no statistics at the end")
    parser.add_argument("-d", dest="foreground", action="store_true",
                        help="stay in the foreground (always so; accepted for softflowd users)")
    parser.add_argument("-D", "--debug", action="store_true", help="log debugging detail")
    parser.add_argument("--version", action="version", version=f"pyprobe {__version__}")
    return parser


def parse_settings(argv):
    args = build_parser().parse_args(argv)
    try:
        args.timeouts = config.parse_timeouts(args.timeouts)
        args.max_flows = config.parse_max_flows(args.max_flows)
        args.level = config.parse_key_level(args.level)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return args


class StopFlag:
    """Set by SIGINT/SIGTERM: the run stops reading, expires every flow and reports."""

    def __init__(self, source):
        self.requested = False
        self.source = source
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request)
            # Restart interrupted reads: a stream's feeder ends it cleanly instead (see source.py).
            signal.siginterrupt(sig, False)

    def _request(self, signum, frame):
        self.requested = True
        self.source.stop()


class Progress:
    """A one-line progress display on a terminal, at most four updates a second."""

    def __init__(self, stream, total_bytes):
        self.stream = stream
        self.total = total_bytes
        self.done = 0
        self.next_update = 0.0

    def update(self, batch_bytes, packets, active_flows):
        self.done += batch_bytes
        now = time.monotonic()
        if now < self.next_update:
            return
        self.next_update = now + 0.25
        share = f"{min(100.0, 100.0 * self.done / self.total):5.1f}%  " if self.total else ""
        self.stream.write(f"\r  {share}{packets:,} packets  {active_flows:,} flows active ")
        self.stream.flush()

    def finish(self):
        self.stream.write("\r" + " " * 70 + "\r")
        self.stream.flush()


def open_progress(source, mode):
    """By default, progress only where someone watches it: a terminal, and input worth waiting for."""
    if mode == "never" or (mode == "auto" and (not sys.stderr.isatty()
                                               or (source.size is not None and source.size < 32 << 20))):
        return None
    return Progress(sys.stderr, source.size)


def run(args):
    source = FileSource(args.read)
    if source.linktype not in SUPPORTED_LINKTYPES:
        name = LINKTYPE_NAMES.get(source.linktype, "unknown")
        raise CaptureError(f"{args.read}: link type {source.linktype} ({name}) is not supported; "
                           "pyprobe reads Ethernet, Linux SLL/SLL2, raw IP and BSD loopback")
    meter = Meter(source.linktype, max_flows=args.max_flows, key_level=args.level, timeouts=args.timeouts)
    writer = JsonWriter(sys.stdout) if args.json else TableWriter(sys.stdout)
    progress = open_progress(source, args.progress)
    stop = StopFlag(source)
    started = time.monotonic()
    for packets, meta in source.batches():
        records = meter.process(packets, meta)
        if records:
            writer.write(unpack(records))
        if progress:
            progress.update(len(packets) + len(meta), source.packets, meter.active_flows)
        if stop.requested:
            break
    if stop.requested:
        log.warning("stopped by a signal: expiring every flow")
    source.close()
    if progress:
        progress.finish()
    writer.write(unpack(meter.flush()))
    sys.stdout.flush()
    stats = meter.stats()
    if not args.quiet:
        print(format_summary(stats, time.monotonic() - started, source), file=sys.stderr)
    if source.truncated and stats["packets_read"] == 0:
        log.error("%s: no packet could be read", args.read)
        return 2
    return 0


def main(argv=None):
    logging.basicConfig(format="pyprobe: %(message)s", level=logging.WARNING)
    try:
        args = parse_settings(argv)
        if args.debug:
            logging.getLogger().setLevel(logging.DEBUG)
        return run(args)
    except UsageError as e:
        print(f"pyprobe: {e} (see pyprobe --help)", file=sys.stderr)
        return 2
    except CaptureError as e:
        print(f"pyprobe: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (pyprobe ... | head): not an error.
        sys.stderr.close()
        return 0
