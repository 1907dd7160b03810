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
        seconds = parse_duration(value)
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
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"bad flow count {text!r}: expected a whole number") from None
    if not 1 <= value <= MAX_FLOWS_LIMIT:
        raise ValueError(f"flow count {value} out of range 1..{MAX_FLOWS_LIMIT}")
    return value


def parse_key_level(text):
    if text not in KEY_LEVELS:
        raise ValueError(f"unknown tracking level {text!r} (one of {', '.join(KEY_LEVELS)})")
    return text
