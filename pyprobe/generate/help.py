"""The help text of pyprobe generate."""

from .faults import DEFAULT_EVERY, KINDS

DESCRIPTION = """\
pyprobe generate makes synthetic flow records from a traffic profile and sends them
to NetFlow v5/v9 or IPFIX collectors through pyprobe's own export (every export flag
of pyprobe works here), or prints them when no collector is given. It is for testing
and sizing collectors: a realistic, controllable, repeatable stream, and with
--expect the records a correct collector must have stored."""


def epilog():
    return """\
records:
  Records are made in compiled code from the profile (--profile FILE, TOML, see
  README; else a default mix of TCP, UDP and ICMP over IPv4 and IPv6 with heavy-tailed
  sizes). Flows end now (the wall clock) with their durations before, unless
  --start-time pins the time line: record i then ends at START + i/RATE, so with
  --seed the same command sends the same datagrams. Records go out in steps of a few
  milliseconds: a --rate the machine cannot keep makes them fall behind, logged once,
  and the statistics say the rate achieved and how far behind it ended. Without
  --rate, records go to a collector at 1000/s and are printed (no -n) as fast as
  possible; --rate paces either. RATE also spaces a pinned time line (1000/s unless
  given).

routers:
  --exporters N deals the records out to N simulated routers, each its own exporting
  process: observation domain / v9 source id / v5 engine id BASE+i, sequence numbers,
  uptime (each booted at a different time) and template timers. With
  --exporter-address PREFIX, router i sends from the (i+1)th address of PREFIX, so a
  collector that tells exporters apart by address sees N of them. 127.0.0.0/8 is
  local on Linux; other addresses must be added to an interface first
  (ip addr add 192.0.2.1/24 dev lo).

faults (--fault KIND[=EVERY], one every EVERY datagrams, default """ + str(DEFAULT_EVERY) + """, repeatable):
""" + "".join(f"  {kind:<22}{text}\n" for kind, text in KINDS.items()) + """\
  Datagrams with templates are spared. --expect marks the records a correct
  collector may lack or may store twice; the statistics count what was injected.
  IPv6 records a NetFlow v5 collector cannot carry are marked too
  ({"fault": "ipv6-not-carried", "record": "not_sent"}).

packets (--pcap FILE --count N):
  The records' packets, in time order, as a capture of headers (the wire length is the
  packet's), spaced so that each record is one flow for a probe with the -t timeouts
  given here (pyprobe's names and defaults), each with a flow key of its own. --expect
  then holds exactly the records pyprobe -r FILE makes with those timeouts, end
  reasons too (and -m large enough for every flow). The records and their packets
  are held in memory: a --count that does not fit is refused before any is made.
  -s N only announces 1-in-N sampling in the export (v5 header, v9/IPFIX options).

examples:
  pyprobe generate -n 127.0.0.1:2055 --rate 50000 --duration 10 --expect sent.json
  pyprobe generate -n 127.0.0.1:4739 -v 10 --exporters 50 --exporter-address 127.0.1.0/24
  pyprobe generate --count 10 --seed 1 --start-time 2026-01-01T00:00:00 --json
  pyprobe generate --pcap test.pcap --count 100000 --expect flows.json -t inactive=30

exit status:
  0 done (also when stopped by SIGINT or SIGTERM); 2 bad options or profile, sizes
  beyond memory or file descriptors, or an output that cannot be written.
"""
