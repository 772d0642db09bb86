"""The subscription registry against the real Redis: upserts, removal, paging, stale entries."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from push_service.models import device_key
from push_service.redis_client import connect
from push_service.registry import Registry, Subscription
from tests.support import REDIS_URL, device_keys, unique


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    client = connect(REDIS_URL)
    prefix = unique("test-registry") + ":"
    try:
        yield Registry(client, prefix)
    finally:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)
        await client.aclose()


def subscription(name: str, **fields: object) -> Subscription:
    keys = device_keys()
    return Subscription(
        endpoint=f"https://push.example.com/{name}",
        p256dh=keys["p256dh"],
        auth=keys["auth"],
        **fields,  # type: ignore[arg-type]
    )


async def test_an_upsert_stores_a_new_subscription_and_finds_it_by_endpoint(
    registry: Registry,
) -> None:
    sub = subscription("a", user_id="u1", topics=("news",), key_id="k2", expiration_time=1e12)

    done = await registry.upsert(sub)
    found = await registry.find(sub.endpoint)

    assert done.created and not done.same
    assert found == done.subscription
    assert found is not None and found.device == device_key(sub.endpoint)
    assert (found.user_id, found.topics, found.key_id, found.expiration_time) == (
        "u1",
        ("news",),
        "k2",
        1e12,
    )
    assert found.created_at and found.created_at == found.last_seen
    assert await registry.find("https://push.example.com/other") is None


async def test_the_same_subscription_again_is_a_resync_that_keeps_created_and_key(
    registry: Registry,
) -> None:
    sub = subscription("a", user_id="u1", topics=("news",), key_id="old")
    first = await registry.upsert(sub)

    again = await registry.upsert(subscription_like(sub, key_id="current"))

    assert again.same and not again.created
    assert again.subscription.created_at == first.subscription.created_at
    assert again.subscription.last_seen >= first.subscription.last_seen
    assert again.subscription.key_id == "old"  # bound to the key it was made with
    assert again.subscription.topics == ("news",)  # None keeps them


def subscription_like(sub: Subscription, **changes: object) -> Subscription:
    return dataclasses.replace(sub, **changes)  # type: ignore[arg-type]


async def test_new_keys_user_or_topics_are_a_change_and_move_the_indexes(
    registry: Registry,
) -> None:
    sub = subscription("a", user_id="u1", topics=("news", "sport"))
    await registry.upsert(sub)

    moved = await registry.upsert(subscription_like(sub, user_id="u2"), topics=["sport", "tv"])

    assert not moved.same and not moved.created
    assert moved.previous is not None and moved.previous.user_id == "u1"
    assert await devices(registry, user_id="u1") == []
    assert await devices(registry, user_id="u2") == [sub.device]
    assert await devices(registry, topic="news") == []
    assert await devices(registry, topic="tv") == [sub.device]
    rekeyed = await registry.upsert(
        subscription_like(sub, user_id="u2", auth=device_keys()["auth"])
    )
    assert not rekeyed.same


async def devices(registry: Registry, **audience: str) -> list[str]:
    found, cursor = await registry.page(**audience)  # type: ignore[arg-type]
    assert cursor is None
    return [s.device for s in found]


async def test_remove_forgets_the_subscription_and_its_index_entries(registry: Registry) -> None:
    sub = subscription("a", user_id="u1", topics=("news",))
    await registry.upsert(sub)

    removed = await registry.remove(sub.device)

    assert removed is not None and removed.endpoint == sub.endpoint
    assert await registry.get(sub.device) is None
    assert await registry.count(user_id="u1") == 0
    assert await registry.count(topic="news") == 0
    assert await registry.remove(sub.device) is None


async def test_pages_and_chunks_cover_every_member_once_in_device_order(
    registry: Registry,
) -> None:
    subs = [subscription(f"s{i}", topics=("big",)) for i in range(25)]
    for sub in subs:
        await registry.upsert(sub)

    pages, after = [], ""
    while True:
        page, cursor = await registry.page(topic="big", after=after, limit=10)
        pages.append([s.device for s in page])
        if cursor is None:
            break
        after = cursor
    chunked = [[s.device for s in chunk] async for chunk, _ in registry.chunks(topic="big", size=7)]

    expected = sorted(s.device for s in subs)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [d for page in pages for d in page] == expected
    assert [d for chunk in chunked for d in chunk] == expected and [len(c) for c in chunked] == [
        7,
        7,
        7,
        4,
    ]


async def test_a_chunk_cursor_resumes_after_the_last_device_seen(registry: Registry) -> None:
    subs = [subscription(f"s{i}", user_id="crowd") for i in range(6)]
    for sub in subs:
        await registry.upsert(sub)
    chunks = registry.chunks(user_id="crowd", size=4)
    first, cursor = await anext(chunks)
    assert cursor is not None

    rest = [s async for chunk, _ in registry.chunks(user_id="crowd", size=4, after=cursor)
            for s in chunk]  # fmt: skip

    assert sorted(s.device for s in [*first, *rest]) == sorted(s.device for s in subs)
    assert not {s.device for s in first} & {s.device for s in rest}


async def test_an_empty_or_unknown_audience_ends_at_once(registry: Registry) -> None:
    chunks = [c async for c in registry.chunks(topic="nobody", size=10)]

    assert chunks == [([], None)]
    assert await registry.count(user_id="nobody") == 0


async def test_stale_index_entries_are_skipped_and_dropped_when_read(
    registry: Registry,
) -> None:
    """A crash between the commands of an upsert leaves an index over-saying: readers heal it."""
    live, gone, moved = (subscription(n, topics=("t",)) for n in ("live", "gone", "moved"))
    for sub in (live, gone, moved):
        await registry.upsert(sub)
    client: redis.Redis = registry.client
    await client.delete(registry.key(gone.device))  # as if the removal stopped half-way
    await client.hset(registry.key(moved.device), "topics", '["other"]')

    page, _ = await registry.page(topic="t")

    assert [s.device for s in page] == [live.device]
    assert await registry.count(topic="t") == 1


def test_exactly_one_audience_is_named(registry: Registry) -> None:
    with pytest.raises(ValueError):
        registry.index()
    with pytest.raises(ValueError):
        registry.index(user_id="u", topic="t")


def test_a_subscription_round_trips_through_its_hash_fields() -> None:
    sub = subscription("a", user_id="u", topics=("a", "b"), expiration_time=None)

    assert Subscription.from_fields(sub.to_fields()) == sub
    assert Subscription.from_fields({"endpoint": "x"}) is None  # not one of ours
    assert sub.message_device() == {
        "endpoint": sub.endpoint,
        "keys": {"p256dh": sub.p256dh, "auth": sub.auth},
        "vapid_key_id": "default",
    }
