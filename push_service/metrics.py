"""A small Prometheus text-format registry (counters, gauges, histograms with labels).

Kept in-house: the service needs a dozen metrics, not a client library, and the
hot path pays one dict update per observation.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections import defaultdict

Labels = tuple[tuple[str, str], ...]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _escape(text: str, quote: bool = True) -> str:
    """Text-format escaping: backslash and newline always, double quote in label values."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _number(value: float) -> str:
    """A sample value without loss: `:g` would print 1234567 as 1.23457e+06."""
    if isinstance(value, int):  # bool included: True renders as 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _format_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in items) + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text

    def header(self) -> list[str]:
        return [
            f"# HELP {self.name} {_escape(self.help, quote=False)}",
            f"# TYPE {self.name} {self.kind}",
        ]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[_labels(labels)] += amount

    def value(self, **labels: str) -> float:
        return self.values.get(_labels(labels), 0.0)

    def render(self) -> list[str]:
        return [f"{self.name}{_format_labels(k)} {_number(v)}" for k, v in self.values.items()]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self.values[_labels(labels)] = value

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.values[_labels(labels)] -= amount


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        super().__init__(name, help_text)
        self.buckets = buckets
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, **labels: str) -> None:
        key = _labels(labels)
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] += value

    def render(self) -> list[str]:
        lines = []
        for key, counts in self.counts.items():
            cumulative = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f"{self.name}_bucket{_format_labels(key, (('le', le),))} {cumulative}")
            lines.append(f"{self.name}_sum{_format_labels(key)} {_number(self.sums[key])}")
            lines.append(f"{self.name}_count{_format_labels(key)} {cumulative}")
        return lines


class Metrics:
    """The service's metrics; one instance per process, owned by the app."""

    def __init__(self) -> None:
        self.messages = Counter("push_messages_consumed_total", "Queue messages handled, by result")
        self.pushes = Counter("push_pushes_total", "Pushes by outcome and push-service host")
        self.retries = Counter("push_retries_total", "Push attempts that were retries")
        self.invalidations = Counter(
            "push_invalidations_total", "Gone subscriptions reported to the User Service"
        )
        self.dead_lettered = Counter("push_dead_lettered_total", "Messages sent to the DLQ")
        self.deferred = Counter(
            "push_deferred_total", "Device pushes parked in a delay queue for a later retry"
        )
        self.expired = Counter(
            "push_expired_total", "Device pushes given up because the deadline (TTL) passed"
        )
        self.parked = Counter("push_parked_messages_total", "Messages published to a delay queue")
        self.circuit_state = Gauge(
            "push_circuit_state", "Circuit of a push service: 0 closed, 1 half-open, 2 open"
        )
        self.circuit_transitions = Counter(
            "push_circuit_transitions_total", "Circuit state changes per push service"
        )
        self.in_flight = Gauge("push_in_flight_sends", "Push requests under way")
        self.connected = Gauge("push_consumer_connected", "1 while consuming from RabbitMQ")
        self.push_latency = Histogram("push_request_seconds", "Push-service request latency")
        self.e2e_latency = Histogram(
            "push_end_to_end_seconds", "Publish to outcome recorded (needs message timestamp)"
        )
        self.loop_lag = Histogram(
            "push_event_loop_lag_seconds", "How late the event loop ran a 20 ms timer"
        )
        self.loop_lag_max = Gauge(
            "push_event_loop_lag_max_seconds", "Longest event loop stall seen since start"
        )

    def all(self) -> list[_Metric]:
        return [m for m in vars(self).values() if isinstance(m, _Metric)]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines += metric.header() + metric.render()
        return "\n".join(lines) + "\n"


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
