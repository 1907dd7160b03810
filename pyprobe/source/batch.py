"""What every source yields: a batch of packets for the meter."""

from collections import namedtuple

# packets: the packets' bytes back to back; meta: 16 bytes per packet, native uint32
# (seconds, microseconds, offset into packets, captured length), pcapy-ng's next_batch
# layout; linktype: the packets' libpcap link type; round: a looped replay's round
# (addresses are shifted by it when asked); direction: which way the packets crossed
# their interface, "ingress" or "egress", where their link layer does not say (a live
# capture of one direction). An empty batch is a tick of the clock.
Batch = namedtuple("Batch", "packets meta linktype round direction", defaults=(0, "ingress"))
