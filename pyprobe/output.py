"""Printing flow records when no collector is given: a table or JSON lines."""

import json
import time

PROTOCOL_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH",
                  58: "ICMP6", 89: "OSPF", 103: "PIM", 132: "SCTP"}
TCP_FLAG_LETTERS = "CEUAPRSF"     # CWR ECE URG ACK PSH RST SYN FIN, high bit first as nfdump shows them

TABLE_HEADER = (f"{'Date first seen':<23} {'Duration':>9} {'Proto':<5} {'Src IP Addr:Port':>21}"
                f"    {'Dst IP Addr:Port':<21} {'Flags':<8} {'Packets':>8} {'Bytes':>10}  End")


def tcp_flags_text(flags):
    return "".join(letter if flags >> (7 - bit) & 1 else "." for bit, letter in enumerate(TCP_FLAG_LETTERS))


def endpoint(address, port, ipver):
    return f"[{address}]:{port}" if ipver == 6 else f"{address}:{port}"


def format_time(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}"


def dport_text(record):
    """ICMP type.code the way nfdump shows it; the port otherwise."""
    if record.proto in (1, 58):
        return f"{record.dport >> 8}.{record.dport & 0xff}"
    return str(record.dport)


class TableWriter:
    """nfdump -o line style, times in UTC."""

    def __init__(self, stream):
        self.stream = stream
        stream.write(TABLE_HEADER + "\n")

    def write(self, records):
        lines = []
        for r in records:
            proto = PROTOCOL_NAMES.get(r.proto, str(r.proto))
            flags = tcp_flags_text(r.tcp_flags) if r.proto == 6 else ""
            src = endpoint(r.src, r.sport, r.ipver)
            dst = endpoint(r.dst, dport_text(r), r.ipver)
            lines.append(f"{format_time(r.start)} {r.end - r.start:9.3f} {proto:<5} {src:>21} -> {dst:<21} "
                         f"{flags:<8} {r.packets:>8} {r.octets:>10}  {r.end_reason}\n")
        self.stream.write("".join(lines))


class JsonWriter:
    """One JSON object per flow record, one per line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, records):
        self.stream.write("".join(json.dumps(r.as_dict()) + "\n" for r in records))
