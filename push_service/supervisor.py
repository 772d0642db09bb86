"""Keeps a RabbitMQ connection and the consumer alive, rebuilding both after any fault.

aiormq does not reconnect by itself. A session is: connect, open a channel,
declare the topology, attach the consumer, then wait until the connection or
the channel closes, or the broker cancels the consumer (a queue deleted, a node
lost). Then everything is rebuilt from scratch after a capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection

from push_service.broker import AMQP_ERRORS
from push_service.config import redact_url
from push_service.errors import BrokerUnavailable
from push_service.metrics import Metrics
from push_service.topology import Topology, declare_topology

log = logging.getLogger(__name__)

Attach = Callable[[AbstractChannel], Awaitable[None]]
Drain = Callable[[float], Awaitable[None]]
CONNECT_TIMEOUT = 10.0


class BrokerSupervisor:
    def __init__(
        self,
        url: str,
        *,
        topology: Topology,
        attach: Attach,
        drain: Drain,
        metrics: Metrics,
        min_delay: float = 0.2,
        max_delay: float = 15.0,
    ) -> None:
        self.url = url
        self.topology = topology
        self.attach = attach
        self.drain = drain
        self.metrics = metrics
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.connection: AbstractConnection | None = None
        self.consuming = False
        self.last_error: str | None = None
        self.sessions = 0
        self._stopping = asyncio.Event()
        self._close = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned: set[str] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broker-supervisor")

    async def stop(self, grace: float) -> None:
        """Stop consuming, drain in-flight work within `grace`, then close the connection."""
        self._stopping.set()
        await self.drain(grace)
        self._close.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(10.0):
                    await self._task
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            sessions = self.sessions
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, BrokerUnavailable, *AMQP_ERRORS) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "RabbitMQ session at %s ended: %s", redact_url(self.url), self.last_error
                )
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("unexpected error in the RabbitMQ session")
            # Back off harder only while connecting keeps failing; a session that got
            # as far as consuming starts the count again.
            failures = 0 if self.sessions > sessions else failures + 1
            self._set_consuming(False)
            if self._stopping.is_set():
                break
            await self._backoff(failures)

    async def _backoff(self, failures: int) -> None:
        ceiling = min(self.max_delay, self.min_delay * 2 ** max(failures - 1, 0))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()

    async def _session(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            connection = await aiormq.connect(self.url)
        self.connection = connection
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                self._warn_once(await declare_topology(connection, self.topology))
                channel = await connection.channel(publisher_confirms=True)
                cancelled = asyncio.Event()
                channel.on_consumer_cancel_callbacks.add(lambda _frame: cancelled.set())
                await self.attach(channel)
            self.sessions += 1
            self._set_consuming(True)
            log.info("consuming %s from %s", self.topology.queue, redact_url(self.url))
            await self._wait_for_end(connection, channel, cancelled)
        finally:
            self.connection = None
            self._set_consuming(False)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await connection.close()

    async def _wait_for_end(
        self, connection: AbstractConnection, channel: AbstractChannel, cancelled: asyncio.Event
    ) -> None:
        # The closing futures belong to aiormq: wait on them, never cancel them.
        closing = {connection.closing, channel.closing}
        wakers = {
            asyncio.create_task(cancelled.wait()),
            asyncio.create_task(self._close.wait()),
        }
        try:
            done, _ = await asyncio.wait(closing | wakers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waker in wakers:
                waker.cancel()
        if cancelled.is_set():
            log.warning("the broker cancelled our consumer; reconnecting")
        for finished in done:
            if not finished.cancelled() and finished.exception() is not None:
                self.last_error = repr(finished.exception())

    def _warn_once(self, warnings: list[str]) -> None:
        # A peer's queue with other arguments is worth one line, not one per reconnect.
        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("%s", warning)

    def _set_consuming(self, value: bool) -> None:
        self.consuming = value
        self.metrics.connected.set(1.0 if value else 0.0)
