"""The consumer end to end (real service process, RabbitMQ, Redis): reused notification
ids, dead letters that can be replayed faithfully, and parking only what must wait."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from push_service.consumer import message_key
from tests.conftest import ServiceFactory
from tests.push_fakes import push_service
from tests.support import (
    Rabbit,
    device_keys,
    final_record,
    stored_record,
    unique,
    wait_until,
)


def message(notification_id: str, endpoint: str, title: str, **extra: Any) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "user_id": "u1",
        "devices": [{"endpoint": endpoint, "keys": KEYS}],
        "title": title,
        "body": "b",
        **extra,
    }


KEYS = device_keys()


@pytest.mark.parametrize("order", ["new content first", "redelivery first"])
async def test_a_reused_id_with_new_content_is_dead_lettered_and_counted(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis, order: str
) -> None:
    """Rule: a message is the notification on record under its id when it carries the same
    content (redelivered, republished by a peer, or with more devices); a different one is
    refused visibly: dead-lettered with `duplicate_notification_id`, the record counts it."""
    async with push_service() as pushes:
        service = await service_factory()
        notification_id = unique("order")
        shipped = message(notification_id, pushes.endpoint("phone"), "Order shipped")
        delivered = message(notification_id, pushes.endpoint("phone"), "Order delivered")
        await rabbit.publish(service.queue, shipped)
        if order == "redelivery first":
            await rabbit.publish(service.queue, shipped)  # a peer publishing again
        await final_record(service.base_url, notification_id)
        await rabbit.publish(service.queue, delivered)

        async def dead_lettered() -> bool:
            return await rabbit.count(f"{service.queue}.dlq") == 1

        await wait_until(dead_lettered, 20, message="the second notification in the DLQ")
        dead = await rabbit.get(f"{service.queue}.dlq")

        async def counted() -> dict[str, Any] | None:
            # The DLQ copy is published first, the record written right after.
            record = await stored_record(redis_client, service.prefix, notification_id)
            return record if record.get("refused_messages") else None

        record = await wait_until(counted, 20, message="the refusal on record")

    assert dead is not None
    reason = str(dead.header.properties.headers["x-death-reason"])
    assert reason.startswith("duplicate_notification_id: ") and notification_id in reason
    assert b"Order delivered" in dead.body
    assert pushes.accepted == {"phone": 1}  # the first one, once
    assert (record["status"], record["sent"], record["refused_messages"]) == ("sent", 1, 1)
    assert record["last_refused_reason"].startswith("duplicate_notification_id")


async def test_a_dead_letter_keeps_the_original_properties(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    service = await service_factory()
    notification_id = unique("bad")
    stamp = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.UTC)
    body = {"notification_id": notification_id, "devices": [], "title": "t"}
    await rabbit.publish(
        service.queue,
        body,
        message_id="peer-42",
        content_type="application/vnd.peer+json",
        content_encoding="identity",
        timestamp=stamp,
        app_id="orders",
        headers={"x-tenant": "acme", "x-attempt": 1},
    )

    async def dead_lettered() -> bool:
        return await rabbit.count(f"{service.queue}.dlq") == 1

    await wait_until(dead_lettered, 20, message="the message in the DLQ")
    dead = await rabbit.get(f"{service.queue}.dlq")
    record = await final_record(service.base_url, notification_id)

    assert dead is not None
    properties = dead.header.properties
    assert (properties.message_id, properties.app_id) == ("peer-42", "orders")
    assert (properties.content_type, properties.content_encoding) == (
        "application/vnd.peer+json",
        "identity",
    )
    assert properties.timestamp == stamp and properties.delivery_mode == 2
    headers = properties.headers
    assert (headers["x-tenant"], headers["x-attempt"]) == ("acme", 1)
    assert str(headers["x-death-reason"]).startswith("invalid_devices")
    assert (headers["x-original-queue"], headers["x-notification-id"]) == (
        service.queue,
        notification_id,
    )
    assert (record["status"], record["sent"], record["failed"], record["devices_total"]) == (
        "failed",
        0,
        0,
        0,
    )


async def test_only_the_devices_to_retry_are_parked(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    """200 devices, 20 answer 429 with a long Retry-After: one parked copy with those 20.

    (429, not 503: twenty 503s in a row could rightly open the push service's circuit.)"""
    async with push_service() as pushes:
        endpoints = [pushes.endpoint(f"ok{i}") for i in range(180)]
        waiting = [pushes.script(f"wait{i}", (429, {"Retry-After": "600"})) for i in range(20)]
        service = await service_factory(PUSH_RETRY_LADDER_SECONDS="300")
        notification_id = unique("fan")
        devices = [{"endpoint": e, "keys": KEYS} for e in endpoints + waiting]
        big = message(notification_id, endpoints[0], "t", devices=devices)
        await rabbit.publish(service.queue, big)

        delay_queue = f"{service.queue}.delay.300s"

        async def parked() -> bool:
            return await rabbit.count(delay_queue) == 1

        await wait_until(parked, 30, message="one parked copy")
        copy = await rabbit.get(delay_queue)
        record = await stored_record(redis_client, service.prefix, notification_id)

    assert copy is not None
    parked_devices = orjson.loads(copy.body)["devices"]
    assert sorted(d["endpoint"] for d in parked_devices) == sorted(waiting)
    assert copy.header.properties.headers["x-push-parked"] == 1
    assert (record["status"], record["sent"], record["devices_total"]) == ("processing", 180, 200)
    retrying = [d for d in record["devices"] if d["status"] == "retrying"]
    assert len(retrying) == 20
    assert {d["reason"] for d in retrying} == {"retry_after"}
    assert {d["last_error"] for d in retrying} == {"HTTP 429"}
    assert all(d["attempts"] == 1 and d["next_attempt_at"] for d in retrying)


def delivered(body: bytes, **properties: Any) -> DeliveredMessage:
    header = ContentHeader(body_size=len(body), properties=spec.Basic.Properties(**properties))
    return DeliveredMessage(spec.Basic.Deliver(), header, body, None)  # type: ignore[arg-type]


def test_a_message_is_known_by_its_id_else_by_its_body() -> None:
    assert message_key(delivered(b"{}", message_id="m-1")) == "m-1"
    assert message_key(delivered(b"{}")) == message_key(delivered(b"{}"))
    assert message_key(delivered(b"{}")) != message_key(delivered(b"{ }"))
    assert len(message_key(delivered(b"{}", message_id="x" * 500))) == 128


def test_a_replayed_dead_letter_counts_its_deliveries_afresh() -> None:
    """Given up after too many deliveries, fixed and replayed: it gets its own tries."""
    first = message_key(delivered(b"{}", message_id="m-1"))
    replayed = message_key(delivered(b"{}", message_id="m-1", headers={"x-replay-count": 1}))
    again = message_key(delivered(b"{}", message_id="m-1", headers={"x-replay-count": 2}))
    assert len({first, replayed, again}) == 3
