"""Fuzz target for the compiled capture parser and the meter (issue 11).

one_input(data) takes arbitrary bytes two ways:

1. As a capture file: ext/_capture.pyx's parser over the whole buffer (a mapped file)
   and over the same bytes arriving in chunks of random sizes (a stream, as
   pyprobe/source/file.py feeds it). Both must read the same packets, each inside
   the buffer, and stop the same way (end, cut short, or the same damage).
2. As frames: the first byte picks a decoded link type, the next bytes cut the rest
   into frames. The meter must account for every packet (metered + ignored = read),
   and a flush must give records whose packets add up to those metered.

Run by atheris (tests/test_fuzz.py, `make fuzz`):
    python tests/fuzz/capture_target.py [libFuzzer flags] [corpus dirs]
For a build with bounds checks and AddressSanitizer, see `make fuzz` (PYPROBE_SANITIZE=1).
"""

import itertools
import os
import struct
import sys

if os.environ.get("PYPROBE_EXT_DIR"):          # the sanitized build of the extensions (make fuzz)
    import importlib.machinery
    import importlib.util

    import pyprobe
    for name in ("_meter", "_capture"):
        found = [f for f in os.listdir(os.environ["PYPROBE_EXT_DIR"]) if f.startswith(name + ".")]
        spec = importlib.util.spec_from_file_location(
            f"pyprobe.{name}", os.path.join(os.environ["PYPROBE_EXT_DIR"], found[0]),
            loader=importlib.machinery.ExtensionFileLoader(f"pyprobe.{name}",
                                                           os.path.join(os.environ["PYPROBE_EXT_DIR"], found[0])))
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"pyprobe.{name}"] = module
        spec.loader.exec_module(module)
        setattr(pyprobe, name, module)

from pyprobe._capture import DAMAGED, MORE, CaptureParser     # noqa: E402
from pyprobe._meter import RECORD_SIZE, SUPPORTED_LINKTYPES, Meter  # noqa: E402
from pyprobe.fields import MEMBER                              # noqa: E402

LINKTYPES = sorted(SUPPORTED_LINKTYPES)
BATCH = 64


def parse_in_chunks(data, sizes):
    """(packets as (sec, usec, bytes), how it ended) reading data as it arrives in chunks of
    the given sizes, the unread tail kept, as a stream is read; one chunk of it all is a
    mapped file."""
    parser, out, buf, pos, offset = CaptureParser(), [], b"", 0, 0
    while True:
        meta, _, end, status = parser.parse(buf, pos, BATCH)
        out += unpack(buf, pos, meta, end)
        pos = end
        if status == DAMAGED:
            return out, parser.damage
        if status == MORE:
            if offset == len(data):
                return out, "cut short" if pos < len(buf) else "end"
            size = next(sizes)
            parser.offset += pos
            buf, pos = buf[pos:] + data[offset:offset + size], 0
            offset = min(offset + size, len(data))


def unpack(buf, base, meta, end):
    out = []
    for i in range(len(meta) // 16):
        sec, usec, offset, caplen = struct.unpack_from("=IIII", meta, 16 * i)
        assert usec < 1_000_000, usec
        assert base + offset + caplen <= end, (base, offset, caplen, end)
        out.append((sec, usec, bytes(buf[base + offset:base + offset + caplen])))
    return out


def chunk_sizes(seed):
    x = seed or 1
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        yield 1 + (x >> 33) % 4096


def check_capture(data):
    whole = parse_in_chunks(data, itertools.repeat(len(data)))
    chunked = parse_in_chunks(data, chunk_sizes(len(data)))
    assert whole == chunked, (len(whole[0]), whole[1], len(chunked[0]), chunked[1])


def check_meter(data):
    if len(data) < 2:
        return
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    packets, meta, pos, t = bytearray(), bytearray(), 2, 1_700_000_000
    while pos < len(data):
        size = min(data[pos - 1] % 128, len(data) - pos)
        meta += struct.pack("=IIII", t, pos % 1_000_000, len(packets), size)
        packets += data[pos:pos + size]
        pos += size + 1
        t += data[pos - 1] % 3 if pos <= len(data) else 0
    meter = Meter(linktype, max_flows=8)
    records = meter.process(bytes(packets), bytes(meta), linktype)
    while True:
        more = meter.flush(16)
        if not more:
            break
        records += more
    stats = meter.stats()
    n = len(meta) // 16
    assert stats["packets_read"] == n
    assert stats["packets_metered"] + sum(stats["packets_ignored"].values()) == n, stats
    packets_at = MEMBER["packets"].offset
    in_records = sum(struct.unpack_from("=Q", records, at + packets_at)[0]
                     for at in range(0, len(records), RECORD_SIZE))
    assert stats["flows_active"] == 0 and in_records == stats["packets_metered"], stats


def one_input(data):
    check_capture(data)
    check_meter(data)


def main():
    import atheris
    # The checks' own branches guide it too (the C is instrumented only by make fuzz's build).
    global parse_in_chunks, unpack, check_capture, check_meter
    parse_in_chunks, unpack, check_capture, check_meter = map(
        atheris.instrument_func, (parse_in_chunks, unpack, check_capture, check_meter))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
