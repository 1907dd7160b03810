"""Tiny helpers to build raw packets, pcapy-ng style batches, pcap and pcapng files.

Everything is built by hand with struct so that the bytes are exactly what
the test asked for (no checksums: pyprobe does not look at them).
"""
import ipaddress
import struct

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_MPLS = 0x8847

DLT_EN10MB = 1

PCAP_MAGIC = 0xA1B2C3D4
PCAPNG_SHB = 0x0A0D0D0A
DLT_RAW = 101


def mac_bytes(mac):
    """'aa:bb:cc:dd:ee:ff' -> 6 bytes."""
    b = bytes(int(x, 16) for x in mac.split(":"))
    assert len(b) == 6
    return b


def ethernet(payload, ethertype, src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02", vlan=None):
    """Ethernet II header (optionally one 802.1Q tag carrying `vlan`, PCP 0) + payload."""
    hdr = mac_bytes(dst_mac) + mac_bytes(src_mac)
    if vlan is not None:
        hdr += struct.pack("!HH", ETH_VLAN, vlan & 0xFFF)
    return hdr + struct.pack("!H", ethertype) + payload


def tcp(sport, dport, flags=0x10, payload=b""):
    """20-byte TCP header (data offset 5) + payload."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags & 0xFF, 65535, 0, 0) + payload


def tcp_segment(sport, dport, flags, window=65535, options=b"", payload=b""):
    """A TCP header with these options (padded to a word with zeros) + payload."""
    options += bytes(-len(options) % 4)
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, (5 + len(options) // 4) << 4, flags & 0xFF, window, 0, 0) + \
        options + payload


def labelled(ip, stack, vlans=(), src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02"):
    """Ethernet, 802.1Q tags (outer first), an MPLS label stack of (label, EXP) entries (top
    first, TTL 64, the last one the bottom), then the IP packet (no stack: its own ethertype)."""
    head = mac_bytes(dst_mac) + mac_bytes(src_mac)
    for vid in vlans:
        head += struct.pack("!HH", ETH_VLAN, vid)
    if not stack:
        return head + struct.pack("!H", ETH_IPV4 if ip[0] >> 4 == 4 else ETH_IPV6) + ip
    head += struct.pack("!H", ETH_MPLS)
    for i, (label, exp) in enumerate(stack):
        head += struct.pack("!I", label << 12 | exp << 9 | (i == len(stack) - 1) << 8 | 64)
    return head + ip


def udp(sport, dport, payload=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def sctp(sport, dport, payload=b""):
    """SCTP common header (ports, verification tag, checksum) + payload (chunks)."""
    return struct.pack("!HHII", sport, dport, 0x1234, 0) + payload


def icmp(icmp_type, code, payload=b""):
    """ICMP / ICMPv6 header (type, code, checksum, 4 bytes rest) + payload."""
    return struct.pack("!BBHI", icmp_type, code, 0, 0) + payload


def ipv4(src, dst, proto, l4, tos=0, frag_offset=0, ttl=64):
    """IPv4 header (ihl 5) + l4; total length = 20 + len(l4). frag_offset in 8-byte units."""
    total = 20 + len(l4)
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, tos, total, 1, frag_offset & 0x1FFF, ttl, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )
    return hdr + l4


def ipv6(src, dst, next_header, l4, tclass=0, hop_limit=64):
    """IPv6 header + l4; payload length = len(l4)."""
    first = (6 << 28) | ((tclass & 0xFF) << 20)
    hdr = struct.pack(
        "!IHBB16s16s", first, len(l4), next_header, hop_limit,
        ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed,
    )
    return hdr + l4


def ip_packet(ipver, src, dst, proto, sport=0, dport=0, flags=0, tos=0, payload=b"", frag_offset=0, ttl=64):
    """An IP packet of version `ipver` with a TCP/UDP/ICMP/other L4 built from the arguments.

    For ICMP (1) / ICMPv6 (58) dport is type*256 + code (as pyprobe keys it) and sport is ignored.
    For other protocols the payload is carried as is. frag_offset (IPv4 only) != 0 makes
    a non-first fragment whose L4 bytes are just the payload.
    """
    if frag_offset:
        l4 = payload
    elif proto == 6:
        l4 = tcp(sport, dport, flags, payload)
    elif proto in (17, 136):            # UDP, UDP-Lite
        l4 = udp(sport, dport, payload)
    elif proto == 132:
        l4 = sctp(sport, dport, payload)
    elif proto in (1, 58):
        l4 = icmp(dport >> 8, dport & 0xFF, payload)
    else:
        l4 = payload
    if ipver == 4:
        return ipv4(src, dst, proto, l4, tos=tos, frag_offset=frag_offset, ttl=ttl)
    assert not frag_offset
    return ipv6(src, dst, proto, l4, tclass=tos, hop_limit=ttl)


def eth_ip_packet(ipver, src, dst, proto, sport=0, dport=0, flags=0, tos=0, payload=b"",
                  src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02", vlan=None, frag_offset=0, ttl=64):
    """Ethernet frame around ip_packet(...)."""
    ip = ip_packet(ipver, src, dst, proto, sport, dport, flags, tos, payload, frag_offset, ttl)
    return ethernet(ip, ETH_IPV4 if ipver == 4 else ETH_IPV6, src_mac, dst_mac, vlan)


def split_time(time_us):
    """microseconds since the epoch -> (sec, usec)."""
    return divmod(int(time_us), 1_000_000)


def make_batch(frames):
    """[(time_us, frame_bytes), ...] -> (packets, meta) in pcapy-ng next_batch format:
    the frames concatenated, and per frame 16 bytes of native uint32 (sec, usec, offset, caplen)."""
    packets = bytearray()
    meta = bytearray()
    for time_us, frame in frames:
        sec, usec = split_time(time_us)
        meta += struct.pack("=IIII", sec, usec, len(packets), len(frame))
        packets += frame
    return bytes(packets), bytes(meta)


def pcap_bytes(frames, linktype=DLT_EN10MB, snaplen=65535):
    """[(time_us, frame_bytes), ...] -> a classic little-endian microsecond pcap file's bytes."""
    out = bytearray(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype))
    for time_us, frame in frames:
        sec, usec = split_time(time_us)
        caplen = min(len(frame), snaplen)
        out += struct.pack("<IIII", sec, usec, caplen, len(frame))
        out += frame[:caplen]
    return bytes(out)


def write_pcap(path, frames, linktype=DLT_EN10MB, snaplen=65535):
    """Write [(time_us, frame_bytes), ...] as a pcap file at `path`; returns the path."""
    with open(path, "wb") as f:
        f.write(pcap_bytes(frames, linktype, snaplen))
    return path


def pcapng_block(order, block_type, body):
    """One pcapng block: type, length, body padded to 4 bytes, length again."""
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def pcapng_section(interfaces, packets, order="<"):
    """One pcapng section: interfaces [linktype, ...], packets [(interface id, time_us, frame)]
    as enhanced packet blocks in microseconds; order '<' or '>'."""
    out = pcapng_block(order, PCAPNG_SHB, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for linktype in interfaces:
        out += pcapng_block(order, 1, struct.pack(order + "HHI", linktype, 0, 262144))
    for if_id, time_us, frame in packets:
        t = int(time_us)
        out += pcapng_block(order, 6, struct.pack(order + "IIIII", if_id, t >> 32, t & 0xFFFFFFFF,
                                                  len(frame), len(frame)) + frame)
    return out
