"""The status store against the real Redis: transitions never move backwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from push_service import status
from push_service.redis_client import MAX_CONNECTIONS, connect
from push_service.status import DeviceOutcome, RedisUnavailable, StatusStore, to_record
from tests.support import free_port, status_store, unique

TTL = 3600


@pytest.fixture
async def store() -> AsyncIterator[StatusStore]:
    async with status_store("test-status", ttl=TTL) as store:
        yield store


def sent(device: str, attempts: int = 1) -> DeviceOutcome:
    return DeviceOutcome(device, f"https://push.example/{device}", "sent", 201, None, attempts)


def failed(device: str, reason: str = "subscription_gone") -> DeviceOutcome:
    return DeviceOutcome(
        device, f"https://push.example/{device}", "failed", 410, reason, 1, detail="HTTP 410"
    )


async def test_begin_creates_a_processing_record(store: StatusStore) -> None:
    assert await store.begin("n1", "user-1", 2) == set()
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
    await store.begin("n2", None, 3)
    assert await store.record("n2", [sent("a")]) == "processing"  # work still under way
    assert await store.record("n2", [failed("b")]) == "processing"
    assert await store.record("n2", [failed("c")]) == "sent"  # one accepted: sent
    record = await store.get("n2")
    assert record is not None
    assert (record["status"], record["sent"], record["failed"]) == ("sent", 1, 2)
    assert record["user_id"] is None
    assert record["completed_at"]


async def test_all_failed_is_failed(store: StatusStore) -> None:
    await store.begin("n3", "u", 2)
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
    await store.begin("n4", "u", 2)
    await store.record("n4", [sent("a")])
    assert await store.record("n4", [failed("a")]) == "processing"  # no double count
    await store.record("n4", [failed("b"), failed("b")])
    record = await store.get("n4")
    assert record is not None
    assert (record["sent"], record["failed"], record["status"]) == (1, 1, "sent")
    devices = {d["device"]: d for d in record["devices"]}
    assert devices["a"]["status"] == "sent"


async def test_redelivery_returns_done_devices_and_keeps_status(store: StatusStore) -> None:
    await store.begin("n5", "u", 2)
    await store.record("n5", [sent("a")])
    assert await store.begin("n5", "u", 2) == {"a"}
    await store.record("n5", [sent("b")])
    assert (await store.get("n5") or {})["status"] == "sent"
    # A late redelivery of finished work never moves it back to processing.
    assert await store.begin("n5", "u", 2) == {"a", "b"}
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

    await store.begin("n6", "u", 1)
    await store.record("n6", [sent("a")])
    assert await store.fail("n6", "late") == "sent"
    record = await store.get("n6")
    assert record is not None
    assert record["status"] == "sent" and "reason" not in record


async def test_a_valid_message_after_a_dead_lettered_one_completes_the_record(
    store: StatusStore,
) -> None:
    await store.fail("n11", "invalid_json: body is not valid JSON")
    assert await store.begin("n11", "user-11", 1) == set()
    assert await store.record("n11", [sent("a")]) == "sent"
    record = await store.get("n11")
    assert record is not None
    assert record["user_id"] == "user-11"
    assert (record["sent"], record["failed"], record["devices_total"]) == (1, 0, 1)


async def test_a_burst_of_reads_waits_for_connections_instead_of_failing(
    store: StatusStore,
) -> None:
    # More callers at once than the pool has connections (GET /notifications under load).
    await store.begin("n12", "u", 1)
    records = await asyncio.gather(*(store.get("n12") for _ in range(3 * MAX_CONNECTIONS)))
    assert all(record is not None and record["status"] == "processing" for record in records)


async def test_fail_reason_is_bounded(store: StatusStore) -> None:
    await store.fail("n7", "x" * 5000)
    record = await store.get("n7")
    assert record is not None and len(record["reason"]) == 1000


async def test_records_expire(store: StatusStore) -> None:
    await store.begin("n8", "u", 1)
    ttl = await store.client.ttl(store.key("n8"))
    assert TTL - 5 <= ttl <= TTL
    await store.client.expire(store.key("n8"), 10)
    await store.record("n8", [sent("a")])  # every write renews the expiry
    assert TTL - 5 <= await store.client.ttl(store.key("n8")) <= TTL
    await store.fail("n9", "bad")
    assert TTL - 5 <= await store.client.ttl(store.key("n9")) <= TTL


async def test_key_layout_is_readable_by_peers(store: StatusStore) -> None:
    await store.begin("n10", "u", 1)
    await store.record("n10", [sent("dev1")])
    raw = await store.client.hgetall(f"{store.prefix}notification:n10")
    assert raw["status"] == "sent"
    assert orjson.loads(raw["d:dev1"])["status"] == "sent"


async def test_concurrent_records_count_each_device_once(store: StatusStore) -> None:
    await store.begin("n11", "u", 50)
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
    store._begin = store.client.register_script(f"{status._BEGIN}\n-- {marker}")
    store._record = store.client.register_script(f"{status._RECORD}\n-- {marker}")
    assert not any(await store.client.script_exists(store._begin.sha, store._record.sha))
    results = await asyncio.gather(
        store.begin("ns1", "u", 1), store.begin("ns2", "u", 1), store.begin("ns3", "u", 1)
    )
    assert list(results) == [set(), set(), set()]
    assert await store.record("ns1", [sent("a")]) == "sent"
    assert (await store.get("ns1") or {})["status"] == "sent"


async def test_unreachable_redis_fails_every_waiter() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    dead = StatusStore(client, prefix=unique("dead") + ":", ttl=TTL)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(dead.begin(f"n{i}", None, 1) for i in range(5)), return_exceptions=True
            ),
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
