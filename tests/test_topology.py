"""Queue declarations against the real RabbitMQ: peers' plain declarations keep working."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiormq
import pytest
from aiormq.abc import AbstractConnection
from pamqp.common import FieldValue

from push_service.topology import QueueNotDurable, Topology, declare_topology
from tests.support import RABBITMQ_URL, Rabbit, unique

QUEUE_TYPES = ["classic", "quorum"]


@pytest.fixture
async def connection() -> AsyncIterator[AbstractConnection]:
    connection = await aiormq.connect(RABBITMQ_URL)
    yield connection
    await connection.close()


@pytest.fixture
async def queue(rabbit: Rabbit) -> AsyncIterator[str]:
    """A fresh queue name; it, its `.dlq` and its `.extra` are deleted afterwards."""
    name = unique("test.topology")
    yield name
    await rabbit.delete(name, f"{name}.dlq", f"{name}.extra")


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_topology_is_durable_and_a_peers_plain_declaration_matches_it(
    connection: AbstractConnection, rabbit: Rabbit, queue: str, queue_type: str
) -> None:
    topology = Topology(queue, queue_type)
    assert await declare_topology(connection, topology) == []
    assert await declare_topology(connection, topology) == []  # a restart: unchanged

    peer = await connection.channel()
    # What amqplib's assertQueue(q, {durable: true}) and pika's queue_declare send.
    await peer.queue_declare(queue, durable=True, arguments=topology.type_arguments())
    for name in (queue, f"{queue}.dlq"):
        assert await rabbit.count(name) == 0
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="durable"):
            await (await connection.channel()).queue_declare(name, durable=False)


async def test_a_queue_a_peer_declared_with_other_arguments_is_used_with_a_warning(
    connection: AbstractConnection, rabbit: Rabbit, queue: str
) -> None:
    peer = await connection.channel()
    await peer.queue_declare(queue, durable=True, arguments={"x-max-length": 1000})

    warnings = await declare_topology(connection, Topology(queue))

    assert len(warnings) == 1
    assert queue in warnings[0] and "x-max-length" in warnings[0]
    assert await rabbit.count(queue) == 0
    assert await rabbit.count(f"{queue}.dlq") == 0


async def test_a_queue_declared_by_an_older_version_with_a_dead_letter_exchange_is_used(
    connection: AbstractConnection, rabbit: Rabbit, queue: str
) -> None:
    old: dict[str, FieldValue] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{queue}.dlq",
    }
    await (await connection.channel()).queue_declare(queue, durable=True, arguments=old)

    warnings = await declare_topology(connection, Topology(queue))

    assert [queue in w and "x-dead-letter-exchange" in w for w in warnings] == [True]


@pytest.mark.parametrize("flags", [{"durable": False}, {"durable": True, "auto_delete": True}])
async def test_a_queue_that_would_not_survive_a_restart_is_refused(
    connection: AbstractConnection, queue: str, flags: dict[str, bool]
) -> None:
    await (await connection.channel()).queue_declare(
        queue, durable=flags["durable"], auto_delete=flags.get("auto_delete", False)
    )
    keep_open = await connection.channel()  # an auto-delete queue needs a consumer to stay
    if flags.get("auto_delete"):
        await keep_open.basic_consume(queue, lambda _: None)  # type: ignore[arg-type,return-value]

    with pytest.raises(QueueNotDurable, match="not durable"):
        await declare_topology(connection, Topology(queue))


async def test_changing_the_queue_type_keeps_using_the_existing_queues(
    connection: AbstractConnection, rabbit: Rabbit, queue: str
) -> None:
    await declare_topology(connection, Topology(queue, "classic"))

    warnings = await declare_topology(connection, Topology(queue, "quorum"))

    assert len(warnings) == 2  # the DLQ and the main queue, each once
    assert all("x-queue-type" in w for w in warnings)


async def test_extra_queues_are_declared_with_their_arguments(
    connection: AbstractConnection, queue: str
) -> None:
    extra: dict[str, dict[str, FieldValue]] = {f"{queue}.extra": {"x-message-ttl": 1000}}
    await declare_topology(connection, Topology(queue, extra=extra))

    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-message-ttl"):
        await (await connection.channel()).queue_declare(f"{queue}.extra", durable=True)
