"""The goals of the performance issue (16), each with the value this run measured.

A goal is marked `pass` or `MISS` only when it was measured under its own conditions
(for example 100,000 queued messages, not a quick run's smaller backlog); otherwise
the value is shown with `n/a` and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.fanout import Fanout
from bench.latency import Latency
from bench.memory import Memory
from bench.summary import Results, paired

RATIO_GOALS = (  # contender, minimum ratio of the service's rate to it, what it is
    ("bare", 0.55, "the bare loop"),
    ("node", 2.0, "Node web-push"),
    ("pywebpush-plain", 8.0, "plain pywebpush"),
)
LATENCY_RATE, LATENCY_P99_MS = 500.0, 50.0
MEMORY_BACKLOG, MEMORY_MB = 100_000, 150.0
FANOUT_DEVICES, STALL_MS = 10_000, 50.0


@dataclass(frozen=True)
class Goal:
    text: str
    value: str
    verdict: str  # "pass", "MISS" or "n/a: why"


def _mark(ok: bool) -> str:
    return "pass" if ok else "MISS"


def ratio_goals(results: Results, service: str) -> list[Goal]:
    goals = []
    for name, minimum, what in RATIO_GOALS:
        text = f"{service} >= {minimum:g}x {what} (median of paired rounds)"
        spread = paired(results, service, name)
        if spread is None:
            goals.append(Goal(text, "-", "n/a: not measured in this run"))
            continue
        value = f"{spread.median:.2f}x (IQR {spread.q1:.2f}-{spread.q3:.2f})"
        goals.append(Goal(text, value, _mark(spread.median >= minimum)))
    return goals


def latency_goal(latency: Latency | None) -> Goal:
    text = f"latency p99 < {LATENCY_P99_MS:g} ms at {LATENCY_RATE:g} msg/s"
    if latency is None:
        return Goal(text, "-", "n/a: not measured in this run")
    value = f"p99 {latency.p99_ms:.1f} ms at {latency.rate:g} msg/s"
    if latency.rate != LATENCY_RATE:
        return Goal(text, value, "n/a: another rate")
    return Goal(text, value, _mark(latency.p99_ms < LATENCY_P99_MS))


def memory_goal(memory: Memory | None) -> Goal:
    text = f"peak RSS < {MEMORY_MB:g} MB with {MEMORY_BACKLOG:,} queued"
    if memory is None:
        return Goal(text, "-", "n/a: not measured in this run")
    value = f"{memory.peak_rss_mb:.0f} MB with {memory.backlog:,} queued"
    if memory.backlog < MEMORY_BACKLOG:
        return Goal(text, value, "n/a: a smaller backlog")
    return Goal(text, value, _mark(memory.peak_rss_mb < MEMORY_MB))


def fanout_goal(fanout: Fanout | None) -> Goal:
    text = f"no event-loop stall > {STALL_MS:g} ms in a {FANOUT_DEVICES:,}-device fan-out"
    if fanout is None:
        return Goal(text, "-", "n/a: not measured in this run")
    value = f"longest stall {fanout.stall_ms:.0f} ms with {fanout.devices:,} devices"
    if fanout.devices < FANOUT_DEVICES:
        return Goal(text, value, "n/a: fewer devices")
    return Goal(text, value, _mark(fanout.stall_ms <= STALL_MS))


def evaluate(
    results: Results,
    latency: Latency | None,
    memory: Memory | None,
    fanout: Fanout | None,
    service: str = "service",
) -> list[Goal]:
    return [
        *ratio_goals(results, service),
        latency_goal(latency),
        memory_goal(memory),
        fanout_goal(fanout),
    ]
