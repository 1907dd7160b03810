"""tcpdump filters: compiled by libpcap; for capture files run by the capture parser,
for live captures run by the kernel.

libpcap turns the expression into a classic BPF program for one link type; the
parser (ext/_capture.pyx) runs it on each packet in compiled code. A pcapng file
can hold interfaces of several link types, so there is a program per link type.
A live capture's program goes onto its socket (live_program, _capture.attach_filter).
"""

import re
import struct

from .._capture import MAX_CAPLEN
from ..errors import InputError

# Link types whose number in a capture file differs from libpcap's DLT_ for them.
DLT_OF_LINKTYPE = {101: 12, 14: 12}      # LINKTYPE_RAW, OpenBSD's raw IP: DLT_RAW
DLT_EN10MB = 1
DLT_LINUX_SLL = 113
SLL_HEADER_BYTES = 16
SKF_AD_PROTOCOL, SKF_AD_PKTTYPE = 0xFFFFF000, 0xFFFFF004      # the kernel's SKF_AD_OFF + ...


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


def live_program(expression, linktype, snaplen):
    """The program for a live capture's socket, as libpcap's setfilter would make it (None: no
    filter; `ret snaplen` for every packet), or None if the kernel cannot run it (libpcap then
    filters in user space). pcapy.PcapError if it cannot apply to the link type."""
    import pcapy
    insns = pcapy.compile(linktype, snaplen, expression or "", 1, 0xFFFFFFFF).get_bpf()
    if linktype == DLT_LINUX_SLL:
        insns = cooked(insns)
        if insns is None:
            return None
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns)


PACKET_OUTGOING = 4                # the kernel's packet type of what the host sent
BPF_LDB_ABS, BPF_JEQ_K, BPF_RET_K = 0x30, 0x15, 0x06


def directed(program, way):
    """A live capture's program (bytes) that first passes only packets of one direction
    ("ingress" or "egress"), by the kernel's packet type. libpcap leaves a socket every
    direction and drops the other in user space: the kernel then counts both, in the
    capture's statistics and in its buffer."""
    outgoing_passes = way == "egress"
    test = [(BPF_LDB_ABS, 0, 0, SKF_AD_PKTTYPE),
            (BPF_JEQ_K, 1 if outgoing_passes else 0, 0 if outgoing_passes else 1, PACKET_OUTGOING),
            (BPF_RET_K, 0, 0, 0)]
    return b"".join(struct.pack("=HBBI", *insn) for insn in test) + program


def cooked(insns):
    """A Linux cooked capture's socket is handed packets without the 16-byte header libpcap
    makes up for them: loads from the packet move back by it, and the two header fields a
    filter may test are the kernel's packet type and protocol (libpcap's fix_offset). None
    if the program reads another part of the header (libpcap then filters in user space)."""
    fixed = []
    for code, jt, jf, k in insns:
        if code & 0x07 in (0x00, 0x01) and code & 0xE0 in (0x20, 0x40, 0xA0):     # LD/LDX ABS, IND, MSH
            if k >= SLL_HEADER_BYTES:
                k -= SLL_HEADER_BYTES
            elif k == 0:
                k = SKF_AD_PKTTYPE
            elif k == 14:
                k = SKF_AD_PROTOCOL
            else:
                return None
        fixed.append((code, jt, jf, k))
    return fixed


def names_vlan(expression):
    """True if the expression tests VLAN tags: on a live Linux socket libpcap compiles those
    tests for the tag the kernel took off the packet, which a program compiled here cannot
    know of, so libpcap puts such a filter on the socket itself."""
    return bool(expression) and re.search(r"\bvlan\b", expression) is not None
