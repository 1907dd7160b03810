"""A small, deliberately naive pure-Python model of pyprobe's flow cache.

It follows /work/notes/SPEC.md sections "Flow key by -T level" and "Clock and expiry":
a dict of flows, a linear scan for expiry before every packet, and a global
counter for "least recently touched". Clarity over speed.

Input: a list of already-decoded packets (Pkt). Output: a list of record dicts
with the keys of pyprobe's JSON records, except that times are integer
microseconds in `first_us` / `last_us` instead of float `start` / `end`.
"""
from collections import namedtuple

# One decoded packet. time_us is the capture timestamp (sec*1e6 + usec).
Pkt = namedtuple(
    "Pkt",
    "time_us ipver src dst proto sport dport tos in_if vlan src_mac dst_mac mpls_label octets tcp_flags",
)

DEFAULT_TIMEOUTS = {  # seconds (Cisco defaults, SPEC.md)
    "general": 15, "tcp": 15, "udp": 15, "icmp": 15,
    "maxlife": 1800, "tcp.fin": 0, "tcp.rst": 0,
}

TCP_FIN = 0x01
TCP_RST = 0x04

KEY_LEVELS = ("full", "port", "proto", "ip", "vlan", "ether")

RECORD_FIELDS = (
    "src", "dst", "ipver", "proto", "sport", "dport", "packets", "octets",
    "first_us", "last_us", "tcp_flags", "tos", "vlan", "in_if",
    "src_mac", "dst_mac", "mpls_label", "end_reason",
)


def seconds_to_us(s):
    return int(round(s * 1_000_000))


def flow_key(p, level):
    """The key tuple of packet p at key level `level` (SPEC.md "Flow key by -T level")."""
    if level == "full":
        return (p.ipver, p.src, p.dst, p.proto, p.sport, p.dport, p.tos, p.in_if)
    if level == "port":
        return (p.ipver, p.src, p.dst, p.proto, p.sport, p.dport, p.in_if)
    if level == "proto":
        return (p.ipver, p.src, p.dst, p.proto, p.in_if)
    if level == "ip":
        return (p.ipver, p.src, p.dst, p.in_if)
    if level == "vlan":
        return flow_key(p, "full") + (p.vlan,)
    if level == "ether":
        return flow_key(p, "vlan") + (p.src_mac, p.dst_mac)
    raise ValueError(level)


def key_proto(p, level):
    """proto as it appears in the key / record: 0 at level ip."""
    return 0 if level == "ip" else p.proto


def key_ports(p, level):
    """(sport, dport) as they appear in the key / record: 0 at levels proto and ip."""
    if level in ("proto", "ip"):
        return 0, 0
    return p.sport, p.dport


def class_timeout(proto, timeouts):
    """Inactive timeout (seconds) of the class of a key protocol."""
    if proto == 6:
        return timeouts["tcp"]
    if proto == 17:
        return timeouts["udp"]
    if proto in (1, 58):
        return timeouts["icmp"]
    return timeouts["general"]


class Flow:
    def __init__(self, p, level, now, touch, timeouts):
        # The record gives the packets' own times; the timeouts run on the clock (now), which
        # may be past a packet's time: from when the flow began and was last touched.
        self.created_us = self.touched_us = now
        sport, dport = key_ports(p, level)
        self.rec = {
            "src": p.src, "dst": p.dst, "ipver": p.ipver,
            "proto": key_proto(p, level), "sport": sport, "dport": dport,
            "packets": 1, "octets": p.octets,
            "first_us": p.time_us, "last_us": p.time_us,
            "tcp_flags": p.tcp_flags,
            # not in every key: first packet's value
            "tos": p.tos, "vlan": p.vlan, "in_if": p.in_if,
            "src_mac": p.src_mac, "dst_mac": p.dst_mac, "mpls_label": p.mpls_label,
        }
        self.inactive_us = seconds_to_us(class_timeout(self.rec["proto"], timeouts))
        self.tcp_end_class = False  # inactive timeout is tcp.fin / tcp.rst
        self.touched = touch

    def record(self, reason):
        r = dict(self.rec)
        r["end_reason"] = reason
        return r


class FlowModel:
    """The flow cache, fed one decoded packet at a time (mirrors pyprobe._meter.Meter)."""

    def __init__(self, key_level="full", timeouts=None, max_flows=65536):
        assert key_level in KEY_LEVELS
        t = dict(DEFAULT_TIMEOUTS)
        if timeouts:
            t.update(timeouts)
        self.timeouts = t
        self.key_level = key_level
        self.max_flows = max_flows
        self.maxlife_us = seconds_to_us(t["maxlife"])
        self.fin_us = seconds_to_us(t["tcp.fin"])
        self.rst_us = seconds_to_us(t["tcp.rst"])
        self.flows = {}     # key -> Flow
        self.now = None     # the clock, never goes backwards
        self.counter = 0    # incremented on every create / update: "touch" time

    def _advance(self, time_us):
        self.now = time_us if self.now is None else max(self.now, time_us)

    def _expire_due(self):
        """Expire every flow that is due at self.now; return their records."""
        out = []
        for key in list(self.flows):
            f = self.flows[key]
            idle = self.now - f.touched_us > f.inactive_us
            active = self.now - f.created_us >= self.maxlife_us
            if idle:
                out.append(f.record("tcp_end" if f.tcp_end_class else "idle"))
                del self.flows[key]
            elif active:
                out.append(f.record("active"))
                del self.flows[key]
        return out

    def expire(self, time_us):
        """Clock tick without a packet."""
        self._advance(time_us)
        return self._expire_due()

    def packet(self, p):
        """Meter one packet; return the records expired because of it (before or after metering)."""
        self._advance(p.time_us)
        now = self.now
        out = self._expire_due()

        key = flow_key(p, self.key_level)
        self.counter += 1
        f = self.flows.get(key)
        if f is not None:
            f.rec["packets"] += 1
            f.rec["octets"] += p.octets
            f.rec["last_us"] = max(f.rec["last_us"], p.time_us)
            f.touched_us = now
            f.rec["tcp_flags"] |= p.tcp_flags
            f.touched = self.counter
        else:
            if len(self.flows) >= self.max_flows:
                lru = min(self.flows, key=lambda k: self.flows[k].touched)
                out.append(self.flows.pop(lru).record("cache_full"))
            f = Flow(p, self.key_level, now, self.counter, self.timeouts)
            self.flows[key] = f

        # TCP end (only when the key's proto is 6); RST takes precedence over FIN
        if f.rec["proto"] == 6:
            flags = f.rec["tcp_flags"]
            if flags & TCP_RST:
                end_us = self.rst_us
            elif flags & TCP_FIN:
                end_us = self.fin_us
            else:
                end_us = None
            if end_us is not None:
                if end_us == 0:
                    out.append(f.record("tcp_end"))
                    del self.flows[key]
                else:
                    f.inactive_us = end_us
                    f.tcp_end_class = True
        return out

    def flush(self):
        """End of input: every remaining flow expires with reason eof."""
        out = [f.record("eof") for f in self.flows.values()]
        self.flows.clear()
        return out


def run_model(packets, key_level="full", timeouts=None, max_flows=65536):
    """Meter `packets` (list of Pkt, in input order), then flush; return all records."""
    m = FlowModel(key_level, timeouts, max_flows)
    records = []
    for p in packets:
        records += m.packet(p)
    records += m.flush()
    return records
