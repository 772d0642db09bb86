"""The HTTP API of CONTRACT "HTTP API", against the real service process.

Every test starts `python -m push_service` (service_factory) against the real
RabbitMQ and Redis; deliveries go to web-push-testing, which decrypts them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from yarl import URL

from tests.conftest import ServiceFactory
from tests.support import (
    Answer,
    PushServer,
    Rabbit,
    Service,
    VapidPair,
    assert_error,
    call,
    free_port,
    unique,
    wait_until,
)

pytestmark = pytest.mark.e2e

WELCOME_TITLE = "Welcome from the API test"
SUBSCRIBED = {"status": "ok", "message": "Subscription received and queued."}


async def subscribe(
    session: aiohttp.ClientSession, service: Service, body: Any, **headers: str
) -> Answer:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await call(
        session,
        "POST",
        f"{service.base_url}/subscribe",
        data=data,
        headers={"Content-Type": "application/json", **headers},
    )


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def browser_keys() -> dict[str, str]:
    """Keys as a browser would send them: a fresh P-256 point and a 16-byte secret."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}


async def notification_keys(redis_client: redis.Redis, service: Service) -> list[str]:
    pattern = f"{service.prefix}notification:*"
    return sorted([key async for key in redis_client.scan_iter(match=pattern, count=1000)])


async def final_record(
    session: aiohttp.ClientSession, service: Service, notification_id: str
) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        answer = await call(session, "GET", f"{service.base_url}/notifications/{notification_id}")
        if answer.status == 404:
            return None
        assert answer.status == 200, answer.text
        record: dict[str, Any] = answer.json
        return record if record["status"] in ("sent", "failed") else None

    result: dict[str, Any] = await wait_until(done, message=f"{notification_id} to finish")
    return result


async def wait_for_health(session: aiohttp.ClientSession, service: Service) -> Answer:
    async def answered() -> Answer | None:
        assert service.proc is not None
        if service.proc.poll() is not None:
            raise AssertionError(f"service exited:\n{service.logs()}")
        try:
            answer = await call(session, "GET", f"{service.base_url}/health")
        except aiohttp.ClientError:
            return None
        return answer if answer.status == 200 else None

    result: Answer = await wait_until(answered, 30, message="/health to answer")
    return result


# --- health, readiness, key ---------------------------------------------------------------


async def test_health_reports_the_service_and_its_dependencies(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory()

    answer = await call(http, "GET", f"{service.base_url}/health")

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json
    assert body["status"] == "healthy"
    assert body["service"] == "push_service"
    stamp = datetime.datetime.fromisoformat(body["timestamp"])
    assert stamp.tzinfo is not None
    age = datetime.datetime.now(datetime.UTC) - stamp
    assert abs(age.total_seconds()) < 60
    assert body["dependencies"]["rabbitmq"]["connected"] is True
    assert body["dependencies"]["rabbitmq"]["consuming"] is True
    assert body["dependencies"]["redis"]["connected"] is True
    # No CORS configured: no cross-origin reads.
    cross = await call(
        http, "GET", f"{service.base_url}/health", headers={"Origin": "https://app.example.com"}
    )
    assert "Access-Control-Allow-Origin" not in cross.headers


async def test_ready_when_broker_and_redis_are_connected(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory()

    answer = await call(http, "GET", f"{service.base_url}/ready")

    assert answer.status == 200
    assert answer.json["status"] == "ready"


async def test_vapid_public_key_is_the_configured_one(
    service_factory: ServiceFactory, http: aiohttp.ClientSession, vapid: VapidPair
) -> None:
    service = await service_factory()

    answer = await call(http, "GET", f"{service.base_url}/vapid_public_key")

    assert answer.status == 200
    assert answer.json == {"public_key": vapid.public, "key_id": "default"}


# --- broker down --------------------------------------------------------------------------


async def test_broker_unreachable_not_ready_and_subscribe_is_503_promptly(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    closed_port = free_port()  # nothing listens there
    service = await service_factory(
        wait=False, RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{closed_port}/"
    )

    health = await wait_for_health(http, service)

    assert health.json["status"] == "healthy"  # liveness: the process is fine
    assert health.json["dependencies"]["rabbitmq"]["connected"] is False
    assert health.json["dependencies"]["redis"]["connected"] is True
    ready = await call(http, "GET", f"{service.base_url}/ready")
    assert ready.status == 503
    assert ready.json["status"] == "not_ready"
    assert ready.json["rabbitmq"] is False
    body = {"endpoint": "http://127.0.0.1:9/push/x", "keys": browser_keys()}
    started = time.monotonic()
    answer = await subscribe(http, service, body)
    elapsed = time.monotonic() - started
    assert_error(answer, 503, "broker_unavailable")
    assert "unavailable" in answer.json["detail"]
    assert elapsed < 3.0, f"/subscribe took {elapsed:.1f}s with the broker down"
    assert int(answer.headers["Retry-After"]) > 0


# --- subscribe ----------------------------------------------------------------------------


async def test_subscribe_queues_a_welcome_notification_that_is_delivered(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    service = await service_factory(WELCOME_TITLE=WELCOME_TITLE)
    subscription, client_hash = await pushserver.subscribe(vapid.public)

    answer = await subscribe(
        http,
        service,
        {**subscription, "user_id": "user-42"},
        **{"Content-Type": "application/json; charset=utf-8"},
    )

    assert answer.status == 202, answer.text
    body = answer.json
    notification_id = body.pop("notification_id")
    assert body.items() >= SUBSCRIBED.items()
    assert (body["created"], body["replaced"]) == (True, None)
    assert isinstance(notification_id, str) and notification_id
    record = await final_record(http, service, notification_id)
    assert record["status"] == "sent"
    assert record["user_id"] == "user-42"
    assert record["user_verified"] is False  # anonymous: only claimed, never reported
    origin = str(URL(subscription["endpoint"]).origin()).rstrip("/")
    assert record["devices"][0]["origin"] == origin
    assert "endpoint" not in record["devices"][0]
    received = await pushserver.messages(client_hash)
    assert len(received) == 1
    welcome = received[0]
    assert welcome["notification_id"] == notification_id
    assert welcome["title"] == WELCOME_TITLE
    assert welcome["body"]
    assert welcome["action_url"] == f"{service.base_url}/web_push_test/web_push_test.html"


async def test_unknown_notification_is_404(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory()

    for notification_id in (unique("never-published"), "%2e%2e", "a" * 300):
        answer = await call(http, "GET", f"{service.base_url}/notifications/{notification_id}")
        assert_error(answer, 404, "not_found", notification_id)


def _bad_subscriptions(good: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(what, body, error code) of /subscribe bodies that must be refused with 422."""
    keys = good["keys"]
    point = base64.urlsafe_b64decode(keys["p256dh"] + "==")
    off_curve = b"\x04" + bytes(range(1, 65))  # x, y not on P-256
    endpoint = good["endpoint"]
    host_port = URL(endpoint).raw_authority

    def keyed(**changes: Any) -> dict[str, Any]:
        return {**good, "keys": {**keys, **changes}}

    def at(url: str) -> tuple[str, dict[str, Any], str]:
        return (url[:40], {**good, "endpoint": url}, "endpoint_not_allowed")

    return [
        ("missing keys", {"endpoint": endpoint}, "invalid_keys"),
        ("keys not an object", {"endpoint": endpoint, "keys": "abc"}, "invalid_keys"),
        ("missing endpoint", {"keys": keys}, "invalid_endpoint"),
        ("empty endpoint", {"endpoint": "", "keys": keys}, "invalid_endpoint"),
        ("endpoint not a string", {"endpoint": 42, "keys": keys}, "invalid_endpoint"),
        ("missing p256dh", {**good, "keys": {"auth": keys["auth"]}}, "invalid_keys"),
        ("missing auth", {**good, "keys": {"p256dh": keys["p256dh"]}}, "invalid_keys"),
        ("p256dh too short", keyed(p256dh=b64url(point[:33])), "invalid_keys"),
        ("p256dh too long", keyed(p256dh=b64url(point + b"\0")), "invalid_keys"),
        ("p256dh off the curve", keyed(p256dh=b64url(off_curve)), "invalid_keys"),
        ("p256dh not base64url", keyed(p256dh="not*base64!"), "invalid_keys"),
        ("auth too short", keyed(auth=b64url(os.urandom(8))), "invalid_keys"),
        ("auth too long", keyed(auth=b64url(os.urandom(32))), "invalid_keys"),
        ("auth not a string", keyed(auth=12345), "invalid_keys"),
        at("javascript:alert(1)"),
        at("file:///etc/passwd"),
        at("data:text/plain,hi"),
        at(f"ftp://{host_port}/x"),
        at("https://push.example.net/x"),  # not in the allowlist
        at("http://localhost.example.net/x"),  # an allowed name as a prefix
        at(f"http://user:secret@{host_port}/x"),
        at(f"http://evil.example@{host_port}/x"),
        at(endpoint + "a" * 2100),
        ("expirationTime text", {**good, "expirationTime": "tomorrow"}, "invalid_subscription"),
        ("user_id object", {**good, "user_id": {"id": 1}}, "invalid_user_id"),
    ]


async def test_bad_subscriptions_are_refused_and_nothing_is_published(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
    rabbit: Rabbit,
    redis_client: redis.Redis,
) -> None:
    # Prefetch 1: anything published before the final valid subscription would be
    # handled (and recorded in Redis) before it.
    service = await service_factory(
        CONSUMER_PREFETCH="1", SUBSCRIBE_RATE_LIMIT="0", MAX_REQUEST_BYTES="4096"
    )
    good, client_hash = await pushserver.subscribe(vapid.public)
    url = f"{service.base_url}/subscribe"
    json_type = {"Content-Type": "application/json"}

    for what, body in [
        ("malformed JSON", b'{"endpoint": '),
        ("empty body", b""),
        ("JSON array", orjson.dumps([good])),
        ("JSON string", b'"endpoint"'),
        ("JSON null", b"null"),
        ("not UTF-8", b'{"endpoint": "\xff\xfe"}'),
    ]:
        assert_error(await subscribe(http, service, body), 400, "invalid_json", what)
    for what, body, code in _bad_subscriptions(good):
        answer = await subscribe(http, service, body)
        assert_error(answer, 422, code, what)

    padded = orjson.dumps({**good, "padding": "x" * 5000})
    assert_error(await subscribe(http, service, padded), 413, "request_too_large", "declared")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield b" " * 1000
        yield orjson.dumps(good)

    chunked = await call(http, "POST", url, data=chunks(), headers=json_type)
    assert_error(chunked, 413, "request_too_large", "chunked")

    for what, content_type in [
        ("text/plain", "text/plain"),
        ("form", "application/x-www-form-urlencoded"),
        ("json suffix", "application/json-patch+json"),
    ]:
        answer = await call(
            http, "POST", url, data=orjson.dumps(good), headers={"Content-Type": content_type}
        )
        assert_error(answer, 415, "unsupported_media_type", what)
    no_type = await call(
        http, "POST", url, data=orjson.dumps(good), skip_auto_headers=["Content-Type"]
    )
    assert_error(no_type, 415, "unsupported_media_type", "no content type")

    for method in ("GET", "PUT", "PATCH"):
        answer = await call(http, method, url)
        assert_error(answer, 405, "method_not_allowed", method)
        assert "POST" in answer.headers["Allow"]

    # The one valid subscription: the only message the queue ever saw.
    answer = await subscribe(http, service, good)
    assert answer.status == 202, answer.text
    notification_id = answer.json["notification_id"]
    assert (await final_record(http, service, notification_id))["status"] == "sent"
    assert await notification_keys(redis_client, service) == [
        f"{service.prefix}notification:{notification_id}"
    ]
    assert len(await pushserver.messages(client_hash)) == 1
    assert await rabbit.count(f"{service.queue}.dlq") == 0
    assert await rabbit.count(service.queue) == 0


async def test_https_only_and_wildcard_never_admit_private_addresses(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    rabbit: Rabbit,
    redis_client: redis.Redis,
) -> None:
    service = await service_factory(
        CONSUMER_PREFETCH="1",
        SUBSCRIBE_RATE_LIMIT="0",
        PUSH_ALLOW_HTTP="false",
        PUSH_ENDPOINT_ALLOWLIST="*",
    )
    keys = browser_keys()
    refused = [
        "http://push.example.com/send/x",  # http is refused by default
        "https://127.0.0.1/x",
        "https://127.0.0.1:8443/x",
        "https://[::1]/x",
        "https://localhost/x",
        "https://api.localhost/x",
        "https://2130706433/x",  # 127.0.0.1 as one number
        "https://0x7f.0.0.1/x",
        "https://0177.0.0.1/x",
        "https://127.1/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://0.0.0.0/x",
        "https://10.1.2.3/x",
        "https://192.168.1.1/x",
        "https://172.16.0.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/x",
        "https://[fc00::1]/x",
        "https://100.64.0.1/x",
        "https://user@push.example.com/x",
        "ws://push.example.com/x",
    ]
    for endpoint in refused:
        answer = await subscribe(http, service, {"endpoint": endpoint, "keys": keys})
        assert_error(answer, 422, "endpoint_not_allowed", endpoint)
    answer = await subscribe(http, service, {"endpoint": "http://push.example.com/x", "keys": keys})
    assert "https" in answer.json["detail"]

    # A sentinel of our own: with prefetch 1, anything the API had published would
    # have been handled (and recorded) before it.
    sentinel = unique("sentinel")
    await rabbit.publish(service.queue, {"notification_id": sentinel, "title": "no devices"})
    assert (await final_record(http, service, sentinel))["status"] == "failed"
    assert await notification_keys(redis_client, service) == [
        f"{service.prefix}notification:{sentinel}"
    ]

    async def one_dead_letter() -> bool:
        return await rabbit.count(f"{service.queue}.dlq") == 1

    await wait_until(one_dead_letter, message="the sentinel in the DLQ")


# --- abuse limits, CORS -------------------------------------------------------------------


async def test_rate_limit_per_client_ignores_spoofed_forwarded_for(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    service = await service_factory(SUBSCRIBE_RATE_LIMIT="3")
    subscription, client_hash = await pushserver.subscribe(vapid.public)

    for n in range(3):  # each claims another client; without TRUSTED_PROXIES none counts
        answer = await subscribe(
            http, service, subscription, **{"X-Forwarded-For": f"203.0.113.{n + 1}"}
        )
        assert answer.status == (202 if n == 0 else 200), answer.text  # then re-syncs
    limited = await subscribe(http, service, subscription)
    assert_error(limited, 429, "rate_limited")
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    spoofed = await subscribe(
        http, service, subscription, **{"X-Forwarded-For": "198.51.100.77", "X-Real-IP": "1.2.3.4"}
    )
    assert_error(spoofed, 429, "rate_limited")
    # Other endpoints are not limited.
    assert (await call(http, "GET", f"{service.base_url}/vapid_public_key")).status == 200

    async def welcomed() -> bool:
        return len(await pushserver.messages(client_hash)) >= 1

    # One welcome: the same subscription sent again is a re-sync, not a new subscriber.
    await wait_until(welcomed, message="the accepted subscription's welcome")
    assert len(await pushserver.messages(client_hash)) == 1


async def test_cors_admits_only_the_configured_origin(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    allowed = "https://app.example.com"
    service = await service_factory(CORS_ALLOW_ORIGINS=allowed)
    url = f"{service.base_url}/subscribe"

    def preflight(origin: str) -> Awaitable[Answer]:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        return call(http, "OPTIONS", url, headers=headers)

    ok = await preflight(allowed)
    assert ok.status == 200, ok.text
    assert ok.headers["Access-Control-Allow-Origin"] == allowed
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "content-type" in ok.headers["Access-Control-Allow-Headers"].lower()
    other = await preflight("https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other.headers
    assert other.status >= 400
    simple: Callable[[str], Awaitable[Answer]] = lambda origin: call(  # noqa: E731
        http, "GET", f"{service.base_url}/vapid_public_key", headers={"Origin": origin}
    )
    assert (await simple(allowed)).headers["Access-Control-Allow-Origin"] == allowed
    assert "Access-Control-Allow-Origin" not in (await simple("https://evil.example.com")).headers


# --- metrics ------------------------------------------------------------------------------


async def test_metrics_are_prometheus_text_and_count_consumed_messages(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
    rabbit: Rabbit,
) -> None:
    service = await service_factory()
    subscription, _ = await pushserver.subscribe(vapid.public)
    notification_id = unique("n")
    await rabbit.publish(
        service.queue,
        {
            "notification_id": notification_id,
            "devices": [subscription],
            "title": "Metrics",
            "body": "count me",
            "action_url": "https://example.com/",
        },
    )
    assert (await final_record(http, service, notification_id))["status"] == "sent"

    async def counted() -> Answer | None:
        answer = await call(http, "GET", f"{service.base_url}/metrics")
        return answer if 'push_messages_consumed_total{result="sent"} 1' in answer.text else None

    answer = await wait_until(counted, message="the consumed message in /metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE push_messages_consumed_total counter" in answer.text
    for line in answer.text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2, line


# --- the test page ------------------------------------------------------------------------


async def test_test_page_is_served_with_csp_and_nothing_else_is(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory()
    base = f"{service.base_url}/web_push_test"

    page = await call(http, "GET", f"{base}/web_push_test.html")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert 'id="subscribe-btn"' in page.text
    for name in ("sw.js", "web_push_test.js"):
        script = await call(http, "GET", f"{base}/{name}")
        assert script.status == 200, name
        content_type = script.headers["Content-Type"].split(";")[0]
        assert content_type in ("text/javascript", "application/javascript"), name
        assert "use strict" in script.text
    style = await call(http, "GET", f"{base}/web_push_test.css")
    assert style.status == 200
    assert style.headers["Content-Type"].startswith("text/css")
    index = await call(http, "GET", f"{base}/")
    assert index.status in (301, 302, 307, 308)
    assert index.headers["Location"].endswith("/web_push_test/web_push_test.html")

    for path in (
        "/web_push_test/missing.html",
        "/web_push_test/__init__.py",
        "/web_push_test/..%2f..%2fsetup.cfg",
        "/web_push_test/..%2fsetup.cfg",
        "/web_push_test/%2e%2e/%2e%2e/setup.cfg",
        "/web_push_test/../setup.cfg",
        "/web_push_test/..%5c..%5csetup.cfg",
        "/web_push_test/web_push_test.html%00.py",
    ):
        answer = await call(http, "GET", URL(f"{service.base_url}{path}", encoded=True))
        assert answer.status == 404, f"{path}: {answer.status}"
        assert "[metadata]" not in answer.text and "import" not in answer.text, path


# --- the public port holds up -------------------------------------------------------------


async def test_a_trickling_body_is_cut_off_after_the_read_timeout(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(HTTP_READ_TIMEOUT_SECONDS="2")
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    try:
        started = time.monotonic()
        writer.write(
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        async with asyncio.timeout(60):
            answer = await reader.read()  # until the server closes the connection
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 ", answer
    assert b'"error":"request_timeout"' in rest
    # Cut off after the timeout (2 s), not at once and not much later; wide margin for a
    # busy machine.
    assert 1.5 <= elapsed < 20, elapsed


async def test_answers_carry_nosniff_and_a_fitting_cache_control(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory(MAX_REQUEST_BYTES="1024")
    base = service.base_url
    expected: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("GET", "/health", {}, 200, "no-store"),
        ("GET", "/ready", {}, 200, "no-store"),
        ("GET", "/vapid_public_key", {}, 200, "no-cache"),
        ("GET", "/openapi.json", {}, 200, "no-cache"),
        ("GET", "/asyncapi.json", {}, 200, "no-cache"),
        ("GET", "/notifications/unknown-id", {}, 404, "no-store"),
        ("GET", "/no/such/path", {}, 404, "no-store"),
        ("PUT", "/subscribe", {}, 405, "no-store"),
        ("POST", "/subscribe", {"json": {"endpoint": 1}}, 422, "no-store"),
        ("POST", "/subscribe", {"data": b"x" * 2000}, 413, "no-store"),
        ("GET", "/metrics", {}, 200, "no-store"),
    ]
    for method, path, kwargs, status, cache in expected:
        answer = await call(http, method, f"{base}{path}", **kwargs)
        assert answer.status == status, (path, answer.text)
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
        assert answer.headers["Cache-Control"] == cache, path
