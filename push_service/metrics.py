"""The service's Prometheus metrics, kept by `prometheus_client` behind a small facade.

Call sites write `metrics.pushes.inc(outcome="sent", host=host)`, `.dec()`, `.set(v)` or
`.observe(v)` with label values as keyword arguments; they never see the client library.
Each `Metrics` owns its registry (not the client's global one), so tests can create
several. The registry also carries the client's standard process, platform and GC
collectors (`process_*`, `python_info`, `python_gc_*`).

Hot path: the labelled child of each label combination is cached by the call's keyword
items, so an update costs a tuple, a dict lookup and the client's locked add.

Cardinality: label values come from the code, never from a request, except the push
service `host` (the host of a subscription endpoint that passed the allowlist). The first
`MAX_HOST_LABELS` distinct hosts a process sees keep their name; later ones are counted
as `other`, so a misconfigured allowlist (`*`) cannot grow the series without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MAX_HOST_LABELS = 100
OTHER_HOST = "other"

# `<name>_created` series would double the series count for nothing a dashboard uses.
# The switch is process-wide in the client; this process exports only these metrics.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class HostLabels:
    """Admits the first `limit` distinct hosts; any later host is reported as `other`."""

    def __init__(self, limit: int = MAX_HOST_LABELS) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, host: str) -> str:
        if host in self._seen:
            return host
        if len(self._seen) >= self.limit:
            return OTHER_HOST
        self._seen.add(host)
        return host


class _Family:
    """One metric family: resolves keyword labels to the client's child, cached."""

    def __init__(
        self, name: str, family: Any, labelnames: tuple[str, ...], hosts: HostLabels
    ) -> None:
        self.name = name
        self.labelnames = labelnames
        self._family = family
        self._labelled = bool(labelnames)
        self._hosts = hosts if "host" in labelnames else None
        self._children: dict[tuple[tuple[str, Any], ...], Any] = {}

    def _child(self, labels: dict[str, Any]) -> Any:
        if not self._labelled:
            return self._family
        key = tuple(labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._resolve(key, labels)
        return child

    def _resolve(self, key: tuple[tuple[str, Any], ...], labels: dict[str, Any]) -> Any:
        cache = True
        if self._hosts is not None and "host" in labels:
            host = self._hosts(str(labels["host"]))
            # Hosts past the cap are not cached: they would grow this dict without bound.
            cache = host != OTHER_HOST
            labels = {**labels, "host": host}
        child = self._family.labels(**labels)
        if cache:
            self._children[key] = child
        return child

    def _samples(self, suffix: str, labels: dict[str, Any]) -> float:
        wanted = {k: str(v) for k, v in labels.items()}
        for metric in self._family.collect():
            for sample in metric.samples:
                if sample.name == self.name + suffix and sample.labels == wanted:
                    return float(sample.value)
        return 0.0


class Counter(_Family):
    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        self._child(labels).inc(amount)

    def value(self, **labels: Any) -> float:
        """The current value (0 when never incremented); for tests and the benchmark."""
        return self._samples("_total", labels)


class Gauge(_Family):
    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        self._child(labels).inc(amount)

    def dec(self, amount: float = 1.0, **labels: Any) -> None:
        self._child(labels).dec(amount)

    def set(self, value: float, **labels: Any) -> None:
        self._child(labels).set(value)

    def value(self, **labels: Any) -> float:
        return self._samples("", labels)

    def remove(self, **labels: Any) -> None:
        """Drop one labelled series (a queue that no longer exists), if present."""
        with contextlib.suppress(KeyError):
            self._family.remove(*(str(labels[n]) for n in self.labelnames))
        self._children = {k: c for k, c in self._children.items() if dict(k) != labels}

    def labelled(self) -> list[dict[str, str]]:
        """The label sets that currently have a series."""
        return [s.labels for m in self._family.collect() for s in m.samples]


class Histogram(_Family):
    def observe(self, value: float, **labels: Any) -> None:
        self._child(labels).observe(value)

    def count(self, **labels: Any) -> float:
        return self._samples("_count", labels)

    def sum(self, **labels: Any) -> float:
        return self._samples("_sum", labels)


class Metrics:
    """The service's metrics; one instance per process, owned by the app."""

    def __init__(self, max_hosts: int = MAX_HOST_LABELS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.hosts = HostLabels(max_hosts)
        self._define_delivery()
        self._define_runtime()
        self._define_outage()

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        family = prometheus_client.Counter(name, doc, labels, registry=self.registry)
        return Counter(name.removesuffix("_total"), family, labels, self.hosts)

    def _gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        family = prometheus_client.Gauge(name, doc, labels, registry=self.registry)
        return Gauge(name, family, labels, self.hosts)

    def _histogram(self, name: str, doc: str, *labels: str) -> Histogram:
        family = prometheus_client.Histogram(
            name, doc, labels, registry=self.registry, buckets=LATENCY_BUCKETS
        )
        return Histogram(name, family, labels, self.hosts)

    def _define_delivery(self) -> None:
        self.messages = self._counter(
            "push_messages_consumed_total", "Queue messages handled, by result", "result"
        )
        self.pushes = self._counter(
            "push_pushes_total", "Pushes by outcome and push-service host", "outcome", "host"
        )
        self.retries = self._counter("push_retries_total", "Push attempts that were retries")
        self.invalidations = self._counter(
            "push_invalidations_total", "Gone subscriptions reported to the User Service", "result"
        )
        self.dead_lettered = self._counter(
            "push_dead_lettered_total", "Messages sent to the DLQ", "reason"
        )
        self.in_flight = self._gauge("push_in_flight_sends", "Push requests under way")
        self.push_latency = self._histogram("push_request_seconds", "Push-service request latency")
        self.e2e_latency = self._histogram(
            "push_end_to_end_seconds", "Publish to outcome recorded (needs message timestamp)"
        )

    def _define_runtime(self) -> None:
        self.connected = self._gauge("push_consumer_connected", "1 while consuming from RabbitMQ")
        self.broker_sessions = self._counter(
            "push_broker_sessions_total",
            "RabbitMQ sessions that started consuming, by node",
            "node",
        )
        self.loop_lag = self._histogram(
            "push_event_loop_lag_seconds", "How late the event loop ran a 20 ms timer"
        )
        self.loop_lag_max = self._gauge(
            "push_event_loop_lag_max_seconds", "Longest event loop stall seen since start"
        )
        self.queue_messages = self._gauge(
            "push_queue_messages", "Messages ready in a RabbitMQ queue (passive declare)", "queue"
        )

    def _define_outage(self) -> None:
        """Parking and circuit breaking while a push service is unwell."""
        self.deferred = self._counter(
            "push_deferred_total",
            "Device pushes parked in a delay queue for a later retry",
            "host",
            "reason",
        )
        self.expired = self._counter(
            "push_expired_total", "Device pushes given up because the deadline passed", "host"
        )
        self.circuit_state = self._gauge(
            "push_circuit_state",
            "Circuit per push-service host: 0 closed, 1 half-open, 2 open",
            "host",
        )
        self.circuit_transitions = self._counter(
            "push_circuit_transitions_total", "Circuit state changes, by new state", "host", "state"
        )
        self.parked = self._counter(
            "push_parked_messages_total", "Messages published to a delay queue"
        )
        self.reports = self._counter(
            "push_user_service_reports_total",
            "Reports to the User Service by kind and result "
            "(queued, ok, refused, retried, dead_lettered, skipped)",
            "kind",
            "result",
        )
        self.held = self._counter(
            "push_held_messages_total", "Messages published to a hold queue (circuit open)"
        )
        self.released = self._counter(
            "push_released_messages_total", "Held messages moved back to the main queue"
        )
        self.probes = self._counter(
            "push_hold_probes_total", "Held messages taken to probe a push service"
        )

    def render(self) -> str:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry).decode("utf-8")


class LoopLagMonitor:
    """Measures event-loop stalls: CPU work between awaits delays heartbeats and pushes."""

    def __init__(self, metrics: Metrics, interval: float = 0.02) -> None:
        self.metrics = metrics
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        worst = 0.0
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.perf_counter() - started - self.interval)
            self.metrics.loop_lag.observe(lag)
            if lag > worst:
                worst = lag
                self.metrics.loop_lag_max.set(worst)
