"""Hostile inputs for every flag, config key, profile key, record, monitor and collector key
and control command pyprobe has, made from pyprobe's own tables (settings.OPTIONS,
COLLECTOR_KEYS, MONITOR_KEYS, definitions.RECORD_KEYS and ELEMENTS, the generate profile's
DEFAULT, ctl.COMMANDS and ctl's parser), so an option added to a table is fuzzed without
editing this file. tests/test_hostile_inputs.py runs them.

A case is made from (seed, index) alone: make_case(Context, seed, index). It runs the real
command in a directory of its own with a 5 s limit (run_case) and check() says what is
wrong with the outcome. Nothing a case does reaches past this host: collectors and metrics
listeners are on loopback only (any address that would resolve elsewhere is put on
127.0.0.1 first, see safe_address), control sockets and files are in the case's directory.

    python tests/hostile.py INDEX [--seed N] [--dir DIR]   writes case INDEX's files to DIR,
                                                           prints its command, runs it, says
                                                           what check() found
"""

import copy
import datetime
import inspect
import ipaddress
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import namedtuple
from collections.abc import Mapping
from pathlib import Path

from pyprobe import ctl as ctl_module
from pyprobe import definitions, parsers, settings
from pyprobe._meter import DEFAULT_TIMEOUTS
from pyprobe.export import VERSIONS
from pyprobe.generate import faults as fault_module
from pyprobe.generate import profile as profile_module
from pyprobe.transport import TRANSPORTS, parse_address

HERE = Path(__file__).resolve().parent
PYPROBE = shutil.which("pyprobe", path=str(Path(sys.executable).parent))
ANDROID = str(HERE.parent / "pcaps" / "android.pcap")
CAPTURE = "in.pcap"        # a case's copy of ANDROID, in its directory (an output pointed at it spoils the copy)
DEFAULT_SEED = 22
SEED = int(os.environ.get("PYPROBE_HOSTILE_SEED", DEFAULT_SEED))

TIME_LIMIT = 5.0           # seconds a case may run: past it, it is hung (or, open-ended, stopped)
STOP_LIMIT = 2.0           # seconds a run may take to end after SIGTERM
MEMORY_LIMIT = 3 << 30     # bytes resident: past it, the run is killed (sizes must be checked first)
OUTPUT_LIMIT = 64 << 20    # bytes of standard output kept; past it, the run is stopped
HUGE = 100_000             # characters of a huge string (an argument may have 128 KiB)

# Options whose valid values make a run last as long as they say (a run past the time limit
# that stops at SIGTERM is then what was asked for, not a hang).
OPEN_ENDED = frozenset({"loop", "realtime", "rate", "count", "duration", "interface"})
# Path options that may be given a device: inputs read from it, outputs written to it.
# (Never a pid file or a socket: the probe removes those at its end.)
DEVICE_INPUTS = frozenset({"config", "profile", "routes", "read"})
DEVICE_OUTPUTS = frozenset({"pcap", "expect"})


# -- values --------------------------------------------------------------------------------

NUMBERS = ["nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "-Infinity", "1e308", "1e309", "-1e308",
           "1e-308", "5e-324", "1e-7", "0.0000001", "-1", "-0", "0", "0.0", "-0.0", "1", "2", "1.5", "-5",
           str(2**64), str(2**64 - 1), str(2**63), str(2**63 - 1), str(-2**63 - 1), str(2**62), str(2**32),
           str(2**31), str(10**30), "1e17", "2e18", "9300000000000", "99999999999", "1152921504606846976",
           "256", "65536", "65535", "-1e-9", "0x10", "0b1", "1_000", " 5", "5 ", "+5", "1e", "e5", ".5", "5.",
           "1/0", "1" + "0" * 5000]
UNICODE_DIGITS = ["²", "³", "١٢٣", "٣", "①", "５", "௫", "𝟗", "Ⅻ", "½", "1²", "²:1"]
ODD = ["", " ", "\t", "\n", "a\nb", "-", "--", "=", "==", ":", "::", "[", "]", "[]", "{}", ",", "true", "false",
       "null", "None", "'", '"', "\\", "a b", "%s%n%x", "../x", "*", "?", "$HOME", "é", "\u202e", "💥",
       "\u2028", "\x7f", "\x1b[2J", "\u00a0", "x" * 300]
NON_UTF8 = ["\udcff", "\udcff\udcfe", "x\udc80y", "5\udcff", "\udcc3\udca9", "\udced\udca0\udc80"]
HUGE_WORDS = ["a" * HUGE, "9" * HUGE, "nan" * (HUGE // 3), " " * HUGE, "é" * (HUGE // 2), "\udcff" * 1000,
              "1" * 4301]
UNITS = ["", "s", "m", "h", "d", "w", "ms", "x", " s", "S"]

LOOPBACK_NAMES = ("localhost",)
TIMEOUT_NAMES = tuple(DEFAULT_TIMEOUTS) + tuple(parsers.TIMEOUT_ALIASES) + tuple(parsers.IGNORED_TIMEOUTS)
ELEMENT_NAMES = tuple(definitions.ELEMENTS)
LEVELS = tuple(definitions.LEVELS)


def hostile_word(rng):
    """One hostile string: a number no option should take, a unicode digit, an odd or
    non-UTF-8 word (surrogate escapes: os.fsencode makes them raw bytes), or a huge one."""
    kind = rng.random()
    if kind < 0.40:
        word = rng.choice(NUMBERS)
        return word + rng.choice(UNITS) if rng.random() < 0.2 else word
    if kind < 0.50:
        return rng.choice(UNICODE_DIGITS)
    if kind < 0.68:
        return rng.choice(ODD)
    if kind < 0.80:
        return rng.choice(NON_UTF8)
    if kind < 0.87:
        return rng.choice(HUGE_WORDS)
    a, b = rng.choice(NUMBERS + UNICODE_DIGITS), rng.choice(NUMBERS + NON_UTF8 + ODD)
    return rng.choice([f"{a}={b}", f"{a}:{b}", f"{a} {b}", f"{a}/{b}", f"{a},{b}", a + b])


class Raw(bytes):
    """Bytes put in a TOML file as they are: non-UTF-8, or what TOML itself refuses."""


RAW_VALUES = [Raw(b'"\xff\xfe"'), Raw(b"'\xc3'"), Raw(b'"""\xed\xa0\x80"""'), Raw(b"9" * 5000), Raw(b"1e99999"),
              Raw(b"0x" + b"f" * 40), Raw(b"+nan"), Raw(b"-0"), Raw(b"0o777777777777777777777777"),
              Raw(b"1979-05-27T07:32:00Z"), Raw(b"00:00:00"), Raw(b"9999-12-31")]


def hostile_toml(rng, depth=0):
    """A hostile TOML value: a wrong type, NaN, infinities, huge, negative, a hostile string
    (non-UTF-8 ones go in the file as raw bytes), raw bytes TOML may or may not take."""
    kind = rng.random()
    if kind < 0.12:
        return rng.choice([float("nan"), float("inf"), float("-inf")])
    if kind < 0.22:
        return rng.choice([1e308, -1e308, 5e-324, 1e-7, -0.0, 0.5, -1.5, 1e17, 2e18])
    if kind < 0.40:
        return rng.choice([2**64, 2**63, 2**63 - 1, -2**63, 2**62, 10**30, -1, 0, 1, 256, -5, 2**32,
                           1152921504606846976, 9300000000000])
    if kind < 0.47:
        return rng.choice([True, False])
    if kind < 0.70:
        return hostile_word(rng)
    if kind < 0.80 and depth < 2:
        return rng.choice([[], [hostile_toml(rng, depth + 1)], [1, "a"], [[]], [{}],
                           [hostile_toml(rng, depth + 1) for _ in range(3)]])
    if kind < 0.87 and depth < 2:
        return rng.choice([{}, {"a": hostile_toml(rng, depth + 1)}, {hostile_word(rng): 1}])
    if kind < 0.92:
        return rng.choice([datetime.datetime(1979, 5, 27, 7, 32, tzinfo=datetime.timezone.utc),
                           datetime.date(1, 1, 1), datetime.time(7, 32), datetime.datetime(9999, 12, 31, 23, 59)])
    return rng.choice(RAW_VALUES)


def toml_string(text):
    """A TOML basic string; surrogate escapes become the raw (non-UTF-8) bytes they stand for."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return ('"' + "".join(out) + '"').encode("utf-8", "surrogateescape")


def toml_key(key):
    key = str(key)
    return key.encode() if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value):
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        if value != value:
            return b"nan"
        if value in (float("inf"), float("-inf")):
            return b"inf" if value > 0 else b"-inf"
        return repr(value).encode()
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat().encode()
    if isinstance(value, (list, tuple)):
        return b"[" + b", ".join(toml_value(v) for v in value) + b"]"
    if isinstance(value, dict):
        return b"{" + b", ".join(toml_key(k) + b" = " + toml_value(v) for k, v in value.items()) + b"}"
    raise TypeError(f"no TOML for {value!r}")


def _is_table_array(value):
    return isinstance(value, list) and value and all(isinstance(v, dict) for v in value)


def toml_document(doc):
    """A TOML file: {name: value} top-level keys, {name: dict} [sections], {name: [dict, ...]}
    [[arrays of tables]] (their own values inline); Raw: the file's bytes as they are."""
    if isinstance(doc, (bytes, Raw)):
        return bytes(doc)
    top = [toml_key(k) + b" = " + toml_value(v) for k, v in doc.items()
           if not isinstance(v, dict) and not _is_table_array(v)]
    parts = [b"\n".join(top)] if top else []
    for name, value in doc.items():
        entries = [value] if isinstance(value, dict) else value if _is_table_array(value) else []
        header = b"[%s]" if isinstance(value, dict) else b"[[%s]]"
        for entry in entries:
            parts.append(b"\n".join([header % toml_key(name)] +
                                    [toml_key(k) + b" = " + toml_value(v) for k, v in entry.items()]))
    return b"\n\n".join(parts) + b"\n"


# -- what a case runs against ---------------------------------------------------------------

class Context(namedtuple("Context", "udp_port tcp_port udp6_port live")):
    """Loopback ports of sockets the test holds and never reads (collectors may only be these),
    and whether live capture on lo may be tried (root)."""

    @property
    def sinks(self):
        return [f"127.0.0.1:{self.udp_port}", f"localhost:{self.udp_port}", f"[::1]:{self.udp6_port}"]


class Sinks:
    """A bound UDP socket nobody reads (IPv4 and IPv6) and a TCP listener nobody accepts from:
    where every collector of a case points."""

    def __init__(self, live=None):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", self.udp.getsockname()[1]))
        self.tcp.listen(1)
        self.udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            self.udp6.bind(("::1", 0))
            udp6_port = self.udp6.getsockname()[1]
        except OSError:                       # no IPv6 loopback here: the IPv4 port (refused, not sent off-host)
            udp6_port = self.udp.getsockname()[1]
        live = os.geteuid() == 0 if live is None else live
        self.context = Context(self.udp.getsockname()[1], self.tcp.getsockname()[1], udp6_port, live)

    def close(self):
        for s in (self.udp, self.tcp, self.udp6):
            s.close()


def is_loopback(host):
    host = host.strip("[]").partition("%")[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK_NAMES


def safe_address(text, ctx, listen=False):
    """The value itself if pyprobe refuses it before resolving anything, or if its host is a
    loopback one; else the same port on 127.0.0.1 (nothing a case gives may send off this
    host, nor ask a name server). listen: [HOST:]PORT (a metrics listener; no host: every
    address, so it gets 127.0.0.1 too)."""
    if not isinstance(text, str):
        return text
    try:
        if listen:
            host, port = parsers.parse_listen_address(text)
        else:
            host, port = parse_address(text)
    except Exception:                     # refused (or it crashes) before any address is looked up
        return text
    if host and is_loopback(host):
        return text if listen or port in (ctx.udp_port, ctx.tcp_port, ctx.udp6_port) else f"{host}:{ctx.udp_port}"
    return f"127.0.0.1:{port}" if listen else f"127.0.0.1:{ctx.udp_port}"


# -- values for one option, by what its metavar says it takes ---------------------------------

def slot(option):
    """What kind of value an option takes, from its metavar and kind."""
    meta = option.metavar or ""
    if option.kind == "switch":
        return "switch"
    if option.name == "filter":
        return "filter"
    if "HOST" in meta:
        return "listen" if meta.startswith("[") else "address"
    if meta.startswith("{") or re.fullmatch(r"\w+(\|\w+)+", meta) and option.name != "routes":
        return "choice"
    if "=" in meta:
        return "pair"
    if "IFACE" in meta:
        return "interface"
    if meta == "PREFIX":
        return "prefix"
    if meta == "RECORD":
        return "record"
    if meta in ("FILE", "PATH") or meta.startswith("FILE"):
        return "path"
    return "value"


def choices(option):
    meta = option.metavar or ""
    if meta.startswith("{"):
        return meta.strip("{}").split(",")
    return meta.split("|") if "|" in meta else []


def pair_names(option):
    """The NAME part of a NAME=VALUE option, from the project's tables."""
    if option.name == "faults":
        return tuple(fault_module.KINDS)
    if option.name == "timeouts":
        return TIMEOUT_NAMES
    return ()


def limits(option):
    """(low, high) an option's parser takes (parse_count's), else None."""
    try:
        bound = inspect.getclosurevars(option.parse).nonlocals
    except TypeError:
        return None
    return (bound["low"], bound["high"]) if {"low", "high"} <= set(bound) else None


def edge_value(rng, option):
    """A number at or just past the edges of what the option takes, if its parser says."""
    edges = limits(option)
    if edges is None:
        return None
    low, high = edges
    return str(rng.choice([low - 1, low, high, high + 1, high * 2, high // 2, -high, high * 10**9]))


def path_value(rng, option, ctx):
    pool = ["out", "x.pcap", "conf.toml", "", " ", "-", ".", "..", "/", "/nonexistent/x", "/nonexistent/x.pcap",
            "a" * 300, "d/", "sub/dir/x", "\udcff.toml", "a\nb", "*", "[", "?.pcap", CAPTURE, CAPTURE + "/x"]
    if option.name in DEVICE_INPUTS:
        pool += ["/dev/zero", "/proc/self/environ", "/etc"]
    if option.name in DEVICE_OUTPUTS:
        pool += ["/dev/full"]
    if option.name == "routes":
        pool += ["kernel", "KERNEL", "kernel "]
    return rng.choice(pool) if rng.random() < 0.75 else hostile_word(rng)


def option_value(rng, option, ctx):
    """A hostile value for one option (argv form: a str)."""
    kind = slot(option)
    if kind in ("address", "listen"):
        host = rng.choice(["127.0.0.1", "[::1]", "localhost", "[127.0.0.1]", "", "[]", "[::1", "::1",
                           hostile_word(rng)])
        port = rng.choice([str(ctx.udp_port), hostile_word(rng), hostile_word(rng)])
        text = rng.choice([f"{host}:{port}", port, host, hostile_word(rng)])
        return safe_address(text, ctx, listen=kind == "listen")
    if kind == "choice":
        good = choices(option)
        return rng.choice([rng.choice(good).upper(), rng.choice(good) + " ", rng.choice(good) + "\udcff",
                           hostile_word(rng), hostile_word(rng)])
    if kind == "pair":
        names = pair_names(option) or (hostile_word(rng),)
        name = rng.choice(list(names) + [hostile_word(rng)])
        value = hostile_word(rng)
        return rng.choice([f"{name}={value}", f"{name}={value}", name, f"={value}", f"{name}=", value])
    if kind == "interface":
        name = rng.choice(["ppfz0", hostile_word(rng), "a" * 16, "any"])
        return rng.choice([f"{hostile_word(rng)}:{name}", f"{rng.choice(NUMBERS)}:ppfz0", hostile_word(rng),
                           f"{rng.choice(UNICODE_DIGITS)}:any"])
    if kind == "prefix":
        return rng.choice([f"127.0.0.0/{hostile_word(rng)}", f"{hostile_word(rng)}/8", "::/0", "0.0.0.0/0",
                           "127.0.0.0/33", "10.0.0.0/8", "127.0.0.1/32", "::1/128", hostile_word(rng)])
    if kind == "record":
        return rng.choice([rng.choice(LEVELS).upper(), rng.choice(ELEMENT_NAMES), hostile_word(rng),
                           hostile_word(rng)])
    if kind == "path":
        return path_value(rng, option, ctx)
    if kind == "filter":
        return rng.choice(["tcp port " + hostile_word(rng), "net 10.0.0.0/33", "udp and", "(((", "ether proto 0x",
                           "port 99999999999", "vlan " + rng.choice(NUMBERS), hostile_word(rng),
                           hostile_word(rng)])
    if option.name == "user":
        return rng.choice(["nobody", "root", "0", "-1", "nosuchuser", hostile_word(rng)])
    edge = edge_value(rng, option) if rng.random() < 0.3 else None
    return edge if edge is not None else hostile_word(rng)


def valid_value(rng, option, ctx):
    """A value the option takes (its choices, default, or one of its kind), to go beside a
    hostile one."""
    kind = slot(option)
    if kind == "choice":
        return rng.choice(choices(option))
    if kind == "pair":
        names = pair_names(option)
        return f"{rng.choice(names)}={rng.choice(['1', '30', '0'])}" if option.name == "timeouts" else \
            rng.choice(names) if names else None
    if kind == "address":
        return rng.choice(ctx.sinks)
    if kind == "listen":
        return None
    if kind == "record":
        return rng.choice(LEVELS)
    if kind == "prefix":
        return "127.0.0.0/8"
    if option.default not in (None, (), False) and not isinstance(option.default, Mapping):
        return str(option.default)
    return None


def flag_words(rng, option, value):
    """argv words giving `value` to an option, in one of the forms argparse takes."""
    flag = rng.choice(option.flags)
    if option.kind == "switch":
        return rng.choice([[flag], [flag, flag], [f"{flag}={value}"]]) if value is not None else [flag]
    if option.kind == "optional":
        return rng.choice([[flag], [f"{flag}={value}"], [f"{flag}={value}"], [flag, value]])
    if option.kind == "files":
        return [flag, value]
    joined = f"{flag}={value}" if flag.startswith("--") else flag + value
    return rng.choice([[flag, value], [flag, value], [joined]])


# -- cases ---------------------------------------------------------------------------------

class Case(namedtuple("Case", "index what argv files stdout open_ended live")):
    """One run: argv after `pyprobe`, files {name: bytes} made in its directory first,
    stdout 'pipe' (kept and checked) or 'full' (/dev/full), open_ended: it may legitimately
    run until stopped, live: a live capture, signalled (SIGHUP, SIGUSR1, SIGTERM) as it runs."""


def options_of(command, with_flags=True, with_section=False):
    return [o for o in settings.OPTIONS if command in o.commands
            and (not with_flags or o.flags or o.name == "filter")
            and (not with_section or o.section)]


def base_options(command, ctx, rng, live=False):
    """The run's own options {option name: argv words} (a case's mutation of an option
    replaces its entry) and trailing words (the filter)."""
    if command == "generate":
        variant = rng.choice(["json", "json", "pcap", "export"])
        base = {"count": ["--count", "5"], "duration": ["--duration", "2"]}
        if variant == "json":
            base["json"] = ["--json"]
        elif variant == "pcap":
            base.update(pcap=["--pcap", "out.pcap"], expect=["--expect", "expect.json"], duration=[])
        else:
            base.update(collector_addresses=["-n", rng.choice(ctx.sinks)], quiet=["-q"])
        return base
    if live:                              # (without a filter, it meters whatever loopback carries)
        return {"interface": ["-i", "lo"], "json": ["--json"],
                "filter": ["udp", "port", str(ctx.udp_port)] if rng.random() < 0.7 else []}
    return {"read": ["-r", CAPTURE], "json": ["--json"]}


def argv_of(command, base):
    words = [] if command == "probe" else [command]
    filter_words = base.get("filter", [])
    for name, value in base.items():
        if name != "filter":
            words += value
    return words + filter_words


def flag_case(rng, ctx, command, live=False):
    """One to three options of the command given hostile values (and some others valid ones)."""
    base = base_options(command, ctx, rng, live)
    opts = options_of(command)
    if live:
        opts = [o for o in opts if o.name not in ("read", "interface")]
    mutated = rng.sample(opts, 1 if rng.random() < 0.7 else 2)
    extras = rng.sample(opts, rng.randrange(3))
    if rng.random() < 0.4:                # modes (cache kind, export version, ...) set at random
        extras += [o for o in opts if slot(o) == "choice" and rng.random() < 0.5]
    for o in extras:
        if o not in mutated:
            value = valid_value(rng, o, ctx)
            if value is not None or o.kind == "switch":
                base[o.name] = flag_words(rng, o, value) if o.flags else [value]
    what = []
    for o in mutated:
        if o.name == "filter":
            base["filter"] = base.get("filter", []) + [option_value(rng, o, ctx) for _ in range(rng.randint(1, 3))]
        elif o.kind == "list" and rng.random() < 0.3:
            base[o.name] = sum((flag_words(rng, o, option_value(rng, o, ctx)) for _ in range(rng.randint(2, 3))), [])
        else:
            base[o.name] = flag_words(rng, o, option_value(rng, o, ctx) if o.kind != "switch" else
                                      (hostile_word(rng) if rng.random() < 0.3 else None))
        what.append(o.flags[0] if o.flags else o.name)
    open_ended = any(o.name in OPEN_ENDED for o in mutated) or live
    return argv_of(command, base), {}, f"{command} flags {' '.join(what)}", open_ended


# -- config files -----------------------------------------------------------------------

def toml_option_value(rng, option, ctx):
    """A hostile TOML value for an option's key: the hostile argv value of its kind, or a
    hostile TOML value of any type."""
    value = option_value(rng, option, ctx) if rng.random() < 0.5 else hostile_toml(rng)
    if slot(option) in ("address", "listen"):
        value = safe_address(value, ctx, listen=slot(option) == "listen")
    if option.kind in ("list", "files") and rng.random() < 0.5:
        value = [value, toml_option_value(rng, option, ctx)] if rng.random() < 0.5 else [value]
    return value


def collector_table(rng, ctx, hostile=True, keys=None):
    """A [[collector]] table (COLLECTOR_KEYS) with one hostile value (its key appended to
    keys), or all valid."""
    table = {"address": rng.choice(ctx.sinks), "version": rng.choice(VERSIONS), "transport": "udp"}
    if rng.random() < 0.3:
        table = {k: v for k, v in table.items() if k != "version"}
    if hostile:
        key = rng.choice(list(settings.COLLECTOR_KEYS) + ["unknown"])
        value = hostile_toml(rng) if rng.random() < 0.6 else hostile_word(rng)
        if key == "address":
            value = safe_address(value, ctx)
        elif key == "transport" and rng.random() < 0.4:
            value = rng.choice(list(TRANSPORTS))
        table[key] = value
        if keys is not None:
            keys.append(key)
        if rng.random() < 0.1:
            del table["address"]
    return table


def record_table(rng, name=None, keys=None):
    """A [[record]] table (RECORD_KEYS) of element names, some with hostile prefixes or values."""
    def element():
        name_ = rng.choice(ELEMENT_NAMES)
        if rng.random() < 0.3:
            name_ += "/" + rng.choice(["24", "0", "32", "128", "129", "-1", "²", "nan", "", " 8", "1e1",
                                       hostile_word(rng)])
        return name_
    table = {"name": name or rng.choice(["r", "r2", hostile_word(rng)]),
             "match": [element() for _ in range(rng.randint(1, 4))],
             "collect": [element() for _ in range(rng.randint(0, 5))]}
    if rng.random() < 0.3:
        table["biflow"] = rng.choice([True, False, hostile_toml(rng)])
    key = rng.choice(list(definitions.RECORD_KEYS) + ["unknown", None, None])
    if key is not None:
        table[key] = hostile_toml(rng) if rng.random() < 0.7 else [hostile_word(rng)]
    if keys is not None:
        keys.append(key or "elements")
    return table


def monitor_table(rng, ctx, name, records, keys=None):
    """A [[monitor]] table (MONITOR_KEYS): valid keys, one hostile."""
    table = {"name": name}
    for key in settings.MONITOR_KEYS[1:]:
        if rng.random() < 0.3:
            option = settings.BY_NAME[key] if key in settings.MONITOR_OPTIONS else None
            if key == "record":
                table[key] = rng.choice(LEVELS + tuple(records))
            elif key == "timeouts":
                table[key] = {rng.choice(TIMEOUT_NAMES): rng.choice([1, 30, 300])}
            elif key == "collector":
                table[key] = [collector_table(rng, ctx, hostile=False)]
            elif option is not None:
                value = valid_value(rng, option, ctx)
                if value is not None:
                    table[key] = int(value) if value.isdigit() else value
    key = rng.choice(settings.MONITOR_KEYS + ("unknown",))
    if keys is not None:
        keys.append(key)
    if key == "timeouts":
        table[key] = rng.choice([{rng.choice(TIMEOUT_NAMES): hostile_toml(rng)}, {hostile_word(rng): 1},
                                 hostile_toml(rng)])
    elif key == "collector":
        table[key] = rng.choice([[collector_table(rng, ctx)], collector_table(rng, ctx), hostile_toml(rng),
                                 [{"version": 10}]])
    else:
        table[key] = hostile_toml(rng) if rng.random() < 0.6 else hostile_word(rng)
    return table


def config_doc(rng, ctx, command):
    """A config file with something hostile in it: (document, what, options it sets, -T name)."""
    doc = {}
    level = None
    kind = rng.random()
    opts = options_of(command, with_flags=False, with_section=True)
    if kind < 0.45:
        mutated = rng.sample(opts, 1 if rng.random() < 0.8 else 2)
        for o in mutated:
            if o.section == "timeouts":
                doc.setdefault("timeouts", {})[rng.choice(TIMEOUT_NAMES + (hostile_word(rng),))] = hostile_toml(rng)
            else:
                doc.setdefault(o.section, {})[o.toml_key] = toml_option_value(rng, o, ctx)
        return doc, "config " + " ".join(f"[{o.section}] {o.toml_key}" for o in mutated), mutated, level
    keys = []
    if kind < 0.58:
        doc["collector"] = [collector_table(rng, ctx, keys=keys) for _ in range(rng.randint(1, 3))]
        return doc, "config [[collector]] " + " ".join(keys), [], level
    if kind < 0.72 and command == "probe":
        tables = [record_table(rng, keys=keys) for _ in range(rng.randint(1, 2))]
        doc["record"] = tables
        names = [t.get("name") for t in tables if isinstance(t.get("name"), str)]
        level = rng.choice(names + [hostile_word(rng)]) if names else None
        return doc, "config [[record]] " + " ".join(keys), [], level
    if kind < 0.86 and command == "probe":
        records = []
        if rng.random() < 0.4:
            doc["record"] = [record_table(rng, "r")]
            records = ["r"]
        doc["monitor"] = [monitor_table(rng, ctx, n, records, keys) for n in rng.sample(["a", "b", "c", ""],
                                                                                        rng.randint(1, 3))]
        return doc, "config [[monitor]] " + " ".join(keys), [], level
    # the file's shape: sections of the wrong type, unknown sections and keys, bytes that are not TOML
    sections = list(settings.SECTIONS) + ["collector", "record", "monitor"]
    section = rng.choice(sections)
    shape = rng.choice(["scalar", "array", "unknown section", "unknown key", "raw", "raw", "empty", "huge"])
    if shape == "scalar":
        doc[section] = hostile_toml(rng)
    elif shape == "array":
        doc[section] = [{"x": 1}] if rng.random() < 0.5 else [1, 2]
    elif shape == "unknown section":
        doc[hostile_word(rng)] = {"a": 1}
    elif shape == "unknown key":
        doc[section] = {hostile_word(rng): hostile_toml(rng)} if section not in ("collector", "record",
                                                                                   "monitor") else \
            [{hostile_word(rng): 1}]
    elif shape == "raw":
        doc = Raw(rng.choice([b"\xff\xfe", b"\xef\xbb\xbf[probe]\n", b"[probe\n", b"a = \xff\n", b"\x00" * 64,
                              b"[[monitor]]\nname = 'a'\n[[monitor]]\nname = 'a'\n", b"a = 1\na = 2\n",
                              b"[timeouts]\n\xc0\xaf = 1\n", b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",
                              b"x = " + b"{a = " * 2000 + b"1" + b"}" * 2000 + b"\n",
                              b"[probe]\nmax_flows = " + b"9" * 5000 + b"\n"]))
    elif shape == "empty":
        doc = Raw(b"")
    else:
        doc = Raw(b"# " + b"a" * (1 << 20) + b"\n")
    return doc, f"config shape ({shape} {section})", [], level


def config_case(rng, ctx, command, live=False):
    base = base_options(command, ctx, rng, live)
    doc, what, mutated, level = config_doc(rng, ctx, command)
    for o in mutated:                       # the file's value, not the base flag's
        if o.name != "read" or not live:
            base.pop(o.name, None)
    if "read" not in base and "interface" not in base:
        base["read"] = ["-r", CAPTURE] if rng.random() < 0.3 else []
    if level is not None:
        base["record"] = ["-T", level]
    base["config"] = ["-f", "conf.toml"]
    open_ended = any(o.name in OPEN_ENDED for o in mutated) or live
    return argv_of(command, base), {"conf.toml": toml_document(doc)}, f"{command} {what}", open_ended


# -- generate profiles ---------------------------------------------------------------------

def profile_paths(node, path=()):
    """Every place in the default profile: (path, value), depth first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from profile_paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from profile_paths(value, path + (i,))


def _distribution_keys():
    keys = set()
    for p in profile_module.DEFAULT["protocol"]:
        for name in ("packets", "bytes", "duration"):
            keys |= set(p[name])
    return sorted(keys)


def profile_mutation(rng, profile):
    """Change one place of a profile to something hostile; returns what was changed."""
    paths = [p for p, _ in profile_paths(profile) if p]
    protocols = profile.get("protocol")
    shaped = isinstance(protocols, list) and protocols and all(isinstance(p, dict) for p in protocols) and all(
        isinstance(profile.get(side), list) and profile[side] for side in ("source", "destination"))
    kind = rng.random() if shaped else 0.0     # (an earlier change broke the shape: change any place)
    if kind < 0.45 or not paths:
        if not paths:
            paths = [(hostile_word(rng),)]
        path = rng.choice(paths)
        value = hostile_toml(rng) if rng.random() < 0.8 else hostile_word(rng)
    elif kind < 0.6:                      # a protocol key (PROTOCOL_KEYS), present or not
        i = rng.randrange(len(profile["protocol"]))
        key = rng.choice(sorted(profile_module.PROTOCOL_KEYS))
        path = ("protocol", i, key)
        value = rng.choice([256, -1, 255, 0, 47, 50, "quic", "", hostile_toml(rng), hostile_toml(rng)])
    elif kind < 0.75:                     # a distribution of one of the protocols
        i = rng.randrange(len(profile["protocol"]))
        path = ("protocol", i, rng.choice(["packets", "bytes", "duration"]))
        dist_keys = _distribution_keys()
        kind_ = rng.choice([k for k in dist_keys if k not in ("min", "max")])
        params = hostile_toml(rng) if kind_ == "fixed" else [hostile_toml(rng), hostile_toml(rng)]
        if kind_ != "fixed" and rng.random() < 0.3:
            params = rng.choice([[1], [], [1, 2, 3], [1e6, 1e6], [0, 0], [-1, 1]])
        value = {kind_: params}
        for bound in ("min", "max"):
            if bound in dist_keys and rng.random() < 0.4:
                value[bound] = rng.choice([hostile_toml(rng), 1e18, 2e18, 100, 10, 0, -1])
        if rng.random() < 0.1:
            value[rng.choice(dist_keys)] = hostile_toml(rng)
    elif kind < 0.85:                     # a prefix entry
        side = rng.choice(["source", "destination"])
        path = (side, rng.randrange(len(profile[side])))
        value = {"prefix": rng.choice(["10.0.0.0/33", "::/nan", "", "0.0.0.0/0", "::/0", "10.0.0.1/32",
                                       hostile_word(rng)]),
                 "weight": rng.choice([1, 0, -1, float("nan"), float("inf"), hostile_toml(rng)])}
        if rng.random() < 0.2:
            value = {"weight": 1}
    elif kind < 0.92:                     # the protocols: none, too many, one without a key
        path = ("protocol",)
        one = copy.deepcopy(rng.choice(profile["protocol"]))
        if rng.random() < 0.5 and one:
            one.pop(rng.choice(sorted(one)))
        value = rng.choice([[], [one] * 9, [one], [one] * 8])
    else:                                 # a key the profile does not have, or one removed
        if rng.random() < 0.5:
            path = (hostile_word(rng),)
            value = 1
        else:
            path = rng.choice(paths)
            value = None
    _set(profile, path, value)
    return "/".join(map(str, path))


def _set(node, path, value):
    for step in path[:-1]:
        node = node[step]
    if value is None:
        if isinstance(node, dict):
            node.pop(path[-1], None)
        else:
            del node[path[-1]]
    else:
        node[path[-1]] = value


def profile_case(rng, ctx):
    base = base_options("generate", ctx, rng)
    if rng.random() < 0.95:
        profile = copy.deepcopy(profile_module.DEFAULT)
        whats = [profile_mutation(rng, profile) for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3))]
        if rng.random() < 0.5:            # only what was changed, the rest the default's
            top = {w.split("/")[0] for w in whats}
            profile = {k: v for k, v in profile.items() if k in top}
        data = toml_document(profile)
        what = "profile " + " ".join(whats)
    else:
        data = rng.choice([b"\xff\xfe", b"protocol = 'tcp'\n", b"[protocol]\nname = 'quic'\n", b"packets\n",
                           b"ipv6_share = " + b"9" * 5000 + b"\n"])
        what = "profile bytes"
    base["profile"] = ["--profile", "profile.toml"]
    return argv_of("generate", base), {"profile.toml": data}, what, False


# -- route tables (--routes FILE) ------------------------------------------------------------

def route_line(rng):
    """A line of a --routes file, in either of its forms, with a hostile word in it."""
    def word():
        return hostile_word(rng).replace("\n", " ")
    prefix = rng.choice(["10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0", "default", "10.0.0.0/33", "::/129",
                         "10.1.2.3", word()])
    hop = rng.choice(["192.0.2.1", "0.0.0.0", "::", "fe80::1", "256.0.0.1", word()])
    iface = rng.choice(["2", "lo", "0", str(2**32), "99999999999", "-1", "²", word()])
    asn = rng.choice(["64500", "0", str(2**32), str(2**32 - 1), "-1", "1e3", word()])
    words = rng.choice([[prefix, hop, iface, asn], [prefix, "via", hop, "dev", iface],
                        [prefix, "dev", iface, "proto", "kernel", "scope", "link", "metric", asn],
                        [rng.choice(["blackhole", "unreachable", "local", "broadcast"]), prefix],
                        [prefix, hop, iface], [prefix, "dev"], [prefix, "via"]])
    return " ".join(words)


def routes_case(rng, ctx):
    base = base_options("probe", ctx, rng)
    lines = ["10.0.0.0/8 192.0.2.1 2 64500"] + [route_line(rng) for _ in range(rng.randint(1, 4))]
    rng.shuffle(lines)
    data = "\n".join(lines).encode("utf-8", "surrogateescape") + b"\n"
    if rng.random() < 0.05:
        data = rng.choice([b"\xff\xfe\n", b"10.0.0.0/8 " * 20000, b"\x00" * 100])
    base["routes"] = ["--routes", "routes.txt"]
    return argv_of("probe", base), {"routes.txt": data}, "probe --routes file", False


# -- pyprobe ctl without a probe -------------------------------------------------------------

def ctl_actions():
    """pyprobe ctl's options and positionals, from its own parser."""
    return [a for a in ctl_module.build_parser()._actions if a.dest != "help"]


def pick_command(rng, command=None):
    """A control command: `command` mostly (else one of ctl.COMMANDS), sometimes a hostile word
    or a command misspelt."""
    command = command or rng.choice(list(ctl_module.COMMANDS))
    odd = rng.random()
    if odd < 0.08:
        return hostile_word(rng)
    if odd < 0.15:
        return rng.choice([command.upper(), command + "\udcff", "\udcff" + command, command.title(),
                           command.replace("-", "_"), command + "\x00"])
    return command


def ctl_words(rng, ctx, socket_path, monitors=("a", "b"), command=None):
    """argv of pyprobe ctl: hostile values for one or two of its options, a command (every
    one of ctl.COMMANDS, or a hostile word) and hostile arguments."""
    actions = {a.dest: a for a in ctl_actions()}
    command = pick_command(rng, command).replace("\x00", "")      # (no NUL in argv)
    words = ["-c", socket_path]
    for dest in rng.sample([d for d in actions if d not in ("command", "args", "control")], rng.randint(0, 2)):
        action = actions[dest]
        flag = rng.choice(action.option_strings)
        if action.nargs == 0:
            words.append(flag)
        elif dest == "watch":             # (top --watch runs until interrupted: given to other commands)
            if command == "top":
                command = "statistics"
            words += [flag] if rng.random() < 0.3 else [f"{flag}={hostile_word(rng)}"]
        elif action.choices:
            words += [flag, rng.choice(list(action.choices) + [hostile_word(rng)])]
        elif dest == "monitor":
            words += [f"{flag}={rng.choice(list(monitors) + [hostile_word(rng)])}"]
        else:
            words += [f"{flag}={hostile_word(rng)}"]
    return words + [command] + command_args(rng, monitors)


def command_args(rng, monitors=("a", "b")):
    """Arguments of a control command: the forms the commands take (N, by=, monitor=,
    NAME=SECONDS) with hostile values, and hostile words."""
    args = []
    by = next(a for a in ctl_actions() if a.dest == "by").choices
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        form = rng.random()
        if form < 0.25:
            args.append(rng.choice(rng.choice([NUMBERS, UNICODE_DIGITS, ["10", "1", "10000", "10001"]])))
        elif form < 0.45:
            args.append(f"by={rng.choice(list(by) + [hostile_word(rng)])}")
        elif form < 0.6:
            args.append(f"monitor={rng.choice(list(monitors) + [hostile_word(rng), ''])}")
        elif form < 0.85:
            args.append(f"{rng.choice(TIMEOUT_NAMES + (hostile_word(rng),))}={hostile_word(rng)}")
        else:
            args.append(hostile_word(rng))
    return args


def ctl_case(rng, ctx):
    words = ctl_words(rng, ctx, rng.choice(["ctl.sock", "", "/nonexistent/ctl.sock", hostile_word(rng)]))
    return ["ctl"] + words, {}, "ctl without a probe", False


# -- control requests, for a running probe ---------------------------------------------------

# The commands that end flows without records or end the run: a running probe's test does
# these only where it can account for them (delete-all between two dumps) or at its end.
DESTRUCTIVE = ("shutdown", "delete-all")
MAX_REQUEST = 4096        # bytes of a request line the probe reads (control.MAX_REQUEST)
SEPARATORS = [" ", " ", " ", " ", "\t", "  ", "\x0b", "\x1c", "\u2028", "\u00a0", "\x85"]


def raw_request(rng, monitors=("a", "b"), command=None):
    """Bytes a client sends on the control socket: a command (every one of ctl.COMMANDS, or
    a hostile word) with hostile arguments, odd separators and line ends, non-UTF-8,
    a huge or an empty line. Returns (bytes, close: shut the sending side after them)."""
    form = rng.random()
    if form < 0.03:
        return b"", True
    if form < 0.06:
        return rng.choice([b"\n", b"\r\n", b"\x00\n", b" \n", b"\xff\xfe\n"]), False
    command = pick_command(rng, command)
    words = [command] + command_args(rng, monitors) + (["--json"] if rng.random() < 0.4 else [])
    line = rng.choice(SEPARATORS).join(words)
    if form < 0.09:
        line = rng.choice([line + " " + "a" * 1_000_000, " " * 5000 + line, line + "\udcff" * 5000])
    ending = rng.choice(["\n"] * 8 + ["\r\n", "", "\n\n", "\nstatistics\n", "\x00\n", "\n" + line + "\n"])
    return (line + ending).encode("utf-8", "surrogateescape"), ending == ""


def _words(line):
    return [w for w in line.decode("utf-8", "replace").split() if w != "--json"]


def destructive(data):
    """The DESTRUCTIVE command the probe may carry out on this request, else None. (It
    reads the first line of what it has once it holds a newline or MAX_REQUEST bytes.)"""
    first = data.split(b"\n", 1)[0]
    seen = [_words(first), _words(first[:MAX_REQUEST])]
    for words in seen:
        if words and words[0].lower() in DESTRUCTIVE:
            if len(words) == 1 or len(first) > MAX_REQUEST:
                return words[0].lower()
    return None


def ctl_request(words):
    """The request line pyprobe ctl sends for these argv words (bytes), or None if it sends none."""
    import contextlib
    import io
    parser = ctl_module.build_parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_intermixed_args(words)
    except SystemExit:
        return None
    options = [f"by={args.by}"] * bool(args.by) + [f"monitor={args.monitor}"] * bool(args.monitor)
    request = " ".join([args.command, *args.args, *options] + (["--json"] if args.json else []))
    return request.encode("utf-8", "surrogateescape") + b"\n"


# -- what a run reaches ----------------------------------------------------------------------

def every_place():
    """Every place the cases are to reach, from the tables: each command's flags and config
    keys, the [[collector]], [[record]] and [[monitor]] keys, the profile's keys."""
    places = set()
    for o in settings.OPTIONS:
        for command in sorted(o.commands):
            if o.flags or o.name == "filter":
                places.add(f"{command} flag {o.flags[0] if o.flags else o.name}")
            if o.section:
                places.add(f"{command} config [{o.section}] {o.toml_key}")
    places |= {f"collector {k}" for k in settings.COLLECTOR_KEYS}
    places |= {f"record {k}" for k in definitions.RECORD_KEYS}
    places |= {f"monitor {k}" for k in settings.MONITOR_KEYS}
    places |= {f"profile {k}" for k in profile_module.TOP_KEYS}
    places |= {f"protocol {k}" for k in profile_module.PROTOCOL_KEYS}
    return places


def reached(whats):
    """The places (as every_place() names them) that cases of these descriptions change."""
    places = set()
    for what in whats:
        words = what.removeprefix("live ").split(" ")
        if words[1] == "flags":
            places |= {f"{words[0]} flag {flag}" for flag in words[2:]}
        elif words[1:3] == ["config", "[[collector]]"]:
            places |= {f"collector {k}" for k in words[3:]}
        elif words[1:3] == ["config", "[[record]]"]:
            places |= {f"record {k}" for k in words[3:]}
        elif words[1:3] == ["config", "[[monitor]]"]:
            places |= {f"monitor {k}" for k in words[3:]}
        elif words[1] == "config" and words[2].startswith("["):
            places |= {f"{words[0]} config {section} {key}" for section, key in zip(words[2::2], words[3::2])}
        elif words[0] == "profile":
            for path in words[1:]:
                steps = path.split("/")
                places.add(f"profile {steps[0]}")
                if steps[0] == "protocol" and len(steps) > 2:
                    places.add(f"protocol {steps[2]}")
    return places


# -- making and running a case ----------------------------------------------------------------

def make_case(ctx, seed, index):
    """Case `index` of the run seeded `seed`: the same case every time."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.random()
    live = False
    if kind < 0.03:
        argv, files, what, open_ended = routes_case(rng, ctx)
    elif kind < 0.30:
        argv, files, what, open_ended = flag_case(rng, ctx, "probe")
    elif kind < 0.47:
        argv, files, what, open_ended = flag_case(rng, ctx, "generate")
    elif kind < 0.66:
        argv, files, what, open_ended = config_case(rng, ctx, "probe")
    elif kind < 0.74:
        argv, files, what, open_ended = config_case(rng, ctx, "generate")
    elif kind < 0.90:
        argv, files, what, open_ended = profile_case(rng, ctx)
    elif kind < 0.95:
        argv, files, what, open_ended = ctl_case(rng, ctx)
    elif ctx.live and kind < 0.98:        # (each runs 0.6 s: a few)
        live = True
        maker = flag_case if rng.random() < 0.6 else config_case
        argv, files, what, open_ended = maker(rng, ctx, "probe", live=True)
        what = "live " + what
    else:
        argv, files, what, open_ended = config_case(rng, ctx, "probe")
    stdout = "full" if rng.random() < 0.02 else "pipe"
    return Case(index, what, argv, files, stdout, open_ended, live)


class Outcome(namedtuple("Outcome", "rc stdout stderr seconds ended left")):
    """How a run ended: rc (negative: a signal), the head of its standard output, its standard
    error, its duration, ended: 'exit', 'stopped' (SIGTERM at the time limit), 'killed'
    (ignored SIGTERM), 'memory' (killed past MEMORY_LIMIT), 'flood' (stopped past
    OUTPUT_LIMIT), and left: processes it started still running a second after it ended
    (killed then)."""


def _rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_case(case, workdir, pyprobe=PYPROBE):
    """Run one case in workdir (made here, its files and a copy of the capture written first)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ANDROID, workdir / CAPTURE)
    for name, data in case.files.items():
        (workdir / name).write_bytes(data)
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    env = dict(os.environ, PYTHONFAULTHANDLER="1", COLUMNS="100")
    with open(err_path, "wb") as err, \
            (open(out_path, "wb") if case.stdout == "pipe" else open("/dev/full", "wb")) as out:
        started = time.monotonic()
        proc = subprocess.Popen([pyprobe] + case.argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, env=env, start_new_session=True)
        ended = _watch(proc, case, started, out_path)
        seconds = time.monotonic() - started
        left = _reap_group(proc.pid)
    stdout = b""
    if case.stdout == "pipe":
        with open(out_path, "rb") as f:
            stdout = f.read(4 << 20)
    with open(err_path, "rb") as f:
        stderr = f.read(16 << 20)
    if len(stderr) > 200_000:             # (the head has the start of a traceback, the tail its end)
        stderr = stderr[:50_000] + b"\n[...]\n" + stderr[-150_000:]
    return Outcome(proc.returncode, stdout, stderr.decode("utf-8", "replace"), seconds, ended, left)


def _watch(proc, case, started, out_path):
    """Wait for the run, signalling a live one, stopping one that runs too long or too big."""
    signals = [(0.3, signal.SIGHUP), (0.4, signal.SIGUSR1), (0.6, signal.SIGTERM)] if case.live else []
    stop_at = started + TIME_LIMIT
    ended = "exit"
    checked = 0.0
    while True:
        try:
            proc.wait(timeout=0.02)
            return ended
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        while signals and now - started >= signals[0][0]:
            _signal(proc, signals.pop(0)[1])
        if now - checked > 0.1:
            checked = now
            if _rss(proc.pid) > MEMORY_LIMIT:
                _kill(proc)
                return "memory"
            if ended == "exit" and case.stdout == "pipe" and out_path.stat().st_size > OUTPUT_LIMIT:
                _signal(proc, signal.SIGTERM)
                ended, stop_at = "flood", now
        if ended in ("exit", "flood") and now >= stop_at:
            if ended == "exit":
                _signal(proc, signal.SIGTERM)
                ended = "stopped"
            stop_at = now
            ended_by = ended
            try:
                proc.wait(timeout=STOP_LIMIT)
                return ended_by
            except subprocess.TimeoutExpired:
                _kill(proc)
                return "killed"


def _group(pgid):
    """The processes of a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def _reap_group(pgid):
    """How many of the run's processes (its session's group) outlive it by a second; they are killed."""
    deadline = time.monotonic() + 1.0
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _group(pgid)
    if left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(left)


def _signal(proc, sig):
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _strict_json(line):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(line, parse_constant=refuse)


def check(case, outcome):
    """What is wrong with how the case ended: a list of short findings (none: it behaved)."""
    problems = []
    rc, err = outcome.rc, outcome.stderr
    ctl = case.argv[:1] == ["ctl"]
    if outcome.ended == "memory":
        problems.append(f"used more than {MEMORY_LIMIT >> 30} GiB")
    elif outcome.ended == "killed":
        problems.append(f"still running {STOP_LIMIT:g} s after SIGTERM" +
                        (" (hung)" if not case.open_ended else ""))
    elif outcome.ended == "stopped" and not case.open_ended:
        problems.append(f"still running after {TIME_LIMIT:g} s (hang)")
    elif outcome.ended == "flood" and not case.open_ended:
        problems.append(f"wrote more than {OUTPUT_LIMIT >> 20} MiB")
    if rc is not None and rc < 0 and outcome.ended not in ("memory", "killed"):
        problems.append(f"killed by signal {-rc} ({signal.Signals(-rc).name})")
    elif rc is not None and rc >= 0 and rc not in ((0, 1, 2) if ctl else (0, 2)):
        problems.append(f"exit status {rc}")
    if outcome.left:
        problems.append(f"left {outcome.left} processes running after it ended")
    if "Traceback" in err:
        problems.append("traceback")
    if "Fatal Python error" in err:
        problems.append("fatal Python error")
    if rc == 2 or (ctl and rc == 1 and "--json" not in case.argv):
        lines = err.strip("\n").split("\n") if err.strip() else []
        if len(lines) != 1:
            problems.append(f"exit {rc} with {len(lines)} lines on standard error (one expected)")
        leak = next((words for words in PYTHON_WORDS if words in err), None)
        if leak:
            problems.append(f"a refusal in Python's words ({leak!r}), not the option's: {err.strip()[:300]!r}")
    if outcome.ended in ("stopped", "flood") and case.open_ended and rc != 0:
        problems.append(f"exit status {rc} after SIGTERM (0 expected)")
    if rc == 0 and case.stdout == "pipe" and "--json" in case.argv and not ctl:
        problems += _check_records(outcome.stdout)
    lag = re.search(r"99% ([\d.]+) ms, max ([\d.]+) ms", err)
    if lag and float(lag.group(1)) > float(lag.group(2)):
        problems.append(f"replay lag: a 99th percentile over the maximum ({lag.group(0)})")
    return problems


# An exception's own message passed on as the refusal: it says what went wrong in the code,
# not what is wrong with the value.
PYTHON_WORDS = ("invalid literal for int()", "could not convert string to float", "unsupported operand",
                "object is not", "NoneType", "has no attribute", "not subscriptable", "argument must be",
                "Exceeds the limit", "object of type", "cannot convert float", "out of range for",
                "codec can't", "maximum recursion")


def _check_records(stdout):
    """--json output: JSON objects only (no NaN, no Infinity), each a record that could be true."""
    lines = stdout.split(b"\n")
    if len(stdout) >= 4 << 20:
        lines = lines[:-1]                # (cut where the kept head ends)
    for line in lines:
        if not line.strip():
            continue
        try:
            record = _strict_json(line)
        except ValueError as e:
            return [f"standard output is not JSON lines ({e}): {line[:200]!r}"]
        if not isinstance(record, dict):
            return [f"a JSON line is not a record: {line[:200]!r}"]
        if "start" in record and "end" in record and not record["start"] <= record["end"]:
            return [f"a record ends before it starts: {line[:300]!r}"]
        if "packets" in record and not 1 <= record["packets"] < 2**63:
            return [f"a record of {record['packets']} packets: {line[:300]!r}"]
        if "octets" in record and "packets" in record and record["octets"] < record["packets"]:
            return [f"a record of fewer octets than packets: {line[:300]!r}"]
    return []


def signature(case, problems, outcome):
    """What makes two failures the same bug: the problems, and where a traceback ended."""
    where = ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', outcome.stderr)
    if frames:
        inside = [f for f in frames if "/pyprobe/" in f[0]] or frames
        path, line, func = inside[-1]
        where = f" at {Path(path).name}:{func}"
    last = [l for l in outcome.stderr.strip().split("\n") if l.strip()]
    error = ""
    if "traceback" in problems and last:
        error = " " + re.sub(r"\d+", "N", last[-1].split(":")[0])[:80]
    command = "live" if case.live else case.argv[0] if case.argv[0] in ("ctl", "generate") else "probe"
    first = last[0].split(":")[0][:20] if len(last) > 1 and "lines on standard error" in " ".join(problems) else ""
    return (f"{command}: " + re.sub(r"\d+", "N", "; ".join(p.split(":")[0] for p in problems)) + where + error
            + (f" (first line {first!r})" if first else ""))


# -- showing a case ----------------------------------------------------------------------------

def shell_word(word):
    """A shell word for word: $'...' where it is not printable, a python3 -c for a huge one."""
    data = os.fsencode(word)
    write = "$(python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(\"{}\") * {})')"
    for period in range(1, 17):
        if len(data) > 300 and len(data) % period == 0 and data == data[:period] * (len(data) // period):
            return '"' + write.format(data[:period].hex(), len(data) // period) + '"'
    if len(data) > 300:
        return '"' + write.format(data.hex(), 1) + '"'
    if all(32 <= b < 127 for b in data):
        return shlex.quote(word)
    return "$'" + "".join(chr(b) if 32 <= b < 127 and chr(b) not in "'\\" else f"\\x{b:02x}" for b in data) + "'"


def describe(case):
    """The case as commands to paste into a shell (its files, then the run)."""
    lines = []
    for name, data in case.files.items():
        shown = data if len(data) <= 600 else data[:300] + b"..." + data[-100:]
        lines.append(f"# {name} ({len(data)} bytes): {shown!r}")
    redirect = " > /dev/full" if case.stdout == "full" else ""
    live = "  (then SIGHUP at 0.3 s, SIGUSR1 at 0.4 s, SIGTERM at 0.6 s)" if case.live else ""
    lines.append("pyprobe " + " ".join(shell_word(w) for w in case.argv) + redirect + live)
    return "\n".join(lines)


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(description="write, show and run one hostile case")
    parser.add_argument("index", type=int)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args(argv)
    sinks = Sinks()
    try:
        case = make_case(sinks.context, args.seed, args.index)
        workdir = Path(args.dir or f"/tmp/hostile-{args.seed}-{args.index}")
        print(f"case {args.index} of seed {args.seed}: {case.what}\n{describe(case)}\n(in {workdir})")
        outcome = run_case(case, workdir)
        print(f"exit {outcome.rc} ({outcome.ended}) in {outcome.seconds:.2f} s; stderr:\n{outcome.stderr[-3000:]}")
        print("problems:", check(case, outcome) or "none")
    finally:
        sinks.close()


if __name__ == "__main__":
    main(sys.argv[1:])
