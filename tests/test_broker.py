"""Confirmed publishing against the real RabbitMQ."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiormq
import pytest
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp.common import FieldValue

from push_service.broker import Publisher, json_properties, publish_confirmed
from push_service.errors import BrokerUnavailable, Unroutable
from push_service.topology import Topology, declare_topology
from tests.support import RABBITMQ_URL, Rabbit, unique, wait_until


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


def has_messages(rabbit: Rabbit, queue: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await rabbit.count(queue) == count

    return check


async def test_publish_confirmed_persists_with_id_and_headers(
    connection: AbstractConnection, channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    await declare_topology(connection, Topology(queue))

    headers: dict[str, FieldValue] = {"x-death-reason": "invalid_json: nope", "x-attempt": 3}
    await publish_confirmed(
        channel,
        queue,
        b'{"notification_id": "n-1"}',
        timeout=5.0,
        properties=json_properties("n-1", headers),
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
    await declare_topology(connection, Topology(queue))
    await channel.close()

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await publish_confirmed(channel, queue, b"{}", timeout=5.0, properties=json_properties("x"))
    # Raised, not waited out the 5 s timeout (half of it leaves room for a busy machine).
    assert time.monotonic() - started < 2.5


async def test_publish_confirmed_on_a_closed_connection_raises_at_once(queue: str) -> None:
    connection = await aiormq.connect(RABBITMQ_URL)
    channel = await connection.channel(publisher_confirms=True)
    await connection.close()

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await publish_confirmed(channel, queue, b"{}", timeout=5.0, properties=json_properties())
    assert time.monotonic() - started < 2.5


async def test_publish_confirmed_to_a_missing_queue_is_an_error(
    channel: AbstractChannel, queue: str
) -> None:
    with pytest.raises(Unroutable):
        await publish_confirmed(
            channel, queue, b"{}", timeout=5.0, properties=json_properties("lost")
        )


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
    await declare_topology(connection, Topology(queue))
    publisher = Publisher(Provider(connection), queue, timeout=5.0)

    await publisher.publish(b'{"n": 1}', "id-1")

    message = await rabbit.get(queue)
    assert message is not None
    assert message.body == b'{"n": 1}'
    assert message.header.properties.message_id == "id-1"
    assert message.header.properties.delivery_mode == 2
    assert publisher.channels.channel is not None
    assert publisher.channels.channel.connection is connection


async def test_publisher_reopens_a_closed_channel(
    connection: AbstractConnection, channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    await declare_topology(connection, Topology(queue))
    publisher = Publisher(Provider(connection), queue, timeout=5.0)
    await publisher.publish(b"1", "first")
    first = publisher.channels.channel
    assert first is not None
    await first.close()

    await publisher.publish(b"2", "second")

    assert publisher.channels.channel is not first
    assert not publisher.channels.channel.is_closed
    await wait_until(has_messages(rabbit, queue, 2), 10, message="both messages")
    ids = [(await rabbit.get(queue)).header.properties.message_id for _ in range(2)]
    assert ids == ["first", "second"]


async def test_publisher_follows_a_new_connection(
    connection: AbstractConnection, channel: AbstractChannel, rabbit: Rabbit, queue: str
) -> None:
    """After the supervisor reconnects, the publisher opens its channel on the new connection."""
    await declare_topology(connection, Topology(queue))
    provider = Provider(connection)
    publisher = Publisher(provider, queue, timeout=5.0)
    await publisher.publish(b"1", "old")
    replacement = await aiormq.connect(RABBITMQ_URL)
    try:
        provider.connection = replacement
        await publisher.publish(b"2", "new")
        assert publisher.channels.channel is not None
        assert publisher.channels.channel.connection is replacement
    finally:
        await replacement.close()
    await wait_until(has_messages(rabbit, queue, 2), 10, message="both messages")
