"""When a push service answers again, its held pushes go out within seconds, on every replica.

For each origin with held pushes (`push_service.hold`) a watcher task:
- while the origin's circuit is open: when the cool-down ends, it takes one held copy
  and hands it to the consumer, whose push is the circuit's probe. A failed probe opens
  the circuit again (twice as long, up to PUSH_CIRCUIT_MAX_OPEN_SECONDS) and holds the
  copy again; an answer closes the circuit. A long outage costs one probe per cool-down.
- once the circuit is closed and the origin answering: it releases the hold queue
  (every copy back to the main queue) and forgets the origin when its queue is empty.
  Pushes held "busy" (closed, but no answer lately) wait for the next answer, or for
  stall detection to open the circuit, whichever comes first.

Recovery is shared, circuits otherwise are not. A replica whose circuit is still open
would take released copies off the main queue and hold them again, and they would wait
for its own probe, up to a cool-down later. So a circuit that closes on an answer is
announced on the fanout exchange `<queue>.recovered`; every replica listens on a queue
of its own (exclusive, gone with its connection) and closes its circuit for that
origin. A replica that starts, or outlives the one that held an origin, finds the held
origins in Redis (rescanned every PUSH_CIRCUIT_MAX_OPEN_SECONDS): one it has never pushed
to is presumed dark and probed at once; one whose circuit it has closed is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp import commands as spec

from push_service.broker import AMQP_ERRORS, ChannelKeeper, ConnectionProvider, publish_confirmed
from push_service.circuits import Circuit, Circuits, State
from push_service.errors import BrokerUnavailable
from push_service.hold import Hold
from push_service.metrics import Metrics
from push_service.status import RedisUnavailable

log = logging.getLogger(__name__)

Take = Callable[[DeliveredMessage], "asyncio.Task[None]"]
EXCHANGE_TYPE = "fanout"
REPLICA_HEADER = "x-push-replica"
RETRY_SECONDS = 1.0  # after a broker or Redis error, before the watcher tries again
# While an origin is overdue, how often its watcher looks again: an answer wakes it at
# once, this catches requests that ended without one (and stall detection's deadline).
OVERDUE_SECONDS = 0.25


def recovery_exchange(queue: str) -> str:
    return f"{queue}.recovered"


class Recovery:
    def __init__(
        self,
        circuits: Circuits,
        hold: Hold,
        provider: ConnectionProvider,
        metrics: Metrics,
        *,
        take: Take,
        timeout: float,
    ) -> None:
        self.circuits = circuits
        self.hold = hold
        self.metrics = metrics
        self.take = take
        self.timeout = timeout
        self.exchange = recovery_exchange(hold.topology.queue)
        self.rescan_seconds = circuits.policy.max_open_seconds
        self.channels = ChannelKeeper(provider, timeout, confirms=True)
        self.identity = uuid.uuid4().hex
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._scanner: asyncio.Task[None] | None = None
        self._remote = False  # a notice is closing a circuit: do not announce it back
        hold.on_held = self.watch

    def circuit_changed(self, circuit: Circuit) -> None:
        """The circuits' listener: wake the origin's watcher; announce a local recovery."""
        waker = self._wakers.get(circuit.origin)
        if waker is not None:
            waker.set()
        if circuit.state is State.CLOSED and not self._remote:
            self._spawn(self._announce(circuit.origin))

    def watch(self, origin: str) -> None:
        """Make sure a watcher looks after the origin's held pushes."""
        if origin not in self._watchers:
            self._wakers[origin] = asyncio.Event()
            task = asyncio.create_task(self._watch(origin), name=f"hold-watcher {origin}")
            self._watchers[origin] = task
            task.add_done_callback(lambda _: self._unwatch(origin, task))

    def _unwatch(self, origin: str, task: asyncio.Task[None]) -> None:
        if self._watchers.get(origin) is task:
            del self._watchers[origin]
            del self._wakers[origin]

    async def attach(self, channel: AbstractChannel) -> None:
        """Listen for other replicas' recoveries on the session's channel; start rescanning."""
        ok = await channel.queue_declare("", exclusive=True, auto_delete=True)
        assert ok.queue is not None
        await channel.queue_bind(ok.queue, self.exchange, routing_key="")
        await channel.basic_consume(ok.queue, self._on_notice, no_ack=True)
        if self._scanner is None:
            self._scanner = asyncio.create_task(self._rescan(), name="hold-rescan")

    async def stop(self) -> None:
        tasks = [t for t in (self._scanner, *self._watchers.values(), *self._tasks) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.channels.close()

    async def _on_notice(self, message: DeliveredMessage) -> None:
        headers = message.header.properties.headers or {}
        origin = message.body.decode(errors="replace")
        if headers.get(REPLICA_HEADER) == self.identity or origin not in self.circuits:
            return
        self._remote = True
        try:
            self.circuits.get(origin).close("another replica's push to it was answered")
        finally:
            self._remote = False

    async def _announce(self, origin: str) -> None:
        properties = spec.Basic.Properties(headers={REPLICA_HEADER: self.identity})
        try:
            channel = await self.channels.get()
            await publish_confirmed(
                channel, "", origin.encode(), timeout=self.timeout, properties=properties,
                exchange=self.exchange, mandatory=False,
            )  # fmt: skip
        except BrokerUnavailable as exc:
            log.warning("could not tell other replicas that %s answers again: %s", origin, exc)

    async def _rescan(self) -> None:
        """Watch every held origin on record, this replica's or not."""
        while True:
            try:
                origins = await self.hold.origins()
            except RedisUnavailable as exc:
                log.warning("cannot read the held origins: %s", exc)
                origins = set()
            for origin in origins - self._watchers.keys():
                if origin not in self.circuits:
                    # Never pushed to here: dark when last seen; probe before releasing.
                    self.circuits.get(origin).force_open(0.0, "pushes to it are held")
                self.watch(origin)
            await asyncio.sleep(self.rescan_seconds)

    async def _watch(self, origin: str) -> None:
        waker = self._wakers[origin]
        while True:
            waker.clear()
            circuit = self.circuits.get(origin)
            try:
                if circuit.overdue():
                    await _wait(waker, OVERDUE_SECONDS)
                    continue
                if circuit.state is State.CLOSED:
                    if await self._release(origin):
                        return
                    continue
                if circuit.state is State.OPEN and time.monotonic() >= circuit.open_until:
                    if await self._probe(origin) or not await self._forget(origin):
                        continue
                    return
            except (BrokerUnavailable, *AMQP_ERRORS, *RedisUnavailable) as exc:
                log.warning("held pushes of %s: %s; trying again", origin, exc)
                await _wait(waker, RETRY_SECONDS)
                continue
            wait = circuit.open_until - time.monotonic() if circuit.state is State.OPEN else None
            await _wait(waker, wait if wait is not None else circuit.policy.probe_seconds)

    async def _probe(self, origin: str) -> bool:
        """Hand one held copy to the consumer (its push probes); False when none is held."""
        message = await self.hold.take_probe(await self.channels.get(), origin)
        if message is None:
            return False
        self.metrics.probes.inc()
        await asyncio.wait([self.take(message)])  # the consumer owns it; never cancelled here
        return True

    async def _release(self, origin: str) -> bool:
        """Move the held copies to the main queue; True once the origin is forgotten."""
        channel = await self.channels.get()
        moved = await self.hold.release(channel, origin, lambda: self._answering(origin))
        if moved:
            log.info(
                "released %d held messages of push service %s",
                moved,
                origin,
                extra={"endpoint_origin": origin},
            )
        return self._answering(origin) and await self._forget(origin)

    def _answering(self, origin: str) -> bool:
        circuit = self.circuits.get(origin)
        return circuit.state is State.CLOSED and not circuit.overdue()

    async def _forget(self, origin: str) -> bool:
        channel = await self.channels.get()
        return await self.hold.forget(channel.connection, origin)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
