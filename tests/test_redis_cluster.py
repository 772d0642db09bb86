"""The status store, the registry and a whole service on a real 3-primary Redis Cluster.

Redis Cluster refuses a script or a batch whose keys hash to different slots. Every
script names one key, and the status store's batches are grouped by slot: many
notifications at once (spread over all three primaries) must all be recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
import redis.asyncio as redis
from redis.crc import key_slot

from push_service.redis_client import connect
from push_service.registry import Registry, Subscription
from push_service.status import DeviceOutcome, StatusStore
from push_service.status.fanout import FanoutLedger
from tests.conftest import ServiceFactory
from tests.redis_cluster import RedisCluster, redis_cluster
from tests.support import call, device_keys, final_record, push_sink, unique

pytestmark = pytest.mark.cluster


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster() -> AsyncIterator[RedisCluster]:
    async with redis_cluster(3) as started:
        yield started


@pytest.fixture
async def client(cluster: RedisCluster) -> AsyncIterator[redis.Redis]:
    nodes = [("127.0.0.1", node.port) for node in cluster.nodes]
    made = connect(cluster.url, cluster=nodes)
    try:
        yield made
    finally:
        await made.aclose()


def subscription(name: str, **fields: Any) -> Subscription:
    keys = device_keys()
    return Subscription(f"https://push.example.com/{name}", keys["p256dh"], keys["auth"], **fields)


async def test_status_records_spread_over_every_primary_are_all_written(
    client: redis.Redis,
) -> None:
    store = StatusStore(client, unique("rc") + ":")
    ids = [f"n{i}" for i in range(60)]
    slots = {key_slot(store.key(i).encode()) * 3 // 16384 for i in ids}
    assert slots == {0, 1, 2}  # the keys live on all three primaries

    async def one(notification_id: str) -> str:
        await store.begin(notification_id, "u", 1, fingerprint="f", deadline=2e9)
        outcome = DeviceOutcome("d1", "https://push.example.com/1", "sent", 201, None, 1)
        return await store.record(notification_id, [outcome])

    # All at once: the batcher sends them in one pipeline, one EVALSHA per slot.
    assert await asyncio.gather(*(one(i) for i in ids)) == ["sent"] * len(ids)
    record = await store.get("n7")
    assert record is not None and (record["sent"], record["devices_total"]) == (1, 1)


async def test_scripts_are_loaded_again_on_every_node_after_a_flush(client: redis.Redis) -> None:
    store = StatusStore(client, unique("rc") + ":")
    await store.begin("a", None, 1, fingerprint="f", deadline=2e9)
    await client.script_flush()  # as after a failover to a node that never saw them

    begun = await asyncio.gather(
        *(store.begin(f"b{i}", None, 1, fingerprint="f", deadline=2e9) for i in range(20))
    )
    assert all(b.new for b in begun)


async def test_the_registry_and_the_fanout_ledger_work_on_a_cluster(client: redis.Redis) -> None:
    registry = Registry(client, unique("rc") + ":")
    made = [
        (await registry.upsert(subscription(f"s{i}", user_id="u", topics=("t",)))).subscription
        for i in range(12)
    ]
    seen = [s.device async for chunk, _ in registry.chunks(topic="t", size=5) for s in chunk]
    assert seen == sorted(s.device for s in made)
    assert await registry.remove(made[0].device) is not None
    page, _ = await registry.page(user_id="u", limit=100)
    assert len(page) == 11

    store = StatusStore(client, registry.prefix)
    ledger = FanoutLedger(store)
    await store.begin("f", None, 0, fingerprint="f", deadline=2e9)
    assert await ledger.start("f", "topic:t") == ("resolving", "")
    assert (await ledger.step("f", "", "x", 5)).taken
    assert not (await ledger.step("f", "", "y", 5)).taken  # a second resolver, behind
    step = await ledger.step("f", "x", None, 0)
    assert step.taken and step.status == "processing"  # 5 devices without an outcome yet


async def test_a_service_on_the_cluster_delivers_an_audience_and_a_device_list(
    cluster: RedisCluster, service_factory: ServiceFactory, client: redis.Redis
) -> None:
    async with push_sink() as sink, aiohttp.ClientSession() as http:
        service = await service_factory(
            REDIS_URL=cluster.url, REDIS_CLUSTER_NODES=cluster.node_list, FANOUT_CHUNK_SIZE="4"
        )
        registry = Registry(client, service.prefix)
        for i in range(10):
            keys = device_keys()
            sub = Subscription(sink.endpoint(f"c{i}"), keys["p256dh"], keys["auth"], topics=("t",))
            await registry.upsert(sub)
        headers = {"Content-Type": "application/json"}
        url = f"{service.base_url}/notifications"
        topic_id, list_id = unique("rc-topic"), unique("rc-list")
        device = {"endpoint": sink.endpoint("direct"), "keys": device_keys()}
        for body in (
            {"notification_id": topic_id, "title": "t", "audience": {"topic": "t"}},
            {"notification_id": list_id, "title": "t", "devices": [device]},
        ):
            answer = await call(http, "POST", url, data=orjson.dumps(body), headers=headers)
            assert answer.status == 202, answer.text

        topic = await final_record(service.base_url, topic_id)
        direct = await final_record(service.base_url, list_id)
        assert (topic["status"], topic["devices_total"], topic["sent"]) == ("sent", 10, 10)
        assert (direct["status"], direct["sent"]) == ("sent", 1)
        assert sink.total == 11
        page = await call(http, "GET", f"{service.base_url}/subscriptions?topic=t&limit=3")
        assert page.status == 200 and len(page.json["subscriptions"]) == 3
