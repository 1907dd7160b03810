"""tcpdump filters for capture files: compiled by libpcap, run by the capture parser.

libpcap turns the expression into a classic BPF program for one link type; the
parser (ext/_capture.pyx) runs it on each packet in compiled code. A pcapng file
can hold interfaces of several link types, so there is a program per link type.
"""

import struct

from .._capture import MAX_CAPLEN
from ..errors import InputError

# Link types whose number in a capture file differs from libpcap's DLT_ for them.
DLT_OF_LINKTYPE = {101: 12, 14: 12}      # LINKTYPE_RAW, OpenBSD's raw IP: DLT_RAW
DLT_EN10MB = 1


def compile_filter(expression, linktype):
    """The expression as BPF instructions for packets of this link type (bytes, 8 per
    instruction, as the parser reads them); None if it cannot apply to that link type
    ('ether host' on raw IP). A filter libpcap cannot compile even for Ethernet, the
    link type every primitive applies to, is a bad filter: InputError."""
    import pcapy                  # (a run without a filter starts faster without libpcap's binding)
    try:
        program = _compile(expression, linktype)
    except pcapy.PcapError as e:
        try:
            _compile(expression, DLT_EN10MB)
        except pcapy.PcapError:
            raise InputError(f"bad filter {expression!r}: {e}") from None
        return None
    return b"".join(struct.pack("=HBBI", *insn) for insn in program.get_bpf())


def _compile(expression, linktype):
    import pcapy
    return pcapy.compile(DLT_OF_LINKTYPE.get(linktype, linktype), MAX_CAPLEN, expression, 1, 0xFFFFFFFF)
