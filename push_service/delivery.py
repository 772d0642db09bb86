"""Delivering one notification to all its devices, with the outcomes in Redis.

The work behind one queue message, free of RabbitMQ: the consumer hands over a
validated `Notification` and acks only when `deliver` returns. The first delivery
fixes the notification's deadline; devices that already have an outcome (a
redelivery, a parked retry coming back) are skipped, so nothing is pushed twice to a
device that accepted it. Devices to be retried later come back in the result,
already recorded as `retrying`: the consumer parks them before it acks.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from push_service.deadline import Deadline, first_deadline
from push_service.metrics import Metrics
from push_service.models import Device, Notification
from push_service.pusher import PushContext, Pusher
from push_service.refusals import Refusals
from push_service.retry import RetryPolicy, call_with_retries
from push_service.status import Begun, DeviceOutcome, DeviceRetry, RedisUnavailable, StatusStore

T = TypeVar("T")

# Sends a fan-out starts between two turns of the event loop (each encrypts at once).
FANOUT_BURST = 16
# Redis may pause or fail over: hold the message and wait (prefetch bounds how many are
# held) rather than requeue it at once and push twice on redelivery. Well below the
# broker's 30-minute consumer_timeout.
STORE_RETRY = RetryPolicy(max_tries=10_000, max_seconds=600.0, base_delay=0.05, max_delay=5.0)


@dataclass(frozen=True)
class DeliveryResult:
    status: str  # of the record: processing | sent | failed | cancelled
    retries: Sequence[DeviceRetry] = ()  # recorded as retrying; to be parked
    outcomes: Sequence[DeviceOutcome] = ()  # final outcomes this delivery recorded
    whole: bool = False  # `outcomes` are every device of the notification
    deadline: float | None = None  # epoch seconds; parked copies need not outlive it


def cancelled(device: Device) -> DeviceOutcome:
    return DeviceOutcome(device.key, device.endpoint, "cancelled", None, "cancelled", 0)


def fingerprint(n: Notification) -> str:
    """What makes two messages the same notification: what the devices receive, and how."""
    digest = hashlib.sha256(n.payload)
    digest.update(f"\0{n.ttl}\0{n.urgency}\0{n.topic}".encode())
    return digest.hexdigest()[:32]


@dataclass
class _OutcomeWriter:
    """Coalesces device outcomes into few Redis calls while keeping each one durable.

    `write` returns once the outcome is stored; outcomes that arrive while a write
    is under way go together in the next one.
    """

    delivery: Delivery
    notification_id: str
    pending: list[DeviceOutcome | DeviceRetry] = field(default_factory=list)
    retries: list[DeviceRetry] = field(default_factory=list)
    finals: list[DeviceOutcome] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status: str | None = None

    async def write(self, outcome: DeviceOutcome | DeviceRetry) -> None:
        await self.write_all([outcome])

    async def write_all(self, outcomes: Sequence[DeviceOutcome | DeviceRetry]) -> None:
        for outcome in outcomes:
            self.pending.append(outcome)
            if isinstance(outcome, DeviceRetry):
                self.retries.append(outcome)
            else:
                self.finals.append(outcome)
        async with self.lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, []
            store = self.delivery.store
            self.status = await self.delivery.stored(
                lambda: store.record(self.notification_id, batch)
            )


class Delivery:
    def __init__(
        self,
        pusher: Pusher,
        store: StatusStore,
        metrics: Metrics,
        *,
        default_ttl: int,
        retry_window: float,
        concurrency: int,
    ) -> None:
        self.pusher = pusher
        self.refusals = Refusals(pusher.circuits, metrics)
        self.store = store
        self.metrics = metrics
        self.default_ttl = default_ttl
        self.retry_window = retry_window
        self.concurrency = concurrency

    async def stored(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a status-store call, waiting out a short Redis outage."""
        return await call_with_retries(operation, STORE_RETRY, RedisUnavailable)

    async def deliver(
        self,
        n: Notification,
        *,
        published: float | None = None,
        arrived: float | None = None,
        parked: int = 0,
    ) -> DeliveryResult:
        """Push to every device not yet done and record each outcome.

        `published` is the publisher's timestamp (epoch seconds) if plausible; `arrived`
        (monotonic) when the message reached this process; `parked` how often it was
        parked before. Raises DuplicateNotification when another notification holds the id.
        """
        ttl = self.default_ttl if n.ttl is None else n.ttl
        first = self._first_deadline(n, published)
        held = self.refusals.retries(n, Deadline(first, ttl))
        begun = await self._begin(n, first, held)
        deadline = Deadline(begun.deadline, ttl)
        if begun.held:  # recorded as retrying with the record: to be held (`refusals`)
            self.refusals.held(n, held)
            return DeliveryResult("processing", held, deadline=deadline.at)
        context = PushContext(deadline, time.monotonic() if arrived is None else arrived, parked)
        writer = _OutcomeWriter(self, n.notification_id)
        await self._record_rejected(n, begun, writer)
        pending = [d for d in n.devices if d.key not in begun.done]
        if begun.cancelled and pending:  # DELETE /notifications/{id}: none is pushed
            await writer.write_all([cancelled(d) for d in pending])
            pending = []

        async def one(device: Device) -> None:
            previous = begun.retrying.get(device.key)
            result = await self.pusher.push(n, device, context, previous)
            if result is previous and previous is not None:
                writer.retries.append(previous)  # on record as it is: park it again
            else:
                await writer.write(result)

        if len(pending) == 1:
            await one(pending[0])
        elif pending:
            await self._fan_out(pending, one)
        if writer.status is None:
            # A redelivery of finished work: nothing new to write, just read the status back.
            writer.status = await self.stored(lambda: self.store.record(n.notification_id, []))
        whole = begun.new and len(writer.finals) == len(n.devices) + len(n.rejected)
        return DeliveryResult(writer.status, writer.retries, writer.finals, whole, deadline.at)

    async def begin(self, n: Notification, published: float | None) -> Begun:
        """Start (or resume) the record. A chunk of an audience counts no devices: its
        resolver counted them when it published it (`status.fanout`)."""
        return await self._begin(n, self._first_deadline(n, published))

    def _first_deadline(self, n: Notification, published: float | None) -> float:
        ttl = self.default_ttl if n.ttl is None else n.ttl
        if n.send_at is not None:  # scheduled: its TTL counts from send_at
            published = n.send_at
        return first_deadline(time.time(), published, ttl, self.retry_window)

    async def _begin(
        self, n: Notification, deadline: float, held: Sequence[DeviceRetry] = ()
    ) -> Begun:
        """`begin` with the deadline of a first delivery, and retries to write with a
        new record (`refusals`)."""
        if n.chunk:
            keys = [d.key for d in n.devices] + [r.key for r in n.rejected]
            return await self.stored(
                lambda: self.store.begin_chunk(
                    n.notification_id, keys, fingerprint=fingerprint(n), deadline=deadline
                )
            )
        total = len(n.devices) + len(n.rejected)
        return await self.stored(
            lambda: self.store.begin(
                n.notification_id,
                n.user_id,
                total,
                fingerprint=fingerprint(n),
                deadline=deadline,
                user_verified=n.user_verified,
                held=held,
            )
        )

    async def _record_rejected(self, n: Notification, begun: Begun, writer: _OutcomeWriter) -> None:
        for rejected in n.rejected:
            if rejected.key not in begun.done:
                self.metrics.pushes.inc(outcome=rejected.reason, host="-")
                await writer.write(
                    DeviceOutcome(
                        rejected.key,
                        rejected.endpoint,
                        "failed",
                        None,
                        rejected.reason,
                        0,
                        detail=rejected.detail,
                    )
                )

    async def _fan_out(
        self, devices: list[Device], one: Callable[[Device], Coroutine[Any, Any, None]]
    ) -> None:
        # Bound the tasks alive at once, so a 10,000-device message holds little memory.
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as group:
            for started, device in enumerate(devices, 1):
                await slots.acquire()
                task = group.create_task(one(device))
                task.add_done_callback(lambda _: slots.release())
                if started % FANOUT_BURST == 0:
                    # Each new task encrypts at once (~0.1 ms): start them a few at a
                    # time so the loop keeps serving heartbeats and responses.
                    await asyncio.sleep(0)
