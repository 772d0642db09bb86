"""Held pushes: while a push service's circuit is open, its pushes wait in a queue of its own.

A push parked because its push service's circuit is open (`circuit_open`), or because
every request slot of it is taken and none was answered lately (`busy`: an outage's
first seconds, before stall detection opens the circuit), does not go on the delay
ladder, where it would come back on the step's TTL only (up to
PUSH_RETRY_MAX_DELAY_SECONDS after the push service answers again), or, for `busy`,
again and again until the circuit opens: a round trip each time. It goes, as a copy
with only that origin's devices, to `<queue>.hold.<origin label>.<hash>`: durable, no
TTL of its own, each copy expiring at its notification's deadline back to the main queue
(where it is recorded `expired`). `push_service.recovery` probes the origin with one
held copy at a time and, once it answers, releases the queue: every copy is moved
back to the main queue (confirmed publish, then ack). Copies held at about the same
time travel together, in one bundle (`push_service.bundles`).

The origins with a hold queue are a Redis set, so that a replica that starts (or
outlives the one that held them) finds them: no plugin or management API is needed
to list queues. Per-message TTL expires at the head of a queue only: a copy with a
far deadline delays the `expired` record (never a push) of later, shorter ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable

import aiormq
import redis.asyncio as redis
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from push_service.broker import AMQP_ERRORS, publish_confirmed
from push_service.bundles import Bundler, Copy, copies_in, is_bundle, pack, republish, unpack
from push_service.endpoints import EndpointPolicy, host_label
from push_service.errors import BrokerUnavailable, EndpointNotAllowed, Unroutable
from push_service.metrics import Metrics
from push_service.status import DeviceRetry
from push_service.topology import Topology, back_to_main

log = logging.getLogger(__name__)

HELD_REASONS = frozenset({"circuit_open", "busy"})
RELEASE_BATCH = 200  # copies (at least) taken before their publishes are confirmed together
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def hold_queue(main: str, origin: str) -> str:
    """The origin's hold queue: readable, and unique (two origins may sanitise alike)."""
    label = _UNSAFE.sub("_", host_label(origin))[:100]
    digest = hashlib.sha256(origin.encode()).hexdigest()[:8]
    return f"{main}.hold.{label}.{digest}"


class Hold:
    def __init__(
        self,
        topology: Topology,
        policy: EndpointPolicy,
        client: redis.Redis,
        prefix: str,
        timeout: float,
        metrics: Metrics,
    ) -> None:
        self.topology = topology
        self.policy = policy
        self.redis = client
        self.key = f"{prefix}held-origins"
        self.timeout = timeout
        self.metrics = metrics
        self.on_held: Callable[[str], None] | None = None  # recovery starts watching
        self._noted: set[str] = set()  # on record in Redis, declared, since the last forget
        self._noting: dict[str, asyncio.Task[None]] = {}  # one at a time per origin
        self._bundler = Bundler(self._publish)

    def origin_for(self, retry: DeviceRetry) -> str | None:
        """The origin to hold `retry` for, None when it goes on the ladder."""
        if retry.reason not in HELD_REASONS:
            return None
        try:
            return self.policy.check(retry.endpoint).origin
        except EndpointNotAllowed:  # the allowlist changed since it was parked
            return None

    def queue(self, origin: str) -> str:
        return hold_queue(self.topology.queue, origin)

    async def hold(
        self,
        channel: AbstractChannel,
        origin: str,
        body: bytes,
        properties: spec.Basic.Properties,
        deadline: float | None,
    ) -> None:
        """Publish (confirmed, bundled with others) a copy to the origin's hold queue,
        expiring at `deadline`."""
        if origin not in self._noted:
            await self._note(channel.connection, origin)
        await self._bundler.add(channel, origin, Copy(properties, body, deadline))
        self.metrics.held.inc()
        if self.on_held is not None:
            self.on_held(origin)

    async def _note(self, connection: AbstractConnection, origin: str) -> None:
        """On record and declared before the first copy: a replica that starts must find
        it. Once for all the pushes held together (an outage's first seconds hold a few
        hundred at once: each declaring the queue would stall the broker and this loop)."""
        noting = self._noting.get(origin)
        if noting is None:
            noting = asyncio.create_task(self._record_and_declare(connection, origin))
            self._noting[origin] = noting
            noting.add_done_callback(lambda _: self._noting.pop(origin, None))
        await asyncio.shield(noting)

    async def _record_and_declare(self, connection: AbstractConnection, origin: str) -> None:
        await self.redis.sadd(self.key, origin)
        await self.declare(connection, origin)
        self._noted.add(origin)

    async def _publish(
        self, channel: AbstractChannel, origin: str, body: bytes, properties: spec.Basic.Properties
    ) -> None:
        queue = self.queue(origin)
        try:
            await publish_confirmed(
                channel, queue, body, timeout=self.timeout, properties=properties
            )
        except Unroutable:  # released and deleted meanwhile, by another replica
            await self.redis.sadd(self.key, origin)
            await self.declare(channel.connection, origin)
            await publish_confirmed(
                channel, queue, body, timeout=self.timeout, properties=properties
            )

    async def origins(self) -> set[str]:
        return {
            o.decode() if isinstance(o, bytes) else o for o in await self.redis.smembers(self.key)
        }

    async def declare(self, connection: AbstractConnection, origin: str) -> None:
        """Declare the hold queue on a channel of its own (a refusal closes the channel)."""
        channel = await _open(connection, self.timeout)
        try:
            await channel.queue_declare(
                self.queue(origin), durable=True, arguments=back_to_main(self.topology)
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            log.warning("hold queue of %s exists with other arguments; using it: %s", origin, exc)
        finally:
            await _close(channel)

    async def take(self, channel: AbstractChannel, origin: str) -> DeliveredMessage | None:
        """One held copy (unacked, on `channel`), None when none is held."""
        message = await channel.basic_get(self.queue(origin), no_ack=False, timeout=self.timeout)
        return None if isinstance(message.delivery, spec.Basic.GetEmpty) else message

    async def take_probe(self, channel: AbstractChannel, origin: str) -> DeliveredMessage | None:
        """One held copy to probe with (unacked, on `channel`); None when none is held.

        From a bundle, the first copy: the others are held again first (a copy held
        twice is harmless), and the probe's ack settles the bundle.
        """
        message = await self.take(channel, origin)
        if message is None or not is_bundle(message):
            return message
        first, *rest = unpack(message.body)
        if rest:
            body, properties = pack(rest)
            try:
                await self._publish(channel, origin, body, properties)
            except BaseException:
                await _close(channel)  # the broker puts the bundle back
                raise
        first.properties.expiration = None
        header = ContentHeader(0, len(first.body), first.properties)
        return dataclasses.replace(message, header=header, body=first.body)

    async def release(
        self, channel: AbstractChannel, origin: str, keep_going: Callable[[], bool]
    ) -> int:
        """Move the held copies back to the main queue while `keep_going()`; how many.

        Each batch is acked only once all its publishes are confirmed; if one fails the
        channel is closed, so the broker puts the batch back in the hold queue (a copy
        moved twice is harmless: devices with an outcome are skipped).
        """
        moved = 0
        while keep_going():
            batch: list[DeliveredMessage] = []
            taken = 0  # copies, a bundle counting for its own
            while taken < RELEASE_BATCH:
                message = await self.take(channel, origin)
                if message is None:
                    break
                batch.append(message)
                taken += copies_in(message)
            if not batch:
                break
            try:
                copies = await asyncio.gather(*(self._move(channel, m) for m in batch))
            except BaseException:
                await _close(channel)
                raise
            last = batch[-1].delivery
            assert isinstance(last, spec.Basic.GetOk)
            assert last.delivery_tag is not None
            await channel.basic_ack(last.delivery_tag, multiple=True)
            moved += sum(copies)
            self.metrics.released.inc(sum(copies))
        return moved

    async def _move(self, channel: AbstractChannel, message: DeliveredMessage) -> int:
        """Publish the copies of a held message to the main queue; how many."""
        return await republish(channel, self.topology.queue, message, self.timeout)

    async def forget(self, connection: AbstractConnection, origin: str) -> bool:
        """Delete the origin's hold queue if it is empty and take it off the record."""
        channel = await _open(connection, self.timeout)
        try:
            await channel.queue_delete(self.queue(origin), if_empty=True)
        except aiormq.exceptions.ChannelPreconditionFailed:
            return False  # held again meanwhile
        finally:
            await _close(channel)
        await self.redis.srem(self.key, origin)
        self._noted.discard(origin)
        return True


async def _open(connection: AbstractConnection, timeout: float) -> AbstractChannel:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            return await connection.channel()
    except (TimeoutError, *AMQP_ERRORS) as exc:
        raise BrokerUnavailable(f"cannot open a channel: {type(exc).__name__}") from None


async def _close(channel: AbstractChannel) -> None:
    if not channel.is_closed:
        try:
            async with asyncio.timeout(5.0):
                await channel.close()
        except (TimeoutError, *AMQP_ERRORS):
            pass
