"""The internal notification endpoints (push_service.api.notifications): POST /notifications
publishes to the real broker and web-push-testing receives it; the status answer shows
devices by origin only."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis

from push_service.api.notifications import public_record, status_path
from tests.conftest import ServiceFactory
from tests.support import (
    Answer,
    PushServer,
    Rabbit,
    Service,
    VapidPair,
    assert_error,
    call,
    device_keys,
    free_port,
    push_sink,
    unique,
    wait_until,
)

TOKEN = "peer-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def notification(notification_id: str, subscription: dict[str, Any]) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "user_id": "user-7",
        "devices": [subscription],
        "title": "Over HTTP",
        "body": "published with a token",
        "action_url": "https://example.com/orders/7",
    }


async def publish(
    http: aiohttp.ClientSession, service: Service, body: Any, **kwargs: Any
) -> Answer:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": "application/json", **AUTH, **kwargs.pop("headers", {})}
    return await call(
        http, "POST", f"{service.base_url}/notifications", data=data, headers=headers, **kwargs
    )


async def final_status(http: aiohttp.ClientSession, service: Service, path: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        answer = await call(http, "GET", f"{service.base_url}{path}", headers=AUTH)
        if answer.status != 200:
            return None
        record: dict[str, Any] = answer.json
        return record if record["status"] in ("sent", "failed") else None

    result: dict[str, Any] = await wait_until(done, message=f"{path} to finish")
    return result


@pytest.mark.e2e
async def test_published_notification_is_delivered_once_and_reads_sent(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    service = await service_factory(API_TOKENS=TOKEN, CONSUMER_PREFETCH="1")
    subscription, client_hash = await pushserver.subscribe(vapid.public)
    notification_id = unique("http/order:7")
    message = notification(notification_id, subscription)

    first = await publish(http, service, message)
    again = await publish(http, service, message)  # a peer's retry after a lost answer

    for answer in (first, again):
        assert answer.status == 202, answer.text
        assert answer.json == {
            "notification_id": notification_id,
            "status_url": status_path(notification_id),
        }
        assert answer.headers["Location"] == answer.json["status_url"]
        assert answer.headers["Cache-Control"] == "no-store"
    record = await final_status(http, service, first.json["status_url"])
    assert record["status"] == "sent"
    assert record["user_id"] == "user-7"
    assert record["user_verified"] is True  # a peer's message
    assert record["sent"] == 1 and record["devices_total"] == 1
    [device] = record["devices"]
    assert "endpoint" not in device
    assert device["origin"] == pushserver.base_url
    assert subscription["endpoint"] not in orjson.dumps(record).decode()

    async def both_consumed() -> bool:
        metrics = await call(http, "GET", f"{service.base_url}/metrics", headers=AUTH)
        return 'push_messages_consumed_total{result="sent"} 2' in metrics.text

    await wait_until(both_consumed, message="both messages consumed")
    received = await pushserver.messages(client_hash)
    assert [m["notification_id"] for m in received] == [notification_id]
    assert received[0]["title"] == "Over HTTP"


@pytest.mark.e2e
async def test_invalid_messages_are_refused_and_nothing_is_published(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    rabbit: Rabbit,
    redis_client: redis.Redis,
) -> None:
    # Prefetch 1: anything published before the final valid message would be handled
    # (and recorded in Redis, or dead-lettered) before it.
    service = await service_factory(
        API_TOKENS=TOKEN,
        CONSUMER_PREFETCH="1",
        MAX_NOTIFICATION_REQUEST_BYTES="2048",
        MAX_DEVICES_PER_MESSAGE="2",
    )
    async with push_sink() as sink:
        device = {"endpoint": sink.endpoint("x"), "keys": device_keys()}
        good = {"notification_id": unique("n"), "devices": [device], "title": "t"}
        for what, body, code in [
            ("no devices", {**good, "devices": []}, "invalid_devices"),
            ("too many devices", {**good, "devices": [device] * 3}, "too_many_devices"),
            ("no title", {k: v for k, v in good.items() if k != "title"}, "missing_field"),
            ("bad id", {**good, "notification_id": "a b"}, "invalid_notification_id"),
            ("bad ttl", {**good, "ttl": -1}, "invalid_ttl"),
            ("bad urgency", {**good, "urgency": "now"}, "invalid_urgency"),
            ("bad action_url", {**good, "action_url": "javascript:alert(1)"}, "invalid_field"),
        ]:
            assert_error(await publish(http, service, body), 422, code, what)
        assert_error(await publish(http, service, b'{"notification_id": '), 400, "invalid_json")
        assert_error(await publish(http, service, b"[]"), 400, "invalid_json")
        too_large = {**good, "body": "x" * 3000}
        assert_error(await publish(http, service, too_large), 413, "request_too_large")
        text = await call(
            http,
            "POST",
            f"{service.base_url}/notifications",
            data=orjson.dumps(good),
            headers={"Content-Type": "text/plain", **AUTH},
        )
        assert_error(text, 415, "unsupported_media_type")

        accepted = await publish(http, service, good)
        assert accepted.status == 202, accepted.text
        assert (await final_status(http, service, accepted.json["status_url"]))["status"] == "sent"
    keys = [k async for k in redis_client.scan_iter(match=f"{service.prefix}notification:*")]
    assert keys == [f"{service.prefix}notification:{good['notification_id']}"]
    assert await rabbit.count(f"{service.queue}.dlq") == 0
    assert sink.total == 1


@pytest.mark.e2e
async def test_broker_down_is_503_promptly(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    closed = free_port()
    service = await service_factory(
        wait=False, API_TOKENS=TOKEN, RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{closed}/"
    )

    async def health() -> bool:
        try:
            return (await call(http, "GET", f"{service.base_url}/health")).status == 200
        except aiohttp.ClientError:
            return False

    await wait_until(health, 30, message="/health")
    message = {
        "notification_id": unique("n"),
        "devices": [{"endpoint": "http://127.0.0.1:9/push/x", "keys": device_keys()}],
        "title": "t",
    }
    answer = await publish(http, service, message)
    assert_error(answer, 503, "broker_unavailable")
    assert int(answer.headers["Retry-After"]) > 0


def test_public_record_replaces_endpoints_by_origins_and_keeps_other_fields() -> None:
    record = {
        "notification_id": "n1",
        "status": "processing",
        "future_field": {"kept": True},
        "devices": [
            {
                "device": "abc",
                "endpoint": "https://user:pw@fcm.googleapis.com:443/fcm/send/secret-token",
                "status": "retrying",
                "attempts": 2,
                "next_attempt_at": "2026-01-01T00:00:00Z",
                "last_error": "HTTP 503",
            },
            {"device": "def", "endpoint": "http://[::1]:8080/push/x", "status": "sent"},
            {"device": "ghi", "endpoint": "devices[3]", "status": "failed"},
            {"device": "jkl", "status": "failed"},
        ],
    }

    shown = public_record(record)

    assert shown["future_field"] == {"kept": True}
    assert [d.get("origin") for d in shown["devices"]] == [
        "https://fcm.googleapis.com",
        "http://[::1]:8080",
        None,
        None,
    ]
    assert shown["devices"][0] == {
        "device": "abc",
        "origin": "https://fcm.googleapis.com",
        "status": "retrying",
        "attempts": 2,
        "next_attempt_at": "2026-01-01T00:00:00Z",
        "last_error": "HTTP 503",
    }
    assert "secret-token" not in orjson.dumps(shown).decode()
    assert all("endpoint" not in d for d in shown["devices"])
    assert record["devices"][0]["endpoint"].endswith("secret-token")  # the input is untouched


def test_status_path_keeps_the_id_readable_and_safe() -> None:
    assert status_path("order:7/a+b=c@x") == "/notifications/order:7/a+b=c@x"
    assert status_path("a?b#c") == "/notifications/a%3Fb%23c"
