"""AMQP timestamps Python cannot represent: tolerated, instead of killing the connection.

pamqp decodes the 64-bit `timestamp` (a property, or a value in a header table) into
a `datetime` while it reads the frame; past the year 9999 that raises, aiormq closes
the whole connection, and the broker redelivers the message to the next one: the
consumer never gets past it. To publish such a value for real, the tests swap
pamqp's *encoder* for one publish; the decoders are put back after every test, so
other tests see pamqp as they found it.
"""

from __future__ import annotations

import contextlib
import datetime
import struct
from collections.abc import AsyncIterator, Iterator

import aiormq
import pytest
from aiormq.abc import AbstractConnection, DeliveredMessage
from pamqp import decode, encode

from push_service import amqp_timestamps
from tests.support import RABBITMQ_URL, Rabbit, unique, wait_until

BEYOND_9999 = 2**62  # read as milliseconds by pamqp: still ~146 million years ahead
NORMAL = datetime.datetime(2027, 1, 15, 8, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def pamqp_decoders() -> Iterator[None]:
    """Whatever decodes timestamps now is restored after the test."""
    saved = decode.METHODS["timestamp"], decode.TABLE_MAPPING[b"T"]
    yield
    decode.METHODS["timestamp"], decode.TABLE_MAPPING[b"T"] = saved


def uninstall() -> None:
    decode.METHODS["timestamp"] = decode.TABLE_MAPPING[b"T"] = decode.timestamp


@contextlib.contextmanager
def raw_timestamps(raw: int, *, in_property: bool, in_headers: bool) -> Iterator[None]:
    """pamqp writes `raw` for every timestamp property and/or header value meanwhile."""
    packed = struct.pack(">Q", raw)
    saved_property, saved_table = encode.METHODS["timestamp"], encode.timestamp
    if in_property:
        encode.METHODS["timestamp"] = lambda _: packed
    if in_headers:
        encode.timestamp = lambda _: packed  # type: ignore[assignment]  # what tables call
    try:
        yield
    finally:
        encode.METHODS["timestamp"], encode.timestamp = saved_property, saved_table


# --- the decoder -----------------------------------------------------------------------------


def test_an_unrepresentable_timestamp_decodes_as_none() -> None:
    amqp_timestamps.install()
    for raw in (BEYOND_9999, 2**64 - 1):
        value = struct.pack(">Q", raw)
        assert decode.by_type(value, "timestamp") == (8, None)
        assert decode.embedded_value(b"T" + value) == (9, None)


def test_representable_timestamps_decode_as_before() -> None:
    amqp_timestamps.install()
    seconds = struct.pack(">Q", int(NORMAL.timestamp()))
    millis = struct.pack(">Q", int(NORMAL.timestamp()) * 1000)  # Node's Date.now()
    assert decode.by_type(seconds, "timestamp") == (8, NORMAL)
    assert decode.by_type(millis, "timestamp") == (8, NORMAL)


def test_a_truncated_timestamp_is_still_an_error() -> None:
    amqp_timestamps.install()
    with pytest.raises(ValueError, match="Could not unpack"):
        decode.by_type(b"\x00\x01", "timestamp")


def test_install_is_idempotent() -> None:
    amqp_timestamps.install()
    amqp_timestamps.install()
    assert decode.by_type(struct.pack(">Q", BEYOND_9999), "timestamp") == (8, None)


def test_without_install_pamqp_raises() -> None:
    uninstall()
    with pytest.raises((ValueError, OverflowError, OSError)):
        decode.by_type(struct.pack(">Q", BEYOND_9999), "timestamp")


# --- on the wire --------------------------------------------------------------------------------


@pytest.fixture
async def queue(rabbit: Rabbit) -> AsyncIterator[str]:
    name = unique("test.timestamps")
    channel = await rabbit.connection.channel()
    await channel.queue_declare(name, durable=True)
    await channel.close()
    yield name
    await rabbit.delete(name)


@pytest.fixture
async def connection() -> AsyncIterator[AbstractConnection]:
    """The consumer's own connection (the fixture `rabbit` publishes on another)."""
    connection = await aiormq.connect(RABBITMQ_URL)
    yield connection
    with contextlib.suppress(Exception):
        await connection.close()


async def publish_poison_then_normal(rabbit: Rabbit, queue: str, where: str) -> None:
    with raw_timestamps(
        BEYOND_9999, in_property=where == "property", in_headers=where == "headers"
    ):
        await rabbit.publish(
            queue, b"poison", timestamp=NORMAL, headers={"x-when": NORMAL}, message_id="poison"
        )
    await rabbit.publish(
        queue, b"normal", timestamp=NORMAL, headers={"x-when": NORMAL}, message_id="normal"
    )


async def count_is(rabbit: Rabbit, queue: str, count: int) -> bool:
    return await rabbit.count(queue) == count


async def consume(connection: AbstractConnection, queue: str) -> list[DeliveredMessage]:
    received: list[DeliveredMessage] = []

    async def on_message(message: DeliveredMessage) -> None:
        received.append(message)
        tag = message.delivery.delivery_tag
        assert tag is not None
        await message.channel.basic_ack(tag)

    channel = await connection.channel()
    await channel.basic_consume(queue, on_message, no_ack=False)
    return received


@pytest.mark.parametrize("where", ["property", "headers"])
async def test_with_install_the_message_arrives_without_the_timestamp_and_the_connection_stays(
    rabbit: Rabbit, connection: AbstractConnection, queue: str, where: str
) -> None:
    amqp_timestamps.install()
    await publish_poison_then_normal(rabbit, queue, where)

    received = await consume(connection, queue)
    await wait_until(lambda: len(received) == 2, 10, message="both messages")

    poison, normal = received
    assert (poison.body, normal.body) == (b"poison", b"normal")
    poisoned = poison.header.properties
    if where == "property":
        assert poisoned.timestamp is None  # handled like a message without one
        assert poisoned.headers == {"x-when": NORMAL}
    else:
        assert poisoned.timestamp == NORMAL
        assert poisoned.headers == {"x-when": None}
    assert (normal.header.properties.timestamp, normal.header.properties.headers) == (
        NORMAL,
        {"x-when": NORMAL},
    )
    assert not connection.is_closed
    await wait_until(lambda: count_is(rabbit, queue, 0), 10, message="both acked")


@pytest.mark.parametrize("where", ["property", "headers"])
async def test_without_install_the_message_kills_the_connection_and_stays_in_the_queue(
    rabbit: Rabbit, connection: AbstractConnection, queue: str, where: str
) -> None:
    """Why `install()` exists: pamqp's own decoder takes the connection down."""
    uninstall()
    await publish_poison_then_normal(rabbit, queue, where)

    received = await consume(connection, queue)
    await wait_until(lambda: connection.is_closed, 10, message="the connection to close")

    assert received == []  # not even the normal message behind it got through
    # Unacked, both go back to the queue: the next connection would die on it again.
    await wait_until(lambda: count_is(rabbit, queue, 2), 10, message="both messages requeued")
