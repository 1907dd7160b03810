"""What every source yields: a batch of packets for the meter."""

from collections import namedtuple

# packets: the packets' bytes back to back; meta: 16 bytes per packet, native uint32
# (seconds, microseconds, offset into packets, captured length), pcapy-ng's next_batch
# layout; linktype: the packets' libpcap link type; round: a looped replay's round
# (addresses are shifted by it when asked); direction: which way the packets crossed
# their interface, "ingress" or "egress", where their link layer does not say (a live
# capture of one direction); in_if: the ifIndex of the interface they were captured on
# (0 for files: a Linux cooked v2 capture says it per packet); vlans_elsewhere: None, or
# 512 bytes, a bit per VLAN id whose tagged packets are metered on their own VLAN
# sub-interface instead (the meter skips them here); vlan: the VLAN id of the VLAN
# sub-interface they were captured on (its tag taken off by the kernel), else 0.
# An empty batch is a tick of the clock.
Batch = namedtuple("Batch", "packets meta linktype round direction in_if vlans_elsewhere vlan",
                   defaults=(0, "ingress", 0, None, 0))
