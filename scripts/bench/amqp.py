"""The shared RabbitMQ and Redis: publishing backlogs, and removing what a run created.

Every run names its queues `bench-<run>-...` and its Redis keys `bench:<run>:...`, so
that it never touches another session's data on the machine's shared servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterable

import aiormq
import redis.asyncio as redis
from aiormq.abc import AbstractChannel
from pamqp import commands as spec

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
RUN_ID = uuid.uuid4().hex[:8]
PERSISTENT = spec.Basic.Properties(delivery_mode=2, content_type="application/json")


def queue_name(label: str) -> str:
    return f"bench-{RUN_ID}-{label}"


def redis_prefix(label: str) -> str:
    return f"bench:{RUN_ID}:{label}:"


@contextlib.asynccontextmanager
async def channel() -> AsyncIterator[AbstractChannel]:
    connection = await aiormq.connect(AMQP_URL)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish_many(
    chan: AbstractChannel, queue: str, bodies: Iterable[bytes], window: int = 500
) -> int:
    """Publish persistently through the default exchange, `window` confirms in flight."""
    count, pending = 0, []
    for body in bodies:
        pending.append(chan.basic_publish(body, routing_key=queue, properties=PERSISTENT))
        count += 1
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return count


async def ready_messages(chan: AbstractChannel, queue: str) -> int:
    ok = await chan.queue_declare(queue, passive=True)
    return int(ok.message_count or 0)


def _run_queues() -> list[str]:
    """The queues of this run, whatever a service revision declared besides its own
    (delay stages, a DLQ): read-only `rabbitmqctl list_queues`, when it is usable."""
    if shutil.which("rabbitmqctl") is None:
        return []
    try:
        proc = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return []
    return [n for n in proc.stdout.split() if n.startswith(f"bench-{RUN_ID}-")]


async def delete_queues(names: Iterable[str]) -> None:
    """Delete the given queues (and their `.dlq`) and any other queue of this run."""
    wanted = set(names) | {f"{n}.dlq" for n in names}
    wanted |= set(await asyncio.to_thread(_run_queues))
    async with channel() as chan:
        for name in sorted(wanted):
            with contextlib.suppress(aiormq.AMQPError):
                await chan.queue_delete(name)


async def delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=10_000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
    finally:
        await client.aclose()
