"""Capture file formats, told apart by their magic number."""

from .._meter import SUPPORTED_LINKTYPES, linktype_name, supported_linktype_names
from ..errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
PCAP_MAGICS = frozenset({b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1",      # microsecond, either byte order
                         b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1"})     # nanosecond
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def check_magic(magic, path):
    if magic == PCAPNG_MAGIC or magic in PCAP_MAGICS:
        return
    if not magic:
        raise InputError(f"{path} is empty")
    raise InputError(f"{path} is not a pcap or pcapng capture (magic {magic.hex()})")


def check_linktype(linktype, path):
    if linktype not in SUPPORTED_LINKTYPES:
        raise InputError(f"{path}: link type {linktype} ({linktype_name(linktype)}) is not supported; "
                         f"pyprobe reads {supported_linktype_names()}")


def ready(source, path, bpf):
    """A just-opened source checked for its link type and given the filter; closed if not."""
    try:
        check_linktype(source.linktype, path)
        if bpf:
            source.set_filter(bpf)
    except InputError:
        source.close()
        raise
    return source
