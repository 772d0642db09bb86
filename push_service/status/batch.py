"""Sends the script calls made while a Redis round trip is under way as one pipeline.

Hundreds of messages in flight each make one or two small script calls; one pipeline
per event-loop turn instead of one round trip each is most of the difference between
a few hundred and a few thousand messages per second.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

CALL_TIMEOUT = 5.0  # a paused or unreachable Redis fails a call after this

_Call = tuple[AsyncScript, list[Any], list[Any], "asyncio.Future[Any]"]


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
        self.replicas = replicas
        self.timeout_ms = max(1, round(timeout * 1000))
        self.queue: list[_Call] = []
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

    async def _send(self, batch: list[_Call], reload_scripts: bool = True) -> None:
        try:
            async with (
                asyncio.timeout(CALL_TIMEOUT),
                self.client.pipeline(transaction=False) as pipe,
            ):
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                if self.replicas:
                    pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
                results = await pipe.execute(raise_on_error=False)
            if self.replicas:
                results = self._replicated(results)
            if reload_scripts and any(isinstance(r, NoScriptError) for r in results):
                # Redis restarted or failed over and lost its script cache: load, resend.
                for script in {id(s): s for s, _, _, _ in batch}.values():
                    await self.client.script_load(script.script)
                return await self._send(batch, reload_scripts=False)
        except Exception as exc:  # every waiter gets the error
            results = [exc] * len(batch)
        self._settle(batch, results)

    def _replicated(self, results: list[Any]) -> list[Any]:
        *results, acknowledged = results
        if isinstance(acknowledged, int) and acknowledged >= self.replicas:
            return results
        error = NotReplicated(f"{acknowledged} of {self.replicas} replicas confirmed the write")
        return [error] * len(results)

    @staticmethod
    def _settle(batch: list[_Call], results: list[Any]) -> None:
        for (_, _, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
