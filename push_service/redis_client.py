"""Building the Redis client: one server named by REDIS_URL, or the primary Sentinel names.

Both kinds share one pool policy. After a Sentinel failover redis-py's own pool finds
the new primary: every new connection asks the sentinels where the primary is, a
connection to a dead primary fails and is replaced, and a write answered `READONLY`
(a demoted primary) is raised as a ConnectionError, which callers treat as Redis
being unavailable for a moment and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from push_service.config import redact_url
from push_service.status import CALL_TIMEOUT

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
SENTINEL_TIMEOUT = 1.0  # one sentinel that does not answer must not hold up the next
WATCH_INTERVAL = 1.0


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


def connect(
    url: str,
    sentinels: Sequence[tuple[str, int]] = (),
    master: str = "",
    cluster: Sequence[tuple[str, int]] = (),
) -> redis.Redis:
    """The service's client: REDIS_URL's server, `master` found through `sentinels`, or
    the Redis Cluster that `cluster` nodes belong to.

    With sentinels or cluster nodes, REDIS_URL gives only the credentials, TLS and options.
    """
    if cluster:
        return connect_cluster(url, cluster)
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


def connect_cluster(url: str, nodes: Sequence[tuple[str, int]]) -> redis.Redis:
    """A Redis Cluster client. Every script of the service names one key, and the
    status store's batches are grouped by hash slot (`status.batch`), so nothing it sends
    spans slots. Typed as a plain client: the service uses only what both offer."""
    options: dict[str, Any] = dict(parse_url(url))
    for unused in ("host", "port", "db", "connection_class", "path"):
        options.pop(unused, None)
    if scheme_is_tls(url):
        options["ssl"] = True
    pooled = pool_options()
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        max_connections=pooled["max_connections"],
        decode_responses=True,
        socket_timeout=None,
        socket_connect_timeout=pooled["socket_connect_timeout"],
        health_check_interval=pooled["health_check_interval"],
        retry=pooled["retry"],
        **options,
    )
    return cast(redis.Redis, client)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def scheme_is_tls(url: str) -> bool:
    return url.startswith("rediss://")


def _server_options(url: str) -> dict[str, Any]:
    """REDIS_URL without its host and port: what Sentinel-found servers are opened with."""
    options: dict[str, Any] = dict(parse_url(url))
    options.pop("host", None)
    options.pop("port", None)
    tls = options.pop("connection_class", None) is SSLConnection
    options["connection_class"] = PrimarySSLConnection if tls else PrimaryConnection
    return options


def describe(
    url: str,
    sentinels: Sequence[tuple[str, int]] = (),
    master: str = "",
    cluster: Sequence[tuple[str, int]] = (),
) -> str:
    """Where Redis is, for logs: the masked URL, the Sentinel master name and sentinels,
    or the cluster's start-up nodes."""
    if cluster:
        return f"Redis Cluster via {', '.join(_address(n) for n in cluster)}"
    if not sentinels:
        return redact_url(url)
    return f"Sentinel master {master!r} via {', '.join(_address(s) for s in sentinels)}"


def primary(client: redis.Redis) -> str | None:
    """The primary a Sentinel-managed client last found (host:port); None otherwise."""
    pool = getattr(client, "connection_pool", None)
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

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **options: Any) -> None:
        super().__init__(service_name, sentinel_manager, **options)  # type: ignore[no-untyped-call]
        self._announced: tuple[str, int] | None = None

    async def get_master_address(self) -> tuple[str, int]:
        address: tuple[str, int] = await super().get_master_address()  # type: ignore[no-untyped-call]
        announced = self._announced
        if address != announced:  # once per change, though many connections ask at once
            self._announced = address
            if announced is None:
                log.info("Redis primary %r is %s", self.service_name, _address(address))
            else:
                log.warning(
                    "Redis primary %r moved from %s to %s",
                    self.service_name,
                    _address(announced),
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


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary that also takes NOREPLICAS as "ask Sentinel again".

    With `min-replicas-to-write` set on the servers (README), a primary that has lost
    its replica refuses writes: during a failover that is the old primary, whose
    writes would be dropped when it rejoins as a replica. redis-py raises a plain
    ResponseError for it; like its own READONLY handling, this reconnects and raises
    a ConnectionError, so that callers wait and retry (on the new primary).
    """

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not str(exc).startswith("NOREPLICAS"):
                raise
            await self.disconnect()
            raise RedisConnectionError(f"the primary refused a write: {exc}") from exc


class PrimarySSLConnection(PrimaryConnection, SentinelManagedSSLConnection):
    pass


class PrimaryWatch:
    """Asks the sentinels where the primary is, every second (Sentinel mode only).

    redis-py asks only when it opens a connection. After a failover of a live primary
    (maintenance, `SENTINEL FAILOVER`), pooled connections would keep writing to the
    demoted one until Sentinel reconfigures it, 10 s and more, and those writes are
    dropped when it resyncs as a replica. Asking again moves the pool within a second.
    """

    def __init__(self, client: redis.Redis, interval: float = WATCH_INTERVAL) -> None:
        self.pool = getattr(client, "connection_pool", None)  # a cluster client has none
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if isinstance(self.pool, BlockingSentinelPool):
            self._task = asyncio.create_task(self._run(self.pool), name="redis-primary-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, pool: BlockingSentinelPool) -> None:
        missing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    await pool.get_master_address()  # drops idle connections when it moved
            except (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError) as exc:
                # During a failover no primary is known; the store's callers wait it out.
                if not missing:
                    log.warning("no Redis primary %r known: %s", pool.service_name, exc)
                missing = True
            else:
                if missing:
                    log.info("Redis primary %r known again", pool.service_name)
                missing = False
