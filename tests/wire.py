"""An independent parser of NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) messages.

Written from the RFCs and Cisco's v5 layout with `struct` only; it does not
import pyprobe, so the tests that use it check pyprobe's bytes against the
protocol, not against pyprobe's own idea of it.

    p = wire.Parser()
    msg = p.parse(datagram, source=("127.0.0.1", 1234))   # source scopes v9/IPFIX templates
    msg.version, msg.header        header fields by name (see HEADER_NAMES)
    msg.sets                       [WireSet(set_id, kind, length, count)] in wire order
    msg.records                    decoded data records: {element id: value}
    msg.options_records            decoded options data records: {element id: value, "scope": {id: value}}
    msg.templates, msg.options_templates   template ids defined in this message, in order
    msg.count_template_records, msg.count_options_template_records,
    msg.count_data_records, msg.count_options_data_records
    msg.unknown_sets               data sets whose template was not seen yet

Values: fields of 1, 2, 4 or 8 octets are unsigned big-endian integers, except the
address elements (8, 12, 15, 27, 28, 62) which are text; other lengths are bytes.
A v5 record is given with the v9 element ids of its fields.
A malformed message raises WireError.
"""

import ipaddress
import struct
from collections import namedtuple

# -- element ids used for naming values ---------------------------------------------
IN_BYTES, IN_PKTS, PROTOCOL, SRC_TOS, TCP_FLAGS, L4_SRC_PORT, IPV4_SRC_ADDR, SRC_MASK = 1, 2, 4, 5, 6, 7, 8, 9
INPUT_SNMP, L4_DST_PORT, IPV4_DST_ADDR, DST_MASK, OUTPUT_SNMP, IPV4_NEXT_HOP = 10, 11, 12, 13, 14, 15
SRC_AS, DST_AS, LAST_SWITCHED, FIRST_SWITCHED = 16, 17, 21, 22
IPV6_SRC_ADDR, IPV6_DST_ADDR, IPV6_NEXT_HOP = 27, 28, 62
FLOW_START_MS, FLOW_END_MS = 152, 153

IPV4_ADDRESS_IES = {8, 12, 15}
IPV6_ADDRESS_IES = {27, 28, 62}

VARIABLE_LENGTH = 65535           # RFC 7011 section 7

HEADER_NAMES = {
    5: ("version", "count", "sys_uptime", "unix_secs", "unix_nsecs", "flow_sequence",
        "engine_type", "engine_id", "sampling"),
    9: ("version", "count", "sys_uptime", "unix_secs", "sequence", "source_id"),
    10: ("version", "length", "export_time", "sequence", "domain_id"),
}
V5_HEADER = struct.Struct(">HHIIIIBBH")          # 24 bytes
V5_RECORD = struct.Struct(">4s4s4sHHIIIIHHBBBBHHBBH")   # 48 bytes
V9_HEADER = struct.Struct(">HHIIII")             # 20 bytes
IPFIX_HEADER = struct.Struct(">HHIII")           # 16 bytes
SET_HEADER = struct.Struct(">HH")

WireSet = namedtuple("WireSet", "set_id kind length count")


class WireError(ValueError):
    pass


class Message:
    def __init__(self, version, header, size):
        self.version = version
        self.header = header
        self.size = size
        self.sets = []
        self.records = []
        self.options_records = []
        self.templates = []
        self.options_templates = []
        self.unknown_sets = []

    def _count(self, kind):
        return sum(s.count for s in self.sets if s.kind == kind)

    @property
    def count_template_records(self):
        return self._count("template")

    @property
    def count_options_template_records(self):
        return self._count("options_template")

    @property
    def count_data_records(self):
        return self._count("data")

    @property
    def count_options_data_records(self):
        return self._count("options_data")

    @property
    def count_all_records(self):
        return (self.count_template_records + self.count_options_template_records
                + self.count_data_records + self.count_options_data_records)

    def __repr__(self):
        return f"<Message v{self.version} {self.header} sets={self.sets}>"


def _value(ie, raw):
    if ie in IPV4_ADDRESS_IES and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if ie in IPV6_ADDRESS_IES and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    if len(raw) in (1, 2, 4, 8):
        return int.from_bytes(raw, "big")
    return bytes(raw)


class Parser:
    """Keeps the templates seen so far, per (version, source, source id / domain)."""

    def __init__(self):
        self.templates = {}        # (version, source, domain, template id) -> ("data"|"options", scope, fields)

    def parse(self, data, source=None):
        data = bytes(data)
        if len(data) < 2:
            raise WireError("message shorter than a version field")
        version = struct.unpack_from(">H", data)[0]
        if version == 5:
            return self._v5(data)
        if version == 9:
            return self._v9(data, source)
        if version == 10:
            return self._ipfix(data, source)
        raise WireError(f"unknown version {version}")

    # -- NetFlow v5 ---------------------------------------------------------------
    def _v5(self, data):
        if len(data) < V5_HEADER.size:
            raise WireError("v5 header truncated")
        header = dict(zip(HEADER_NAMES[5], V5_HEADER.unpack_from(data)))
        count = header["count"]
        if len(data) != V5_HEADER.size + V5_RECORD.size * count:
            raise WireError(f"v5 length {len(data)} != 24 + 48 * {count}")
        msg = Message(5, header, len(data))
        for i in range(count):
            (src, dst, nexthop, in_if, out_if, pkts, octets, first, last, sport, dport, pad1, flags, proto,
             tos, src_as, dst_as, src_mask, dst_mask, pad2) = V5_RECORD.unpack_from(data, 24 + 48 * i)
            msg.records.append({
                IPV4_SRC_ADDR: str(ipaddress.IPv4Address(src)), IPV4_DST_ADDR: str(ipaddress.IPv4Address(dst)),
                IPV4_NEXT_HOP: str(ipaddress.IPv4Address(nexthop)), INPUT_SNMP: in_if, OUTPUT_SNMP: out_if,
                IN_PKTS: pkts, IN_BYTES: octets, FIRST_SWITCHED: first, LAST_SWITCHED: last,
                L4_SRC_PORT: sport, L4_DST_PORT: dport, TCP_FLAGS: flags, PROTOCOL: proto, SRC_TOS: tos,
                SRC_AS: src_as, DST_AS: dst_as, SRC_MASK: src_mask, DST_MASK: dst_mask,
            })
        msg.sets.append(WireSet(None, "data", len(data) - 24, count))
        return msg

    # -- NetFlow v9 (RFC 3954) -----------------------------------------------------
    def _v9(self, data, source):
        if len(data) < V9_HEADER.size:
            raise WireError("v9 header truncated")
        header = dict(zip(HEADER_NAMES[9], V9_HEADER.unpack_from(data)))
        msg = Message(9, header, len(data))
        scope = (9, source, header["source_id"])
        offset = V9_HEADER.size
        while offset < len(data):
            if len(data) - offset < SET_HEADER.size:
                raise WireError(f"v9 flowset header truncated at {offset}")
            set_id, length = SET_HEADER.unpack_from(data, offset)
            if length < 4 or offset + length > len(data):
                raise WireError(f"v9 flowset {set_id} at {offset}: bad length {length}")
            body = data[offset + 4:offset + length]
            if set_id == 0:
                msg.sets.append(WireSet(0, "template", length, self._v9_templates(body, scope, msg)))
            elif set_id == 1:
                msg.sets.append(WireSet(1, "options_template", length, self._v9_options_templates(body, scope, msg)))
            elif set_id >= 256:
                self._data_set(set_id, length, body, scope, msg)
            else:
                raise WireError(f"v9 reserved flowset id {set_id}")
            offset += length
        return msg

    def _v9_templates(self, body, scope, msg):
        n, pos = 0, 0
        while len(body) - pos >= 4:
            template_id, count = struct.unpack_from(">HH", body, pos)
            pos += 4
            if template_id == 0 and count == 0:        # padding
                break
            if template_id < 256:
                raise WireError(f"v9 template id {template_id} < 256")
            if len(body) - pos < 4 * count:
                raise WireError(f"v9 template {template_id} truncated")
            fields = [struct.unpack_from(">HH", body, pos + 4 * k) for k in range(count)]
            pos += 4 * count
            self.templates[scope + (template_id,)] = ("data", [], fields)
            msg.templates.append(template_id)
            n += 1
        if any(body[pos:]):
            raise WireError("v9 template flowset: non-zero trailing bytes")
        return n

    def _v9_options_templates(self, body, scope, msg):
        n, pos = 0, 0
        while len(body) - pos >= 6:
            template_id, scope_len, option_len = struct.unpack_from(">HHH", body, pos)
            if template_id == 0:                       # padding
                break
            pos += 6
            if template_id < 256 or scope_len % 4 or option_len % 4:
                raise WireError(f"v9 options template {template_id}: bad id or lengths")
            if len(body) - pos < scope_len + option_len:
                raise WireError(f"v9 options template {template_id} truncated")
            pairs = [struct.unpack_from(">HH", body, pos + 4 * k) for k in range((scope_len + option_len) // 4)]
            pos += scope_len + option_len
            self.templates[scope + (template_id,)] = ("options", pairs[:scope_len // 4], pairs[scope_len // 4:])
            msg.options_templates.append(template_id)
            n += 1
        if any(body[pos:]):
            raise WireError("v9 options template flowset: non-zero trailing bytes")
        return n

    # -- IPFIX (RFC 7011) ----------------------------------------------------------
    def _ipfix(self, data, source):
        if len(data) < IPFIX_HEADER.size:
            raise WireError("IPFIX header truncated")
        header = dict(zip(HEADER_NAMES[10], IPFIX_HEADER.unpack_from(data)))
        if header["length"] != len(data):
            raise WireError(f"IPFIX length field {header['length']} != message length {len(data)}")
        msg = Message(10, header, len(data))
        scope = (10, source, header["domain_id"])
        offset = IPFIX_HEADER.size
        while offset < len(data):
            if len(data) - offset < SET_HEADER.size:
                raise WireError(f"IPFIX set header truncated at {offset}")
            set_id, length = SET_HEADER.unpack_from(data, offset)
            if length < 4 or offset + length > len(data):
                raise WireError(f"IPFIX set {set_id} at {offset}: bad length {length}")
            body = data[offset + 4:offset + length]
            if set_id in (2, 3):
                n = self._ipfix_templates(body, scope, msg, options=set_id == 3)
                msg.sets.append(WireSet(set_id, "options_template" if set_id == 3 else "template", length, n))
            elif set_id >= 256:
                self._data_set(set_id, length, body, scope, msg)
            else:
                raise WireError(f"IPFIX reserved set id {set_id}")
            offset += length
        return msg

    def _ipfix_templates(self, body, scope, msg, options):
        n, pos = 0, 0
        fixed = 6 if options else 4
        while len(body) - pos >= fixed:
            if options:
                template_id, count, scope_count = struct.unpack_from(">HHH", body, pos)
            else:
                (template_id, count), scope_count = struct.unpack_from(">HH", body, pos), 0
            if template_id == 0:                       # padding
                break
            pos += fixed
            if template_id < 256:
                raise WireError(f"IPFIX template id {template_id} < 256")
            if options and count and not 0 < scope_count <= count:
                raise WireError(f"IPFIX options template {template_id}: scope count {scope_count}")
            fields = []
            for _ in range(count):
                if len(body) - pos < 4:
                    raise WireError(f"IPFIX template {template_id} truncated")
                ie, length = struct.unpack_from(">HH", body, pos)
                pos += 4
                if ie & 0x8000:
                    if len(body) - pos < 4:
                        raise WireError(f"IPFIX template {template_id} truncated")
                    enterprise = struct.unpack_from(">I", body, pos)[0]
                    pos += 4
                    ie = (enterprise, ie & 0x7fff)
                fields.append((ie, length))
            key = scope + (template_id,)
            if count == 0:                             # withdrawal
                self.templates.pop(key, None)
            elif options:
                self.templates[key] = ("options", fields[:scope_count], fields[scope_count:])
            else:
                self.templates[key] = ("data", [], fields)
            (msg.options_templates if options else msg.templates).append(template_id)
            n += 1
        if any(body[pos:]):
            raise WireError("IPFIX template set: non-zero trailing bytes")
        return n

    # -- data sets (both) ---------------------------------------------------------
    def _data_set(self, set_id, length, body, scope, msg):
        template = self.templates.get(scope + (set_id,))
        if template is None:
            msg.unknown_sets.append(set_id)
            msg.sets.append(WireSet(set_id, "unknown", length, 0))
            return
        kind, scope_fields, fields = template
        pos, n = 0, 0
        fixed = all(length != VARIABLE_LENGTH for _, length in scope_fields + fields)
        minimum = sum(length if length != VARIABLE_LENGTH else 1 for _, length in scope_fields + fields)
        while len(body) - pos >= max(minimum, 1):
            record, pos = self._record(body, pos, scope_fields, fields, msg.version)
            if kind == "options":
                msg.options_records.append(record)
            else:
                msg.records.append(record)
            n += 1
        if fixed and any(body[pos:]):
            raise WireError(f"set {set_id}: {len(body) - pos} trailing bytes are not zero padding")
        msg.sets.append(WireSet(set_id, "options_data" if kind == "options" else "data", length, n))

    @staticmethod
    def _record(body, pos, scope_fields, fields, version):
        def read(pos, length):
            if length == VARIABLE_LENGTH:
                length = body[pos]
                pos += 1
                if length == 255:
                    length = struct.unpack_from(">H", body, pos)[0]
                    pos += 2
            if pos + length > len(body):
                raise WireError("data record truncated")
            return body[pos:pos + length], pos + length

        record = {}
        if scope_fields:
            record["scope"] = {}
            for ie, length in scope_fields:
                raw, pos = read(pos, length)
                # v9 scope field types (System, Interface, ...) are not element ids: keep them integers
                record["scope"][ie] = int.from_bytes(raw, "big") if version == 9 else _value(ie, raw)
        for ie, length in fields:
            raw, pos = read(pos, length)
            record[ie] = _value(ie, raw)
        return record, pos


def parse_all(datagrams, source=None):
    """Parse datagrams in order with one Parser; returns the Messages."""
    parser = Parser()
    return [parser.parse(d, source) for d in datagrams]


def absolute_ms(msg, record):
    """(first, last) absolute milliseconds of a data record.

    v5: unix_secs*1000 + unix_nsecs/1e6 - (sys_uptime - FIRST_SWITCHED); v9 likewise without nsecs;
    IPFIX: flowStartMilliseconds / flowEndMilliseconds."""
    h = msg.header
    if msg.version == 10:
        return record[FLOW_START_MS], record[FLOW_END_MS]
    export_ms = h["unix_secs"] * 1000 + (h["unix_nsecs"] // 1_000_000 if msg.version == 5 else 0)
    up = h["sys_uptime"]
    return (export_ms - ((up - record[FIRST_SWITCHED]) & 0xffffffff),
            export_ms - ((up - record[LAST_SWITCHED]) & 0xffffffff))


def flow_key(record):
    """(ipver, src, dst, proto, sport, dport) of a decoded data record, ports as the reference gives them."""
    if IPV4_SRC_ADDR in record:
        ipver, src, dst = 4, record[IPV4_SRC_ADDR], record[IPV4_DST_ADDR]
    else:
        ipver, src, dst = 6, record[IPV6_SRC_ADDR], record[IPV6_DST_ADDR]
    return (ipver, src, dst, record[PROTOCOL], record[L4_SRC_PORT], record[L4_DST_PORT])


# -- a loopback collector and a pyprobe runner for the CLI tests (no pyprobe import) ---

import os as _os
import shutil as _shutil
import socket as _socket
import subprocess as _subprocess
import sys as _sys
import threading as _threading
import time as _time

PYPROBE = _shutil.which("pyprobe", path=_os.path.dirname(_sys.executable)) or "pyprobe"


SO_RCVBUFFORCE = 33              # Linux


def free_udp_port(host="127.0.0.1"):
    """A UDP port on host that nobody listens on right now (bound, then closed)."""
    with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class UdpCollector:
    """A UDP socket on 127.0.0.1 that keeps every datagram with its sender."""

    def __init__(self):
        self.sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        # Drained only after pyprobe exits, so the whole export must fit: as root, force a big buffer
        # past net.core.rmem_max (SO_RCVBUFFORCE, which Python's socket module does not name).
        try:
            self.sock.setsockopt(_socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.datagrams = []            # (bytes, sender)

    def drain(self, timeout=0.3):
        self.sock.settimeout(timeout)
        try:
            while True:
                self.datagrams.append(self.sock.recvfrom(65535))
        except _socket.timeout:
            pass
        return [d for d, _ in self.datagrams]

    def messages(self):
        parser = Parser()
        return [parser.parse(d, sender) for d, sender in self.datagrams]

    def close(self):
        self.sock.close()


class TimedCollector:
    """A UDP socket on 127.0.0.1 read by a thread while pyprobe runs, noting the wall time each
    datagram arrives: for pacing and real-time tests, timed on the collector's side."""

    def __init__(self):
        self.sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.arrivals = []             # (epoch seconds, datagram)
        self.running = True
        self.thread = _threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(65535)
            except _socket.timeout:
                continue
            self.arrivals.append((_time.time(), data))

    def records(self):
        """Stop reading; [(arrival epoch seconds, message, decoded record)]."""
        self.running = False
        self.thread.join()
        self.sock.close()
        parser = Parser()
        out = []
        for arrived, data in self.arrivals:
            msg = parser.parse(data, source="timed")
            out += [(arrived, msg, r) for r in msg.records]
        return out


def run_pyprobe(args, stdin=None, timeout=60, check_exit=0):
    """Run the pyprobe command; returns CompletedProcess (text). Asserts the exit status if check_exit is set."""
    proc = _subprocess.run([PYPROBE, *args], input=stdin, capture_output=True, timeout=timeout,
                           text=stdin is None or isinstance(stdin, str))
    if check_exit is not None and proc.returncode != check_exit:
        raise AssertionError(f"pyprobe {args} exited {proc.returncode}, expected {check_exit}:\n{proc.stderr}")
    return proc


# -- streams: sequence numbers per observation domain -------------------------------------

def domain_of(msg):
    """v9 source id / IPFIX observation domain id (None for v5)."""
    return msg.header.get("source_id", msg.header.get("domain_id"))


def flow_stream(msgs):
    """The messages of the observation domain(s) that carry flow (non-options) records, in order.

    RFC 7011 section 3.1 lets an exporter put exporter-wide options in domain 0; such a
    domain-0 stream that holds no flow records is left out."""
    flow_domains = {domain_of(m) for m in msgs if m.records or m.templates}
    return [m for m in msgs if domain_of(m) in flow_domains]


def check_sequences(msgs):
    """Sequence numbers by the RFCs, per stream (v5: flows before; v9: packets before, per source id;
    IPFIX: data records, options data records included, before, per observation domain)."""
    counters = {}
    for i, m in enumerate(msgs):
        key = domain_of(m)
        before = counters.get(key, 0)
        if m.version == 5:
            assert m.header["flow_sequence"] == before & 0xffffffff, (i, m.header, before)
            counters[key] = before + m.header["count"]
        elif m.version == 9:
            assert m.header["sequence"] == before & 0xffffffff, (i, m.header, before)
            assert m.header["count"] == m.count_all_records, (i, m.header, m.sets)
            counters[key] = before + 1
        else:
            assert m.header["sequence"] == before & 0xffffffff, (i, m.header, before)
            counters[key] = before + m.count_data_records + m.count_options_data_records
