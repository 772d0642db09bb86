"""Dead letters against the real RabbitMQ and Redis: the DLQ copy is the message as it came.

A fixed message must be replayable from the DLQ as the publisher sent it, so the copy
keeps body, properties and headers (but not `user_id`: RabbitMQ refuses a message
whose user_id is not the publishing user's). The status record says why.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest
from aiormq.abc import DeliveredMessage

from push_service.dead_letters import DeadLetters
from push_service.metrics import Metrics
from push_service.status import DeviceOutcome, StatusStore
from push_service.topology import Topology, declare_topology
from tests.support import Rabbit, status_store, unique, wait_until

T = TypeVar("T")
PUBLISHED = datetime.datetime(2027, 1, 15, 8, 0, tzinfo=datetime.UTC)
PUBLISHER: dict[str, Any] = {
    "content_type": "application/json; charset=utf-8",
    "content_encoding": "utf-8",
    "headers": {"x-tenant": "t1", "x-trace": 7, "x-sent-at": PUBLISHED},
    "priority": 3,
    "correlation_id": "corr-1",
    "reply_to": "replies",
    "message_id": "peer-message-1",
    "timestamp": PUBLISHED,
    "message_type": "notification",
    "app_id": "peer-app",
    "user_id": "guest",  # the publishing user: the broker checks it
    "expiration": "60000",
}


async def directly(operation: Callable[[], Awaitable[T]]) -> T:
    return await operation()


@dataclass
class Rig:
    rabbit: Rabbit
    topology: Topology
    store: StatusStore
    metrics: Metrics
    dead_letters: DeadLetters

    @property
    def queue(self) -> str:
        return self.topology.queue

    async def delivered(self, body: dict[str, Any] | bytes, **properties: Any) -> DeliveredMessage:
        """A message as the consumer gets it, from the main queue."""
        await self.rabbit.publish(self.queue, body, **properties)
        message: DeliveredMessage = await wait_until(
            lambda: self.rabbit.get(self.queue), 10, interval=0.01, message="the message"
        )
        return message

    async def dead_letter(self) -> DeliveredMessage:
        message = await self.rabbit.get(self.topology.dead_letter_queue)
        assert message is not None, "nothing in the DLQ"
        assert await self.rabbit.get(self.topology.dead_letter_queue) is None
        return message

    async def record(self, notification_id: str) -> dict[str, Any]:
        record = await self.store.get(notification_id)
        assert record is not None, f"no record for {notification_id}"
        return record


@pytest.fixture
async def rig(rabbit: Rabbit) -> AsyncIterator[Rig]:
    topology = Topology(unique("test.dead-letters"))
    await declare_topology(rabbit.connection, topology)
    metrics = Metrics()
    try:
        async with status_store("test-dead-letters", ttl=600) as store:
            dead_letters = DeadLetters(
                topology, store, directly, metrics, timeout=10.0, max_message_bytes=1024 * 1024
            )
            yield Rig(rabbit, topology, store, metrics, dead_letters)
    finally:
        await rabbit.delete(topology.queue, topology.dead_letter_queue)


def invalid_message(endpoints: list[str], notification_id: str | None = None) -> dict[str, Any]:
    """A notification without a title: refused by validation, with an id and devices."""
    return {
        "notification_id": notification_id or unique("n"),
        "user_id": "user-1",
        "body": "World",
        "devices": [{"endpoint": e, "keys": {"p256dh": "P", "auth": "A"}} for e in endpoints],
    }


async def test_the_dlq_copy_keeps_body_properties_and_headers_and_adds_the_reason(
    rig: Rig,
) -> None:
    message = invalid_message(["https://push.example.net/a"])
    original = await rig.delivered(message, **PUBLISHER)

    await rig.dead_letters.send(original, "invalid_title", "title is required")

    copy = await rig.dead_letter()
    assert copy.body == orjson.dumps(message)
    sent, kept = PUBLISHER, copy.header.properties
    for name in ("content_type", "content_encoding", "priority", "correlation_id", "reply_to"):
        assert getattr(kept, name) == sent[name], name
    for name in ("message_id", "timestamp", "message_type", "app_id"):
        assert getattr(kept, name) == sent[name], name
    assert kept.delivery_mode == 2
    assert kept.headers == {
        **sent["headers"],
        "x-death-reason": "invalid_title: title is required",
        "x-original-queue": rig.queue,
        "x-notification-id": message["notification_id"],
    }
    # Not copied: a user_id is checked against the publishing user (a peer's would be
    # refused), and a dead letter waits for an operator however long that takes.
    assert (kept.user_id, kept.expiration) == (None, None)
    assert rig.metrics.dead_lettered.value(reason="invalid_title") == 1
    assert rig.metrics.messages.value(result="dead_lettered") == 1


async def test_the_status_record_of_a_refused_message_is_complete(rig: Rig) -> None:
    endpoints = ["https://push.example.net/a", "https://push.example.net/b"]
    message = invalid_message(endpoints)
    # Repeated and broken entries count once, or not at all.
    message["devices"] += [message["devices"][0], {"endpoint": 7}, "not-a-device", {}]
    original = await rig.delivered(message)

    await rig.dead_letters.send(original, "invalid_title", "title is required")

    record = await rig.record(message["notification_id"])
    assert (record["status"], record["reason"]) == ("failed", "invalid_title: title is required")
    assert (record["devices_total"], record["sent"], record["failed"]) == (2, 0, 2)
    assert record["notification_id"] == message["notification_id"]
    assert record["completed_at"] is not None
    assert sorted(d["endpoint"] for d in record["devices"]) == endpoints
    for device in record["devices"]:
        assert (device["status"], device["reason"], device["attempts"]) == (
            "failed",
            "invalid_title",
            0,
        )
        assert device["detail"] == "title is required"


async def test_a_different_message_under_a_used_id_leaves_the_original_record_alone(
    rig: Rig,
) -> None:
    notification_id = unique("n")
    endpoint = "https://push.example.net/a"
    await rig.store.begin(
        notification_id, "user-1", 1, fingerprint="fp-original", deadline=time.time() + 600
    )
    await rig.store.record(
        notification_id, [DeviceOutcome("dev-a", endpoint, "sent", 201, None, 1)]
    )
    before = await rig.record(notification_id)
    duplicate = await rig.delivered(
        invalid_message(["https://push.example.net/b"], notification_id)
    )

    await rig.dead_letters.send(duplicate, "duplicate_notification_id", "id in use")

    after = await rig.record(notification_id)
    assert after["refused_messages"] == 1
    assert after["last_refused_reason"] == "duplicate_notification_id: id in use"
    unchanged = ("status", "sent", "failed", "devices_total", "devices", "completed_at")
    assert {k: after.get(k) for k in unchanged} == {k: before.get(k) for k in unchanged}
    assert "reason" not in after
    copy = await rig.dead_letter()
    assert copy.header.properties.headers["x-notification-id"] == notification_id


async def test_an_abandoned_notification_ends_with_the_reason(rig: Rig) -> None:
    notification_id = unique("n")
    await rig.store.begin(notification_id, "user-1", 2, fingerprint="fp", deadline=time.time() + 60)
    message = await rig.delivered(invalid_message(["https://push.example.net/a"], notification_id))

    await rig.dead_letters.send(
        message, "too_many_deliveries", "delivered 6 times without finishing", refused=False
    )

    record = await rig.record(notification_id)
    assert (record["status"], record["reason"]) == (
        "failed",
        "too_many_deliveries: delivered 6 times without finishing",
    )
    assert record["completed_at"] is not None
    assert "refused_messages" not in record


async def test_a_message_without_an_id_is_dead_lettered_without_a_record(rig: Rig) -> None:
    original = await rig.delivered(b"{not json", message_id="m-1")

    await rig.dead_letters.send(original, "invalid_json", "body is not valid JSON")

    copy = await rig.dead_letter()
    assert copy.body == b"{not json"
    assert copy.header.properties.message_id == "m-1"
    assert "x-notification-id" not in (copy.header.properties.headers or {})
    keys = [k async for k in rig.store.client.scan_iter(match=f"{rig.store.prefix}*")]
    assert keys == []


async def test_a_message_over_the_size_limit_is_recorded_without_its_devices(rig: Rig) -> None:
    rig.dead_letters.max_message_bytes = 200
    message = invalid_message([f"https://push.example.net/{i}" for i in range(10)])
    original = await rig.delivered(message)

    await rig.dead_letters.send(original, "message_too_large", "too large")

    record = await rig.record(message["notification_id"])
    assert (record["status"], record["devices_total"], record["devices"]) == ("failed", 0, [])
    assert (await rig.dead_letter()).body == orjson.dumps(message)


async def test_a_large_message_has_all_its_devices_recorded(rig: Rig) -> None:
    endpoints = [f"https://push.example.net/{i:05d}/{'x' * 100}" for i in range(1000)]
    message = invalid_message(endpoints)
    original = await rig.delivered(message)
    assert len(original.body) > 64 * 1024  # read off the event loop

    await rig.dead_letters.send(original, "invalid_title", "title is required")

    record = await rig.record(message["notification_id"])
    assert (record["devices_total"], record["failed"]) == (1000, 1000)
    assert {d["endpoint"] for d in record["devices"]} == set(endpoints)


async def test_a_deleted_dlq_is_declared_again(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="push_service.dead_letters")
    await rig.rabbit.delete(rig.topology.dead_letter_queue)
    original = await rig.delivered(invalid_message(["https://push.example.net/a"]))

    await rig.dead_letters.send(original, "invalid_title", "title is required")

    assert await rig.rabbit.count(rig.topology.dead_letter_queue) == 1
    assert any("is missing" in r.getMessage() for r in caplog.records)
