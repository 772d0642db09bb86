"""The subscription registry in Redis: who can be reached, by device, user or topic.

One hash per subscription, `{prefix}sub:{device}`, is the truth. Two kinds of index
point at it: `{prefix}user:{user_id}` and `{prefix}topic:{topic}`, sorted sets of
device ids (all scores 0), read in lexicographic ranges, so a page or a fan-out chunk
resumes after the last device id it saw without skipping or repeating one while others
come and go.

Every command names one key: nothing spans hash slots, so the same code runs on a
Redis Cluster. The price is that an upsert or removal is several commands, not one
transaction: a crash between them can leave an index entry that no longer matches its
hash. Readers check each entry against its hash and drop the stale ones, so the
indexes only ever over-approximate, and an over-approximation heals when read.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as redis

from push_service.models import device_key
from push_service.registry.records import Subscription, Upserted
from push_service.status import CALL_TIMEOUT, utc_now

MAX_PAGE = 1000


class Registry:
    def __init__(self, client: redis.Redis, prefix: str = "push:") -> None:
        self.client = client
        self.prefix = prefix

    def key(self, device: str) -> str:
        return f"{self.prefix}sub:{device}"

    def index(self, *, user_id: str | None = None, topic: str | None = None) -> str:
        """The index of exactly one audience: a user's subscriptions or a topic's."""
        if (user_id is None) == (topic is None):
            raise ValueError("name exactly one of user_id and topic")
        return f"{self.prefix}user:{user_id}" if topic is None else f"{self.prefix}topic:{topic}"

    async def get(self, device: str) -> Subscription | None:
        async with asyncio.timeout(CALL_TIMEOUT):
            fields: dict[str, str] = await self.client.hgetall(self.key(device))  # type: ignore[assignment]  # decode_responses=True
        return Subscription.from_fields(fields) if fields else None

    async def find(self, endpoint: str) -> Subscription | None:
        found = await self.get(device_key(endpoint))
        return found if found is not None and found.endpoint == endpoint else None

    async def upsert(
        self, subscription: Subscription, *, topics: Sequence[str] | None = None
    ) -> Upserted:
        """Store a subscription by its endpoint; returns it as stored, and what was before.

        `topics` None keeps the stored topics (a new subscription gets the subscription's
        own); a sequence replaces them. An endpoint's VAPID key id never changes: a
        subscription is bound to the key it was made with, and a re-sync cannot know it.
        """
        previous = await self.get(subscription.device)
        now = utc_now()
        chosen = tuple(dict.fromkeys(topics)) if topics is not None else None
        if previous is None:
            stored = dataclasses.replace(
                subscription,
                topics=subscription.topics if chosen is None else chosen,
                created_at=now,
                last_seen=now,
            )
        else:
            stored = dataclasses.replace(
                subscription,
                topics=previous.topics if chosen is None else chosen,
                key_id=previous.key_id,
                created_at=previous.created_at or now,
                last_seen=now,
            )
        await self._write(stored, previous)
        return Upserted(stored, previous)

    async def remove(self, device: str) -> Subscription | None:
        """Forget a subscription; returns what was stored (None if nothing was)."""
        previous = await self.get(device)
        if previous is None:
            return None
        async with asyncio.timeout(CALL_TIMEOUT), self.client.pipeline(transaction=False) as pipe:
            pipe.delete(self.key(device))  # the truth first: the indexes only ever over-say
            self._unindex(pipe, previous, user=True, topics=previous.topics)
            await pipe.execute()
        return previous

    async def page(
        self,
        *,
        user_id: str | None = None,
        topic: str | None = None,
        after: str = "",
        limit: int = 100,
    ) -> tuple[list[Subscription], str | None]:
        """Subscriptions of one user or topic in device-id order, after the cursor `after`.

        Returns them and the cursor of the next page (None at the end). A page may hold
        fewer than `limit` when stale index entries were dropped on the way.
        """
        index = self.index(user_id=user_id, topic=topic)
        limit = max(1, min(limit, MAX_PAGE))
        async with asyncio.timeout(CALL_TIMEOUT):
            devices: list[str] = await self.client.zrangebylex(  # type: ignore[assignment]
                index, f"({after}" if after else "-", "+", start=0, num=limit
            )
        found = await self._load(devices)
        live, stale = [], []
        for device, subscription in zip(devices, found, strict=True):
            if subscription is not None and subscription.member_of(user_id, topic):
                live.append(subscription)
            else:
                stale.append(device)
        if stale:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self.client.zrem(index, *stale)
        return live, devices[-1] if len(devices) == limit else None

    async def chunks(
        self,
        *,
        user_id: str | None = None,
        topic: str | None = None,
        size: int,
        after: str = "",
    ) -> AsyncIterator[tuple[list[Subscription], str | None]]:
        """Every subscription of one user or topic, `size` at a time, with the cursor that
        resumes after each chunk (None after the last): a fan-out that stops part-way
        can go on from the last cursor it recorded."""
        cursor: str | None = after
        while cursor is not None:
            chunk, cursor = await self.page(user_id=user_id, topic=topic, after=cursor, limit=size)
            if chunk or cursor is None:
                yield chunk, cursor

    async def count(self, *, user_id: str | None = None, topic: str | None = None) -> int:
        """Index entries of a user or topic: an upper bound until stale ones are read."""
        async with asyncio.timeout(CALL_TIMEOUT):
            return int(await self.client.zcard(self.index(user_id=user_id, topic=topic)))

    async def _load(self, devices: list[str]) -> list[Subscription | None]:
        if not devices:
            return []
        async with asyncio.timeout(CALL_TIMEOUT), self.client.pipeline(transaction=False) as pipe:
            for device in devices:
                pipe.hgetall(self.key(device))
            replies: list[dict[str, str]] = await pipe.execute()
        return [Subscription.from_fields(r) if r else None for r in replies]

    async def _write(self, stored: Subscription, previous: Subscription | None) -> None:
        device = stored.device
        async with asyncio.timeout(CALL_TIMEOUT), self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.key(device), mapping=stored.to_fields())  # type: ignore[arg-type]
            if stored.user_id:
                pipe.zadd(self.index(user_id=stored.user_id), {device: 0})
            for topic in stored.topics:
                pipe.zadd(self.index(topic=topic), {device: 0})
            if previous is not None:
                self._unindex(
                    pipe,
                    previous,
                    user=bool(previous.user_id) and previous.user_id != stored.user_id,
                    topics=[t for t in previous.topics if t not in stored.topics],
                )
            await pipe.execute()

    def _unindex(
        self, pipe: Any, subscription: Subscription, *, user: bool, topics: Sequence[str]
    ) -> None:
        device = subscription.device
        if user and subscription.user_id:
            pipe.zrem(self.index(user_id=subscription.user_id), device)
        for topic in topics:
            pipe.zrem(self.index(topic=topic), device)
