"""Scheduled sends, cancelling and receipts, end to end (issue 24): a real service
process, RabbitMQ, Redis, a push sink and web-push-testing."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from push_service.deadline import from_iso
from push_service.receipts import Receipts
from tests.conftest import ServiceFactory
from tests.event_listener import event_listener
from tests.support import (
    PushServer,
    Rabbit,
    VapidPair,
    assert_error,
    call,
    device_keys,
    final_record,
    notification_record,
    push_sink,
    unique,
    wait_until,
)

AUTH: dict[str, str] = {}  # development without API_TOKENS: the peer endpoints are open
SECRET = "receipts-secret-for-tests-0123456789abcdef"


def message(notification_id: str, devices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"notification_id": notification_id, "devices": devices, "title": "Hi", **extra}


def sink_device(endpoint: str) -> dict[str, Any]:
    return {"endpoint": endpoint, "keys": device_keys()}


async def publish(http: aiohttp.ClientSession, base_url: str, body: dict[str, Any]) -> int:
    answer = await call(http, "POST", f"{base_url}/notifications", json=body, headers=AUTH)
    assert answer.status in (202, 422), answer.text
    return answer.status


async def test_scheduled_message_waits_in_rabbitmq_and_is_sent_just_after_send_at(
    service_factory: ServiceFactory, http: aiohttp.ClientSession, rabbit: Rabbit
) -> None:
    service = await service_factory()
    async with push_sink() as sink:
        notification_id = unique("sched")
        send_at = time.time() + 4
        body = message(notification_id, [sink_device(sink.endpoint("a"))], ttl=60)
        body["send_at"] = send_at
        assert await publish(http, service.base_url, body) == 202

        async def scheduled() -> dict[str, Any] | None:
            record = await notification_record(service.base_url, notification_id)
            return record if record and record["status"] == "scheduled" else None

        record = await wait_until(scheduled, 10, message="the record to read scheduled")
        assert abs(from_iso(record["send_at"]) - send_at) < 0.01
        assert sink.total == 0
        record = await final_record(service.base_url, notification_id, 15)
        sent_at = from_iso(record["devices"][0]["at"])
        assert send_at <= sent_at < send_at + 5, sent_at - send_at
        assert sink.hits == {"a": 1}
        # The TTL counts from send_at, not from the publish.
        assert abs(from_iso(record["deadline"]) - (send_at + 60)) <= 1.5
    await service.stop()
    assert await rabbit.count(service.queue) == 0


async def test_send_at_out_of_bounds_is_refused_over_http_and_from_the_queue(
    service_factory: ServiceFactory, http: aiohttp.ClientSession, rabbit: Rabbit
) -> None:
    service = await service_factory(SCHEDULE_MAX_DAYS="1")
    device = sink_device("http://127.0.0.1:9/push/x")
    for send_at in (time.time() + 2 * 86400, time.time() - 120, "2030-01-01T00:00:00", "soon"):
        body = message(unique("bad"), [device], send_at=send_at)
        answer = await call(
            http, "POST", f"{service.base_url}/notifications", json=body, headers=AUTH
        )
        assert_error(answer, 422, "invalid_send_at", str(send_at))
    notification_id = unique("bad")
    await rabbit.publish(
        service.queue, message(notification_id, [device], send_at=time.time() + 3 * 86400)
    )
    record = await final_record(service.base_url, notification_id)
    assert record["status"] == "failed"
    assert record["reason"].startswith("invalid_send_at: send_at is more than 1 days ahead")

    async def dead_lettered() -> bool:
        return await rabbit.count(f"{service.queue}.dlq") == 1

    await wait_until(dead_lettered, 10, message="the message in the DLQ")


async def test_cancel_a_scheduled_notification_pushes_nothing(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory()
    url = f"{service.base_url}/notifications"
    async with push_sink() as sink:
        notification_id = unique("cancel")
        devices = [sink_device(sink.endpoint("a")), sink_device(sink.endpoint("b"))]
        body = message(notification_id, devices, send_at=time.time() + 3)
        assert await publish(http, service.base_url, body) == 202

        async def known() -> bool:
            return await notification_record(service.base_url, notification_id) is not None

        await wait_until(known, 10)
        answer = await call(http, "DELETE", f"{url}/{notification_id}", headers=AUTH)
        assert answer.status == 200, answer.text
        assert answer.json["status"] == "cancelled"
        assert answer.json["cancelled"] == 2 and answer.json["devices_total"] == 2

        async def devices_recorded() -> dict[str, Any] | None:
            record = await notification_record(service.base_url, notification_id)
            return record if record and len(record["devices"]) == 2 else None

        record = await wait_until(devices_recorded, 15, message="the cancelled devices")
        assert {d["status"] for d in record["devices"]} == {"cancelled"}
        assert record["status"] == "cancelled" and record["cancelled"] == 2
        assert record["sent"] == 0 and record["failed"] == 0
        assert sink.total == 0
        again = await call(http, "DELETE", f"{url}/{notification_id}", headers=AUTH)
        assert again.status == 409, again.text
        unknown = await call(http, "DELETE", f"{url}/{unique('nope')}", headers=AUTH)
        assert_error(unknown, 404, "not_found")


async def test_cancel_after_the_push_is_a_conflict(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory()
    async with push_sink() as sink:
        notification_id = unique("late")
        body = message(notification_id, [sink_device(sink.endpoint("a"))])
        assert await publish(http, service.base_url, body) == 202
        await final_record(service.base_url, notification_id)
        url = f"{service.base_url}/notifications/{notification_id}"
        answer = await call(http, "DELETE", url, headers=AUTH)
        assert answer.status == 409, answer.text
        assert answer.json["sent"] == 1 and answer.json["cancelled"] == 0


async def test_receipts_are_counted_once_per_device_and_announced(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    exchange = unique("events")
    async with event_listener(exchange) as listener:
        service = await service_factory(RECEIPTS_SECRET=SECRET, EVENTS_EXCHANGE=exchange)
        subscription, client_hash = await pushserver.subscribe(vapid.public)
        notification_id = unique("rcpt")
        assert (
            await publish(http, service.base_url, message(notification_id, [subscription])) == 202
        )
        record = await final_record(service.base_url, notification_id)
        device = record["devices"][0]["device"]
        [payload] = await pushserver.messages(client_hash, receipts=True)
        receipts = Receipts(SECRET.encode())
        assert payload["receipt"] == receipts.url(notification_id, device)
        receipt_url = service.base_url + payload["receipt"]

        async def post(url: str, event: str, **headers: str) -> int:
            answer = await call(http, "POST", url, json={"event": event}, headers=headers)
            return answer.status

        assert await post(receipt_url, "delivered") == 200
        assert await post(receipt_url, "delivered") == 404  # a replay changes nothing
        assert await post(receipt_url, "clicked", Cookie="session=x") == 200
        forged = receipt_url[:-4] + ("AAAA" if not receipt_url.endswith("AAAA") else "BBBB")
        assert await post(forged, "closed") == 404
        other = service.base_url + Receipts(b"another secret").url(notification_id, device)
        assert await post(other, "closed") == 404
        bad = await call(http, "POST", receipt_url, data=b"{}")
        assert_error(bad, 422, "invalid_event")

        record = await final_record(service.base_url, notification_id)
        assert record["delivered"] == 1 and record["clicked"] == 1 and "closed" not in record
        seen = record["devices"][0]["receipts"]
        assert set(seen) == {"delivered_at", "clicked_at"}
        [delivered] = await listener.wait_for("notification.delivered")
        [clicked] = await listener.wait_for("notification.clicked")
        for event in (delivered, clicked):
            assert event["notification_id"] == notification_id and event["device"] == device
        assert delivered["event_id"] == f"notification.delivered:{notification_id}:{device}"
