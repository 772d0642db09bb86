"""Audit the hashed lock files with pip-audit; fail on any known vulnerability.

    scripts/lock/audit.py [--strict] [LOCK...]   (default: requirements/dev.txt, tools.txt)

pip-audit's PyPI service asks `https://pypi.org/pypi/<name>/<version>/json` for each
pinned version. Where that answers 404 (a registry mirror that serves only the simple
index and the project pages, as on the development machines), pip-audit skips the
package ("Dependency not found on PyPI"). For those, this script reads the project page
`https://pypi.org/pypi/<name>/json`, whose `vulnerabilities` (the same OSV data) belong to
the latest release: a pin that *is* the latest release is audited that way; any other pin
is reported as not audited. `--strict` makes "not audited" a failure too.
Exit status: 0 clean, 1 vulnerable (or unaudited with --strict), 2 the tool failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LOCKS = ("requirements/dev.txt", "requirements/tools.txt")
PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(lock: Path) -> dict[str, str]:
    """name -> pinned version (pip-audit leaves the version out of a skipped entry)."""
    text = lock.read_text(encoding="utf-8")
    return {_normal(name): version for name, version in PIN.findall(text)}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_audit(lock: Path) -> list[dict[str, Any]]:
    """pip-audit's per-dependency results for one lock file."""
    command = [
        str(Path(sys.executable).parent / "pip-audit"),
        "--requirement", str(lock), "--require-hashes", "--disable-pip",
        "--vulnerability-service", "pypi", "--format", "json", "--progress-spinner", "off",
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        sys.stderr.write(proc.stderr[-2000:])
        raise SystemExit(f"pip-audit failed on {lock} (exit {proc.returncode})")
    dependencies: list[dict[str, Any]] = json.loads(proc.stdout)["dependencies"]
    return dependencies


def latest_release_vulns(name: str, version: str) -> list[dict[str, Any]] | None:
    """Vulnerabilities of `name==version` if that is the latest release, else None."""
    try:
        with urllib.request.urlopen(PROJECT_JSON.format(name=name), timeout=30) as response:
            data = json.load(response)
    except (urllib.error.URLError, TimeoutError, ValueError):
        return None
    if data.get("info", {}).get("version") != version:
        return None
    return [
        {"id": v.get("id"), "fix_versions": v.get("fixed_in") or [], "aliases": v.get("aliases")}
        for v in data.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]


def audit(locks: list[Path]) -> tuple[dict[str, list[Any]], dict[str, str], dict[str, str]]:
    """(vulnerable name==version -> vulns, audited -> how, unaudited -> why)."""
    vulnerable: dict[str, list[Any]] = {}
    audited: dict[str, str] = {}
    unaudited: dict[str, str] = {}
    for lock in locks:
        versions = pins(lock)
        for dep in pip_audit(lock):
            version = dep.get("version") or versions.get(_normal(dep["name"]), "?")
            pin = f"{dep['name']}=={version}"
            vulns = dep.get("vulns")
            how = "pip-audit (PyPI per-version JSON)"
            if vulns is None:
                vulns = latest_release_vulns(dep["name"], version)
                how = "PyPI project JSON (pin is the latest release)"
            if vulns is None:
                unaudited[pin] = dep.get("skip_reason", "no vulnerability data")
                continue
            audited[pin] = how
            if vulns:
                vulnerable[pin] = vulns
    return vulnerable, audited, {k: v for k, v in unaudited.items() if k not in audited}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locks", nargs="*", type=Path)
    parser.add_argument("--strict", action="store_true", help="unaudited pins fail too")
    args = parser.parse_args(argv)
    locks = args.locks or [ROOT / lock for lock in DEFAULT_LOCKS]
    vulnerable, audited, unaudited = audit(locks)
    by_how: dict[str, int] = {}
    for how in audited.values():
        by_how[how] = by_how.get(how, 0) + 1
    print(f"audited {len(audited)} pins from {', '.join(str(p) for p in locks)}:")
    for how, count in sorted(by_how.items()):
        print(f"  {count:3d} via {how}")
    for pin, why in sorted(unaudited.items()):
        print(f"  NOT AUDITED {pin}: {why}")
    for pin, vulns in sorted(vulnerable.items()):
        for vuln in vulns:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"  VULNERABLE {pin}: {vuln.get('id')} (fixed in {fixes})")
    if vulnerable:
        print(f"{len(vulnerable)} vulnerable pin(s): upgrade them (make lock-upgrade)")
        return 1
    if unaudited:
        print(f"warning: {len(unaudited)} pin(s) could not be audited from here")
        return 1 if args.strict else 0
    print("no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
