"""Latency at a steady rate: from publishing a message to the push service accepting
its push, on a fresh service process and a sink that records arrival times.

Each message has its own endpoint (`/push/<id>`), so a push pairs with its message
exactly; both clocks are CLOCK_MONOTONIC of the same machine. A warm-up second at the
same rate opens the service's connections before the measured run starts.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiormq.abc import AbstractChannel

from bench import amqp
from bench.data import make_subscriptions, queue_message
from bench.procfs import LoadMeter
from bench.service import ServiceProcess
from bench.sink_control import Sink, SinkClient, start_sink


@dataclass(frozen=True)
class Latency:
    rate: float
    seconds: float
    sent: int
    received: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    others: float  # cores other processes used meanwhile


async def publish_paced(
    chan: AbstractChannel, queue: str, sink: Sink, rate: float, count: int, first: int
) -> dict[str, int]:
    """Publish `count` messages at `rate`/s; returns the publish time of each push id."""
    keys = [s["keys"] for s in make_subscriptions(sink.base_url, 16)]
    sent: dict[str, int] = {}
    confirms: list[asyncio.Task[object]] = []
    started = time.monotonic()
    for i in range(first, first + count):
        delay = started + (i - first) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the publisher, not synchronising
        push_id = f"l{i}"
        device = {"endpoint": sink.endpoint(push_id), "keys": keys[i % len(keys)]}
        sent[push_id] = time.monotonic_ns()
        body = queue_message(push_id, [device])
        # A task: the message leaves now, and its confirm is awaited with the others.
        publish = chan.basic_publish(body, routing_key=queue, properties=amqp.PERSISTENT)
        confirms.append(asyncio.ensure_future(publish))
    await asyncio.gather(*confirms)
    return sent


async def measure_latency(rate: float, seconds: float, prefetch: int, log_dir: Path) -> Latency:
    with start_sink(record_times=True) as sink:
        async with SinkClient(sink) as client:
            service = ServiceProcess("latency", sys.executable, sink.cafile, prefetch, log_dir)
            try:
                await service.start()
                async with amqp.channel() as chan:
                    warmup = int(rate)
                    await publish_paced(chan, service.queue, sink, rate, warmup, 0)
                    await client.wait(warmup, 60)
                    await client.reset()
                    meter = LoadMeter.start()
                    total = int(rate * seconds)
                    sent = await publish_paced(chan, service.queue, sink, rate, total, warmup)
                await client.wait(total, max(60.0, seconds * 10))
                others = meter.others()
                stats = await client.stats(times=True)
            finally:
                await service.stop()
                await service.cleanup()
    arrivals = {str(push_id): int(t) for push_id, t in stats["times"]}
    latencies = [(arrivals[i] - t) / 1e6 for i, t in sent.items() if i in arrivals]
    q = statistics.quantiles(latencies, n=100)
    p50, p95, p99 = q[49], q[94], q[98]
    return Latency(rate, seconds, len(sent), len(latencies), p50, p95, p99, max(latencies), others)
