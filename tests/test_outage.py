"""Push services that go dark or throttle, end to end: the real service process, RabbitMQ
and Redis, and push services on cue (tests/push_fakes.py).

Production waits minutes; here the delay ladder, the circuit's cool-downs and the push
timeout are shortened through configuration, so these tests take seconds (one honours
a 75-second Retry-After for real).
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import itertools
import time
from typing import Any

import aiohttp
import redis.asyncio as redis

from push_service.config import DEFAULT_LADDER
from push_service.topology import Topology, declare_topology
from tests.conftest import ServiceFactory
from tests.push_fakes import push_service
from tests.support import (
    Rabbit,
    Service,
    device_keys,
    final_record,
    stored_record,
    unique,
    wait_until,
)

# A dark push service is noticed within a second; parked retries come back within seconds.
QUICK_OUTAGE = {
    "PUSH_TIMEOUT_SECONDS": "2",
    "PUSH_CIRCUIT_STALL_SECONDS": "1",
    "PUSH_CIRCUIT_OPEN_SECONDS": "1",
    "PUSH_CIRCUIT_MAX_OPEN_SECONDS": "2",
    "PUSH_RETRY_IN_PROCESS_SECONDS": "1",
    "PUSH_RETRY_LADDER_SECONDS": "0.5,1,2,4",
    "PUSH_RETRY_MAX_DELAY_SECONDS": "4",
    "LOG_LEVEL": "WARNING",
}


def message(notification_id: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "user_id": "u1",
        "devices": [{"endpoint": endpoint, "keys": device_keys()}],
        "title": "t",
        "body": "b",
        **extra,
    }


async def preload(rabbit: Rabbit, queue: str, messages: list[dict[str, Any]]) -> None:
    """Fill a queue before a service consumes it, so the service sets the pace."""
    await declare_topology(rabbit.connection, Topology(queue))
    for start in range(0, len(messages), 200):
        chunk = messages[start : start + 200]
        await asyncio.gather(*(rabbit.publish(queue, m) for m in chunk))


async def records(client: redis.Redis, service: Service, ids: list[str]) -> list[dict[str, Any]]:
    return [await stored_record(client, service.prefix, i) for i in ids]


# The pace test keeps the circuit's production cool-downs, and delay steps long enough
# to wait them out in one hop: parked pushes then come back about as rarely as they
# would in production, relative to the healthy traffic.
ISOLATION = {
    **QUICK_OUTAGE,
    "PUSH_CIRCUIT_OPEN_SECONDS": "5",
    "PUSH_CIRCUIT_MAX_OPEN_SECONDS": "10",
    "PUSH_RETRY_LADDER_SECONDS": "0.5,1,2,4,8,16",
    "PUSH_RETRY_MAX_DELAY_SECONDS": "16",
}
# Production traffic arrives as a stream: healthy notifications at a steady rate, alone
# and then with one dark notification for every five healthy ones. The rate is well
# below what the service drains here, so a healthy pace below it means the dark push
# service is holding the service back.
RATE, SECONDS, TICK = 300, 6, 0.05


async def stream(rabbit: Rabbit, queue: str, make: Any, dark: Any = None) -> None:
    """Publish RATE healthy messages a second for SECONDS (and RATE/5 dark ones)."""
    per_tick = int(RATE * TICK)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for tick in range(int(SECONDS / TICK)):
        batch = [make() for _ in range(per_tick)]
        if dark is not None and tick % 5 == 0:
            batch += [dark() for _ in range(per_tick)]
        await asyncio.gather(*(rabbit.publish(queue, m) for m in batch))
        # Pacing a load generator, not waiting for the service.
        await asyncio.sleep(max(0.0, started + (tick + 1) * TICK - loop.time()))


async def test_a_dark_push_service_neither_slows_a_healthy_one_nor_loses_its_notifications(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    """The issue's scenario: notifications for a healthy push service, and, one in six, for
    one that accepts connections and never answers. One service takes the healthy stream
    alone, then beside the dark one: the healthy pace beside keeps at least 0.8 of its pace
    alone. The dark notifications are parked, survive a restart of the service, and are
    all delivered, once each, after their push service comes back."""
    async with push_service() as healthy, push_service(dark=True) as dark:
        queue, prefix = unique("outage"), unique("outage") + ":"
        await declare_topology(rabbit.connection, Topology(queue))
        first = await service_factory(
            RABBITMQ_QUEUE_NAME=queue, REDIS_KEY_PREFIX=prefix, **ISOLATION
        )
        dark_ids: list[str] = []

        def dark_message() -> dict[str, Any]:
            dark_ids.append(unique("d"))
            return message(dark_ids[-1], dark.endpoint(dark_ids[-1]))

        await stream(rabbit, queue, lambda: message(unique("h"), healthy.endpoint(unique("a"))))
        await stream(
            rabbit, queue, lambda: message(unique("h"), healthy.endpoint(unique("b"))), dark_message
        )
        total = 2 * int(SECONDS / TICK) * int(RATE * TICK)
        await wait_until(lambda: len(healthy.accepted) >= total, 60, message="the healthy pushes")
        pace_alone, pace_beside = healthy.pace("a"), healthy.pace("b")

        async def all_parked() -> bool:
            found = await records(redis_client, first, dark_ids)
            return all(r.get("status") == "processing" and r["devices"] for r in found)

        await wait_until(all_parked, 30, message="every dark notification parked")
        await first.stop()
        dark.come_back()
        back = time.monotonic()
        second = await service_factory(
            RABBITMQ_QUEUE_NAME=queue, REDIS_KEY_PREFIX=prefix, **ISOLATION
        )

        async def all_sent() -> bool:
            found = await records(redis_client, second, dark_ids)
            return all(r.get("status") == "sent" for r in found)

        await wait_until(all_sent, 60, interval=0.2, message="every dark notification sent")
        caught_up = time.monotonic() - back
        left = [await rabbit.count(q) for q in second.queues]

    ratio = pace_beside / pace_alone
    print(
        f"healthy alone {pace_alone:.0f}/s, beside a dark one {pace_beside:.0f}/s "
        f"({ratio:.2f}x); dark: {len(dark.accepted)}/{len(dark_ids)} delivered "
        f"{caught_up:.1f}s after it came back (service restarted while they waited)"
    )
    assert ratio >= 0.8
    assert set(dark.accepted) == set(dark_ids)
    assert set(dark.accepted.values()) == {1}  # none pushed twice after it accepted
    assert set(healthy.accepted.values()) == {1}
    assert left == [0] * len(left)  # main, dead-letter and delay queues all empty


async def test_a_notification_whose_ttl_runs_out_during_an_outage_expires(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    async with push_service(dark=True) as dark:
        service = await service_factory(**QUICK_OUTAGE)
        notification_id = unique("ttl")
        await rabbit.publish(service.queue, message(notification_id, dark.endpoint("x"), ttl=4))

        done = await final_record(service.base_url, notification_id, timeout=30)
        deadline = done["deadline"]
        dark.come_back()

        async def nothing_parked() -> bool:
            return [await rabbit.count(q) for q in service.queues] == [0] * len(service.queues)

        await wait_until(nothing_parked, 10, message="no parked copy left anywhere")
        stored = await stored_record(redis_client, service.prefix, notification_id)

    device = done["devices"][0]
    assert (done["status"], device["status"], device["reason"]) == ("failed", "failed", "expired")
    assert "passed" in device["detail"] and "last error" in device["detail"]
    assert dark.accepted == {}
    cutoff = datetime.datetime.fromisoformat(deadline.replace("Z", "+00:00")).timestamp()
    assert all(seen.at < cutoff for seen in dark.requests)  # none after it
    assert stored["status"] == "failed"


async def test_a_retried_push_carries_the_remaining_ttl(
    service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    async with push_service() as pushes:
        endpoint = pushes.script("later", (503, {"Retry-After": "3"}))
        service = await service_factory(**QUICK_OUTAGE)
        notification_id = unique("ttl")
        await rabbit.publish(service.queue, message(notification_id, endpoint, ttl=60))

        done = await final_record(service.base_url, notification_id, timeout=30)

    first, second = pushes.seen("later")
    assert done["status"] == "sent"
    assert first.ttl == 60
    assert second.at - first.at >= 3.0  # parked, not retried early
    assert abs(second.ttl - (60 - round(second.at - first.at))) <= 1


async def test_a_long_retry_after_in_seconds_or_as_a_date_is_honoured_then_delivered(
    service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    """75 s is longer than any in-process wait (the old cap was 60 s): parked, several hops."""
    async with push_service() as pushes:
        when = email.utils.formatdate(time.time() + 8, usegmt=True)
        slow = pushes.script("slow", (429, {"Retry-After": "75"}))
        dated = pushes.script("dated", (503, {"Retry-After": when}))
        ladder = {"PUSH_RETRY_LADDER_SECONDS": "1,3,10,30"}
        service = await service_factory(**{**QUICK_OUTAGE, **ladder})
        ids = [unique("slow"), unique("dated")]
        for notification_id, endpoint in zip(ids, (slow, dated), strict=True):
            await rabbit.publish(service.queue, message(notification_id, endpoint, ttl=3600))

        dated_done = await final_record(service.base_url, ids[1], timeout=30)
        slow_done = await final_record(service.base_url, ids[0], timeout=120)

    slow_seen, dated_seen = pushes.seen("slow"), pushes.seen("dated")
    assert [len(slow_seen), len(dated_seen)] == [2, 2]
    assert slow_seen[1].at - slow_seen[0].at >= 75.0
    assert dated_seen[1].at >= email.utils.parsedate_to_datetime(when).timestamp()
    assert slow_done["status"] == dated_done["status"] == "sent"
    assert slow_done["devices"][0]["attempts"] == 2


async def test_the_production_ladder_shape_at_a_hundredth_of_the_scale(
    service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    """Six server errors in a row: retried in process, then parked on ever longer steps of
    the production ladder (scaled down), and sent on the seventh request."""
    scaled = ",".join(f"{step / 100:g}" for step in DEFAULT_LADDER)
    async with push_service() as pushes:
        endpoint = pushes.script("flaky", *[(500, {})] * 6)
        service = await service_factory(
            PUSH_RETRY_LADDER_SECONDS=scaled,
            PUSH_RETRY_BASE_DELAY_SECONDS="0.005",
            PUSH_RETRY_MAX_DELAY_SECONDS="6",
            PUSH_RETRY_IN_PROCESS_SECONDS="0.05",
            PUSH_CIRCUIT_FAILURES="100",
        )
        notification_id = unique("ladder")
        await rabbit.publish(service.queue, message(notification_id, endpoint))

        done = await final_record(service.base_url, notification_id, timeout=30)
        parked = await _metric(service, "push_parked_messages_total")

    times = [seen.at for seen in pushes.seen("flaky")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert done["status"] == "sent" and done["devices"][0]["attempts"] == 7
    assert parked >= 2  # waited in RabbitMQ, more than once
    assert gaps[-1] > gaps[0]  # backing off


async def _metric(service: Service, name: str) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{service.base_url}/metrics") as response:
            text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))
