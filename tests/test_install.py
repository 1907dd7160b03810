"""`pip install .` into a fresh venv gives a working pyprobe (the msgpack way: sdist-style build, no editable tree)."""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "android.pcap"
SKIP = shutil.ignore_patterns(".venv", "build", "*.egg-info", "*.so", "*.c", ".git", "__pycache__",
                              ".pytest_cache", ".hypothesis", ".cache")


def json_records(pyprobe, capture):
    result = subprocess.run([str(pyprobe), "-r", str(capture), "--json", "-q"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.splitlines())



def test_clean_install_runs_the_demo(tmp_path):
    tree = tmp_path / "src"
    shutil.copytree(ROOT, tree, ignore=SKIP)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(tree)],
                   check=True, timeout=600)
    installed = json_records(env_dir / "bin" / "pyprobe", DEMO)
    here = json_records(Path(sys.executable).parent / "pyprobe", DEMO)
    assert installed == here
    assert sum(json.loads(line)["packets"] for line in installed) > 0
    module = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pyprobe", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and "pyprobe" in module.stdout
