"""Dead letters: a message the service cannot handle goes to `<queue>.dlq` as it came.

Never requeued in a loop, never dropped: the copy keeps the original body and
properties (content type and encoding, message id, timestamp, the publisher's
headers), so a fixed message can be replayed faithfully, and adds the reason headers.
When the message names a notification, its status record says why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.common import FieldValue

from push_service.metrics import Metrics
from push_service.models import device_key, off_loop, peek_notification_id, without_bom
from push_service.status import DeviceOutcome, StatusStore
from push_service.topology import Topology, publish_declared

log = logging.getLogger(__name__)
T = TypeVar("T")
Stored = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]


class DeadLetters:
    def __init__(
        self,
        topology: Topology,
        store: StatusStore,
        stored: Stored[Any],
        metrics: Metrics,
        *,
        timeout: float,
        max_message_bytes: int,
    ) -> None:
        self.topology = topology
        self.store = store
        self.stored = stored
        self.metrics = metrics
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes

    async def send(
        self, message: DeliveredMessage, code: str, detail: str, *, refused: bool = True
    ) -> None:
        """Publish to the DLQ (confirmed), then record the failure; raises BrokerUnavailable.

        `refused`: the message is not the notification on record under its id (invalid,
        or a different one); otherwise it is that notification, given up.
        """
        reason = f"{code}: {detail}"[:1000]
        notification_id = peek_notification_id(message.body)
        headers: dict[str, FieldValue] = {
            "x-death-reason": reason,
            "x-original-queue": self.topology.queue,
        }
        if notification_id:
            headers["x-notification-id"] = notification_id
        await self._publish(message, dead_letter_properties(message.header.properties, headers))
        if notification_id:
            devices = await self._devices(message.body, code, detail)
            await self.stored(
                lambda: self.store.fail(notification_id, reason, devices, refused=refused)
            )
        self.metrics.dead_lettered.inc(reason=code)
        self.metrics.messages.inc(result="dead_lettered")
        log.warning(
            "dead-lettered a message: %s",
            reason,
            extra={"notification_id": notification_id, "reason": code},
        )

    async def _publish(self, message: DeliveredMessage, properties: spec.Basic.Properties) -> None:
        await publish_declared(
            message.channel,
            self.topology,
            self.topology.dead_letter_queue,
            message.body,
            timeout=self.timeout,
            properties=properties,
        )

    async def _devices(self, body: bytes, code: str, detail: str) -> list[DeviceOutcome]:
        """The message's devices, as far as they can be read, each failed with the reason."""
        if len(body) > self.max_message_bytes:
            return []
        endpoints = await off_loop(_endpoints, body)
        return [
            DeviceOutcome(device_key(e), e, "failed", None, code, 0, detail=detail)
            for e in endpoints
        ]


def _endpoints(body: bytes) -> list[str]:
    try:
        obj = orjson.loads(without_bom(body))
    except orjson.JSONDecodeError:
        return []
    devices = obj.get("devices") if isinstance(obj, dict) else None
    if not isinstance(devices, list):
        return []
    found = (d.get("endpoint") for d in devices if isinstance(d, dict))
    return list(dict.fromkeys(e[:2048] for e in found if isinstance(e, str) and e))


def dead_letter_properties(
    original: spec.Basic.Properties, reason: dict[str, FieldValue]
) -> spec.Basic.Properties:
    """The original's properties and headers plus the reason headers.

    Not `user_id` (the broker refuses one that is not the publishing user) nor
    `expiration` (a dead letter waits for an operator, however long).
    """
    return spec.Basic.Properties(
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        headers={**(original.headers or {}), **reason},
        delivery_mode=2,
        priority=original.priority,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        message_id=original.message_id,
        timestamp=original.timestamp,
        message_type=original.message_type,
        app_id=original.app_id,
    )
