"""Routes for flows without a router (--routes): each flow's output interface, next hop,
origin ASes and prefix lengths, by longest-prefix match (RouteTable, ext/meter/routes.pxi, once
per flow when it starts).

--routes FILE reads a prefix table, one route per line:

    # prefix          next hop       interface   origin AS
    10.0.0.0/8        192.0.2.1      2           64500
    2001:db8::/32     ::             eth1        64501

(interface: an ifIndex, or a name of this machine's; next hop 0.0.0.0 / :: for a directly
connected prefix; AS 0 for none), or the output of `ip route show` / `ip -6 route show`
(told apart by their "dev"/"via" words). --routes kernel reads the kernel's main table the
same way and reads it again when it changes (`ip monitor route`).
"""

import ipaddress
import socket
import subprocess
import threading

from ._meter import RouteTable
from .errors import SettingsError
from .logs import logger
from .parsers import whole_number

log = logger(__name__)

KERNEL = "kernel"
MAX_TABLE_CHARACTERS = 256 << 20      # a full Internet table as text is some 60 MiB
NOT_FORWARDED = ("blackhole", "unreachable", "prohibit", "throw")   # ip route types without an interface
SKIPPED_TYPES = ("local", "broadcast", "anycast", "multicast", "nat")


def load(source):
    """The RouteTable of --routes: a file's, or the kernel's."""
    if source == KERNEL:
        return kernel_table()
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read(MAX_TABLE_CHARACTERS + 1)        # (a device or a FIFO without end: read a bound)
        if len(text) > MAX_TABLE_CHARACTERS:
            raise SettingsError(f"--routes: {source} is larger than {MAX_TABLE_CHARACTERS >> 20} MiB")
    except OSError as e:
        raise SettingsError(f"--routes: cannot read {source}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"--routes: {source} is not a text file") from None
    return parse(text, source)


def parse(text, where):
    """A RouteTable from a prefix table or `ip route show` output; SettingsError names the line."""
    table = RouteTable()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            route = _ip_route(words) if _is_ip_route(words) else _prefix_line(words)
        except ValueError as e:
            raise SettingsError(f"--routes: {where} line {number}: {e}") from None
        if route is not None:
            table.add(*route)
    return table


def _is_ip_route(words):
    return "dev" in words or "via" in words or words[0] == "default" or words[0] in NOT_FORWARDED + SKIPPED_TYPES


def _network(text, family=None):
    if text == "default":
        text = "::/0" if family == 6 else "0.0.0.0/0"
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"bad prefix {text!r}") from None


def _number_32(text, what):
    """A whole number as written that 32 bits hold."""
    number = whole_number(text)
    if number is None or number > 0xFFFFFFFF:
        raise ValueError(f"bad {what} {text!r} (0 to 4294967295)")
    return number


def _interface(text):
    if whole_number(text) is not None:
        return _number_32(text, "interface index")
    try:
        return socket.if_nametoindex(text)
    except (OSError, ValueError):           # (ValueError: a NUL in the name)
        raise ValueError(f"no interface {text!r} here (give its ifIndex)") from None


def _prefix_line(words):
    if len(words) != 4:
        raise ValueError("expected: prefix, next hop, interface, origin AS")
    network = _network(words[0])
    try:
        hop = ipaddress.ip_address(words[1])
    except ValueError:
        raise ValueError(f"bad next hop {words[1]!r}") from None
    if hop.version != network.version:
        raise ValueError(f"next hop {hop} is not of the prefix's IP version")
    return network.version, network.network_address.packed, network.prefixlen, hop.packed, \
        _interface(words[2]), _number_32(words[3], "AS number")


def _ip_route(words, family=None):
    """One line of `ip route show`: [type] PREFIX|default [via HOP] [dev NAME] ..."""
    if words[0] in SKIPPED_TYPES:
        return None
    forwarded = words[0] not in NOT_FORWARDED
    if not forwarded:
        words = words[1:]
    if not words:
        raise ValueError("a route type without a prefix")
    if family is None and ":" in words[0]:
        family = 6
    hop = None
    if "via" in words[:-1]:
        at = words.index("via") + 1
        if words[at] in ("inet", "inet6") and at + 1 < len(words):     # (via inet6 ADDR: another family's hop)
            at += 1
        try:
            hop = ipaddress.ip_address(words[at])
        except ValueError:
            raise ValueError(f"bad next hop {words[at]!r}") from None
        if family is None and words[words.index("via") + 1] != "inet6":
            family = hop.version
    network = _network(words[0], family)
    out_if = _interface(words[words.index("dev") + 1]) if forwarded and "dev" in words[:-1] else 0
    zero = bytes(16 if network.version == 6 else 4)
    return network.version, network.network_address.packed, network.prefixlen, \
        hop.packed if hop and hop.version == network.version else zero, out_if, 0


def kernel_table():
    """The kernel's main routing table, IPv4 and IPv6, through `ip route show`."""
    table = RouteTable()
    for family in (4, 6):
        try:
            shown = subprocess.run(["ip", f"-{family}", "route", "show", "table", "main"], capture_output=True,
                                   text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SettingsError(f"--routes kernel: cannot run ip route: {e}") from None
        if shown.returncode != 0:
            raise SettingsError(f"--routes kernel: ip route: {shown.stderr.strip()}")
        for line in shown.stdout.splitlines():
            try:
                route = _ip_route(line.split(), family)
            except ValueError as e:
                log.warning("--routes kernel: %s: %s (skipped)", line.strip(), e)
                continue
            if route is not None:
                table.add(*route)
    return table


class KernelWatch:
    """Tells when the kernel's routes changed: `ip monitor route` prints a line per change."""

    def __init__(self):
        self.changed = threading.Event()
        try:
            self.process = subprocess.Popen(["ip", "monitor", "route"], stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise SettingsError(f"--routes kernel: cannot run ip monitor: {e.strerror}") from None
        threading.Thread(target=self._watch, name="routes", daemon=True).start()

    def _watch(self):
        for _ in self.process.stdout:
            self.changed.set()

    def take_change(self):
        """True once after the routes changed."""
        if not self.changed.is_set():
            return False
        self.changed.clear()
        return True

    def close(self):
        self.process.terminate()
        self.process.wait()
