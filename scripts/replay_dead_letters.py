#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""Move dead letters from <queue>.dlq back to the queue, once their cause is fixed.

    replay_dead_letters.py --all                 every dead letter
    replay_dead_letters.py --id ID [--id ID]     those of these notification ids
    replay_dead_letters.py --reason CODE         those dead-lettered for this reason
    ... --dry-run                                show what would move; move nothing

Filters combine: a message is replayed when it matches every filter given. Messages
are handled in the DLQ's order; those not selected stay in the DLQ, in their order.
Only the messages in the DLQ when the run starts are looked at, so a message that
is dead-lettered again while the run goes on is not replayed twice.

A replayed message is the original: same body and properties (content type and
encoding, message id, timestamp, correlation id, the publisher's headers), always
persistent. The dead-letter headers (x-death-reason, x-original-queue,
x-notification-id, and the broker's x-death, x-first-death-*, x-last-death-*,
x-delivery-count) are removed, and x-replay-count says how often it was replayed.
A message keeps its original timestamp, so one older than its TTL is not pushed: its
devices fail as `expired`.

Nothing is lost if the run stops at any point. Each message is taken from the DLQ
without acknowledging it, published to the queue with a publisher confirm, and only
then acknowledged. Stopped before the confirm, it is still in the DLQ (the broker
returns unacknowledged messages when the connection closes). Stopped between the
confirm and the acknowledgement, it is in both queues, and the next replay sends it
again: harmless, because the service does not push a notification again to a device
that already accepted it. Ctrl-C (or SIGTERM) finishes the current message and stops.

Connection settings come from push_service's configuration (RABBITMQ_URL,
RABBITMQ_QUEUE_NAME, the environment then an optional .env file); --url and --queue
override them.

Exit codes: 0 done, 1 broker unreachable, a queue missing or a publish not
confirmed, 2 bad usage or configuration, 3 an --id was not found in the DLQ,
130 interrupted (what was replayed is printed; the rest is still in the DLQ).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp import commands as spec
from pamqp.common import FieldTable
from rabbitmq_inspector import queue_state
from script_support import (
    EXIT_INTERRUPTED,
    ScriptError,
    Target,
    add_broker_arguments,
    close_quietly,
    connected,
    positive,
    publish_with_confirm,
    resolve_target,
    run_script,
    stop_on_signals,
)

from push_service.models import peek_notification_id

EXIT_NOT_FOUND = 3
REPLAY_COUNT = "x-replay-count"
# Added by the service when it dead-letters, or by the broker when it does.
DEAD_LETTER_HEADERS = frozenset(
    {"x-death-reason", "x-original-queue", "x-notification-id", "x-death", "x-delivery-count"}
)
BROKER_DEATH_PREFIXES = ("x-first-death-", "x-last-death-")


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay; an empty filter matches every message."""

    ids: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    limit: int | None = None

    def matches(self, notification_id: str | None, reason: str) -> bool:
        if self.ids and notification_id not in self.ids:
            return False
        return not self.reasons or reason.split(":", 1)[0].strip() in self.reasons


@dataclass
class Report:
    """What a run did; prints a line per replayed message as it goes (unless --json)."""

    dlq: str
    queue: str
    dry_run: bool
    as_json: bool = False
    looked_at: int = 0
    replayed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def kept(self) -> int:
        return self.looked_at - (0 if self.dry_run else len(self.replayed))

    @property
    def verb(self) -> str:
        return "would replay" if self.dry_run else "replayed"

    def add(self, about: dict[str, Any]) -> None:
        self.replayed.append(about)
        if not self.as_json:
            reason = about["reason"] or "no x-death-reason header"
            print(
                f"{self.verb} {about['notification_id'] or '(no notification id)'} "
                f"(message id {about['message_id'] or '-'}; dead-lettered for: {reason})",
                flush=True,
            )

    def print_summary(self, missing: list[str]) -> None:
        if self.as_json:
            document = {
                "queue": self.queue,
                "dlq": self.dlq,
                "dry_run": self.dry_run,
                "replayed": self.replayed,
                "kept": self.kept,
                "missing_ids": missing,
                "interrupted": self.interrupted,
            }
            print(json.dumps(document, ensure_ascii=False))
            return
        print(
            f"{self.verb} {len(self.replayed)} of {self.looked_at} dead letters looked at "
            f"from {self.dlq} to {self.queue}; {self.kept} left in {self.dlq}"
        )
        if self.interrupted:
            print(f"interrupted: the rest is still in {self.dlq}")
        for notification_id in missing:
            print(f"not found in {self.dlq}: {notification_id}")


def header_text(headers: FieldTable, name: str) -> str:
    value = headers.get(name)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def describe(message: DeliveredMessage) -> dict[str, Any]:
    """The notification id (the service's header, else the body's), message id and reason."""
    properties = message.header.properties
    headers = properties.headers or {}
    return {
        "notification_id": header_text(headers, "x-notification-id")
        or peek_notification_id(message.body),
        "message_id": properties.message_id,
        "reason": header_text(headers, "x-death-reason"),
        "replay_count": replay_count(headers) + 1,
    }


def replay_count(headers: FieldTable) -> int:
    value = headers.get(REPLAY_COUNT)
    return value if isinstance(value, int) and value >= 0 else 0


def replay_properties(properties: spec.Basic.Properties, user: str) -> spec.Basic.Properties:
    """The original properties without the dead-letter headers, persistent, counted.

    The broker refuses a `user_id` other than the connection's user: one set by
    another publisher cannot be kept.
    """
    headers = {
        name: value
        for name, value in (properties.headers or {}).items()
        if name not in DEAD_LETTER_HEADERS and not name.startswith(BROKER_DEATH_PREFIXES)
    }
    headers[REPLAY_COUNT] = replay_count(properties.headers or {}) + 1
    values = {name: getattr(properties, name) for name in spec.Basic.Properties.__slots__}
    values.update(headers=headers, delivery_mode=2)
    if properties.user_id != user:
        values["user_id"] = None
    return spec.Basic.Properties(**values)


async def take(channel: AbstractChannel, queue: str, timeout: float) -> DeliveredMessage | None:
    """The next ready message, unacknowledged; None when the queue has none."""
    async with asyncio.timeout(timeout):
        message = await channel.basic_get(queue, no_ack=False)
    return message if isinstance(message.delivery, spec.Basic.GetOk) else None


async def move(message: DeliveredMessage, sink: AbstractChannel, target: Target, user: str) -> None:
    """Publish to the queue, confirmed, then acknowledge in the DLQ (in that order)."""
    properties = replay_properties(message.header.properties, user)
    await publish_with_confirm(sink, target, target.queue, message.body, properties)
    tag = getattr(message.delivery, "delivery_tag", None)
    assert tag is not None
    await message.channel.basic_ack(tag)


async def check_queues(connection: AbstractConnection, target: Target, dlq: str) -> int:
    """The number of messages in the DLQ now; both queues must exist."""
    states = [await queue_state(connection, name, target.timeout) for name in (dlq, target.queue)]
    for state in states:
        if not state["exists"]:
            raise ScriptError(f"queue {state['name']!r} does not exist at {target.shown_url}")
    return int(states[0]["messages"])


async def replay(
    connection: AbstractConnection,
    target: Target,
    selection: Selection,
    report: Report,
    stop: asyncio.Event,
) -> None:
    present = await check_queues(connection, target, report.dlq)
    user = unquote(urlsplit(target.url).username or "guest")
    source = await connection.channel()
    sink = await connection.channel(publisher_confirms=True)
    try:
        # Messages not replayed stay unacknowledged until the source channel closes, so the
        # loop never sees them twice and the broker puts them back in their order.
        for _ in range(present):
            if stop.is_set():
                report.interrupted = True
                return
            if selection.limit is not None and len(report.replayed) >= selection.limit:
                return
            message = await take(source, report.dlq, target.timeout)
            if message is None:
                return
            report.looked_at += 1
            about = describe(message)
            if not selection.matches(about["notification_id"], about["reason"]):
                continue
            if not report.dry_run:
                await move(message, sink, target, user)
            report.add(about)
    finally:
        await close_quietly(source, target.timeout)  # returns the messages not replayed


# --- command line -----------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    selection = Selection(frozenset(args.id or ()), frozenset(args.reason or ()), args.limit)
    report = Report(f"{target.queue}.dlq", target.queue, args.dry_run, args.json)
    with stop_on_signals() as stop:
        async with connected(target) as connection:
            await replay(connection, target, selection, report, stop)
    found = {about["notification_id"] for about in report.replayed}
    missing = sorted(selection.ids - found) if selection.limit is None else []
    report.print_summary(missing)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_NOT_FOUND if missing else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings: RABBITMQ_URL and RABBITMQ_QUEUE_NAME (environment, then .env).",
    )
    which = p.add_argument_group("which dead letters (--all, or at least one filter)")
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument(
        "--id", action="append", metavar="ID", help="a notification id (repeat for more)"
    )
    which.add_argument(
        "--reason",
        action="append",
        metavar="CODE",
        help="a reason code such as message_too_large (the x-death-reason before ':')",
    )
    which.add_argument("--limit", type=positive, help="replay at most N messages")
    p.add_argument("--dry-run", action="store_true", help="show what would move; move nothing")
    add_broker_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not (args.all or args.id or args.reason):
        p.error("say which dead letters: --all, --id ID or --reason CODE")
    return run_script("replay_dead_letters", args.verbose, lambda: asyncio.run(run(args)))


if __name__ == "__main__":
    raise SystemExit(main())
