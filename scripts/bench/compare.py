"""`--compare REV|DIR`: the service of another revision, as a contender in the same rounds.

- A git revision (`main`, `HEAD~2`, a commit): its tree is exported with `git archive`
  into `.bench/compare/<commit>/src` and installed (with the dependencies its lock,
  `requirements/runtime.txt`, pins, as this worktree's venv has them) into
  `.bench/compare/<commit>/venv`. Both are kept, keyed by the commit, so the next run
  against the same revision starts at once; `rm -rf .bench/compare` frees them.
- A directory (another worktree, a checkout with uncommitted changes): installed in
  editable mode into `.bench/compare/dir-<hash>/venv`, reinstalled only when its
  setup.cfg or pyproject.toml changes, so edits there count at the next run.

The benchmark then starts that venv's `python -m push_service` next to this worktree's,
with the same settings, the same sink and the same kind of backlog per round.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bench.env import BENCH_DIR, ROOT, BenchEnvError, base_python, run_quietly

COMPARE_DIR = BENCH_DIR / "compare"


@dataclass(frozen=True)
class Revision:
    label: str  # the contender's name in the tables
    python: str  # the interpreter of its venv
    source: str  # what it is, for the legend


def prepare(spec: str) -> Revision:
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_directory(path.resolve())
    return _from_git(spec)


def _git(*args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)
    if proc.returncode != 0:
        raise BenchEnvError(f"git {' '.join(args)}: {proc.stderr.decode().strip()}")
    return proc.stdout


# The revision's own lock: installed from its ranges instead, a revision took whatever
# was newest (cryptography 51 and redis 8.2 against the lock's 50 and 8.1), and the same
# code compared with itself ran 13% slower than this worktree.
LOCK = Path("requirements") / "runtime.txt"


def _install(venv: Path, tree: Path, *package: str) -> None:
    """The revision's locked dependencies (hashes checked) if it has a lock, then itself."""
    if not (venv / "bin" / "python").exists():
        run_quietly([base_python(), "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]  # fmt: skip
    if (tree / LOCK).exists():
        run_quietly([*pip, "--require-hashes", "-r", str(tree / LOCK)])
        run_quietly([*pip, "--no-deps", *package])
    else:
        run_quietly([*pip, *package])


def resolve(rev: str) -> str:
    """The commit a revision names (BenchEnvError if it names none)."""
    return _git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()


def export_tree(commit: str, dest: Path) -> None:
    """The commit's files (no .git, no untracked files) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(_git("archive", commit))) as archive:
        archive.extractall(dest, filter="data")


def _from_git(rev: str) -> Revision:
    commit = resolve(rev)
    home = COMPARE_DIR / commit[:12]
    ready = home / ".installed"
    if not ready.exists():
        export_tree(commit, home / "src")
        _install(home / "venv", home / "src", str(home / "src"))
        ready.write_text(commit + "\n")
    return Revision(
        f"service@{rev}", str(home / "venv" / "bin" / "python"), f"{rev} = {commit[:12]}"
    )


def _from_directory(path: Path) -> Revision:
    if not (path / "setup.cfg").exists() and not (path / "pyproject.toml").exists():
        raise BenchEnvError(f"{path} is not a push_service checkout")
    home = COMPARE_DIR / f"dir-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml", str(LOCK)):
        if (path / name).exists():
            digest.update((path / name).read_bytes())
    marker = home / ".installed"
    if not marker.exists() or marker.read_text().strip() != digest.hexdigest():
        home.mkdir(parents=True, exist_ok=True)
        _install(home / "venv", path, "-e", str(path))
        marker.write_text(digest.hexdigest() + "\n")
    return Revision(
        f"service@{path.name}", str(home / "venv" / "bin" / "python"), f"{path} (editable)"
    )
