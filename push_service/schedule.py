"""Scheduled sends: a message with `send_at` ahead waits in RabbitMQ, not in the service.

It waits in the same kind of delay queues as parked retries (`<queue>.delay.<step>`,
queue-level TTL, dead-lettered back to the main queue; no plugin), with steps long
enough that a month is a dozen hops or so. Each hop takes the longest step that does
not pass `send_at`, so a copy never comes back late by more than the shortest step;
the last fraction of a second (`FINAL_WAIT`) is waited here, unacked, so the push
leaves on time. Every hop is a persistent copy published with a confirm before the
delivery is acked: a SIGKILL of the service or a broker restart loses nothing, and a
copy published twice (a crash between publish and ack) is pushed once, because the
status record keeps each device's first outcome.

The record reads `scheduled` (with `send_at`) from the first hop; a cancelled one
(`DELETE /notifications/{id}`) is not parked again but delivered at once, which
records its devices `cancelled` without pushing them.
"""

from __future__ import annotations

import asyncio
import math
import time

from aiormq.abc import DeliveredMessage

from push_service.config import Settings
from push_service.deadline import publisher_time, to_iso
from push_service.delivery import fingerprint
from push_service.metrics import Metrics
from push_service.models import Notification
from push_service.models.send_at import check_send_at
from push_service.parking import Ladder, parked_properties, times_parked
from push_service.status.control import RecordControl
from push_service.topology import Arguments, Topology, publish_declared

# Seconds; each about three times the last, up to 11.6 days (RabbitMQ TTLs are 32-bit ms).
SCHEDULE_STEPS = (
    0.5, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0,
    10_000.0, 30_000.0, 100_000.0, 300_000.0, 1_000_000.0,
)  # fmt: skip
# A wait this short is waited in process: a delay queue would bring it back up to a step late.
FINAL_WAIT = 0.5
SCHEDULE_HEADER = "x-push-scheduled"  # hops a scheduled copy has made


def schedule_step(steps: tuple[float, ...], wait: float) -> float:
    """The longest step within `wait` (never past it), else the shortest."""
    within = [step for step in steps if step <= wait]
    return within[-1] if within else steps[0]


def scheduled_queues(settings: Settings) -> dict[str, Arguments]:
    """The delay queues scheduled messages use (those the retries share have the same TTL)."""
    main = Topology(settings.rabbitmq_queue_name, settings.rabbitmq_queue_type)
    return Ladder(SCHEDULE_STEPS).queues(main)


class Scheduler:
    def __init__(
        self,
        topology: Topology,
        control: RecordControl,
        metrics: Metrics,
        *,
        max_days: float,
        record_ttl: int,
        timeout: float,
    ) -> None:
        self.topology = topology
        self.control = control
        self.metrics = metrics
        self.max_days = max_days
        self.record_ttl = record_ttl
        self.timeout = timeout

    async def hold(self, n: Notification, message: DeliveredMessage) -> bool:
        """True when the message was parked until nearer its `send_at` (ack it); False
        when it is due now. ValidationError when `send_at` is out of bounds, measured
        from the publish time (the same on every hop), else from now."""
        assert n.send_at is not None
        now = time.time()
        if hops_of(message) == 0:  # first sight: later hops may come back late, legitimately
            published = publisher_time(message.header.properties.timestamp, now)
            check_send_at(n.send_at, now if published is None else published, self.max_days)
        wait = n.send_at - now
        if wait <= 0:
            return False
        cancelled = await self.control.schedule(
            n.notification_id,
            n.user_id,
            len(n.devices) + len(n.rejected),
            fingerprint=fingerprint(n),
            send_at=to_iso(n.send_at),
            ttl=self.record_ttl + math.ceil(wait),
            user_verified=n.user_verified,
        )
        if cancelled:
            return False
        if wait <= FINAL_WAIT:
            await asyncio.sleep(wait)  # a timer, not a synchronisation: the push is due then
            return False
        await self._park(message, schedule_step(SCHEDULE_STEPS, wait))
        return True

    async def _park(self, message: DeliveredMessage, step: float) -> None:
        properties = parked_properties(message.header.properties, times_parked(message))
        properties.headers = {**(properties.headers or {}), SCHEDULE_HEADER: hops_of(message) + 1}
        queue = Ladder.queue(self.topology.queue, step)
        await publish_declared(
            message.channel, self.topology, queue, message.body,
            timeout=self.timeout, properties=properties,
        )  # fmt: skip
        self.metrics.parked.inc()


def hops_of(message: DeliveredMessage) -> int:
    hops = (message.header.properties.headers or {}).get(SCHEDULE_HEADER)
    return hops if isinstance(hops, int) else 0
