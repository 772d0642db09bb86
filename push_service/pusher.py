"""One device of one notification: requests, retries, its push service's circuit, the deadline.

`Pusher.push` never raises a PushError. It returns the device's outcome: final
(`sent`, `failed`, `failed`/`expired`) or a `DeviceRetry` to park in RabbitMQ. Retries
whose delay fits in the in-process budget wait here; later ones, and every push to a
push service whose circuit is open, are parked without holding the consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from push_service.circuits import Circuits
from push_service.deadline import Deadline
from push_service.endpoints import host_label
from push_service.errors import (
    PayloadTooLarge,
    PushError,
    PushServiceUnavailable,
    SubscriptionGone,
    Throttled,
    TransientPushError,
    VapidRejected,
)
from push_service.hold import HELD_REASONS
from push_service.metrics import Metrics
from push_service.models import MAX_PLAINTEXT_BYTES, Device, Notification
from push_service.receipts import Receipts
from push_service.retry import PushRetryPolicy
from push_service.status import DeviceOutcome, DeviceRetry
from push_service.webpush import PushOptions, WebPushSender

log = logging.getLogger(__name__)

Result = DeviceOutcome | DeviceRetry
# A subscription a push service says is gone, handed on (reported, forgotten, announced);
# returns the device's `deactivation` as the record reads it until the report is answered.
ReportGone = Callable[[Notification, Device, PushError], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class PushContext:
    """What every device of one message shares: its deadline and how it got here."""

    deadline: Deadline
    arrived: float = field(default_factory=time.monotonic)  # the in-process budget counts from it
    parked: int = 0  # times the message was parked already


@dataclass(slots=True)
class _Tries:
    """Requests made to one device over its notification's life, and the last error."""

    count: int = 0
    error: PushError | None = None

    @classmethod
    def after(cls, previous: DeviceRetry | None) -> _Tries:
        """Continue from the retry on record, last error included: a push parked again
        behind an open circuit, or expired, still says what went wrong before."""
        if previous is None:
            return cls()
        error = None
        if previous.last_error is not None:
            error = TransientPushError(previous.last_error, previous.http_status)
        return cls(previous.attempts, error)


class Pusher:
    def __init__(
        self,
        sender: WebPushSender,
        circuits: Circuits,
        report_gone: ReportGone,
        metrics: Metrics,
        policy: PushRetryPolicy,
        concurrency: int,
        receipts: Receipts | None = None,
    ) -> None:
        self.receipts = receipts  # a receipt URL per device in each payload (None: off)
        self.sender = sender
        self.circuits = circuits
        self.report_gone = report_gone
        self.metrics = metrics
        self.policy = policy
        self._sends = asyncio.Semaphore(concurrency)

    async def push(
        self,
        n: Notification,
        device: Device,
        context: PushContext,
        previous: DeviceRetry | None = None,
    ) -> Result:
        """Push until sent, failed for good, out of time, or due to be parked.

        `previous` is the device's retry on record: one not due yet is returned as it is.
        """
        if len(n.payload) > MAX_PLAINTEXT_BYTES:
            too_large = PayloadTooLarge(
                f"payload is {len(n.payload)} bytes; at most {MAX_PLAINTEXT_BYTES} can be sent"
            )
            return await self._failed(n, device, too_large, 0)
        if (
            previous is not None
            and previous.not_before > time.time()
            and previous.reason not in HELD_REASONS  # released: its circuit says when
        ):
            return previous  # not due yet (a delay step shorter than the wait): park again
        tries = _Tries.after(previous)
        deadline = context.deadline
        while True:
            if deadline.expired(time.time()):
                return self._expired(n, device, deadline, tries)
            try:
                status = await self._request(n, device, deadline, tries)
            except PushServiceUnavailable as exc:
                return self._park(n, device, deadline, tries, self._wait(exc, context), exc.reason)
            except TransientPushError as exc:
                outcome = await self._after_transient(n, device, context, tries, exc)
                if outcome is not None:
                    return outcome
                continue
            except PushError as exc:
                return await self._failed(n, device, exc, tries.count)
            return self._sent(n, device, status, tries.count)

    async def _after_transient(
        self,
        n: Notification,
        device: Device,
        context: PushContext,
        tries: _Tries,
        exc: TransientPushError,
    ) -> Result | None:
        """The outcome after a transient failure, or None once it is time to try again here."""
        tries.error = exc
        if tries.count >= self.policy.max_tries:
            return await self._failed(n, device, exc, tries.count)
        delay = self._delay(exc, tries)
        due = time.time() + delay
        if time.monotonic() - context.arrived + delay > self.policy.in_process_seconds:
            reason = "backoff" if exc.retry_after is None else "retry_after"
            return self._park(n, device, context.deadline, tries, due, reason)
        if context.deadline.expired(due):
            return self._expired(n, device, context.deadline, tries)
        await asyncio.sleep(delay)
        return None

    def _wait(self, exc: PushServiceUnavailable, context: PushContext) -> float:
        """Until when to park a push its push service cannot take now (epoch seconds).

        At least the circuit's cool-down, and longer each time the same message comes
        back to a push service still down: a long outage costs few round trips.
        """
        circuit = exc.wait()
        if exc.reason in HELD_REASONS:  # held until it answers again (push_service.recovery)
            return time.time() + circuit
        return time.time() + max(circuit, self.policy.delay(context.parked + 1))

    def _delay(self, exc: TransientPushError, tries: _Tries) -> float:
        if exc.retry_after is not None:
            return max(0.0, exc.retry_after)  # any length: the deadline bounds it
        return self.policy.delay(tries.count)

    async def _request(
        self, n: Notification, device: Device, deadline: Deadline, tries: _Tries
    ) -> int:
        circuit = self.circuits.get(device.origin)
        async with circuit.request(), self._sends:
            tries.count += 1
            if tries.count > 1:
                self.metrics.retries.inc()
            options = PushOptions(deadline.remaining_ttl(time.time()), n.urgency, n.topic)
            self.metrics.in_flight.inc()
            started = time.perf_counter()
            try:
                payload = n.payload if self.receipts is None else self.receipts.payload(n, device)
                status = await self.sender.send(device, payload, options)
            except Throttled:
                circuit.answered()  # throttling is about us, not the push service's health
                raise
            except TransientPushError as exc:
                circuit.failed(exc.detail, answered=exc.status_code is not None)
                raise
            except PushError:
                circuit.answered()
                raise
            finally:
                self.metrics.in_flight.dec()
                self.metrics.push_latency.observe(time.perf_counter() - started)
            circuit.answered()
            return status

    def _park(
        self,
        n: Notification,
        device: Device,
        deadline: Deadline,
        tries: _Tries,
        until: float,
        reason: str,
    ) -> Result:
        if until >= deadline.at:  # nothing would be tried before the deadline
            return self._expired(n, device, deadline, tries)
        self.metrics.deferred.inc(host=host_label(device.origin), reason=reason)
        error = tries.error
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "push to %s parked (%s) for %.1fs",
                device.origin,
                reason,
                until - time.time(),
                extra={"notification_id": n.notification_id, "endpoint_origin": device.origin},
            )
        return DeviceRetry(
            device.key,
            device.endpoint,
            until,
            tries.count,
            reason,
            error.detail if error else None,
            error.status_code if error else None,
        )

    def _expired(
        self, n: Notification, device: Device, deadline: Deadline, tries: _Tries
    ) -> DeviceOutcome:
        host = host_label(device.origin)
        self.metrics.expired.inc(host=host)
        self.metrics.pushes.inc(outcome="expired", host=host)
        detail = f"deadline {deadline.iso()} passed"
        if tries.error is not None:
            detail += f"; last error: {tries.error.detail}"
        log.info(
            "push to %s expired: %s",
            device.origin,
            detail,
            extra={"notification_id": n.notification_id, "endpoint_origin": device.origin},
        )
        status = tries.error.status_code if tries.error else None
        return DeviceOutcome(
            device.key, device.endpoint, "failed", status, "expired", tries.count, detail=detail
        )

    def _sent(self, n: Notification, device: Device, status: int, attempts: int) -> DeviceOutcome:
        self.metrics.pushes.inc(outcome="sent", host=host_label(device.origin))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "pushed to %s: HTTP %s after %d attempt(s)",
                device.origin,
                status,
                attempts,
                extra={"notification_id": n.notification_id, "endpoint_origin": device.origin},
            )
        return DeviceOutcome(device.key, device.endpoint, "sent", status, None, attempts)

    async def _failed(
        self, n: Notification, device: Device, exc: PushError, attempts: int
    ) -> DeviceOutcome:
        self.metrics.pushes.inc(outcome=exc.reason, host=host_label(device.origin))
        deactivation = None
        if isinstance(exc, SubscriptionGone):
            deactivation = await self.report_gone(n, device, exc)
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
