"""Ground-truth flow totals for a capture file, written independently of pyprobe.

This is a deliberately plain, slow, pure-Python reading of the bytes that follows
/work/notes/SPEC.md ("Decode").  dpkt is used only to split the file into packets;
every header is decoded here with `struct`, so a bug in pyprobe's decoder cannot
be hidden by sharing code with it.

    result = reference.totals(path)
    result.totals   {(ipver, src_text, dst_text, proto, sport, dport): [packets, octets]}
    result.linktype the file's link type (pcap header / first pcapng IDB)
    result.ignored  packets that were not metered (non-IP, bad IP, truncated)
    result.packets  packets read from the file

    reference.walk(path) yields (timestamp_us, decoded) per packet, decoded being
    (ipver, src, dst, proto, sport, dport, octets, tcp_flags, ttl) or None (ignored);
    ttl is the IPv4 TTL / IPv6 hop limit.
"""

import gzip
import io
import socket
import struct
from collections import namedtuple

import dpkt

Result = namedtuple("Result", "totals linktype ignored packets")


class UnsupportedLinkType(Exception):
    """The capture's link type is not one SPEC.md says pyprobe decodes."""

    def __init__(self, linktype):
        super().__init__("unsupported link type %d" % linktype)
        self.linktype = linktype


# SPEC: link types pyprobe must decode.
ETHERNET, SLL, SLL2 = 1, 113, 276
RAW_ANY = (12, 14, 101)          # raw IP, version nibble decides
RAW4, RAW6 = 228, 229
NULL, LOOP = 0, 108             # BSD loopback (host order AF), OpenBSD loop (network order AF)
SUPPORTED = {ETHERNET, SLL, SLL2, RAW4, RAW6, NULL, LOOP, *RAW_ANY}

AF_INET6_VALUES = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)

PCAP_MAGICS = {0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1, 0xA1B2CD34, 0x34CDB2A1}
PCAPNG_MAGIC = 0x0A0D0D0A

# SPEC "L4": bytes of L4 header needed to read ports / type+code.
L4_NEEDED = {6: 14, 17: 4, 132: 4, 136: 4, 33: 4, 1: 2, 58: 2}


def open_capture(data):
    """Return a dpkt reader for capture bytes, chosen by magic number (never by name)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4:
        raise ValueError("not a capture file (too short)")
    magic = struct.unpack("<I", data[:4])[0]
    if magic == PCAPNG_MAGIC:
        return dpkt.pcapng.Reader(io.BytesIO(data))
    if magic in PCAP_MAGICS or struct.unpack(">I", data[:4])[0] in PCAP_MAGICS:
        return dpkt.pcap.Reader(io.BytesIO(data))
    raise ValueError("not a capture file (magic %08x)" % magic)


def decode(linktype, pkt):
    """Return (ipver, src, dst, proto, sport, dport, octets, tcp_flags) or None if ignored."""
    if linktype == ETHERNET:
        if len(pkt) < 14:
            return None
        ethertype = struct.unpack(">H", pkt[12:14])[0]
        return by_ethertype(ethertype, pkt[14:])
    if linktype == SLL:
        if len(pkt) < 16:
            return None
        return by_ethertype(struct.unpack(">H", pkt[14:16])[0], pkt[16:])
    if linktype == SLL2:
        if len(pkt) < 20:
            return None
        return by_ethertype(struct.unpack(">H", pkt[0:2])[0], pkt[20:])
    if linktype in RAW_ANY:
        return by_version(pkt)
    if linktype == RAW4:
        return ipv4(pkt)
    if linktype == RAW6:
        return ipv6(pkt)
    if linktype in (NULL, LOOP):
        if len(pkt) < 4:
            return None
        if linktype == LOOP:
            afs = struct.unpack(">I", pkt[:4])
        else:
            # Host order of the capturing machine, which we do not know: try both.
            afs = struct.unpack("<I", pkt[:4]) + struct.unpack(">I", pkt[:4])
        if 2 in afs:
            return ipv4(pkt[4:])
        if any(af in AF_INET6_VALUES for af in afs):
            return ipv6(pkt[4:])
        return None
    raise UnsupportedLinkType(linktype)


def by_ethertype(ethertype, payload):
    """Ethertype dispatch shared by Ethernet, SLL and SLL2."""
    # VLAN / QinQ tags: 2 bytes TCI + 2 bytes inner ethertype each.
    while ethertype in VLAN_TPIDS:
        if len(payload) < 4:
            return None
        ethertype = struct.unpack(">H", payload[2:4])[0]
        payload = payload[4:]
    if ethertype == 0x0800:
        return ipv4(payload)
    if ethertype == 0x86DD:
        return ipv6(payload)
    if ethertype in (0x8847, 0x8848):
        # MPLS label stack: 4 bytes each, bottom-of-stack is bit 0x100 of the word.
        while True:
            if len(payload) < 4:
                return None
            word = struct.unpack(">I", payload[:4])[0]
            payload = payload[4:]
            if word & 0x100:
                break
        if payload and payload[0] >> 4 in (4, 6):
            return by_version(payload)
        return None
    if ethertype == 0x8864:
        # PPPoE session: 6-byte PPPoE header, then 2-byte PPP protocol.
        if len(payload) < 8:
            return None
        ppp = struct.unpack(">H", payload[6:8])[0]
        if ppp == 0x0021:
            return ipv4(payload[8:])
        if ppp == 0x0057:
            return ipv6(payload[8:])
        return None
    return None  # ARP, LLDP, 802.3 lengths, ...: not IP


def by_version(ip):
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        return ipv4(ip)
    if version == 6:
        return ipv6(ip)
    return None


def ipv4(ip):
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    hlen = (ip[0] & 0x0F) * 4
    if hlen < 20 or len(ip) < hlen:
        return None
    total = struct.unpack(">H", ip[2:4])[0]
    if total == 0:
        octets = len(ip)          # TSO capture: length not filled in
    elif total < hlen:
        return None               # bad IP
    else:
        octets = total
    proto = ip[9]
    src = socket.inet_ntop(socket.AF_INET, ip[12:16])
    dst = socket.inet_ntop(socket.AF_INET, ip[16:20])
    frag_offset = struct.unpack(">H", ip[6:8])[0] & 0x1FFF
    if frag_offset:
        return (4, src, dst, proto, 0, 0, octets, 0, ip[8])   # later fragment: no L4 header
    return l4(4, src, dst, proto, ip[hlen:], octets, ip[8])


def ipv6(ip):
    if len(ip) < 40:
        return None
    plen = struct.unpack(">H", ip[4:6])[0]
    octets = plen + 40 if plen else len(ip)
    src = socket.inet_ntop(socket.AF_INET6, ip[8:24])
    dst = socket.inet_ntop(socket.AF_INET6, ip[24:40])
    nh, off = ip[6], 40
    while nh in (0, 43, 60, 51, 44):
        if nh == 44:
            if len(ip) < off + 8:
                return None
            frag_offset = struct.unpack(">H", ip[off + 2:off + 4])[0] >> 3
            if frag_offset:
                return (6, src, dst, ip[off], 0, 0, octets, 0, ip[7])  # later fragment
            nh, off = ip[off], off + 8
            continue
        if len(ip) < off + 2:
            return None
        if nh == 51:
            hlen = (ip[off + 1] + 2) * 4     # AH counts 4-byte words, minus 2
        else:
            hlen = (ip[off + 1] + 1) * 8     # hop-by-hop, routing, destination options
        if len(ip) < off + hlen:
            return None
        nh, off = ip[off], off + hlen
    return l4(6, src, dst, nh, ip[off:], octets, ip[7])


def l4(ipver, src, dst, proto, data, octets, ttl):
    need = L4_NEEDED.get(proto, 0)
    if len(data) < need:
        return None                               # truncated L4: not metered
    sport = dport = flags = 0
    if proto == 6:
        flags = data[13]
    if proto in (1, 58):
        dport = data[0] * 256 + data[1]           # type*256 + code
    elif need:
        sport, dport = struct.unpack(">HH", data[:4])
    return (ipver, src, dst, proto, sport, dport, octets, flags, ttl)


def read(path_or_bytes):
    """Return (linktype, iterator of (timestamp_seconds, packet_bytes))."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    reader = open_capture(data)
    linktype = reader.datalink()
    if linktype not in SUPPORTED:
        raise UnsupportedLinkType(linktype)
    return linktype, iter(reader)


def walk(path_or_bytes):
    """Yield (timestamp_us, decoded) per packet; decoded is decode()'s tuple or None."""
    linktype, packets = read(path_or_bytes)
    for ts, pkt in packets:
        yield int(round(float(ts) * 1e6)), decode(linktype, pkt)


def totals(path_or_bytes):
    """Walk a capture and return Result(totals, linktype, ignored, packets)."""
    linktype, _ = read(path_or_bytes)
    result, ignored, packets = {}, 0, 0
    for _ts, decoded in walk(path_or_bytes):
        packets += 1
        if decoded is None:
            ignored += 1
            continue
        entry = result.setdefault(decoded[:6], [0, 0])
        entry[0] += 1
        entry[1] += decoded[6]
    return Result(result, linktype, ignored, packets)


if __name__ == "__main__":
    import sys
    for name in sys.argv[1:]:
        r = totals(name)
        print(name, "linktype", r.linktype, "packets", r.packets, "ignored", r.ignored, "keys", len(r.totals))
        for k, v in sorted(r.totals.items(), key=str):
            print("  ", k, v)
