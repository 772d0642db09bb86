"""Competing consumers: two service processes share one queue and one status store."""

from __future__ import annotations

import re
from collections import Counter

import aiohttp
import redis.asyncio as redis

from tests.conftest import ServiceFactory
from tests.support import PushServer, Rabbit, Service, VapidPair, unique, wait_until

MESSAGES = 200
SUBSCRIPTIONS = 4
_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)


async def metric_total(service: Service, name: str, **labels: str) -> float:
    """Sum of a metric's samples in the process's /metrics whose labels include `labels`."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{service.base_url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match["value"])
    return total


async def test_two_processes_share_the_queue_and_deliver_each_message_once(
    service_factory: ServiceFactory,
    pushserver: PushServer,
    rabbit: Rabbit,
    redis_client: redis.Redis,
    vapid: VapidPair,
) -> None:
    shared = {
        "RABBITMQ_QUEUE_NAME": unique("test.scale"),
        "REDIS_KEY_PREFIX": unique("test.scale") + ":",
        "CONSUMER_PREFETCH": "5",
    }
    first = await service_factory(**shared)
    second = await service_factory(**shared)
    queue, prefix = first.queue, first.prefix
    channel = await rabbit._channel()
    assert (await channel.queue_declare(queue, passive=True)).consumer_count == 2

    subscriptions = [await pushserver.subscribe(vapid.public) for _ in range(SUBSCRIPTIONS)]
    expected: dict[str, set[str]] = {client_hash: set() for _, client_hash in subscriptions}
    ids = [unique("scale") for _ in range(MESSAGES)]
    for index, notification_id in enumerate(ids):
        subscription, client_hash = subscriptions[index % SUBSCRIPTIONS]
        expected[client_hash].add(notification_id)
        await rabbit.publish(
            queue,
            {
                "notification_id": notification_id,
                "user_id": f"user-{index % SUBSCRIPTIONS}",
                "devices": [subscription],
                "title": "Scale",
                "body": f"message {index}",
                "action_url": "https://example.com/scale",
            },
            message_id=notification_id,
        )

    async def statuses() -> list[str | None]:
        async with redis_client.pipeline(transaction=False) as pipe:
            for notification_id in ids:
                pipe.hget(f"{prefix}notification:{notification_id}", "status")
            return list(await pipe.execute())

    async def all_final() -> bool:
        return all(status in ("sent", "failed") for status in await statuses())

    await wait_until(all_final, 120, interval=0.2, message="every notification to finish")
    assert Counter(await statuses()) == {"sent": MESSAGES}
    async with redis_client.pipeline(transaction=False) as pipe:
        for notification_id in ids:
            pipe.hmget(f"{prefix}notification:{notification_id}", "sent", "failed")
        counts = await pipe.execute()
    assert all(c == ["1", "0"] for c in counts), counts

    # Exactly once at the push service: every id arrived once, at its own subscription.
    for client_hash, wanted in expected.items():
        received = Counter(m["notification_id"] for m in await pushserver.messages(client_hash))
        duplicates = {k: v for k, v in received.items() if v > 1}
        assert not duplicates, f"delivered more than once: {duplicates}"
        assert set(received) == wanted

    # Both processes did part of the work, and together they handled each message once.
    async def consumed_by_each() -> list[float] | None:
        counts = [
            await metric_total(service, "push_messages_consumed_total", result="sent")
            for service in (first, second)
        ]
        # A status is written a moment before the process counts the message.
        return counts if sum(counts) >= MESSAGES else None

    consumed = await wait_until(consumed_by_each, message="every message counted")
    assert all(c > 0 for c in consumed), f"work split {consumed}: one process idled"
    assert sum(consumed) == MESSAGES, consumed
    pushed = [
        await metric_total(service, "push_pushes_total", outcome="sent")
        for service in (first, second)
    ]
    assert sum(pushed) == MESSAGES, pushed
    assert await rabbit.count(queue) == 0
    assert await rabbit.count(f"{queue}.dlq") == 0
