"""Traffic profiles for `pyprobe generate`: what the synthetic flows look like.

A profile is a TOML file (--profile FILE; README has a full example) or the
default below. Every key is optional; a file's keys replace the default's. Sizes
are distributions, written as one of

    { fixed = V }
    { lognormal = [MU, SIGMA] }        exp(N(MU, SIGMA)): MU, SIGMA of the log
    { pareto = [MINIMUM, SHAPE] }      heavy-tailed: P(X > x) = (MINIMUM / x) ** SHAPE

with optional `min` and `max` bounds. tables() checks a profile, every value against
what a record can hold, and flattens it for the compiled generator (ext/_generate.pyx).
"""

import ipaddress
import math

from ..errors import SettingsError
from ..fields import ICMP_PROTOCOLS

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "gre": 47, "esp": 50}
# Protocols whose packets carry ports (ext/decode.pxd decode_l4), and ICMP, whose type and
# code stand in the destination port; the others' flows have ports 0.
PORTED = frozenset({6, 17, 33, 132, 136})
ICMP = frozenset(ICMP_PROTOCOLS)
# Next headers that are IPv6 extension headers: a probe reads past them, so no IPv6 flow has one as its protocol.
IPV6_EXTENSION_HEADERS = frozenset({0, 43, 44, 51, 60})

MAX_CHOICES = 64                 # values of one weighted choice (ext/_generate.pyx MAX_CHOICES)
MAX_PROTOCOLS = 8
MAX_PACKETS = 2**32 - 1          # packets in one record (a capture's packet index is 32 bits)
MAX_PACKET_BYTES = 65535         # an IP packet's length field
MAX_SECONDS = 100 * 365 * 86400  # durations and active_timeout: the longest -t timeout
MAX_LOGNORMAL_SIGMA = 10.0       # wider puts nearly every value at a bound
# What a distribution of each size may give: (lowest, highest, unit).
SIZES = {"packets": (1, MAX_PACKETS, "packets"), "bytes": (1, MAX_PACKET_BYTES, "bytes a packet"),
         "duration": (0, MAX_SECONDS, "seconds")}

DEFAULT = {
    "ipv6_share": 0.15,
    "both_directions": 0.0,
    "client_ports": [32768, 60999],
    "active_timeout": 1800,
    "tos": [[0, 90], [0x28, 5], [0xb8, 5]],
    "vlan": [[0, 1]],
    "in_if": [[1, 3], [2, 1]],
    "out_if": [[3, 1], [4, 1]],
    "source": [{"prefix": "10.0.0.0/16", "weight": 3}, {"prefix": "172.16.0.0/20", "weight": 1},
               {"prefix": "2001:db8:1::/48", "weight": 1}],
    "destination": [{"prefix": "198.51.100.0/24", "weight": 2}, {"prefix": "203.0.113.0/24", "weight": 1},
                    {"prefix": "2001:db8:2::/64", "weight": 1}],
    "protocol": [
        {"name": "tcp", "weight": 70, "ports": [[443, 60], [80, 25], [22, 5], [25, 5], [8080, 5]],
         "packets": {"lognormal": [1.5, 1.6], "max": 1_000_000},
         "bytes": {"lognormal": [6.2, 0.7], "min": 40, "max": 1500},
         "duration": {"lognormal": [0.5, 1.8], "max": 1800}, "fin": 0.8, "rst": 0.1},
        {"name": "udp", "weight": 25, "ports": [[53, 60], [443, 20], [123, 10], [5060, 10]],
         "packets": {"pareto": [1, 1.3], "max": 100_000},
         "bytes": {"lognormal": [4.8, 0.8], "min": 28, "max": 1500},
         "duration": {"lognormal": [0.0, 1.5], "max": 600}},
        {"name": "icmp", "weight": 5, "ports": [[8 * 256, 50], [0, 40], [3 * 256 + 3, 10]],
         "packets": {"lognormal": [0.7, 0.8], "max": 1000}, "bytes": {"fixed": 84},
         "duration": {"lognormal": [1.0, 1.0], "max": 600}},
    ],
}
TOP_KEYS = set(DEFAULT)
PROTOCOL_KEYS = {"name", "number", "weight", "ports", "packets", "bytes", "duration", "fin", "rst"}
PREFIX_KEYS = {"prefix", "weight"}


def load(path):
    """A profile from a TOML file, over the default; SettingsError names what is wrong."""
    from ..parsers import read_toml
    data = read_toml(path, "--profile")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise SettingsError(f"--profile {path}: unknown key {_brief(sorted(unknown)[0])} "
                            f"(one of {', '.join(sorted(TOP_KEYS))})")
    try:
        return tables({**DEFAULT, **data})
    except ValueError as e:
        raise SettingsError(f"--profile {path}: {e}") from None


def default_tables():
    return tables(DEFAULT)


# -- values ----------------------------------------------------------------------------------

def _number(value, what, low, high, whole=False):
    """value if it is a number (a whole one if asked) within low..high (NaN never is)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}: {_brief(value)} is not a number")
    if whole and not isinstance(value, int):
        raise ValueError(f"{what}: {_brief(value)} is not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{what} {_brief(value)} is out of range {_show(low)}..{_show(high)}")
    return value


def _brief(value):
    """A value as a message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _label(name):
    text = str(name)
    return text if len(text) <= 40 else text[:36] + "..."


def _show(bound):
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _list(value, what, length=None, example=""):
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise ValueError(f"{what}: give {example}")
    return value


def _share(value, what):
    return float(_number(value, what, 0.0, 1.0))


def _weight(value, what):
    return float(_number(value, f"{what} weight", 0.0, 1e15))


def _weights_total(weights, what):
    if not 0 < len(weights) <= MAX_CHOICES:
        raise ValueError(f"{what}: give 1 to {MAX_CHOICES} entries")
    if sum(weights) <= 0:
        raise ValueError(f"{what}: the weights must not all be 0")


def _pairs(value, what, high):
    """[[value, weight], ...] -> [(value, weight)]: whole values 0..high."""
    example = f"[[value, weight], ...] with whole values 0..{high}"
    pairs = [(_number(v, f"{what} value", 0, high, whole=True), _weight(w, what))
             for v, w in (_list(p, what, 2, example) for p in _list(value, what, example=example))]
    _weights_total([w for _, w in pairs], what)
    return pairs


def _distribution(spec, what, size):
    """{lognormal = [mu, sigma], min, max} -> ('lognormal', mu, sigma, (min, max)), every value
    within what a record of this size can hold."""
    low, high, unit = SIZES[size]
    if not isinstance(spec, dict):
        raise ValueError(f"{what}: a table such as {{ lognormal = [1.0, 1.5] }}")
    kinds = [k for k in ("fixed", "lognormal", "pareto") if k in spec]
    if len(kinds) != 1 or set(spec) - {"fixed", "lognormal", "pareto", "min", "max"}:
        raise ValueError(f"{what}: one of fixed, lognormal or pareto, with optional min and max")
    kind = kinds[0]
    bounds = (float(_number(spec.get("min", low), f"{what} min", low, high)),
              float(_number(spec.get("max", high), f"{what} max", low, high)))
    if bounds[0] > bounds[1]:
        raise ValueError(f"{what}: min {bounds[0]:g} is more than max {bounds[1]:g}")
    if kind == "fixed":
        return kind, float(_number(spec[kind], f"{what} fixed", low, high)), 0.0, bounds
    a, b = _list(spec[kind], f"{what} {kind}", 2, "[MU, SIGMA]" if kind == "lognormal" else "[MINIMUM, SHAPE]")
    if kind == "lognormal":
        mu = _number(a, f"{what} lognormal MU", -math.inf, math.inf)
        if not -745 <= mu <= math.log(high):       # (exp(-745) is the smallest double above 0)
            raise ValueError(f"{what} lognormal MU {_brief(mu)}: the median exp(MU) must be at most {high} {unit} "
                             f"(MU at most {math.log(high):.2f})")
        return kind, float(mu), float(_number(b, f"{what} lognormal SIGMA", 0.0, MAX_LOGNORMAL_SIGMA)), bounds
    minimum = _number(a, f"{what} pareto MINIMUM", 0.0, high)
    shape = _number(b, f"{what} pareto SHAPE", 0.0, 1e6)
    if minimum <= 0 or shape <= 0:
        raise ValueError(f"{what}: pareto needs a positive minimum and shape")
    return kind, float(minimum), float(shape), bounds


def _prefixes(entries, what):
    out = {4: [], 6: []}
    for entry in _list(entries, what, example="a list of tables { prefix = \"10.0.0.0/8\", weight = 1 }"):
        if not isinstance(entry, dict) or "prefix" not in entry or set(entry) - PREFIX_KEYS:
            raise ValueError(f"{what}: each a table {{ prefix = \"10.0.0.0/8\", weight = 1 }}")
        try:
            net = ipaddress.ip_network(str(entry["prefix"]), strict=False)
        except ValueError:
            raise ValueError(f"{what}: bad prefix {_brief(entry['prefix'])} (give a network such as 10.0.0.0/8 "
                             "or 2001:db8::/32)") from None
        out[net.version].append((net.network_address.packed, net.prefixlen, _weight(entry.get("weight", 1), what)))
    for version, group in out.items():
        if group:
            _weights_total([w for _, _, w in group], f"{what} IPv{version}")
    return out


# -- protocols ---------------------------------------------------------------------------------

def _protocol_number(p):
    """A [[protocol]]'s number: its own (0..255), or its name's."""
    if "number" in p:
        what = f"[[protocol]] {_label(p['name'])} number" if "name" in p else "[[protocol]] number"
        return _number(p["number"], what, 0, 255, whole=True)
    if "name" not in p:
        raise ValueError("[[protocol]]: give a name or a number")
    name = str(p["name"]).lower()
    if name not in PROTOCOL_NUMBERS:
        raise ValueError(f"[[protocol]]: unknown protocol name {_brief(p['name'])} "
                         f"(one of {', '.join(PROTOCOL_NUMBERS)}; or give number = 0..255)")
    return PROTOCOL_NUMBERS[name]


def _protocol(p, ipv6):
    if not isinstance(p, dict):
        raise ValueError("protocol: give [[protocol]] tables")
    unknown = set(p) - PROTOCOL_KEYS
    if unknown:
        raise ValueError(f"[[protocol]]: unknown key {_brief(sorted(unknown)[0])} "
                         f"(one of {', '.join(sorted(PROTOCOL_KEYS))})")
    number = _protocol_number(p)
    what = f"[[protocol]] {_label(p.get('name', number))}"
    missing = [key for key in ("packets", "bytes", "duration") if key not in p]
    if missing:
        raise ValueError(f"{what}: missing key {missing[0]!r} (each [[protocol]] gives packets, bytes and duration)")
    if ipv6 and number in IPV6_EXTENSION_HEADERS:
        raise ValueError(f"{what}: {number} is an IPv6 extension header, not a protocol an IPv6 flow can have "
                         "(give ipv6_share = 0, or another number)")
    ports = _pairs(p.get("ports", [[0, 1]]), f"{what} ports", 65535)
    if number not in PORTED | ICMP and any(port for port, _ in ports):
        raise ValueError(f"{what} ports: protocol {number} carries no ports (only TCP, UDP, SCTP, UDP-Lite, DCCP "
                         "do; ICMP: type*256+code)")
    fin, rst = _share(p.get("fin", 0), f"{what} fin"), _share(p.get("rst", 0), f"{what} rst")
    if fin + rst > 1:
        raise ValueError(f"{what}: fin {fin:g} and rst {rst:g} are shares of one whole")
    return {"number": number, "weight": _weight(p.get("weight", 1), what), "ports": ports,
            **{size: _distribution(p[size], f"{what} {size}", size) for size in SIZES}, "fin": fin, "rst": rst}


def tables(profile):
    """The profile, checked, as the compiled generator's flat tables; ValueError names the key."""
    ipv6_share = _share(profile["ipv6_share"], "ipv6_share")
    sources, destinations = _prefixes(profile["source"], "source"), _prefixes(profile["destination"], "destination")
    for version in (4, 6):
        if (ipv6_share < 1 if version == 4 else ipv6_share > 0) and not (sources[version] and destinations[version]):
            raise ValueError(f"ipv6_share {ipv6_share:g} needs IPv{version} source and destination prefixes")
    entries = profile["protocol"]
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_PROTOCOLS:
        raise ValueError(f"protocol: give 1 to {MAX_PROTOCOLS} [[protocol]] tables")
    protocols = [_protocol(p, ipv6_share > 0) for p in entries]
    _weights_total([p["weight"] for p in protocols], "[[protocol]]")
    low, high = (_number(port, "client_ports", 1, 65535, whole=True)
                 for port in _list(profile["client_ports"], "client_ports", 2, "[low, high] within 1..65535"))
    if low > high:
        raise ValueError(f"client_ports: [low, high] within 1..65535, not [{low}, {high}]")
    return {"ipv6_share": ipv6_share, "src4": sources[4], "dst4": destinations[4], "src6": sources[6],
            "dst6": destinations[6], "protocols": protocols,
            "tos": _pairs(profile["tos"], "tos", 255), "vlan": _pairs(profile["vlan"], "vlan", 4095),
            "in_if": _pairs(profile["in_if"], "in_if", 2**32 - 1),
            "out_if": _pairs(profile["out_if"], "out_if", 2**32 - 1),
            "client_ports": (low, high), "both_directions": _share(profile["both_directions"], "both_directions"),
            "active_timeout": float(_positive_seconds(profile["active_timeout"], "active_timeout"))}


def _positive_seconds(value, what):
    seconds = _number(value, what, 0, MAX_SECONDS)
    if seconds <= 0:
        raise ValueError(f"{what} {_brief(value)}: more than 0 seconds")
    return seconds
