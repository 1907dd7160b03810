"""Value parsers: an operator's text (a flag's word, a config file's value, a control
command's argument) to the value it means, or ValueError with a message for the operator.

The option table (pyprobe/settings.py) makes its options of these; the stages that take
values of their own (the control socket, the metrics endpoint, route tables, collector
addresses) use them too, so a value reads the same wherever it is written. Only this
module, not the option table, is for the stages to import.
"""

import re

from ._meter import DEFAULT_TIMEOUTS
from .errors import SettingsError
from .export import VERSIONS, capabilities

# The longest timeout the meter's microsecond clock can hold with room to add it to any time.
MAX_TIMEOUT_SECONDS = 100 * 365 * 86400
LAST_EXPORT_SECOND = 2**32 - 1           # export headers count epoch seconds in 32 bits
MAX_DURATION_SECONDS = 1e12              # any duration: finite, and a whole number of microseconds in 64 bits
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# -t names: softflowd's, plus Cisco's inactive/active.
INACTIVE_CLASSES = ("general", "tcp", "udp", "icmp")
TIMEOUT_ALIASES = {"inactive": INACTIVE_CLASSES, "active": ("maxlife",)}
IGNORED_TIMEOUTS = {"expint"}   # softflowd's expiry scan interval: pyprobe checks at every packet

# ASCII digits only: str.isdigit takes '²' (which int() refuses) and int() takes ' 5', '1_000'
# and other scripts' digits, none of them a number as written in a command or a file.
# 40 digits at most, so that int() is cheap whatever the input.
_WHOLE_NUMBER = re.compile(r"([+-]?)[0-9]{1,40}\Z")


def whole_number(text, signed=False):
    """The int that text writes in ASCII digits (with signed, a sign may lead), else None."""
    match = _WHOLE_NUMBER.match(text) if isinstance(text, str) else None
    if match is None or (match.group(1) and not signed):
        return None
    return int(text)


def parse_duration(text):
    """'300', '2.5', '5m', '1h', '7d' -> seconds."""
    match = _DURATION.match(str(text).strip())
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None
    if seconds is None or seconds > MAX_DURATION_SECONDS:    # (a long run of digits reads as inf)
        raise ValueError(f"bad duration {text!r} (seconds, or a number with s, m, h, d or w, "
                         f"up to {MAX_DURATION_SECONDS:.0e} s)")
    return seconds


def parse_update(text):
    """A permanent cache's export interval: a millisecond (the meter's clock counts microseconds)
    up to the longest timeout."""
    seconds = parse_duration(text)
    if not 0.001 <= seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"update interval {text!r} out of range 0.001..{MAX_TIMEOUT_SECONDS} seconds")
    return seconds


def parse_timeouts(specs):
    """['inactive=30', 'tcp=60', ...] applied in order -> {meter timeout name: seconds}."""
    timeouts = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip().lower()
        if not sep:
            raise ValueError(f"bad timeout {spec!r}: expected name=seconds")
        seconds = parse_duration(value)
        if seconds > MAX_TIMEOUT_SECONDS:
            raise ValueError(f"timeout {name} {value.strip()} is longer than {MAX_TIMEOUT_SECONDS // 86400} days")
        if name in IGNORED_TIMEOUTS:
            continue
        targets = TIMEOUT_ALIASES.get(name, (name,))
        if targets[0] not in DEFAULT_TIMEOUTS:
            names = ", ".join(sorted(set(DEFAULT_TIMEOUTS) | set(TIMEOUT_ALIASES)))
            raise ValueError(f"unknown timeout {name!r} (one of {names})")
        for target in targets:
            timeouts[target] = seconds
    return timeouts


def parse_count(low, high, what):
    def parse(value):
        # Only whole numbers as written: no 1.5, no True, no '1_000' or ' 5'
        number = value if isinstance(value, int) and not isinstance(value, bool) else whole_number(value, signed=True)
        if number is None:
            raise ValueError(f"bad {what} {value!r}: expected a whole number")
        if not low <= number <= high:
            raise ValueError(f"{what} {number} out of range {low}..{high}")
        return number
    return parse


def parse_choice(*choices):
    def parse(value):
        if value not in choices:
            raise ValueError(f"bad value {value!r}: one of {', '.join(map(str, choices))}")
        return value
    return parse


def parse_version(value):
    version = value if isinstance(value, int) and not isinstance(value, bool) else whole_number(value, signed=True)
    if version not in VERSIONS:
        choices = ", ".join(f"{v} ({capabilities(v).name})" for v in VERSIONS)
        raise ValueError(f"bad export version {value!r}: one of {choices}")
    return version


def parse_bool(value):
    if not isinstance(value, bool):
        raise ValueError(f"bad value {value!r}: true or false")
    return value


def parse_text(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"bad value {value!r}: expected a string")
    return value


def parse_filter(value):
    """A tcpdump expression: text libpcap can take (UTF-8; a word of other bytes is refused)."""
    value = parse_text(value)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"bad filter {value!r}: not UTF-8 text") from None
    return value


def parse_listen_address(text):
    """'[host:]port' -> (host, port); host '' means every address.

    Accepted: '9100', ':9100', '127.0.0.1:9100', 'localhost:9100', '[::1]:9100'."""
    text = str(text).strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise ValueError(f"bad metrics address {text!r}: give [HOST:]PORT, an IPv6 host as [ADDR]:PORT")
        port = rest[1:]
    elif ":" in text:
        host, _, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"bad metrics address {text!r}: write an IPv6 host as [ADDR]:PORT")
    else:
        host, port = "", text
    port = whole_number(port)
    if port is None or not 1 <= port <= 65535:
        raise ValueError(f"bad metrics address {text!r}: the port must be a number from 1 to 65535")
    return host, port


def parse_metrics(text):
    parse_listen_address(text)
    return str(text)


def parse_real(low, high, what, expected, shown):
    """A parser of a number from low to high; expected: what the number is, for a value
    that is none; shown: the range as a refusal writes it."""
    def parse(value):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"bad {what} {value!r}: {expected}") from None
        if not low <= number <= high:               # (NaN too)
            raise ValueError(f"{what} {number:g} out of range {shown}")
        return number
    return parse


# --realtime's speed: a positive factor (2: twice as fast)
parse_speed = parse_real(0.001, 1_000_000, "speed", "a positive number (1: real time, 2: twice as fast)",
                         "0.001..1000000")
parse_rate = parse_real(0, 1e9, "rate", "records per second (0: as fast as possible)", "0..1e9")
parse_export_rate = parse_real(0, 1e9, "export rate", "datagrams per second (0: no limit)", "0..1e9")


def parse_max_gap(value):
    """--max-gap: wall seconds, 0 (no cap) up to a day."""
    seconds = parse_duration(value)
    if seconds > 86400:
        raise ValueError(f"max gap {seconds:g} s is longer than a day (0: no cap)")
    return seconds


def parse_files(value):
    """-r's files: one path or a list of them (TOML), globs allowed."""
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, (list, tuple)) or not paths:
        raise ValueError(f"bad value {value!r}: a path or a list of paths")
    return tuple(parse_text(p) for p in paths)




def parse_time(value):
    """An epoch time in seconds, or an ISO 8601 date and time (UTC unless it says otherwise)."""
    import datetime
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            when = datetime.datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"bad time {value!r}: epoch seconds or ISO 8601 (2026-01-01T00:00:00)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp()
    if not 0 <= seconds <= LAST_EXPORT_SECOND:
        raise ValueError(f"time {value!r} out of range: 1970-01-01 to 2106-02-07 (epoch 0..{LAST_EXPORT_SECOND}), "
                         "the times a NetFlow header can state")
    return seconds


def parse_prefix(value):
    import ipaddress
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError as e:
        raise ValueError(f"bad prefix {value!r}: {e}") from None


MAX_TOML_BYTES = 1 << 20


def read_toml(path, what):
    """A TOML file's tables; SettingsError names `what` (config, --profile) and the problem."""
    try:
        import tomllib
    except ModuleNotFoundError:             # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOML_BYTES + 1)          # (a device or a FIFO without end: read a bound)
        if len(data) > MAX_TOML_BYTES:
            raise SettingsError(f"{what} {path}: larger than {MAX_TOML_BYTES >> 20} MiB")
        return tomllib.loads(data.decode())
    except OSError as e:
        raise SettingsError(f"cannot read {what} {path}: {e.strerror}") from None
    except RecursionError:
        raise SettingsError(f"{what} {path}: arrays or tables nested too deeply") from None
    except UnicodeDecodeError as e:
        raise SettingsError(f"{what} {path}: not UTF-8 text (byte {e.start} is 0x{e.object[e.start]:02x}); "
                            "TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{what} {path}: {e}") from None
    except ValueError:           # an integer of more digits than Python converts
        raise SettingsError(f"{what} {path}: a number of more than 4,300 digits") from None
