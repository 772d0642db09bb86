"""Held copies travel in bundles: one confirmed publish for all the copies of a moment.

While a push service is dark under a backlog, every fifth message may be for it. A
publish per held copy (marshalling, a confirm to wait for, a persistent message for the
broker) cost a third of what such a message costs the service in all: CPU taken from the
healthy push services. `Bundler` gathers the copies held for an origin while a publish
is under way (as the Redis calls are batched) and publishes them as one message, with
header `x-push-bundle` (the number of copies); each copy's holder learns the outcome of
its bundle's publish. A lone copy goes as it is.

A bundle holds, for each copy, its properties (AMQP-encoded, so headers of any type
survive), its body and its deadline. It expires at its earliest copy's deadline, back to
the main queue like a copy would: the consumer then unpacks it there (`republish`), and
each copy is recorded `expired` or held again. A release (`push_service.recovery`) and
a probe unpack bundles too.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from push_service.broker import publish_confirmed
from push_service.errors import BrokerUnavailable

BUNDLE_HEADER = "x-push-bundle"
MAX_COPIES = 500  # in one bundle
MAX_BYTES = 4 * 1024 * 1024  # of one bundle's body, far below any message size limit
_RECORD = struct.Struct(">dII")  # deadline (0: none), header length, body length


@dataclass(frozen=True, slots=True)
class Copy:
    properties: spec.Basic.Properties
    body: bytes
    deadline: float | None  # epoch seconds


# (channel, origin, body, properties): a confirmed publish to the origin's hold queue.
Publish = Callable[[AbstractChannel, str, bytes, spec.Basic.Properties], Awaitable[None]]


@dataclass
class _Pending:
    channel: AbstractChannel
    copies: list[tuple[Copy, asyncio.Future[None]]] = field(default_factory=list)


class Bundler:
    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._pending: dict[str, _Pending] = {}
        self._flushing: dict[str, asyncio.Task[None]] = {}

    async def add(self, channel: AbstractChannel, origin: str, copy: Copy) -> None:
        """Publish `copy` to the origin's hold queue with others; returns once confirmed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(origin, _Pending(channel)).copies.append((copy, future))
        if origin not in self._flushing:
            self._flushing[origin] = asyncio.create_task(self._flush(origin))
        await future

    async def _flush(self, origin: str) -> None:
        try:
            while pending := self._pending.pop(origin, None):
                copies = pending.copies
                while copies:
                    batch, copies = _take(copies)
                    await self._send(pending.channel, origin, batch)
        finally:
            del self._flushing[origin]

    async def _send(
        self,
        channel: AbstractChannel,
        origin: str,
        batch: list[tuple[Copy, asyncio.Future[None]]],
    ) -> None:
        body, properties = pack([copy for copy, _ in batch])
        try:
            await self._publish(channel, origin, body, properties)
        except BaseException as exc:  # every holder gets the error (BrokerUnavailable mostly)
            error = exc if isinstance(exc, Exception) else BrokerUnavailable("publish cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if error is not exc:
                raise
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


def _take(
    copies: list[tuple[Copy, asyncio.Future[None]]],
) -> tuple[list[tuple[Copy, asyncio.Future[None]]], list[tuple[Copy, asyncio.Future[None]]]]:
    size, count = 0, 0
    for copy, _ in copies:
        size += len(copy.body) + 512
        if count and (count >= MAX_COPIES or size > MAX_BYTES):
            break
        count += 1
    return copies[:count], copies[count:]


def pack(copies: list[Copy]) -> tuple[bytes, spec.Basic.Properties]:
    """One message for `copies`: a lone copy as it is, else a bundle."""
    deadlines = [c.deadline for c in copies if c.deadline is not None]
    expiration = None
    if deadlines:
        expiration = str(max(1, round((min(deadlines) - time.time()) * 1000)))
    if len(copies) == 1:
        properties = copies[0].properties
        properties.expiration = expiration
        return copies[0].body, properties
    parts: list[bytes] = []
    for copy in copies:
        header = ContentHeader(0, len(copy.body), copy.properties).marshal()
        parts += (_RECORD.pack(copy.deadline or 0.0, len(header), len(copy.body)), header)
        parts.append(copy.body)
    properties = spec.Basic.Properties(
        content_type="application/octet-stream",
        delivery_mode=2,
        headers={BUNDLE_HEADER: len(copies)},
        expiration=expiration,
    )
    return b"".join(parts), properties


def is_bundle(message: DeliveredMessage) -> bool:
    return BUNDLE_HEADER in (message.header.properties.headers or {})


def copies_in(message: DeliveredMessage) -> int:
    count = (message.header.properties.headers or {}).get(BUNDLE_HEADER)
    return count if isinstance(count, int) and count > 0 else 1


def unpack(body: bytes) -> list[Copy]:
    copies, at = [], 0
    while at < len(body):
        deadline, header_size, body_size = _RECORD.unpack_from(body, at)
        at += _RECORD.size
        header = ContentHeader()
        header.unmarshal(body[at : at + header_size])
        at += header_size
        copies.append(Copy(header.properties, body[at : at + body_size], deadline or None))
        at += body_size
    return copies


def as_copies(message: DeliveredMessage) -> list[Copy]:
    """The copies a held message carries: a bundle's, or itself."""
    if is_bundle(message):
        return unpack(message.body)
    return [Copy(message.header.properties, message.body, None)]


async def republish(
    channel: AbstractChannel,
    queue: str,
    message: DeliveredMessage,
    timeout: float,  # noqa: ASYNC109 - bounds each confirm wait
) -> int:
    """Publish (confirmed) the copies of a held message to `queue`, never to expire
    there; how many. The caller acks the message afterwards."""
    copies = as_copies(message)

    async def one(copy: Copy) -> None:
        copy.properties.expiration = None  # the main queue must never drop it
        await publish_confirmed(
            channel, queue, copy.body, timeout=timeout, properties=copy.properties
        )

    await asyncio.gather(*(one(copy) for copy in copies))
    return len(copies)
