"""`notification.completed`: from a delivery that did every device in one go (no Redis
read) or from the record, the devices listed up to MAX_LISTED_DEVICES, counts alone
beyond."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from push_service.api.event_schemas import event_schemas
from push_service.endpoints import EndpointPolicy
from push_service.lifecycle.completion import MAX_LISTED_DEVICES, Completion
from push_service.models import Notification, parse_notification
from push_service.status import DeviceOutcome, StatusStore
from push_service.status.fanout import FanoutLedger
from tests.support import device_keys, status_store

POLICY = EndpointPolicy(("push.example.com",), False)


class Unread:
    """A status store that must not be read: the delivery knows every outcome."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used: {name}")


def notification() -> Notification:
    body = {"notification_id": "n1", "title": "t", "devices": [
        {"endpoint": "https://push.example.com/x", "keys": device_keys()}]}  # fmt: skip
    return parse_notification(orjson.dumps(body), POLICY)


def outcomes(count: int) -> list[DeviceOutcome]:
    return [
        DeviceOutcome(f"d{i}", f"https://push.example.com/{i}", "failed" if i % 4 else "sent",
                      201, None if i % 4 == 0 else "gone", 1)
        for i in range(count)
    ]  # fmt: skip


async def told(store: StatusStore, told_outcomes: list[DeviceOutcome], whole: bool) -> Any:
    """The one event body `completed` emits."""
    emitted: list[dict[str, Any]] = []

    async def emit(event: str, body: dict[str, Any], **_: Any) -> None:
        emitted.append(body)

    await Completion(store, emit).completed(notification(), "sent", told_outcomes, whole)
    (body,) = emitted
    return body


async def told_whole(count: int) -> Any:
    return await told(Unread(), outcomes(count), True)  # type: ignore[arg-type]


async def test_a_whole_delivery_lists_its_devices_by_origin() -> None:
    body = await told_whole(4)
    assert body["counts"] == {"devices_total": 4, "sent": 1, "failed": 3, "cancelled": 0}
    assert body["devices"][0] == {
        "device": "d0", "origin": "https://push.example.com", "status": "sent", "reason": None,
    }  # fmt: skip
    assert "devices_omitted" not in body


@pytest.mark.parametrize("count", [MAX_LISTED_DEVICES + 1, 10_000])
async def test_a_large_whole_delivery_is_told_by_its_counts_alone(count: int) -> None:
    body = await told_whole(count)
    assert body["devices"] == [] and body["devices_omitted"] == count
    sent = (count + 3) // 4
    assert body["counts"] == {
        "devices_total": count, "sent": sent, "failed": count - sent, "cancelled": 0,
    }  # fmt: skip


@pytest.fixture
async def store() -> AsyncIterator[StatusStore]:
    async with status_store("test-completion", 600) as made:
        yield made


async def test_completion_of_a_large_fanout_tells_counts_without_the_devices(
    store: StatusStore,
) -> None:
    ledger = FanoutLedger(store)
    await store.begin("n1", None, 0, fingerprint="f", deadline=2e9)
    await ledger.start("n1", "topic:t")
    await ledger.step("n1", "", None, 1001)
    await store.record("n1", [DeviceOutcome(f"d{i}", f"https://push.example.com/d{i}", "sent",
                                            201, None, 1) for i in range(1001)])  # fmt: skip

    event = await told(store, [], False)

    assert event["devices"] == [] and event["devices_omitted"] == 1001
    assert event["counts"] == {"devices_total": 1001, "sent": 1001, "failed": 0}
    schema = event_schemas()["notification.completed"]
    assert "devices_omitted" in schema["properties"]
