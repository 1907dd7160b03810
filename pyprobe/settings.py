"""Settings: one table of options makes the flags, the config file's keys, the help
and the checks, and yields one frozen Settings object.

Each Option (pyprobe/option.py) names its Settings attribute, its flags, its place in
the TOML file ([section] key, and the old names it keeps), how a value is parsed and
checked, its default and its help. pyprobe generate's own rows are in
pyprobe/generate/options.py, the parsers in pyprobe/parsers.py, the --help text in
pyprobe/help.py. A flag beats the config file, which beats the default. Every parser
raises ValueError with a message for the operator; parse() turns it into one
SettingsError line that names the flag or the config key as written.

Only the commands read this table (cli.py, daemon.py, manpage.py): every stage takes
the frozen Settings it is given.
"""

import argparse
import glob
import os
import sys
import types
from collections import namedtuple

from . import __version__
from ._meter import CACHE_KINDS, HEADER_BYTES
from .errors import SettingsError
from .export import VERSIONS, capabilities
from .exporter import MIN_DATAGRAM, CollectorSpec, ExportSettings
from .definitions import LEVELS
from .generate.options import OPTIONS as GENERATE_OPTIONS
from .option import BOTH, Option
from .parsers import (parse_bool, parse_choice, parse_count, parse_duration, parse_export_rate, parse_files,
                      parse_filter, parse_max_gap, parse_metrics, parse_speed, parse_text, parse_timeouts, parse_update,
                      parse_version, read_toml)
from .source.interfaces import parse_interface
from .transport import TRANSPORTS

MAX_FLOWS_LIMIT = 100_000_000
CAPTURE_BUFFER_BYTES = 8 << 20


# -- the option table -----------------------------------------------------------------

def _one_of(words):
    """'a, b or c'."""
    words = list(words)
    return " or ".join(filter(None, (", ".join(words[:-1]), words[-1])))


def _stream_only():
    """Which versions a stream transport (TCP) may carry, from the versions' capabilities."""
    streams = [name for name, transport in TRANSPORTS.items() if transport.stream]
    return f"{_one_of(streams)} for {_one_of(capabilities(v).name for v in VERSIONS if capabilities(v).tcp)} only"


# The probe's options; pyprobe generate's own follow them (GENERATE_OPTIONS).
O = Option
PROBE_OPTIONS = (
    O("read", ("-r",), "probe", parse_files, metavar="FILE", kind="files",
      help="read packets from capture files, as one time-ordered stream ('-' for standard input; "
           "globs of rotated captures, quoted or not; the first word that is not a file starts the filter)"),
    O("interface", ("-i",), "probe", parse_interface, (), metavar="[IDX:]IFACE", kind="list",
      help="capture live on an interface (repeatable; 'any': every interface, those that come later "
           "too); IDX sets the ifIndex its flows carry (default: the kernel's)"),
    O("snaplen", ("-C",), "probe", parse_count(64, 262144, "snap length"), HEADER_BYTES, metavar="BYTES",
      help=f"live capture: bytes captured per packet (default {HEADER_BYTES}: the deepest header stack "
           "decoded; octets come from the IP header, so the payload is not needed)"),
    O("no_promisc", ("-N",), "probe", parse_bool, False, kind="switch",
      help="live capture: do not put the interface in promiscuous mode"),
    O("buffer", ("-B",), "probe", parse_count(65536, 2**31 - 1, "capture buffer size"), CAPTURE_BUFFER_BYTES,
      metavar="BYTES", help=f"live capture: kernel buffer per interface and direction captured (default "
                            f"{CAPTURE_BUFFER_BYTES >> 20} MiB: some 40 ms of 64-byte frames at 1 Gbit/s)"),
    O("pidfile", ("-p",), "probe", parse_text, metavar="FILE", help="write the process id to FILE"),
    O("control", ("-c",), "probe", parse_text, metavar="PATH", key="control_socket",
      help="listen for control commands on this unix socket (mode 0600; see pyprobe ctl --help)"),
    O("metrics", ("--metrics",), "probe", parse_metrics, metavar="[HOST:]PORT",
      help="serve Prometheus metrics over HTTP here"),
    O("user", ("--user",), "probe", parse_text, metavar="NAME",
      help="drop root privileges to this user once the capture is open"),
    O("workers", ("--workers",), "probe", parse_count(1, 64, "worker count"), 1, metavar="N",
      help="live capture: N processes in one PACKET_FANOUT group, a flow always in the same one "
           "(default 1); worker i exports as observation domain / source id / engine id BASE+i"),
    O("syslog", ("--syslog",), "probe", parse_bool, False, kind="switch",
      help="log to syslog (daemon facility) instead of standard error"),
    O("filter", (), "probe", parse_filter, metavar="BPF",
      help="a tcpdump-style filter expression, e.g. 'tcp port 443' (on the command line: after the options)"),
    O("config", ("-f",), None, parse_text, metavar="FILE", help="read settings from a TOML file (flags override it)", commands=BOTH),
    O("timeouts", ("-t",), "timeouts", parse_timeouts, types.MappingProxyType({}), metavar="NAME=SECONDS", kind="list",
      help="set a timeout (see timeouts below)", commands=BOTH),
    O("max_flows", ("-m",), "probe", parse_count(1, MAX_FLOWS_LIMIT, "flow count"), 65536, metavar="N",
      help="most flows tracked at once (default 65536)"),
    # (-T names a tracking level or a [[record]] of the config file: checked once the file is read)
    O("record", ("-T", "--record"), "probe", parse_text, "full", metavar="RECORD", aliases=("tracking",),
      help=f"the flow record: a tracking level, {_one_of(LEVELS)} (default full), or the "
           "name of a [[record]] of the config file (see records below)"),
    O("sampling", ("-s",), "probe", parse_count(1, 2**31, "sampling interval"), 1, metavar="N",
      help="meter 1 packet in N (default 1: every packet)", commands=BOTH),
    O("cache", ("--cache",), "probe", parse_choice(*CACHE_KINDS), "normal", metavar="{" + ",".join(CACHE_KINDS) + "}",
      help="the flow cache: normal (flows end by timeouts), immediate (every packet is a record) or "
           "permanent (flows never end; the whole cache goes out every --update seconds with running "
           "totals, and when it is full new flows are not monitored)"),
    O("update", ("--update",), "probe", parse_update, 1800.0, metavar="SECONDS",
      help="a permanent cache's export interval (default 1800, as Cisco's)"),
    O("routes", ("--routes",), "probe", parse_text, None, metavar="FILE|kernel",
      help="give each flow its output interface, next hop, origin ASes and prefix lengths by longest-prefix "
           "match: from a prefix table or `ip route show` output in FILE, or from the kernel's main routing "
           "table (kernel: read again when it changes)"),
    O("direction", ("--direction",), "probe", parse_choice("ingress", "egress", "both"), None,
      metavar="{ingress,egress,both}",
      help="which packets are metered: those received on the interface (ingress: the flows' input "
           "interface), those sent (egress: their output interface) or both, each record saying which "
           "(IPFIX flowDirection). Default: ingress when capturing live, as a router's NetFlow; both for "
           "capture files, whose every packet is then metered once (a file says the direction only in "
           "Linux cooked capture headers, tcpdump -i any; other packets count as received)"),
    O("sampling_mode", ("--sampling",), "probe", parse_choice("count", "random"), "count", metavar="{count,random}",
      help="count: the first packet of every N (default); random: a random one of every N", commands=BOTH),
    O("realtime", ("--realtime",), "replay", parse_speed, metavar="SPEED", kind="optional", const="1",
      key="speed",
      help="replay -r files at the pace of their timestamps (SPEED 2: twice as fast), with records dated "
           "now: the first packet is the start of the replay"),
    O("max_gap", ("--max-gap",), "replay", parse_max_gap, 1.0, metavar="SECONDS",
      help="with --realtime: wait at most SECONDS between packets (default 1; 0: every pause as recorded); "
           "a longer pause is cut, flows ending in it as in the capture, and the time line moves on"),
    O("keep_time", ("--keep-time",), "replay", parse_bool, False, kind="switch",
      help="with --realtime: keep the capture's own times in the records"),
    O("loop", ("--loop",), "replay", parse_count(0, 2**31, "loop count"), 1, metavar="N",
      help="replay the -r files N times (0: until stopped), each round continuing the time line"),
    O("shift_addresses", ("--shift-addresses",), "replay", parse_bool, False, kind="switch",
      help="with --loop: round k adds k to the first octet of every IPv4 address and to the third group "
           "of every IPv6 address (10.1.2.3 -> 11.1.2.3, 2001:db8:0::1 -> 2001:db8:1::1), so each "
           "round's flows are new flows"),
    O("collector_addresses", ("-n",), None, parse_text, (), metavar="HOST:PORT", kind="list", group="export",
      help="send records to this collector (repeatable; IPv6 as [addr]:port)", commands=BOTH),
    O("version", ("-v",), "export", parse_version, 9, metavar="|".join(map(str, VERSIONS)), group="export",
      help=f"{_one_of(f'{capabilities(v).name} ({v})' for v in VERSIONS)} (default 9)", commands=BOTH),
    O("transport", ("-P",), "export", parse_choice(*TRANSPORTS), "udp", metavar="{" + ",".join(TRANSPORTS) + "}",
      group="export", help=f"transport to the collectors: {_one_of(TRANSPORTS)} (default udp; {_stream_only()})",
      commands=BOTH),
    O("round_robin", ("-l",), "export", parse_bool, False, kind="switch", group="export",
      help="round robin: each datagram to the next collector, not to all", commands=BOTH),
    O("source_id", ("--source-id",), "export", parse_count(0, 2**32 - 1, "source id"), 1, metavar="N",
      group="export", help="v9 source ID / IPFIX observation domain of the flows (default 1)", commands=BOTH),
    O("engine_type", ("--engine-type",), "export", parse_count(0, 255, "engine type"), 0, metavar="N",
      group="export", help="NetFlow v5 engine type (default 0)", commands=BOTH),
    O("engine_id", ("--engine-id",), "export", parse_count(0, 255, "engine id"), 0, metavar="N", group="export",
      help="NetFlow v5 engine id (default 0)", commands=BOTH),
    O("template_refresh", ("--template-refresh",), "export", parse_count(0, 2**31, "template refresh"), 20,
      metavar="N", group="export", help="resend v9/IPFIX templates every N datagrams (default 20, 0: never)", commands=BOTH),
    O("template_interval", ("--template-interval",), "export", parse_duration, 600.0, metavar="SECONDS",
      group="export", help="and every this many seconds of flow clock (default 600, 0: never)", commands=BOTH),
    O("flush_interval", ("--flush-interval",), "export", parse_duration, 1.0, metavar="SECONDS", group="export",
      help="records wait to fill a datagram at most this long (default 1; 0: each batch's records go at once)"),
    O("export_rate", ("--export-rate",), "export", parse_export_rate, None, metavar="DATAGRAMS/S", group="export",
      help="datagrams a second to each UDP collector at most, in bursts of 32 (default: 10000 when capturing "
           "or replaying in real time, no limit reading files; 0: no limit)"),
    O("multicast_ttl", ("--multicast-ttl",), "export", parse_count(1, 255, "multicast TTL"), 1, metavar="N",
      group="export", help="a collector may be a multicast group (UDP): its datagrams cross at most N "
                           "routers (IP TTL / IPv6 hop limit; default 1: the local link)", commands=BOTH),
    O("max_datagram", ("--max-datagram",), "export", parse_count(MIN_DATAGRAM, 65507, "datagram size"),
      metavar="BYTES", group="export", help="largest export datagram (default fits a 1500-byte MTU)", commands=BOTH),
    O("json", ("--json",), None, parse_bool, False, kind="switch", group="output",
      help="print records as JSON lines (with -n: print them as well)", commands=BOTH),
    O("progress", ("--progress",), None, parse_choice("auto", "always", "never"), "auto",
      metavar="{auto,always,never}", group="output",
      help="progress line on standard error: auto shows it on a terminal for files over 32 MiB, streams, "
           "live capture and real-time replays (default auto)", commands=BOTH),
    O("quiet", ("-q", "--quiet"), None, parse_bool, False, kind="switch", group="output",
      help="no statistics at the end", commands=BOTH),
    O("foreground", ("-d",), None, parse_bool, False, kind="switch", group="output",
      help="stay in the foreground (always so; accepted for softflowd users)"),
    O("debug", ("-D", "--debug"), None, parse_bool, False, kind="switch", group="output",
      help="log debugging detail", commands=BOTH),
)
del O
OPTIONS = PROBE_OPTIONS + GENERATE_OPTIONS
BY_NAME = {o.name: o for o in OPTIONS}
SECTIONS = {}
for _option in OPTIONS:
    if _option.section:
        SECTIONS.setdefault(_option.section, []).append(_option)
COLLECTOR_KEYS = ("address", "version", "transport")     # each [[collector]] table
# each [[monitor]] table: its own of these options (named as in [probe]), timeouts and collectors
MONITOR_OPTIONS = ("record", "cache", "max_flows", "update", "sampling")
MONITOR_KEYS = ("name",) + MONITOR_OPTIONS + ("timeouts", "collector")


def _settings_namespace():
    def export(self):
        """What every collector's exporting process shares."""
        return ExportSettings(source_id=self.source_id, engine_type=self.engine_type, engine_id=self.engine_id,
                              template_refresh=self.template_refresh, template_interval=self.template_interval,
                              max_datagram=self.max_datagram, sampling=self.sampling,
                              sampling_random=self.sampling_mode == "random", record=self.record_definition,
                              totals=self.cache == "permanent", stride=self.stride,
                              multicast_ttl=self.multicast_ttl, flush_interval=self.flush_interval,
                              export_rate=self.export_rate)

    def record_definition(self):
        """The definition of the record -T names (pyprobe/definitions.py)."""
        from .definitions import resolve
        return resolve(self.record, {d.name: d for d in self.records})

    def stride(self):
        """Bytes per record the meter packs and the writers read (pyprobe/definitions.py)."""
        from .definitions import record_stride
        return record_stride(self.record_definition, routed=bool(self.routes))

    def monitor_specs(self):
        """[(name, Settings)] of the monitors: the [[monitor]] sections, or one of the flags."""
        return self.monitors or ((None, self),)

    def all_collectors(self):
        """Every monitor's collectors, each once."""
        return tuple(dict.fromkeys(spec for _, each in self.monitor_specs for spec in each.collectors))

    def versions(self):
        return tuple(spec.version for spec in self.collectors)

    def metered_direction(self):
        """Which packets are metered: --direction, else ingress live and both from files."""
        return self.direction or ("ingress" if self.interface else "both")

    def named(name):
        """How the operator names a setting: its first flag, else its place in the config file."""
        option = BY_NAME.get(name)
        if option is None:                  # (records, monitors: tables of the config file)
            return f"[[{name.removesuffix('s')}]]"
        return option.flags[0] if option.flags else option.where(False)

    return {"export": property(export), "versions": property(versions), "record_definition": property(record_definition),
            "stride": property(stride),
            "monitor_specs": property(monitor_specs), "all_collectors": property(all_collectors),
            "metered_direction": property(metered_direction), "named": staticmethod(named),
            "__slots__": (),
            "__doc__": "Every setting of a run, checked; frozen (workers and reloads make new ones: _replace)."}


Settings = type("Settings", (namedtuple("Settings", [o.name for o in OPTIONS] + ["collectors", "records", "monitors"],
                                        defaults=[o.default for o in OPTIONS] + [(), (), ()]),),
                _settings_namespace())
Settings.__module__ = __name__


# -- the config file --------------------------------------------------------------------

ARRAY_SECTIONS = ("collector", "record", "monitor")      # [[S]]: one table each


def load_file(path):
    """Read and check a TOML configuration file: {section: {key: value}}, [[collector]] a list."""
    from .definitions import RECORD_KEYS
    data = read_toml(path, "config")
    known = {**{s: [k for o in opts for k in (o.toml_key,) + o.aliases] for s, opts in SECTIONS.items()},
             "collector": COLLECTOR_KEYS,
             "record": RECORD_KEYS, "monitor": MONITOR_KEYS}
    for section, value in data.items():
        if section not in known:
            raise SettingsError(f"config {path}: unknown section [{section}] (one of {', '.join(known)})")
        if isinstance(value, list) and section not in ARRAY_SECTIONS:
            raise SettingsError(f"config {path}: [{section}] is a table, not [[{section}]]")
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            if not isinstance(entry, dict):
                raise SettingsError(f"config {path}: [{section}] must be a table")
            unknown = set(entry) - set(known[section]) if section != "timeouts" else set()
            if unknown:
                raise SettingsError(f"config {path}: unknown key {sorted(unknown)[0]!r} in [{section}]")
    for section in ARRAY_SECTIONS:
        if isinstance(data.get(section), dict):
            data[section] = [data[section]]
    return data


# -- the command line ---------------------------------------------------------------------

class UsageError(SettingsError):
    """argparse's complaint about the command line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The help as wide as the terminal, as argparse's own, measured without importing shutil:
    the parser makes a formatter per option, and that import alone cost every start 2 ms."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position, width or _terminal_columns() - 2)


def _terminal_columns():
    """$COLUMNS, else the width of the terminal on stdout, else 80 (shutil.get_terminal_size's rule)."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def build_parser(command="probe"):
    if command == "generate":
        from .generate.help import DESCRIPTION as description, epilog as command_epilog
    else:
        from .help import DESCRIPTION as description, epilog as command_epilog
    parser = _Parser(prog="pyprobe" if command == "probe" else f"pyprobe {command}", description=description,
                     epilog=command_epilog(), formatter_class=_HelpFormatter)
    groups = {"probe": parser, "export": parser.add_argument_group("export"),
              "output": parser.add_argument_group("output")}
    for o in OPTIONS:
        if command not in o.commands:
            continue
        add = groups[o.group].add_argument
        if not o.flags:
            add(o.name, nargs="*", metavar=o.metavar, help=o.help)
        elif o.kind == "files":
            add(*o.flags, dest=o.name, nargs="+", action="append", metavar=o.metavar, help=o.help)
        elif o.kind == "optional":
            add(*o.flags, dest=o.name, nargs="?", const=o.const, metavar=o.metavar, help=o.help)
        elif o.kind == "switch":
            add(*o.flags, dest=o.name, action="store_true", default=None, help=o.help)
        elif o.kind == "list":
            add(*o.flags, dest=o.name, action="append", metavar=o.metavar, help=o.help)
        else:
            add(*o.flags, dest=o.name, metavar=o.metavar, help=o.help)
    groups["output"].add_argument("--version", action="version", version=f"pyprobe {__version__}")
    return parser


def parse(argv, command="probe"):
    """Flags and config file -> checked, frozen Settings; SettingsError names what is off."""
    given = vars(build_parser(command).parse_args(argv))
    _split_files_from_filter(given)
    config_path = given["config"]
    config = load_file(config_path) if config_path else {}
    values = {}
    for o in OPTIONS:
        values[o.name] = _value(o, given, config, config_path)
    values["collectors"] = _collectors(values, config, config_path)
    values["records"] = _records(values, given, config, config_path)
    settings = Settings(**values)
    settings = settings._replace(monitors=_monitors(settings, config, config_path))
    if command == "probe":
        check(settings)
    return settings


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".gz", ".dmp")


def bad_value(value, error):
    """The message of a parser's error: a TypeError (a list where a string belongs) in words."""
    return str(error) if isinstance(error, ValueError) else f"bad value {value!r} ({type(value).__name__})"


def _split_files_from_filter(given):
    """-r takes every word up to the next option, so a shell glob of rotated captures works;
    the words after the last file (the first that names no file) are the filter's."""
    words = [w for group in given.get("read") or [] for w in group]
    if not words:
        return
    files = words[:1]
    for i, word in enumerate(words[1:], 1):
        if word == "-" or os.path.exists(word) or (any(c in word for c in "*?[") and glob.glob(word)) \
                or "/" in word or word.endswith(CAPTURE_SUFFIXES):
            files.append(word)           # (one that looks like a path is a file, missing or not)
        else:
            given["filter"] = words[i:] + (given["filter"] or [])
            break
    given["read"] = files


def _value(o, given, config, config_path):
    """An option's value: the flag's, else the config file's, else the default; parsed."""
    flag = given.get(o.name)
    table = config.get(o.section, {}) if o.section and o.name in given else {}
    try:
        if o.name == "timeouts":        # the file's timeouts, then the flags', in order
            try:
                from_file = parse_timeouts([f"{k}={v}" for k, v in table.items()])
            except ValueError as e:
                raise SettingsError(f"config {config_path}: [timeouts]: {e}") from None
            return types.MappingProxyType({**from_file, **parse_timeouts(flag or [])})
        if o.name == "filter":
            flag = " ".join(flag) if flag else None
        if o.kind == "list" and flag:
            return tuple(o.parse(v) for v in flag)
        if o.kind == "files" and flag:
            return o.parse(flag)
        if flag is not None:
            return o.parse(True if o.kind == "switch" else flag)
    except (ValueError, TypeError) as e:
        raise SettingsError(f"{o.where(True)}: {e}") from None
    key = _config_key(o, table, config_path)
    if key is not None:
        value = table[key]
        try:
            if o.kind == "list":          # a list in the file, or one value
                return tuple(o.parse(v) for v in (value if isinstance(value, list) else [value]))
            return o.parse(value)
        except (ValueError, TypeError) as e:
            raise SettingsError(f"config {config_path}: [{o.section}] {key}: {bad_value(value, e)}") from None
    return o.default


def _config_key(o, table, config_path):
    """The key the config file names an option by, its own or an alias (None: it does not)."""
    keys = [key for key in (o.toml_key,) + o.aliases if key in table]
    if len(keys) > 1:
        raise SettingsError(f"config {config_path}: [{o.section}] {' and '.join(keys)} are one setting: give one")
    return keys[0] if keys else None


def _written(o, given, config, config_path):
    """Where an option's value was given, as the operator wrote it: its flag, else its config key."""
    key = _config_key(o, config.get(o.section, {}), config_path) if given.get(o.name) is None else None
    return o.where(True) if key is None else f"config {config_path}: [{o.section}] {key}"


def _collectors(values, config, config_path, table="[[collector]]"):
    """-n flags replace the config file's collectors; -v and -P apply to the -n ones
    and are the defaults of the [[collector]] tables (table: their name in messages)."""
    if values["collector_addresses"]:
        specs = [CollectorSpec(a, values["version"], values["transport"]) for a in values["collector_addresses"]]
    else:
        specs = []
        for entry in config.get("collector", []):
            if "address" not in entry:
                raise SettingsError(f"config {config_path}: {table} without an address")
            try:
                specs.append(CollectorSpec(parse_text(entry["address"]),
                                           parse_version(entry.get("version", values["version"])),
                                           parse_choice(*TRANSPORTS)(entry.get("transport", values["transport"]))))
            except (ValueError, TypeError) as e:
                raise SettingsError(f"config {config_path}: {table}: {bad_value(entry, e)}") from None
    for spec in specs:
        try:
            spec.check()
        except SettingsError as e:
            raise SettingsError(f"-n: {e}" if values["collector_addresses"] else f"config {config_path}: {table}: {e}") \
                from None
    return tuple(specs)


def _records(values, given, config, config_path):
    """The config file's [[record]] definitions; -T must name one of them or a level."""
    from .definitions import from_config, resolve
    try:
        records = from_config(config.get("record", []))
    except ValueError as e:
        raise SettingsError(f"config {config_path}: {e}") from None
    try:
        resolve(values["record"], records)
    except ValueError as e:
        raise SettingsError(f"{_written(BY_NAME['record'], given, config, config_path)}: {e}") from None
    return tuple(records.values())


def _monitors(settings, config, config_path):
    """The [[monitor]] sections: (name, Settings) each, the run's settings with the monitor's
    own record, cache, sizes, sampling, timeouts (over the run's) and collectors (else the run's)."""
    monitors = []
    for table in config.get("monitor", []):
        name = table.get("name")
        where = f"config {config_path}: [[monitor]] {name!r}" if name else f"config {config_path}: [[monitor]]"
        if not isinstance(name, str) or not name:
            raise SettingsError(f"{where}: every monitor needs a name")
        if name in (n for n, _ in monitors):
            raise SettingsError(f"{where}: two monitors of that name")
        changes = {}
        for key in MONITOR_OPTIONS:
            if key in table:
                try:
                    changes[key] = BY_NAME[key].parse(table[key])
                except (ValueError, TypeError) as e:
                    raise SettingsError(f"{where}: {key}: {bad_value(table[key], e)}") from None
        each = settings._replace(**changes)
        if "timeouts" in table:
            if not isinstance(table["timeouts"], dict):
                raise SettingsError(f"{where}: timeouts must be a table")
            try:
                own = parse_timeouts([f"{k}={v}" for k, v in table["timeouts"].items()])
            except ValueError as e:
                raise SettingsError(f"{where}: timeouts: {e}") from None
            each = each._replace(timeouts=types.MappingProxyType({**settings.timeouts, **own}))
        if table.get("collector"):
            entries = table["collector"] if isinstance(table["collector"], list) else [table["collector"]]
            for entry in entries:
                unknown = set(entry) - set(COLLECTOR_KEYS) if isinstance(entry, dict) else {"?"}
                if unknown:
                    raise SettingsError(f"{where}: [[monitor.collector]]: unknown key {sorted(unknown)[0]!r}")
            each = each._replace(collectors=_collectors({**settings._asdict(), "collector_addresses": ()},
                                                        {"collector": entries}, config_path,
                                                        f"[[monitor.collector]] of monitor {name!r}"))
        try:
            each.record_definition
        except ValueError as e:
            raise SettingsError(f"{where}: record: {e}") from None
        monitors.append((name, each))
    return tuple(monitors)


def check(settings):
    """What no single option can check alone."""
    if (settings.read is None) == (not settings.interface):
        raise SettingsError("give either a capture file (-r FILE) or interfaces (-i IFACE)")
    names = [spec.name for spec in settings.interface]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice:
        raise SettingsError(f"-i: {twice} is given twice")
    if settings.workers > 1 and not settings.interface:
        raise SettingsError("--workers is for live capture (-i)")
    if settings.workers > 1 and (settings.control or settings.metrics):
        raise SettingsError("--workers cannot be combined with -c or --metrics yet")
    replay_only = {"--realtime": settings.realtime is not None, "--loop": settings.loop != 1,
                   "--keep-time": settings.keep_time, "--shift-addresses": settings.shift_addresses}
    for flag, given in replay_only.items():
        if given and settings.interface:
            raise SettingsError(f"{flag} is for replaying files (-r), not live capture")
    if settings.keep_time and settings.realtime is None:
        raise SettingsError("--keep-time is for --realtime (a replay at full speed keeps the capture's times)")
    if settings.shift_addresses and settings.loop == 1:
        raise SettingsError("--shift-addresses is for --loop N (each round shifted by its number)")
    if settings.read and settings.loop != 1 and "-" in settings.read:
        raise SettingsError("--loop: standard input (-r -) can be read only once")
    for _, each in settings.monitor_specs:
        if not each.routes and each.record_definition.route_as:
            raise SettingsError(f"record {each.record!r} keys on AS numbers: they come from the routes "
                                "(--routes FILE|kernel)")
