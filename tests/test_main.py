"""The process entry point (`python -m push_service`) as a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from push_service.config import Settings
from push_service.main import secret_values
from tests.conftest import ServiceFactory
from tests.support import (
    Rabbit,
    Service,
    VapidPair,
    device_keys,
    serve_app,
    service_env,
    unique,
    wait_until,
)


def run_once(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    """Start the service with a clean environment; it is expected to exit on its own."""
    env = service_env(tmp_path, VapidPair.generate(), **overrides)
    return subprocess.run(
        [sys.executable, "-m", "push_service"],
        env=env,
        cwd=tmp_path,  # no stray .env, and no dev key file in the checkout
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"PORT": "abc"}, "PORT"),
        (
            {"NODE_ENV": "production", "VAPID_PRIVATE_KEY": "", "VAPID_PUBLIC_KEY": ""},
            "VAPID_PRIVATE_KEY",
        ),
        ({"VAPID_PRIVATE_KEY": "not-a-key"}, "VAPID_PRIVATE_KEY"),
        ({"VAPID_PUBLIC_KEY": VapidPair.generate().public}, "VAPID_PUBLIC_KEY"),
        ({"RABBITMQ_URL": "http://127.0.0.1:5672/"}, "RABBITMQ_URL"),
        ({"SHUTDOWN_GRACE_SECONDS": "soon"}, "SHUTDOWN_GRACE_SECONDS"),
    ],
    ids=["port", "production-without-key", "bad-key", "mismatched-key", "amqp-url", "grace"],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    result = run_once(tmp_path, **overrides)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("push_service: configuration error: ")
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert not (tmp_path / ".vapid-dev-key.pem").exists()  # never generated on the way out


# Secret-looking values (long enough for the log scrubber) that are not P-256 keys.
NOT_A_KEY = "Zm9vYmFyYmF6cXV4" * 4
NOT_A_KEY_WITH_SLASH = "Zm9vYmFyYmF6cXV4" * 2 + "/" + "Zm9vYmFyYmF6cXV4" * 2


@pytest.mark.parametrize(
    "value",
    [
        NOT_A_KEY,
        NOT_A_KEY_WITH_SLASH,
    ],
    ids=["plain", "with-slash"],
)
def test_a_bad_private_key_is_not_echoed(tmp_path: Path, value: str) -> None:
    result = run_once(tmp_path, VAPID_PRIVATE_KEY=value, VAPID_PUBLIC_KEY="")

    assert result.returncode == 2, result.stderr
    assert "VAPID_PRIVATE_KEY" in result.stderr
    assert value not in result.stderr + result.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_stops_the_service_cleanly(
    service_factory: ServiceFactory, signum: signal.Signals
) -> None:
    service = await service_factory()
    started = time.monotonic()

    service.signal(signum)

    assert await service.wait_exit(10) == 0, service.logs()
    assert time.monotonic() - started < 5
    logs = service.logs()
    assert f"{signum.name}: shutting down gracefully" in logs
    assert "push_service stopped" in logs
    assert "Traceback" not in logs


async def test_every_log_line_is_json_from_the_first(service_factory: ServiceFactory) -> None:
    service = await service_factory()
    service.signal(signal.SIGTERM)
    assert await service.wait_exit(10) == 0

    lines = service.logs().splitlines()
    assert lines, "the service logged nothing"
    first = orjson.loads(lines[0])
    assert isinstance(first, dict)
    assert {"ts", "level", "logger", "event"} <= first.keys()
    for line in lines:
        assert isinstance(orjson.loads(line), dict), line


async def in_flight(service: Service, session: aiohttp.ClientSession) -> Any:
    async with session.get(f"{service.base_url}/health") as response:
        return (await response.json())["in_flight_messages"]


@dataclass
class SilentPushService:
    """Takes pushes and does not answer for a minute (its handlers end with the client)."""

    base_url: str = ""
    received: int = 0
    answered: int = 0

    def endpoint(self, name: str) -> str:
        return f"{self.base_url}/push/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received += 1
        await asyncio.sleep(60)  # the push service being slow, not a synchronisation
        self.answered += 1
        return web.Response(status=201)


@contextlib.asynccontextmanager
async def silent_push_service() -> AsyncIterator[SilentPushService]:
    service = SilentPushService()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    # Cancelled when the client goes away, so that cleanup does not wait out the minute.
    async with serve_app(app, handler_cancellation=True) as service.base_url:
        yield service


async def test_a_second_sigterm_during_a_long_drain_exits_at_once(
    service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    async with silent_push_service() as sink:
        service = await service_factory(SHUTDOWN_GRACE_SECONDS="30", PUSH_TIMEOUT_SECONDS="60")
        notification_id = unique("slow")
        await rabbit.publish(
            service.queue,
            {
                "notification_id": notification_id,
                "devices": [{"endpoint": sink.endpoint("slow"), "keys": device_keys()}],
                "title": "Slow",
                "body": "push",
                "action_url": "https://example.com/",
            },
            message_id=notification_id,
        )
        async with aiohttp.ClientSession() as session:
            await wait_until(
                lambda: in_flight(service, session), 10, message="the message to be in flight"
            )
        service.signal(signal.SIGTERM)
        await wait_until(
            lambda: "draining 1 in-flight" in service.logs(), 10, message="the drain to start"
        )
        started = time.monotonic()

        service.signal(signal.SIGTERM)
        code = await service.wait_exit(10)

        elapsed = time.monotonic() - started
        assert code != 0, service.logs()
        assert elapsed < 5
        assert "second SIGTERM: exiting without waiting" in service.logs()
        assert (sink.received, sink.answered) == (1, 0)  # the exit did not wait for the push
    # The unacked message went back to the queue with the connection: nothing was lost.
    await wait_until(lambda: _count(rabbit, service.queue), 10, message="the message requeued")


async def _count(rabbit: Rabbit, queue: str) -> bool:
    return await rabbit.count(queue) == 1


def test_the_password_of_every_broker_node_is_kept_out_of_logs() -> None:
    settings = Settings.from_env(
        {"RABBITMQ_URL": "amqp://u:first-secret@a/,amqp://u:second-secret@b/"}, env_file=None
    )
    assert {"first-secret", "second-secret"} <= set(secret_values(settings))
