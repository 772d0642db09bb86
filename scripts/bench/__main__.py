"""`python -m bench` (scripts/ on PYTHONPATH, as `make bench` does) or `python scripts/bench`."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a directory: import the package from scripts/, not its modules as top-level ones.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
