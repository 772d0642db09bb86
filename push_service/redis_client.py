"""Building the Redis client: one server named by REDIS_URL, or the primary Sentinel names.

Both kinds share one pool policy. After a Sentinel failover redis-py's own pool finds
the new primary: every new connection asks the sentinels where the primary is, a
connection to a dead primary fails and is replaced, and a write answered `READONLY`
(a demoted primary) is raised as a ConnectionError, which callers treat as Redis
being unavailable for a moment and retry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from push_service.config import redact_url
from push_service.status import CALL_TIMEOUT

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
SENTINEL_TIMEOUT = 1.0  # one sentinel that does not answer must not hold up the next


def pool_options() -> dict[str, Any]:
    """Pool and connection options of every Redis client of the service."""
    return {
        # Blocking: a burst of callers (status reads, redelivery counts) waits for a free
        # connection. The default pool raises at once when all are busy, which would
        # read as "Redis unavailable" while Redis is fine.
        "max_connections": MAX_CONNECTIONS,
        "timeout": CALL_TIMEOUT,
        "decode_responses": True,
        # Bounded per call by the status store (one timeout per pipeline, not per reply).
        "socket_timeout": None,
        "socket_connect_timeout": 3.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
        "retry_on_error": [RedisConnectionError],
    }


def connect(url: str, sentinels: Sequence[tuple[str, int]] = (), master: str = "") -> redis.Redis:
    """The service's client: REDIS_URL's server, or `master` found through `sentinels`.

    With sentinels, REDIS_URL gives only the credentials, the database, TLS and options.
    """
    if not sentinels:
        return redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(url, **pool_options()))
    options = _server_options(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        list(sentinels),
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            # One try each: the next sentinel is the retry.
            "retry": Retry(NoBackoff(), 0),
        },
        **options,
    )
    client: redis.Redis = manager.master_for(
        master, connection_pool_class=BlockingSentinelPool, **pool_options()
    )
    return client


def _server_options(url: str) -> dict[str, Any]:
    """REDIS_URL without its host and port: what Sentinel-found servers are opened with."""
    options: dict[str, Any] = dict(parse_url(url))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True  # SentinelConnectionPool picks its TLS connection class
    return options


def describe(url: str, sentinels: Sequence[tuple[str, int]] = (), master: str = "") -> str:
    """Where Redis is, for logs: the masked URL, or the Sentinel master name and sentinels."""
    if not sentinels:
        return redact_url(url)
    return f"Sentinel master {master!r} via {', '.join(_address(s) for s in sentinels)}"


def primary(client: redis.Redis) -> str | None:
    """The primary a Sentinel-managed client last found (host:port); None otherwise."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool) and pool.master_address:
        return _address(pool.master_address)
    return None


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool with the blocking pool's wait for a free connection.

    Also: a connection that was busy while the primary changed is closed when it comes
    back, so that no connection to the old primary is kept (redis-py's asyncio pool
    closes only the idle ones), and the change of primary is logged.
    """

    async def get_master_address(self) -> tuple[str, int]:
        previous = self.master_address
        address: tuple[str, int] = await super().get_master_address()  # type: ignore[no-untyped-call]
        if previous is None:
            log.info("Redis primary %r is %s", self.service_name, _address(address))
        elif address != previous:
            log.warning(
                "Redis primary %r moved from %s to %s",
                self.service_name,
                _address(previous),
                _address(address),
            )
        return address

    async def release(self, connection: AbstractConnection) -> None:
        address = (getattr(connection, "host", None), getattr(connection, "port", None))
        if self.master_address is not None and address != self.master_address:
            await connection.disconnect()
        await super().release(connection)

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()
