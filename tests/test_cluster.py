"""Failover across a real three-node RabbitMQ cluster: the node in use is stopped mid-stream.

The cluster is started by the test itself on loopback (tests/rabbit_cluster.py), never
the machine's broker; a few thousand notifications go to a local push sink that counts
hits per endpoint, and the test prints what it measured (`make test-cluster` shows it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiormq
import pytest

from push_service.config import redact_url
from tests.cluster_support import (
    MAX_DUPLICATE_SHARE,
    MESSAGES,
    TimedSink,
    consumed,
    health,
    publish_all,
    report,
    statuses,
)
from tests.conftest import ServiceFactory
from tests.rabbit_cluster import RabbitCluster, rabbit_cluster
from tests.support import PushSink, Service, device_keys, serve_sink, unique, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster() -> AsyncIterator[RabbitCluster]:
    async with rabbit_cluster() as started:
        yield started


async def test_stopping_the_rabbitmq_node_in_use_loses_nothing(
    cluster: RabbitCluster, service_factory: ServiceFactory, redis_client: Any
) -> None:
    a, b, c = cluster.nodes
    async with serve_sink(TimedSink()) as sink:
        service = await service_factory(RABBITMQ_URL=cluster.urls, RABBITMQ_QUEUE_TYPE="quorum")
        # In order: the first node. The service declared the queue there, so it leads it.
        assert (await health(service))["rabbitmq"]["node"] == redact_url(a.url)
        assert await cluster.queue_leader(service.queue, via=c) == a.node
        ids = [unique("rmq") for _ in range(MESSAGES)]
        await publish_all(c.url, service.queue, sink, ids)
        await wait_until(lambda: len(sink.hits) >= MESSAGES // 3, 60, message="a third")

        fault = time.monotonic()
        a.stop_nowait()
        node = await wait_until(lambda: _consuming_elsewhere(service, a), 60, message="failover")
        back = time.monotonic()
        moved = back - fault
        await a.wait_stopped()
        a.start(cluster.home)  # later, the node comes back and rejoins
        await wait_until(lambda: sink.delivered(ids) == MESSAGES, 120, message="every push")
        resumed = sink.resumed_after(fault, back)
        await cluster.wait_formed()
        new_leader = await cluster.queue_leader(service.queue, via=c)
        handled = await consumed(service)

        # The publisher follows the supervisor too: a welcome notification goes out now.
        welcome = unique("welcome")
        await _subscribe(service, sink, welcome)
        await wait_until(lambda: welcome in sink.hits, 30, message="the welcome push")
        await service.stop()

    report(
        "rabbitmq node stop",
        MESSAGES,
        sink,
        ids,
        redelivered=str(handled - MESSAGES),
        consuming_again_after=f"{moved:.2f}s",
        resumed_after=resumed,
        new_node=str(node),
        new_leader=new_leader,
    )
    assert sink.delivered(ids) == MESSAGES
    assert sink.duplicated() <= MAX_DUPLICATE_SHARE * MESSAGES
    # Deliveries unacked at the stop come again and are not pushed twice (the duplicate
    # share above). A graceful stop moves the queue's leader before it closes the
    # connection, so the pushes in flight may all be acked first: redeliveries can be 0.
    assert handled >= MESSAGES
    assert node in (redact_url(b.url), redact_url(c.url))
    assert new_leader != a.node
    assert await _ready_messages(c, service.queue) == 0
    assert await _ready_messages(c, f"{service.queue}.dlq") == 0
    assert await statuses(redis_client, service.prefix, ids) == {"sent": MESSAGES}


async def _consuming_elsewhere(service: Service, lost: Any) -> str | None:
    rabbitmq = (await health(service))["rabbitmq"]
    node = rabbitmq["node"]
    if rabbitmq["consuming"] and node and node != redact_url(lost.url):
        return str(node)
    return None


async def _subscribe(service: Service, sink: PushSink, name: str) -> None:
    subscription = {"endpoint": sink.endpoint(name), "keys": device_keys()}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{service.base_url}/subscribe", json=subscription) as response:
            assert response.status < 300, await response.text()


async def _ready_messages(node: Any, queue: str) -> int:
    """Messages left in a queue; with no consumer left, unacked ones count too."""
    connection = await aiormq.connect(node.url)
    try:
        channel = await connection.channel()
        ok = await channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0)
    finally:
        await connection.close()
