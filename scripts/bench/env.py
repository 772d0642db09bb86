"""The benchmark's own environment, never the service's dependencies.

- `.bench/venv`: pywebpush (the baseline) and py-spy (`--profile`), from
  scripts/bench/requirements.txt;
- `scripts/bench/node/node_modules`: Node's web-push, from its package-lock.json.

Each is (re)built only when its requirements or lock file changed (a hash marker),
so a second call takes milliseconds. The bare ceiling, the naive consumer and the
service itself run on the service's own interpreter: the same library versions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SCRIPTS = PACKAGE.parent
ROOT = SCRIPTS.parent
BENCH_DIR = ROOT / ".bench"
BENCH_VENV = BENCH_DIR / "venv"
NODE_DIR = PACKAGE / "node"
REQUIREMENTS = PACKAGE / "requirements.txt"


class BenchEnvError(RuntimeError):
    """The benchmark's environment could not be set up."""


def bench_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def py_spy() -> Path:
    return BENCH_VENV / "bin" / "py-spy"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_quietly(command: list[str], cwd: Path | None = None) -> None:
    """Run a set-up command; its output is shown only when it fails."""
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise BenchEnvError(
            f"{' '.join(command)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


def base_python() -> str:
    """A Python 3.11 to build venvs from (BENCH_PYTHON overrides)."""
    chosen = os.environ.get("BENCH_PYTHON")
    if chosen:
        return chosen
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found is None:
        raise BenchEnvError("python3.11 not found (set BENCH_PYTHON)")
    return found


def ensure_python_env() -> Path:
    marker = BENCH_VENV / ".requirements.sha256"
    want = _digest(REQUIREMENTS)
    if bench_python().exists() and marker.exists() and marker.read_text().strip() == want:
        return bench_python()
    if not bench_python().exists():
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        run_quietly([base_python(), "-m", "venv", str(BENCH_VENV)])
    run_quietly([str(bench_python()), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", "-r", str(REQUIREMENTS)])  # fmt: skip
    marker.write_text(want + "\n")
    return bench_python()


def ensure_node_env() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise BenchEnvError("node and npm are needed for the Node web-push baseline")
    marker = NODE_DIR / "node_modules" / ".lock.sha256"
    want = _digest(NODE_DIR / "package-lock.json")
    if not (marker.exists() and marker.read_text().strip() == want):
        run_quietly(["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
                     "--loglevel=error"])  # fmt: skip
        marker.write_text(want + "\n")
    return NODE_DIR


def child_env(cafile: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of every benchmark child: the sink's CA trusted by every client
    stack, no proxies, the bench package importable."""
    env = dict(os.environ)
    if cafile:
        # requests prefers these variables over Session.verify: they must name the sink's CA.
        env["REQUESTS_CA_BUNDLE"] = env["CURL_CA_BUNDLE"] = cafile
        env["NODE_EXTRA_CA_CERTS"] = env["SSL_CERT_FILE"] = cafile
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(name, None)
        env.pop(name.lower(), None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SCRIPTS), env.get("PYTHONPATH"))))
    env.update(extra)
    return env
