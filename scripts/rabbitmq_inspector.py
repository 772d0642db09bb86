#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""Look at the notification queue and its dead-letter queue without changing them.

    count                  ready messages and consumers of the queue and of <queue>.dlq
    peek [--dlq] [-n N]    show up to N messages and put them back

Connection settings come from push_service's configuration (RABBITMQ_URL,
RABBITMQ_QUEUE_NAME, the environment then an optional .env file); --url and
--queue override them.

Peeking takes messages with basic.get without acknowledging them and then closes
the channel, which returns them to the queue in their original order. They come
back marked `redelivered`, so the service counts one extra delivery towards
MAX_DELIVERY_ATTEMPTS; on a quorum queue every peek raises x-delivery-count
(the broker's delivery limit), so do not peek a quorum queue in a loop.

Exit codes: 0 ok, 1 broker unreachable or a queue missing, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import decimal
import json
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp import commands as spec
from script_support import (
    EXIT_BROKER,
    ScriptError,
    add_broker_arguments,
    connected,
    positive,
    resolve_target,
    run_script,
)


async def queue_state(connection: AbstractConnection, queue: str, timeout: float) -> dict[str, Any]:
    """Passive declare on a throw-away channel (a missing queue closes the channel)."""
    channel = await connection.channel()
    try:
        async with asyncio.timeout(timeout):
            ok = await channel.queue_declare(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return {"name": queue, "exists": False, "messages": None, "consumers": None}
    finally:
        if not channel.is_closed:
            await channel.close()
    return {
        "name": queue,
        "exists": True,
        "messages": int(ok.message_count or 0),
        "consumers": int(ok.consumer_count or 0),
    }


def jsonable(value: Any) -> Any:
    """AMQP field values (bytes, datetimes, decimals, nested tables) as JSON values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def describe(message: DeliveredMessage, max_body: int) -> dict[str, Any]:
    properties = message.header.properties
    body: Any
    try:
        body = json.loads(message.body)
    except ValueError:
        text = message.body[:max_body].decode("utf-8", "replace")
        body = text + ("..." if len(message.body) > max_body else "")
    else:
        if len(message.body) > max_body:
            body = message.body[:max_body].decode("utf-8", "replace") + "..."
    return {
        "message_id": properties.message_id,
        "timestamp": jsonable(properties.timestamp),
        "content_type": properties.content_type,
        "redelivered": bool(getattr(message.delivery, "redelivered", False)),
        "headers": jsonable(dict(properties.headers or {})),
        "size": len(message.body),
        "body": body,
    }


async def peek_messages(
    connection: AbstractConnection, queue: str, count: int, timeout: float, max_body: int
) -> list[dict[str, Any]]:
    """Up to `count` messages, taken unacknowledged and returned by closing the channel."""
    channel: AbstractChannel = await connection.channel()
    shown: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            for _ in range(count):
                message = await channel.basic_get(queue, no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break  # Basic.GetEmpty: nothing more is ready
                shown.append(describe(message, max_body))
    finally:
        # Closing the channel requeues every unacknowledged message, in order.
        if not channel.is_closed:
            async with asyncio.timeout(timeout):
                await channel.close()
    return shown


def print_count(states: list[dict[str, Any]]) -> None:
    for state in states:
        if state["exists"]:
            print(f"{state['name']}: {state['messages']} ready, {state['consumers']} consumers")
        else:
            print(f"{state['name']}: does not exist")


def print_peek(queue: str, messages: list[dict[str, Any]]) -> None:
    if not messages:
        print(f"{queue}: no ready messages")
        return
    for index, message in enumerate(messages, 1):
        print(f"--- {queue} message {index} ({message['size']} bytes)")
        for name in ("message_id", "timestamp", "redelivered"):
            if message[name] is not None:
                print(f"{name}: {message[name]}")
        for key, value in message["headers"].items():
            print(f"header {key}: {value}")
        body = message["body"]
        print(body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False))


async def run(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    async with connected(target) as connection:
        if args.command == "count":
            states = [
                await queue_state(connection, name, target.timeout)
                for name in (target.queue, f"{target.queue}.dlq")
            ]
            if args.json:
                print(json.dumps({"broker": target.shown_url, "queues": states}))
            else:
                print_count(states)
            return 0 if states[0]["exists"] else EXIT_BROKER
        queue = f"{target.queue}.dlq" if args.dlq else target.queue
        state = await queue_state(connection, queue, target.timeout)
        if not state["exists"]:
            raise ScriptError(f"queue {queue!r} does not exist at {target.shown_url}")
        messages = await peek_messages(connection, queue, args.n, target.timeout, args.max_body)
    if args.json:
        print(json.dumps({"queue": queue, "messages": messages}, ensure_ascii=False))
    else:
        print_peek(queue, messages)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings: RABBITMQ_URL and RABBITMQ_QUEUE_NAME (environment, then .env).",
    )
    common = argparse.ArgumentParser(add_help=False)
    add_broker_arguments(common)
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "count",
        parents=[common],
        help="ready messages and consumers of the queue and its .dlq",
        description="Ready messages and consumers of the queue and of <queue>.dlq. "
        "Exits 1 if the main queue does not exist.",
    )
    peek = commands.add_parser(
        "peek",
        parents=[common],
        help="show messages without removing them",
        description="Show up to N ready messages (properties, headers such as "
        "x-death-reason, body) and return them to the queue unchanged.",
    )
    peek.add_argument("--dlq", action="store_true", help="peek <queue>.dlq instead")
    peek.add_argument("-n", type=positive, default=1, help="how many messages (default 1)")
    peek.add_argument(
        "--max-body", type=positive, default=4096, help="bytes of body to show (default 4096)"
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_script("rabbitmq_inspector", args.verbose, lambda: asyncio.run(run(args)))


if __name__ == "__main__":
    raise SystemExit(main())
