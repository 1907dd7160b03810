"""The statistics an operator reads at the end of a run."""

from .output import PROTOCOL_NAMES


def format_summary(stats, seconds, source=None, collectors=(), capture_drops=None, title=None, replay=None):
    """Human-readable lines from Meter.stats() (plus the run time); title: e.g. 'worker 1'."""
    read = stats["packets_read"]
    rate = read / seconds if seconds > 0 else 0.0
    lines = ["pyprobe statistics:" if title is None else f"pyprobe statistics ({title}):",
             f"  packets read          {read:>12}   ({seconds:.2f} s, {rate:,.0f} packets/s)",
             f"  packets metered       {stats['packets_metered']:>12}   {stats['octets_metered']} octets"]
    if capture_drops is not None:
        received, dropped, if_dropped = capture_drops
        lines.append(f"  libpcap               {received:>12} received, {dropped} dropped, "
                     f"{if_dropped} dropped by the interface")
    if stats["sampling"] > 1:
        lines.append(f"  packets sampled out   {stats['packets_sampled_out']:>12}   (1 in {stats['sampling']} metered)")
    ignored = {name: n for name, n in stats["packets_ignored"].items() if n}
    lines.append(f"  packets ignored       {sum(ignored.values()):>12}"
                 + ("   " + ", ".join(f"{name} {n}" for name, n in ignored.items()) if ignored else ""))
    lines.append(f"  flows created         {stats['flows_created']:>12}   {stats['flows_active']} still active")
    records = stats["records"]
    lines.append(f"  records               {sum(records.values()):>12}   "
                 + ", ".join(f"{reason} {n}" for reason, n in records.items()))
    if replay and (replay.get("files", 1) > 1 or replay.get("rounds", 1) > 1):
        lines.append(f"  replay                {replay['files']:>12} files, {replay['rounds']} rounds")
    if replay and "speed" in replay:
        lines.append(f"  real time             {replay['speed']:>12g}x asked, {replay['effective_speed']:.3f}x reached; "
                     f"packets late by median {replay['late_median'] * 1000:.1f} ms, "
                     f"99% {replay['late_p99'] * 1000:.1f} ms, max {replay['late_max'] * 1000:.1f} ms")
    if source is not None and source.truncated:
        lines.append("  input                 truncated: the capture ends inside a record")
    if stats["protocols"]:
        lines.append("  per protocol:              flows      packets         octets")
        for proto, (flows, packets, octets) in sorted(stats["protocols"].items()):
            name = PROTOCOL_NAMES.get(proto, str(proto))
            lines.append(f"    {name:<8} {flows:>20} {packets:>12} {octets:>14}")
    for c in collectors:
        extra = "".join(f", {key.replace('_', ' ')} {c[key]}" for key in ("ipv6_not_sent", "dropped", "connections")
                        if key in c)
        lines.append(f"  export to {c['collector']} ({c['version']}): {c['datagrams']} datagrams, "
                     f"{c['records']} records, {c['send_errors']} send errors, {c['template_sends']} template sends"
                     + extra)
    return "\n".join(lines)
