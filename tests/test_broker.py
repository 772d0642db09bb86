"""Topology and confirmed publishing against the real RabbitMQ."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiormq
import pytest
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp import commands as spec
from pamqp.common import FieldValue

from push_service.broker import Publisher, declare_topology, publish_confirmed, queue_arguments
from push_service.errors import BrokerUnavailable, Unroutable
from tests.support import RABBITMQ_URL, Rabbit, unique, wait_until

QUEUE_TYPES = ["classic", "quorum"]


@pytest.fixture
async def connection() -> AsyncIterator[AbstractConnection]:
    connection = await aiormq.connect(RABBITMQ_URL)
    yield connection
    await connection.close()


@pytest.fixture
async def channel(connection: AbstractConnection) -> AbstractChannel:
    return await connection.channel(publisher_confirms=True)


@pytest.fixture
async def queue(rabbit: Rabbit) -> AsyncIterator[str]:
    """A fresh queue name; the queue and its `.dlq` are deleted afterwards."""
    name = unique("test.broker")
    yield name
    await rabbit.delete(name, f"{name}.dlq")


async def take(channel: AbstractChannel, queue: str) -> DeliveredMessage:
    """Fetch one message without acking it (the caller settles it)."""
    message = await channel.basic_get(queue, no_ack=False)
    assert isinstance(message.delivery, spec.Basic.GetOk), f"{queue} is empty"
    return message


async def take_or_none(channel: AbstractChannel, queue: str) -> DeliveredMessage | None:
    message = await channel.basic_get(queue, no_ack=False)
    return message if isinstance(message.delivery, spec.Basic.GetOk) else None


async def reject(channel: AbstractChannel, message: DeliveredMessage, requeue: bool) -> None:
    tag = message.delivery.delivery_tag
    assert isinstance(tag, int)
    await channel.basic_reject(tag, requeue=requeue)


def first_death(message: DeliveredMessage) -> dict[str, Any]:
    """The newest `x-death` entry the broker added when it dead-lettered the message."""
    deaths = message.header.properties.headers["x-death"]
    assert isinstance(deaths, list) and isinstance(deaths[0], dict), deaths
    return deaths[0]


def has_messages(rabbit: Rabbit, queue: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await rabbit.count(queue) == count

    return check


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_a_rejected_message_is_dead_lettered_to_the_dlq(
    channel: AbstractChannel, rabbit: Rabbit, queue: str, queue_type: str
) -> None:
    await declare_topology(channel, queue, queue_type, 5)
    await rabbit.publish(queue, b'{"poison": true}', message_id="m-1")

    message = await take(channel, queue)
    await reject(channel, message, requeue=False)

    await wait_until(has_messages(rabbit, f"{queue}.dlq"), 10, message="the DLQ to get it")
    assert await rabbit.count(queue) == 0
    dead = await rabbit.get(f"{queue}.dlq")
    assert dead is not None
    assert dead.body == b'{"poison": true}'
    assert dead.header.properties.message_id == "m-1"
    death = first_death(dead)
    assert death["reason"] == "rejected"
    assert death["queue"] == queue


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_topology_is_durable_and_redeclaring_it_unchanged_succeeds(
    connection: AbstractConnection, rabbit: Rabbit, queue: str, queue_type: str
) -> None:
    """A restart declares the same topology again; a non-durable declare is refused."""
    await declare_topology(await connection.channel(), queue, queue_type, 5)
    await declare_topology(await connection.channel(), queue, queue_type, 5)
    dlq_arguments: dict[str, FieldValue] = (
        {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
    )
    main_arguments = dict(queue_arguments(queue, queue_type, 5))
    for name, arguments in ((queue, main_arguments), (f"{queue}.dlq", dlq_arguments)):
        assert await rabbit.count(name) == 0  # exists (passive declare)
        fresh = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="durable"):
            await fresh.queue_declare(name, durable=False, arguments=arguments)


async def test_quorum_queue_dead_letters_after_the_delivery_limit(
    channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    """x-delivery-limit is set: a message returned more often than the limit goes to the DLQ."""
    limit = 2
    await declare_topology(channel, queue, "quorum", limit)
    await rabbit.publish(queue, b"{}", message_id="crashy")

    for _ in range(limit + 1):
        message = await wait_until(lambda: take_or_none(channel, queue), 10, message="redelivery")
        await reject(channel, message, requeue=True)

    await wait_until(has_messages(rabbit, f"{queue}.dlq"), 10, message="the DLQ to get it")
    dead = await rabbit.get(f"{queue}.dlq")
    assert dead is not None
    assert dead.header.properties.message_id == "crashy"
    assert first_death(dead)["reason"] == "delivery_limit"


@pytest.mark.parametrize(("first", "second"), [("classic", "quorum"), ("quorum", "classic")])
async def test_redeclaring_with_the_other_queue_type_is_refused(
    connection: AbstractConnection, queue: str, first: str, second: str
) -> None:
    """The README's migration note relies on PRECONDITION_FAILED for a changed queue type."""
    await declare_topology(await connection.channel(), queue, first, 5)

    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
        await declare_topology(await connection.channel(), queue, second, 5)
    # The main queue alone, too (not only its DLQ, which is declared first).
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match=queue):
        await (await connection.channel()).queue_declare(
            queue, durable=True, arguments=dict(queue_arguments(queue, second, 5))
        )


async def test_publish_confirmed_persists_with_id_and_headers(
    channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    await declare_topology(channel, queue, "classic", 5)

    await publish_confirmed(
        channel,
        queue,
        b'{"notification_id": "n-1"}',
        timeout=5.0,
        message_id="n-1",
        headers={"x-death-reason": "invalid_json: nope", "x-attempt": 3},
    )

    message = await rabbit.get(queue)
    assert message is not None
    assert message.body == b'{"notification_id": "n-1"}'
    properties = message.header.properties
    assert properties.delivery_mode == 2
    assert properties.message_id == "n-1"
    assert properties.content_type == "application/json"
    assert properties.timestamp is not None
    assert properties.headers == {"x-death-reason": "invalid_json: nope", "x-attempt": 3}


async def test_publish_confirmed_on_a_closed_channel_raises_at_once(
    connection: AbstractConnection, queue: str
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    await declare_topology(channel, queue, "classic", 5)
    await channel.close()

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await publish_confirmed(channel, queue, b"{}", timeout=5.0, message_id="x")
    # Raised, not waited out the 5 s timeout (half of it leaves room for a busy machine).
    assert time.monotonic() - started < 2.5


async def test_publish_confirmed_on_a_closed_connection_raises_at_once(queue: str) -> None:
    connection = await aiormq.connect(RABBITMQ_URL)
    channel = await connection.channel(publisher_confirms=True)
    await connection.close()

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await publish_confirmed(channel, queue, b"{}", timeout=5.0)
    assert time.monotonic() - started < 2.5


async def test_publish_confirmed_to_a_missing_queue_is_an_error(
    channel: AbstractChannel, queue: str
) -> None:
    with pytest.raises(Unroutable):
        await publish_confirmed(channel, queue, b"{}", timeout=5.0, message_id="lost")


# --- Publisher ----------------------------------------------------------------------------


@dataclass
class Provider:
    """Stands in for the supervisor: holds the current connection, or None."""

    connection: AbstractConnection | None = None


async def test_publisher_without_a_connection_raises_at_once(queue: str) -> None:
    publisher = Publisher(Provider(None), queue, timeout=5.0)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await publisher.publish(b"{}", "m")
    assert time.monotonic() - started < 2.5


async def test_publisher_with_a_closed_connection_raises_at_once(queue: str) -> None:
    connection = await aiormq.connect(RABBITMQ_URL)
    await connection.close()
    publisher = Publisher(Provider(connection), queue, timeout=5.0)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await publisher.publish(b"{}", "m")
    assert time.monotonic() - started < 2.5


async def test_publisher_publishes_on_the_providers_connection(
    connection: AbstractConnection, channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    await declare_topology(channel, queue, "classic", 5)
    publisher = Publisher(Provider(connection), queue, timeout=5.0)

    await publisher.publish(b'{"n": 1}', "id-1")

    message = await rabbit.get(queue)
    assert message is not None
    assert message.body == b'{"n": 1}'
    assert message.header.properties.message_id == "id-1"
    assert message.header.properties.delivery_mode == 2
    assert publisher._channel is not None
    assert publisher._channel.connection is connection


async def test_publisher_reopens_a_closed_channel(
    connection: AbstractConnection, channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    await declare_topology(channel, queue, "classic", 5)
    publisher = Publisher(Provider(connection), queue, timeout=5.0)
    await publisher.publish(b"1", "first")
    first = publisher._channel
    assert first is not None
    await first.close()

    await publisher.publish(b"2", "second")

    assert publisher._channel is not first
    assert not publisher._channel.is_closed
    await wait_until(has_messages(rabbit, queue, 2), 10, message="both messages")
    ids = [(await rabbit.get(queue)).header.properties.message_id for _ in range(2)]
    assert ids == ["first", "second"]


async def test_publisher_follows_a_new_connection(
    connection: AbstractConnection, channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    """After the supervisor reconnects, the publisher opens its channel on the new connection."""
    await declare_topology(channel, queue, "classic", 5)
    provider = Provider(connection)
    publisher = Publisher(provider, queue, timeout=5.0)
    await publisher.publish(b"1", "old")
    replacement = await aiormq.connect(RABBITMQ_URL)
    try:
        provider.connection = replacement
        await publisher.publish(b"2", "new")
        assert publisher._channel is not None
        assert publisher._channel.connection is replacement
    finally:
        await replacement.close()
    await wait_until(has_messages(rabbit, queue, 2), 10, message="both messages")
