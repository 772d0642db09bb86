"""Resolving an audience (`{"user_id"}` or `{"topic"}`) into queue messages of devices.

Web Push has no multicast: a topic of 100,000 subscribers is 100,000 pushes, and one
process holding them all would be one OOM away from losing the fan-out. So the
message with the audience is not delivered where it lands. Its resolver reads the
registry `FANOUT_CHUNK_SIZE` subscriptions at a time and publishes each chunk as its
own queue message (confirmed): the original message with `devices` in place of
`audience` and the header `x-push-fanout`. Every replica consuming the queue takes
chunks, and no process holds more than a chunk of the audience.

The record counts each chunk's devices as it is published (`status.fanout`), with
the registry cursor after it: the redelivery of a resolver that crashed resumes
after the last counted chunk. A chunk published but not yet counted when it crashed
is published again under the same message id; its devices' outcomes are kept per
device, so a device that accepted it is not pushed twice.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from typing import Any

import orjson
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.common import FieldValue

from push_service.deadline import publisher_time
from push_service.delivery import Delivery
from push_service.models import Notification, off_loop, without_bom
from push_service.registry import Registry, Subscription
from push_service.status.fanout import FanoutLedger
from push_service.topology import Topology, publish_declared

log = logging.getLogger(__name__)

FANOUT_HEADER = "x-push-fanout"  # on a chunk: the registry cursor it starts after
# Broker-managed headers: a stale copy on a chunk would mislead its consumer.
_BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death-exchange",
                   "x-first-death-queue", "x-first-death-reason")  # fmt: skip


def is_chunk(message: DeliveredMessage) -> bool:
    return FANOUT_HEADER in (message.header.properties.headers or {})


def chunk_cursor(message: DeliveredMessage) -> str:
    value = (message.header.properties.headers or {}).get(FANOUT_HEADER)
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Fanout:
    def __init__(
        self,
        registry: Registry,
        ledger: FanoutLedger,
        delivery: Delivery,
        topology: Topology,
        *,
        chunk_size: int,
        timeout: float,
    ) -> None:
        self.registry = registry
        self.ledger = ledger
        self.delivery = delivery
        self.topology = topology
        self.chunk_size = chunk_size
        self.timeout = timeout

    async def resolve(self, n: Notification, message: DeliveredMessage) -> str:
        """Publish the audience's devices in chunks; returns the record's status after.

        Raises DuplicateNotification (another notification holds the id), BrokerUnavailable
        and the Redis errors: the message is then dead-lettered or requeued as any other.
        """
        audience = n.audience
        assert audience is not None
        published = publisher_time(message.header.properties.timestamp, time.time())
        await self.delivery.begin(n, published)
        state, cursor = await self.delivery.stored(
            lambda: self.ledger.start(n.notification_id, audience.describe())
        )
        if state != "resolving":
            return await self._status(n.notification_id)  # a redelivery of a finished fan-out
        original = await off_loop(orjson.loads, without_bom(message.body))
        original.pop("audience", None)
        if audience.user_id is not None and original.get("user_id") is None:
            original["user_id"] = audience.user_id  # whom gone subscriptions are reported for
        chunks = self.registry.chunks(
            user_id=audience.user_id, topic=audience.topic, size=self.chunk_size, after=cursor
        )
        status = "processing"
        async for chunk, after in chunks:
            if chunk:
                await self._publish(message, original, n.notification_id, cursor, chunk)
            step = await self.delivery.stored(
                functools.partial(self.ledger.step, n.notification_id, cursor, after, len(chunk))
            )
            if not step.taken:
                log.info("another resolver is ahead on notification %s", n.notification_id)
                return step.status
            status, cursor = step.status, after or ""
        return status

    async def _publish(
        self,
        message: DeliveredMessage,
        original: dict[str, Any],
        notification_id: str,
        cursor: str,
        chunk: list[Subscription],
    ) -> None:
        body = orjson.dumps({**original, "devices": [s.message_device() for s in chunk]})
        digest = hashlib.sha256(cursor.encode()).hexdigest()[:16]
        properties = _chunk_properties(
            message.header.properties, f"{notification_id[:96]}/fanout/{digest}", cursor
        )
        await publish_declared(
            message.channel,
            self.topology,
            self.topology.queue,
            body,
            timeout=self.timeout,
            properties=properties,
        )

    async def _status(self, notification_id: str) -> str:
        record = await self.delivery.stored(lambda: self.delivery.store.get(notification_id))
        return str(record["status"]) if record else "processing"


def _chunk_properties(
    original: spec.Basic.Properties, message_id: str, cursor: str
) -> spec.Basic.Properties:
    """The publisher's properties (its timestamp fixes the deadline), a message id of
    the chunk's own (the same on a re-publish), and the chunk marker."""
    headers: dict[str, FieldValue] = {
        k: v for k, v in (original.headers or {}).items() if k not in _BROKER_HEADERS
    }
    headers[FANOUT_HEADER] = cursor
    headers.setdefault("x-push-original-message-id", original.message_id or "")
    return spec.Basic.Properties(
        content_type="application/json",
        headers=headers,
        delivery_mode=2,
        priority=original.priority,
        correlation_id=original.correlation_id,
        message_id=message_id,
        timestamp=original.timestamp,
        app_id=original.app_id,
    )
