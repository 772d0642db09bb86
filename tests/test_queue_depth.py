"""QueueDepthMonitor against the real broker: depths, missing queues, lost connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiormq
import pytest
from aiormq.abc import AbstractConnection

from push_service.metrics import Metrics
from push_service.queue_depth import QueueDepthMonitor
from tests.support import RABBITMQ_URL, Rabbit, unique, wait_until


@dataclass
class Provider:
    """Stands where the broker supervisor stands: the current connection, or None."""

    connection: AbstractConnection | None


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    connection = await aiormq.connect(RABBITMQ_URL)
    yield Provider(connection)
    await connection.close()


@pytest.fixture
async def queues(rabbit: Rabbit) -> AsyncIterator[list[str]]:
    """Two fresh durable queues (a main queue and its .dlq); deleted afterwards."""
    name = unique("test.depth")
    names = [name, f"{name}.dlq"]
    channel = await rabbit._channel()
    for queue in names:
        await channel.queue_declare(queue, durable=True)
    yield names
    await rabbit.delete(*names)


async def test_depths_of_the_named_queues(
    provider: Provider, queues: list[str], rabbit: Rabbit
) -> None:
    for n in range(3):
        await rabbit.publish(queues[0], {"n": n})
    await rabbit.publish(queues[1], {"dead": True})
    metrics = Metrics()
    monitor = QueueDepthMonitor(provider, lambda: queues, metrics)
    assert await monitor.poll() == {queues[0]: 3, queues[1]: 1}
    assert metrics.queue_messages.value(queue=queues[0]) == 3
    assert metrics.queue_messages.value(queue=queues[1]) == 1
    await rabbit.get(queues[0])
    await monitor.poll()
    assert metrics.queue_messages.value(queue=queues[0]) == 2
    await monitor.stop()


async def test_a_missing_queue_has_no_series_and_spoils_nothing(
    provider: Provider, queues: list[str], rabbit: Rabbit
) -> None:
    await rabbit.publish(queues[1], {"dead": True})
    missing = unique("test.depth.missing")
    metrics = Metrics()
    # The missing queue comes first: the broker closes the channel on it (404), and the
    # queue after it must still be measured on a new channel.
    monitor = QueueDepthMonitor(provider, lambda: [missing, queues[1]], metrics)
    assert await monitor.poll() == {queues[1]: 1}
    assert await monitor.poll() == {queues[1]: 1}
    assert metrics.queue_messages.labelled() == [{"queue": queues[1]}]
    assert provider.connection is not None and not provider.connection.is_closed
    await monitor.stop()


async def test_series_follow_the_list_of_names(provider: Provider, queues: list[str]) -> None:
    names = list(queues)
    metrics = Metrics()
    monitor = QueueDepthMonitor(provider, lambda: names, metrics)
    await monitor.poll()
    assert len(metrics.queue_messages.labelled()) == 2
    names.pop()  # e.g. a delay queue the service no longer uses
    await monitor.poll()
    assert metrics.queue_messages.labelled() == [{"queue": queues[0]}]
    await monitor.stop()


async def test_no_connection_means_no_stale_depths(provider: Provider, queues: list[str]) -> None:
    metrics = Metrics()
    monitor = QueueDepthMonitor(provider, lambda: queues, metrics)
    await monitor.poll()
    assert metrics.queue_messages.labelled()
    connection, provider.connection = provider.connection, None
    assert await monitor.poll() == {}
    assert metrics.queue_messages.labelled() == []
    provider.connection = connection  # reconnected: measured again
    assert set(await monitor.poll()) == set(queues)
    await monitor.stop()


async def test_start_polls_every_interval_until_stop(
    provider: Provider, queues: list[str], rabbit: Rabbit
) -> None:
    metrics = Metrics()
    monitor = QueueDepthMonitor(provider, lambda: queues, metrics, interval=0.05)
    await monitor.start()
    try:
        await wait_until(lambda: metrics.queue_messages.labelled(), 10, message="a first poll")
        await rabbit.publish(queues[0], {"late": True})
        await wait_until(
            lambda: metrics.queue_messages.value(queue=queues[0]) == 1, 10, message="the message"
        )
    finally:
        await monitor.stop()
    assert monitor._task is None and monitor._channels.channel is None
