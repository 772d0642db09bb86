"""Metric names referenced by PromQL expressions (alert rules, dashboard panels).

Used by the deployment checks and by tests/test_deploy_metrics.py, which holds every name
against a live /metrics scrape. Stdlib only. Not a PromQL parser: it drops strings,
label matchers, durations and grouping clauses, then keeps the identifiers that are not
followed by `(` (functions) and are not keywords.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
KEYWORDS |= {"group_left", "group_right", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_TEMPLATE = re.compile(r"\$\{?\w+\}?")
_NUMBER_SUFFIX = re.compile(r"\b\d+(\.\d+)?(e[+-]?\d+)?[smhdwy]?\b")


def metric_names(expr: str) -> set[str]:
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _TEMPLATE.sub(" ", text)
    text = _NUMBER_SUFFIX.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def rule_expressions(rules: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(alert or record name, expr) of a Prometheus rule file."""
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            yield rule.get("alert") or rule.get("record") or "?", str(rule.get("expr", ""))


def dashboard_expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every target of a Grafana dashboard, rows included."""
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield str(panel.get("title", "?")), str(target["expr"])


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def names_in_files(rule_files: Iterable[Path], dashboards: Iterable[Path]) -> dict[str, set[str]]:
    """metric name -> where it is used ("alert X" / "panel Y")."""
    import yaml  # the deploy tools venv and the test venv both have PyYAML

    used: dict[str, set[str]] = {}
    for path in rule_files:
        for name, expr in rule_expressions(yaml.safe_load(path.read_text(encoding="utf-8"))):
            for metric in metric_names(expr):
                used.setdefault(metric, set()).add(f"{path.name}: {name}")
    for path in dashboards:
        for title, expr in dashboard_expressions(json.loads(path.read_text(encoding="utf-8"))):
            for metric in metric_names(expr):
                used.setdefault(metric, set()).add(f"{path.name}: {title}")
    return used
