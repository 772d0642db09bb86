"""Notification status records in Redis.

One hash per notification, `{prefix}notification:{id}`, readable by peer services
with `HGETALL` (the README documents the fields). Transitions run as Lua scripts,
so two replicas, or a redelivery racing an old attempt, cannot move a record
backwards: a device's first final outcome is kept, and `status` is derived from
the counts, never written blindly.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

RedisUnavailable = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
CALL_TIMEOUT = 5.0  # a paused or unreachable Redis fails a call after this
MAX_CONNECTIONS = 64
DEVICE_PREFIX = "d:"

_BEGIN = """
local key = KEYS[1]
local created = redis.call('HSETNX', key, 'status', 'processing')
if created == 1 then
  redis.call('HSET', key, 'notification_id', ARGV[3], 'user_id', ARGV[4],
             'devices_total', ARGV[5], 'sent', 0, 'failed', 0,
             'created_at', ARGV[1], 'updated_at', ARGV[1], 'user_verified', ARGV[6])
end
redis.call('EXPIRE', key, ARGV[2])
if created == 1 then return {} end
-- The record may have been written by a dead-lettered message with this id: fill in
-- what that one could not know.
if ARGV[4] ~= '' then redis.call('HSETNX', key, 'user_id', ARGV[4]) end
redis.call('HSETNX', key, 'sent', 0)
redis.call('HSETNX', key, 'failed', 0)
-- The same id again with more devices: the total must cover them, or counts exceed it.
if tonumber(ARGV[5]) > tonumber(redis.call('HGET', key, 'devices_total') or '0') then
  redis.call('HSET', key, 'devices_total', ARGV[5])
end
local done = {}
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, 2) == 'd:' then table.insert(done, string.sub(field, 3)) end
end
return done
"""

_RECORD = """
local key = KEYS[1]
local now, ttl = ARGV[1], ARGV[2]
for i = 3, #ARGV, 3 do
  local field = 'd:' .. ARGV[i]
  if redis.call('HSETNX', key, field, ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', key, ARGV[i + 2], 1)
  end
end
local sent = tonumber(redis.call('HGET', key, 'sent') or '0')
local failed = tonumber(redis.call('HGET', key, 'failed') or '0')
local total = tonumber(redis.call('HGET', key, 'devices_total') or '0')
local status = 'processing'
if sent + failed >= total then
  if sent > 0 then status = 'sent' else status = 'failed' end
  redis.call('HSETNX', key, 'completed_at', now)
end
redis.call('HSET', key, 'status', status, 'updated_at', now)
redis.call('EXPIRE', key, ttl)
return status
"""

_FAIL = """
local key = KEYS[1]
local current = redis.call('HGET', key, 'status')
if current == 'sent' then return current end
redis.call('HSET', key, 'notification_id', ARGV[3], 'status', 'failed', 'reason', ARGV[4],
           'updated_at', ARGV[1], 'completed_at', ARGV[1])
redis.call('HSETNX', key, 'created_at', ARGV[1])
redis.call('EXPIRE', key, ARGV[2])
return 'failed'
"""


def utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    """The final outcome of one device for one notification."""

    device: str
    endpoint: str
    status: str  # "sent" | "failed"
    http_status: int | None
    reason: str | None
    attempts: int
    detail: str | None = None
    deactivation: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "device": self.device,
                "endpoint": self.endpoint,
                "status": self.status,
                "http_status": self.http_status,
                "reason": self.reason,
                "detail": self.detail,
                "attempts": self.attempts,
                "deactivation": self.deactivation,
                "at": utc_now(),
            }
        )


def connect(url: str) -> redis.Redis:
    """A client that retries a dropped connection briefly on its own."""
    # Blocking: a burst of callers (status reads, redelivery counts) waits for a free
    # connection. The default pool raises at once when all 100 are busy, which would
    # read as "Redis unavailable" while Redis is fine.
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=CALL_TIMEOUT,
        decode_responses=True,
        # Bounded per call below (one timeout per pipeline, not one per reply read).
        socket_timeout=None,
        socket_connect_timeout=3.0,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
        retry_on_error=[RedisConnectionError],
    )
    return redis.Redis.from_pool(pool)


class _ScriptBatcher:
    """Sends the script calls made while a round trip is under way as one pipeline.

    Hundreds of messages in flight each make one or two small script calls; one
    pipeline per event-loop turn instead of one round trip each is most of the
    difference between a few hundred and a few thousand messages per second.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.queue: list[tuple[AsyncScript, list[Any], list[Any], asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def call(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.append((script, keys, args, future))
        if self.task is None:
            self.task = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                await self._send(batch)
        finally:
            self.task = None

    async def _send(
        self,
        batch: list[tuple[AsyncScript, list[Any], list[Any], asyncio.Future[Any]]],
        reload_scripts: bool = True,
    ) -> None:
        try:
            async with (
                asyncio.timeout(CALL_TIMEOUT),
                self.client.pipeline(transaction=False) as pipe,
            ):
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            if reload_scripts and any(isinstance(r, NoScriptError) for r in results):
                # Redis restarted or failed over and lost its script cache: load, resend.
                for script in {id(s): s for s, _, _, _ in batch}.values():
                    await self.client.script_load(script.script)
                return await self._send(batch, reload_scripts=False)
        except Exception as exc:  # every waiter gets the error
            results = [exc] * len(batch)
        for (_, _, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class StatusStore:
    def __init__(self, client: redis.Redis, prefix: str = "push:", ttl: int = 604800) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._begin = client.register_script(_BEGIN)
        self._record = client.register_script(_RECORD)
        self._fail = client.register_script(_FAIL)
        self._batch = _ScriptBatcher(client)

    def key(self, notification_id: str) -> str:
        return f"{self.prefix}notification:{notification_id}"

    async def begin(
        self, notification_id: str, user_id: str | None, total: int, user_verified: bool = True
    ) -> set[str]:
        """Mark `processing` (unless already final); returns the devices already done."""
        verified = "true" if user_verified else "false"
        done = await self._batch.call(
            self._begin,
            [self.key(notification_id)],
            [utc_now(), self.ttl, notification_id, user_id or "", total, verified],
        )
        return set(done)

    async def record(self, notification_id: str, outcomes: Iterable[DeviceOutcome]) -> str:
        """Store final device outcomes (first one wins); returns the resulting status."""
        args: list[Any] = [utc_now(), self.ttl]
        for outcome in outcomes:
            args += [outcome.device, outcome.to_json(), outcome.status]
        status: str = await self._batch.call(self._record, [self.key(notification_id)], args)
        return status

    async def fail(self, notification_id: str, reason: str) -> str:
        """Mark a whole notification failed (invalid message); never overrides `sent`."""
        async with asyncio.timeout(CALL_TIMEOUT):
            status: str = await self._fail(
                keys=[self.key(notification_id)],
                args=[utc_now(), self.ttl, notification_id, reason[:1000]],
            )
        return status

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        async with asyncio.timeout(CALL_TIMEOUT):
            raw: dict[str, str] = await self.client.hgetall(self.key(notification_id))  # type: ignore[assignment]  # decode_responses=True
        return to_record(raw) if raw else None

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


def to_record(raw: dict[str, str]) -> dict[str, Any]:
    """The hash as the JSON record `GET /notifications/{id}` serves."""
    record: dict[str, Any] = {}
    devices = []
    for field, value in raw.items():
        if field.startswith(DEVICE_PREFIX):
            devices.append(orjson.loads(value))
        elif field in ("sent", "failed", "devices_total"):
            record[field] = int(value)
        elif field == "user_verified":
            record[field] = value == "true"
        else:
            record[field] = value or None
    devices.sort(key=lambda d: d.get("at", ""))
    record["devices"] = devices
    return record
