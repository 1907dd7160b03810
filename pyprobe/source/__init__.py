"""Packet sources: capture files (pcap, pcapng, gzip, standard input) and live
interfaces, read in batches.

Every source has one interface, which the probe's run loop is written against:

    linktype        the libpcap link type of its packets
    path            what to call it in messages (a file name, '-', an interface)
    live            True: capturing on an interface
    ticking         True: batches come (empty ones too) at least every 100 ms,
                    and clock_us() is the flow clock between packets (live
                    capture: the wall clock; a real-time replay: the capture
                    time due now)
    size            bytes to read, when known (progress display), else None
    packets         packets read so far
    bytes_read      bytes of packets and metadata read so far (progress)
    truncated       True once the input turned out damaged or cut short
    damage          (files) what was wrong with it, in words, or None
    set_filter(bpf) a tcpdump-style filter, before the first batch
    batches()       yields Batch(packets, meta, linktype, round, direction, in_if,
                    vlans_elsewhere, vlan) (batch.py): pcapy-ng's next_batch layout,
                    so no Python runs per packet
    serial          +1 whenever the interfaces captured change (0 for files)
    interfaces()    [(ifIndex, name, description)] captured now ([] for files)
    stop()          from a signal handler: end the batches soon
    close()         release what it holds
    drops()         libpcap's (received, dropped, dropped by the interface), or None

    dating          None, or (a real-time replay dated now) an object with
                    dated_records(records, stride) and export_time_us(flow clock us)
    status()        a few words for the progress line ('' for none)
    statistics()    a dict of the source's own counters for the summary (live: its
                    "interfaces", one row per capture, for ctl interfaces too)

file.py reads capture files and streams (through the compiled parser,
ext/_capture.pyx, and bpf.py's filters), replay.py merges, loops and paces
files, live.py captures on interfaces.
"""

import socket

from ..parsers import parse_listen_address
from ..transport import parse_address, resolve
from .batch import Batch
from .file import FileSource
from .formats import ready
from .replay import ReplaySource


def open_source(settings, fanout_group=None):
    """The capture files or the live interface of these settings, its filter set (live: never
    the probe's own export and metrics traffic)."""
    if settings.interface:
        from .live import LiveSource      # (libpcap's binding only for live capture)
        source = LiveSource(settings.interface, snaplen=settings.snaplen, promiscuous=not settings.no_promisc,
                            buffer_bytes=settings.buffer, fanout_group=fanout_group,
                            direction=settings.metered_direction)
        return ready(source, source.path, without_own_traffic(settings.filter, settings))
    source = ReplaySource(settings.read, speed=settings.realtime, rounds=settings.loop,
                          shift=settings.shift_addresses, dated=not settings.keep_time, max_gap=settings.max_gap)
    return ready(source, source.path, settings.filter)


def without_own_traffic(bpf, settings):
    """The filter, narrowed so that a capture on the interfaces the probe talks over (lo, any)
    never meters the probe's own export or its metrics endpoint: metering one's own export
    makes more export, a known trap."""
    own = [f"({spec.transport} and dst host {address} and dst port {port})"
           for spec in settings.all_collectors for address, port in _exported_to(spec)]
    if settings.metrics:
        port = parse_listen_address(settings.metrics)[1]
        own.append(f"(tcp and port {port})")
    if not own:
        return bpf
    exclusion = "not (" + " or ".join(own) + ")"
    return f"({bpf}) and {exclusion}" if bpf else exclusion


def _exported_to(spec):
    """[(address, port)] the collector's transport sends to, resolved as the transport does
    (none if the name does not resolve: the collector then counts its own failures)."""
    host, port = parse_address(spec.address)
    try:
        _, sockaddr = resolve(spec.address, host, port,
                              socket.SOCK_STREAM if spec.transport == "tcp" else socket.SOCK_DGRAM)
    except ValueError:
        return []
    return [(sockaddr[0], port)]


__all__ = ["Batch", "FileSource", "ReplaySource", "open_source"]
