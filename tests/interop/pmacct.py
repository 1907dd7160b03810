"""pmacct's nfacctd as a NetFlow v5/v9/IPFIX collector for interoperability tests.

    with NfacctdCollector() as col:           # nfacctd on 127.0.0.1:col.port
        run_exporter("127.0.0.1:%d" % col.port)
    col.totals()   # {(ipver, src, dst, proto, sport, dport): [packets, octets]}

nfacctd runs in the foreground with one `print` plugin writing CSV (numeric
protocols) to a file in a private temporary directory, aggregated on
src_host, dst_host, proto, src_port, dst_port.  The file is appended to at
every refresh and once more when nfacctd exits (SIGINT makes the plugin purge
its cache), so totals() sums the rows per key.

Knowing when nfacctd has *read* everything the exporter sent: on leaving the
with block a marker NetFlow v5 datagram (one flow with a key made up here,
from another source port) is sent to nfacctd; the loopback socket is read in
order, so once the marker's row shows up in the output file every earlier
datagram has gone through nfacctd's core into the plugin.  Only then is
SIGINT sent.  The marker row is removed from totals().

What pmacct itself does to the keys (nfacctd 1.7.7, as observed here and checked
against softflowd and nfdump in tests/interop/test_nfacctd.py):
  * src_port / dst_port are copied from the record's transport port fields
    (L4_SRC_PORT 7 / L4_DST_PORT 11, IPFIX source/destinationTransportPort) for
    TCP, UDP, ICMP and ICMPv6 alike; the ICMP type/code fields (32, 139) are not
    read.  So an exporter that puts type*256+code into L4_DST_PORT (Cisco style:
    pyprobe v5/v9/IPFIX, softflowd v5) shows it as dst_port, and one whose ICMP
    template has no port fields (softflowd's IPFIX) shows 0.  (Older pmacct
    releases zeroed ports for everything but TCP/UDP.)  pmacct_key() refuses
    protocols other than TCP/UDP/ICMP/ICMPv6 with non-zero ports (SCTP, UDP-Lite,
    DCCP): how 1.7.7 reports those was not checked.
  * IPv6 addresses are printed in pmacct's own text form; totals() normalises
    them with inet_pton/inet_ntop.
  * nfacctd 1.7.7 stops reading a NetFlow v9 datagram after `count` flowsets
    (it treats the header count as a flowset count).  softflowd puts the
    number of *data records* in count, so the data flowsets of softflowd's
    first v9 datagram (which starts with five template flowsets) are
    skipped.  Use softflowd with -v 10 or -v 5 to validate this harness.
"""

import csv
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time


from collectors import free_udp_port  # noqa: E402

NFACCTD = shutil.which("nfacctd") or "/usr/sbin/nfacctd"

# A flow key no capture of the corpus uses (documentation ranges, both ports 65535, UDP).
MARKER_SRC = "198.51.100.254"
MARKER_DST = "203.0.113.254"
MARKER_PORT = 65535
MARKER_KEY = (4, MARKER_SRC, MARKER_DST, 17, MARKER_PORT, MARKER_PORT)
PROBE_PORT = 65534
PROBE_KEY = (4, MARKER_SRC, MARKER_DST, 17, PROBE_PORT, PROBE_PORT)


# Log lines reporting a problem (nfacctd 1.7.7's texts): levels ERROR/WARN, and at INFO
# "unable to read ...", "... (malformed)", "(incomplete ...)", "discarding ...",
# "expecting flow 'N' but received 'M'".
LOG_ENTRY = re.compile(r"(?=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ )")
PROBLEM = re.compile(r"\b(ERROR|WARN)\b|unable to|malformed|incomplete|discard|expecting flow", re.I)


class NfacctdError(RuntimeError):
    pass


PORT_PROTOCOLS = (1, 6, 17, 58)   # ports (ICMP: 0 / type*256+code) seen passed through


def pmacct_key(key):
    """The key pmacct reports for a flow exported with this (ipver, src, dst, proto, sport,
    dport) in the transport port fields: the same key (see the module docstring)."""
    ipver, src, dst, proto, sport, dport = key
    if proto not in PORT_PROTOCOLS and (sport or dport):
        raise ValueError("pmacct's reporting of ports for protocol %d was not verified" % proto)
    return (ipver, src, dst, proto, sport, dport)


def regroup(totals, keyfunc=pmacct_key):
    """Re-aggregate {key: [packets, octets]} under keyfunc(key)."""
    out = {}
    for key, (packets, octets) in totals.items():
        entry = out.setdefault(keyfunc(key), [0, 0])
        entry[0] += packets
        entry[1] += octets
    return out


def _norm(text):
    fam = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_ntop(fam, socket.inet_pton(fam, text))


def marker_datagram(nonce, port=MARKER_PORT):
    """A NetFlow v5 datagram with one flow: MARKER_SRC:port -> MARKER_DST:port UDP,
    1 packet, `nonce` octets."""
    now = int(time.time())
    header = struct.pack("!HHIIIIBBH", 5, 1, 1000, now, 0, 0, 0, 0, 0)
    record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH",
                         socket.inet_aton(MARKER_SRC), socket.inet_aton(MARKER_DST),
                         b"\0\0\0\0", 0, 0, 1, nonce, 1000, 1000,
                         port, port, 0, 0, 17, 0, 0, 0, 0, 0, 0)
    assert len(record) == 48
    return header + record


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class NfacctdCollector:
    """nfacctd on host:port (a free loopback UDP port unless given).

    refresh: print_refresh_time in seconds (how often the plugin writes while
    running); wait: seconds to wait for the marker before giving up.
    """

    def __init__(self, port=None, host="127.0.0.1", refresh=1, wait=30.0, startup_timeout=20.0):
        self.host = host
        self.port = port
        self.refresh = refresh
        self.wait = wait
        self.startup_timeout = startup_timeout
        self.tmp = None
        self.proc = None
        self.nonce = 0
        self._totals = None

    # -- lifecycle
    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="nfacctd-")
        self.output = os.path.join(self.tmp, "flows.csv")
        self.logfile = os.path.join(self.tmp, "nfacctd.log")
        for _attempt in range(5):
            port = self.port or free_udp_port(self.host)
            if self._start(port):
                self.port = port
                return self
            if self.port:
                break
        raise NfacctdError("nfacctd did not start:\n" + self.log())

    def _config(self, port):
        return "\n".join([
            "daemonize: false",
            "nfacctd_ip: %s" % self.host,
            "nfacctd_port: %d" % port,
            # account at arrival time: captures are years old and jump in time
            "nfacctd_time_new: true",
            "logfile: %s" % self.logfile,
            "pidfile: %s" % os.path.join(self.tmp, "nfacctd.pid"),
            "plugins: print[p]",
            "aggregate[p]: src_host,dst_host,proto,src_port,dst_port",
            "print_output[p]: csv",
            "print_num_protos[p]: true",
            "print_output_file[p]: %s" % self.output,
            "print_output_file_append[p]: true",
            "print_refresh_time[p]: %d" % self.refresh,
            "",
        ])

    def _start(self, port):
        for path in (self.output, self.logfile):
            if os.path.exists(path):
                os.unlink(path)
        conf = os.path.join(self.tmp, "nfacctd.conf")
        with open(conf, "w") as f:
            f.write(self._config(port))
        self.proc = subprocess.Popen([NFACCTD, "-f", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if "waiting for NetFlow/IPFIX data on" in self.log() and "cache entries=" in self.log():
                break
            time.sleep(0.02)
        else:
            self._kill()
            return False
        # Ready only once a flow sent now comes out: data that reaches a freshly started
        # nfacctd can be lost (seen with IPFIX sent right after the log says it listens).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while time.monotonic() < deadline:
                s.sendto(marker_datagram(1, PROBE_PORT), (self.host, port))
                time.sleep(0.2)
                if any((row[0], row[1], row[2]) == (MARKER_SRC, MARKER_DST, str(PROBE_PORT))
                       for row in self._rows()):
                    return True
                if self.proc.poll() is not None:
                    return False
        self._kill()
        return False

    def log(self):
        try:
            with open(self.logfile, "r", errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def problems(self):
        """The lines of nfacctd's log that report something wrong with what it received or
        did: any ERROR or WARN line, and the INFO lines pmacct uses for malformed input and
        sequence jumps (notify_malf_packet, update_status_table)."""
        # (one entry per timestamp: the build-options line has no newline of its own)
        return [entry.strip() for entry in LOG_ENTRY.split(self.log()) if PROBLEM.search(entry)]

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _rows(self):
        try:
            with open(self.output, newline="") as f:
                return [row for row in csv.reader(f) if row and row[0] != "SRC_IP"]
        except OSError:
            return []

    def _marker_seen(self):
        for row in self._rows():
            if (row[0], row[1], row[2]) == (MARKER_SRC, MARKER_DST, str(MARKER_PORT)) \
                    and int(row[6]) == self.nonce:
                return True
        return False

    def stop(self):
        """Send the marker, wait until nfacctd wrote it, then SIGINT and wait for the exit purge."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.nonce = int.from_bytes(os.urandom(3), "big") + 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(marker_datagram(self.nonce), (self.host, self.port))
        deadline = time.monotonic() + self.wait
        while not self._marker_seen():
            if time.monotonic() > deadline:
                self._kill()
                raise NfacctdError("nfacctd never wrote the marker flow; log:\n" + self.log())
            if self.proc.poll() is not None:
                raise NfacctdError("nfacctd died; log:\n" + self.log())
            time.sleep(0.1)
        plugins = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill()
            raise NfacctdError("nfacctd did not exit on SIGINT")
        # the print plugin is a child process that purges on its way out: wait for it
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in plugins):
            if time.monotonic() > deadline:
                raise NfacctdError("nfacctd's plugin did not exit")
            time.sleep(0.05)

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                self.stop()
        finally:
            self._kill()
        return False

    def cleanup(self):
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- results
    def totals(self):
        """{(ipver, src, dst, proto, sport, dport): [packets, octets]} summed over every row
        nfacctd wrote, the marker flow left out."""
        if self._totals is None:
            if self.proc is not None and self.proc.poll() is None:
                raise NfacctdError("read results after leaving the with block")
            out = {}
            for row in self._rows():
                src, dst, sport, dport, proto, packets, octets = row[:7]
                src, dst = _norm(src), _norm(dst)
                key = (6 if ":" in src else 4, src, dst, int(proto), int(sport), int(dport))
                if key in (MARKER_KEY, PROBE_KEY):
                    continue
                entry = out.setdefault(key, [0, 0])
                entry[0] += int(packets)
                entry[1] += int(octets)
            self._totals = out
        return self._totals
