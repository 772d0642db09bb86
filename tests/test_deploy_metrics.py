"""The live /metrics of a real service against what deploy/ (dashboard, alerts) uses."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServiceFactory
from tests.support import ROOT, free_port, wait_until


def _load(path: Path) -> Any:
    """A module of scripts/ by its path (scripts/ is a folder of tools, not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


promql = _load(ROOT / "scripts/deploy/promql_names.py")

RULE_FILES = sorted((ROOT / "deploy/prometheus").glob("*.rules.yaml"))
DASHBOARDS = sorted((ROOT / "deploy/grafana").glob("*.json"))
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
TOKEN = "deploy-metrics-test-token"


def exposed_names(text: str) -> set[str]:
    """Every series name the scrape can have, also for labelled families with no sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def missing(text: str, used: dict[str, set[str]]) -> dict[str, set[str]]:
    exposed = exposed_names(text)
    return {name: where for name, where in used.items() if name not in exposed}


async def scrape(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/metrics", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.text()


@pytest.fixture(scope="module")
def used() -> dict[str, set[str]]:
    names: dict[str, set[str]] = promql.names_in_files(RULE_FILES, DASHBOARDS)
    assert RULE_FILES and DASHBOARDS and len(names) > 10, "nothing found to check"
    return names


async def test_live_metrics_parse_and_cover_dashboard_and_alerts(
    service_factory: ServiceFactory, used: dict[str, set[str]]
) -> None:
    # As in the Kubernetes manifests: a metrics listener without a token, the API with one.
    metrics_port = free_port()
    service = await service_factory(
        QUEUE_DEPTH_INTERVAL_SECONDS="1", API_TOKENS=TOKEN, METRICS_PORT=str(metrics_port)
    )
    listener = f"http://127.0.0.1:{metrics_port}"

    async def with_queue_depths() -> str | None:
        text = await scrape(listener)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        depths = {s.labels["queue"]: s.value for s in families["push_queue_messages"].samples}
        # main queue, DLQ and the delay queues, all empty
        return text if depths == dict.fromkeys(service.queues, 0.0) else None

    text = await wait_until(with_queue_depths, 20, message="queue depths in /metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds"):
        assert families[name].samples, f"{name} has no sample"
    assert families["process_resident_memory_bytes"].samples[0].value > 10_000_000
    assert families["python_info"].samples[0].labels["implementation"] == "CPython"
    assert families["push_consumer_connected"].samples[0].value == 1
    assert not missing(text, used), "named in deploy/ but not in /metrics"
    assert not missing(await scrape(service.base_url, TOKEN), used), "the API port differs"


def test_a_name_the_service_lacks_is_reported(used: dict[str, set[str]]) -> None:
    """The check above has teeth: an unknown metric in an alert would be caught."""
    text = "# HELP push_pushes_total x\n# TYPE push_pushes_total counter\n"
    fake = {
        **used,
        **{name: {"x"} for name in promql.metric_names("rate(push_pushes_sent_total[5m])")},
    }
    found = missing(text, fake)
    assert "push_pushes_sent_total" in found
    assert "push_pushes_total" not in found
    assert "push_queue_messages" in found


def test_names_are_read_from_every_rule_and_panel(used: dict[str, set[str]]) -> None:
    assert {"push_consumer_connected", "push_queue_messages", "push_pushes_total"} <= set(used)
    assert "push_request_seconds_bucket" in used and "push_event_loop_lag_seconds_bucket" in used
    assert not {"sum", "rate", "by", "le", "queue", "host", "and", "on"} & set(used)
    assert any("PushServiceQueueStalled" in where for where in used["push_queue_messages"])
    assert isinstance(RULE_FILES[0], Path)
