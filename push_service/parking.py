"""Parked retries: devices to push later wait in RabbitMQ, not in the consumer.

A ladder of delay queues `<queue>.delay.<step>`, one per step, each with a queue-level
message TTL that dead-letters expired messages back to the main queue. Every RabbitMQ
has this, classic and quorum queues alike, without plugins; one TTL per queue keeps
expiry in order (a per-message TTL only expires at the head). Parked copies are
persistent and the queues durable, so they survive restarts of the service and of the
broker; quorum delay queues dead-letter at-least-once.

A parked copy is the original message with only the devices to retry, so a
10,000-device message with 100 failures parks 100 devices. A wait longer than a step
is made of several: a copy that comes back early is parked again for the rest (the
device's `next_attempt_at` is on record), so no request is made before it is due.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.common import FieldValue

from push_service.hold import Hold
from push_service.metrics import Metrics
from push_service.models import off_loop, without_bom
from push_service.status import DeviceRetry
from push_service.topology import Arguments, Topology, back_to_main, publish_declared

# Take the next longer step when it overshoots the wait by at most half of it; else the
# longest step within the wait, and the rest in further steps.
ROUND_UP = 1.5
# Headers the broker manages per queue: a stale copy would mislead the consumer.
_BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death-exchange",
                   "x-first-death-queue", "x-first-death-reason")  # fmt: skip


@dataclass(frozen=True)
class Ladder:
    steps: tuple[float, ...]  # seconds, ascending

    def step_for(self, wait: float) -> float:
        longer = [step for step in self.steps if step >= wait]
        shorter = [step for step in self.steps if step < wait]
        if longer and (longer[0] <= wait * ROUND_UP or not shorter):
            return longer[0]
        return shorter[-1]

    def queues(self, topology: Topology) -> dict[str, Arguments]:
        return {self.queue(topology.queue, s): self._arguments(topology, s) for s in self.steps}

    @staticmethod
    def queue(main: str, step: float) -> str:
        # Not `:g`: it writes 1000000 as "1e+06", the same name as 1000001 (another TTL).
        label = f"{int(step)}s" if step >= 1 and step == int(step) else f"{round(step * 1000)}ms"
        return f"{main}.delay.{label}"

    @staticmethod
    def _arguments(topology: Topology, step: float) -> Arguments:
        return {"x-message-ttl": round(step * 1000), **back_to_main(topology)}


def service_topology(
    queue: str,
    queue_type: str,
    ladder: Ladder,
    exchanges: dict[str, str] | None = None,
    queues: dict[str, Arguments] | None = None,
) -> Topology:
    """Everything the service declares: the main queue, its DLQ, the delay steps,
    `exchanges` (the events exchange) and other `queues` (the reports')."""
    base = Topology(queue, queue_type)
    extra = {**ladder.queues(base), **(queues or {})}
    return Topology(queue, queue_type, extra, dict(exchanges or {}))


class Parking:
    """Publishes the devices to retry of a message to the delay step that fits their wait,
    or, for a push service whose circuit is open, to its hold queue (`hold`)."""

    def __init__(
        self,
        ladder: Ladder,
        topology: Topology,
        timeout: float,
        metrics: Metrics,
        hold: Hold | None = None,
    ):
        self.ladder = ladder
        self.topology = topology
        self.timeout = timeout
        self.metrics = metrics
        self.hold = hold

    async def park(
        self,
        message: DeliveredMessage,
        retries: Sequence[DeviceRetry],
        *,
        whole: bool,
        deadline: float | None = None,
    ) -> None:
        """Publish (confirmed) one copy per delay step and per held origin;
        BrokerUnavailable if that fails.

        `whole`: every device of the message is to be retried (a copy coming back to a
        push service still down, mostly); one copy then takes the body as it is.
        `deadline` (epoch seconds): held copies expire then.
        """
        now = time.time()
        groups: dict[float, set[str]] = defaultdict(set)
        held: dict[str, set[str]] = defaultdict(set)
        for retry in retries:
            origin = self.hold.origin_for(retry) if self.hold is not None else None
            if origin is not None:
                held[origin].add(retry.endpoint)
            else:
                groups[self.ladder.step_for(retry.not_before - now)].add(retry.endpoint)
        hops = times_parked(message) + 1
        single = whole and len(groups) + len(held) == 1
        original = None if single else await _load(message.body)

        def body(endpoints: set[str]) -> bytes:
            if original is None:
                return message.body
            return orjson.dumps(_with_devices(original, endpoints))

        for origin, endpoints in held.items():
            assert self.hold is not None
            properties = parked_properties(message.header.properties, hops)
            await self.hold.hold(message.channel, origin, body(endpoints), properties, deadline)
        for step, endpoints in groups.items():
            queue = self.ladder.queue(self.topology.queue, step)
            await self._publish(message, queue, body(endpoints), hops)
            self.metrics.parked.inc()

    async def _publish(self, message: DeliveredMessage, queue: str, body: bytes, hops: int) -> None:
        properties = parked_properties(message.header.properties, hops)
        await publish_declared(
            message.channel, self.topology, queue, body, timeout=self.timeout, properties=properties
        )


def parked_properties(original: spec.Basic.Properties, hops: int) -> spec.Basic.Properties:
    """The copy's properties: the publisher's, a new message id, and the hop count."""
    headers: dict[str, FieldValue] = {
        k: v for k, v in (original.headers or {}).items() if k not in _BROKER_HEADERS
    }
    headers["x-push-parked"] = hops
    headers.setdefault("x-push-original-message-id", original.message_id or "")
    return spec.Basic.Properties(
        content_type="application/json",  # the copy is re-serialised JSON, never encoded
        headers=headers,
        delivery_mode=2,
        priority=original.priority,
        correlation_id=original.correlation_id,
        message_id=uuid.uuid4().hex,  # its own redelivery count
        timestamp=original.timestamp,
        message_type=original.message_type,
        app_id=original.app_id,
    )


def times_parked(message: DeliveredMessage) -> int:
    hops = (message.header.properties.headers or {}).get("x-push-parked")
    return hops if isinstance(hops, int) else 0


async def _load(body: bytes) -> dict[str, Any]:
    loaded = await off_loop(orjson.loads, without_bom(body))
    assert isinstance(loaded, dict)  # it was validated before it was delivered
    return loaded


def _with_devices(original: dict[str, Any], endpoints: set[str]) -> dict[str, Any]:
    devices = [
        d for d in original["devices"] if isinstance(d, dict) and d.get("endpoint") in endpoints
    ]
    return {**original, "devices": devices}
