"""Project rules for deploy/ that no schema knows, and the KEDA schema check.

Run by scripts/deploy/check_deploy.sh in the deploy tools venv (PyYAML, jsonschema,
cloudcoil-models-keda). Sections:

  keda FILE...    every keda.sh/v1alpha1 ScaledObject / TriggerAuthentication validates
                  against the JSON schema of KEDA's CRDs (from cloudcoil-models-keda,
                  generated from KEDA's CRD manifests), with unknown fields rejected as
                  `kubectl apply` (strict field validation) would.
  manifests BASE KEDA   on the `kubectl kustomize` output of both overlays: probes, grace
                  period vs SHUTDOWN_GRACE_SECONDS, security context, resources, ports,
                  metrics listener, selectors, ScaledObject vs Deployment/ConfigMap.
  observability   alert rules (severity, for, annotations, the required alerts) and the
                  Grafana dashboard (structure, datasource variable, required panels).
  selftest BASE KEDA    broken copies of the real files must fail the checks above.

Usage: deploy_static_checks.py --root DIR SECTION [ARGS...]
Prints one line per check ("ok"/"FAIL"); exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_rules import (  # after the path set-up, on purpose
    Report,
    check_dashboard,
    check_manifests,
    check_rules,
    keda_errors,
)

Doc = dict[str, Any]


def load_all(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def section_keda(files: list[Path], rep: Report) -> None:
    rep.section("KEDA custom resources against the KEDA CRD schema (strict):")
    found = 0
    for path in files:
        for doc in load_all(path):
            if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
                found += 1
                name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                errors = keda_errors(doc)
                rep.check(not errors, name, "; ".join(errors[:5]))
    rep.check(found > 0, "at least one KEDA resource was checked", f"{found} found")


def section_observability(root: Path, rep: Report) -> None:
    rules = sorted((root / "deploy/prometheus").glob("*.rules.yaml"))
    rep.check(bool(rules), "deploy/prometheus has a *.rules.yaml file")
    for path in rules:
        check_rules(yaml.safe_load(path.read_text(encoding="utf-8")), path.name, rep)
    dashboards = sorted((root / "deploy/grafana").glob("*.json"))
    rep.check(bool(dashboards), "deploy/grafana has a dashboard")
    for path in dashboards:
        check_dashboard(path.read_text(encoding="utf-8"), path.name, rep)


def section_selftest(root: Path, base: list[Doc], keda: list[Doc]) -> Report:
    """Every mutation below must produce at least one FAIL, or the checks are toothless."""
    outer = Report()
    outer.section("self-test: broken copies of the real files must be caught:")
    for what, broken in _mutations(root, base, keda):
        inner = Report(quiet=True)
        broken(inner)
        outer.check(bool(inner.failures), f"caught: {what}", "the checks passed it")
    return outer


def _mutations(root: Path, base: list[Doc], keda: list[Doc]) -> list[tuple[str, Any]]:
    def changed(docs: list[Doc], kind: str, edit: Any) -> list[Doc]:
        docs = copy.deepcopy(docs)
        edit(next(d for d in docs if d.get("kind") == kind))
        return docs

    def pod(d: Doc) -> Doc:
        spec: Doc = d["spec"]["template"]["spec"]
        return spec

    def so_spec(d: Doc) -> Doc:
        spec: Doc = d["spec"]
        return spec

    rules = yaml.safe_load((root / "deploy/prometheus/push-service.rules.yaml").read_text())
    no_for = copy.deepcopy(rules)
    del no_for["groups"][0]["rules"][0]["for"]
    dash = (root / "deploy/grafana/push-service.json").read_text(encoding="utf-8")
    so = next(d for d in keda if d.get("kind") == "ScaledObject")
    cases: list[tuple[str, Any]] = [
        ("grace period below the drain", lambda r: check_manifests(changed(base, "Deployment",
            lambda d: pod(d).update(terminationGracePeriodSeconds=20)), keda, r)),
        ("liveness probe on /ready", lambda r: check_manifests(changed(base, "Deployment",
            lambda d: pod(d)["containers"][0]["livenessProbe"]["httpGet"].update(path="/ready")),
            keda, r)),
        ("writable root filesystem", lambda r: check_manifests(changed(base, "Deployment",
            lambda d: pod(d)["containers"][0]["securityContext"].update(
                readOnlyRootFilesystem=False)), keda, r)),
        ("no memory limit", lambda r: check_manifests(changed(base, "Deployment",
            lambda d: pod(d)["containers"][0]["resources"]["limits"].pop("memory")), keda, r)),
        ("metrics port in the Service", lambda r: check_manifests(changed(base, "Service",
            lambda d: d["spec"]["ports"].append({"name": "metrics", "port": 9464,
                                                 "targetPort": "metrics"})), keda, r)),
        ("ScaledObject on another queue", lambda r: check_manifests(base, changed(keda,
            "ScaledObject", lambda d: so_spec(d)["triggers"][0]["metadata"].update(
                queueName="other.queue")), r)),
        ("KEDA: unknown field", lambda r: _keda_case(so, lambda d: so_spec(d).update(
            maxReplicas=3), r)),
        ("KEDA: wrong type", lambda r: _keda_case(so, lambda d: so_spec(d).update(
            minReplicaCount="two"), r)),
        ("KEDA: trigger without type", lambda r: _keda_case(so, lambda d: so_spec(d)[
            "triggers"][0].pop("type"), r)),
        ("alert without `for`", lambda r: check_rules(no_for, "mutated", r)),
        ("dashboard that is not JSON", lambda r: check_dashboard(dash[:-10], "mutated", r)),
    ]  # fmt: skip
    return cases


def _keda_case(doc: Doc, edit: Any, rep: Report) -> None:
    doc = copy.deepcopy(doc)
    edit(doc)
    errors = keda_errors(doc)
    rep.check(not errors, "mutated ScaledObject", "; ".join(errors))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("section", choices=["keda", "manifests", "observability", "selftest"])
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    rep = Report()
    if args.section == "keda":
        section_keda(args.files, rep)
    elif args.section == "observability":
        section_observability(args.root, rep)
    else:
        base, keda = (load_all(path) for path in args.files)
        if args.section == "manifests":
            check_manifests(base, keda, rep)
        else:
            rep = section_selftest(args.root, base, keda)
    print(f"{rep.count - len(rep.failures)}/{rep.count} passed")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
