"""Listens to the service's events exchange the way an orchestrator would: a queue of its
own bound with `#`, every event kept in arrival order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiormq
import orjson

from tests.support import RABBITMQ_URL, wait_until


@dataclass
class EventListener:
    exchange: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    async def wait_for(
        self, name: str, count: int = 1, timeout: float = 20
    ) -> list[dict[str, Any]]:
        await wait_until(lambda: len(self.of(name)) >= count, timeout, message=f"{count} {name}")
        return self.of(name)

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        event = orjson.loads(message.body)
        event["_routing_key"] = message.delivery.routing_key
        event["_persistent"] = message.header.properties.delivery_mode == 2
        self.events.append(event)


@contextlib.asynccontextmanager
async def event_listener(exchange: str, url: str = RABBITMQ_URL) -> AsyncIterator[EventListener]:
    """Declares the exchange as the service does (durable topic), so binding can come first."""
    listener = EventListener(exchange)
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        assert declared.queue is not None
        await channel.queue_bind(declared.queue, exchange, routing_key="#")
        await channel.basic_consume(declared.queue, listener._on_message, no_ack=True)
        yield listener
    finally:
        with contextlib.suppress(Exception):
            channel = await connection.channel()
            await channel.exchange_delete(exchange)
        await connection.close()
