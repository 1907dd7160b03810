# The link types pyprobe knows (pyprobe._meter, included by ext/_meter.pyx), and how much of
# a packet the decoder reads.

# Link types: the number libpcap gives, a name for people, and whether decode_packet
# (ext/decode.pxd) decodes it. Help text and error messages read this table.
LINKTYPES = {
    DLT_NULL: ("BSD loopback", True), DLT_EN10MB: ("Ethernet", True), 9: ("PPP", False), 10: ("FDDI", False),
    DLT_RAW_BSD: ("raw IP", True), DLT_RAW_OPENBSD: ("raw IP", True), DLT_RAW: ("raw IP", True),
    104: ("Cisco HDLC", False), 105: ("802.11", False), 107: ("Frame Relay", False),
    DLT_LOOP: ("OpenBSD loopback", True), DLT_LINUX_SLL: ("Linux cooked (SLL)", True),
    127: ("802.11 radiotap", False), 226: ("Solaris IPNET", False), DLT_IPV4: ("raw IPv4", True),
    DLT_IPV6: ("raw IPv6", True), 239: ("Linux NFLOG", False), DLT_LINUX_SLL2: ("Linux cooked v2 (SLL2)", True),
}
SUPPORTED_LINKTYPES = frozenset(number for number, (_, decoded) in LINKTYPES.items() if decoded)


def linktype_name(number):
    return LINKTYPES.get(number, ("unknown", False))[0]


def supported_linktype_names():
    """'Ethernet, Linux cooked (SLL), ...': each decoded link type's name once, in table order."""
    return ", ".join(dict.fromkeys(name for name, decoded in LINKTYPES.values() if decoded))


# The bytes of a packet the decoder can need: Ethernet (14), three VLAN tags (12), four MPLS
# labels (16), PPPoE and PPP (8), IPv6 (40) and 120 bytes of extension headers, TCP up to its
# flags (14): 224, rounded up. Live capture's default snap length: a record's octets come from
# the IP header, so not capturing the payload loses nothing, and saves copying it.
HEADER_BYTES = 256
