"""Real NetFlow/IPFIX collectors and decoders for interoperability tests.

Nothing here knows about pyprobe: these helpers start third-party peers
(nfcapd/nfdump, tshark) or a plain UDP socket, and hand back what *they*
decoded, so tests can compare it with tests/reference.py.

    port = free_udp_port()

    with NfcapdCollector() as col:          # nfcapd -b 127.0.0.1 -p col.port -w tmpdir
        run_exporter("127.0.0.1:%d" % col.port)
    col.records()            # list of dicts, see NfcapdCollector.records
    col.sequence_failures()  # int, from `nfdump -I`

    with UdpSink() as sink:                 # plain socket on 127.0.0.1:sink.port
        run_exporter("127.0.0.1:%d" % sink.port)
    sink.datagrams           # list of bytes, in arrival order
    write_pcap(sink.datagrams, path, sink.port)
    tshark_decode(path, sink.port)   # list (per packet) of dicts, see below
    tshark_expert(path, sink.port)   # list of malformed / expert error lines

    softflowd(capture, "127.0.0.1:PORT", version=9)   # reference exporter

    parse_export(datagrams)  # independent parse of v5/v9/IPFIX framing: headers,
                             # sets, template/data record counts (for count and
                             # sequence checks that do not trust any peer)

Peers' quirks found while validating with softflowd 1.1.0 / pyprobe:
  * nfdump -o json prints times in local time without offset: PEER_ENV sets TZ=UTC;
    CSV times have only second precision (JSON has ms).  For ICMP, JSON gives
    icmp_type/icmp_code (no ports), CSV gives dp = type*256+code.
  * nfdump prints "[\nNo matching flows\n]" (not JSON) for an empty file.
  * tshark's cflow dissector stops after the header's record count (v9 count must
    include template records); it flags a data set without template as
    Warning/Malformed, but silently accepts truncated v5 / partial IPFIX messages,
    hence parse_export.
  * nfdump 1.7.1 does not count IPFIX options data records in its sequence check.
"""

import calendar
import functools
import json
import os
import sys
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import reference
from wire import free_udp_port  # noqa: F401 (the interop tests take it from here)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# the pyprobe of the Python running the tests (the venv make test built)
PYPROBE = str(Path(sys.executable).parent / "pyprobe")
CORPUS = (REPO / ".." / "shared" / "pcaps" / "corpus").resolve()

NFCAPD = shutil.which("nfcapd") or "/usr/bin/nfcapd"
NFDUMP = shutil.which("nfdump") or "/usr/bin/nfdump"
TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
SOFTFLOWD = shutil.which("softflowd") or "/usr/sbin/softflowd"

# Environment for the peers: UTC so that nfdump's JSON times (printed in local
# time without an offset) can be turned back into epoch milliseconds.
PEER_ENV = dict(os.environ, TZ="UTC", LC_ALL="C")


# --------------------------------------------------------------------------
# ports

def _udp_port_bound(port, host="127.0.0.1"):
    """True if something is bound to host:port/udp (we cannot bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


# --------------------------------------------------------------------------
# nfcapd / nfdump

def udp_rx_queue(port, host="127.0.0.1"):
    """Bytes waiting in the receive queue of the UDP socket bound to host:port
    (from /proc/net/udp), or None if no such socket is found."""
    want = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(host))[0], port)
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) > 4 and cols[1] == want:
                    return int(cols[4].split(":")[1], 16)
    except OSError:
        return None
    return None


def wait_rx_drained(port, host="127.0.0.1", timeout=10.0):
    """Wait until the socket on host:port has read every queued datagram."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = udp_rx_queue(port, host)
        if not q:
            return True
        time.sleep(0.01)
    return False


class CollectorError(RuntimeError):
    pass


def _ms_from_nfdump_time(text):
    """'2026-12-05T01:12:44.751' (UTC, as TZ=UTC makes nfdump print) -> epoch ms."""
    if "." in text:
        base, frac = text.split(".", 1)
    else:
        base, frac = text, "0"
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    ms = int((frac + "000")[:3])
    return calendar.timegm(dt.timetuple()) * 1000 + ms


class NfcapdCollector:
    """nfcapd on 127.0.0.1:port writing into a private temporary directory.

    Entering starts nfcapd and waits until its socket is bound; leaving sends
    SIGTERM and waits for nfcapd to exit (it writes its file on the way out).
    After that, records() and sequence_failures() read the files with nfdump.
    """

    def __init__(self, port=None, host="127.0.0.1", bufsize=4 * 1024 * 1024,
                 startup_timeout=10.0, settle=0.05):
        self.host = host
        self.port = port
        self.bufsize = bufsize
        self.startup_timeout = startup_timeout
        self.settle = settle          # extra seconds after the socket queue drained
        self.tmp = None
        self.flowdir = None
        self.proc = None
        self.log = ""
        self._records = None

    # -- lifecycle
    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="nfcapd-")
        self.flowdir = os.path.join(self.tmp, "flows")
        os.mkdir(self.flowdir)
        for attempt in range(5):
            port = self.port or free_udp_port(self.host)
            if self._start(port):
                self.port = port
                return self
            if self.port:
                break
        raise CollectorError("nfcapd did not start:\n" + self.log)

    def _start(self, port):
        self.logfile = os.path.join(self.tmp, "nfcapd.log")
        cmd = [NFCAPD, "-b", self.host, "-p", str(port), "-w", self.flowdir,
               "-P", os.path.join(self.tmp, "nfcapd.pid"), "-t", "3600"]
        if self.bufsize:
            cmd += ["-B", str(self.bufsize)]
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=PEER_ENV)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log = self._read_log()
                return False
            if "Startup nfcapd" in self._read_log() and _udp_port_bound(port, self.host):
                return True
            time.sleep(0.02)
        self._kill()
        self.log = self._read_log()
        return False

    def _read_log(self):
        try:
            with open(self.logfile, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        wait_rx_drained(self.port, self.host)
        time.sleep(self.settle)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._kill()
            raise CollectorError("nfcapd did not exit on SIGTERM")
        self.log = self._read_log()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self._kill()
        return False

    def cleanup(self):
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- results
    def files(self):
        out = []
        for root, _dirs, names in os.walk(self.flowdir):
            for name in names:
                if name.startswith("nfcapd.") and not name.startswith("nfcapd.current"):
                    out.append(os.path.join(root, name))
        return sorted(out)

    def _nfdump(self, args):
        if self.proc is not None and self.proc.poll() is None:
            raise CollectorError("read results after leaving the with block")
        if not self.files():
            raise CollectorError("nfcapd wrote no file; log:\n" + self.log)
        res = subprocess.run([NFDUMP, "-R", self.flowdir] + args, env=PEER_ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if res.returncode != 0:
            raise CollectorError("nfdump %s failed (%d): %s" % (
                args, res.returncode, res.stderr.decode(errors="replace")))
        return res.stdout.decode(errors="replace")

    def raw_json(self):
        """nfdump -o json, parsed: list of dicts exactly as nfdump prints them."""
        text = self._nfdump(["-o", "json"]).strip()
        # nfdump 1.7 prints "[\nNo matching flows\n]" for an empty file
        text = "\n".join(l for l in text.splitlines() if l.strip() != "No matching flows")
        if not text.strip():
            return []
        return json.loads(text)

    def records(self):
        """Flows as nfdump decoded them, one dict per record:

        src, dst (text; IPv6 as nfdump prints it, normalised with inet_pton),
        ipver, proto, sport, dport (for ICMP/ICMPv6 dport = type*256 + code,
        built from nfdump's icmp_type/icmp_code; sport 0), icmp_type, icmp_code
        (None for non-ICMP), packets, octets, first_ms, last_ms (absolute epoch
        ms), tos, tcp_flags, input, output, vlan, raw (nfdump's own dict).
        """
        if self._records is None:
            self._records = [nfdump_flow(r) for r in self.raw_json() if r.get("type", "FLOW") == "FLOW"]
        return self._records

    def csv_rows(self):
        """nfdump -o csv rows as dicts (header keys: ts te sa da sp dp pr ipkt ibyt ...).
        ts/te have only second precision; dp of ICMP is type*256+code."""
        lines = self._nfdump(["-o", "csv", "-q"]).splitlines()
        rows = []
        header = None
        for line in lines:
            if not line.strip():
                continue
            if line.startswith("ts,"):
                header = line.split(",")
                continue
            if header is None:
                # -q drops the header in some versions: use nfdump 1.7's fixed order
                header = ("ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,"
                          "sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,ismc,odmc,idmc,osmc").split(",")
            if line.startswith("Summary") or line.startswith("flows,"):
                break
            if line.startswith("No matching flows"):
                continue
            rows.append(dict(zip(header, [c.strip() for c in line.split(",")])))
        return rows

    def stat(self):
        """nfdump -I: dict of 'Key: value' lines."""
        out = {}
        for line in self._nfdump(["-I"]).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip()
        return out

    def sequence_failures(self):
        return int(self.stat()["Sequence failures"])


# --------------------------------------------------------------------------
# raw UDP sink

def nfdump_flow(r):
    """One flow of nfdump -o json as a record dict (see NfcapdCollector.records)."""
    if "src4_addr" in r:
        ipver, src, dst = 4, r["src4_addr"], r["dst4_addr"]
        src = socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, src))
        dst = socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, dst))
    else:
        ipver, src, dst = 6, r["src6_addr"], r["dst6_addr"]
        src = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, src))
        dst = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, dst))
    proto = int(r.get("proto", 0))
    icmp_type = r.get("icmp_type")
    icmp_code = r.get("icmp_code")
    if icmp_type is not None:
        sport, dport = 0, int(icmp_type) * 256 + int(icmp_code or 0)
    else:
        sport, dport = int(r.get("src_port", 0)), int(r.get("dst_port", 0))
    return {
        "ipver": ipver, "src": src, "dst": dst, "proto": proto,
        "sport": sport, "dport": dport,
        "icmp_type": icmp_type, "icmp_code": icmp_code,
        "packets": int(r.get("in_packets", 0)), "octets": int(r.get("in_bytes", 0)),
        "first_ms": _ms_from_nfdump_time(r["first"]),
        "last_ms": _ms_from_nfdump_time(r["last"]),
        "tos": int(r.get("src_tos", 0)),
        "tcp_flags": r.get("tcp_flags"),
        "input": int(r.get("input_snmp", 0)), "output": int(r.get("output_snmp", 0)),
        "vlan": int(r.get("src_vlan", 0)), "direction": int(r.get("direction", 0)),
        "raw": r,
    }


def nfdump_flows(flowdir):
    """Every flow nfdump reads from a directory that nfcapd wrote, as nfdump_flow() makes them."""
    out = subprocess.run([NFDUMP, "-R", str(flowdir), "-o", "json"], env=PEER_ENV, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    out = "\n".join(line for line in out.splitlines() if line.strip() != "No matching flows")
    return [nfdump_flow(r) for r in json.loads(out or "[]") if r.get("type", "FLOW") == "FLOW"]


class UdpSink:
    """A plain UDP socket on 127.0.0.1:port collecting every datagram.

    A thread reads while the with block runs; on leaving, it keeps reading
    until no datagram arrived for `idle` seconds.
    """

    def __init__(self, host="127.0.0.1", port=0, idle=0.15, bufsize=8 * 1024 * 1024):
        self.host = host
        self.idle = idle
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        except OSError:
            pass
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self.datagrams = []
        self.senders = []
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                if self._stop.is_set() and time.monotonic() - self._last >= self.idle:
                    return
                continue
            except OSError:
                return
            self._last = time.monotonic()
            self.datagrams.append(data)
            self.senders.append(addr)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._last = max(self._last, time.monotonic())
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return False


def _ip_checksum(header):
    if len(header) % 2:
        header += b"\0"
    s = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write_pcap(datagrams, path, port, sport=None, start=1_700_000_000.0):
    """Write datagrams as Ethernet/IPv4/UDP 127.0.0.1:sport -> 127.0.0.1:port (pcap, DLT 1).
    IPv4 header checksum is computed, the UDP checksum is 0 (none)."""
    sport = sport or 50000
    lo = socket.inet_aton("127.0.0.1")
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, payload in enumerate(datagrams):
            udp = struct.pack("!HHHH", sport, port, 8 + len(payload), 0) + payload
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0x4000,
                             64, 17, 0, lo, lo)
            ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            ts = start + i * 0.001
            sec = int(ts)
            usec = int(round((ts - sec) * 1e6))
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            f.write(frame)


# --------------------------------------------------------------------------
# tshark

def _tshark(args, timeout=300):
    res = subprocess.run([TSHARK, "-n"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=PEER_ENV, timeout=timeout)
    return res


def _pairs_hook(pairs):
    """Keep duplicate JSON keys: a repeated key's values become a list."""
    out = {}
    for k, v in pairs:
        if k in out:
            if isinstance(out[k], list) and getattr(out[k], "_dup", False):
                out[k].append(v)
            else:
                lst = _DupList([out[k], v])
                out[k] = lst
        else:
            out[k] = v
    return out


class _DupList(list):
    _dup = True


def tshark_json(pcap, port):
    """tshark -T json of the cflow layer, one parsed object per frame."""
    res = _tshark(["-r", str(pcap), "-d", "udp.port==%d,cflow" % port, "-T", "json",
                   "-J", "cflow"])
    if res.returncode != 0:
        raise RuntimeError("tshark failed: %s" % res.stderr.decode(errors="replace"))
    return json.loads(res.stdout.decode(errors="replace") or "[]", object_pairs_hook=_pairs_hook)


# tshark field -> our key; several tshark names per key (v5 vs v9 vs IPFIX, 32/64-bit).
_FIELD_MAP = {
    "cflow.srcaddr": "src", "cflow.srcaddrv6": "src",
    "cflow.dstaddr": "dst", "cflow.dstaddrv6": "dst",
    "cflow.protocol": "proto",
    "cflow.srcport": "sport", "cflow.dstport": "dport",
    "cflow.packets": "packets", "cflow.packets64": "packets",
    "cflow.octets": "octets", "cflow.octets64": "octets",
    "cflow.tos": "tos", "cflow.tcpflags": "tcp_flags", "cflow.tcpflags16": "tcp_flags",
    "cflow.icmp_type": "icmp_type_code", "cflow.icmp_type_code_ipv4": "icmp_type_code",
    "cflow.icmp_type_code_ipv6": "icmp_type_code",
    "cflow.timestart": "start", "cflow.timeend": "end",
    "cflow.abstimestart": "start", "cflow.abstimeend": "end",
    "cflow.inputint": "input", "cflow.outputint": "output",
    "cflow.ip_version": "ipver", "cflow.vlanid": "vlan", "cflow.srcvlan": "vlan",
    "cflow.flow_end_reason": "end_reason",
    "cflow.ttl_min": "min_ttl", "cflow.ttl_max": "max_ttl",
    "cflow.permanent_packets": "packets_total", "cflow.permanent_octets": "octets_total",
}

_HEADER_FIELDS = ("cflow.version", "cflow.count", "cflow.sysuptime", "cflow.unix_secs",
                  "cflow.unix_nsecs", "cflow.sequence", "cflow.source_id", "cflow.od_id",
                  "cflow.len", "cflow.exporttime", "cflow.timestamp", "cflow.samplingmode",
                  "cflow.sampling_interval", "cflow.engine_type", "cflow.engine_id")


def _int(v):
    if isinstance(v, list):
        v = v[0]
    try:
        return int(v, 0) if isinstance(v, str) else int(v)
    except ValueError:
        return v


def _find_flows(node, out):
    """Collect the dicts that carry a flow's packet counter (one per data record)."""
    if isinstance(node, dict):
        if any(k in node for k in ("cflow.packets", "cflow.packets64", "cflow.permanent_packets")):
            out.append(node)
            return
        for k, v in node.items():
            _find_flows(v, out)
    elif isinstance(node, list):
        for v in node:
            _find_flows(v, out)


def _find_sets(node, sets, templates):
    """(flowset_id, flowset_length) of every (Flow)Set, and every template id, in order."""
    if isinstance(node, dict):
        if "cflow.flowset_length" in node:
            sets.append((_int(node.get("cflow.flowset_id", -1)), _int(node["cflow.flowset_length"])))
        if "cflow.template_id" in node:
            templates.append(_int(node["cflow.template_id"]))
        for v in node.values():
            if isinstance(v, (dict, list)):
                _find_sets(v, sets, templates)
    elif isinstance(node, list):
        for v in node:
            _find_sets(v, sets, templates)


def _flatten(node, out):
    """All leaf 'cflow.xxx' -> value pairs beneath node (first wins)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k.startswith("cflow.") and not isinstance(v, (dict,)) and not (
                    isinstance(v, list) and v and isinstance(v[0], dict)):
                out.setdefault(k, v)
            if isinstance(v, (dict, list)):
                _flatten(v, out)
    elif isinstance(node, list):
        for v in node:
            _flatten(v, out)
    return out


def norm_addr(text):
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(fam, socket.inet_pton(fam, text))
        except (OSError, ValueError):
            pass
    return text


def _ms_from_rel(text):
    """'560465.797000000' (seconds) -> 560465797 (ms, exact decimal arithmetic)."""
    sec, _, frac = str(text).partition(".")
    return int(sec) * 1000 + int((frac + "000")[:3])


_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}


def _ms_from_abs(text):
    """tshark absolute time 'Nov 25, 2026 10:03:44.123000000 UTC' -> epoch ms."""
    mon, day, year, clock = text.replace(",", "").split()[:4]
    hms, _, frac = clock.partition(".")
    h, m, sec = (int(x) for x in hms.split(":"))
    dt = datetime(int(year), _MONTHS[mon], int(day), h, m, sec)
    return calendar.timegm(dt.timetuple()) * 1000 + int((frac + "000")[:3])


def _abs_times(flow, fields, header):
    """start_ms / end_ms (absolute epoch ms) as a collector computes them."""
    if "cflow.abstimestart" in fields:
        flow["start_ms"] = _ms_from_abs(fields["cflow.abstimestart"])
        if "cflow.abstimeend" in fields:
            flow["end_ms"] = _ms_from_abs(fields["cflow.abstimeend"])
        return
    if "cflow.timestart" not in fields or "cflow.sysuptime" not in header:
        return
    uptime = _ms_from_rel(header["cflow.sysuptime"])
    secs = _int(header.get("cflow.unix_secs", header.get("cflow.exporttime", 0)))
    nsecs = _int(header.get("cflow.unix_nsecs", 0)) if "cflow.unix_nsecs" in header else 0
    boot = secs * 1000 + nsecs // 1_000_000 - uptime
    flow["start_ms"] = boot + _ms_from_rel(fields["cflow.timestart"])
    if "cflow.timeend" in fields:
        flow["end_ms"] = boot + _ms_from_rel(fields["cflow.timeend"])


def tshark_decode(pcap, port):
    """Decode a pcap of export datagrams with tshark's cflow dissector.

    Returns one dict per frame: {"frame": n, "header": {cflow.version: ..., ...},
    "flows": [flow, ...], "sets": [(set id, set length), ...] in the order tshark
    dissected them (it stops after the header's count of records), "templates":
    [template id, ...]} where each flow has, as tshark decoded it, src, dst,
    proto, sport, dport, packets, octets, plus where present ipver, tos,
    tcp_flags, icmp_type_code, start, end (as tshark prints them), start_ms,
    end_ms (absolute epoch ms, computed from the header for v5/v9), input,
    output, vlan, end_reason, min_ttl, max_ttl, and
    "fields" (every cflow.* leaf of that record as tshark printed it).
    """
    frames = []
    for n, pkt in enumerate(tshark_json(pcap, port), 1):
        layers = pkt.get("_source", {}).get("layers", {})
        cflow = layers.get("cflow")
        if isinstance(cflow, list):     # more than one cflow PDU in a frame: not expected
            cflow = {"_multi": cflow}
        if cflow is None:
            frames.append({"frame": n, "header": {}, "flows": [], "missing": True})
            continue
        header = {k: cflow[k] for k in _HEADER_FIELDS if k in cflow}
        header.update(_flatten({k: v for k, v in cflow.items() if k == "cflow.timestamp_tree"}, {}))
        sets, templates = [], []
        _find_sets(cflow, sets, templates)
        nodes = []
        _find_flows(cflow, nodes)
        flows = []
        for node in nodes:
            fields = _flatten(node, {})
            flow = {"fields": fields}
            for tname, key in _FIELD_MAP.items():
                if tname in fields and key not in flow:
                    flow[key] = fields[tname]
            for key in ("proto", "sport", "dport", "packets", "octets", "packets_total", "octets_total", "tos", "tcp_flags",
                        "icmp_type_code", "input", "output", "ipver", "vlan", "end_reason", "min_ttl", "max_ttl"):
                if key in flow:
                    flow[key] = _int(flow[key])
            for key in ("src", "dst"):
                if key in flow:
                    flow[key] = norm_addr(flow[key])
            if "icmp_type_code" not in flow and "cflow.icmp_ipv6_type" in fields:
                flow["icmp_type_code"] = (_int(fields["cflow.icmp_ipv6_type"]) * 256
                                          + _int(fields.get("cflow.icmp_ipv6_code", 0)))
            if "icmp_type_code" not in flow and "cflow.icmp_ipv4_type" in fields:
                flow["icmp_type_code"] = (_int(fields["cflow.icmp_ipv4_type"]) * 256
                                          + _int(fields.get("cflow.icmp_ipv4_code", 0)))
            _abs_times(flow, fields, header)
            if flow.get("proto") in (1, 58) and "icmp_type_code" in flow:
                # IPFIX exporters may carry ICMP type/code only in icmpTypeCode*
                flow.setdefault("dport", flow["icmp_type_code"])
                flow.setdefault("sport", 0)
            flows.append(flow)
        frames.append({"frame": n, "header": header, "flows": flows,
                       "sets": sets, "templates": templates})
    return frames


EXPERT_WARN = 0x00600000     # _ws.expert.severity: chat 0x200000, note 0x400000, warn 0x600000, error 0x800000


def tshark_expert(pcap, port, min_severity=EXPERT_WARN):
    """Malformed packets and expert items (severity >= warning by default) that
    tshark reports for the pcap.

    Returns a list of strings, empty when clean: one line per expert item
    ("frame N severity 0x.. group 0x..: message"), any frame tshark marks
    _ws.malformed, and tshark's own errors (stderr other than the root notice).
    (tshark's cflow dissector reports e.g. "Data (N bytes), no template found"
    as Warning/Malformed; `-z expert` prints nothing with -q in 4.0, so the
    per-frame expert fields are read instead.)
    """
    problems = []
    res = _tshark(["-r", str(pcap), "-d", "udp.port==%d,cflow" % port,
                   "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|",
                   "-e", "frame.number", "-e", "_ws.expert.severity", "-e", "_ws.expert.group",
                   "-e", "_ws.expert.message", "-e", "_ws.malformed"])
    err = [l for l in res.stderr.decode(errors="replace").splitlines()
           if l.strip() and "could be dangerous" not in l]
    if res.returncode != 0 or err:
        problems.append("tshark exit %d: %s" % (res.returncode, " / ".join(err)))
    for line in res.stdout.decode(errors="replace").splitlines():
        cols = line.split("\t")
        cols += [""] * (5 - len(cols))
        frame, sev, grp, msg, malformed = cols[:5]
        sevs = sev.split("|") if sev else []
        grps = grp.split("|") if grp else []
        msgs = msg.split("|") if msg else []
        for i, sv in enumerate(sevs):
            try:
                level = int(sv, 0)
            except ValueError:
                level = EXPERT_WARN
            if level >= min_severity:
                problems.append("frame %s severity 0x%x group %s: %s" % (
                    frame, level, grps[i] if i < len(grps) else "?",
                    msgs[i] if i < len(msgs) else "?"))
        if malformed:
            problems.append("frame %s: _ws.malformed (%s)" % (frame, msg))
    return problems


def pyprobe_to_tshark(capture, version, tmp_path, *args):
    """pyprobe -r CAPTURE -v VERSION ARGS exported to a sink; its datagrams, which tshark
    must find nothing wrong with (tshark_expert), decoded: (flows, datagrams sent)."""
    with UdpSink() as sink:
        res = subprocess.run([PYPROBE, "-r", str(capture), "-n", "127.0.0.1:%d" % sink.port, "-v", str(version),
                              "-q", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    pcap = tmp_path / "export.pcap"
    write_pcap(sink.datagrams, pcap, sink.port)
    assert tshark_expert(pcap, sink.port) == []
    return [f for frame in tshark_decode(pcap, sink.port) for f in frame["flows"]], len(sink.datagrams)


def pyprobe_record_to_tshark(capture, version, tmp_path, config, name, *args):
    """pyprobe_to_tshark with the record `name` of a config file of this text ([[record]])."""
    path = tmp_path / "record.toml"
    path.write_text(config)
    return pyprobe_to_tshark(capture, version, tmp_path, "-f", str(path), "-T", name, *args)


# --------------------------------------------------------------------------
# softflowd, the reference exporter

def softflowd(capture, target, version=9, extra=(), timeout=300):
    """Run softflowd -r capture -n target -v version in the foreground; returns CompletedProcess."""
    tmp = tempfile.mkdtemp(prefix="softflowd-")
    try:
        cmd = [SOFTFLOWD, "-r", str(capture), "-n", target, "-v", str(version), "-d",
               "-c", "none", "-p", os.path.join(tmp, "pid"), "-m", "100000"] + list(extra)
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# a plain decoder of export datagrams' framing (headers, sets, record counts)

def parse_export(datagrams):
    """Decode the framing of a stream of v5/v9/IPFIX datagrams (in order).

    Returns one dict per datagram: version, length (bytes received), and
      v5:   count, sys_uptime, unix_secs, unix_nsecs, sequence, engine_type,
            engine_id, sampling, records (count of 48-byte records present)
      v9:   count, sys_uptime, unix_secs, sequence, source_id
      v10:  msg_length, export_time, sequence, domain
      v9/v10: sets [(set id, set length)], template_records, options_template_records,
            data_records {template id: n}, options_data_records {template id: n},
            padding {set id: trailing bytes}, unknown_sets [ids without a template],
            errors [framing problems found]
    Templates are remembered across datagrams (per source id / domain).
    """
    templates = {}
    out = []
    for d in datagrams:
        m = {"length": len(d), "errors": []}
        out.append(m)
        if len(d) < 4:
            m["version"] = None
            m["errors"].append("datagram shorter than 4 bytes")
            continue
        version = struct.unpack("!H", d[:2])[0]
        m["version"] = version
        if version == 5:
            if len(d) < 24:
                m["errors"].append("v5 header truncated")
                continue
            (_, m["count"], m["sys_uptime"], m["unix_secs"], m["unix_nsecs"], m["sequence"],
             m["engine_type"], m["engine_id"], m["sampling"]) = struct.unpack("!HHIIIIBBH", d[:24])
            m["records"], rest = divmod(len(d) - 24, 48)
            if rest:
                m["errors"].append("v5 length %d is not 24 + 48*n" % len(d))
            if m["records"] != m["count"]:
                m["errors"].append("v5 count %d but %d records" % (m["count"], m["records"]))
            continue
        if version == 9:
            if len(d) < 20:
                m["errors"].append("v9 header truncated")
                continue
            (_, m["count"], m["sys_uptime"], m["unix_secs"], m["sequence"],
             m["source_id"]) = struct.unpack("!HHIIII", d[:20])
            domain, off, end = ("v9", m["source_id"]), 20, len(d)
            tmpl_set, opt_set = 0, 1
        elif version == 10:
            if len(d) < 16:
                m["errors"].append("IPFIX header truncated")
                continue
            (_, m["msg_length"], m["export_time"], m["sequence"],
             m["domain"]) = struct.unpack("!HHIII", d[:16])
            if m["msg_length"] != len(d):
                m["errors"].append("IPFIX length %d != datagram %d" % (m["msg_length"], len(d)))
            domain, off, end = ("v10", m["domain"]), 16, min(len(d), m["msg_length"])
            tmpl_set, opt_set = 2, 3
        else:
            m["errors"].append("unknown version %d" % version)
            continue
        m.update(sets=[], template_records=0, options_template_records=0,
                 data_records={}, options_data_records={}, padding={}, unknown_sets=[])
        known = templates.setdefault(domain, {})
        while off < end:
            if end - off < 4:
                m["errors"].append("%d stray bytes after the last set" % (end - off))
                break
            sid, slen = struct.unpack("!HH", d[off:off + 4])
            if slen < 4 or off + slen > end:
                m["errors"].append("set %d length %d overruns the datagram (%d left)" % (sid, slen, end - off))
                break
            m["sets"].append((sid, slen))
            body = d[off + 4:off + slen]
            off += slen
            if sid in (tmpl_set, opt_set):
                p = 0
                while len(body) - p >= 4:
                    if sid == tmpl_set:
                        tid, nfields = struct.unpack("!HH", body[p:p + 4])
                        p += 4
                        scope = 0
                        if tid == 0 and nfields == 0:
                            break      # padding
                    elif version == 9:
                        tid, scope_len, opt_len = struct.unpack("!HHH", body[p:p + 6])
                        p += 6
                        if tid == 0 and scope_len == 0:
                            break
                        nfields, scope = (scope_len + opt_len) // 4, scope_len // 4
                    else:
                        if len(body) - p < 6:
                            break
                        tid, nfields, scope = struct.unpack("!HHH", body[p:p + 6])
                        p += 6
                    fields = []
                    for _ in range(nfields):
                        if len(body) - p < 4:
                            m["errors"].append("template %d truncated" % tid)
                            break
                        ftype, flen = struct.unpack("!HH", body[p:p + 4])
                        p += 4
                        if version == 10 and ftype & 0x8000:
                            p += 4
                            ftype &= 0x7FFF
                        fields.append((ftype, flen))
                    known[tid] = {"fields": fields, "scope": scope,
                                  "options": sid == opt_set,
                                  "size": sum(f[1] for f in fields)}
                    if sid == tmpl_set:
                        m["template_records"] += 1
                    else:
                        m["options_template_records"] += 1
                if len(body) - p:
                    m["padding"][sid] = len(body) - p
            elif sid >= 256:
                t = known.get(sid)
                if t is None or t["size"] == 0:
                    m["unknown_sets"].append(sid)
                    continue
                n, pad = divmod(len(body), t["size"])
                key = "options_data_records" if t["options"] else "data_records"
                m[key][sid] = m[key].get(sid, 0) + n
                if pad:
                    m["padding"][sid] = pad
            else:
                m["errors"].append("reserved set id %d" % sid)
        if version == 9:
            total = (m["template_records"] + m["options_template_records"]
                     + sum(m["data_records"].values()) + sum(m["options_data_records"].values()))
            m["records"] = total
        else:
            m["records"] = sum(m["data_records"].values()) + sum(m["options_data_records"].values())
    return out


# -- shared by the collector tests: reporting and time checks --------------------------

def fmt(items, limit=10):
    """A few items of a problem list, one a line, sorted, with how many more."""
    items = sorted(items, key=str)
    text = "\n  ".join(str(i) for i in items[:limit])
    more = "" if len(items) <= limit else "\n  ... %d more" % (len(items) - limit)
    return "\n  " + text + more


def time_problems(firsts, lasts, first, last, decoder):
    """Per key, the earliest decoded first and latest decoded last (ms) must be the key's
    first and last packet times; returns problem lines."""
    problems = []
    bad_first = [(k, "expected", first[k], decoder, firsts[k], "diff ms", firsts[k] - first[k])
                 for k in firsts if k in first and firsts[k] != first[k]]
    bad_last = [(k, "expected", last[k], decoder, lasts[k], "diff ms", lasts[k] - last[k])
                for k in lasts if k in last and lasts[k] != last[k]]
    if bad_first:
        problems.append("%d keys whose earliest first (ms) is not the key's first packet time:%s"
                        % (len(bad_first), fmt(bad_first)))
    if bad_last:
        problems.append("%d keys whose latest last (ms) is not the key's last packet time:%s"
                        % (len(bad_last), fmt(bad_last)))
    return problems


@functools.lru_cache(maxsize=None)
def ground_truth(path):
    """Reference totals and, per key, first/last packet time (running max clock, ms truncated)."""
    totals = reference.totals(path).totals
    first, last = {}, {}
    now = None
    for t, decoded in reference.walk(path):
        now = t if now is None else max(now, t)
        if decoded is None:
            continue
        key = decoded[:6]
        first.setdefault(key, now // 1000)
        last[key] = now // 1000
    return totals, first, last
