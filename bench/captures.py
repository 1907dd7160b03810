"""The benchmarks' captures, written by `pyprobe generate --pcap` from the profiles in
bench/profiles/, with a sidecar FILE.json of what is in them (from --expect): packets,
octets (IP lengths), flows (records a probe with the default timeouts and a large
enough cache must make), first_ts / last_ts (epoch seconds), capture_bytes.
"""
import hashlib
import json
import os
import subprocess

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PYPROBE = os.path.join(REPO, ".venv", "bin", "pyprobe")
PROFILES = os.path.join(BENCH, "profiles")
START_TIME = 1700000000               # 2023-11-14T22:13:20Z: the time line is pinned, so captures repeat
# flows, the seconds they end within, and the bytes of each frame kept (0: headers only): the
# mix and the elephants carry their payload (zeros), as real captures do, so reading costs what it costs
SHAPES = {"mix": {"flows": 110_000, "seconds": 180, "snaplen": 1518},
          "flood": {"flows": 1_000_000, "seconds": 20, "snaplen": 0},
          "elephants": {"flows": 20, "seconds": 60, "snaplen": 1518}}


def version_hash(shape):
    """Changes when the profile or the generator does: a cached capture is then made again."""
    h = hashlib.sha1(json.dumps(SHAPES[shape], sort_keys=True).encode())
    for path in (os.path.join(PROFILES, f"{shape}.toml"), os.path.join(REPO, "ext", "_generate.pyx")):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:8]


def make(shape, path, flows=None, seconds=None, seed=1, snaplen=None):
    """Write the capture and its sidecar; returns the sidecar's dict."""
    flows = flows or SHAPES[shape]["flows"]
    seconds = seconds or SHAPES[shape]["seconds"]
    snaplen = SHAPES[shape]["snaplen"] if snaplen is None else snaplen
    expect = path + ".expect.json"
    subprocess.run([PYPROBE, "generate", "--pcap", path, "--count", str(flows), "--rate", str(flows / seconds),
                    "--seed", str(seed), "--start-time", str(START_TIME), "--profile",
                    os.path.join(PROFILES, f"{shape}.toml"), "--snaplen", str(snaplen), "--expect", expect, "-q"],
                   check=True, timeout=1800)
    side = {"shape": shape, "seed": seed, "flows": 0, "packets": 0, "octets": 0, "first_ts": None, "last_ts": None}
    with open(expect) as f:
        for line in f:
            r = json.loads(line)
            side["flows"] += 1
            side["packets"] += r["packets"]
            side["octets"] += r["octets"]
            side["first_ts"] = r["start"] if side["first_ts"] is None else min(side["first_ts"], r["start"])
            side["last_ts"] = r["end"] if side["last_ts"] is None else max(side["last_ts"], r["end"])
    os.unlink(expect)
    side["capture_bytes"] = os.path.getsize(path)
    with open(path + ".json", "w") as f:
        json.dump(side, f, indent=1, sort_keys=True)
    return side
