#!/usr/bin/env python3
"""Write a seeded synthetic classic-pcap capture (Ethernet) for benchmarking pyprobe.

The traffic mix is meant to look like an edge link:
  * heavy-tailed flow sizes (discrete Pareto, rescaled to the requested packet count):
    most flows have 1-3 packets, a few have thousands;
  * TCP (~75% of flows): SYN / SYN+ACK first, ACK or PSH+ACK in the middle, FIN+ACK (or RST) last
    for most flows, MSS-sized data packets for bulk senders, 52-byte ACKs for the other side;
  * UDP (~20%): DNS, NTP, QUIC/443 and RTP-like media flows;
  * ICMP / ICMPv6 echo request / reply (~5%);
  * ~15% of packets IPv6, ~10% of packets with one 802.1Q tag;
  * timestamps advance over a few minutes, flows interleaved (per-flow packet times, then one sort).

Every generated flow is unidirectional and has a distinct key (ipver, src, dst, proto, sport, dport)
-- also ignoring tos and vlan -- and no gap inside a flow is longer than 10 s, FIN/RST only ever on
a flow's last packet.  So a meter with the Cisco defaults (15 s idle, 1800 s active) and a cache
that never overflows must report exactly --flows records and exactly the packet / octet totals
written to the sidecar file FILE.json (octets = sum of IP total lengths).

Plain Python + struct; about 5-10 s for the default 500k packets / 100k flows.

--shape picks the traffic (the flow-key and no-split guarantees above hold for all three):
  mix        the edge-link mix above (the default; same bytes as before --shape existed);
  flood      --flows one-packet flows (default 1,000,000) from distinct random IPv4 sources to a
             few victims over --duration (default 20 s): 80% TCP SYN to 80/443, 15% UDP to 53,
             5% ICMP echo, minimum-size frames -- a SYN/DNS flood or a scan; --packets = --flows;
  elephants  --flows long TCP flows (default 20) of --packets / --flows packets each (default
             600,000 packets: 20 x 30,000), half of them MSS-sized data, half the ACKs going back.
"""
import argparse
import json
import math
import os
import random
import struct
import sys
import time

BASE_EPOCH = 1700000000  # 2023-11-14T22:13:20Z
MAX_GAP_US = 10_000_000  # < 15 s default idle timeout: flows never split

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
F_FIN, F_SYN, F_RST, F_PSH, F_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# TCP options: SYN gets MSS, SACK-permitted, timestamps, NOP, window scale (20 bytes);
# other segments carry NOP NOP timestamps (12 bytes), as Linux does.
SYN_OPTS = bytes.fromhex("020405b4" "0402" "080a0000000000000000" "01" "030307")
TS_OPTS = bytes.fromhex("0101" "080a0000000000000000")

ETH = struct.Struct("!6s6sH")
ETH_VLAN = struct.Struct("!6s6sHHH")
IP4 = struct.Struct("!BBHHHBBH4s4s")
IP4_WORDS = struct.Struct("!10H")
IP6 = struct.Struct("!IHBB16s16s")
TCPH = struct.Struct("!HHIIBBHHH")
UDPH = struct.Struct("!HHHH")
ICMPH = struct.Struct("!BBHHH")
REC = struct.Struct("<IIII")
GLOBAL_HDR = struct.Struct("<IHHiIII")


SHAPE_DEFAULTS = {
    "mix": {"packets": 500_000, "flows": 100_000, "duration": 180.0},
    "flood": {"packets": None, "flows": 1_000_000, "duration": 20.0},
    "elephants": {"packets": 600_000, "flows": 20, "duration": 60.0},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", default="capture.pcap", help="output pcap path (default %(default)s)")
    p.add_argument("--shape", choices=sorted(SHAPE_DEFAULTS), default="mix",
                   help="traffic shape: mix (default), flood or elephants (see above)")
    p.add_argument("--packets", type=int, default=None,
                   help="total packets (default: mix 500000, flood = --flows, elephants 600000)")
    p.add_argument("--flows", type=int, default=None,
                   help="unidirectional flows (default: mix 100000, flood 1000000, elephants 20)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds over which flows start (default: mix 180, flood 20, elephants 60)")
    p.add_argument("--snaplen", type=int, default=0,
                   help="truncate captured bytes to this many (0: full packets, the default)")
    p.add_argument("--ipv6", type=float, default=0.15, help="share of packets that are IPv6 (default %(default)s)")
    p.add_argument("--vlan", type=float, default=0.10, help="share of packets with an 802.1Q tag (default %(default)s)")
    p.add_argument("--alpha", type=float, default=1.2, help="Pareto shape of flow sizes (default %(default)s)")
    p.add_argument("--no-sidecar", action="store_true", help="do not write OUTPUT.json with the expected totals")
    a = p.parse_args(argv)
    d = SHAPE_DEFAULTS[a.shape]
    if a.flows is None:
        a.flows = d["flows"]
    if a.packets is None:
        a.packets = a.flows if a.shape == "flood" else d["packets"]
    if a.duration is None:
        a.duration = d["duration"]
    if a.flows < 1 or a.packets < a.flows:
        p.error("need --packets >= --flows >= 1")
    if a.shape == "flood" and a.packets != a.flows:
        p.error("--shape flood: every flow is one packet, --packets must equal --flows")
    if a.shape == "flood" and a.flows > 0xDF000000:
        p.error("--shape flood: at most %d flows (one per IPv4 source)" % 0xDF000000)
    return a


def flow_sizes(rng, nflows, npackets, alpha):
    """Heavy-tailed sizes >= 1 summing to exactly npackets."""
    cap = max(1, npackets // 25)
    raw = [min(cap, int(rng.paretovariate(alpha))) for _ in range(nflows)]
    extra = sum(r - 1 for r in raw)
    want = npackets - nflows
    k = want / extra if extra else 0.0
    sizes = [1 + int((r - 1) * k + 0.5) for r in raw]
    resid = npackets - sum(sizes)
    order = sorted(range(nflows), key=lambda i: -sizes[i])
    i = 0
    while resid:
        j = order[i % len(order)]
        if resid > 0:
            sizes[j] += 1
            resid -= 1
        elif sizes[j] > 1:
            sizes[j] -= 1
            resid += 1
        i += 1
        if resid < 0 and i % len(order) == 0 and sizes[order[0]] == 1:
            raise RuntimeError("cannot shrink flows")  # unreachable: npackets >= nflows
    return sizes


def balanced_choice(rng, want_share, done, total, n):
    """Pick True so that the running packet share drifts towards want_share, still at random."""
    if want_share <= 0:
        return False
    if want_share >= 1:
        return True
    share = done / total if total else 0.0
    p = want_share * (1.7 if share < want_share else 0.3)
    return rng.random() < min(1.0, p)


def mac(rng):
    b = bytearray(rng.getrandbits(48).to_bytes(6, "big"))
    b[0] = (b[0] & 0xFC) | 0x02  # locally administered unicast
    return bytes(b)


def build_hosts(rng):
    clients4 = [bytes((10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))) for _ in range(4000)]
    servers4 = []
    for _ in range(3000):
        a = rng.choice((23, 31, 52, 93, 104, 142, 151, 172, 185, 198, 203, 216))
        servers4.append(bytes((a, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))))
    clients6 = [bytes.fromhex("20010db80001") + rng.getrandbits(80).to_bytes(10, "big") for _ in range(2000)]
    servers6 = [bytes.fromhex("2a00") + rng.getrandbits(112).to_bytes(14, "big") for _ in range(1500)]
    macs = [mac(rng) for _ in range(64)]
    return clients4, servers4, clients6, servers6, macs


TCP_PORTS = [(443, 60), (80, 15), (22, 3), (25, 2), (993, 2), (8080, 3), (3389, 1), (5222, 1), (8443, 3)]
TCP_PORT_POP = [p for p, w in TCP_PORTS for _ in range(w)]


class Flow:
    __slots__ = ("v6", "proto", "src", "dst", "sport", "dport", "tos", "vlan", "eth", "n",
                 "role", "kind", "fin", "rst", "first_flags", "isn", "ack0", "ipid",
                 "icmp_type", "icmp_id", "ulen", "psum")


def make_flows(rng, a, sizes):
    clients4, servers4, clients6, servers6, macs = build_hosts(rng)
    order = list(range(a.flows))
    rng.shuffle(order)
    flows = [None] * a.flows
    elephants = a.shape == "elephants"
    seen = set()
    v6_pk = vl_pk = cum = 0
    for fi in order:
        n = sizes[fi]
        f = Flow()
        f.n = n
        f.v6 = balanced_choice(rng, a.ipv6, v6_pk, cum, n)
        vlan = balanced_choice(rng, a.vlan, vl_pk, cum, n)
        cum += n
        v6_pk += n if f.v6 else 0
        vl_pk += n if vlan else 0
        r = rng.random()
        f.proto = TCP if r < 0.75 else UDP if r < 0.95 else (ICMP6 if f.v6 else ICMP)
        # roles: "fwd" = client -> server (request side), "rev" = server -> client (response side)
        f.role = "fwd" if rng.random() < 0.5 else "rev"
        if elephants:
            # TCP only; even flows carry the data (server -> client), odd ones the ACKs
            f.proto = TCP
            f.role = "rev" if fi % 2 == 0 else "fwd"
        f.tos = 0 if rng.random() < 0.9 else rng.choice((0x10, 0x28, 0x48, 0xB8))
        f.vlan = rng.choice((10, 20, 100, 101, 300, 4000)) if vlan else 0
        cl, sv = (clients6, servers6) if f.v6 else (clients4, servers4)
        while True:
            c, s = rng.choice(cl), rng.choice(sv)
            if f.proto == TCP:
                sp, dp = rng.randrange(32768, 61000), rng.choice(TCP_PORT_POP)
                if elephants and dp == 25:
                    dp = 443  # keep "rev" = the data side
                f.kind = "bulk" if (f.role == "rev") == (dp != 25) else "ack"
            elif f.proto == UDP:
                sp = rng.randrange(32768, 61000)
                if n <= 3:
                    x = rng.random()
                    dp, f.kind = (53, "dns") if x < 0.7 else (123, "ntp") if x < 0.8 else (443, "quic") if x < 0.9 else (rng.randrange(1024, 65536), "udp")
                else:
                    x = rng.random()
                    dp, f.kind = (443, "quic") if x < 0.6 else (rng.randrange(16384, 32768) & ~1, "rtp") if x < 0.9 else (rng.randrange(1024, 65536), "udp")
                if f.kind == "ntp":
                    sp = 123
            else:
                f.kind = "echo"
                f.icmp_id = rng.randrange(65536)
                sp, dp = 0, 0
            if f.role == "fwd":
                src, dst, spt, dpt = c, s, sp, dp
            else:
                src, dst, spt, dpt = s, c, dp, sp
            if f.proto in (ICMP, ICMP6):
                t = (8 if f.role == "fwd" else 0) if f.proto == ICMP else (128 if f.role == "fwd" else 129)
                f.icmp_type = t
                spt, dpt = 0, t * 256
            key = (f.v6, src, dst, f.proto, spt, dpt)
            if key not in seen:
                seen.add(key)
                break
        f.src, f.dst, f.sport, f.dport = src, dst, spt, dpt
        # pseudo-header sum without the length (ICMPv4 has none); payloads are all zeros
        f.psum = 0 if f.proto == ICMP else words_sum(src) + words_sum(dst) + f.proto
        smac, dmac = rng.choice(macs), rng.choice(macs)
        et = 0x86DD if f.v6 else 0x0800
        f.eth = ETH_VLAN.pack(dmac, smac, 0x8100, f.vlan, et) if vlan else ETH.pack(dmac, smac, et)
        f.isn = rng.getrandbits(32)
        f.ack0 = rng.getrandbits(32)
        f.ipid = rng.randrange(65536)
        f.fin = f.rst = False
        f.first_flags = F_ACK
        if f.proto == TCP:
            x = rng.random()
            if n == 1:
                # lone SYNs (scans, unanswered), RSTs (refused), stray ACKs
                if f.role == "fwd":
                    f.first_flags = F_SYN if x < 0.6 else F_ACK
                else:
                    f.first_flags = (F_RST | F_ACK) if x < 0.3 else F_ACK
            else:
                # handshakes for most flows that start inside the capture
                if x < 0.8:
                    f.first_flags = F_SYN if f.role == "fwd" else F_SYN | F_ACK
                y = rng.random()
                if y < 0.75:
                    f.fin = True
                elif y < 0.82:
                    f.rst = True
        if f.proto == UDP:
            f.ulen = {"dns": rng.randrange(30, 80) if f.role == "fwd" else rng.randrange(60, 480),
                      "ntp": 48, "quic": 0, "rtp": rng.choice((172, 180, 212, 332)),
                      "udp": rng.randrange(20, 1200)}[f.kind]
        flows[fi] = f
    return flows


def flow_times(rng, flows, duration):
    """List of (t_us, flow index, packet index), sorted by time."""
    ev = []
    dur_us = int(duration * 1e6)
    for fi, f in enumerate(flows):
        t = rng.randrange(dur_us)
        ev.append((t, fi, 0))
        n = f.n
        if n == 1:
            continue
        # per-flow mean gap: log-normal around 50 ms; big flows squeezed into what is left of the capture
        g = min(3.0, math.exp(rng.gauss(math.log(0.05), 1.5)))
        left = max(1.0, (dur_us - t) / 1e6 + 20.0)
        if g * n > left:
            g = left / n
        lam = 1.0 / (g * 1e6)
        ex = rng.expovariate
        for k in range(1, n):
            gap = int(ex(lam)) + 1
            if gap > MAX_GAP_US:
                gap = MAX_GAP_US
            t += gap
            ev.append((t, fi, k))
    ev.sort()
    return ev


def words_sum(b):
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def fold(s):
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    c = (~s) & 0xFFFF
    return c or 0xFFFF


def ip4_checksum(hdr):
    return fold(sum(IP4_WORDS.unpack(hdr)))


def write_capture(a, flows, events, rng):
    zeros = memoryview(bytes(65536))
    snap = a.snaplen if a.snaplen > 0 else 65535
    stats = {"packets": 0, "octets": 0, "flows": len(flows), "ipv6_packets": 0, "vlan_packets": 0,
             "tcp_packets": 0, "udp_packets": 0, "icmp_packets": 0, "syn_packets": 0, "fin_flows": 0,
             "rst_flows": 0, "capture_bytes": 0}
    for f in flows:
        stats["fin_flows"] += f.fin
        stats["rst_flows"] += f.rst
    rnd = rng.random
    rr = rng.randrange
    tcp_seq = [0] * len(flows)
    out = open(a.output, "wb")
    buf = bytearray(GLOBAL_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, snap, 1))
    npk = octets = l3frame = v6pk = vlpk = ntcp = nudp = nicmp = nsyn = 0
    for t_us, fi, k in events:
        f = flows[fi]
        last = k == f.n - 1
        proto = f.proto
        if proto == TCP:
            flags = f.first_flags if k == 0 else F_ACK
            if last and k > 0:
                if f.fin:
                    flags = F_FIN | F_ACK
                elif f.rst:
                    flags = F_RST | F_ACK
            if flags & F_SYN:
                opts = SYN_OPTS
                plen = 0
                nsyn += 1
            elif flags & (F_FIN | F_RST):
                opts = TS_OPTS if flags & F_FIN else b""
                plen = 0
            else:
                opts = TS_OPTS
                if f.kind == "bulk":
                    x = rnd()
                    plen = 1448 if x < 0.8 else rr(1, 1448)
                else:
                    plen = 0 if rnd() < 0.85 else rr(20, 700)
            if plen:
                flags |= F_PSH if rnd() < 0.3 else 0
            seq = (f.isn + tcp_seq[fi]) & 0xFFFFFFFF
            tcp_seq[fi] += plen + (1 if flags & (F_SYN | F_FIN) else 0)
            thl = 20 + len(opts)
            # the acking side of a transfer acknowledges ~2 segments per ACK
            ack = ((f.ack0 + (2896 * k if f.kind == "ack" else 0)) & 0xFFFFFFFF) if flags & F_ACK else 0
            win = 64240 if flags & F_SYN else 502
            l4len = thl + plen
            ck = fold(f.psum + l4len + words_sum(TCPH.pack(f.sport, f.dport, seq, ack, (thl // 4) << 4, flags, win, 0, 0) + opts))
            l4 = TCPH.pack(f.sport, f.dport, seq, ack, (thl // 4) << 4, flags, win, ck, 0) + opts
            ntcp += 1
        elif proto == UDP:
            kind = f.kind
            if kind == "quic":
                dl = (1252 if rnd() < 0.7 else rr(30, 1252)) if k < 3 or rnd() < 0.6 else rr(25, 100)
            elif kind == "dns" or kind == "ntp" or kind == "rtp":
                dl = f.ulen
            else:
                dl = f.ulen if rnd() < 0.7 else rr(20, 1400)
            plen = dl
            l4len = 8 + dl
            ck = fold(f.psum + 2 * l4len + f.sport + f.dport)
            l4 = UDPH.pack(f.sport, f.dport, l4len, ck)
            nudp += 1
        else:
            plen = 56
            l4len = 64
            ck = fold(f.psum + (l4len if proto == ICMP6 else 0) + (f.icmp_type << 8) + f.icmp_id + (k & 0xFFFF))
            l4 = ICMPH.pack(f.icmp_type, 0, ck, f.icmp_id, k & 0xFFFF)
            nicmp += 1
        if f.v6:
            iplen = 40 + l4len
            iph = IP6.pack(0x60000000 | (f.tos << 20), l4len, proto, 64 if f.role == "fwd" else 57, f.src, f.dst)
            v6pk += 1
        else:
            iplen = 20 + l4len
            f.ipid = (f.ipid + 1) & 0xFFFF
            ttl = 64 if f.role == "fwd" else 54
            h = IP4.pack(0x45, f.tos, iplen, f.ipid, 0x4000, ttl, proto, 0, f.src, f.dst)
            iph = IP4.pack(0x45, f.tos, iplen, f.ipid, 0x4000, ttl, proto, ip4_checksum(h), f.src, f.dst)
        eth = f.eth
        if f.vlan:
            vlpk += 1
        wire = len(eth) + iplen
        if wire < 60:
            pad = 60 - wire  # Ethernet minimum frame (without FCS)
            wire = 60
        else:
            pad = 0
        cap = wire if wire <= snap else snap
        buf += REC.pack(BASE_EPOCH + t_us // 1_000_000, t_us % 1_000_000, cap, wire)
        hdrs = eth + iph + l4
        if cap <= len(hdrs):
            buf += hdrs[:cap]
        else:
            buf += hdrs
            buf += zeros[:cap - len(hdrs)]
        npk += 1
        octets += iplen
        l3frame += wire - len(eth)
        if len(buf) > (4 << 20):
            out.write(buf)
            stats["capture_bytes"] += len(buf)
            buf = bytearray()
    out.write(buf)
    stats["capture_bytes"] += len(buf)
    out.close()
    stats.update(packets=npk, octets=octets, frame_l3_octets=l3frame, ipv6_packets=v6pk, vlan_packets=vlpk, tcp_packets=ntcp,
                 udp_packets=nudp, icmp_packets=nicmp, syn_packets=nsyn)
    if events:
        stats["first_ts"] = BASE_EPOCH + events[0][0] / 1e6
        stats["last_ts"] = BASE_EPOCH + events[-1][0] / 1e6
    stats["ipv6_flows"] = sum(f.v6 for f in flows)
    stats["vlan_flows"] = sum(1 for f in flows if f.vlan)
    stats["max_flow_packets"] = max(f.n for f in flows)
    return stats


def write_flood(a, rng):
    """--shape flood: one packet per flow, each from its own random IPv4 source, in time order."""
    n = a.flows
    snap = a.snaplen if a.snaplen > 0 else 65535
    dur_us = max(1, int(a.duration * 1e6))
    rr = rng.randrange
    rnd = rng.random
    getrandbits = rng.getrandbits
    times = sorted([rr(dur_us) for _ in range(n)])
    srcs = rng.sample(range(0x01000000, 0xE0000000), n)  # distinct unicast-range sources: distinct keys
    victims = [bytes((203, 0, 113, 10 + i)) for i in range(4)]
    vsum = [words_sum(v) for v in victims]
    eth = ETH.pack(mac(rng), mac(rng), 0x0800)  # one link, router -> victims
    zeros = bytes(64)
    stats = {"packets": n, "flows": n, "ipv6_packets": 0, "vlan_packets": 0, "ipv6_flows": 0, "vlan_flows": 0,
             "fin_flows": 0, "rst_flows": 0, "max_flow_packets": 1}
    out = open(a.output, "wb")
    buf = bytearray(GLOBAL_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, snap, 1))
    nbytes = octets = l3frame = ntcp = nudp = nicmp = 0
    for t_us, src in zip(times, srcs):
        srcb = src.to_bytes(4, "big")
        vi = rr(4)
        dst = victims[vi]
        psum = (src >> 16) + (src & 0xFFFF) + vsum[vi]
        x = rnd()
        if x < 0.80:
            proto = TCP
            sport, dport, seq = rr(1024, 65536), (80 if rnd() < 0.5 else 443), getrandbits(32)
            ck = fold(psum + TCP + 20 + sport + dport + (seq >> 16) + (seq & 0xFFFF) + 0x5000 + F_SYN + 1024)
            l4 = TCPH.pack(sport, dport, seq, 0, 0x50, F_SYN, 1024, ck, 0)
            ntcp += 1
        elif x < 0.95:
            proto = UDP
            sport, dport = rr(1024, 65536), 53
            l4len = 8 + 32
            ck = fold(psum + UDP + 2 * l4len + sport + dport)
            l4 = UDPH.pack(sport, dport, l4len, ck) + zeros[:32]
            nudp += 1
        else:
            proto = ICMP
            ident = rr(65536)
            l4 = ICMPH.pack(8, 0, fold((8 << 8) + ident), ident, 0) + zeros[:56]
            nicmp += 1
        iplen = 20 + len(l4)
        ttl = 40 + rr(200)
        ipid = rr(65536)
        h = IP4.pack(0x45, 0, iplen, ipid, 0, ttl, proto, 0, srcb, dst)
        pkt = eth + IP4.pack(0x45, 0, iplen, ipid, 0, ttl, proto, ip4_checksum(h), srcb, dst) + l4
        wire = len(pkt)
        if wire < 60:
            pkt += zeros[:60 - wire]  # Ethernet minimum frame (without FCS)
            wire = 60
        cap = wire if wire <= snap else snap
        buf += REC.pack(BASE_EPOCH + t_us // 1_000_000, t_us % 1_000_000, cap, wire)
        buf += pkt[:cap]
        octets += iplen
        l3frame += wire - len(eth)
        if len(buf) > (4 << 20):
            out.write(buf)
            nbytes += len(buf)
            buf = bytearray()
    out.write(buf)
    nbytes += len(buf)
    out.close()
    stats.update(octets=octets, frame_l3_octets=l3frame, tcp_packets=ntcp, udp_packets=nudp, icmp_packets=nicmp,
                 syn_packets=ntcp, capture_bytes=nbytes,
                 first_ts=BASE_EPOCH + times[0] / 1e6, last_ts=BASE_EPOCH + times[-1] / 1e6)
    return stats, [1]


def equal_sizes(nflows, npackets):
    q, r = divmod(npackets, nflows)
    return [q + (i < r) for i in range(nflows)]


def generate(a):
    t0 = time.perf_counter()
    rng = random.Random(a.seed)
    if a.shape == "flood":
        stats, sizes = write_flood(a, rng)
    else:
        sizes = (flow_sizes(rng, a.flows, a.packets, a.alpha) if a.shape == "mix"
                 else equal_sizes(a.flows, a.packets))
        flows = make_flows(rng, a, sizes)
        events = flow_times(rng, flows, a.duration)
        stats = write_capture(a, flows, events, rng)
    sz = sorted(sizes)
    stats["flow_size_percentiles"] = {str(p): sz[min(len(sz) - 1, int(len(sz) * p / 100))] for p in (50, 75, 90, 99, 99.9)}
    stats["flows_ge_1000_packets"] = sum(1 for s in sizes if s >= 1000)
    stats["args"] = {"shape": a.shape, "packets": a.packets, "flows": a.flows, "seed": a.seed, "duration": a.duration,
                     "snaplen": a.snaplen, "ipv6": a.ipv6, "vlan": a.vlan, "alpha": a.alpha}
    stats["generate_seconds"] = round(time.perf_counter() - t0, 2)
    if not a.no_sidecar:
        tmp = a.output + ".json.tmp"
        with open(tmp, "w") as fh:
            json.dump(stats, fh, indent=1, sort_keys=True)
        os.replace(tmp, a.output + ".json")
    return stats


def main(argv=None):
    a = parse_args(argv)
    st = generate(a)
    print(f"{a.output}: {st['packets']} packets, {st['flows']} flows, {st['octets']} IP octets, "
          f"{st['capture_bytes'] / 2**20:.1f} MiB, IPv6 {st['ipv6_packets'] / st['packets']:.1%}, "
          f"VLAN {st['vlan_packets'] / st['packets']:.1%}, flow sizes p50/p90/p99/max "
          f"{st['flow_size_percentiles']['50']}/{st['flow_size_percentiles']['90']}/"
          f"{st['flow_size_percentiles']['99']}/{st['max_flow_packets']}, "
          f"{st['generate_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
