"""BrokerSupervisor against the real RabbitMQ: reconnects, backoff reset, clean stop."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiormq.abc import AbstractChannel

from push_service.metrics import Metrics
from push_service.supervisor import BrokerSupervisor
from push_service.topology import Topology
from tests.support import RABBITMQ_URL, Rabbit, rabbitmqctl, unique, wait_until


class Recorder:
    """Stands in for the consumer: records each channel it is attached to."""

    def __init__(self) -> None:
        self.channels: list[AbstractChannel] = []
        self.drained: list[float] = []

    async def attach(self, channel: AbstractChannel) -> None:
        self.channels.append(channel)

    async def drain(self, grace: float) -> None:
        self.drained.append(grace)


def _reconnected(supervisor: BrokerSupervisor, sessions: int) -> Callable[[], bool]:
    return lambda: supervisor.sessions > sessions and supervisor.consuming


@pytest.fixture
async def supervised(rabbit: Rabbit) -> AsyncIterator[tuple[BrokerSupervisor, Recorder]]:
    queue = unique("sup")
    recorder = Recorder()
    supervisor = BrokerSupervisor(
        RABBITMQ_URL,
        topology=Topology(queue),
        attach=recorder.attach,
        drain=recorder.drain,
        metrics=Metrics(),
        min_delay=0.5,
        max_delay=15.0,
    )
    await supervisor.start()
    yield supervisor, recorder
    await supervisor.stop(1.0)
    await rabbit.delete(queue, f"{queue}.dlq")


async def test_declares_topology_and_attaches(
    supervised: tuple[BrokerSupervisor, Recorder], rabbit: Rabbit
) -> None:
    supervisor, recorder = supervised
    await wait_until(lambda: supervisor.consuming, 10, message="consuming")
    assert len(recorder.channels) == 1
    assert await rabbit.count(supervisor.topology.queue) == 0  # declared (passive declare succeeds)
    assert await rabbit.count(f"{supervisor.topology.queue}.dlq") == 0


async def test_every_forced_disconnect_reconnects_promptly(
    supervised: tuple[BrokerSupervisor, Recorder],
) -> None:
    """The backoff starts again after each healthy session: five broker-side closes in
    a row each reconnect within the first step (0.5 s), not 0.5, 1, 2, 4, 8 s."""
    supervisor, recorder = supervised
    await wait_until(lambda: supervisor.consuming, 10, message="consuming")
    for cycle in range(1, 6):
        started = time.monotonic()
        rabbitmqctl("close_all_connections", "supervisor test")
        await wait_until(
            _reconnected(supervisor, supervisor.sessions),
            20,
            interval=0.02,
            message=f"reconnect {cycle}",
        )
        assert time.monotonic() - started < 2.5, f"reconnect {cycle} was slow"
    assert len(recorder.channels) == 6
    assert recorder.channels[-1] is not recorder.channels[0]


async def test_stop_drains_then_closes(supervised: tuple[BrokerSupervisor, Recorder]) -> None:
    supervisor, recorder = supervised
    await wait_until(lambda: supervisor.consuming, 10, message="consuming")
    connection = supervisor.connection
    assert connection is not None
    await supervisor.stop(3.0)
    assert recorder.drained == [3.0]
    assert connection.is_closed
    assert not supervisor.consuming
    assert supervisor.connection is None
