"""Building the Redis client: the plain one and the Sentinel-managed one share a pool policy.

Failover itself is proven against real sentinels in test_cluster.py; here, what each
client is made of, and that sentinels nobody answers on read as Redis being unavailable.
"""

from __future__ import annotations

import time

import pytest
import redis.asyncio as redis

from push_service.redis_client import (
    MAX_CONNECTIONS,
    BlockingSentinelPool,
    PrimaryConnection,
    PrimarySSLConnection,
    PrimaryWatch,
    connect,
    describe,
    primary,
)
from push_service.status import CALL_TIMEOUT, RedisUnavailable
from tests.support import REDIS_URL, free_port


async def test_the_plain_client_is_the_blocking_pool_of_redis_url() -> None:
    client = connect(REDIS_URL)
    try:
        pool = client.connection_pool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert not isinstance(pool, BlockingSentinelPool)
        assert (pool.max_connections, pool.timeout) == (MAX_CONNECTIONS, CALL_TIMEOUT)
        assert await client.ping()
        assert primary(client) is None
    finally:
        await client.aclose()


async def test_through_sentinel_redis_url_gives_only_credentials_database_and_tls() -> None:
    sentinels = [("127.0.0.1", 1), ("127.0.0.1", 2)]
    plain = connect("redis://user:pw@ignored.invalid:6390/4", sentinels, "orders")
    tls = connect("rediss://:pw@ignored.invalid/0", sentinels, "orders")
    try:
        pool = plain.connection_pool
        assert isinstance(pool, BlockingSentinelPool)
        assert pool.service_name == "orders"
        assert (pool.max_connections, pool.timeout) == (MAX_CONNECTIONS, CALL_TIMEOUT)
        options = pool.connection_kwargs
        assert (options["username"], options["password"], options["db"]) == ("user", "pw", 4)
        assert "host" not in options and "port" not in options
        assert pool.connection_class is PrimaryConnection
        assert tls.connection_pool.connection_class is PrimarySSLConnection
    finally:
        await plain.aclose()
        await tls.aclose()


async def test_no_sentinel_answering_is_redis_unavailable_and_quick() -> None:
    dead = [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]
    client = connect("redis://:pw@x/0", dead, "mymaster")
    started = time.monotonic()
    try:
        with pytest.raises(RedisUnavailable, match="No master found"):
            await client.ping()
    finally:
        await client.aclose()
    assert time.monotonic() - started < CALL_TIMEOUT


def test_describe_masks_the_password_and_names_the_sentinels() -> None:
    assert describe("redis://:hunter22@cache:6379/0") == "redis://***:***@cache:6379/0"
    shown = describe("redis://:hunter22@x/0", [("s1", 26379), ("::1", 26380)], "orders")
    assert shown == "Sentinel master 'orders' via s1:26379, [::1]:26380"


async def test_the_primary_watch_runs_only_for_a_sentinel_client() -> None:
    client = connect(REDIS_URL)
    watch = PrimaryWatch(client)
    try:
        await watch.start()
        assert watch._task is None
    finally:
        await watch.stop()
        await client.aclose()
