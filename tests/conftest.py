"""Fixtures: factories for the real service, broker, Redis and push servers; all clean up."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from tests.rabbit_cluster import RabbitCluster, rabbit_cluster
from tests.support import (
    REDIS_URL,
    PushServer,
    Rabbit,
    Service,
    StubServer,
    VapidPair,
    push_server,
    rabbit_client,
    service_env,
    stub_server,
)

ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
def vapid() -> VapidPair:
    return VapidPair.generate()


@pytest.fixture
async def rabbit() -> AsyncIterator[Rabbit]:
    async with rabbit_client() as client:
        yield client


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def user_service() -> AsyncIterator[StubServer]:
    """A stand-in User Service that accepts every deactivation (200) and records it."""
    async with stub_server([(200, {})]) as stub:
        yield stub


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


@pytest.fixture
async def pushserver() -> AsyncIterator[PushServer]:
    async with push_server() as server:
        yield server


@pytest.fixture
async def service_factory(
    tmp_path: Path, vapid: VapidPair, rabbit: Rabbit, redis_client: redis.Redis
) -> AsyncIterator[ServiceFactory]:
    """Start real service processes; each gets its own queue and Redis prefix unless shared."""
    services: list[Service] = []

    async def start(wait: bool = True, **overrides: str) -> Service:
        env = service_env(tmp_path, vapid, **overrides)
        service = Service(env, tmp_path / f"service-{len(services)}.log")
        services.append(service)
        service.start()
        if wait:
            await service.wait_ready()
        return service

    yield start
    for service in services:
        await service.stop()
    for service in services:
        await rabbit.delete(*service.queues)
        async for key in redis_client.scan_iter(match=f"{service.prefix}*", count=1000):
            with contextlib.suppress(Exception):
                await redis_client.delete(key)


@pytest.fixture
async def private_broker() -> AsyncIterator[RabbitCluster]:
    """A RabbitMQ node of the test's own: stopping it disturbs nobody else."""
    async with rabbit_cluster(size=1) as cluster:
        yield cluster
