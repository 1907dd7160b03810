"""Packet sources: capture files (pcap, pcapng, gzip, standard input) and live
interfaces, read in batches.

Every source has one interface, which the probe's run loop is written against:

    linktype        the libpcap link type of its packets
    path            what to call it in messages (a file name, '-', an interface)
    live            True: the wall clock is the flow clock, and batches come
                    (empty ones too) at least every 100 ms
    in_if           the flows' input interface (ifIndex; 0 for files)
    size            bytes to read, when known (progress display), else None
    packets         packets read so far
    truncated       True once the input turned out damaged or cut short
    set_filter(bpf) a tcpdump-style filter, before the first batch
    batches()       yields (packet_bytes, packed_meta): pcapy-ng's next_batch
                    layout, 16 bytes of (seconds, microseconds, offset,
                    captured length) per packet, so no Python runs per packet
    stop()          from a signal handler: end the batches soon
    close()         release what it holds
    drops()         libpcap's (received, dropped, dropped by the interface), or None

file.py reads capture files and streams, stream.py is the feeder process for
standard input and gzip, live.py captures on an interface.
"""

from .._meter import SUPPORTED_LINKTYPES, linktype_name, supported_linktype_names
from ..errors import InputError
from .file import FileSource
from .live import LiveSource


def open_source(settings, fanout_group=None):
    """The capture file or the live interface of these settings, its filter set."""
    if settings.interface is not None:
        source = LiveSource(settings.interface, snaplen=settings.snaplen, promiscuous=not settings.no_promisc,
                            buffer_bytes=settings.buffer, fanout_group=fanout_group)
    else:
        source = FileSource(settings.read)
    try:
        if source.linktype not in SUPPORTED_LINKTYPES:
            raise InputError(f"{source.path}: link type {source.linktype} ({linktype_name(source.linktype)}) "
                             f"is not supported; pyprobe reads {supported_linktype_names()}")
        if settings.filter:
            source.set_filter(settings.filter)
    except InputError:
        source.close()
        raise
    return source


__all__ = ["FileSource", "LiveSource", "open_source"]
