"""Fuzzing (issue 11): the compiled parser and meter under atheris, and seeded mutants of
the corpus through every input path.

make test runs both briefly; make test-long runs 1,000 mutants; make fuzz runs the
target for long, built with bounds checks and AddressSanitizer."""

import concurrent.futures
import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mutants
from wire import PYPROBE

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "pcaps" / "corpus"
TARGET = HERE / "fuzz" / "capture_target.py"
FUZZ_SECONDS = int(os.environ.get("PYPROBE_FUZZ_SECONDS", "20"))
RUN_TIMEOUT = 20             # seconds one pyprobe run may take: more is a hang


def small_captures(limit=200_000):
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.stat().st_size < limit)
    return files + [HERE.parent / "pcaps" / "android.pcap"]


def test_fuzz_target_runs_clean(tmp_path):
    """The atheris target, seeded with the small corpus captures, for FUZZ_SECONDS."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for path in small_captures(64_000):
        shutil.copy(path, seeds / path.name)
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed here")
    proc = subprocess.run([sys.executable, str(TARGET), f"-max_total_time={FUZZ_SECONDS}", "-rss_limit_mb=4096",
                           "-max_len=65536", f"-artifact_prefix={tmp_path}/", str(seeds)], capture_output=True, text=True,
                          timeout=FUZZ_SECONDS + 120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done" in proc.stderr, proc.stderr[-2000:]


def test_fuzz_target_checks_real_captures():
    """The target's checks themselves, on every small corpus capture as it is."""
    sys.path.insert(0, str(TARGET.parent))
    import capture_target
    for path in small_captures():
        capture_target.one_input(path.read_bytes())


def run_every_way(name, data, workdir):
    """{way: (exit status, stdout, stderr)} of pyprobe --json reading data by path, on
    standard input and gzipped by path."""
    plain = workdir / f"{name}.pcap"
    plain.write_bytes(data)
    zipped = workdir / f"{name}.pcap.gz"
    zipped.write_bytes(gzip.compress(data, compresslevel=1))
    out = {}
    for way, args, stdin in (("path", [str(plain)], None), ("stdin", ["-"], data), ("gzip", [str(zipped)], None)):
        try:
            proc = subprocess.run([PYPROBE, "-r", *args, "--json"], input=stdin, capture_output=True,
                                  timeout=RUN_TIMEOUT)
            out[way] = (proc.returncode, proc.stdout, proc.stderr)
        except subprocess.TimeoutExpired:
            out[way] = ("hang", b"", b"")
    plain.unlink()
    zipped.unlink()
    return out


def check_mutants(count, seed, workdir):
    problems = []

    def one(item):
        name, data = item
        results = run_every_way(name, data, workdir)
        for way, (rc, _, err) in results.items():
            if rc not in (0, 2):
                problems.append(f"{name} {way}: exit {rc}: {err[-300:]!r}")
            if b"Traceback" in err:
                problems.append(f"{name} {way}: traceback: {err[-600:]!r}")
        if len({(rc, out) for rc, out, _ in results.values()}) != 1:
            summary = {way: (rc, len(out)) for way, (rc, out, _) in results.items()}
            problems.append(f"{name}: the input paths disagree: {summary}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(one, mutants.mutants(small_captures(), count, seed)))
    assert not problems, "\n".join(problems[:20])


def test_mutants_agree_on_every_input_path(tmp_path):
    check_mutants(60, seed=11, workdir=tmp_path)


@pytest.mark.long
def test_a_thousand_mutants_agree_on_every_input_path(tmp_path):
    check_mutants(1000, seed=2026, workdir=tmp_path)
