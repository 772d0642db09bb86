"""The queue consumer: from a delivered message to an ack, a requeue or the DLQ.

Each delivery runs in a task owned here, not by the aiormq channel: closing a
channel cancels the callbacks still running on it, and a push cut off mid-request
would be repeated on redelivery. The task records its outcome first, parks the
devices to retry later (`parking`), and only then settles the delivery on the
channel it came from, and only if that channel is still open: a delivery tag acked
on another channel closes that channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from aiormq.abc import AbstractChannel, DeliveredMessage

from push_service import broker
from push_service.broker import USER_VERIFIED_HEADER
from push_service.bundles import is_bundle, republish
from push_service.dead_letters import DeadLetters
from push_service.deadline import publisher_time
from push_service.delivery import Delivery, DeliveryResult
from push_service.endpoints import EndpointPolicy
from push_service.errors import BrokerUnavailable, ValidationError
from push_service.fanout import Fanout, chunk_cursor, is_chunk
from push_service.metrics import Metrics
from push_service.models import Notification, PayloadFormat, off_loop, parse_notification
from push_service.parking import Parking, times_parked
from push_service.schedule import Scheduler
from push_service.status import DeviceOutcome, RedisUnavailable

log = logging.getLogger(__name__)


def message_key(message: DeliveredMessage) -> str:
    """What identifies a message across redeliveries: its message id, else its body.

    A replayed dead letter (`x-replay-count`) starts its count again: it was given up
    after too many deliveries, fixed, and deserves its own tries.
    """
    message_id = message.header.properties.message_id
    key = message_id or hashlib.sha256(message.body).hexdigest()
    replays = (message.header.properties.headers or {}).get("x-replay-count")
    return f"{key[:120]}#{replays}" if isinstance(replays, int) else key[:128]


def user_verified(message: DeliveredMessage) -> bool:
    """False when the publisher says the user_id is unverified; peers' messages are trusted."""
    value = (message.header.properties.headers or {}).get(USER_VERIFIED_HEADER)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return not (value is False or (isinstance(value, str) and value.strip().lower() == "false"))


# (notification, status, final outcomes of this delivery, whether they are all its devices):
# tells the world a notification is final (`notification.completed`), before the ack.
Completed = Callable[[Notification, str, Sequence[DeviceOutcome], bool], Awaitable[None]]


class Settle(Enum):
    ACK = "ack"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class ConsumerLimits:
    queue: str
    queue_type: str = "classic"
    prefetch: int = 256
    max_deliveries: int = 5
    max_message_bytes: int = 8 * 1024 * 1024
    max_devices: int = 10_000
    payload_format: PayloadFormat = "classic"  # for messages that do not say
    key_ids: frozenset[str] | None = None  # the VAPID key ids a device may name; None: any
    # Chunks of audiences parsed and pushed at once; the others wait, unparsed, so that a
    # fan-out prefetched by the hundred holds a few thousand devices, not all of them.
    chunks_in_flight: int = 16


class Consumer:
    def __init__(
        self,
        limits: ConsumerLimits,
        delivery: Delivery,
        parking: Parking,
        dead_letters: DeadLetters,
        policy: EndpointPolicy,
        metrics: Metrics,
        completed: Completed | None = None,
        scheduler: Scheduler | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        self.limits = limits
        self.scheduler = scheduler  # holds messages whose send_at is ahead
        self.completed = completed
        self.fanout = fanout
        self.delivery = delivery
        self.store = delivery.store
        self.parking = parking
        self.dead_letters = dead_letters
        self.policy = policy
        self.metrics = metrics
        self._parser = functools.partial(
            parse_notification,
            policy=policy,
            max_devices=limits.max_devices,
            payload_format=limits.payload_format,
            key_ids=limits.key_ids,
        )
        self.channel: AbstractChannel | None = None
        self.consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # notification_id -> the task delivering it, to serialise a redelivery behind it.
        self._active: dict[str, asyncio.Task[None]] = {}
        self._outage_requeues: set[str] = set()
        self._chunk_slots = asyncio.Semaphore(limits.chunks_in_flight)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def attach(self, channel: AbstractChannel) -> None:
        """Start consuming on a fresh channel (called by the supervisor on each connect)."""
        await channel.basic_qos(prefetch_count=self.limits.prefetch)
        self.channel = channel
        ok = await channel.basic_consume(self.limits.queue, self._on_message, no_ack=False)
        self.consumer_tag = ok.consumer_tag

    async def stop(self, grace: float) -> None:
        """Stop taking messages, let in-flight ones finish within `grace`, abandon the rest.

        Abandoned deliveries stay unacked, so the broker requeues them when the
        channel closes.
        """
        if self._tasks:
            log.info("draining %d in-flight messages (up to %.0fs)", len(self._tasks), grace)
        tag = self.consumer_tag
        unfinished = await broker.stop_consuming(self.channel, tag, self._tasks, grace)
        if unfinished:
            log.warning("%d messages did not finish in time; they will be redelivered", unfinished)

    async def _on_message(self, message: DeliveredMessage) -> None:
        self._start(message, consumed=True)

    def take(self, message: DeliveredMessage) -> asyncio.Task[None]:
        """Handle a message got from a queue on a channel of its own (a held push that
        probes its push service); it is settled on that channel."""
        return self._start(message, consumed=False)

    def _start(self, message: DeliveredMessage, *, consumed: bool) -> asyncio.Task[None]:
        task = asyncio.create_task(self._handle(message, consumed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, message: DeliveredMessage, consumed: bool = True) -> None:
        if is_chunk(message):
            async with self._chunk_slots:
                settle = await self._settlement(message)
        else:
            settle = await self._settlement(message)
        await self._settle(message, settle, consumed)

    async def _settlement(self, message: DeliveredMessage) -> Settle:
        try:
            return await self._process(message)
        except (*RedisUnavailable, BrokerUnavailable) as exc:
            log.warning("cannot finish a message now (%s); requeueing it", exc)
            # An outage is not the message's fault: its redelivery must not count
            # towards MAX_DELIVERY_ATTEMPTS, or a long Redis outage would dead-letter it.
            self._outage_requeues.add(message_key(message))
            return Settle.REQUEUE
        except Exception:
            log.exception("unexpected error handling a message; requeueing it")
            return Settle.REQUEUE

    async def _settle(self, message: DeliveredMessage, settle: Settle, consumed: bool) -> None:
        # A held copy taken as a probe (`take`) came on another channel: settle it there.
        current = self.channel if consumed else message.channel
        await broker.settle(message, current, ack=settle is Settle.ACK)

    async def _process(self, message: DeliveredMessage) -> Settle:
        if is_bundle(message):  # held copies that expired together: each on its own
            await republish(message.channel, self.limits.queue, message, self.parking.timeout)
            return Settle.ACK
        arrived = time.monotonic()
        body = message.body
        if len(body) > self.limits.max_message_bytes:
            detail = f"{len(body)} bytes > {self.limits.max_message_bytes}"
            await self.dead_letters.send(message, "message_too_large", detail)
            return Settle.ACK
        deliveries = await self._delivery_count(message)
        if deliveries > self.limits.max_deliveries:
            detail = f"delivered {deliveries} times without finishing"
            await self.dead_letters.send(message, "too_many_deliveries", detail, refused=False)
            return Settle.ACK
        try:
            notification = await self._parse(body)
            if not user_verified(message):
                notification = dataclasses.replace(notification, user_verified=False)
            if await self._scheduled(notification, message):
                return Settle.ACK  # parked until nearer its send_at
            if notification.audience is not None:
                return await self._resolve(notification, message)
            if is_chunk(message):
                notification = dataclasses.replace(notification, chunk=True)
            result = await self._deliver_once(notification, message, arrived)
        except ValidationError as exc:  # DuplicateNotification included
            await self.dead_letters.send(message, exc.code, exc.detail)
            return Settle.ACK
        if result.retries:
            # Recorded as retrying already; parked (confirmed) before the ack releases it.
            whole = len(result.retries) == len(notification.devices)
            await self.parking.park(message, result.retries, whole=whole, deadline=result.deadline)
        elif self.completed is not None and result.status != "processing":
            await self.completed(notification, result.status, result.outcomes, result.whole)
        self._observed(notification, message, result, arrived)
        return Settle.ACK

    async def _scheduled(self, notification: Notification, message: DeliveredMessage) -> bool:
        if notification.send_at is None or self.scheduler is None:
            return False
        return await self.scheduler.hold(notification, message)

    async def _resolve(self, notification: Notification, message: DeliveredMessage) -> Settle:
        """An audience: published as chunks of devices (`fanout`), then acked."""
        if self.fanout is None:
            raise ValidationError("audience_unsupported", "this consumer has no registry")
        status = await self.fanout.resolve(notification, message)
        if self.completed is not None and status in ("sent", "failed", "cancelled"):
            # Every chunk was delivered before the last was counted, or the audience is empty.
            await self.completed(notification, status, (), False)
        self.metrics.messages.inc(result="fanout")
        return Settle.ACK

    async def _parse(self, body: bytes) -> Notification:
        """Validate a message; a large one in a thread, so the loop is never stalled."""
        return await off_loop(self._parser, body)

    async def _deliver_once(
        self, notification: Notification, message: DeliveredMessage, arrived: float
    ) -> DeliveryResult:
        """Deliver, but first let an earlier attempt of the same notification finish.

        After a reconnect the broker redelivers messages whose first attempt may
        still be running here; once it has recorded its outcomes the redelivery
        skips those devices instead of pushing them a second time.
        """
        key = notification.notification_id
        if notification.chunk:
            # Chunks of one fan-out share the id but never a device: only the same chunk
            # again (a redelivery, a parked copy) waits for an earlier attempt.
            key = f"{key}\0{chunk_cursor(message)}"
        current = asyncio.current_task()
        assert current is not None
        earlier = self._active.get(key)
        if earlier is not None:
            await asyncio.wait([earlier])
        self._active[key] = current
        published = publisher_time(message.header.properties.timestamp, time.time())
        try:
            return await self.delivery.deliver(
                notification, published=published, arrived=arrived, parked=times_parked(message)
            )
        finally:
            if self._active.get(key) is current:
                del self._active[key]

    async def _delivery_count(self, message: DeliveredMessage) -> int:
        """1 on a first delivery; counts redeliveries (quorum header, else Redis)."""
        headers = message.header.properties.headers or {}
        quorum_count = headers.get("x-delivery-count")
        # Only a quorum queue's own count: on a classic queue a publisher may have set it.
        if self.limits.queue_type == "quorum" and isinstance(quorum_count, int):
            return quorum_count + 1
        if not getattr(message.delivery, "redelivered", False):
            return 1
        key = message_key(message)
        if key in self._outage_requeues:
            self._outage_requeues.discard(key)
            return 1
        return 1 + await self.delivery.stored(lambda: self.store.count_delivery(key))

    def _observed(
        self,
        notification: Notification,
        message: DeliveredMessage,
        result: DeliveryResult,
        arrived: float,
    ) -> None:
        self.metrics.messages.inc(result=result.status)
        published = message.header.properties.timestamp
        if published is not None and result.status != "processing":
            self.metrics.e2e_latency.observe(max(0.0, time.time() - published.timestamp()))
        if log.isEnabledFor(logging.INFO):
            log.info(
                "notification %s",
                result.status,
                extra={
                    "notification_id": notification.notification_id,
                    "user_id": notification.user_id,
                    "status": result.status,
                    "duration_ms": round((time.monotonic() - arrived) * 1000, 2),
                },
            )
