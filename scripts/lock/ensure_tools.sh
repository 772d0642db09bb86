#!/usr/bin/env bash
# Creates (once) the lock/audit tools virtualenv and prints its bin directory.
# Installs requirements/tools.txt with --require-hashes; on a machine without it yet
# (the very first `make lock`), the pins of requirements/tools.in.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/lib/quiet_run.sh
source "$ROOT/scripts/lib/quiet_run.sh"
VENV="${LOCK_TOOLS_VENV:-$ROOT/.venv-lock}"
PYTHON="${PYTHON:-python3}"
if [[ -f "$ROOT/requirements/tools.txt" ]]; then
    source_file="$ROOT/requirements/tools.txt"
    hashes=(--require-hashes)
else
    source_file="$ROOT/requirements/tools.in"
    hashes=()
fi
want="$(sha256sum "$source_file" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/uv" || "$(cat "$VENV/.stamp" 2>/dev/null)" != "$want" ]]; then
    install() {
        # A current pip first: the one a venv starts with (23.x on Python 3.11) takes an
        # extra's requirement (pip-audit's `CacheControl[filecache]>=…`) for an unpinned
        # one and refuses the hash-checked install once a newer release exists.
        "$PYTHON" -m venv --clear "$VENV" &&
            "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip &&
            "$VENV/bin/pip" install --disable-pip-version-check "${hashes[@]}" -r "$source_file"
    }
    quiet_run "lock tools: installation into $VENV failed (PyPI must be reachable)" install || exit 2
    echo "$want" >"$VENV/.stamp"
fi
echo "$VENV/bin"
