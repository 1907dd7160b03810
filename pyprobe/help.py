"""The text of pyprobe --help (and of its manual page, pyprobe/manpage.py): the description,
and the epilog, whose lists are made from the tables they describe: the option table's
config keys, the tracking levels (pyprobe/definitions.py), the export versions'
capabilities, the transports, the record fields and the link types."""

from ._meter import DEFAULT_TIMEOUTS, supported_linktype_names
from .definitions import LEVELS, RECORD_KEYS, element_names
from .export import VERSIONS, capabilities
from .fields import COLLECT, EITHER, END_REASONS, JSON_KEYS, MATCH
from .settings import BY_NAME, COLLECTOR_KEYS, MONITOR_KEYS, SECTIONS
from .transport import TRANSPORTS

DESCRIPTION = """\
pyprobe meters IP traffic into flows, the way a NetFlow-enabled router does, and
hands out one record per flow when the flow ends. It captures on a network
interface (-i) or reads a capture file (-r: pcap or pcapng, plain or
gzip-compressed, or standard input) and sends the records to NetFlow v5/v9 or
IPFIX collectors, or, with no collector given, prints them. A tcpdump-style
filter expression may follow the options.

Two more commands: `pyprobe generate` makes synthetic flow records (or a capture
of their packets) to test collectors, and `pyprobe ctl` asks a running probe
(-c PATH) for its statistics, flows and more; each has its own --help."""


def _wrap(words, indent, width=88):
    lines, line = [], indent
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += word + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def _config_help():
    lines = ["config file (-f FILE, TOML; flags override it):"]
    for section, options in SECTIONS.items():
        if section == "timeouts":
            lines.append("  [timeouts]  any -t name = seconds")
            continue
        keys = ", ".join(o.toml_key + "".join(f" (or {alias}, its old name)" for alias in o.aliases)
                         for o in options).split()
        lines.append(_wrap([f"[{section}]".ljust(11)] + keys, "  ", width=76).replace("\n  ", "\n" + " " * 14))
    lines.append("  [[collector]]  " + _keys(COLLECTOR_KEYS, address='"host:port"', version="|".join(map(str, VERSIONS)),
                                          transport="|".join(f'"{name}"' for name in TRANSPORTS)))
    lines.append("              (one table per collector; -n on the command line replaces them)")
    lines.append("  [[record]]  " + _keys(RECORD_KEYS, match="[...]", collect="[...]", biflow="true|false")
                 + "   (see records above)")
    lines.append("  [[monitor]] " + ", ".join(MONITOR_KEYS[:-2]) + ", [monitor.timeouts], [[monitor.collector]]")
    lines.append("              (one table per monitor: each meters the same packets into its own")
    lines.append("              flow table; its collectors, else the run's)")
    return "\n".join(lines)


def _and(words):
    """'a, b and c'."""
    words = list(words)
    return " and ".join(filter(None, (", ".join(words[:-1]), words[-1])))


def _keys(keys, **values):
    """A table's keys, those with a value as key = value."""
    return ", ".join(f"{key} = {values[key]}" if key in values else key for key in keys)


# What each flow key member is, in the words of the tracking levels' help.
KEY_WORDS = {"src": "addresses", "dst": "addresses", "in_if": "input interface", "proto": "protocol",
             "sport": "ports", "dport": "ports", "tos": "TOS", "vlan": "VLAN id", "src_mac": "MAC addresses",
             "dst_mac": "MAC addresses"}
LEVEL_NOTES = {"port": 'softflowd\'s "full"', "full": "as classic NetFlow"}


def _levels_help():
    """The tracking levels (definitions.LEVELS), each as the one before plus what it adds to the key."""
    rows, before = [], ()
    for level, members in LEVELS.items():
        extends = before and set(LEVELS[before]) <= set(members)
        words = dict.fromkeys(KEY_WORDS[m] for m in members if not extends or m not in LEVELS[before])
        notes = ["default"] * (level == BY_NAME["record"].default) + [LEVEL_NOTES.get(level)] * (level in LEVEL_NOTES)
        rows.append(f"  {level:<8} " + (f"{before} plus " if extends else "") + _and(words)
                    + (f" ({', '.join(notes)})" if notes else ""))
        before = level
    return "\n".join(rows)


def _versions_help():
    """What each export version cannot carry, from their declared capabilities."""
    caps = [capabilities(v) for v in VERSIONS]
    no_ipv6 = " and ".join(c.name for c in caps if not c.ipv6)
    narrow = " and ".join(c.name for c in caps if c.counter_bits == 32)
    tcp = " and ".join(c.name for c in caps if c.tcp)
    text = (f"{no_ipv6} carries no IPv6: such flows are counted and not sent. With {narrow}, flows end "
            f"before their 32-bit counters would wrap. TCP is for {tcp} only.")
    return _wrap(text.split(), "  ")


def _active_limit_help():
    caps = [capabilities(v) for v in VERSIONS]
    limited = [c for c in caps if c.uptime]
    days = min(c.max_active_seconds for c in limited) / 86400
    text = (f"{' and '.join(c.name for c in limited)} state times as 32-bit uptime milliseconds: "
            f"with such a collector the active timeout is at most {days:g} days (longer is shortened, "
            "with a warning, at start, on reload and from the control socket alike).")
    return _wrap(text.split(), "  ")


def epilog():
    return f"""\
timeouts (-t name=seconds, repeatable, applied in order; suffixes s m h d w allowed):
  inactive   sets general, tcp, udp and icmp at once      (default {DEFAULT_TIMEOUTS['general']})
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
{_active_limit_help()}

tracking levels (-T/--record), what makes two packets the same flow (flows are one-way):
{_levels_help()}

records (-T/--record NAME): a [[record]] of the config file says what makes a flow (match) and
  what its record carries (collect), by IPFIX information element name; an address
  key may be a prefix (sourceIPv4Address/24). Keyed on addresses of one IP version
  only, a record meters only that version (the rest is counted as unmatched).
  Exported as v9 or IPFIX (v5 carries only its fixed record), printed as its fields.
    [[record]]
    name = "prefixes"
    match = ["sourceIPv4Address/24", "destinationIPv4Address/24", "protocolIdentifier"]
    collect = ["packetDeltaCount", "octetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds"]
  match only:
{_wrap(element_names(MATCH), "    ")}
  match, or collect (the flow's first packet's value):
{_wrap(element_names(EITHER), "    ")}
  collect only:
{_wrap(element_names(COLLECT), "    ")}

input:
{_wrap(("Link types: " + supported_linktype_names() + ".").split(), "  ")}
  Ethernet with 802.1Q/802.1ad tags to any depth, MPLS and PPPoE. The flow is keyed
  on the outermost IP header; ICMP type and code are carried as the destination port
  (type*256+code), as Cisco does. Octets count the IP packet as its header states
  it, so captures cut short by a snap length still count right. Packets that are
  not IP or are damaged are counted by reason in the statistics and skipped.
  When reading a file, packet timestamps are the clock: the same file always gives
  the same records (--realtime paces them, see below). Capturing live (-i), the clock is the wall clock and idle
  flows expire even when no packet arrives (the capture is polled every 100 ms).
  The flows' interface is the kernel's ifIndex of the interface each packet
  crossed, or IDX from -i IDX:IFACE. -i may be given several times; -i any
  captures every interface, those that come later too, leaving out bridge and
  bond ports (their master is captured) and counting a VLAN sub-interface's
  packets once, on the sub-interface. SIGTERM or SIGINT stop the capture,
  expire every flow, export and exit 0.

replay (-r):
  Several files, or a glob of rotated captures, are read as one time-ordered stream
  through one cache (merged by timestamp; link types may differ). --realtime[=SPEED]
  feeds packets at the pace of their timestamps from the first one, the flow clock
  running between packets, so records leave when a live probe would have sent them;
  they are dated now (the first packet is the start of the replay; --keep-time keeps
  the capture's times). If the machine cannot keep up nothing is dropped: the replay
  falls behind and the statistics say by how much. --loop N (0: until stopped)
  replays the files N times, each round continuing the time line; --shift-addresses
  makes each round's flows new ones (see its help above).

export:
  -n host:port sends the records to a collector as NetFlow v9 (default), v5
  (-v 5) or IPFIX (-v 10), over UDP, or TCP for IPFIX (-P tcp). Give -n several
  times to send every datagram to every collector, or add -l to send each datagram
  to the next one in turn. v9 and IPFIX templates go out at start, every
  --template-refresh datagrams and every --template-interval seconds of flow
  clock (over TCP once per connection), and on SIGUSR1. ICMP flows go in templates
  of their own, with the ICMP type and code. Times in the records are the packets'
  times (dated now with --realtime), also when a replayed capture jumps by years. An unreachable collector is
  logged (once a minute) and counted; pyprobe keeps running.
{_versions_help()}
  With -s N, one packet in N is metered and the interval is announced (v5 header,
  v9 and IPFIX options records).

{_config_help()}

output:
  With no collector, a table on standard output, or with --json one JSON object per
  record with the keys
{_wrap(JSON_KEYS, "    ")}
{_wrap(("(end_reason: " + ", ".join(END_REASONS.values()) + "; forced: ended by a signal, shutdown "
         "or expire-all while the input went on). Statistics go to standard error at the end.").split(), "  ")}

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
