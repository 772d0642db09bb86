"""The queues the service needs, declared so that peers' plain declarations still work.

Peers declare the main queue the way their clients do by default: durable, no
arguments. RabbitMQ refuses a declaration whose arguments differ from the existing
queue's (`PRECONDITION_FAILED`, and the channel is closed), so the service declares
the main queue with no optional arguments either and dead-letters explicitly (the
consumer publishes to `<queue>.dlq`). Only `x-queue-type` is part of the declaration,
since RabbitMQ cannot set it by policy. A queue that exists with other arguments (a
peer's, or one from before a change of RABBITMQ_QUEUE_TYPE) is used as it is, after
one warning, as long as it survives a broker restart (durable, not auto-delete).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec
from pamqp.common import FieldValue

from push_service.broker import publish_confirmed
from push_service.errors import BrokerUnavailable, Unroutable

log = logging.getLogger(__name__)

DECLARE_TIMEOUT = 10.0
# RabbitMQ compares these before the optional arguments: a refusal naming one of
# them means the existing queue would not survive a restart (or its consumers).
_NOT_DURABLE = ("inequivalent arg 'durable'", "inequivalent arg 'auto_delete'")
Arguments = dict[str, FieldValue]


class QueueNotDurable(BrokerUnavailable):
    """The main queue exists but would lose messages on a broker restart."""


@dataclass(frozen=True)
class Topology:
    """Names and arguments of every queue the service declares."""

    queue: str
    queue_type: str = "classic"
    # Extra service-owned queues (the delay ladder) and their arguments.
    extra: dict[str, Arguments] = field(default_factory=dict)
    # Service-owned exchanges (the events exchange) and their types; all durable.
    exchanges: dict[str, str] = field(default_factory=dict)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @property
    def queues(self) -> list[str]:
        return [self.queue, self.dead_letter_queue, *self.extra]

    def type_arguments(self) -> Arguments:
        return {"x-queue-type": "quorum"} if self.queue_type == "quorum" else {}


def back_to_main(topology: Topology) -> Arguments:
    """Arguments of a queue whose expired messages go back to the main queue."""
    arguments: Arguments = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": topology.queue,
    }
    if topology.queue_type == "quorum":
        # Without these a quorum queue dead-letters at most once: a copy could be lost.
        arguments |= {
            "x-queue-type": "quorum",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return arguments


async def declare_topology(connection: AbstractConnection, topology: Topology) -> list[str]:
    """Declare the exchanges, the DLQ, the extra queues and the main queue; returns
    warnings to log once.

    Uses channels of its own: a refused declaration closes the channel it was made on.
    """
    queues = {
        topology.dead_letter_queue: topology.type_arguments(),
        **topology.extra,
        topology.queue: topology.type_arguments(),
    }
    warnings = await declare_exchanges(connection, topology.exchanges)
    channel = await _open(connection)
    try:
        for name, arguments in queues.items():
            try:
                await channel.queue_declare(name, durable=True, arguments=arguments)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                warnings.append(await _adopt_existing(connection, name, _reply_text(exc)))
                channel = await _open(connection)
    finally:
        if not channel.is_closed:
            await channel.close()
    return warnings


async def declare_exchanges(connection: AbstractConnection, exchanges: dict[str, str]) -> list[str]:
    """Declare durable exchanges (name: type); returns warnings about ones that differ."""
    warnings: list[str] = []
    if not exchanges:
        return warnings
    channel = await _open(connection)
    try:
        for exchange, kind in exchanges.items():
            try:
                await channel.exchange_declare(exchange, exchange_type=kind, durable=True)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                # Someone declared it otherwise: publishing to it still works; say so once.
                warnings.append(f"exchange {exchange!r} exists differently: {_reply_text(exc)}")
                channel = await _open(connection)
    finally:
        if not channel.is_closed:
            await channel.close()
    return warnings


async def publish_declared(
    channel: AbstractChannel,
    topology: Topology,
    queue: str,
    body: bytes,
    *,
    timeout: float,  # noqa: ASYNC109 - bounds the confirm wait, applied inside
    properties: spec.Basic.Properties,
) -> None:
    """Publish (confirmed) to one of the topology's queues; a deleted one is declared again.

    Someone deleting the DLQ or a delay queue must not make the service requeue in a
    loop (or, with `mandatory`, lose the message): declare the queues, then retry once.
    """
    try:
        await publish_confirmed(channel, queue, body, timeout=timeout, properties=properties)
    except Unroutable:
        log.warning("%s is missing; declaring the queues again", queue)
        await declare_topology(channel.connection, topology)
        await publish_confirmed(channel, queue, body, timeout=timeout, properties=properties)


async def _adopt_existing(connection: AbstractConnection, queue: str, refusal: str) -> str:
    """Use a queue someone else declared differently, unless it is not durable."""
    if any(marker in refusal for marker in _NOT_DURABLE):
        raise QueueNotDurable(
            f"queue {queue!r} exists but is not durable (or is auto-delete): {refusal}; "
            "delete it or use another RABBITMQ_QUEUE_NAME"
        )
    channel = await _open(connection)
    try:
        await channel.queue_declare(queue, passive=True)
    finally:
        if not channel.is_closed:
            await channel.close()
    return (
        f"queue {queue!r} exists with other arguments than this service declares; "
        f"using it as it is ({refusal})"
    )


async def _open(connection: AbstractConnection) -> AbstractChannel:
    async with asyncio.timeout(DECLARE_TIMEOUT):
        return await connection.channel()


def _reply_text(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else str(exc)
