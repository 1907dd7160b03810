"""The statistics an operator reads at the end of a run."""

from .output import PROTOCOL_NAMES

# What the capture parser skips (source/file.py's statistics), for people.
SKIPPED = {"bad_times": "with a time no record can carry", "undecoded": "of a link type not decoded",
           "filtered": "rejected by the filter"}


def format_summary(stats, seconds, collectors=(), capture_drops=None, title=None, source=None):
    """Human-readable lines from Meter.stats() (plus the run time); title: e.g. 'worker 1';
    source: the source's own statistics."""
    read = stats["packets_read"]
    rate = read / seconds if seconds > 0 else 0.0
    lines = ["pyprobe statistics:" if title is None else f"pyprobe statistics ({title}):",
             f"  packets read          {read:>12}   ({seconds:.2f} s, {rate:,.0f} packets/s)",
             f"  packets metered       {stats['packets_metered']:>12}   {stats['octets_metered']} octets"]
    if capture_drops is not None:
        received, dropped, if_dropped = capture_drops
        lines.append(f"  libpcap               {received:>12} received, {dropped} dropped, "
                     f"{if_dropped} dropped by the interface")
    missed = sum(row.get("missed", 0) for row in (source or {}).get("interfaces", ()))
    if missed:
        lines.append(f"  packets missed        {missed:>12}   crossed an interface before its capture opened "
                     "(it came up or appeared meanwhile; by its own counters)")
    if stats["sampling"] > 1:
        lines.append(f"  packets sampled out   {stats['packets_sampled_out']:>12}   (1 in {stats['sampling']} metered)")
    ignored = {name: n for name, n in stats["packets_ignored"].items() if n}
    lines.append(f"  packets ignored       {sum(ignored.values()):>12}"
                 + ("   " + ", ".join(f"{name} {n}" for name, n in ignored.items()) if ignored else ""))
    lines.append(f"  flows created         {stats['flows_created']:>12}   {stats['flows_active']} still active")
    records = stats["records"]
    lines.append(f"  records               {sum(records.values()):>12}   "
                 + ", ".join(f"{reason} {n}" for reason, n in records.items() if n or reason != "immediate"))
    if stats["cache_updates"] or stats["packets_not_monitored"]:
        lines.append(f"  permanent cache       {stats['cache_updates']:>12} updates (each every flow's totals), "
                     f"{stats['packets_not_monitored']} packets not monitored (the cache was full)")
    if source and (source.get("files", 1) > 1 or source.get("rounds", 1) > 1):
        lines.append(f"  replay                {source['files']:>12} files, {source['rounds']} rounds")
    if source and "speed" in source:
        lines.append(f"  real time             {source['speed']:>12g}x asked, {source['effective_speed']:.3f}x reached; "
                     f"packets late by median {source['late_median'] * 1000:.1f} ms, "
                     f"99% {source['late_p99'] * 1000:.1f} ms, max {source['late_max'] * 1000:.1f} ms")
    if source and source.get("gaps_cut"):
        lines.append(f"  pauses cut            {source['gaps_cut']:>12}   to {source['max_gap']:g} s of wall time each, "
                     f"the longest {source['longest_gap']:,.0f} s of capture time")
    skipped = (source or {}).get("skipped", {})
    if any(skipped.values()):
        lines.append(f"  records skipped       {sum(skipped.values()):>12}   "
                     + ", ".join(f"{SKIPPED[key]} {n}" for key, n in skipped.items() if n))
    if source and source.get("damage"):
        lines.append(f"  input damaged         {source['damage']}; the packets before it were metered")
    if source and source.get("interfaces"):
        lines += interface_lines(source["interfaces"])
    if stats["protocols"]:
        lines.append("  per protocol:              flows      packets         octets")
        for proto, (flows, packets, octets) in sorted(stats["protocols"].items()):
            name = PROTOCOL_NAMES.get(proto, str(proto))
            lines.append(f"    {name:<8} {flows:>20} {packets:>12} {octets:>14}")
    for c in collectors:
        extra = "".join(f", {key.replace('_', ' ')} {c[key]}"
                        for key in ("ipv6_not_sent", "dropped", "resent", "connections", "paced_seconds") if key in c)
        lines.append(f"  export to {c['collector']} ({c['version']}): {c['datagrams']} datagrams, "
                     f"{c['records']} records, {c['send_errors']} send errors, {c['template_sends']} template sends"
                     + extra)
    return "\n".join(lines)


def interface_lines(rows):
    """Per interface and direction captured: packets, IP octets (as the IP headers state
    them, which is what the flows count), drops (libpcap's and the interface's) and what
    crossed it while it was not captured (it came up or appeared before its capture opened);
    then the interfaces left out and why."""
    lines = ["  per interface:      ifIndex direction      packets      IP octets    dropped     missed"]
    for row in rows:
        if "direction" in row:
            lines.append(f"    {row['name']:<16} {row['ifindex']:>6} {row['direction']:<9} {row['packets']:>12} "
                         f"{row['ip_octets']:>14} {row['dropped'] + row['dropped_by_interface']:>10} "
                         f"{row.get('missed', 0):>10}" + ("   (down)" if row.get("state") == "down" else ""))
        else:
            lines.append(f"    {row['name']:<16} {row['ifindex']:>6} {row['state']}")
    return lines
