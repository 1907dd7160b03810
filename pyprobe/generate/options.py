"""pyprobe generate's own options: rows of the one option table (pyprobe/settings.py adds
them to the probe's), so that their flags, config keys, help and checks are made as the
probe's are."""

from ..option import GENERATE, Option as O
from ..parsers import parse_count, parse_duration, parse_prefix, parse_rate, parse_text, parse_time
from .faults import DEFAULT_EVERY, parse_fault

OPTIONS = (
    O("rate", ("--rate",), "generate", parse_rate, None, metavar="RECORDS/S", commands=GENERATE,
      help="records per second, paced evenly within every 100 ms (default: 1000 to collectors, as fast as "
           "possible when only printing; 0: as fast as possible)"),
    O("count", ("--count",), "generate", parse_count(0, 2**62, "record count"), 0, metavar="N", commands=GENERATE,
      help="stop after N records (default 0: no limit)"),
    O("duration", ("--duration",), "generate", parse_duration, 0.0, metavar="SECONDS", commands=GENERATE,
      help="stop after this long (default 0: no limit; suffixes s m h d w)"),
    O("seed", ("--seed",), "generate", parse_count(0, 2**64 - 1, "seed"), None, metavar="N", commands=GENERATE,
      help="seed of the random records (default: a new one each run); with --start-time, the same "
           "command gives the same datagrams"),
    O("start_time", ("--start-time",), "generate", parse_time, None, metavar="TIME", commands=GENERATE,
      help="date the records from this epoch (seconds, or ISO 8601) on, one record every 1/RATE s, "
           "instead of the wall clock"),
    O("profile", ("--profile",), "generate", parse_text, metavar="FILE", commands=GENERATE,
      help="the traffic profile (TOML; see README), else the default one"),
    O("exporters", ("--exporters",), "generate", parse_count(1, 10000, "exporter count"), 1, metavar="N",
      commands=GENERATE,
      help="simulate N routers: exporter i has observation domain / source id / engine id BASE+i, its own "
           "sequence numbers, uptime and template timers"),
    O("exporter_address", ("--exporter-address",), "generate", parse_prefix, metavar="PREFIX", commands=GENERATE,
      help="exporter i sends from the (i+1)th address of PREFIX (local addresses: 127.0.0.0/8, or ones "
           "added to an interface)"),
    O("faults", ("--fault",), "generate", parse_fault, (), metavar="KIND[=EVERY]", kind="list", commands=GENERATE,
      help=f"inject a fault every EVERY datagrams (default {DEFAULT_EVERY}), repeatable (see faults below)"),
    O("pcap", ("--pcap",), "generate", parse_text, metavar="FILE", commands=GENERATE,
      help="write the records' packets to a capture instead of exporting records (with --count); "
           "--expect then holds the records a probe with these -t timeouts makes of it"),
    O("pcap_snaplen", ("--snaplen",), "generate", parse_count(0, 65535 + 18, "snap length"), 0, metavar="BYTES",
      commands=GENERATE, help="with --pcap: bytes of each frame in the capture, the payload zeros (default 0: "
                              "the headers only; the wire length is always the packet's)"),
    O("expect", ("--expect",), "generate", parse_text, metavar="FILE", commands=GENERATE,
      help="write every generated record to FILE as JSON lines (pyprobe -r --json's schema)"),
)
