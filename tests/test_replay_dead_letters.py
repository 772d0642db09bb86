"""scripts/replay_dead_letters.py against the real broker, and with the real service."""

from __future__ import annotations

import asyncio
import datetime
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiormq
import orjson
import pytest

from push_service.topology import Topology, declare_topology
from tests.conftest import ServiceFactory
from tests.support import (
    ROOT,
    PushServer,
    Rabbit,
    final_record,
    notification_record,
    run_script,
    script_env,
    unique,
    wait_until,
)

PUBLISHED_AT = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@pytest.fixture
async def queue(rabbit: Rabbit) -> AsyncIterator[str]:
    """A unique queue and its .dlq, declared as the service declares them; deleted after."""
    name = unique("test.replay")
    assert await declare_topology(rabbit.connection, Topology(name)) == []
    yield name
    await rabbit.delete(name, f"{name}.dlq")


async def dead_letter(
    rabbit: Rabbit, queue: str, notification_id: str, reason: str = "invalid_field: x", **props: Any
) -> None:
    """Put a message into `<queue>.dlq` as the service leaves it there."""
    headers = {
        "x-death-reason": reason,
        "x-original-queue": queue,
        "x-notification-id": notification_id,
        **props.pop("headers", {}),
    }
    body = orjson.dumps({"notification_id": notification_id, "title": "T", "devices": []})
    await rabbit.publish(f"{queue}.dlq", body, headers=headers, **props)


async def drain(rabbit: Rabbit, queue: str) -> list[aiormq.abc.DeliveredMessage]:
    """Every message of a queue, in order (taken off it)."""
    messages = []
    while (message := await rabbit.get(queue)) is not None:
        messages.append(message)
    return messages


def ids(messages: list[aiormq.abc.DeliveredMessage]) -> list[str]:
    return [orjson.loads(m.body)["notification_id"] for m in messages]


async def replay(queue: str, *args: str, cwd: Path) -> Any:
    return await run_script("replay_dead_letters", "--queue", queue, *args, cwd=cwd)


# --- the tool against the broker ----------------------------------------------------------


async def test_replayed_message_keeps_its_properties_without_the_death_headers(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    publisher_headers = {"x-peer": "orders", "trace-id": "abc-1", "attempt": 2}
    await dead_letter(
        rabbit,
        queue,
        "n-1",
        "message_too_large: 9000 bytes > 100",
        content_type="application/json; charset=utf-8",
        content_encoding="identity",
        message_id="m-1",
        correlation_id="c-1",
        app_id="orders-service",
        message_type="order.shipped",
        reply_to="orders.replies",
        priority=3,
        user_id="guest",
        timestamp=PUBLISHED_AT,
        headers={**publisher_headers, "x-delivery-count": 4, "x-first-death-reason": "rejected"},
    )
    result = await replay(queue, "--all", cwd=tmp_path)
    assert result.code == 0, result.both
    assert "replayed n-1 (message id m-1; dead-lettered for: message_too_large" in result.out
    assert f"replayed 1 of 1 dead letters looked at from {queue}.dlq to {queue}" in result.out

    [message] = await drain(rabbit, queue)
    props = message.header.properties
    assert props.content_type == "application/json; charset=utf-8"
    assert props.content_encoding == "identity"
    assert (props.message_id, props.correlation_id, props.app_id) == (
        "m-1",
        "c-1",
        "orders-service",
    )
    assert (props.message_type, props.reply_to, props.priority) == (
        "order.shipped",
        "orders.replies",
        3,
    )
    assert props.user_id == "guest" and props.delivery_mode == 2
    assert props.timestamp == PUBLISHED_AT
    assert props.headers == {**publisher_headers, "x-replay-count": 1}
    assert orjson.loads(message.body)["notification_id"] == "n-1"
    assert await rabbit.count(f"{queue}.dlq") == 0


async def test_by_id_moves_only_those_and_keeps_the_rest_in_order(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        await dead_letter(rabbit, queue, name)
    # Without the service's header the id is read from the body.
    body = orjson.dumps({"notification_id": "f", "title": "T"})
    await rabbit.publish(f"{queue}.dlq", body, headers={"x-death-reason": "invalid_devices: x"})

    result = await replay(queue, "--id", "b", "--id", "d", "--id", "f", cwd=tmp_path)
    assert result.code == 0, result.both
    assert ids(await drain(rabbit, queue)) == ["b", "d", "f"]
    assert ids(await drain(rabbit, f"{queue}.dlq")) == ["a", "c", "e"]


async def test_quorum_queues_keep_the_order_too(tmp_path: Path, rabbit: Rabbit) -> None:
    name = unique("test.replay.quorum")
    assert await declare_topology(rabbit.connection, Topology(name, "quorum")) == []
    try:
        for notification_id in ("a", "b", "c", "d"):
            await dead_letter(rabbit, name, notification_id)
        # A dry run returns every message: the quorum DLQ counts a delivery for each.
        assert (await replay(name, "--all", "--dry-run", cwd=tmp_path)).code == 0
        result = await replay(name, "--id", "b", "--id", "d", cwd=tmp_path)
        assert result.code == 0, result.both
        assert ids(await drain(rabbit, name)) == ["b", "d"]
        assert ids(await drain(rabbit, f"{name}.dlq")) == ["a", "c"]
    finally:
        await rabbit.delete(name, f"{name}.dlq")


async def test_dry_run_moves_nothing(tmp_path: Path, rabbit: Rabbit, queue: str) -> None:
    for name in ("a", "b", "c"):
        await dead_letter(rabbit, queue, name)
    result = await replay(queue, "--all", "--dry-run", cwd=tmp_path)
    assert result.code == 0, result.both
    assert [line.split()[2] for line in result.out.splitlines()[:3]] == ["a", "b", "c"]
    assert "would replay 3 of 3" in result.out and "3 left in" in result.out

    assert await rabbit.count(queue) == 0
    assert ids(await drain(rabbit, f"{queue}.dlq")) == ["a", "b", "c"]


async def test_reason_filter_limit_and_json(tmp_path: Path, rabbit: Rabbit, queue: str) -> None:
    await dead_letter(rabbit, queue, "big-1", "message_too_large: 1 > 0")
    await dead_letter(rabbit, queue, "bad-1", "invalid_field: title")
    await dead_letter(
        rabbit, queue, "big-2", "message_too_large: 2 > 0", headers={"x-replay-count": 2}
    )
    await dead_letter(rabbit, queue, "big-3", "message_too_large: 3 > 0")

    result = await replay(
        queue, "--reason", "message_too_large", "--limit", "2", "--json", cwd=tmp_path
    )
    assert result.code == 0, result.both
    document = result.json()
    assert [r["notification_id"] for r in document["replayed"]] == ["big-1", "big-2"]
    assert [r["replay_count"] for r in document["replayed"]] == [1, 3]
    assert document["kept"] == 1 and document["missing_ids"] == []
    moved = await drain(rabbit, queue)
    assert [m.header.properties.headers["x-replay-count"] for m in moved] == [1, 3]
    assert ids(await drain(rabbit, f"{queue}.dlq")) == ["bad-1", "big-3"]


async def test_unknown_id_exits_3_and_moves_nothing_else(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    await dead_letter(rabbit, queue, "a")
    result = await replay(queue, "--id", "a", "--id", "nope", cwd=tmp_path)
    assert result.code == 3, result.both
    assert f"not found in {queue}.dlq: nope" in result.out
    assert ids(await drain(rabbit, queue)) == ["a"]


async def test_usage_and_missing_queues(tmp_path: Path, queue: str) -> None:
    nothing_chosen = await replay(queue, cwd=tmp_path)
    assert nothing_chosen.code == 2 and "--all, --id ID or --reason CODE" in nothing_chosen.err
    missing = await replay(unique("test.replay.none"), "--all", cwd=tmp_path)
    assert missing.code == 1 and "does not exist" in missing.err
    assert "Traceback" not in missing.err


# --- interrupted runs lose nothing ---------------------------------------------------------


async def fill_dlq(rabbit: Rabbit, queue: str, count: int) -> list[str]:
    names = [f"n-{i:05d}" for i in range(count)]
    for name in names:
        await dead_letter(rabbit, queue, name)
    return names


async def start_replay(queue: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts/replay_dead_letters.py"),
        "--queue",
        queue,
        "--all",
        cwd=cwd,
        env=script_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_midway(
    rabbit: Rabbit, queue: str, proc: asyncio.subprocess.Process, signum: int
) -> tuple[int, str]:
    """Signal the replay once some messages have moved; its exit code and output."""

    async def some_moved() -> bool:
        return await rabbit.count(queue) >= 50

    await wait_until(some_moved, 60, interval=0.01, message="the replay to get going")
    proc.send_signal(signum)
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_ctrl_c_finishes_the_current_message_and_stops(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    names = await fill_dlq(rabbit, queue, 600)
    proc = await start_replay(queue, tmp_path)
    code, out = await stop_midway(rabbit, queue, proc, signal.SIGINT)
    assert code == 130, out
    assert "interrupted: the rest is still in" in out

    moved, kept = ids(await drain(rabbit, queue)), ids(await drain(rabbit, f"{queue}.dlq"))
    assert 0 < len(moved) < len(names), "stopped midway"
    assert moved + kept == names  # nothing lost, nothing twice, order kept
    assert [line.split()[1] for line in out.splitlines() if line.startswith("replayed n-")] == moved


async def test_killed_replay_loses_nothing_and_a_rerun_completes(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    names = await fill_dlq(rabbit, queue, 600)
    proc = await start_replay(queue, tmp_path)
    code, _ = await stop_midway(rabbit, queue, proc, signal.SIGKILL)
    assert code == -signal.SIGKILL

    moved = await drain(rabbit, queue)
    assert 0 < len(moved) < len(names)
    # The message between confirm and ack (if any) is in both queues: at most one.
    assert await rabbit.count(queue) == 0
    rerun = await replay(queue, "--all", cwd=tmp_path)
    assert rerun.code == 0, rerun.both
    everything = ids(moved) + ids(await drain(rabbit, queue))
    assert sorted(set(everything)) == names
    assert len(everything) - len(names) <= 1
    assert await rabbit.count(f"{queue}.dlq") == 0


# --- with the service: dead-lettered, replayed while broken, replayed once fixed -------------


async def test_replay_after_the_fix_delivers_and_before_it_dead_letters_again(
    tmp_path: Path,
    service_factory: ServiceFactory,
    pushserver: PushServer,
    rabbit: Rabbit,
) -> None:
    shared = {"RABBITMQ_QUEUE_NAME": unique("test.replay"), "REDIS_KEY_PREFIX": unique("t") + ":"}
    broken = await service_factory(MAX_MESSAGE_BYTES="1024", **shared)
    subscription, client_hash = await pushserver.subscribe(broken.env["VAPID_PUBLIC_KEY"])
    notification_id = unique("replayed")
    body = "x" * 1500  # over the broken service's MAX_MESSAGE_BYTES
    message = {
        "notification_id": notification_id,
        "devices": [subscription],
        "title": "Back",
        "body": body,
    }
    await rabbit.publish(
        broken.queue,
        message,
        content_type="application/json",
        message_id="peer-msg-1",
        timestamp=NOW,
        headers={"x-peer": "orders"},
    )
    dlq = f"{broken.queue}.dlq"
    first = await dead_lettered(rabbit, dlq)
    assert_original_properties(first, broken.queue, notification_id, replays=0)
    assert (await final_record(broken.base_url, notification_id))["status"] == "failed"

    env = {"RABBITMQ_QUEUE_NAME": broken.queue}
    again = await run_script("replay_dead_letters", "--id", notification_id, cwd=tmp_path, env=env)
    assert again.code == 0, again.both
    second = await dead_lettered(rabbit, dlq)
    assert_original_properties(second, broken.queue, notification_id, replays=1)
    assert str(second.header.properties.headers["x-death-reason"]).startswith("message_too_large")

    await broken.stop()
    fixed = await service_factory(**shared)
    assert await rabbit.count(dlq) == 1
    done = await run_script("replay_dead_letters", "--all", cwd=tmp_path, env=env)
    assert done.code == 0, done.both

    # The record said failed (dead-lettered); it turns sent once the replay is delivered.
    async def sent() -> dict[str, Any] | None:
        record = await notification_record(fixed.base_url, notification_id)
        return record if record and record["status"] == "sent" else None

    record = await wait_until(sent, message=f"{notification_id} to be sent")
    assert record["sent"] == 1 and record["failed"] == 0, record
    assert [m["title"] for m in await pushserver.messages(client_hash)] == ["Back"]
    assert await rabbit.count(dlq) == 0


async def dead_lettered(rabbit: Rabbit, dlq: str) -> aiormq.abc.DeliveredMessage:
    """Wait for the one message of the DLQ and peek at it (it stays there)."""

    async def one() -> bool:
        return await rabbit.count(dlq) == 1

    await wait_until(one, message=f"a message in {dlq}")
    channel = await rabbit.connection.channel()
    message = await channel.basic_get(dlq, no_ack=False)
    await channel.close()  # returns it to the DLQ
    return message


def assert_original_properties(
    message: aiormq.abc.DeliveredMessage, queue: str, notification_id: str, replays: int
) -> None:
    props = message.header.properties
    assert props.content_type == "application/json"
    assert props.message_id == "peer-msg-1"
    assert props.timestamp == NOW
    headers = props.headers
    assert headers["x-peer"] == "orders"
    assert headers["x-original-queue"] == queue
    assert headers["x-notification-id"] == notification_id
    assert headers.get("x-replay-count", 0) == replays
