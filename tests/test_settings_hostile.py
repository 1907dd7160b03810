"""Hostile flags, config files and route tables: each is refused at start in one line that
names what is wrong, with exit 2 (never a traceback, a signal or a silent exit 0)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PYPROBE = os.path.join(os.path.dirname(sys.executable), "pyprobe")
ANDROID = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")
PROBE = [PYPROBE, "-r", ANDROID, "-q"]


def run(args, files=(), tmp_path=None, **kw):
    """Run with files [(name, bytes)] written to tmp_path first; {name} in args is its path."""
    paths = {}
    for name, data in files:
        path = tmp_path / name
        path.write_bytes(data)
        paths[name] = str(path)
    for name, path in paths.items():
        args = [a.replace("{" + name + "}", path) for a in args]
    return subprocess.run(args, capture_output=True, timeout=30, **kw)


def assert_refused(proc, *words):
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


REFUSED = [
    # (what, args, files, words the line must hold)
    ("config not UTF-8", PROBE + ["-f", "{b.toml}"], [("b.toml", b"\xff\xfe")], ["b.toml", "not UTF-8"]),
    ("config not UTF-8 further in", PROBE + ["-f", "{b.toml}"], [("b.toml", b"[probe]\nmax_flows = 5\n\xff = 1\n")],
     ["not UTF-8", "byte 22"]),
    ("profile not UTF-8", [PYPROBE, "generate", "--count", "1", "--profile", "{p.toml}"], [("p.toml", b"\xff\xfe")],
     ["p.toml", "not UTF-8"]),
    ("an integer of 5,000 digits", PROBE + ["-f", "{b.toml}"], [("b.toml", b"[probe]\nmax_flows = " + b"9" * 5000)],
     ["b.toml", "digits"]),
    ("a prefix length not in ASCII digits", PROBE + ["-f", "{r.toml}", "-T", "r"],
     [("r.toml", '[[record]]\nname = "r"\nmatch = ["sourceIPv4Address/²"]\ncollect = ["packetDeltaCount"]\n'.encode())],
     ["prefix length is a number from 0 to 32"]),
    ("TOML nested 5,000 deep", PROBE + ["-f", "{n.toml}"], [("n.toml", b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n")],
     ["nested too deeply"]),
    ("a config without end", PROBE + ["-f", "/dev/zero"], [], ["/dev/zero", "larger than 1 MiB"]),
    ("a profile without end", [PYPROBE, "generate", "--count", "1", "--profile", "/dev/zero"], [], ["larger than"]),
    ("[[timeouts]] for [timeouts]", [PYPROBE, "generate", "--count", "1", "-f", "{c.toml}"],
     [("c.toml", b"[[timeouts]]\nx = 1\n")], ["[timeouts] is a table, not [[timeouts]]"]),
    ("[[probe]] for [probe]", PROBE + ["-f", "{c.toml}"], [("c.toml", b"[[probe]]\ntracking = 'nonsense'\n")],
     ["[probe] is a table, not [[probe]]"]),
    ("a path with a newline", PROBE + ["-f", "/nonexistent/a\nb"], [], ["a\\nb"]),
    ("a control socket path with a newline", [PYPROBE, "ctl", "-c", "/nonexistent/a\nb", "statistics"], [],
     ["a\\nb"]),
    ("ctl --timeout=--", [PYPROBE, "ctl", "-c", "/nonexistent/s", "--timeout=--", "statistics"], [], ["--timeout"]),
    ("a port in digits other than ASCII", PROBE + ["-n", "127.0.0.1:²"], [], ["-n: bad collector address"]),
    ("an interface index in digits other than ASCII", [PYPROBE, "-i", "²:lo"], [], ["no such interface: ²:lo"]),
    ("a metrics port in digits other than ASCII", PROBE + ["--metrics", "²"], [], ["--metrics"]),
    ("a metrics port with a sign", PROBE + ["--metrics", "+9100"], [], ["--metrics"]),
    ("an interface name that is not UTF-8", [PYPROBE, "-i", "x\udc80y"], [], ["no such interface: x\\udc80y"]),
    ("a count of 100,000 digits", [PYPROBE, "generate", "--count", "1", "--exporters", "9" * 100_000], [],
     ["--exporters", "[...]"]),
    ("a filter word that is not UTF-8", PROBE + ["\udcff"], [], ["filter: bad filter", "not UTF-8"]),
    ("update below a millisecond", PROBE + ["--cache", "permanent", "--update", "0.0000001"], [], ["--update"]),
    ("update too long", PROBE + ["--cache", "permanent", "--update", "9300000000000"], [], ["--update"]),
    ("monitor update below a millisecond", PROBE + ["-f", "{m.toml}"],
     [("m.toml", b'[[monitor]]\nname = "a"\ncache = "permanent"\nupdate = "0.0001"\n[[monitor]]\nname = "b"\n')],
     ["monitor", "update"]),
    ("a duration of 400 digits", PROBE + ["-t", "udp=" + "9" * 400], [], ["-t", "bad duration"]),
    ("start time nan", [PYPROBE, "generate", "--count", "1", "--start-time", "nan"], [], ["--start-time"]),
    ("start time inf", [PYPROBE, "generate", "--count", "1", "--start-time", "inf"], [], ["--start-time"]),
    ("start time 1e17", [PYPROBE, "generate", "--count", "1", "--start-time", "1e17"], [], ["--start-time"]),
    ("route interface over 32 bits", PROBE + ["--routes", "{r}"], [("r", b"10.0.0.0/8 0.0.0.0 99999999999 1\n")],
     ["line 1", "interface index"]),
    ("ip route dev over 32 bits", PROBE + ["--routes", "{r}"], [("r", b"10.0.0.0/8 dev 99999999999\n")],
     ["line 1", "interface index"]),
    ("route AS not ASCII digits", PROBE + ["--routes", "{r}"], [("r", "10.0.0.0/8 0.0.0.0 1 ²\n".encode())],
     ["line 1", "AS number"]),
    ("export version inf", PROBE + ["-n", "127.0.0.1:9", "-f", "{v.toml}"], [("v.toml", b"[export]\nversion = inf\n")],
     ["[export] version", "bad export version"]),
    ("collector version inf", PROBE + ["-f", "{v.toml}"],
     [("v.toml", b"[[collector]]\naddress = '127.0.0.1:9'\nversion = inf\n")], ["[[collector]]", "bad export version"]),
    ("collector version 9.5", PROBE + ["-f", "{v.toml}"],
     [("v.toml", b"[[collector]]\naddress = '127.0.0.1:9'\nversion = 9.5\n")], ["bad export version"]),
    ("IPv4 link-local collector", PROBE + ["-n", "169.254.1.1:2055"], [], ["169.254.1.1", "link-local"]),
    ("IPv6 link-local collector without its interface", PROBE + ["-n", "[fe80::1]:2055"], [], ["%IFACE"]),
    ("link-scoped multicast group without its interface", PROBE + ["-n", "[ff02::1]:2055"], [], ["%IFACE"]),
    ("multicast over TCP", PROBE + ["-n", "239.1.1.1:4739", "-v", "10", "-P", "tcp"], [], ["multicast", "UDP"]),
    ("multicast TTL 0", PROBE + ["-n", "239.1.1.1:2055", "--multicast-ttl", "0"], [], ["--multicast-ttl"]),
    ("a monitor's collector without an address", PROBE + ["-f", "{m.toml}"],
     [("m.toml", b'[[monitor]]\nname = "a"\n[[monitor.collector]]\nversion = 9\n')],
     ["[[monitor.collector]] of monitor 'a' without an address"]),
    ("exporter address of the other IP version", [PYPROBE, "generate", "--count", "1", "-n", "127.0.0.1:9",
                                                  "--exporter-address", "::1/120"], [], ["different IP versions"]),
]


@pytest.mark.parametrize("what, args, files, words", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_in_one_line(tmp_path, what, args, files, words):
    assert_refused(run(args, files, tmp_path), *words)
    assert len(run(args, files, tmp_path).stderr) < 500


def test_records_that_standard_output_cannot_take_are_one_line(tmp_path):
    for extra in ([], ["--json"]):
        with open("/dev/full", "wb") as full:
            proc = subprocess.run(PROBE[:-1] + extra, stdout=full, stderr=subprocess.PIPE, timeout=30)
        assert proc.returncode == 2 and proc.stderr.decode().splitlines() == [
            "pyprobe: cannot write the records to standard output: No space left on device"]


class Namespace:
    """A network namespace of the test's own with only its loopback, multicast routed onto it."""

    def __init__(self):
        self.name = f"ppmc{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.sh("ip", "link", "set", "lo", "up")
        self.sh("ip", "route", "add", "224.0.0.0/4", "dev", "lo")

    def sh(self, *args, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name, *args], check=True, capture_output=True,
                              timeout=30, **kw)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name])


RECEIVER = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("239.7.7.7", 2055))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton("239.7.7.7"),
                                                                        socket.inet_aton("127.0.0.1")))
IP_RECVTTL, IP_TTL = 12, 2     # (Linux; the socket module names neither)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
s.settimeout(20)
print("ready", flush=True)
data, ancillary, _, _ = s.recvmsg(65535, 64)
ttl = [struct.unpack("i", d[:4])[0] for level, kind, d in ancillary if kind == IP_TTL]
print(len(data), struct.unpack("!H", data[:2])[0], ttl[0], flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2 for a namespace")
@pytest.mark.parametrize("ttl", [None, "5"])
def test_a_multicast_collector_receives_with_the_ttl_asked(ttl):
    ns = Namespace()
    try:
        receiver = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", RECEIVER],
                                    stdout=subprocess.PIPE, text=True)
        assert receiver.stdout.readline().strip() == "ready"
        ns.sh(*PROBE, "-n", "239.7.7.7:2055", "-v", "10", *(["--multicast-ttl", ttl] if ttl else []))
        size, version, got_ttl = map(int, receiver.stdout.readline().split())
        receiver.wait(timeout=10)
        assert version == 10 and size > 16 and got_ttl == int(ttl or 1)
    finally:
        ns.close()


def test_routes_without_end_are_refused(tmp_path):
    """--routes /dev/zero read without bound (3 GiB in 3 s)."""
    proc = subprocess.run(PROBE + ["--routes", "/dev/zero"], capture_output=True, timeout=60)
    assert_refused(proc, "--routes", "larger than")
