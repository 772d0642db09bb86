"""Keeps a RabbitMQ connection and the consumer alive, rebuilding both after any fault.

aiormq does not reconnect by itself. A session is: connect, open a channel,
declare the topology, attach the consumer, then wait until the connection or
the channel closes, or the broker cancels the consumer (a queue deleted, a node
lost). Then everything is rebuilt from scratch after a capped, jittered backoff.

Given several URLs (the nodes of one cluster), each new session goes to the next
node in the order given, wrapping around: a node that was lost or refused is left
for the next one at once, and the order an operator wrote is the order tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

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


class SideConsumer(Protocol):
    """Another consumer on the same connection (the report relay), on a channel of its own
    so its prefetch and its faults stay apart from the notification consumer's."""

    async def attach(self, channel: AbstractChannel) -> None: ...

    async def stop(self, grace: float) -> None: ...


CONNECT_TIMEOUT = 10.0


class BrokerSupervisor:
    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        topology: Topology,
        attach: Attach,
        drain: Drain,
        metrics: Metrics,
        side: Sequence[SideConsumer] = (),
        name: str = "push_service",
        min_delay: float = 0.2,
        max_delay: float = 15.0,
    ) -> None:
        """`name` is the connection name operators see in RabbitMQ (`list_connections`)."""
        self.name = name
        self.urls = (urls,) if isinstance(urls, str) else tuple(urls)
        if not self.urls:
            raise ValueError("BrokerSupervisor needs at least one URL")
        self._node = 0  # index into urls of the node the current or next session uses
        self.topology = topology
        self.attach = attach
        self.drain = drain
        self.side = tuple(side)
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

    @property
    def url(self) -> str:
        """The node the current session uses, or the next one tries."""
        return self.urls[self._node]

    @property
    def node(self) -> str | None:
        """The node in use (password masked), None while not connected."""
        return redact_url(self.url) if self.connection is not None else None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broker-supervisor")

    async def stop(self, grace: float) -> None:
        """Stop consuming, drain in-flight work within `grace`, then close the connection."""
        self._stopping.set()
        await asyncio.gather(self.drain(grace), *(c.stop(grace) for c in self.side))
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
            self._next_node()
            await self._backoff(failures)

    def _next_node(self) -> None:
        if len(self.urls) > 1:
            self._node = (self._node + 1) % len(self.urls)
            log.info("next RabbitMQ node: %s", redact_url(self.url))

    async def _backoff(self, failures: int) -> None:
        ceiling = min(self.max_delay, self.min_delay * 2 ** max(failures - 1, 0))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()

    async def _session(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            connection = await aiormq.connect(
                self.url, client_properties={"connection_name": self.name}
            )
        self.connection = connection
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                self._warn_once(await declare_topology(connection, self.topology))
                channel = await connection.channel(publisher_confirms=True)
                cancelled = asyncio.Event()
                channel.on_consumer_cancel_callbacks.add(lambda _frame: cancelled.set())
                await self.attach(channel)
                channels = [channel]
                for consumer in self.side:
                    side = await connection.channel(publisher_confirms=True)
                    side.on_consumer_cancel_callbacks.add(lambda _frame: cancelled.set())
                    channels.append(side)
                    await consumer.attach(side)
            self.sessions += 1
            self.metrics.broker_sessions.inc(node=node_label(self.url))
            self._set_consuming(True)
            log.info("consuming %s from %s", self.topology.queue, redact_url(self.url))
            await self._wait_for_end(connection, channels, cancelled)
        finally:
            self.connection = None
            self._set_consuming(False)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await connection.close()

    async def _wait_for_end(
        self,
        connection: AbstractConnection,
        channels: Sequence[AbstractChannel],
        cancelled: asyncio.Event,
    ) -> None:
        # The closing futures belong to aiormq: wait on them, never cancel them.
        closing = {connection.closing, *(channel.closing for channel in channels)}
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
        errors = [f.exception() for f in done if not f.cancelled() and f.exception() is not None]
        if errors:
            self.last_error = repr(errors[0])
            if not self._close.is_set():
                log.warning("lost RabbitMQ node %s: %s", redact_url(self.url), self.last_error)

    def _warn_once(self, warnings: list[str]) -> None:
        # A peer's queue with other arguments is worth one line, not one per reconnect.
        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("%s", warning)

    def _set_consuming(self, value: bool) -> None:
        self.consuming = value
        self.metrics.connected.set(1.0 if value else 0.0)


def node_label(url: str) -> str:
    """host:port of an AMQP URL: a metric label with no credentials in it."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
