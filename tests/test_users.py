"""The User Service client: bounded retries, outcome returned, never raises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from push_service.retry import RetryPolicy
from push_service.users import UserServiceClient
from tests.support import free_port, stub_server

PATH = "/api/v1/push-subscriptions/deactivate"
QUICK = RetryPolicy(max_tries=3, max_seconds=5.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_deactivation_is_posted_once_on_success(session: aiohttp.ClientSession) -> None:
    async with stub_server([(200, {})]) as stub:
        client = UserServiceClient(session, stub.base_url + "/", PATH, QUICK)
        result = await client.deactivate(
            "user-1", "https://push.example/x", "subscription_gone", 410
        )
    assert result == "ok"
    assert len(stub.requests) == 1
    request = stub.requests[0]
    assert request["path"] == PATH
    assert request["headers"]["Content-Type"].startswith("application/json")
    assert request["json"] == {
        "user_id": "user-1",
        "endpoint": "https://push.example/x",
        "reason": "subscription_gone",
        "status_code": 410,
    }


async def test_5xx_is_retried(session: aiohttp.ClientSession) -> None:
    async with stub_server([(503, {}), (200, {})]) as stub:
        client = UserServiceClient(session, stub.base_url, PATH, QUICK)
        assert await client.deactivate(None, "https://push.example/x", "gone", 404) == "ok"
    assert len(stub.requests) == 2
    assert stub.requests[1]["json"]["user_id"] is None


async def test_5xx_until_the_bound_fails(session: aiohttp.ClientSession) -> None:
    async with stub_server([(500, {})]) as stub:
        client = UserServiceClient(session, stub.base_url, PATH, QUICK)
        result = await client.deactivate("u", "https://push.example/x", "gone", 410)
    assert result == "failed: HTTP 500"
    assert len(stub.requests) == QUICK.max_tries


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_4xx_fails_without_retry(session: aiohttp.ClientSession, status: int) -> None:
    async with stub_server([(status, {}), (200, {})]) as stub:
        client = UserServiceClient(session, stub.base_url, PATH, QUICK)
        result = await client.deactivate("u", "https://push.example/x", "gone", 410)
    assert result == f"failed: HTTP {status}"
    assert len(stub.requests) == 1


async def test_unreachable_service_fails_within_the_bound(session: aiohttp.ClientSession) -> None:
    policy = RetryPolicy(max_tries=3, max_seconds=2.0, base_delay=0.05, max_delay=0.1)
    client = UserServiceClient(session, f"http://127.0.0.1:{free_port()}", PATH, policy, 1.0)
    started = time.monotonic()
    result = await client.deactivate("u", "https://push.example/x", "gone", 410)
    assert result.startswith("failed: connection error")
    assert time.monotonic() - started < 2.0 + 1.0


async def test_slow_service_times_out_and_fails(session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()
    calls = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post(PATH, slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        policy = RetryPolicy(max_tries=2, max_seconds=2.0, base_delay=0.01, max_delay=0.02)
        client = UserServiceClient(session, f"http://127.0.0.1:{port}", PATH, policy, 0.2)
        started = time.monotonic()
        result = await client.deactivate("u", "https://push.example/x", "gone", 410)
        assert result == "failed: timed out"
        assert calls == 2
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
        await runner.cleanup()


async def test_not_configured_is_skipped(session: aiohttp.ClientSession) -> None:
    client = UserServiceClient(session, "", PATH, QUICK)
    result = await client.deactivate("u", "https://push.example/x", "gone", 410)
    assert result.startswith("skipped")
    assert "USER_SERVICE_URL" in result


async def test_url_joins_base_and_path_with_one_slash(session: aiohttp.ClientSession) -> None:
    for base, path in [("http://u/", "/p"), ("http://u", "p"), ("http://u/", "p")]:
        assert UserServiceClient(session, base, path, QUICK).url == "http://u/p"


async def test_a_redirect_is_not_followed(session: aiohttp.ClientSession) -> None:
    async with stub_server([(307, {"Location": "/elsewhere"})]) as users:
        client = UserServiceClient(session, users.base_url, "/deactivate", QUICK)
        outcome = await client.deactivate("u1", "https://push.example/x", "gone", 410)
    assert outcome == "failed: HTTP 307"
    assert [r["path"] for r in users.requests] == ["/deactivate"]
