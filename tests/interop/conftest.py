"""Interop tests: make tests/ (reference.py) and tests/interop (collectors.py) importable."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
