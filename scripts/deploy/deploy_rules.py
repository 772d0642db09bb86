"""The rules behind deploy_static_checks.py: manifests, KEDA schema, alerts, dashboard."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

Doc = dict[str, Any]
REQUIRED_ALERTS = {
    "PushServiceConsumerDown",
    "PushServiceDeadLetterQueueGrowing",
    "PushServiceHighFailureRatio",
    "PushServiceQueueStalled",
}
# Panels must show these (by the metric their queries use).
REQUIRED_PANEL_METRICS = {
    "push_pushes_total": "throughput by outcome",
    "push_request_seconds_bucket": "push latency",
    "push_retries_total": "retries",
    "push_dead_lettered_total": "dead letters",
    "push_consumer_connected": "consumer connected",
    "push_event_loop_lag_seconds_bucket": "event-loop lag",
    "push_queue_messages": "queue depth",
}
IMAGE_UID = 10001  # the Containerfile's USER
HTTP_DRAIN_SECONDS = 15  # README "Shutdown": HTTP drain before, closing after the grace


class Report:
    def __init__(self, quiet: bool = False) -> None:
        self.failures: list[str] = []
        self.count = 0
        self.quiet = quiet

    def section(self, title: str) -> None:
        if not self.quiet:
            print(title)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        self.count += 1
        if not ok:
            self.failures.append(f"{what}: {detail}" if detail else what)
        if not self.quiet:
            print(
                f"  {'ok  ' if ok else 'FAIL'}  {what}"
                + ("" if ok or not detail else f": {detail}")
            )
        return ok


# --------------------------------------------------------------------------- KEDA


@functools.cache
def _keda_validators() -> dict[str, Any]:
    import jsonschema
    from cloudcoil.models.keda import v1alpha1

    return {
        kind: jsonschema.Draft202012Validator(_strict(getattr(v1alpha1, kind).model_json_schema()))
        for kind in ("ScaledObject", "TriggerAuthentication")
    }


def _strict(node: Any) -> Any:
    """Reject unknown fields wherever the CRD lists the fields (not in free-form maps)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def keda_errors(doc: Doc) -> list[str]:
    validator = _keda_validators().get(str(doc.get("kind")))
    if validator is None:
        return [f"no KEDA schema for kind {doc.get('kind')!r}"]
    found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


# --------------------------------------------------------------------------- manifests


def _one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d.get("kind") == kind]
    return found[0] if found else {}


def _container(deployment: Doc) -> Doc:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    return containers[0] if containers else {}


def check_manifests(base: list[Doc], keda: list[Doc], rep: Report) -> None:
    rep.section("Kubernetes manifests (project rules, on the kustomize output):")
    for label, docs in (("base", base), ("keda", keda)):
        kinds = {d.get("kind") for d in docs}
        wanted = {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}
        rep.check(wanted <= kinds, f"{label}: renders {', '.join(sorted(wanted))}")
    deployment, config = _one(base, "Deployment"), _one(base, "ConfigMap").get("data", {})
    _check_probes_and_grace(deployment, config, rep)
    _check_security(deployment, rep)
    _check_resources(_container(deployment), rep)
    _check_ports(deployment, _one(base, "Service"), config, rep)
    _check_selectors(deployment, _one(base, "Service"), _one(base, "PodDisruptionBudget"), rep)
    _check_config(deployment, config, rep)
    _check_scaledobject(keda, config, rep)


def _check_probes_and_grace(deployment: Doc, config: dict[str, str], rep: Report) -> None:
    container = _container(deployment)
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        got = container.get(probe, {}).get("httpGet", {}).get("path")
        rep.check(got == path, f"{probe} is GET {path}", str(got))
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    grace = float(config.get("SHUTDOWN_GRACE_SECONDS", "25"))
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    pause = float(command[-1]) if command and command[0] == "sleep" else 0.0
    needed = grace + pause + HTTP_DRAIN_SECONDS
    period = pod.get("terminationGracePeriodSeconds", 30)
    rep.check(
        period >= needed,
        f"terminationGracePeriodSeconds ({period}) >= preStop {pause:g} s + "
        f"SHUTDOWN_GRACE_SECONDS {grace:g} s + {HTTP_DRAIN_SECONDS} s",
    )


def _check_security(deployment: Doc, rep: Report) -> None:
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    pod_sc, sc = pod.get("securityContext", {}), _container(deployment).get("securityContext", {})
    rep.check(pod_sc.get("runAsNonRoot") is True, "pod runs as non-root (runAsNonRoot)")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    rep.check(uid == IMAGE_UID, f"runAsUser is the image's user {IMAGE_UID}", str(uid))
    rep.check(sc.get("readOnlyRootFilesystem") is True, "container root filesystem is read-only")
    rep.check(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    rep.check(sc.get("capabilities", {}).get("drop") == ["ALL"], "all capabilities dropped")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
    rep.check(seccomp == "RuntimeDefault", "seccomp profile RuntimeDefault", str(seccomp))
    rep.check(pod.get("automountServiceAccountToken") is False, "no service account token")


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}


def _quantity(value: Any) -> float:
    match = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|m|)", str(value))
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def _check_resources(container: Doc, rep: Report) -> None:
    resources = container.get("resources", {})
    for kind in ("cpu", "memory"):
        request = resources.get("requests", {}).get(kind)
        limit = resources.get("limits", {}).get(kind)
        rep.check(request is not None and limit is not None, f"{kind} request and limit set")
        if request is not None and limit is not None:
            rep.check(_quantity(request) <= _quantity(limit), f"{kind} request <= limit")


def _check_ports(deployment: Doc, service: Doc, config: dict[str, str], rep: Report) -> None:
    ports = {p.get("name"): p.get("containerPort") for p in _container(deployment).get("ports", [])}
    rep.check(ports.get("http") == int(config.get("PORT", 0)), "container port http == PORT")
    metrics_port = int(config.get("METRICS_PORT", 0) or 0)
    rep.check(ports.get("metrics") == metrics_port > 0, "container port metrics == METRICS_PORT")
    notes = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations")
    notes = notes or {}
    rep.check(
        notes.get("prometheus.io/port") == str(metrics_port)
        and notes.get("prometheus.io/scrape") == "true",
        "pod annotations point the scraper at METRICS_PORT",
    )
    targets = [p.get("targetPort") for p in service.get("spec", {}).get("ports", [])]
    rep.check(targets == ["http"], "the Service exposes only the http port", str(targets))


def _check_selectors(deployment: Doc, service: Doc, pdb: Doc, rep: Report) -> None:
    labels = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    selectors = {
        "Deployment": deployment.get("spec", {}).get("selector", {}).get("matchLabels", {}),
        "Service": service.get("spec", {}).get("selector", {}),
        "PodDisruptionBudget": pdb.get("spec", {}).get("selector", {}).get("matchLabels", {}),
    }
    for kind, selector in selectors.items():
        ok = bool(selector) and all(labels.get(k) == v for k, v in selector.items())
        rep.check(ok, f"{kind} selector matches the pod labels", str(selector))


def _check_config(deployment: Doc, config: dict[str, str], rep: Report) -> None:
    sources = _container(deployment).get("envFrom", [])
    rep.check(any("configMapRef" in s for s in sources), "configuration from a ConfigMap")
    rep.check(any("secretRef" in s for s in sources), "secrets from a Secret")
    secret_like = [k for k in config if re.search(r"PRIVATE|TOKEN|PASSWORD|SECRET", k)]
    secret_like += [k for k, v in config.items() if re.search(r"://[^/@\s]*:[^/@\s]*@", v)]
    rep.check(not secret_like, "the ConfigMap holds no secrets", ", ".join(secret_like))
    rep.check(config.get("NODE_ENV") == "production", "NODE_ENV=production")


def _check_scaledobject(keda: list[Doc], config: dict[str, str], rep: Report) -> None:
    scaled, deployment = _one(keda, "ScaledObject"), _one(keda, "Deployment")
    spec = scaled.get("spec", {})
    rep.check(
        spec.get("scaleTargetRef", {}).get("name") == deployment.get("metadata", {}).get("name"),
        "ScaledObject targets the Deployment",
    )
    rep.check(
        "replicas" not in deployment.get("spec", {}), "keda: the Deployment leaves replicas to KEDA"
    )
    triggers = [t for t in spec.get("triggers", []) if t.get("type") == "rabbitmq"]
    meta = triggers[0].get("metadata", {}) if triggers else {}
    rep.check(
        meta.get("queueName") == config.get("RABBITMQ_QUEUE_NAME"),
        "the RabbitMQ trigger watches RABBITMQ_QUEUE_NAME",
        f"{meta.get('queueName')} vs {config.get('RABBITMQ_QUEUE_NAME')}",
    )
    rep.check(meta.get("mode") == "QueueLength" and str(meta.get("value", "")).isdigit(),
              "trigger mode QueueLength with an integer target")  # fmt: skip
    auth = triggers[0].get("authenticationRef", {}).get("name") if triggers else None
    names = {d["metadata"]["name"] for d in keda if d.get("kind") == "TriggerAuthentication"}
    rep.check(auth in names, "the trigger's TriggerAuthentication is in the overlay", str(auth))
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    rep.check(2 <= low <= high, f"2 <= minReplicaCount ({low}) <= maxReplicaCount ({high})")


# --------------------------------------------------------------------------- alerts


def check_rules(rules: Doc, name: str, rep: Report) -> None:
    rep.section(f"alert rules {name}:")
    alerts = [r for g in rules.get("groups") or [] for r in g.get("rules") or [] if "alert" in r]
    missing = REQUIRED_ALERTS - {a["alert"] for a in alerts}
    rep.check(not missing, "the required alerts exist", ", ".join(sorted(missing)))
    for alert in alerts:
        label = alert["alert"]
        rep.check("for" in alert, f"{label}: has a `for` duration")
        severity = alert.get("labels", {}).get("severity")
        rep.check(severity in ("warning", "critical"), f"{label}: severity label", str(severity))
        notes = alert.get("annotations", {})
        rep.check({"summary", "description"} <= set(notes), f"{label}: summary and description")


# --------------------------------------------------------------------------- dashboard


def check_dashboard(text: str, name: str, rep: Report) -> None:
    rep.section(f"Grafana dashboard {name}:")
    try:
        dashboard = json.loads(text)
    except ValueError as exc:
        rep.check(False, "valid JSON", str(exc))
        return
    from promql_names import dashboard_expressions, metric_names

    rep.check(bool(dashboard.get("uid")) and bool(dashboard.get("title")), "uid and title")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    rep.check(variables.get("datasource", {}).get("type") == "datasource",
              "a datasource variable (portable between Grafana instances)")  # fmt: skip
    panels = dashboard.get("panels", [])
    ids = [p.get("id") for p in panels]
    rep.check(len(ids) == len(set(ids)), "panel ids are unique")
    bad = [
        p.get("title")
        for p in panels
        if p.get("datasource", {}).get("uid") != "${datasource}" or not p.get("targets")
    ]
    rep.check(not bad, "every panel queries ${datasource}", ", ".join(map(str, bad)))
    used = {m for _, expr in dashboard_expressions(dashboard) for m in metric_names(expr)}
    missing = [what for metric, what in REQUIRED_PANEL_METRICS.items() if metric not in used]
    rep.check(not missing, "panels for throughput, latency, retries, DLQ, consumer, lag, depth",
              ", ".join(missing))  # fmt: skip
