"""Interfaces in the meter and the source (issue 12): each batch names the interface its
packets crossed; a VLAN sub-interface's packets, which its parent also sees tagged, are
metered once, on the sub-interface, with its VLAN id. The live side, on a router of
network namespaces, is tests/test_router.py."""

import pytest

import packets as P
from pyprobe._meter import Meter
from pyprobe.records import unpack
from pyprobe.source.live import parse_vlan_config, vlan_bitmap

T0 = 1_700_000_000_000_000
PARENT, SUB = 2, 7


def frames(n, sport, vlan=None, t=T0):
    return [(t + i, P.eth_ip_packet(4, "192.0.2.1", "198.51.100.2", 17, sport, 53, vlan=vlan)) for i in range(n)]


def test_tagged_copies_on_the_parent_are_left_to_the_sub_interface():
    meter = Meter(P.DLT_EN10MB)
    parent = frames(5, 1000, vlan=100) + frames(3, 2000) + frames(2, 3000, vlan=200)
    meter.process(*P.make_batch(parent), in_if=PARENT, vlans_elsewhere=vlan_bitmap([100, 4095]))
    meter.process(*P.make_batch(frames(5, 1000, t=T0 + 10)), in_if=SUB, vlan=100)
    got = sorted((r.in_if, r.sport, r.vlan, r.packets) for r in unpack(meter.flush()))
    assert got == [(PARENT, 2000, 0, 3), (PARENT, 3000, 200, 2), (SUB, 1000, 100, 5)]
    assert meter.stats()["packets_ignored"]["on_vlan_subinterface"] == 5
    assert meter.stats()["packets_metered"] == 10


def test_without_the_sub_interface_captured_the_parent_meters_its_tagged_packets():
    meter = Meter(P.DLT_EN10MB)
    meter.process(*P.make_batch(frames(5, 1000, vlan=100)), in_if=PARENT)
    assert [(r.in_if, r.vlan, r.packets) for r in unpack(meter.flush())] == [(PARENT, 100, 5)]


def test_a_sub_interface_names_its_vlan_over_an_inner_tag():
    """QinQ on a sub-interface: the kernel took off the outer tag (100), the record keeps it."""
    meter = Meter(P.DLT_EN10MB)
    meter.process(*P.make_batch(frames(4, 1000, vlan=300)), in_if=SUB, vlan=100)
    assert [(r.in_if, r.vlan, r.packets) for r in unpack(meter.flush())] == [(SUB, 100, 4)]


def test_the_vlan_bitmap_must_be_whole():
    with pytest.raises(ValueError, match="512 bytes"):
        Meter(P.DLT_EN10MB).process(*P.make_batch(frames(1, 1000)), vlans_elsewhere=b"\xff" * 16)


def test_vlan_config_as_the_kernel_writes_it():
    text = ("VLAN Dev name\t | VLAN ID\n"
            "Name-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n"
            "eth0.100       | 100  | eth0\n"
            "uplink        | 4094  | bond0\n")
    assert parse_vlan_config(text) == [("eth0.100", 100, "eth0"), ("uplink", 4094, "bond0")]
    bits = vlan_bitmap([0, 100, 4095])
    assert len(bits) == 512 and bits[0] == 1 and bits[12] == 1 << 4 and bits[511] == 0x80


@pytest.mark.parametrize("version", [9, 10])
def test_interface_names_never_crowd_out_records_nor_break_on_odd_text(version):
    """Round robin deals records_per_datagram() records to each collector: the interface
    records (sent in their own datagrams when they do not fit) must not shrink it below what
    it is with one interface (whose options template rides with the others). A name
    that is not UTF-8 (surrogate-escaped by Python) or an alias in any script is written
    cut to whole characters, never an error."""
    from pyprobe.export.ipfix import IpfixEncoder
    from pyprobe.export.v9 import V9Encoder
    encoder = (V9Encoder if version == 9 else IpfixEncoder)()
    encoder.interfaces = [(1, "eth0", "")]
    alone = encoder.records_per_datagram()
    encoder.interfaces = [(i, f"veth{i}\udcff", "ünïcode " * 20) for i in range(1, 41)]
    assert encoder.records_per_datagram() == alone
    datagrams = encoder.encode(b"", 1_700_000_000_000)
    assert len(datagrams) > 1 and all(len(d) <= encoder.max_size for d in datagrams)
