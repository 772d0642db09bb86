"""What the failover tests share: a push sink that notes when pushes arrive, a stream of
notifications, the service's health and metrics, and the line of numbers each prints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiormq
import orjson
from aiohttp import web
from pamqp import commands as spec

from tests.support import PushSink, Service, device_keys

MESSAGES = 3000
MAX_DUPLICATE_SHARE = 0.01


@dataclass
class TimedSink(PushSink):
    """The push sink, also noting when each push arrived."""

    times: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        response = await super().handle(request)
        self.times.append(time.monotonic())
        return response

    def delivered(self, ids: Iterable[str]) -> int:
        return sum(1 for i in ids if i in self.hits)

    def duplicated(self) -> int:
        return sum(count - 1 for count in self.hits.values())

    def resumed_after(self, fault: float, back: float) -> str:
        """From the fault to the first push after the service was `back` (a monotonic time).

        Pushes that were under way at the fault may still arrive before that; they are
        not the service resuming.
        """
        later = [t for t in self.times if t >= back]
        return f"{min(later) - fault:.2f}s" if later else "no push left by then"


def notification(sink: PushSink, notification_id: str, keys: dict[str, str]) -> bytes:
    return orjson.dumps(
        {
            "notification_id": notification_id,
            "user_id": "cluster-test",
            "devices": [{"endpoint": sink.endpoint(notification_id), "keys": keys}],
            "title": "Failover",
            "body": notification_id,
            "action_url": "https://example.com/",
        }
    )


async def publish_all(url: str, queue: str, sink: PushSink, ids: list[str]) -> None:
    """Publish one notification per id, persistent and confirmed, 200 at a time."""
    keys = device_keys()
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for start in range(0, len(ids), 200):
            confirms = await asyncio.gather(
                *(
                    channel.basic_publish(
                        notification(sink, i, keys),
                        routing_key=queue,
                        properties=spec.Basic.Properties(delivery_mode=2, message_id=i),
                    )
                    for i in ids[start : start + 200]
                )
            )
            assert all(isinstance(c, spec.Basic.Ack) for c in confirms)
    finally:
        await connection.close()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def health(service: Service) -> dict[str, Any]:
    body: dict[str, Any] = await get_json(f"{service.base_url}/health")
    return body["dependencies"]


async def consumed(service: Service) -> int:
    """Messages the service has handled, redeliveries included (its metrics)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{service.base_url}/metrics") as response:
            text = await response.text()
    lines = [line for line in text.splitlines() if line.startswith("push_messages_consumed_total")]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines)


def report(name: str, published: int, sink: TimedSink, ids: list[str], **more: str) -> None:
    delivered = sink.delivered(ids)
    duplicated = sink.duplicated()
    details = " ".join(f"{key}={value}" for key, value in more.items())
    print(  # the numbers the issue asks for
        f"\n[{name}] published={published} delivered={delivered} lost={published - delivered}"
        f" duplicated={duplicated} ({duplicated / published:.2%}) {details}"
    )


async def statuses(client: Any, prefix: str, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with client.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.hget(f"{prefix}notification:{i}", "status")
        for status in await pipe.execute():
            counts[str(status)] = counts.get(str(status), 0) + 1
    return counts
