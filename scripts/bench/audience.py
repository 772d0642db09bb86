"""An audience fan-out: a topic of `subscribers` registered subscriptions delivered by
two service processes sharing the queue, against the same pushes sent as device lists.

The subscribers are written straight to Redis through the service's Registry, with
endpoints on the sink. Redis memory per subscription is measured twice: the growth of
`used_memory` over the registration (hash, indexes and allocator overhead), and
`MEMORY USAGE` of sampled hashes and of the topic index. Each process's RSS growth is
its peak (VmHWM) at the end of a run less its resident size before the first.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from bench import amqp
from bench.data import make_subscriptions, queue_message
from bench.service import ServiceProcess
from bench.sink_control import SinkClient
from push_service.registry import Registry, Subscription

TOPIC = "bench-topic"
CONCURRENCY = 64  # registrations in flight
SAMPLES = 500  # hashes sampled by MEMORY USAGE
PACE_GOAL, RSS_GOAL_MB = 0.9, 50.0  # the topic within 10% of device lists; RSS growth


@dataclass
class AudienceRun:
    subscribers: int
    processes: int
    chunk: int
    prefetch: int
    register_seconds: float = 0.0
    used_memory_per_sub: float = 0.0  # bytes: INFO used_memory growth / subscribers
    hash_bytes: float = 0.0  # MEMORY USAGE of one subscription hash (mean of a sample)
    index_bytes_per_sub: float = 0.0  # MEMORY USAGE of the topic index / subscribers
    topic_seconds: list[float] = field(default_factory=list)
    list_seconds: list[float] = field(default_factory=list)
    idle_rss_mb: list[float] = field(default_factory=list)
    topic_peak_rss_mb: list[float] = field(default_factory=list)
    list_peak_rss_mb: list[float] = field(default_factory=list)
    record_bytes: int = 0  # MEMORY USAGE of the topic notification's status record

    def rate(self, seconds: list[float]) -> float:
        ordered = sorted(seconds)
        middle = len(ordered) // 2
        if not ordered:
            return float("nan")
        median = ordered[middle] if len(ordered) % 2 else sum(ordered[middle - 1 : middle + 1]) / 2
        return self.subscribers / median

    def lines(self) -> list[str]:
        topic, listed = self.rate(self.topic_seconds), self.rate(self.list_seconds)
        growth = [p - i for p, i in zip(self.topic_peak_rss_mb, self.idle_rss_mb, strict=True)]
        after = [p - i for p, i in zip(self.list_peak_rss_mb, self.idle_rss_mb, strict=True)]
        # From MEMORY USAGE: used_memory moves with every other tenant of a shared Redis.
        per_sub = self.hash_bytes + self.index_bytes_per_sub
        per_10m = per_sub * 10_000_000 / 2**30
        met = topic / listed >= PACE_GOAL and max(growth, default=0.0) < RSS_GOAL_MB
        return [
            f"audience: a topic of {self.subscribers:,} subscribers, {self.processes} processes, "
            f"FANOUT_CHUNK_SIZE={self.chunk}, CONSUMER_PREFETCH={self.prefetch}",
            f"  registered through Registry in {self.register_seconds:.1f} s",
            f"  Redis per subscription (MEMORY USAGE): hash {self.hash_bytes:,.0f} B + topic "
            f"index {self.index_bytes_per_sub:,.0f} B = {per_sub:,.0f} B; 10 million: "
            f"{per_10m:,.1f} GiB (used_memory grew {self.used_memory_per_sub:,.0f} B per "
            "subscription, with every other tenant's writes)",
            f"  topic: {', '.join(f'{s:.1f}' for s in self.topic_seconds)} s "
            f"-> {topic:,.0f} pushes/s (median)",
            f"  device lists ({self.chunk} per message): "
            f"{', '.join(f'{s:.1f}' for s in self.list_seconds)} s -> {listed:,.0f} pushes/s",
            f"  topic / device lists: {topic / listed:.2f}x; the topic's status record: "
            f"{self.record_bytes / 2**20:,.1f} MiB ({self.record_bytes / self.subscribers:,.0f}"
            " B per device)",
            f"  RSS before: {', '.join(f'{m:.0f}' for m in self.idle_rss_mb)} MB; growth to the "
            f"peak of the first topic run: {', '.join(f'{g:.1f}' for g in growth)} MB; after "
            f"every run: {', '.join(f'{g:.1f}' for g in after)} MB",
            f"  goal: topic >= {PACE_GOAL} of the device lists' pace, RSS growth < "
            f"{RSS_GOAL_MB:g} MB in the topic run: {'met' if met else 'NOT met'}",
        ]


async def register(client: redis.Redis, prefix: str, base_url: str, count: int) -> float:
    """`count` subscriptions in TOPIC, keys from a small pool (the sink does not decrypt)."""
    registry = Registry(client, prefix)
    pool = make_subscriptions(base_url, 64)
    base = base_url.rstrip("/")
    started = time.monotonic()
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        keys = pool[i % len(pool)]["keys"]
        sub = Subscription(f"{base}/push/a{i}", keys["p256dh"], keys["auth"], topics=(TOPIC,))
        async with slots:
            await registry.upsert(sub)

    for start in range(0, count, 10_000):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 10_000))))
    return time.monotonic() - started


async def measure_redis(run: AudienceRun, client: redis.Redis, prefix: str, before: int) -> None:
    info = await client.info("memory")
    run.used_memory_per_sub = (int(info["used_memory"]) - before) / run.subscribers
    sample = [k async for k in client.scan_iter(match=f"{prefix}sub:*", count=1000)][:SAMPLES]
    sizes = [await client.memory_usage(k, samples=0) or 0 for k in sample]
    run.hash_bytes = sum(sizes) / max(1, len(sizes))
    index = await client.memory_usage(f"{prefix}topic:{TOPIC}", samples=0) or 0
    run.index_bytes_per_sub = index / run.subscribers


def device_list_bodies(
    subs: list[dict[str, Any]], count: int, chunk: int, tag: str, payload: int
) -> list[bytes]:
    bodies = []
    for n, start in enumerate(range(0, count, chunk)):
        devices = [
            {"endpoint": f"{{base}}/push/a{i}", "keys": subs[i % len(subs)]["keys"]}
            for i in range(start, min(count, start + chunk))
        ]
        bodies.append(queue_message(f"{tag}-{n}", devices, payload))
    return bodies


async def final(client: redis.Redis, prefix: str, notification_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await client.hget(f"{prefix}notification:{notification_id}", "status")
        if status in (b"sent", b"failed"):
            return str(status.decode())
        await asyncio.sleep(0.05)  # polling another process's record: no event to wait on
    raise TimeoutError(f"{notification_id} not final after {timeout:.0f} s")


async def measure_audience(
    sink: SinkClient,
    subscribers: int,
    *,
    processes: int = 2,
    chunk: int = 500,
    rounds: int = 1,
    payload: int = 300,
    prefetch: int = 256,
    log_dir: Path,
) -> AudienceRun:
    run = AudienceRun(subscribers, processes, chunk, prefetch)
    services = [
        ServiceProcess(f"audience-{i}", sys.executable, sink.sink.cafile, prefetch, log_dir)
        for i in range(processes)
    ]
    first = services[0]
    for service in services:  # one queue and one Redis prefix: replicas of one service
        service.queue, service.prefix = first.queue, first.prefix
        service.env.update(
            RABBITMQ_QUEUE_NAME=first.queue, REDIS_KEY_PREFIX=first.prefix,
            FANOUT_CHUNK_SIZE=str(chunk), MAX_DEVICES_PER_MESSAGE=str(max(chunk, 10_000)),
        )  # fmt: skip
    # Blocking: registrations in flight wait for a free connection instead of failing.
    client = redis.Redis.from_pool(
        redis.BlockingConnectionPool.from_url(amqp.REDIS_URL, max_connections=CONCURRENCY)
    )
    base = sink.sink.base_url
    try:
        before = int((await client.info("memory"))["used_memory"])
        run.register_seconds = await register(client, first.prefix, base, subscribers)
        await measure_redis(run, client, first.prefix, before)
        for service in services:
            await service.start()
        run.idle_rss_mb = [s.peak_rss_mb() for s in services]
        pool = make_subscriptions(base, 64)
        template = json.loads(queue_message("t", pool[:1], payload))
        # Interleaved, the order swapped every other round: the machine's load drifts.
        # The topic goes first, so that the first RSS peak is the topic's alone.
        for r in range(rounds):
            for kind in ("topic", "list") if r % 2 == 0 else ("list", "topic"):
                if kind == "topic":
                    await topic_once(run, sink, client, first, template, f"topic-{r}")
                    if r == 0:
                        run.topic_peak_rss_mb = [s.peak_rss_mb() for s in services]
                else:
                    await list_once(run, sink, client, first, pool, f"list-{r}", payload)
        run.list_peak_rss_mb = [s.peak_rss_mb() for s in services]
        run.record_bytes = (
            await client.memory_usage(f"{first.prefix}notification:topic-0", samples=0) or 0
        )
    finally:
        for service in services:
            await service.stop()
        await first.cleanup()
        await client.aclose()
    return run


async def topic_once(
    run: AudienceRun,
    sink: SinkClient,
    client: redis.Redis,
    service: ServiceProcess,
    template: dict[str, Any],
    notification_id: str,
) -> None:
    body = {**template, "notification_id": notification_id, "audience": {"topic": TOPIC}}
    body.pop("devices")
    await sink.reset()
    started = time.monotonic()
    async with amqp.channel() as chan:
        await amqp.publish_many(chan, service.queue, [json.dumps(body).encode()])
    await sink.wait(run.subscribers, 900)
    await final(client, service.prefix, notification_id, 120)
    run.topic_seconds.append(time.monotonic() - started)


async def list_once(
    run: AudienceRun,
    sink: SinkClient,
    client: redis.Redis,
    service: ServiceProcess,
    pool: list[dict[str, Any]],
    tag: str,
    payload: int,
) -> None:
    base = sink.sink.base_url.rstrip("/")
    bodies = [
        b.replace(b"{base}", base.encode())
        for b in device_list_bodies(pool, run.subscribers, run.chunk, tag, payload)
    ]
    await sink.reset()
    started = time.monotonic()
    async with amqp.channel() as chan:
        await amqp.publish_many(chan, service.queue, bodies)
    await sink.wait(run.subscribers, 900)
    await final(client, service.prefix, f"{tag}-{len(bodies) - 1}", 120)
    run.list_seconds.append(time.monotonic() - started)
