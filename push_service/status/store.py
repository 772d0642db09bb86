"""Notification status records in Redis.

One hash per notification, `{prefix}notification:{id}`, readable by peer services
with `HGETALL` (the README documents the fields). Transitions run as Lua scripts
(`scripts`), so two replicas, or a redelivery racing an old attempt, cannot move a
record backwards: a device's first final outcome is kept, and `status` is derived
from the counts, never written blindly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from push_service.deadline import from_iso, to_iso
from push_service.errors import DuplicateNotification
from push_service.status import scripts
from push_service.status.batch import CALL_TIMEOUT, Script, ScriptBatcher
from push_service.status.records import Begun, DeviceOutcome, DeviceRetry, to_record, utc_now

RedisUnavailable = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class StatusStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "push:",
        ttl: int = 604800,
        *,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        """`replicas`: how many replicas must confirm each write (REDIS_WAIT_REPLICAS)."""
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._batch = ScriptBatcher(client, replicas, replica_timeout)
        self._begin = self._batch.register(scripts.BEGIN)
        self._record = self._batch.register(scripts.RECORD)
        self._fail = self._batch.register(scripts.FAIL)
        self._deactivation = self._batch.register(scripts.DEACTIVATION)
        self._begin_chunk = self._batch.register(scripts.BEGIN_CHUNK)

    def register(self, body: str) -> Script:
        """A further one-key script on the records (`status.control`, `status.fanout`)."""
        return self._batch.register(body)

    async def call(self, script: Script, notification_id: str, args: list[Any]) -> Any:
        return await self._batch.call(script, self.key(notification_id), args)

    def key(self, notification_id: str) -> str:
        return f"{self.prefix}notification:{notification_id}"

    async def run(self, script: Script, notification_id: str, args: list[Any]) -> Any:
        return await self._batch.call(script, self.key(notification_id), args)

    async def begin(
        self,
        notification_id: str,
        user_id: str | None,
        total: int,
        *,
        fingerprint: str,
        deadline: float,
        user_verified: bool = True,
        held: Sequence[DeviceRetry] = (),
    ) -> Begun:
        """Mark `processing` (unless final); returns the deadline and the devices handled.

        The deadline on record wins: a redelivery or a parked retry keeps the first one.
        `held`: retries to record with the record if it is new (`Begun.held` then).
        Raises DuplicateNotification when a different notification holds this id.
        """
        args = [utc_now(), self.ttl, notification_id, user_id or "", total, fingerprint]
        args += [to_iso(deadline), "true" if user_verified else "false"]
        for retry in held:
            args += [retry.device, retry.to_json()]
        state, when, done, retrying, cancelled, written = await self._batch.call(
            self._begin, self.key(notification_id), args
        )
        if state == -1:
            raise _taken(notification_id, when)
        retries = (DeviceRetry.from_json(raw) for raw in retrying)
        return Begun(
            new=state == 1,
            deadline=deadline if state == 1 else from_iso(when),
            done=frozenset(done),
            retrying={retry.device: retry for retry in retries},
            cancelled=bool(cancelled),
            held=bool(written),
        )

    async def begin_chunk(
        self, notification_id: str, devices: Sequence[str], *, fingerprint: str, deadline: float
    ) -> Begun:
        """`begin` for one chunk of an audience: reads only the chunk's `devices`, and
        counts none (the resolver did). The record's deadline wins, as in `begin`."""
        args = [utc_now(), self.ttl, fingerprint, to_iso(deadline), *devices]
        state, when, done, retrying = await self._batch.call(
            self._begin_chunk, self.key(notification_id), args
        )
        if state == -1:
            raise _taken(notification_id, when)
        retries = (DeviceRetry.from_json(raw) for raw in retrying)
        return Begun(
            new=False,
            deadline=from_iso(when),
            done=frozenset(done),
            retrying={retry.device: retry for retry in retries},
        )

    async def record(
        self, notification_id: str, outcomes: Iterable[DeviceOutcome | DeviceRetry]
    ) -> str:
        """Store device outcomes (first final one wins) and retries; returns the status."""
        args: list[Any] = [utc_now(), self.ttl]
        for outcome in outcomes:
            kind = outcome.status if isinstance(outcome, DeviceOutcome) else "retrying"
            args += [outcome.device, outcome.to_json(), kind]
        status: str = await self._batch.call(self._record, self.key(notification_id), args)
        return status

    async def fail(
        self,
        notification_id: str,
        reason: str,
        devices: Sequence[DeviceOutcome] = (),
        *,
        refused: bool = True,
    ) -> str:
        """Record a message given up before any push (dead-lettered).

        With no valid notification on record, the record says `failed` with the reason
        and the message's devices. Otherwise that notification's record is kept: a
        refused message (a different one) is counted in `refused_messages`; an abandoned
        one (this notification, redelivered too often) ends it with the reason.
        """
        args: list[Any] = [utc_now(), self.ttl, notification_id, reason[:1000]]
        args.append("refused" if refused else "abandoned")
        for device in devices:
            args += [device.device, device.to_json()]
        status: str = await self._batch.call(self._fail, self.key(notification_id), args)
        return status

    async def note_deactivation(self, notification_id: str, device: str, outcome: str) -> bool:
        """Write what the User Service made of a device's report (its `deactivation`).

        False when the record or the device's final outcome is no longer there.
        """
        args = [device, outcome[:1000]]
        written: int = await self._batch.call(self._deactivation, self.key(notification_id), args)
        return bool(written)

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        async with asyncio.timeout(CALL_TIMEOUT):
            raw: dict[str, str] = await self.client.hgetall(self.key(notification_id))  # type: ignore[assignment]  # decode_responses=True
        return to_record(raw) if raw else None

    async def counts(self, notification_id: str) -> dict[str, int]:
        """devices_total, sent and failed of a record, without reading its devices."""
        names = ("devices_total", "sent", "failed")
        async with asyncio.timeout(CALL_TIMEOUT):
            values = await self.client.hmget(self.key(notification_id), names)
        return {name: int(value or 0) for name, value in zip(names, values, strict=True)}

    async def count_delivery(self, message_key: str, ttl: int = 3600) -> int:
        """How often a message has been delivered (for redelivery limits on classic queues)."""
        key = f"{self.prefix}deliveries:{message_key}"
        async with asyncio.timeout(CALL_TIMEOUT), self.client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl)
            count, _ = await pipe.execute()
        return int(count)

    async def ping(self) -> bool:
        async with asyncio.timeout(CALL_TIMEOUT):
            return bool(await self.client.ping())


def _taken(notification_id: str, created: str) -> DuplicateNotification:
    return DuplicateNotification(
        f"notification_id {notification_id!r} is on record for a different "
        f"notification (created {created or 'earlier'}); use a new id"
    )
