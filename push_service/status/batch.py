"""Sends the script calls made while a Redis round trip is under way as one pipeline.

Hundreds of messages in flight each make one or two small script calls. One round
trip per event-loop turn instead of one each is most of the difference between a few
hundred and a few thousand messages per second; and the calls of one script in a turn
go as a single EVALSHA of its *batched* form (the script as a Lua function, called once
per key), which spares redis-py a command, a reply and a callback per call.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

CALL_TIMEOUT = 5.0  # a paused or unreachable Redis fails a call after this

# ARGV of the batched form: for each key in turn, its argument count, then its arguments.
_BATCHED = """
local function one(KEYS, ARGV)
{body}
end
local results, at = {{}}, 1
for i = 1, #KEYS do
  local count, args = tonumber(ARGV[at]), {{}}
  for j = 1, count do args[j] = ARGV[at + j] end
  results[i] = one({{KEYS[i]}}, args)
  at = at + count + 1
end
return results
"""


@dataclass(frozen=True)
class Script:
    """A one-key Lua script and its batched form."""

    single: AsyncScript
    batched: AsyncScript


_Call = tuple[Script, str, list[Any], "asyncio.Future[Any]"]


class NotReplicated(RedisConnectionError):
    """Fewer replicas than asked for confirmed a write: a failover could still lose it.

    A connection error to its callers, so the write waits and is made again (the
    scripts are idempotent) rather than counted as done.
    """


class ScriptBatcher:
    """`replicas` > 0 ends each pipeline with `WAIT replicas timeout`: a write counts only
    once that many replicas have it, so a Sentinel failover cannot lose an acknowledged one.
    """

    def __init__(self, client: redis.Redis, replicas: int = 0, timeout: float = 1.0) -> None:
        self.client = client
        # On a Redis Cluster a batched call may only name keys of one hash slot.
        self.by_slot = isinstance(client, RedisCluster)
        self.replicas = replicas
        self.timeout_ms = max(1, round(timeout * 1000))
        self.queue: list[_Call] = []
        self.task: asyncio.Task[None] | None = None

    def register(self, body: str) -> Script:
        """A script whose body reads one key, `KEYS[1]`, and its `ARGV`."""
        batched = _BATCHED.format(body=body)
        return Script(self.client.register_script(body), self.client.register_script(batched))

    async def call(self, script: Script, key: str, args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.append((script, key, args, future))
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

    async def _send(self, batch: list[_Call], batched: bool = True) -> None:
        groups = _group(batch, self.by_slot) if batched else [[call] for call in batch]
        try:
            replies = await self._execute(groups)
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                # Redis restarted or failed over and lost its script cache (or, on a
                # cluster, one node never had it): load, and resend only the calls that
                # did not run; the others must not run twice.
                await self._load({id(c[0]): c[0] for c in batch}.values())
                again = await self._execute([groups[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
            if batched and any(isinstance(r, ResponseError) for r in replies):
                # One call's error must not fail the others: send them one by one.
                return await self._send(batch, batched=False)
            results = [r for group, reply in zip(groups, replies, strict=True)
                       for r in _spread(group, reply)]  # fmt: skip
        except Exception as exc:  # every waiter gets the error
            results = [exc] * len(batch)
        _settle([call for group in groups for call in group], results)

    async def _execute(self, groups: list[list[_Call]]) -> list[Any]:
        async with asyncio.timeout(CALL_TIMEOUT), self.client.pipeline(transaction=False) as pipe:
            for group in groups:
                if len(group) == 1:
                    script, key, args, _ = group[0]
                    # execute_command, not evalsha(): a cluster pipeline blocks the latter,
                    # though it routes the command by its key all the same.
                    pipe.execute_command("EVALSHA", script.single.sha, 1, key, *args)
                else:
                    keys = [call[1] for call in group]
                    flat = [v for call in group for v in (len(call[2]), *call[2])]
                    sha = group[0][0].batched.sha
                    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *flat)
            if self.replicas:
                pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return self._replicated(replies) if self.replicas else replies

    async def _load(self, scripts: Any) -> None:
        for script in scripts:
            await self.client.script_load(script.single.script)
            await self.client.script_load(script.batched.script)

    def _replicated(self, replies: list[Any]) -> list[Any]:
        *replies, acknowledged = replies
        if isinstance(acknowledged, int) and acknowledged >= self.replicas:
            return replies
        error = NotReplicated(f"{acknowledged} of {self.replicas} replicas confirmed the write")
        return [error] * len(replies)


def _group(batch: list[_Call], by_slot: bool = False) -> list[list[_Call]]:
    """Calls of one script go together; on a cluster, only those whose keys share a slot."""
    groups: dict[tuple[int, int], list[_Call]] = defaultdict(list)
    for call in batch:
        slot = key_slot(call[1].encode()) if by_slot else 0
        groups[id(call[0]), slot].append(call)
    return list(groups.values())


def _spread(group: list[_Call], reply: Any) -> list[Any]:
    """A group's reply, one result per call (an error is every call's)."""
    if len(group) == 1 or isinstance(reply, Exception):
        return [reply] * len(group) if isinstance(reply, Exception) else [reply]
    return list(reply)


def _settle(calls: list[_Call], results: list[Any]) -> None:
    for (_, _, _, future), result in zip(calls, results, strict=True):
        if future.done():
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
