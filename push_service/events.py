"""Events for orchestrators: what happened to subscriptions and notifications.

Each event is a persistent JSON message on one durable topic exchange
(`EVENTS_EXCHANGE`, default `push.events`), routed by its name
(`subscription.gone`, `notification.completed`, ...), so a consumer binds a queue
of its own with the patterns it wants (`notification.*`, `#`). Every event carries
`event`, `event_id` and `occurred_at`; an event a redelivery can repeat has an
`event_id` derived from what it is about, so consumers can drop duplicates.

Publishing waits for the broker's confirm. It is `mandatory`, so the broker says when
no queue is bound for an event's name: such an event would only be dropped, so that
name is not published again for `LISTEN_PROBE_SECONDS` (then one is, to find out). A
queue bound to the exchange receives events from at most that long after it is bound,
and a service nobody listens to does not pay a confirmed publish per notification
(measured: about a sixth of the CPU a push costs). The one that finds out (the first
of a name, or the first after its window) goes alone: the others of that name wait for
its answer. Under a backlog the broker's answer takes a few hundred milliseconds, and
every notification completed meanwhile published an event nobody heard: a quarter of
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from push_service.broker import (
    ChannelKeeper,
    ConnectionProvider,
    json_properties,
    publish_confirmed,
)
from push_service.errors import NoRoute, Unroutable
from push_service.status import utc_now
from push_service.topology import declare_exchanges

log = logging.getLogger(__name__)
EXCHANGE_TYPE = "topic"
LISTEN_PROBE_SECONDS = 1.0


class Events:
    def __init__(self, provider: ConnectionProvider, exchange: str, timeout: float) -> None:
        self.exchange = exchange
        self.timeout = timeout
        self.channels = ChannelKeeper(provider, timeout, confirms=True)
        # event name -> monotonic time until which nobody was listening to it
        self._unheard: dict[str, float] = {}
        self._routed: set[str] = set()  # event names a queue took when last published
        # event name -> whether somebody listens, once the one emit finding out knows
        self._probes: dict[str, asyncio.Future[bool]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.exchange)

    def heard(self, event: str) -> bool:
        """Whether `emit(event)` would publish: events are on and somebody may listen."""
        return self.enabled and self._unheard.get(event, 0.0) <= time.monotonic()

    async def emit(
        self, event: str, body: Mapping[str, Any], *, event_id: str | None = None
    ) -> None:
        """Publish one event; BrokerUnavailable if the broker does not confirm it in time."""
        if not self.heard(event):
            return
        probe = self._probes.get(event)
        if probe is not None and not await asyncio.shield(probe):
            return  # the emit that went to find out heard that nobody listens yet
        event_id = event_id or uuid.uuid4().hex
        document = {"event": event, "event_id": event_id, "occurred_at": utc_now(), **body}
        body_bytes = orjson.dumps(document)
        if event in self._routed or probe is not None:
            await self._send(event, event_id, body_bytes)
            return
        # Nobody listened when last published, or none was yet: this one finds out for all.
        probe = self._probes[event] = asyncio.get_running_loop().create_future()
        try:
            await self._send(event, event_id, body_bytes)
        finally:
            del self._probes[event]
            probe.set_result(self.heard(event))  # on an error, the others try on their own
        if self.heard(event):
            self._unheard.pop(event, None)
            self._routed.add(event)

    async def _send(self, event: str, event_id: str, body: bytes) -> None:
        try:
            await self._publish(event, event_id, body)
        except NoRoute:
            self._routed.discard(event)
            self._unheard[event] = time.monotonic() + LISTEN_PROBE_SECONDS
        except Unroutable:
            # The exchange was deleted under us: declare it again, then try once more.
            connection = self.channels.provider.connection
            if connection is None:
                raise
            log.warning("exchange %s is missing; declaring it again", self.exchange)
            await declare_exchanges(connection, {self.exchange: EXCHANGE_TYPE})
            with contextlib.suppress(NoRoute):
                await self._publish(event, event_id, body)

    async def _publish(self, event: str, event_id: str, body: bytes) -> None:
        properties = json_properties(event_id)
        properties.message_type = event
        channel = await self.channels.get()
        await publish_confirmed(
            channel,
            event,
            body,
            timeout=self.timeout,
            properties=properties,
            exchange=self.exchange,
            mandatory=True,
        )

    async def close(self) -> None:
        await self.channels.close()
