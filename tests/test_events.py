"""Events on the real broker: the document, the routing key, a deleted exchange, off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiormq
import orjson
import pytest

from push_service import events as events_module
from push_service.errors import BrokerUnavailable
from push_service.events import Events
from push_service.topology import declare_exchanges
from tests.support import RABBITMQ_URL, unique, wait_until


@dataclass
class Connected:
    """A ConnectionProvider as the supervisor is one: a live connection, or None."""

    connection: aiormq.abc.AbstractConnection | None


@pytest.fixture
async def connection() -> AsyncIterator[aiormq.abc.AbstractConnection]:
    connection = await aiormq.connect(RABBITMQ_URL)
    yield connection
    await connection.close()


async def bound_queue(connection: aiormq.abc.AbstractConnection, exchange: str, key: str) -> str:
    channel = await connection.channel()
    declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
    assert declared.queue is not None
    await channel.queue_bind(declared.queue, exchange, routing_key=key)
    return declared.queue


async def take(
    connection: aiormq.abc.AbstractConnection, queue: str
) -> aiormq.abc.DeliveredMessage:
    channel = await connection.channel()
    async with asyncio.timeout(5):
        while True:
            message = await channel.basic_get(queue, no_ack=True)
            if message.body:
                return message
            await asyncio.sleep(0.02)  # polling an empty queue, with a deadline


async def test_an_event_is_a_persistent_json_document_routed_by_its_name(
    connection: aiormq.abc.AbstractConnection,
) -> None:
    exchange = unique("test.events")
    await declare_exchanges(connection, {exchange: "topic"})
    queue = await bound_queue(connection, exchange, "subscription.*")
    events = Events(Connected(connection), exchange, timeout=5)
    try:
        await events.emit("notification.completed", {"status": "sent"})  # not bound: dropped
        await events.emit("subscription.gone", {"device": "d1"}, event_id="gone-d1")
        message = await take(connection, queue)
    finally:
        await events.close()
        channel = await connection.channel()
        await channel.exchange_delete(exchange)

    document = orjson.loads(message.body)
    assert document["event"] == "subscription.gone" and document["device"] == "d1"
    assert document["event_id"] == "gone-d1"
    assert document["occurred_at"].endswith("Z")
    properties = message.header.properties
    assert properties.delivery_mode == 2
    assert (properties.message_id, properties.message_type) == ("gone-d1", "subscription.gone")
    assert message.delivery.routing_key == "subscription.gone"


async def test_a_deleted_exchange_is_declared_again(
    connection: aiormq.abc.AbstractConnection,
) -> None:
    exchange = unique("test.events")
    events = Events(Connected(connection), exchange, timeout=5)
    try:
        await events.emit("notification.completed", {})  # never declared: declared now
        channel = await connection.channel()
        await channel.exchange_declare(exchange, passive=True)
    finally:
        await events.close()
        channel = await connection.channel()
        await channel.exchange_delete(exchange)


async def test_disabled_events_publish_nothing_and_need_no_broker() -> None:
    events = Events(Connected(None), "", timeout=1)

    await events.emit("subscription.created", {"device": "d"})

    assert not events.enabled


async def test_without_a_broker_an_event_is_refused_not_lost_silently() -> None:
    events = Events(Connected(None), "push.events", timeout=1)

    with pytest.raises(BrokerUnavailable):
        await events.emit("subscription.created", {})


async def test_an_event_nobody_listens_to_is_not_published_again_for_a_while(
    connection: aiormq.abc.AbstractConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "LISTEN_PROBE_SECONDS", 0.5)
    exchange = unique("test.events")
    await declare_exchanges(connection, {exchange: "topic"})
    events = Events(Connected(connection), exchange, timeout=5)
    try:
        await events.emit("notification.completed", {"n": 1})  # nobody bound: it came back
        queue = await bound_queue(connection, exchange, "notification.*")
        await events.emit("notification.completed", {"n": 2})  # within the window: not sent
        await events.emit("subscription.gone", {"n": 3})  # another name: its own window
        silent_until = events._unheard["notification.completed"]
        await wait_until(lambda: time.monotonic() > silent_until, message="the window to pass")
        await events.emit("notification.completed", {"n": 4})  # heard again
        message = await take(connection, queue)
        channel = await connection.channel()
        rest = await channel.basic_get(queue, no_ack=True)
    finally:
        await events.close()
        channel = await connection.channel()
        await channel.exchange_delete(exchange)

    assert orjson.loads(message.body)["n"] == 4
    assert not rest.body  # nothing else was routed to the bound queue
    assert "subscription.gone" in events._unheard


async def test_one_emit_finds_out_whether_anybody_listens_again_and_the_others_wait(
    connection: aiormq.abc.AbstractConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a backlog the broker's answer takes a while: every notification completed
    meanwhile published an event nobody heard (a quarter of them, measured)."""
    monkeypatch.setattr(events_module, "LISTEN_PROBE_SECONDS", 0.3)
    exchange = unique("test.events")
    await declare_exchanges(connection, {exchange: "topic"})
    events = Events(Connected(connection), exchange, timeout=5)
    published: list[int] = []
    publish = events._publish

    async def counted(event: str, event_id: str, body: bytes) -> None:
        published.append(orjson.loads(body)["n"])
        await publish(event, event_id, body)

    monkeypatch.setattr(events, "_publish", counted)

    async def window_passed() -> None:
        until = events._unheard["notification.completed"]
        await wait_until(lambda: time.monotonic() > until, message="the window to pass")

    async def burst(first: int) -> None:
        await asyncio.gather(
            *(events.emit("notification.completed", {"n": first + i}) for i in range(20))
        )

    try:
        await burst(0)  # the first of a name: one finds out that nobody is bound
        await window_passed()
        await burst(100)  # nobody still: one of them found out, the others published nothing
        unheard_after = len(published)
        queue = await bound_queue(connection, exchange, "notification.*")
        await window_passed()
        await burst(200)  # somebody listens now: one found out, then every one was published
        channel = await connection.channel()
        routed = []
        while (message := await channel.basic_get(queue, no_ack=True)).body:
            routed.append(orjson.loads(message.body)["n"])
    finally:
        await events.close()
        channel = await connection.channel()
        await channel.exchange_delete(exchange)

    assert unheard_after == 2  # one of each burst
    assert sorted(routed) == list(range(200, 220))
    assert "notification.completed" not in events._unheard
