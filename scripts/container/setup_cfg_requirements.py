"""Print the runtime requirements ([options] install_requires) of setup.cfg, one per line.

The Containerfile's builder stage installs these in a layer of their own, so that a
code change does not re-download every dependency. Stdlib only.
Usage: python setup_cfg_requirements.py [path/to/setup.cfg]
"""

from __future__ import annotations

import configparser
import sys


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "setup.cfg"
    cfg = configparser.ConfigParser(interpolation=None)
    if not cfg.read(path, encoding="utf-8"):
        print(f"cannot read {path}", file=sys.stderr)
        return 1
    raw = cfg.get("options", "install_requires", fallback="")
    reqs = [line.strip() for line in raw.splitlines() if line.strip()]
    if not reqs:
        print(f"{path}: [options] install_requires is empty", file=sys.stderr)
        return 1
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
