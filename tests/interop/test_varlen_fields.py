"""Interop: a bounded string field (pyprobe/fields.py, "text:N") in exported records,
dissected by tshark: in IPFIX in RFC 7011 section 7's variable-length form (a length
octet, or 255 and two more), in v9 in its N bytes, zero-padded.

The records carry applicationName in a member appended to the table's record
(tests/bounded.py); they go through the real encoders to a loopback socket, and
tshark must read back each record's string beside its key, with every record
arriving in whole datagrams no larger than the limit.
"""

import socket

import pytest

import bounded
from collectors import UdpSink, tshark_decode, tshark_expert, write_pcap  # noqa: E402
from pyprobe.export.ipfix import IpfixEncoder
from pyprobe.export.v9 import V9Encoder

NAMES = bounded.NAMES * 3


def export(encoder, tmp_path):
    """The records through the encoder to a loopback socket; tshark's flows of the capture."""
    with UdpSink() as sink:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            for datagram in encoder.encode(bounded.records(NAMES), bounded.T0_US // 1000 + 5000):
                out.sendto(datagram, ("127.0.0.1", sink.port))
    assert sink.datagrams and max(map(len, sink.datagrams)) <= encoder.max_size
    pcap = tmp_path / "export.pcap"
    write_pcap(sink.datagrams, pcap, sink.port)
    assert tshark_expert(pcap, sink.port) == []
    return [flow for frame in tshark_decode(pcap, sink.port) for flow in frame["flows"]]


@pytest.mark.parametrize("encoder_class", [IpfixEncoder, V9Encoder])
def test_string_reaches_tshark(encoder_class, tmp_path):
    encoder = encoder_class(max_size=1472, record=bounded.RECORD, stride=bounded.STRIDE, table=bounded.TABLE)
    flows = export(encoder, tmp_path)
    decoded = {flow["sport"]: flow["fields"].get("cflow.appl_name", "") for flow in flows}
    assert decoded == {bounded.SPORT + i: name for i, name in enumerate(NAMES)}
    assert encoder.records_sent == len(NAMES)
