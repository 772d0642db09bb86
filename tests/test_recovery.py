"""A push service dark for a while under a backlog, and its recovery, end to end.

The issue's scenario: 6,000 notifications beside 1,000 for the healthy push service alone,
one in five (1,200) for a push service that accepts connections and never answers, the
service killed (SIGKILL) and started again in the middle of a 90-second outage. The
circuit's cool-downs are scaled down as the other outage tests do (production:
PUSH_CIRCUIT_MAX_OPEN_SECONDS 15 s and a push timeout of 10 s bound a recovery by about
25 s). The healthy pace is printed, not asserted: `make bench` measures it
(`scripts/bench/outage.py`), where nothing else shares the machine with the service.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time

import pytest
import redis.asyncio as redis

from push_service.circuits import FIRST_REQUESTS
from push_service.hold import hold_queue
from tests.conftest import ServiceFactory
from tests.push_fakes import push_service
from tests.support import Rabbit, Service, stored_record, unique, wait_until
from tests.test_outage import QUICK_OUTAGE, _metric, message, preload

pytestmark = pytest.mark.faults

SCENARIO = {
    **QUICK_OUTAGE,
    "PUSH_CIRCUIT_OPEN_SECONDS": "1",
    "PUSH_CIRCUIT_MAX_OPEN_SECONDS": "4",
    "PUSH_RETRY_LADDER_SECONDS": "0.5,1,2,4,8,16",
    "PUSH_RETRY_MAX_DELAY_SECONDS": "16",
}
ALONE, MIXED, DARK_EVERY = 1000, 6000, 5
OUTAGE, RESTART_AT, FIRST_SECONDS = 90.0, 45.0, 3.0
PAUSED, PAUSE = 40, 2.0
ROUND_TRIPS = (
    "push_held_messages_total",
    "push_parked_messages_total",
    "push_hold_probes_total",
    "push_released_messages_total",
)


async def round_trips(service: Service) -> dict[str, float]:
    return {name: await _metric(service, name) for name in ROUND_TRIPS}


def steady_pace(times: list[float]) -> float:
    """Pushes a second between the 10th and 90th percentile: start-up and stragglers
    (a push that waited for a slot) do not count."""
    low, high = times[len(times) // 10], times[len(times) * 9 // 10]
    return (len(times) * 8 // 10) / (high - low)


def window_pace(times: list[float], seconds: float) -> float:
    """Pushes a second in the first `seconds` after the first one."""
    return sum(1 for t in times if t - times[0] <= seconds) / seconds


async def test_held_pushes_go_out_within_seconds_of_recovery_across_a_restart(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    async with push_service() as healthy, push_service(dark=True) as dark:
        queue, prefix = unique("recovery"), unique("recovery") + ":"
        env = {"RABBITMQ_QUEUE_NAME": queue, "REDIS_KEY_PREFIX": prefix, **SCENARIO}
        dark_ids: list[str] = []
        backlog = [message(unique("h"), healthy.endpoint(unique("a"))) for _ in range(ALONE)]
        for i in range(MIXED):
            if i % DARK_EVERY == 0:
                dark_ids.append(unique("d"))
                backlog.append(message(dark_ids[-1], dark.endpoint(dark_ids[-1])))
            else:
                backlog.append(message(unique("h"), healthy.endpoint(unique("b"))))
        # The whole backlog first: the service sets the pace, healthy alone then beside.
        await preload(rabbit, queue, backlog)
        first = await service_factory(**env)
        went_dark = time.monotonic()
        healthy_total = ALONE + MIXED - len(dark_ids)
        await wait_until(lambda: len(healthy.accepted) >= healthy_total, 60, message="healthy")

        async def all_parked() -> bool:
            found = [await stored_record(redis_client, prefix, i) for i in dark_ids]
            return all(r.get("status") == "processing" for r in found)

        await wait_until(all_parked, 30, message="every dark notification parked")
        # Scenario pacing, not synchronisation: the restart falls in the outage's middle.
        await asyncio.sleep(max(0.0, went_dark + RESTART_AT - time.monotonic()))
        before_restart = await round_trips(first)
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
        second = await service_factory(**env)
        await asyncio.sleep(max(0.0, went_dark + OUTAGE - time.monotonic()))
        requests_in_outage = len(dark.requests)
        dark.come_back()
        back = time.monotonic()
        await wait_until(
            lambda: len(dark.accepted) >= len(dark_ids), 60, interval=0.2, message="recovery"
        )
        after = await round_trips(second)

        async def all_sent() -> bool:
            found = [await stored_record(redis_client, prefix, i) for i in dark_ids]
            return all(r.get("status") == "sent" for r in found)

        await wait_until(all_sent, 30, message="every dark notification recorded sent")
        left = [await rabbit.count(q) for q in second.queues]
        held_origins = await redis_client.smembers(f"{prefix}held-origins")
        await rabbit.delete(hold_queue(queue, dark.base_url))  # in case it was left

    times = sorted(at for name, at in healthy.accepted_at if name.startswith("b"))
    alone = sorted(at for name, at in healthy.accepted_at if name.startswith("a"))
    pace_alone, pace_beside = steady_pace(alone), steady_pace(times)
    first_seconds = window_pace(times, FIRST_SECONDS)
    delays = sorted(at - back for _, at in dark.accepted_at)
    trips = {
        k.removeprefix("push_").removesuffix("_total"): before_restart[k] + after[k]
        for k in ROUND_TRIPS
    }
    twice = sum(c > 1 for c in dark.accepted.values())
    print(
        f"\nrecovery of {len(dark_ids)} held: median {statistics.median(delays):.1f}s, "
        f"max {delays[-1]:.1f}s after the push service answered again; "
        f"delivered {len(dark.accepted)}/{len(dark_ids)}, twice {twice}; "
        f"healthy {pace_alone:.0f}/s alone, {pace_beside:.0f}/s beside "
        f"({pace_beside / pace_alone:.2f}x), "
        f"first {FIRST_SECONDS:g}s {first_seconds:.0f}/s ({first_seconds / pace_alone:.2f}x); "
        f"broker round trips in the outage {trips} (plus {requests_in_outage} requests "
        f"to the dark push service); service killed and restarted at {RESTART_AT:g}s"
    )
    assert set(dark.accepted) == set(dark_ids)  # none lost
    assert set(dark.accepted.values()) == {1}  # none twice
    assert set(healthy.accepted.values()) == {1}
    assert statistics.median(delays) < 10 and delays[-1] < 30
    assert trips["held_messages"] + trips["parked_messages"] < 3 * len(dark_ids)
    assert left == [0] * len(left)
    assert held_origins == set()  # released and forgotten (its hold queue deleted)


async def test_pushes_parked_busy_in_a_pause_are_held_once_and_go_out_at_its_first_answer(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    """A push service that stops answering for less than the stall time: the requests out
    hang, the pushes behind them are parked "busy" and held (one round trip each, not
    one per patience), and go out as soon as it answers, its circuit never opened."""
    async with push_service(dark=True) as paused:
        queue, prefix = unique("pause"), unique("pause") + ":"
        env = {
            "RABBITMQ_QUEUE_NAME": queue, "REDIS_KEY_PREFIX": prefix, **SCENARIO,
            "PUSH_CIRCUIT_STALL_SECONDS": "60", "PUSH_TIMEOUT_SECONDS": "60",
        }  # fmt: skip
        ids = [unique("p") for _ in range(PAUSED)]
        await preload(rabbit, queue, [message(i, paused.endpoint(i)) for i in ids])
        service = await service_factory(**env)
        behind = PAUSED - FIRST_REQUESTS  # a new origin: a few requests until it answers

        async def all_held() -> bool:
            return await _metric(service, "push_held_messages_total") >= behind

        await wait_until(all_held, 30, message="the pushes behind the hung ones held")
        # Scenario pacing: a pause of a few patiences, where parked pushes used to cycle.
        await asyncio.sleep(PAUSE)
        requests_in_pause = len(paused.requests)
        paused.come_back()
        back = time.monotonic()
        await wait_until(lambda: len(paused.accepted) == PAUSED, 30, message="every push")
        took = time.monotonic() - back
        trips = await round_trips(service)
        await wait_until(
            lambda: _forgotten(redis_client, prefix), 10, message="the held origin forgotten"
        )

    print(f"\npause: {behind} held once each, all out {took:.2f}s after the first answer")
    assert requests_in_pause == FIRST_REQUESTS
    assert set(paused.accepted.values()) == {1}
    assert trips["push_held_messages_total"] == behind  # each held once
    assert trips["push_parked_messages_total"] == 0  # none went round the delay ladder
    assert trips["push_hold_probes_total"] == 0  # released by the answer, no probe
    assert took < float(SCENARIO["PUSH_CIRCUIT_OPEN_SECONDS"])  # before any cool-down


async def _forgotten(client: redis.Redis, prefix: str) -> bool:
    return not await client.smembers(f"{prefix}held-origins")
