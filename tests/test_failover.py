"""Failing over between broker nodes: the order they are tried in, what /health shows.

The dead nodes are listeners that accept a connection and close it at once, as a node
that is going down does; they record the order in which they were tried. The live node
is the machine's broker, used only as an ordinary client (a unique queue, deleted after).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiormq.abc import AbstractChannel

from push_service.config import redact_url
from push_service.metrics import Metrics
from push_service.supervisor import BrokerSupervisor, node_label
from push_service.topology import Topology
from tests.conftest import ServiceFactory
from tests.support import RABBITMQ_URL, Rabbit, unique, wait_until


@contextlib.asynccontextmanager
async def dead_nodes(count: int) -> AsyncIterator[tuple[list[str], list[int]]]:
    """`count` AMQP URLs of listeners that hang up at once; yields (urls, ports tried)."""
    tried: list[int] = []

    def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tried.append(writer.get_extra_info("sockname")[1])
        writer.close()

    servers = [await asyncio.start_server(hang_up, "127.0.0.1", 0) for _ in range(count)]
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    try:
        yield [f"amqp://guest:secret-{port}@127.0.0.1:{port}/" for port in ports], tried
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


def supervisor(urls: list[str], queue: str, metrics: Metrics) -> BrokerSupervisor:
    async def attach(_channel: AbstractChannel) -> None:
        return None

    async def drain(_grace: float) -> None:
        return None

    return BrokerSupervisor(
        urls,
        topology=Topology(queue),
        attach=attach,
        drain=drain,
        metrics=metrics,
        min_delay=0.01,
        max_delay=0.05,
    )


async def test_nodes_are_tried_in_the_order_given_and_around_again() -> None:
    async with dead_nodes(3) as (urls, tried):
        ports = [int(url.rsplit(":", 1)[1].rstrip("/")) for url in urls]
        watched = supervisor(urls, unique("rot"), Metrics())
        await watched.start()
        try:
            await wait_until(lambda: len(tried) >= 7, 20, message="seven attempts")
        finally:
            await watched.stop(0.1)
    assert tried[:7] == ports + ports + ports[:1]
    assert watched.node is None and not watched.consuming


async def test_a_refusing_node_is_left_for_the_next_one(rabbit: Rabbit) -> None:
    queue = unique("next")
    metrics = Metrics()
    async with dead_nodes(1) as (urls, tried):
        watched = supervisor([*urls, RABBITMQ_URL], queue, metrics)
        await watched.start()
        try:
            await wait_until(lambda: watched.consuming, 20, message="consuming on the live node")
            assert len(tried) == 1
            assert watched.node == redact_url(RABBITMQ_URL) == "amqp://***:***@127.0.0.1:5672/"
            assert metrics.broker_sessions.value(node="127.0.0.1:5672") == 1
        finally:
            await watched.stop(0.1)
            await rabbit.delete(queue, f"{queue}.dlq")


def test_node_labels_carry_no_credentials() -> None:
    assert node_label("amqp://user:secret@broker-1:5673/vh") == "broker-1:5673"
    assert node_label("amqps://user:secret@broker-2/vh") == "broker-2:5671"
    assert node_label("amqp://[::1]/") == "[::1]:5672"


async def test_health_names_the_node_in_use_with_its_password_masked(
    service_factory: ServiceFactory,
) -> None:
    async with dead_nodes(1) as (urls, tried):
        service = await service_factory(RABBITMQ_URL=f"{urls[0]},{RABBITMQ_URL}")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{service.base_url}/health") as response:
                text = await response.text()
                rabbitmq = (await response.json())["dependencies"]["rabbitmq"]
    assert tried, "the first node was tried first"
    assert rabbitmq == {
        "connected": True,
        "consuming": True,
        "node": "amqp://***:***@127.0.0.1:5672/",
    }
    assert "guest" not in text and "secret" not in text
    assert "secret-" not in service.logs()
