"""sysUptime-relative times for NetFlow v5 and v9.

v5 and v9 give a record's first/last as milliseconds of exporter uptime, and the
header gives the uptime and the wall time of export: a collector computes
absolute time = export time - (uptime - first). Those are 32-bit counters, and a
replayed capture may jump by years, so each datagram gets an export time and a
boot time under which all its records fit, and the records are grouped so that
they can. In the common case the boot time stays put and the uptime just runs.
"""

SAFE_MS = 2**31 - 1        # collectors differ on signed/unsigned arithmetic: stay in the safe half
BOOT_LEAD_MS = 60_000      # "booted" a minute before the first flow: nfdump reads an uptime of 0 as no time
MAX_SPAN_MS = SAFE_MS - 2 * 10 * BOOT_LEAD_MS      # room for the longest boot lead
MAX_ACTIVE_SECONDS = 24 * 86400    # the longest flow such times can state, in whole days
MAX_HEADER_SECONDS = 0xFFFFFFFF    # export headers carry 32-bit seconds: the end of the year 2106


def header_seconds(ms):
    """An export header's 32-bit seconds for a time in ms: a time past 2106 (a corrupt or
    shifted capture) is held at the field's end rather than wrapped to 1970."""
    return min(max(ms // 1000, 0), MAX_HEADER_SECONDS)


class Uptime:
    def __init__(self, boot_lead_ms=BOOT_LEAD_MS):
        self.boot_ms = None
        self.boot_lead_ms = min(boot_lead_ms, BOOT_LEAD_MS * 10)

    def header_times(self, now_ms, first_ms, last_ms):
        """(export_ms, uptime_ms) for a datagram whose records span first_ms..last_ms.

        The export time is a whole second (the v9 header has no finer field),
        rounded up so that no record ends after it."""
        export_ms = now_ms if now_ms - first_ms <= MAX_SPAN_MS else last_ms
        export_ms = min(-(-export_ms // 1000), MAX_HEADER_SECONDS) * 1000
        if self.boot_ms is None or self.boot_ms > first_ms or export_ms - self.boot_ms > SAFE_MS:
            self.boot_ms = first_ms - self.boot_lead_ms      # first run, or a replayed time jump: "reboot"
        return export_ms, export_ms - self.boot_ms
