"""Traffic profiles for `pyprobe generate`: what the synthetic flows look like.

A profile is a TOML file (--profile FILE; README has a full example) or the
default below. Every key is optional; a file's keys replace the default's. Sizes
are distributions, written as one of

    { fixed = V }
    { lognormal = [MU, SIGMA] }        exp(N(MU, SIGMA)): MU, SIGMA of the log
    { pareto = [MINIMUM, SHAPE] }      heavy-tailed: P(X > x) = (MINIMUM / x) ** SHAPE

with optional `min` and `max` bounds. tables() flattens a profile for the
compiled generator (ext/_generate.pyx).
"""

import ipaddress

from ..errors import SettingsError

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "gre": 47, "esp": 50}

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


def load(path):
    """A profile from a TOML file, over the default; SettingsError names what is wrong."""
    from ..settings import read_toml
    data = read_toml(path, "--profile")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise SettingsError(f"--profile {path}: unknown key {sorted(unknown)[0]!r} "
                            f"(one of {', '.join(sorted(TOP_KEYS))})")
    profile = {**DEFAULT, **data}
    try:
        return tables(profile)
    except (TypeError, ValueError, KeyError) as e:
        raise SettingsError(f"--profile {path}: {e}") from None


def default_tables():
    return tables(DEFAULT)


def _share(value, what):
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} {value:g} is not a share between 0 and 1")
    return value


def _pairs(value, what, high):
    pairs = [(int(v), float(w)) for v, w in value]
    if not pairs or any(not 0 <= v <= high or w < 0 for v, w in pairs) or sum(w for _, w in pairs) <= 0:
        raise ValueError(f"{what}: give [[value, weight], ...] with values 0..{high} and a positive weight")
    return pairs


def _distribution(spec, what):
    """{lognormal = [mu, sigma], min, max} -> ('lognormal', mu, sigma, (min, max))."""
    if not isinstance(spec, dict):
        raise ValueError(f"{what}: a table such as {{ lognormal = [1.0, 1.5] }}")
    kinds = [k for k in ("fixed", "lognormal", "pareto") if k in spec]
    if len(kinds) != 1 or set(spec) - {"fixed", "lognormal", "pareto", "min", "max"}:
        raise ValueError(f"{what}: one of fixed, lognormal or pareto, with optional min and max")
    kind = kinds[0]
    params = spec[kind] if kind != "fixed" else [spec[kind], 0]
    a, b = float(params[0]), float(params[1])
    if kind == "pareto" and (a <= 0 or b <= 0):
        raise ValueError(f"{what}: pareto needs a positive minimum and shape")
    if kind == "lognormal" and b < 0:
        raise ValueError(f"{what}: lognormal sigma must not be negative")
    return (kind, a, b, (float(spec.get("min", 0)), float(spec.get("max", 1e18))))


def _prefixes(entries, what):
    out = {4: [], 6: []}
    for entry in entries:
        net = ipaddress.ip_network(entry["prefix"], strict=False)
        out[net.version].append((net.network_address.packed, net.prefixlen, float(entry.get("weight", 1))))
    return out


def tables(profile):
    """The profile as the compiled generator's flat tables."""
    sources, destinations = _prefixes(profile["source"], "source"), _prefixes(profile["destination"], "destination")
    ipv6_share = _share(profile["ipv6_share"], "ipv6_share")
    for version in (4, 6):
        if (ipv6_share < 1 if version == 4 else ipv6_share > 0) and not (sources[version] and destinations[version]):
            raise ValueError(f"ipv6_share {ipv6_share:g} needs IPv{version} source and destination prefixes")
    protocols = []
    for p in profile["protocol"]:
        unknown = set(p) - PROTOCOL_KEYS
        if unknown:
            raise ValueError(f"[[protocol]]: unknown key {sorted(unknown)[0]!r}")
        number = int(p["number"]) if "number" in p else PROTOCOL_NUMBERS[str(p["name"]).lower()]
        protocols.append({
            "number": number, "weight": float(p.get("weight", 1)),
            "ports": _pairs(p.get("ports", [[0, 1]]), f"[[protocol]] {number} ports", 65535),
            "packets": _distribution(p["packets"], f"[[protocol]] {number} packets"),
            "bytes": _distribution(p["bytes"], f"[[protocol]] {number} bytes"),
            "duration": _distribution(p["duration"], f"[[protocol]] {number} duration"),
            "fin": _share(p.get("fin", 0), "fin"), "rst": _share(p.get("rst", 0), "rst")})
    if not protocols or len(protocols) > 8:
        raise ValueError("give 1 to 8 [[protocol]] tables")
    low, high = (int(x) for x in profile["client_ports"])
    if not 0 < low <= high <= 65535:
        raise ValueError("client_ports: [low, high] within 1..65535")
    return {"ipv6_share": ipv6_share, "src4": sources[4], "dst4": destinations[4], "src6": sources[6],
            "dst6": destinations[6], "protocols": protocols,
            "tos": _pairs(profile["tos"], "tos", 255), "vlan": _pairs(profile["vlan"], "vlan", 4095),
            "in_if": _pairs(profile["in_if"], "in_if", 2**32 - 1),
            "out_if": _pairs(profile["out_if"], "out_if", 2**32 - 1),
            "client_ports": (low, high), "both_directions": _share(profile["both_directions"], "both_directions"),
            "active_timeout": float(profile["active_timeout"])}
