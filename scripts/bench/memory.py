"""Memory with a large backlog: the peak RSS of a fresh service process draining
`backlog` messages that were queued before it started (prefetch bounds what it holds)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import amqp
from bench.data import make_subscriptions, queue_message
from bench.procfs import LoadMeter
from bench.service import ServiceProcess
from bench.sink_control import SinkClient
from push_service.topology import Topology, declare_topology


@dataclass(frozen=True)
class Memory:
    backlog: int
    devices: int
    peak_rss_mb: float
    drain_rate: float  # messages/s, from start-up to the last outcome
    others: float  # cores other processes used meanwhile


async def measure_memory(
    sink: SinkClient, backlog: int, devices: int, payload: int, prefetch: int, log_dir: Path
) -> Memory:
    service = ServiceProcess("memory", sys.executable, sink.sink.cafile, prefetch, log_dir)
    subs = make_subscriptions(sink.sink.base_url, max(64, devices))
    bodies = (
        queue_message(
            f"m{i}", [subs[(i * devices + j) % len(subs)] for j in range(devices)], payload
        )
        for i in range(backlog)
    )
    try:
        async with amqp.channel() as chan:
            # This worktree's code declares the queues, as the service it measures will.
            await declare_topology(chan.connection, Topology(service.queue))
            await amqp.publish_many(chan, service.queue, bodies)
        await sink.reset()
        meter, started = LoadMeter.start(), time.monotonic()
        await service.start()
        await sink.wait(backlog * devices, 1800)
        await service.wait_consumed(backlog, 60)
        elapsed, others = time.monotonic() - started, meter.others()
        rss = service.peak_rss_mb()
    finally:
        await service.stop()
        await service.cleanup()
    return Memory(backlog, devices, rss, backlog / elapsed, others)
