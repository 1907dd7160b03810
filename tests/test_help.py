"""--help (and the manual page made from it) says what the tables hold: each tracking level
keys on what its definition keys on, and a tracking level, a transport or a fault kind
added to its table shows in the help without the prose being edited."""

import json
import re
import subprocess
import sys

from pyprobe import help as probe_help
from pyprobe.definitions import LEVELS


def level_rows(epilog):
    """{level: its text} of the epilog's tracking levels block."""
    block = epilog.split("tracking levels", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^  (\S+) +(.+)$", block, re.M))


def key_words(rows, level):
    """The words a level's row keys on, 'LEVEL plus ...' expanded."""
    text = re.sub(r" \(.*\)$", "", rows[level])
    before, plus, added = text.rpartition(" plus ")
    words = set(re.split(r", | and ", added))
    return words | key_words(rows, before) if plus else words


def test_each_tracking_level_is_described_by_what_it_keys_on():
    rows = level_rows(probe_help.epilog())
    assert list(rows) == list(LEVELS)
    for level, members in LEVELS.items():
        assert key_words(rows, level) == {probe_help.KEY_WORDS[m] for m in members}, level
    assert rows["ip"] == "addresses and input interface"      # (the flows' ifIndex is in every level's key)


ADDED = """
import json
from pyprobe import definitions, transport
from pyprobe.generate import faults
definitions.LEVELS["dscp"] = ("src", "dst", "in_if", "tos")
transport.TRANSPORTS["sctp"] = type("SctpTransport", (), {"stream": True})
faults.KINDS["jumble"] = "a datagram's records in another order"
from pyprobe import settings
print(json.dumps({"probe": settings.build_parser().format_help(),
                  "generate": settings.build_parser("generate").format_help()}))
"""


def test_a_level_a_transport_and_a_fault_kind_added_to_their_tables_are_in_the_help():
    out = subprocess.run([sys.executable, "-c", ADDED], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    probe, generate = json.loads(out).values()
    rows = level_rows(probe)
    probe, generate = (" ".join(text.split()) for text in (probe, generate))      # (as one line)
    assert key_words(rows, "dscp") == {"addresses", "input interface", "TOS"}
    assert "--record RECORD the flow record: a tracking level, ip, proto, port, full, vlan, ether or dscp" in probe
    for text in (probe, generate):
        assert ("-P {udp,tcp,sctp} transport to the collectors: udp, tcp or sctp (default udp; tcp or sctp for "
                "IPFIX only)") in text
    assert 'transport = "udp"|"tcp"|"sctp"' in probe
    assert "jumble a datagram's records in another order" in generate
