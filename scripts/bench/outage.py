"""A push service in an outage beside a healthy one: the healthy one's pace, alone and
beside it, from the outage's first second.

Each run starts a fresh service (every circuit closed, as when an outage begins) on a
queue of its own, publishes the backlog while the service is frozen, and times the
healthy pushes from the moment it is thawed. `alone` is `healthy` notifications for the
sink; `beside` is the same with one in five more for the sink's dark port, which
accepts connections and never answers (only the push timeout or stall detection can
notice it). The first fifth of the healthy pushes is the outage's first seconds, before
its circuit opens (stall detection, PUSH_CIRCUIT_STALL_SECONDS, 5 s); the default
backlog lasts about twice that, so the whole run covers the open circuit too. Runs
alternate their order every round and are paired per round, like the throughput
rounds, so that the machine's drift weighs on both alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import amqp
from bench.data import make_subscriptions, queue_message
from bench.service import ServiceProcess
from bench.sink_control import SinkClient

DARK_EVERY = 5  # the scenario: 1,200 of 6,000 notifications for the dark one
FIRST_SHARE = 5  # the first fifth of the healthy pushes: the outage's first seconds
GOAL = 0.9


@dataclass
class OutageRun:
    healthy: int
    rounds: int
    prefetch: int
    # Per run: seconds to the first fifth and to every healthy push, service CPU seconds.
    alone: list[tuple[float, float, float]] = field(default_factory=list)
    beside: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def dark(self) -> int:
        return self.healthy // (DARK_EVERY - 1)

    def paired(self, which: int) -> list[float]:
        """Beside / alone pace per round: the inverse ratio of their times."""
        return [a[which] / b[which] for a, b in zip(self.alone, self.beside, strict=True)]

    def lines(self) -> list[str]:
        whole, first = self.paired(1), self.paired(0)
        pace = [self.healthy / a[1] for a in self.alone]
        cpu_alone = statistics.median(a[2] / self.healthy for a in self.alone) * 1e6
        cpu_beside = statistics.median(b[2] / self.healthy for b in self.beside) * 1e6
        met = min(statistics.median(whole), statistics.median(first)) >= GOAL
        verdict = "met" if met else "NOT met"
        return [
            f"outage: {self.healthy:,} healthy notifications alone, and beside {self.dark:,} for "
            f"a push service that never answers; {self.rounds} paired rounds, fresh service "
            f"each run, CONSUMER_PREFETCH={self.prefetch}",
            f"  healthy pace alone: {', '.join(f'{p:,.0f}' for p in pace)} pushes/s",
            f"  beside / alone, every healthy push: {_ratios(whole)}",
            f"  beside / alone, first fifth ({self.healthy // FIRST_SHARE:,} pushes): "
            f"{_ratios(first)}",
            f"  service CPU per healthy push: {cpu_alone:,.0f} us alone, {cpu_beside:,.0f} us "
            f"beside (the dark ones' share included)",
            f"  goal >= {GOAL} of the pace, whole and first fifth (medians): {verdict}",
        ]


def _ratios(values: list[float]) -> str:
    return f"{', '.join(f'{v:.2f}' for v in values)} (median {statistics.median(values):.2f}x)"


def backlog(healthy_url: str, dark_url: str, count: int, dark: bool, tag: str) -> list[bytes]:
    """`count` healthy notifications, with one in DARK_EVERY more for the dark port."""
    keys = [s["keys"] for s in make_subscriptions(healthy_url, 64)]
    bodies = []
    for i in range(count):
        if dark and i % (DARK_EVERY - 1) == 0:
            device = {"endpoint": f"{dark_url}/push/{tag}-d{i}", "keys": keys[i % len(keys)]}
            bodies.append(queue_message(f"{tag}-d{i}", [device]))
        device = {"endpoint": f"{healthy_url}/push/{tag}-h{i}", "keys": keys[i % len(keys)]}
        bodies.append(queue_message(f"{tag}-h{i}", [device]))
    return bodies


async def run_once(
    run: OutageRun, sink: SinkClient, dark: bool, tag: str, log_dir: Path
) -> tuple[float, float, float]:
    service = ServiceProcess(tag, sys.executable, sink.sink.cafile, run.prefetch, log_dir)
    bodies = backlog(sink.sink.base_url, sink.sink.dark_url, run.healthy, dark, tag)
    try:
        await service.start()
        await sink.reset()
        await service.freeze()
        async with amqp.channel() as chan:
            await amqp.publish_many(chan, service.queue, bodies)
        cpu = service.cpu_seconds()
        started = time.monotonic()
        service.thaw()
        await sink.wait(run.healthy // FIRST_SHARE, 300)
        first = time.monotonic() - started
        await sink.wait(run.healthy, 300)
        whole = time.monotonic() - started
        used = service.cpu_seconds() - cpu
        await sink.expect(tag, run.healthy)  # each healthy push once, none rejected
        return first, whole, used
    finally:
        await service.stop()
        await service.cleanup()  # its hold queues and held origins too


async def measure_outage(
    sink: SinkClient, healthy: int, *, rounds: int, prefetch: int, log_dir: Path
) -> OutageRun:
    run = OutageRun(healthy, rounds, prefetch)
    for r in range(rounds):
        for dark in (False, True) if r % 2 == 0 else (True, False):
            kind = "beside" if dark else "alone"
            measured = await run_once(run, sink, dark, f"outage-{kind}-{r}", log_dir)
            (run.beside if dark else run.alone).append(measured)
            print(f"  outage round {r + 1}/{rounds} {kind}: {measured[1]:.2f} s", flush=True)
    return run
