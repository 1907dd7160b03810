"""Encoders from packed flow records to export datagrams, one module per version.

Each version declares what it can carry (its CAPABILITIES, beside its encoder);
what depends on the versions in use asks here, never `version == 5`.
"""

from .ipfix import IpfixEncoder
from .._encode import MAX_ACTIVE_SECONDS
from .v5 import V5Encoder
from .v9 import V9Encoder

ENCODERS = {5: V5Encoder, 9: V9Encoder, 10: IpfixEncoder}
VERSIONS = tuple(ENCODERS)


def capabilities(version):
    return ENCODERS[version].CAPABILITIES


def export_limits(versions):
    """What the meter must respect for records every one of these versions can state:
    (longest active timeout in seconds, whether counters must stay within 32 bits)."""
    caps = [capabilities(v) for v in versions]
    longest = min((c.max_active_seconds for c in caps), default=float("inf"))
    return longest, any(c.counter_bits == 32 for c in caps)


def clamp_timeouts(timeouts, versions, default_active):
    """The timeouts the meter runs with for these export versions, and a warning if the
    active timeout had to be shortened (None if not). Start, SIGHUP and the control socket
    all come here, so they agree."""
    longest, _ = export_limits(versions)
    active = timeouts.get("maxlife", default_active)
    if active <= longest:
        return dict(timeouts), None
    names = "/".join(capabilities(v).name for v in sorted(set(versions))
                     if capabilities(v).max_active_seconds < active)
    return ({**timeouts, "maxlife": longest},
            f"active timeout {active:g}s is longer than {names} times can say; using {longest:g}s")


__all__ = ["ENCODERS", "VERSIONS", "MAX_ACTIVE_SECONDS", "capabilities", "export_limits", "clamp_timeouts"]
