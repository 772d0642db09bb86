"""Failover of a Sentinel-managed Redis: the primary killed, a live primary failed over,
and what a primary that no longer takes writes looks like to the status store.

A primary, replicas and three sentinels are started by each test itself on loopback
(tests/redis_sentinel.py), never the machine's Redis; the tests print what they
measured (`make test-cluster` shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from push_service.redis_client import connect
from push_service.status import Begun, RedisUnavailable, StatusStore
from tests.cluster_support import (
    MAX_DUPLICATE_SHARE,
    MESSAGES,
    TimedSink,
    health,
    publish_all,
    report,
    statuses,
)
from tests.conftest import ServiceFactory
from tests.redis_sentinel import MASTER, RedisProcess, SentinelGroup, sentinel_group
from tests.support import RABBITMQ_URL, Service, serve_sink, unique, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
async def sentinels(request: pytest.FixtureRequest) -> AsyncIterator[SentinelGroup]:
    """A primary and one replica; parametrize indirectly with (replicas, min-replicas-to-write)."""
    replicas, min_replicas_to_write = getattr(request, "param", (1, 0))
    async with sentinel_group(replicas, min_replicas_to_write) as started:
        yield started


def sentinel_env(group: SentinelGroup, db: int = 3) -> dict[str, str]:
    return {
        "REDIS_URL": group.url(db),
        "REDIS_SENTINELS": group.sentinel_list,
        "REDIS_SENTINEL_MASTER": MASTER,
    }


async def test_killing_the_redis_primary_loses_nothing(
    sentinels: SentinelGroup, service_factory: ServiceFactory
) -> None:
    old = await sentinels.primary_port()
    async with serve_sink(TimedSink()) as sink:
        service = await service_factory(**sentinel_env(sentinels))
        assert (await health(service))["redis"]["primary"] == f"127.0.0.1:{old}"
        ids = [unique("rds") for _ in range(MESSAGES)]
        await publish_all(RABBITMQ_URL, service.queue, sink, ids)
        await wait_until(lambda: len(sink.hits) >= MESSAGES // 3, 60, message="a third")

        fault = time.monotonic()
        sentinels.server(old).kill()
        new = await sentinels.wait_promoted(old)
        back = time.monotonic()
        promoted = back - fault
        await wait_until(lambda: sink.delivered(ids) == MESSAGES, 120, message="every push")
        resumed = sink.resumed_after(fault, back)
        records = await _records_through_api(service, ids, until_sent=30.0)
        dependencies = await health(service)

    report(
        "redis primary kill",
        MESSAGES,
        sink,
        ids,
        promoted_after=f"{promoted:.2f}s",
        resumed_after=resumed,
        unreadable=str(sum(1 for r in records.values() if r is None)),
    )
    assert sink.delivered(ids) == MESSAGES
    assert sink.duplicated() <= MAX_DUPLICATE_SHARE * MESSAGES
    assert {i: (r or {}).get("status") for i, r in records.items()} == dict.fromkeys(ids, "sent")
    assert dependencies["redis"] == {"connected": True, "primary": f"127.0.0.1:{new}"}
    assert f"moved from 127.0.0.1:{old} to 127.0.0.1:{new}" in service.logs()
    # Written where Sentinel says, in REDIS_URL's database.
    async with sentinels.server(new).client(sentinels.password, db=3) as direct:
        assert await statuses(direct, service.prefix, ids) == {"sent": MESSAGES}


async def _all_sent(client: Any, prefix: str, ids: list[str]) -> bool:
    return await statuses(client, prefix, ids) == {"sent": len(ids)}


async def _records_through_api(
    service: Service, ids: list[str], until_sent: float
) -> dict[str, Any]:
    """GET /notifications/{id} for every id, 32 at a time, asking again for those not yet
    `sent` for up to `until_sent` seconds; the last answers (None for a 404)."""
    records: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:

        async def fetch(notification_id: str) -> None:
            url = f"{service.base_url}/notifications/{notification_id}"
            async with session.get(url) as response:
                records[notification_id] = await response.json() if response.ok else None

        async def all_sent() -> bool:
            pending = [i for i in ids if (records.get(i) or {}).get("status") != "sent"]
            for start in range(0, len(pending), 32):
                await asyncio.gather(*(fetch(i) for i in pending[start : start + 32]))
            return all((records[i] or {}).get("status") == "sent" for i in ids)

        with contextlib.suppress(AssertionError):  # the caller asserts on what it got
            await wait_until(all_sent, until_sent, interval=0.5)
    return records


# --- Redis: a primary demoted, not dead (a Sentinel failover of a live primary) ------------


@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_after_a_failover_no_connection_stays_on_the_demoted_primary(
    sentinels: SentinelGroup, service_factory: ServiceFactory, wait_replicas: int
) -> None:
    """Within about a second of the switch the service writes to the new primary only.

    What the old primary accepted between the promotion and the switch is lost when it
    resyncs as a replica (asynchronous replication; README). Without REDIS_WAIT_REPLICAS
    those status records are counted and printed; with it, a write counts only once a
    replica has it, and nothing is lost. The pushes are neither lost nor repeated either way.
    """
    old = await sentinels.primary_port()
    count = MESSAGES // 3
    async with serve_sink(TimedSink()) as sink:
        env = sentinel_env(sentinels) | {"REDIS_WAIT_REPLICAS": str(wait_replicas)}
        service = await service_factory(**env)
        ids = [unique("dem") for _ in range(count)]
        await publish_all(RABBITMQ_URL, service.queue, sink, ids)
        await wait_until(lambda: len(sink.hits) >= count // 3, 60, message="a third")
        demoted = sentinels.server(old)
        assert await _service_connections(demoted, sentinels.password) > 0

        fault = time.monotonic()
        async with sentinels.sentinels[0].client() as sentinel:
            assert await sentinel.execute_command("SENTINEL", "FAILOVER", MASTER)  # type: ignore[no-untyped-call]
        new = await sentinels.wait_promoted(old)
        switched = time.monotonic()
        await wait_until(
            lambda: _service_connections(demoted, sentinels.password, want_zero=True),
            20,
            interval=0.1,
            message="no service connection left on the demoted primary",
        )
        left = time.monotonic() - switched
        await wait_until(lambda: sink.delivered(ids) == count, 120, message="every push")
        async with sentinels.server(new).client(sentinels.password, db=3) as direct:
            with contextlib.suppress(AssertionError):  # the lost ones never will be
                # Confirmed writes wait until the demoted primary has resynced as a replica.
                await wait_until(lambda: _all_sent(direct, service.prefix, ids), 60)
            records = await statuses(direct, service.prefix, ids)
        dependencies = await health(service)

    report(
        f"redis failover of a live primary, REDIS_WAIT_REPLICAS={wait_replicas}",
        count,
        sink,
        ids,
        switched_after=f"{switched - fault:.2f}s",
        old_primary_left_after_switch=f"{left:.2f}s",
        resumed_after=sink.resumed_after(fault, switched),
        records=str(records),
    )
    assert dependencies["redis"] == {"connected": True, "primary": f"127.0.0.1:{new}"}
    # Without asking the sentinels again, the service's connections stayed until Sentinel
    # reconfigured the old primary: 10 s after the switch here.
    assert left < 5.0
    assert sink.delivered(ids) == count
    assert sink.duplicated() <= MAX_DUPLICATE_SHARE * count
    if wait_replicas:
        assert records == {"sent": count}  # not one acknowledged status write lost


async def _service_connections(
    server: RedisProcess, password: str, want_zero: bool = False
) -> int | bool:
    """Normal clients of `server` other than the sentinels' and this one's own."""
    async with server.client(password) as admin:
        me = await admin.client_id()
        clients = await admin.client_list(_type="normal")
    count = sum(
        1
        for client in clients
        if int(client["id"]) != me and not client.get("name", "").startswith("sentinel-")
    )
    return count == 0 if want_zero else count


@pytest.mark.parametrize("sentinels", [(1, 2)], indirect=True)  # too few replicas to write
async def test_a_primary_that_refuses_writes_is_redis_unavailable_not_a_bug(
    sentinels: SentinelGroup,
) -> None:
    """What the service sees when the primary it is connected to no longer takes writes.

    NOREPLICAS (min-replicas-to-write not met: a primary cut off from its replicas) and
    READONLY (a primary demoted by hand, so Sentinel does not close its clients) both
    reach the status store's callers as a ConnectionError, one of RedisUnavailable, which
    delivery waits out and retries; not as a ResponseError, which would requeue the
    message as a bug. READONLY is redis-py's own handling, NOREPLICAS is redis_client's.
    """
    primary, replica = sentinels.servers
    client = connect(sentinels.url(3), [("127.0.0.1", s.port) for s in sentinels.sentinels], MASTER)
    store = StatusStore(client, prefix=unique("ro") + ":", ttl=60)

    async def begin(notification_id: str) -> Begun:
        return await store.begin(
            notification_id, None, 1, fingerprint="fp", deadline=time.time() + 60
        )

    try:
        with pytest.raises(RedisUnavailable, match="NOREPLICAS"):
            await begin("cut-off")
        async with primary.client(sentinels.password) as p:
            await p.config_set("min-replicas-to-write", 0)
        assert not (await begin("before")).done

        async with replica.client(sentinels.password) as r:
            await r.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
        async with primary.client(sentinels.password) as p:
            await p.execute_command("REPLICAOF", "127.0.0.1", str(replica.port))  # type: ignore[no-untyped-call]
        with pytest.raises(RedisUnavailable, match="previous master is now a slave"):
            await begin("after")  # a pipelined script call
        with pytest.raises(RedisUnavailable, match="previous master is now a slave"):
            await store.fail("after", "x")  # a single one
    finally:
        await client.aclose()
