#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""Publish one notification to the push queue, as a peer service would.

The message (the contract's queue format) is validated with the service's own
parser before it is sent, and published persistently with a publisher confirm;
the notification_id is printed on success, so

    id=$(scripts/publish_notification.py --subscription sub.json --title Hi)
    curl localhost:3004/notifications/$id

Connection settings come from push_service's configuration (RABBITMQ_URL,
RABBITMQ_QUEUE_NAME, PUSH_ENDPOINT_ALLOWLIST, PUSH_ALLOW_HTTP; the environment,
then an optional .env file); --url and --queue override them.

Exit codes: 0 published, 1 broker unreachable or the publish not confirmed,
2 bad usage, configuration or an invalid message.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiormq
from aiormq.abc import AbstractConnection
from pamqp import commands as spec
from script_support import (
    EXIT_USAGE,
    ScriptError,
    Target,
    connected,
    publish_with_confirm,
    resolve_target,
    run_script,
)

from push_service.config import URGENCIES, Settings
from push_service.endpoints import EndpointPolicy
from push_service.errors import ValidationError
from push_service.models import Notification, parse_notification
from push_service.topology import QueueNotDurable, Topology, declare_topology

# --- the message --------------------------------------------------------------------------


def read_subscriptions(args: argparse.Namespace) -> list[Any]:
    """PushSubscription objects from --subscription files/stdin and --subscription-json."""
    sources: list[tuple[str, str]] = []
    for path in args.subscription or []:
        if path == "-":
            sources.append(("stdin", sys.stdin.read()))
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                sources.append((path, handle.read()))
        except OSError as exc:
            raise ScriptError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    for index, text in enumerate(args.subscription_json or [], 1):
        sources.append((f"--subscription-json #{index}", text))
    if not sources:
        raise ScriptError("give --subscription FILE (or -) or --subscription-json", EXIT_USAGE)
    devices: list[Any] = []
    for name, text in sources:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ScriptError(f"{name} is not valid JSON: {exc}", EXIT_USAGE) from None
        # A file may hold one PushSubscription or a list of them.
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping):
                # Only what a device needs: browsers add expirationTime, peers add user fields.
                item = {k: item[k] for k in ("endpoint", "keys") if k in item}
            devices.append(item)
    return devices


def build_message(args: argparse.Namespace, devices: list[Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "notification_id": args.id or str(uuid.uuid4()),
        "devices": devices,
        "title": args.title,
        "body": args.body,
    }
    optional = {
        "user_id": args.user_id,
        "action_url": args.action_url,
        "ttl": args.ttl,
        "urgency": args.urgency,
        "topic": args.topic,
        "icon": args.icon,
        "tag": args.tag,
    }
    message.update({k: v for k, v in optional.items() if v is not None})
    if args.data is not None:
        try:
            message["data"] = json.loads(args.data)
        except ValueError as exc:
            raise ScriptError(f"--data is not valid JSON: {exc}", EXIT_USAGE) from None
    return message


def endpoint_policy(settings: Settings, devices: list[Any], allow_any: bool) -> EndpointPolicy:
    """The service's endpoint policy, or (for local testing) one that admits these endpoints."""
    if not allow_any:
        return EndpointPolicy(settings.push_endpoint_allowlist, settings.push_allow_http)
    hosts = []
    for device in devices:
        endpoint = device.get("endpoint") if isinstance(device, Mapping) else None
        if isinstance(endpoint, str):
            try:
                hosts.append(urlsplit(endpoint).hostname or "")
            except ValueError:
                continue
    return EndpointPolicy(tuple(h for h in hosts if h), allow_http=True)


def validate(body: bytes, policy: EndpointPolicy, settings: Settings) -> Notification:
    try:
        notification = parse_notification(body, policy, settings.max_devices_per_message)
    except ValidationError as exc:
        raise ScriptError(f"invalid notification: {exc}", EXIT_USAGE) from None
    if notification.rejected:
        problems = "; ".join(
            f"{device.endpoint[:80]}: {device.reason}: {device.detail}"
            for device in notification.rejected
        )
        hint = (
            ""
            if policy.any_public
            else " (PUSH_ENDPOINT_ALLOWLIST/PUSH_ALLOW_HTTP apply; "
            "--allow-any-endpoint skips the allowlist for local testing)"
        )
        raise ScriptError(f"the service would reject devices: {problems}{hint}", EXIT_USAGE)
    return notification


# --- publishing -------------------------------------------------------------------------


async def ensure_queue(connection: AbstractConnection, target: Target, declare: bool) -> None:
    channel = await connection.channel()
    try:
        if declare:
            topology = Topology(target.queue, target.settings.rabbitmq_queue_type)
            for warning in await declare_topology(connection, topology):
                print(f"warning: {warning}", file=sys.stderr)
        else:
            await channel.queue_declare(target.queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise ScriptError(
            f"queue {target.queue!r} does not exist at {target.shown_url} "
            "(start the service first, or pass --declare)"
        ) from None
    except QueueNotDurable as exc:
        raise ScriptError(str(exc)) from None
    finally:
        if not channel.is_closed:
            await channel.close()


async def publish(target: Target, body: bytes, notification_id: str, declare: bool) -> None:
    async with connected(target) as connection:
        async with asyncio.timeout(target.timeout):
            await ensure_queue(connection, target, declare)
            channel = await connection.channel(publisher_confirms=True)
        properties = spec.Basic.Properties(
            delivery_mode=2,
            content_type="application/json",
            message_id=notification_id,
            timestamp=datetime.datetime.now(datetime.UTC),
        )
        await publish_with_confirm(channel, target, target.queue, body, properties)


def run(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    settings = target.settings
    devices = read_subscriptions(args)
    message = build_message(args, devices)
    body = json.dumps(message, ensure_ascii=False).encode()
    policy = endpoint_policy(settings, devices, args.allow_any_endpoint)
    notification = validate(body, policy, settings)
    if args.dry_run:
        print(body.decode())
        return 0
    asyncio.run(publish(target, body, notification.notification_id, args.declare))
    print(notification.notification_id)
    return 0


# --- command line -----------------------------------------------------------------------


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings: RABBITMQ_URL, RABBITMQ_QUEUE_NAME, PUSH_ENDPOINT_ALLOWLIST, "
        "PUSH_ALLOW_HTTP (environment, then .env).",
    )
    devices = p.add_argument_group("devices (at least one; each may repeat)")
    devices.add_argument(
        "--subscription",
        action="append",
        metavar="FILE",
        help="PushSubscription JSON file (or a JSON list of them); '-' reads stdin",
    )
    devices.add_argument(
        "--subscription-json", action="append", metavar="JSON", help="PushSubscription JSON text"
    )
    content = p.add_argument_group("notification")
    content.add_argument("--title", required=True)
    content.add_argument("--body", default="")
    content.add_argument("--action-url", help="http(s) URL opened on click")
    content.add_argument("--user-id")
    content.add_argument("--icon", help="icon URL")
    content.add_argument("--tag")
    content.add_argument("--data", metavar="JSON", help="extra JSON object for the worker")
    content.add_argument("--ttl", type=non_negative, help="seconds the push service keeps it")
    content.add_argument("--urgency", choices=URGENCIES)
    content.add_argument("--topic", help="replaces a pending push with the same topic")
    content.add_argument("--id", help="notification_id (default: a new UUID4)")
    broker = p.add_argument_group("broker")
    broker.add_argument("--url", help="AMQP URL (default: RABBITMQ_URL)")
    broker.add_argument("--queue", help="queue name (default: RABBITMQ_QUEUE_NAME)")
    broker.add_argument(
        "--timeout", type=float, default=5.0, help="seconds for connect and confirm (default 5)"
    )
    broker.add_argument(
        "--declare",
        action="store_true",
        help="declare the queue and its .dlq as the service does, if missing",
    )
    p.add_argument(
        "--allow-any-endpoint",
        action="store_true",
        help="skip PUSH_ENDPOINT_ALLOWLIST and admit http (local testing; the service "
        "still applies its own policy)",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print; do not publish")
    p.add_argument("-v", "--verbose", action="store_true", help="log AMQP library details")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_script("publish_notification", args.verbose, lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
