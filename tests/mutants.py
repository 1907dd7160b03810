"""Seeded mutants of real captures, for the mutation runs (tests/test_fuzz.py).

Each mutant is one capture from the corpus damaged one way: random byte flips, a cut,
a record or block length made wrong, an absurd timestamp, or a pcapng block damaged.
The same seed gives the same mutants, so a failure can be replayed.
"""

import random
import struct

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def records(data):
    """(byte order, [(offset of a record or block header, its kind)]) of a pcap or pcapng."""
    if data[:4] in PCAP_MAGICS:
        order, pos, out = PCAP_MAGICS[data[:4]], 24, []
        while pos + 16 <= len(data):
            out.append((pos, "pcap"))
            pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
        return order, out
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    pos, out = 0, []
    while pos + 12 <= len(data):
        length = struct.unpack_from(order + "I", data, pos + 4)[0]
        if length < 12:
            break
        out.append((pos, "pcapng"))
        pos += length
    return order, out


def flip_bytes(rng, data, order, recs):
    data = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return data


def cut(rng, data, order, recs):
    return data[:rng.randrange(len(data))]


def bad_length(rng, data, order, recs):
    data = bytearray(data)
    pos, kind = rng.choice(recs)
    value = rng.choice([0, 1, 11, 13, 0x7FFFFFFF, 0xFFFFFFFF, 262145, rng.randrange(1 << 32)])
    field = pos + 8 if kind == "pcap" else pos + 4 + rng.choice([0, 16])   # caplen; block length, EPB caplen
    if field + 4 <= len(data):
        struct.pack_into(order + "I", data, field, value)
    return data


def absurd_time(rng, data, order, recs):
    data = bytearray(data)
    pos, kind = rng.choice(recs)
    sec = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32)])
    frac = rng.choice([0, 999_999, 1_000_000, 0xFFFFFFFF, rng.randrange(1 << 32)])
    at = pos if kind == "pcap" else pos + 12
    if at + 8 <= len(data):
        struct.pack_into(order + "II", data, at, sec, frac)
    return data


def damage_block(rng, data, order, recs):
    data = bytearray(data)
    pos, _ = rng.choice(recs)
    what = rng.randrange(4)
    if what == 0 and pos + 4 <= len(data):                    # an unknown or misplaced block type
        struct.pack_into(order + "I", data, pos, rng.choice([0, 1, 2, 3, 5, 0x0A0D0D0A, rng.randrange(1 << 32)]))
    elif what == 1 and pos + 12 <= len(data):                 # the interface a packet names
        struct.pack_into(order + "I", data, pos + 8, rng.choice([1, 2, 255, 0xFFFFFFFF]))
    elif what == 2:                                           # a block dropped
        length = struct.unpack_from(order + "I", data, pos + 4)[0] if pos + 8 <= len(data) else 0
        del data[pos:pos + max(length, 1)]
    else:                                                     # a block repeated
        length = struct.unpack_from(order + "I", data, pos + 4)[0] if pos + 8 <= len(data) else 0
        data[pos:pos] = data[pos:pos + length]
    return data


KINDS = [flip_bytes, cut, bad_length, absurd_time, damage_block]


def mutants(captures, count, seed):
    """count (name, bytes) mutants of the given capture files' bytes, seeded."""
    rng = random.Random(seed)
    originals = [(path.name, path.read_bytes()) for path in captures]
    for i in range(count):
        name, data = originals[i % len(originals)]
        order, recs = records(data)
        kind = rng.choice(KINDS if recs else [flip_bytes, cut])
        if kind is damage_block and data[:4] != PCAPNG_MAGIC:
            kind = bad_length
        yield f"{i:04d}-{kind.__name__}-{name}", bytes(kind(rng, data, order, recs))
