"""Settings from the command line: timeouts, key levels, sizes.

Every parser raises ValueError with a message fit to show the operator as is.
"""

import re

from ._meter import DEFAULT_TIMEOUTS, KEY_LEVELS

MAX_FLOWS_LIMIT = 100_000_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# -t names: softflowd's, plus Cisco's inactive/active.
INACTIVE_CLASSES = ("general", "tcp", "udp", "icmp")
TIMEOUT_ALIASES = {"inactive": INACTIVE_CLASSES, "active": ("maxlife",)}
IGNORED_TIMEOUTS = {"expint"}   # softflowd's expiry scan interval: pyprobe checks at every packet


def parse_duration(text):
    """'300', '2.5', '5m', '1h', '7d' -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r} (seconds, or a number with s, m, h, d or w)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_timeouts(specs):
    """['inactive=30', 'tcp=60', ...] applied in order -> {meter timeout name: seconds}."""
    timeouts = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip().lower()
        if not sep:
            raise ValueError(f"bad timeout {spec!r}: expected name=seconds")
        seconds = parse_duration(str(value))
        if name in IGNORED_TIMEOUTS:
            continue
        targets = TIMEOUT_ALIASES.get(name, (name,))
        if targets[0] not in DEFAULT_TIMEOUTS:
            names = ", ".join(sorted(set(DEFAULT_TIMEOUTS) | set(TIMEOUT_ALIASES)))
            raise ValueError(f"unknown timeout {name!r} (one of {names})")
        for target in targets:
            timeouts[target] = seconds
    return timeouts


def parse_max_flows(text):
    return parse_count(text, "flow count", 1, MAX_FLOWS_LIMIT)


def parse_key_level(text):
    if text not in KEY_LEVELS:
        raise ValueError(f"unknown tracking level {text!r} (one of {', '.join(KEY_LEVELS)})")
    return text


# -- the TOML configuration file (-f) ------------------------------------------

CONFIG_KEYS = {
    "probe": {"read", "interface", "snaplen", "filter", "max_flows", "tracking", "sampling", "sampling_mode"},
    "timeouts": None,                       # any timeout name: checked by parse_timeouts
    "export": {"version", "round_robin", "source_id", "engine_type", "engine_id",
               "template_refresh", "template_interval", "max_datagram"},
    "collector": {"address", "version", "transport"},
}


def load_file(path):
    """Read and check a TOML configuration file; ValueError names what is wrong."""
    try:
        import tomllib
    except ModuleNotFoundError:             # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config {path}: {e}") from None
    for section, value in data.items():
        if section not in CONFIG_KEYS:
            raise ValueError(f"config {path}: unknown section [{section}] (one of {', '.join(CONFIG_KEYS)})")
        allowed = CONFIG_KEYS[section]
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            if not isinstance(entry, dict):
                raise ValueError(f"config {path}: [{section}] must be a table")
            unknown = set(entry) - allowed if allowed is not None else set()
            if unknown:
                raise ValueError(f"config {path}: unknown key {sorted(unknown)[0]!r} in [{section}]")
    if isinstance(data.get("collector"), dict):
        data["collector"] = [data["collector"]]
    return data


def timeout_specs(table):
    """[timeouts] table -> '-t' style specs, so both go through one parser."""
    return [f"{name}={value}" for name, value in table.items()]


def parse_version(value):
    try:
        version = int(value)
    except (TypeError, ValueError):
        version = None
    if version not in (5, 9, 10):
        raise ValueError(f"bad export version {value!r}: 5, 9 or 10 (IPFIX)")
    return version


def parse_count(value, what, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"bad {what} {value!r}: expected a whole number") from None
    if not low <= number <= high:
        raise ValueError(f"{what} {number} out of range {low}..{high}")
    return number
