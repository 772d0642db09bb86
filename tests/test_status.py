"""The status store against the real Redis: transitions never move backwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.exceptions import ResponseError

from push_service.errors import DuplicateNotification
from push_service.redis_client import MAX_CONNECTIONS, connect
from push_service.status import (
    DeviceOutcome,
    DeviceRetry,
    RedisUnavailable,
    StatusStore,
    scripts,
    to_record,
)
from tests.support import REDIS_URL, free_port, status_store, unique

TTL = 3600


@pytest.fixture
async def store() -> AsyncIterator[StatusStore]:
    async with status_store("test-status", ttl=TTL) as store:
        yield store


async def begin(
    store: StatusStore,
    notification_id: str,
    user_id: str | None = "u",
    total: int = 1,
    fingerprint: str = "fp-1",
    deadline: float | None = None,
) -> set[str]:
    """`StatusStore.begin` for one notification; returns the devices already done."""
    begun = await store.begin(
        notification_id,
        user_id,
        total,
        fingerprint=fingerprint,
        deadline=time.time() + 3600 if deadline is None else deadline,
    )
    return set(begun.done)


def sent(device: str, attempts: int = 1) -> DeviceOutcome:
    return DeviceOutcome(device, f"https://push.example/{device}", "sent", 201, None, attempts)


def failed(device: str, reason: str = "subscription_gone") -> DeviceOutcome:
    return DeviceOutcome(
        device, f"https://push.example/{device}", "failed", 410, reason, 1, detail="HTTP 410"
    )


async def test_begin_creates_a_processing_record(store: StatusStore) -> None:
    assert await begin(store, "n1", "user-1", 2) == set()
    record = await store.get("n1")
    assert record is not None
    assert record["status"] == "processing"
    assert record["notification_id"] == "n1"
    assert record["user_id"] == "user-1"
    assert (record["devices_total"], record["sent"], record["failed"]) == (2, 0, 0)
    assert record["created_at"].endswith("Z") and record["updated_at"] == record["created_at"]
    assert record["devices"] == []
    assert "completed_at" not in record


async def test_unknown_notification_is_none(store: StatusStore) -> None:
    assert await store.get("never-seen") is None


async def test_status_is_derived_from_the_counts(store: StatusStore) -> None:
    await begin(store, "n2", None, 3)
    assert await store.record("n2", [sent("a")]) == "processing"  # work still under way
    assert await store.record("n2", [failed("b")]) == "processing"
    assert await store.record("n2", [failed("c")]) == "sent"  # one accepted: sent
    record = await store.get("n2")
    assert record is not None
    assert (record["status"], record["sent"], record["failed"]) == ("sent", 1, 2)
    assert record["user_id"] is None
    assert record["completed_at"]


async def test_all_failed_is_failed(store: StatusStore) -> None:
    await begin(store, "n3", "u", 2)
    assert await store.record("n3", [failed("a"), failed("b", "rejected")]) == "failed"
    record = await store.get("n3")
    assert record is not None
    assert record["status"] == "failed"
    devices = {d["device"]: d for d in record["devices"]}
    assert devices["a"] == {
        "device": "a",
        "endpoint": "https://push.example/a",
        "status": "failed",
        "http_status": 410,
        "reason": "subscription_gone",
        "attempts": 1,
        "detail": "HTTP 410",
        "deactivation": None,
        "at": devices["a"]["at"],
    }
    assert devices["b"]["reason"] == "rejected"


async def test_first_outcome_per_device_wins(store: StatusStore) -> None:
    await begin(store, "n4", "u", 2)
    await store.record("n4", [sent("a")])
    assert await store.record("n4", [failed("a")]) == "processing"  # no double count
    await store.record("n4", [failed("b"), failed("b")])
    record = await store.get("n4")
    assert record is not None
    assert (record["sent"], record["failed"], record["status"]) == (1, 1, "sent")
    devices = {d["device"]: d for d in record["devices"]}
    assert devices["a"]["status"] == "sent"


async def test_redelivery_returns_done_devices_and_keeps_status(store: StatusStore) -> None:
    await begin(store, "n5", "u", 2)
    await store.record("n5", [sent("a")])
    assert await begin(store, "n5", "u", 2) == {"a"}
    await store.record("n5", [sent("b")])
    assert (await store.get("n5") or {})["status"] == "sent"
    # A late redelivery of finished work never moves it back to processing.
    assert await begin(store, "n5", "u", 2) == {"a", "b"}
    record = await store.get("n5")
    assert record is not None
    assert record["status"] == "sent" and record["sent"] == 2
    assert await store.record("n5", []) == "sent"


async def test_fail_marks_failed_but_never_overrides_sent(store: StatusStore) -> None:
    assert await store.fail("bad-1", "invalid_json: body is not valid JSON") == "failed"
    record = await store.get("bad-1")
    assert record is not None
    assert record["status"] == "failed"
    assert record["reason"].startswith("invalid_json")
    assert record["notification_id"] == "bad-1"
    assert record["created_at"] and record["completed_at"]

    await begin(store, "n6", "u", 1)
    await store.record("n6", [sent("a")])
    assert await store.fail("n6", "late") == "sent"
    record = await store.get("n6")
    assert record is not None
    assert record["status"] == "sent" and "reason" not in record


async def test_a_valid_message_after_a_dead_lettered_one_completes_the_record(
    store: StatusStore,
) -> None:
    await store.fail("n11", "invalid_json: body is not valid JSON")
    assert await begin(store, "n11", "user-11", 1) == set()
    assert await store.record("n11", [sent("a")]) == "sent"
    record = await store.get("n11")
    assert record is not None
    assert record["user_id"] == "user-11"
    assert (record["sent"], record["failed"], record["devices_total"]) == (1, 0, 1)


async def test_a_burst_of_reads_waits_for_connections_instead_of_failing(
    store: StatusStore,
) -> None:
    # More callers at once than the pool has connections (GET /notifications under load).
    await begin(store, "n12", "u", 1)
    records = await asyncio.gather(*(store.get("n12") for _ in range(3 * MAX_CONNECTIONS)))
    assert all(record is not None and record["status"] == "processing" for record in records)


async def test_fail_reason_is_bounded(store: StatusStore) -> None:
    await store.fail("n7", "x" * 5000)
    record = await store.get("n7")
    assert record is not None and len(record["reason"]) == 1000


async def test_records_expire(store: StatusStore) -> None:
    await begin(store, "n8", "u", 1)
    ttl = await store.client.ttl(store.key("n8"))
    assert TTL - 5 <= ttl <= TTL
    await store.client.expire(store.key("n8"), 10)
    await store.record("n8", [sent("a")])  # every write renews the expiry
    assert TTL - 5 <= await store.client.ttl(store.key("n8")) <= TTL
    await store.fail("n9", "bad")
    assert TTL - 5 <= await store.client.ttl(store.key("n9")) <= TTL


async def test_key_layout_is_readable_by_peers(store: StatusStore) -> None:
    await begin(store, "n10", "u", 1)
    await store.record("n10", [sent("dev1")])
    raw = await store.client.hgetall(f"{store.prefix}notification:n10")
    assert raw["status"] == "sent"
    assert orjson.loads(raw["d:dev1"])["status"] == "sent"


async def test_concurrent_records_count_each_device_once(store: StatusStore) -> None:
    await begin(store, "n11", "u", 50)
    outcomes = [sent(f"d{i % 25}") for i in range(50)] + [failed(f"f{i}") for i in range(25)]
    await asyncio.gather(*(store.record("n11", [o]) for o in outcomes))
    record = await store.get("n11")
    assert record is not None
    assert (record["sent"], record["failed"], record["status"]) == (25, 25, "sent")
    assert len(record["devices"]) == 50


async def test_count_delivery_increments_and_expires(store: StatusStore) -> None:
    assert await store.count_delivery("msg-1", ttl=120) == 1
    assert await store.count_delivery("msg-1", ttl=120) == 2
    assert await store.count_delivery("msg-2", ttl=120) == 1
    assert 0 < await store.client.ttl(f"{store.prefix}deliveries:msg-1") <= 120


async def test_scripts_unknown_to_redis_are_loaded_and_resent(store: StatusStore) -> None:
    """After a Redis restart or failover the script cache is empty (NOSCRIPT)."""
    marker = unique("fresh")
    store._begin = store._batch.register(f"{scripts.BEGIN}\n-- {marker}")
    store._record = store._batch.register(f"{scripts.RECORD}\n-- {marker}")
    shas = [
        s.sha for script in (store._begin, store._record) for s in (script.single, script.batched)
    ]
    assert not any(await store.client.script_exists(*shas))
    # Three begins in one turn go as one call of the batched form; then single ones.
    results = await asyncio.gather(
        begin(store, "ns1", "u", 1), begin(store, "ns2", "u", 1), begin(store, "ns3", "u", 1)
    )
    assert list(results) == [set(), set(), set()]
    assert await store.record("ns1", [sent("a")]) == "sent"
    assert (await store.get("ns1") or {})["status"] == "sent"


async def test_unreachable_redis_fails_every_waiter() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    dead = StatusStore(client, prefix=unique("dead") + ":", ttl=TTL)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(begin(dead, f"n{i}", None) for i in range(5)), return_exceptions=True),
            timeout=15,
        )
    finally:
        await client.aclose()
    assert len(results) == 5
    assert all(isinstance(r, RedisUnavailable) for r in results)


async def test_ping(store: StatusStore) -> None:
    assert await store.ping() is True


def test_to_record_converts_counts_and_sorts_devices() -> None:
    raw = {
        "status": "sent",
        "sent": "1",
        "failed": "0",
        "devices_total": "1",
        "user_id": "",
        "d:b": orjson.dumps({"device": "b", "at": "2024-01-02"}).decode(),
        "d:a": orjson.dumps({"device": "a", "at": "2024-01-01"}).decode(),
    }
    record = to_record(raw)
    assert record["sent"] == 1 and record["user_id"] is None
    assert [d["device"] for d in record["devices"]] == ["a", "b"]


def retry(device: str, wait: float = 60.0, attempts: int = 2) -> DeviceRetry:
    return DeviceRetry(
        device,
        f"https://push.example/{device}",
        time.time() + wait,
        attempts,
        "retry_after",
        "HTTP 429",
        429,
    )


async def test_a_retrying_device_keeps_the_notification_processing(store: StatusStore) -> None:
    await begin(store, "r1", total=2)
    assert await store.record("r1", [sent("a"), retry("b")]) == "processing"

    record = await store.get("r1")
    assert record is not None
    assert (record["status"], record["sent"], record["failed"]) == ("processing", 1, 0)
    waiting = next(d for d in record["devices"] if d["device"] == "b")
    assert waiting["status"] == "retrying"
    assert (waiting["attempts"], waiting["reason"], waiting["last_error"]) == (
        2,
        "retry_after",
        "HTTP 429",
    )
    assert waiting["http_status"] == 429 and waiting["next_attempt_at"].endswith("Z")


async def test_begin_returns_retrying_devices_and_a_later_retry_replaces_them(
    store: StatusStore,
) -> None:
    await begin(store, "r2", total=1)
    await store.record("r2", [retry("b", wait=30, attempts=1)])
    await store.record("r2", [retry("b", wait=90, attempts=3)])

    begun = await store.begin("r2", "u", 1, fingerprint="fp-1", deadline=time.time() + 60)
    assert begun.done == frozenset()
    assert set(begun.retrying) == {"b"}
    assert begun.retrying["b"].attempts == 3
    assert begun.retrying["b"].not_before == pytest.approx(time.time() + 90, abs=2)


async def test_a_final_outcome_replaces_the_retry_and_a_late_retry_is_ignored(
    store: StatusStore,
) -> None:
    await begin(store, "r3", total=1)
    await store.record("r3", [retry("b")])
    assert await store.record("r3", [sent("b", attempts=3)]) == "sent"
    assert await store.record("r3", [retry("b")]) == "sent"  # a stale copy, after the fact

    raw: dict[str, str] = await store.client.hgetall(store.key("r3"))  # type: ignore[assignment]
    assert "r:b" not in raw and "d:b" in raw
    record = to_record(raw)
    assert [d["status"] for d in record["devices"]] == ["sent"]


async def test_begin_writes_held_retries_with_a_new_record_only(store: StatusStore) -> None:
    """Rule: retries given to `begin` (devices whose push services refuse requests now)
    are recorded with a record it creates, as RECORD would; a record that exists is left
    to the usual path, which pushes or parks each device itself."""
    held = [retry("a", wait=5, attempts=0), retry("b", wait=5, attempts=0)]
    first = await store.begin(
        "h1", "u", 2, fingerprint="fp-h", deadline=time.time() + 60, held=held
    )
    assert (first.new, first.held) == (True, True)
    record = await store.get("h1")
    assert record is not None and record["status"] == "processing"
    assert {d["device"]: d["status"] for d in record["devices"]} == {
        "a": "retrying",
        "b": "retrying",
    }

    await store.record("h1", [sent("a")])
    again = await store.begin(
        "h1", "u", 2, fingerprint="fp-h", deadline=time.time() + 60, held=held
    )
    assert (again.new, again.held) == (False, False)
    assert again.done == frozenset({"a"}) and set(again.retrying) == {"b"}
    record = await store.get("h1")
    assert record is not None
    assert {d["device"]: d["status"] for d in record["devices"]} == {"a": "sent", "b": "retrying"}


async def test_the_first_deadline_is_kept(store: StatusStore) -> None:
    first = time.time() + 100
    begun = await store.begin("r4", "u", 1, fingerprint="fp", deadline=first)
    again = await store.begin("r4", "u", 1, fingerprint="fp", deadline=first + 500)
    assert begun.new and not again.new
    assert again.deadline == pytest.approx(first, abs=0.001)
    record = await store.get("r4")
    assert record is not None and record["deadline"].endswith("Z")
    assert "fingerprint" not in record  # internal, not shown


async def test_a_different_notification_under_the_same_id_is_refused(store: StatusStore) -> None:
    await begin(store, "r5", fingerprint="shipped")
    await store.record("r5", [sent("a")])

    with pytest.raises(DuplicateNotification, match="r5"):
        await begin(store, "r5", fingerprint="delivered")
    assert await store.fail("r5", "duplicate_notification_id: taken") == "sent"

    record = await store.get("r5")
    assert record is not None
    assert (record["status"], record["sent"], record["refused_messages"]) == ("sent", 1, 1)
    assert record["last_refused_reason"].startswith("duplicate_notification_id")
    assert await begin(store, "r5", fingerprint="shipped") == {"a"}  # the same one is fine


async def test_a_dead_lettered_message_leaves_a_complete_record(store: StatusStore) -> None:
    devices = [
        DeviceOutcome(name, f"https://push.example/{name}", "failed", None, "invalid_title", 0)
        for name in ("a", "b")
    ]
    assert await store.fail("r6", "invalid_title: title is required", devices) == "failed"

    record = await store.get("r6")
    assert record is not None
    assert (record["status"], record["sent"], record["failed"], record["devices_total"]) == (
        "failed",
        0,
        2,
        2,
    )
    assert {d["device"] for d in record["devices"]} == {"a", "b"}
    assert all(d["reason"] == "invalid_title" for d in record["devices"])


async def test_a_fixed_message_takes_over_a_dead_lettered_record(store: StatusStore) -> None:
    bad = DeviceOutcome("a", "https://push.example/a", "failed", None, "invalid_title", 0)
    await store.fail("r7", "invalid_title: title is required", [bad])

    assert await begin(store, "r7", total=1) == set()  # device "a" is not done: push it
    assert await store.record("r7", [sent("a")]) == "sent"
    record = await store.get("r7")
    assert record is not None
    assert (record["sent"], record["failed"], record["devices_total"]) == (1, 0, 1)
    assert record["reason"].startswith("invalid_title")  # what happened first stays visible
    assert [d["status"] for d in record["devices"]] == ["sent"]


async def test_an_abandoned_notification_ends_with_the_reason(store: StatusStore) -> None:
    await begin(store, "r8", total=2)
    await store.record("r8", [sent("a")])
    status = await store.fail("r8", "too_many_deliveries: 6", refused=False)
    assert status == "sent"
    record = await store.get("r8")
    assert record is not None
    assert record["reason"].startswith("too_many_deliveries") and record["completed_at"]


async def test_with_replicas_required_a_write_no_replica_confirms_is_redis_unavailable() -> None:
    """The machine's Redis has no replica: `WAIT 1` confirms nothing, so nothing counts."""
    client = connect(REDIS_URL)
    store = StatusStore(
        client, prefix=unique("wait") + ":", ttl=TTL, replicas=1, replica_timeout=0.05
    )
    try:
        with pytest.raises(RedisUnavailable, match="0 of 1 replicas"):
            await begin(store, "w1")
        with pytest.raises(RedisUnavailable):
            await store.fail("w2", "invalid_json: x")
        unconfirmed = StatusStore(client, prefix=store.prefix, ttl=TTL)
        # Written nonetheless (WAIT cannot undo it): the retry finds the same record.
        assert await begin(unconfirmed, "w1") == set()
    finally:
        async for key in client.scan_iter(match=f"{store.prefix}*"):
            await client.delete(key)
        await client.aclose()


async def test_calls_of_one_turn_go_as_one_batched_call_and_an_error_stays_with_its_call(
    store: StatusStore,
) -> None:
    """A key that is not a hash makes its own call fail, not the others batched with it."""
    await store.client.set(store.key("wrong"), "not a hash")
    results = await asyncio.gather(
        begin(store, "b1"), begin(store, "wrong"), begin(store, "b2"), return_exceptions=True
    )
    assert results[0] == set() and results[2] == set()
    assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
    assert {(await store.get(n) or {}).get("status") for n in ("b1", "b2")} == {"processing"}
