"""Logs, metrics and secrets of a real service process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio as redis

from tests.conftest import ServiceFactory
from tests.support import (
    PushServer,
    Rabbit,
    Service,
    VapidPair,
    final_record,
    stub_server,
    unique,
    wait_until,
)

LEVELS = {"debug", "info", "warning", "error", "critical"}
_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)


# --- helpers --------------------------------------------------------------------------------


def log_lines(service: Service) -> list[dict[str, Any]]:
    """Every line of the service's output, each of which must be one JSON object."""
    entries = []
    for number, line in enumerate(service.logs().splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), f"log line {number} is not an object: {line!r}"
        assert entry.get("level") in LEVELS, f"log line {number} has no level: {line!r}"
        assert isinstance(entry.get("event"), str), f"log line {number} has no event: {line!r}"
        entries.append(entry)
    return entries


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return response.status, await response.text()


async def http_post(url: str, body: bytes, content_type: str = "application/json") -> int:
    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": content_type}
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status


def message(notification_id: str, *devices: dict, **extra: object) -> dict:
    return {
        "notification_id": notification_id,
        "user_id": "user-obs",
        "devices": list(devices),
        "title": "Hello",
        "body": "World",
        "action_url": "https://example.com/path",
        **extra,
    }


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, f"not a Prometheus sample: {line!r}"
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        samples.append(Sample(match["name"], labels, float(match["value"])))
    return samples


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def run_command(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode == 0, f"{argv[:2]} failed: {out.decode(errors='replace')}"
    return out.decode(errors="replace")


# --- log format and levels -----------------------------------------------------------------


async def test_every_log_line_is_one_json_object(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory()
    good_sub, _ = await pushserver.subscribe(vapid.public)
    gone_sub, gone_hash = await pushserver.subscribe(vapid.public)
    await pushserver.expire(gone_hash)
    good, gone, bad = unique("good"), unique("gone"), unique("bad")
    await rabbit.publish(service.queue, message(good, good_sub))
    await rabbit.publish(service.queue, message(gone, gone_sub))
    await rabbit.publish(service.queue, {"notification_id": bad, "title": "no devices"})
    await rabbit.publish(service.queue, b"\xff\xfe not even utf-8")
    assert (await final_record(service.base_url, good))["status"] == "sent"
    assert (await final_record(service.base_url, gone))["status"] == "failed"
    assert (await final_record(service.base_url, bad))["status"] == "failed"
    await service.stop()

    entries = log_lines(service)

    assert all({"ts", "logger"} <= e.keys() for e in entries)
    assert not [e for e in entries if e["level"] == "debug"], "debug lines at LOG_LEVEL=INFO"
    failed = [e for e in entries if e.get("notification_id") == gone]
    assert failed and failed[0]["level"] == "info"
    assert failed[0]["endpoint_origin"].startswith("http://localhost:")
    dead = [e for e in entries if e.get("notification_id") == bad]
    assert dead and dead[0]["level"] == "warning" and "invalid_devices" in dead[0]["event"]
    assert any("invalid_json" in e["event"] for e in entries if e["level"] == "warning")
    assert any("listening" in e["event"] for e in entries)
    assert any(e["event"] == "push_service stopped" for e in entries)


async def test_log_level_warning_suppresses_info(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory(LOG_LEVEL="WARNING")
    subscription, _ = await pushserver.subscribe(vapid.public)
    good = unique("good")
    await rabbit.publish(service.queue, b"{not json")
    await rabbit.publish(service.queue, message(good, subscription))
    assert (await final_record(service.base_url, good))["status"] == "sent"
    await wait_until(lambda: "dead-lettered" in service.logs(), message="the DLQ warning")
    await service.stop()

    entries = log_lines(service)

    assert entries, "the warning was not logged"
    assert {e["level"] for e in entries} <= {"warning", "error", "critical"}, entries


async def test_enable_debug_emits_debug_lines(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory(ENABLE_DEBUG="true")
    subscription, _ = await pushserver.subscribe(vapid.public)
    good = unique("good")
    await rabbit.publish(service.queue, message(good, subscription))
    assert (await final_record(service.base_url, good))["status"] == "sent"

    def debug_line() -> bool:
        return any(
            e["level"] == "debug" and e.get("notification_id") == good for e in log_lines(service)
        )

    await wait_until(debug_line, message="a debug line about the notification")


# --- metrics -----------------------------------------------------------------------------


async def test_metrics_after_deliveries(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    retry_answers: list[tuple[int, dict[str, str]]] = [(503, {"Retry-After": "0"}), (201, {})]
    async with stub_server() as users, stub_server(retry_answers) as flaky:
        service = await service_factory(USER_SERVICE_URL=users.base_url)
        good_sub, _ = await pushserver.subscribe(vapid.public)
        gone_sub, gone_hash = await pushserver.subscribe(vapid.public)
        await pushserver.expire(gone_hash)
        flaky_sub = dict(good_sub, endpoint=f"{flaky.base_url}/push/flaky")
        good, gone, retried = unique("good"), unique("gone"), unique("retried")
        now = datetime.datetime.now(datetime.UTC)
        await rabbit.publish(service.queue, message(good, good_sub), timestamp=now)
        await rabbit.publish(service.queue, message(gone, gone_sub))
        await rabbit.publish(service.queue, message(retried, flaky_sub))
        await rabbit.publish(service.queue, b"{not json")
        for notification_id in (good, gone, retried):
            await final_record(service.base_url, notification_id)

        async def dead_lettered() -> bool:
            return await rabbit.count(f"{service.queue}.dlq") == 1

        await wait_until(dead_lettered, message="the bad message in the DLQ")

        # A status (or the DLQ) shows the outcome a moment before the counters move.
        async def settled() -> str | None:
            status, text = await http_get(f"{service.base_url}/metrics")
            assert status == 200
            consumed = value(parse_metrics(text), "push_messages_consumed_total")
            return text if consumed == 4 else None

        text = await wait_until(settled, message="all four messages counted")

    samples = parse_metrics(text)
    consumed = "push_messages_consumed_total"
    assert value(samples, consumed, result="sent") == 2
    assert value(samples, consumed, result="failed") == 1
    assert value(samples, consumed, result="dead_lettered") == 1
    pushes = "push_pushes_total"
    # Push services are told apart by host and, when not the default, port.
    push_host = pushserver.base_url.removeprefix("http://")
    flaky_host = flaky.base_url.removeprefix("http://")
    assert value(samples, pushes, outcome="sent", host=push_host) == 1
    assert value(samples, pushes, outcome="sent", host=flaky_host) == 1
    assert value(samples, pushes, outcome="subscription_gone", host=push_host) == 1
    assert value(samples, "push_retries_total") == 1
    assert value(samples, "push_invalidations_total", result="ok") == 1
    assert value(samples, "push_dead_lettered_total", reason="invalid_json") == 1
    assert value(samples, "push_in_flight_sends") == 0
    assert [s.value for s in samples if s.name == "push_in_flight_sends"] == [0]
    assert [s.value for s in samples if s.name == "push_consumer_connected"] == [1]

    # The push latency histogram: cumulative buckets up to +Inf, one per attempt (1+1+2).
    buckets = [s for s in samples if s.name == "push_request_seconds_bucket"]
    assert len(buckets) >= 10 and buckets[-1].labels["le"] == "+Inf"
    counts = [b.value for b in buckets]
    assert counts == sorted(counts) and counts[-1] == 4
    assert value(samples, "push_request_seconds_count") == 4
    assert value(samples, "push_request_seconds_sum") > 0
    assert value(samples, "push_end_to_end_seconds_count") >= 1
    for name, kind in [
        ("push_messages_consumed_total", "counter"),
        ("push_request_seconds", "histogram"),
        ("push_consumer_connected", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}" in text


async def test_metrics_show_the_consumer_disconnected(
    service_factory: ServiceFactory, vapid: VapidPair
) -> None:
    service = await service_factory(wait=False, RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/")

    async def metrics() -> str | None:
        try:
            _, text = await http_get(f"{service.base_url}/metrics")
        except aiohttp.ClientError:
            return None
        return text if "push_consumer_connected " in text else None

    text = await wait_until(metrics, 30, message="/metrics to answer")
    assert value(parse_metrics(text), "push_consumer_connected") == 0
    status, _ = await http_get(f"{service.base_url}/ready")
    assert status == 503


# --- secrets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    @property
    def quoted(self) -> str:
        return quote(self.password, safe="")

    def forms(self) -> tuple[str, ...]:
        """The password as given and as it appears percent-encoded in a URL."""
        return (self.password, self.quoted)


@pytest.fixture
async def rabbit_user() -> AsyncIterator[Credentials]:
    """A RabbitMQ user with a known password and full rights on vhost /; deleted afterwards."""
    credentials = Credentials(unique("obs"), f"Rb{uuid.uuid4().hex}!p@ss/w%rd")
    await run_command("rabbitmqctl", "add_user", credentials.user, credentials.password)
    try:
        await run_command(
            "rabbitmqctl", "set_permissions", "-p", "/", credentials.user, ".*", ".*", ".*"
        )
        yield credentials
    finally:
        with contextlib.suppress(AssertionError):
            await run_command("rabbitmqctl", "delete_user", credentials.user)


@pytest.fixture
async def redis_user(redis_client: redis.Redis) -> AsyncIterator[Credentials]:
    """A Redis ACL user with a known password; deleted afterwards."""
    credentials = Credentials(unique("obs"), f"Rd{uuid.uuid4().hex}:p@ss")
    await redis_client.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", credentials.user, "on", f">{credentials.password}", "~*", "&*", "+@all"
    )
    yield credentials
    await redis_client.execute_command("ACL", "DELUSER", credentials.user)  # type: ignore[no-untyped-call]


async def _answers(url: str) -> bool:
    try:
        return (await http_get(url))[0] == 200
    except aiohttp.ClientError:
        return False


async def test_secrets_never_reach_logs_health_or_metrics(
    service_factory: ServiceFactory,
    pushserver: PushServer,
    rabbit: Rabbit,
    vapid: VapidPair,
    rabbit_user: Credentials,
    redis_user: Credentials,
) -> None:
    amqp = f"amqp://{rabbit_user.user}:{rabbit_user.quoted}@127.0.0.1:5672/"
    redis_url = f"redis://{redis_user.user}:{redis_user.quoted}@127.0.0.1:6379/0"
    wrong_amqp = f"amqp://guest:{rabbit_user.quoted}@127.0.0.1:5672/"
    wrong_redis = (
        f"redis://{redis_user.user}:{quote('x' + redis_user.password, safe='')}@127.0.0.1:6379/0"
    )
    bodies: list[str] = []
    async with stub_server([(403, {})]) as vapid_refusing:
        service = await service_factory(RABBITMQ_URL=amqp, REDIS_URL=redis_url, ENABLE_DEBUG="true")
        # The wrong passwords: broker authentication fails, Redis refuses every command.
        refused = await service_factory(wait=False, RABBITMQ_URL=wrong_amqp, REDIS_URL=wrong_redis)

        subscription, _ = await pushserver.subscribe(vapid.public)
        good, vapid_bad, bad = unique("good"), unique("vapid"), unique("bad")
        await rabbit.publish(service.queue, message(good, subscription))
        refusing = dict(subscription, endpoint=f"{vapid_refusing.base_url}/push/x")
        await rabbit.publish(service.queue, message(vapid_bad, refusing))
        await rabbit.publish(service.queue, {"notification_id": bad, "title": "x", "devices": 1})
        await rabbit.publish(service.queue, b"{not json")
        assert (await final_record(service.base_url, good))["status"] == "sent"
        assert (await final_record(service.base_url, vapid_bad))["devices"][0][
            "reason"
        ] == "vapid_rejected"
        assert (await final_record(service.base_url, bad))["status"] == "failed"

        # 4xx answers of /subscribe.
        subscribe = f"{service.base_url}/subscribe"
        assert await http_post(subscribe, b"{nope") == 400
        assert await http_post(subscribe, json.dumps({"endpoint": "x"}).encode()) == 422
        keyless = json.dumps(dict(subscription, keys={"p256dh": "AAAA", "auth": "A"}))
        assert await http_post(subscribe, keyless.encode()) == 422
        assert await http_post(subscribe, b"{}", "text/plain") == 415
        assert (await http_get(f"{service.base_url}/notifications/{unique('none')}"))[0] == 404

        # Lose the broker mid-session: deleting the user closes its connection, and every
        # reconnect then fails authentication with the (still configured) password.
        await run_command("rabbitmqctl", "delete_user", rabbit_user.user)
        await wait_until(
            lambda: (
                service.logs().count("ACCESS_REFUSED") >= 1
                and refused.logs().count("ACCESS_REFUSED") >= 1
            ),
            30,
            message="authentication failures in both logs",
        )
        # `refused` was started without waiting: its port opens after lifespan start-up.
        await wait_until(lambda: _answers(refused.base_url + "/health"), 30, message="listening")
        for running in (service, refused):
            for path in ("/health", "/metrics", "/ready", "/vapid_public_key"):
                bodies.append((await http_get(running.base_url + path))[1])
        await service.stop()
        await refused.stop()

    logs = service.logs() + refused.logs()
    entries = log_lines(service) + log_lines(refused)
    assert any(e["level"] == "error" and "VAPID" in e["event"] for e in entries)
    assert any("dead-lettered" in e["event"] for e in entries)
    everything = logs + "\n".join(bodies)
    secrets = {
        "VAPID private key": vapid.private,
        **{f"RabbitMQ password ({p!r})": p for p in rabbit_user.forms()},
        **{f"Redis password ({p!r})": p for p in redis_user.forms()},
    }
    leaked = [name for name, secret in secrets.items() if secret in everything]
    assert not leaked, f"leaked: {leaked}"
    assert vapid.public in "\n".join(bodies)  # the public key is meant to be served
