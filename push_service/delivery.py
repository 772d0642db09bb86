"""Delivering one notification to all its devices, with its outcome in Redis.

This is the work behind one queue message, free of RabbitMQ: the consumer hands
over a validated `Notification` and acks only when `deliver` returns. Devices that
already have an outcome (a redelivery) are skipped, so nothing is pushed twice to
a device that accepted it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from push_service.errors import PayloadTooLarge, PushError, SubscriptionGone, VapidRejected
from push_service.metrics import Metrics
from push_service.models import MAX_PLAINTEXT_BYTES, Device, Notification
from push_service.retry import RetryPolicy, call_with_retries
from push_service.status import DeviceOutcome, RedisUnavailable, StatusStore
from push_service.users import UserServiceClient
from push_service.webpush import PushOptions, WebPushSender

log = logging.getLogger(__name__)
T = TypeVar("T")

# Sends a fan-out starts between two turns of the event loop (each encrypts at once).
FANOUT_BURST = 16
# Redis may pause or fail over: hold the message and wait (prefetch bounds how many are
# held) rather than requeue it at once and push twice on redelivery. Well below the
# broker's 30-minute consumer_timeout.
STORE_RETRY = RetryPolicy(max_tries=10_000, max_seconds=600.0, base_delay=0.05, max_delay=5.0)


class _OutcomeWriter:
    """Coalesces device outcomes into few Redis calls while keeping each one durable.

    `write` returns once the outcome is stored; outcomes that arrive while a write
    is under way go together in the next one.
    """

    def __init__(self, delivery: Delivery, notification_id: str) -> None:
        self.delivery = delivery
        self.notification_id = notification_id
        self.pending: list[DeviceOutcome] = []
        self.lock = asyncio.Lock()
        self.status: str | None = None

    async def write(self, outcome: DeviceOutcome) -> None:
        self.pending.append(outcome)
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
        sender: WebPushSender,
        store: StatusStore,
        users: UserServiceClient,
        metrics: Metrics,
        *,
        push_retry: RetryPolicy,
        default_ttl: int,
        concurrency: int,
    ) -> None:
        self.sender = sender
        self.store = store
        self.users = users
        self.metrics = metrics
        self.push_retry = push_retry
        self.default_ttl = default_ttl
        self.concurrency = concurrency
        self._sends = asyncio.Semaphore(concurrency)

    async def stored(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a status-store call, waiting out a short Redis outage."""
        return await call_with_retries(operation, STORE_RETRY, RedisUnavailable)

    async def deliver(self, notification: Notification) -> str:
        """Push to every device not yet done and record each outcome; returns the status."""
        n = notification
        total = len(n.devices) + len(n.rejected)
        done = await self.stored(
            lambda: self.store.begin(n.notification_id, n.user_id, total, n.user_verified)
        )
        writer = _OutcomeWriter(self, n.notification_id)
        for rejected in n.rejected:
            if rejected.key not in done:
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
        pending = [d for d in n.devices if d.key not in done]
        options = PushOptions(
            ttl=self.default_ttl if n.ttl is None else n.ttl, urgency=n.urgency, topic=n.topic
        )
        if len(pending) == 1:
            await writer.write(await self.push(n, pending[0], options))
        elif pending:
            await self._fan_out(n, pending, options, writer)
        if writer.status is None:
            # A redelivery of finished work: nothing new to write, just read the status back.
            writer.status = await self.stored(lambda: self.store.record(n.notification_id, []))
        return writer.status

    async def _fan_out(
        self, n: Notification, devices: list[Device], options: PushOptions, writer: _OutcomeWriter
    ) -> None:
        # Bound the tasks alive at once, so a 10,000-device message holds little memory.
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as group:
            for started, device in enumerate(devices, 1):
                await slots.acquire()
                task = group.create_task(self._device(n, device, options, writer))
                task.add_done_callback(lambda _: slots.release())
                if started % FANOUT_BURST == 0:
                    # Each new task encrypts at once (~0.1 ms): start them a few at a
                    # time so the loop keeps serving heartbeats and responses.
                    await asyncio.sleep(0)

    async def _device(
        self, n: Notification, device: Device, options: PushOptions, writer: _OutcomeWriter
    ) -> None:
        outcome = await self.push(n, device, options)
        await writer.write(outcome)

    async def push(self, n: Notification, device: Device, options: PushOptions) -> DeviceOutcome:
        """Push to one device with retries; never raises a PushError, returns the outcome."""
        if len(n.payload) > MAX_PLAINTEXT_BYTES:
            too_large = PayloadTooLarge(
                f"payload is {len(n.payload)} bytes; at most {MAX_PLAINTEXT_BYTES} can be sent"
            )
            return await self._failed(n, device, too_large, 0)
        attempts = 0

        async def attempt() -> int:
            nonlocal attempts
            attempts += 1
            return await self._send_once(n, device, options)

        try:
            status = await call_with_retries(attempt, self.push_retry)
        except PushError as exc:
            return await self._failed(n, device, exc, attempts)
        finally:
            if attempts > 1:
                self.metrics.retries.inc(attempts - 1)
        return self._sent(n, device, status, attempts)

    async def _send_once(self, n: Notification, device: Device, options: PushOptions) -> int:
        async with self._sends:
            self.metrics.in_flight.inc()
            started = time.perf_counter()
            try:
                return await self.sender.send(device, n.payload, options)
            finally:
                self.metrics.in_flight.dec()
                self.metrics.push_latency.observe(time.perf_counter() - started)

    def _sent(self, n: Notification, device: Device, status: int, attempts: int) -> DeviceOutcome:
        self.metrics.pushes.inc(outcome="sent", host=device.host)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "pushed to %s: HTTP %s after %d attempt(s)",
                device.origin,
                status,
                attempts,
                extra={
                    "notification_id": n.notification_id,
                    "user_id": n.user_id,
                    "endpoint_origin": device.origin,
                },
            )
        return DeviceOutcome(device.key, device.endpoint, "sent", status, None, attempts)

    async def _deactivate(self, n: Notification, device: Device, exc: PushError) -> str:
        if n.user_verified:
            outcome = await self.users.deactivate(
                n.user_id, device.endpoint, exc.reason, exc.status_code
            )
        else:
            # Anyone may claim any user_id at an anonymous /subscribe: reporting it would
            # let them have a victim's subscriptions deactivated.
            outcome = "skipped: unverified user_id"
        self.metrics.invalidations.inc(result=outcome.split(":", 1)[0])
        return outcome

    async def _failed(
        self, n: Notification, device: Device, exc: PushError, attempts: int
    ) -> DeviceOutcome:
        self.metrics.pushes.inc(outcome=exc.reason, host=device.host)
        deactivation = None
        if isinstance(exc, SubscriptionGone):
            deactivation = await self._deactivate(n, device, exc)
        elif isinstance(exc, VapidRejected):
            log.error(
                "push service %s rejected our VAPID credentials (%s): check VAPID keys "
                "and VAPID_EMAIL; the subscription is kept",
                device.origin,
                exc.detail,
            )
        log.info(
            "push to %s failed: %s (%s)",
            device.origin,
            exc.reason,
            exc.detail,
            extra={"notification_id": n.notification_id, "endpoint_origin": device.origin},
        )
        return DeviceOutcome(
            device.key,
            device.endpoint,
            "failed",
            exc.status_code,
            exc.reason,
            attempts,
            detail=exc.detail,
            deactivation=deactivation,
        )
