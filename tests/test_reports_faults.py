"""Reports to the User Service under real faults: the User Service down for a minute, the
service SIGKILLed in the middle, the broker restarted, the User Service hanging during a
wave of gone subscriptions. Nothing may be lost, and delivery may not slow down.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
import redis.asyncio as redis

from push_service.reports import deactivation
from tests.conftest import ServiceFactory
from tests.push_fakes import PushService, push_service
from tests.rabbit_cluster import RabbitCluster, broker_stopped
from tests.support import Rabbit, Service, device_keys, rabbit_client, unique, wait_until
from tests.user_service_fake import UserServiceFake, user_service_fake

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 60.0  # as the issue measured it: a User Service deploy gone wrong
QUICK_REPORTS = {"USER_SERVICE_REPORT_RETRY_SECONDS": "0.5,1,2,5"}


def message(notification_id: str, endpoint: str, keys: dict[str, str]) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "user_id": f"user-{notification_id}",
        "devices": [{"endpoint": endpoint, "keys": keys}],
        "title": "t",
        "body": "b",
    }


async def publish_gone(rabbit: Rabbit, service: Service, pushes: PushService, count: int) -> dict:
    """`count` notifications whose only device answers 410; returns the expected report ids."""
    keys = device_keys()
    expected = {}
    for _ in range(count):
        notification_id = unique("gone")
        endpoint = pushes.script(notification_id, (410, {}))
        await rabbit.publish(service.queue, message(notification_id, endpoint, keys))
        report = deactivation(
            user_id=f"user-{notification_id}",
            endpoint=endpoint,
            reason="subscription_gone",
            status_code=410,
            notification_id=notification_id,
        )
        expected[report.report_id] = notification_id
    return expected


async def deactivations(client: redis.Redis, service: Service, ids: list[str]) -> list[Any]:
    """Each notification's device `deactivation` as a peer reads it (the answer wins)."""
    found: list[str | None] = []
    for notification_id in ids:
        key = f"{service.prefix}notification:{notification_id}"
        raw: dict[str, str] = await client.hgetall(key)  # type: ignore[assignment]
        answers = [v for k, v in raw.items() if k.startswith("u:")]
        queued = ["queued" for k in raw if k.startswith("d:")]
        found.append(answers[0] if answers else queued[0] if queued else None)
    return found


async def test_a_minute_of_user_service_outage_and_a_sigkill_lose_no_report(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    async with push_service() as pushes, user_service_fake() as users:
        await users.down()
        outage_started = time.monotonic()
        first = await service_factory(USER_SERVICE_URL=users.base_url, **QUICK_REPORTS)
        expected = await publish_gone(rabbit, first, pushes, 40)
        ids = list(expected.values())

        async def all_queued() -> bool:
            return await deactivations(redis_client, first, ids) == ["queued"] * len(ids)

        await wait_until(all_queued, 30, message="40 gone devices with their reports queued")
        first.signal(signal.SIGKILL)  # mid-outage, reports parked in delay queues
        await first.wait_exit(10)
        second = await service_factory(
            RABBITMQ_QUEUE_NAME=first.queue,
            REDIS_KEY_PREFIX=first.prefix,
            USER_SERVICE_URL=users.base_url,
            **QUICK_REPORTS,
        )
        # The outage's length is the scenario, not a synchronisation.
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        assert users.accepted == []
        await users.up()
        back = time.monotonic()

        await wait_until(
            lambda: set(users.report_ids()) >= set(expected), 60, message="all 40 reports"
        )
        arrived_after = time.monotonic() - back

        async def all_answered() -> bool:
            return await deactivations(redis_client, second, ids) == ["ok"] * len(ids)

        await wait_until(all_answered, 30, message="every answer on record")
        dead = await rabbit.count(f"{second.queue}.reports.dlq")

    counts = users.report_ids()
    duplicates = sum(counts.values()) - len(counts)
    print(
        f"\nUser Service down {OUTAGE_SECONDS:.0f}s, service SIGKILLed mid-outage: "
        f"{len(counts)}/40 reports arrived {arrived_after:.1f}s after it came back, "
        f"duplicates={duplicates} (same report_id), dead-lettered={dead}"
    )
    assert set(counts) == set(expected)  # none lost, none invented
    assert dead == 0


async def test_reports_survive_a_broker_restart(
    service_factory: ServiceFactory, private_broker: RabbitCluster, redis_client: redis.Redis
) -> None:
    node = private_broker.nodes[0]
    async with (
        push_service() as pushes,
        user_service_fake() as users,
        rabbit_client(node.url) as rabbit,
    ):
        await users.down()
        service = await service_factory(
            RABBITMQ_URL=node.url, USER_SERVICE_URL=users.base_url, **QUICK_REPORTS
        )
        expected = await publish_gone(rabbit, service, pushes, 20)
        ids = list(expected.values())

        async def all_queued() -> bool:
            return await deactivations(redis_client, service, ids) == ["queued"] * len(ids)

        await wait_until(all_queued, 30, message="20 reports queued")
        async with broker_stopped(private_broker):
            pass  # every report is in a durable queue, persistent, when the broker stops
        await service.wait_ready(60)
        await users.up()
        await wait_until(
            lambda: set(users.report_ids()) >= set(expected), 60, message="all 20 reports"
        )
    assert set(users.report_ids()) == set(expected)


async def _pace(
    service_factory: ServiceFactory,
    rabbit: Rabbit,
    users: UserServiceFake,
    healthy: int,
    gone: int,
) -> float:
    """Healthy pushes per second while one process drains a preloaded queue with `gone`
    410s mixed in evenly."""
    async with push_service() as pushes:
        queue = unique("test.push")
        await rabbit.declare(queue)  # as a peer would: durable, no arguments
        keys = device_keys()
        every = healthy // gone if gone else 0
        for i in range(healthy):
            name = f"ok-{i}"
            await rabbit.publish(queue, message(unique(name), pushes.endpoint(name), keys))
            if every and i % every == 0:
                await rabbit.publish(
                    queue, message(unique("g"), pushes.script(f"gone-{i}", (410, {})), keys)
                )
        service = await service_factory(
            RABBITMQ_QUEUE_NAME=queue, USER_SERVICE_URL=users.base_url, **QUICK_REPORTS
        )
        await wait_until(
            lambda: sum(n.startswith("ok-") for n in pushes.accepted) == healthy,
            120,
            message="every healthy push",
        )
        await service.stop()
        return pushes.pace("ok-")


async def test_a_hanging_user_service_does_not_slow_delivery(
    service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    async with user_service_fake() as users:
        # The same wave of 300 gone subscriptions each time: only the User Service differs.
        answering = await _pace(service_factory, rabbit, users, 1500, 300)
        answered = len(users.accepted)
        users.hang()  # accepts every report and never answers
        hanging = await _pace(service_factory, rabbit, users, 1500, 300)
        attempts = users.attempts - answered

    ratio = hanging / answering
    print(
        f"\nhealthy pace during a wave of 300 gone: {answering:.0f}/s with the User Service "
        f"answering, {hanging:.0f}/s with it hanging ({ratio:.2f}x; {attempts} report "
        "requests held open)"
    )
    assert attempts > 0  # the wave did reach the hanging User Service
    assert ratio >= 0.8
