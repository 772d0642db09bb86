"""The pieces of an audience without the service: the message model's audience rules, the
fan-out state of a record (real Redis), and the completion event of a large fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from push_service.endpoints import EndpointPolicy
from push_service.errors import ValidationError
from push_service.models import AudienceRef, parse_notification
from push_service.status import DeviceOutcome, StatusStore
from push_service.status.fanout import FanoutLedger
from tests.support import status_store, unique

POLICY = EndpointPolicy(("push.example.com",), False)


def parse(**fields: Any) -> Any:
    body = {"notification_id": "n1", "title": "t", **fields}
    return parse_notification(orjson.dumps(body), POLICY)


def test_an_audience_names_one_user_or_one_topic() -> None:
    assert parse(audience={"topic": "news"}).audience == AudienceRef(topic="news")
    by_user = parse(audience={"user_id": 42})
    assert by_user.audience == AudienceRef(user_id="42") and by_user.devices == ()
    assert parse(audience={"topic": "news"}).audience.describe() == "topic:news"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"audience": {"topic": "t"}, "devices": ["x"]}, "devices_and_audience"),
        ({}, "invalid_devices"),
        ({"audience": {}}, "invalid_audience"),
        ({"audience": {"topic": "t", "user_id": "u"}}, "invalid_audience"),
        ({"audience": {"topic": "a+b"}}, "invalid_audience"),
        ({"audience": "news"}, "invalid_audience"),
    ],
)
def test_bad_audiences_are_refused_with_a_reason(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse(**fields)
    assert refused.value.code == code


@pytest.fixture
async def store() -> AsyncIterator[StatusStore]:
    async with status_store("test-fanout", 600) as made:
        yield made


def outcome(device: str, status: str = "sent") -> DeviceOutcome:
    return DeviceOutcome(device, f"https://push.example.com/{device}", status, 201, None, 1)


async def test_a_record_stays_processing_until_the_last_chunk_is_counted(
    store: StatusStore,
) -> None:
    ledger = FanoutLedger(store)
    await store.begin("n", None, 0, fingerprint="f", deadline=2e9)
    assert await ledger.start("n", "topic:t") == ("resolving", "")
    assert (await ledger.step("n", "", "d2", 2)).status == "processing"
    # Both devices of the first chunk done before the second chunk is counted.
    assert await store.record("n", [outcome("d1"), outcome("d2", "failed")]) == "processing"
    assert (await ledger.step("n", "d2", "d3", 1)).taken
    assert await store.record("n", [outcome("d3")]) == "processing"  # still resolving
    last = await ledger.step("n", "d3", None, 0)
    assert (last.taken, last.status) == (True, "sent")
    record = await store.get("n")
    assert record is not None
    assert (record["devices_total"], record["sent"], record["failed"]) == (3, 2, 1)
    assert (record["fanout"], record["fanout_chunks"], record["audience"]) == ("done", 2, "topic:t")
    assert await ledger.start("n", "topic:t") == ("done", "")  # a redelivery does nothing


async def test_a_step_from_a_stale_cursor_is_not_counted(store: StatusStore) -> None:
    ledger = FanoutLedger(store)
    await store.begin("n", None, 0, fingerprint="f", deadline=2e9)
    await ledger.start("n", "user:u")
    assert (await ledger.step("n", "", "d5", 5)).taken
    assert (await ledger.step("n", "", "d5", 5)).taken  # the same call again: counted once
    assert not (await ledger.step("n", "", "d7", 7)).taken  # another resolver, behind
    assert await ledger.start("n", "user:u") == ("resolving", "d5")  # resume here
    record = await store.get("n")
    assert record is not None and record["devices_total"] == 5


async def test_an_empty_audience_fails_with_its_reason(store: StatusStore) -> None:
    ledger = FanoutLedger(store)
    await store.begin("n", None, 0, fingerprint="f", deadline=2e9)
    await ledger.start("n", "topic:nobody")
    step = await ledger.step("n", "", None, 0)
    assert (step.taken, step.status) == (True, "failed")
    record = await store.get("n")
    assert record is not None and record["reason"] == "empty_audience"
    assert record["completed_at"]


async def test_a_batch_with_an_unloaded_script_runs_every_other_call_once(
    store: StatusStore,
) -> None:
    """A script Redis does not know yet (NOSCRIPT) is loaded and its calls sent again;
    the calls of the same batch that did run must not run a second time."""
    count = "redis.call('HINCRBY', KEYS[1], 'calls', 1) return 1"
    counter = store.register(count)
    await store.run(counter, "c", [])  # loaded now
    fresh = store.register(f"{count} -- {unique('fresh')}")  # never loaded

    await asyncio.gather(store.run(counter, "c", []), store.run(fresh, "d", []))

    assert await store.client.hget(store.key("c"), "calls") == "2"
    assert await store.client.hget(store.key("d"), "calls") == "1"


async def test_an_audience_given_up_part_way_still_ends_with_its_chunks(
    store: StatusStore,
) -> None:
    ledger = FanoutLedger(store)
    await store.begin("n", None, 0, fingerprint="f", deadline=2e9)
    await ledger.start("n", "topic:t")
    await ledger.step("n", "", "d1", 1)
    await store.fail("n", "too_many_deliveries: delivered 6 times", refused=False)

    assert await store.record("n", [outcome("d1")]) == "sent"
    record = await store.get("n")
    assert record is not None and record["fanout"] == "abandoned"
