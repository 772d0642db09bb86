"""Queue depth from the service itself: `push_queue_messages{queue}` for the queues it uses.

Every `interval` seconds a passive `queue_declare` per queue, on a channel of its own on
the supervised connection (the consumer's channel is never put at risk), reads the number
of ready messages. Dashboards and alerts then need nothing but the service's /metrics:
no RabbitMQ exporter or management plugin.

A passive declare of a missing queue closes the channel (404 NOT_FOUND): that queue's
series is removed and the next queue gets a new channel. While RabbitMQ is not connected
all series are removed, so a dashboard shows a gap rather than a stale depth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import aiormq

from push_service.broker import AMQP_ERRORS, ChannelKeeper, ConnectionProvider
from push_service.errors import BrokerUnavailable
from push_service.metrics import Metrics

log = logging.getLogger(__name__)

QueueNames = Callable[[], Iterable[str]]


class QueueDepthMonitor:
    def __init__(
        self,
        provider: ConnectionProvider,
        queues: QueueNames,
        metrics: Metrics,
        *,
        interval: float = 15.0,
        timeout: float = 5.0,
    ) -> None:
        self.queues = queues
        self.metrics = metrics
        self.interval = interval
        self.timeout = timeout
        self._channels = ChannelKeeper(provider, timeout, confirms=False)
        self._task: asyncio.Task[None] | None = None
        self._reported: set[str] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-depth-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._channels.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue depth poll failed")
            await asyncio.sleep(self.interval)

    async def poll(self) -> dict[str, int]:
        """Read every queue's depth once; returns what was set (missing queues left out)."""
        names = list(dict.fromkeys(self.queues()))
        depths: dict[str, int] = {}
        for name in names:
            depth = await self._depth(name)
            if depth is not None:
                depths[name] = depth
        self._publish(depths)
        return depths

    async def _depth(self, queue: str) -> int | None:
        try:
            channel = await self._channels.get()
        except BrokerUnavailable:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                declared = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None  # the broker closed the channel; the next queue gets a new one
        except (TimeoutError, *AMQP_ERRORS) as exc:
            log.debug("queue depth of %s unavailable: %s", queue, type(exc).__name__)
            await self._channels.close()
            return None
        return int(declared.message_count or 0)

    def _publish(self, depths: dict[str, int]) -> None:
        for queue in self._reported - depths.keys():
            self.metrics.queue_messages.remove(queue=queue)
        for queue, depth in depths.items():
            self.metrics.queue_messages.set(depth, queue=queue)
        self._reported = set(depths)
