"""Parked retries: the delay ladder, and real round trips through RabbitMQ's delay queues.

The round trips use a short ladder (0.2 s and 5 s) declared with the service's own
`declare_topology`, on classic and quorum queues: a parked copy must carry exactly
the devices to retry, keep the publisher's headers, drop the broker's, and come back
to the main queue once its step's TTL has run out.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
import pytest
from aiormq.abc import DeliveredMessage
from hypothesis import example, given
from hypothesis import strategies as st
from pamqp import commands as spec

from push_service.config import DEFAULT_LADDER
from push_service.metrics import Metrics
from push_service.models import device_key
from push_service.parking import Ladder, Parking, parked_properties
from push_service.status import DeviceRetry
from push_service.topology import Topology, declare_topology
from tests.support import Rabbit, unique, wait_until

SHORT, LONG = 0.2, 5.0
LADDER = Ladder((SHORT, LONG))
QUEUE_TYPES = ["classic", "quorum"]

# --- which step a wait takes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "step"),
    [
        (-5.0, 1.0),  # overdue: the shortest step
        (0.0, 1.0),
        (0.3, 1.0),  # below the shortest step: the shortest
        (1.0, 1.0),
        (1.4, 1.0),  # 3 would overshoot by more than half: 1, then the rest
        (2.0, 3.0),  # 3 overshoots by exactly half: taken
        (2.9, 3.0),
        (3.0, 3.0),
        (5.0, 3.0),
        (6.6, 3.0),
        (6.7, 10.0),
        (75.0, 100.0),  # a Retry-After: 75 waits 100 s, not 30 + 30 + 10 + ...
        (60.0, 30.0),
        (3000.0, 3000.0),
        (86_400.0, 3000.0),  # longer than the longest step: the longest, then again
        (1e9, 3000.0),
    ],
)
def test_step_for_the_default_ladder(wait: float, step: float) -> None:
    assert Ladder(DEFAULT_LADDER).step_for(wait) == step


ladders = st.lists(st.floats(0.01, 1e6), min_size=1, max_size=8, unique=True).map(
    lambda steps: Ladder(tuple(sorted(steps)))
)


@given(ladder=ladders, wait=st.floats(-1e3, 1e8))
def test_a_step_overshoots_by_at_most_half_or_is_the_longest_within_the_wait(
    ladder: Ladder, wait: float
) -> None:
    step = ladder.step_for(wait)
    assert step in ladder.steps
    if step >= wait:
        assert step <= wait * 1.5 or step == ladder.steps[0]
    else:
        assert step == max(s for s in ladder.steps if s < wait)
        assert not [s for s in ladder.steps if wait <= s <= wait * 1.5]


def back_after(ladder: Ladder, wait: float) -> tuple[float, int]:
    """When a device parked for `wait` is pushed, and in how many hops: parked again for
    the rest each time it comes back early, as the consumer does."""
    waited, hops = 0.0, 0
    while waited < wait and not math.isclose(waited, wait, rel_tol=1e-9):
        waited += ladder.step_for(wait - waited)
        hops += 1
    return waited, hops


# Ladders shaped like the production one: steps a few times apart.
geometric = st.builds(
    lambda first, ratios: Ladder(tuple(first * math.prod(ratios[:i]) for i in range(len(ratios)))),
    st.floats(0.01, 10),
    st.lists(st.floats(1.5, 10), min_size=1, max_size=8),
)


@given(ladder=geometric, scale=st.floats(0.0001, 100))
def test_a_parked_device_comes_back_when_due_and_never_much_later(
    ladder: Ladder, scale: float
) -> None:
    wait = ladder.steps[-1] * scale
    waited, _ = back_after(ladder, wait)
    assert waited >= wait * (1 - 1e-9)
    assert waited <= wait + max(wait / 2, ladder.steps[0]) + 1e-6 * wait


@pytest.mark.parametrize("wait", [0.5, 6.6, 75, 1444.5, 3600, 86_400])
def test_the_default_ladder_needs_few_hops(wait: float) -> None:
    waited, hops = back_after(Ladder(DEFAULT_LADDER), wait)
    assert hops <= wait // 3000 + 8
    assert wait <= waited <= wait * 1.5 + 1


# --- names and arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "name"),
    [
        (0.01, "q.delay.10ms"),
        (0.2, "q.delay.200ms"),
        (0.5, "q.delay.500ms"),
        (1.0, "q.delay.1s"),
        (1.5, "q.delay.1500ms"),
        (10.0, "q.delay.10s"),
        (3000.0, "q.delay.3000s"),
        (1_000_000.0, "q.delay.1000000s"),
        (1_234_567.0, "q.delay.1234567s"),
    ],
)
def test_delay_queue_names(step: float, name: str) -> None:
    assert Ladder.queue("q", step) == name


@given(a=st.floats(0.01, 2_000_000), b=st.floats(0.01, 2_000_000))
@example(a=1_000_000.0, b=1_000_001.0)
def test_steps_with_different_ttls_have_different_queues(a: float, b: float) -> None:
    # One name for two TTLs would make the second declaration fail (PRECONDITION_FAILED).
    if round(a * 1000) != round(b * 1000):
        assert Ladder.queue("q", a) != Ladder.queue("q", b)


def test_classic_delay_queues_dead_letter_back_to_the_main_queue() -> None:
    assert LADDER.queues(Topology("main")) == {
        "main.delay.200ms": {
            "x-message-ttl": 200,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "main",
        },
        "main.delay.5s": {
            "x-message-ttl": 5000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "main",
        },
    }


def test_quorum_delay_queues_dead_letter_at_least_once() -> None:
    queues = LADDER.queues(Topology("main", "quorum"))
    assert queues["main.delay.5s"] == {
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "main",
        "x-queue-type": "quorum",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


# --- the parked copy's properties ----------------------------------------------------------------

PUBLISHED = datetime.datetime(2027, 1, 15, 8, 0, tzinfo=datetime.UTC)


# What a peer publishes, broker headers included as a message that was dead-lettered
# (or redelivered by a quorum queue) before carries them.
PUBLISHER: dict[str, Any] = {
    "content_type": "application/json",
    "headers": {
        "x-tenant": "t1",
        "x-trace": 7,
        "x-death": [{"count": 5, "queue": "elsewhere", "reason": "expired"}],
        "x-delivery-count": 3,
        "x-first-death-queue": "elsewhere",
        "x-first-death-reason": "expired",
        "x-first-death-exchange": "",
    },
    "priority": 4,
    "correlation_id": "corr-1",
    "message_id": "original-id",
    "timestamp": PUBLISHED,
    "message_type": "notification",
    "app_id": "peer-app",
    "expiration": "60000",
}


def original_properties() -> spec.Basic.Properties:
    return spec.Basic.Properties(delivery_mode=2, **PUBLISHER)


def test_a_parked_copy_keeps_the_publishers_properties_and_drops_the_brokers() -> None:
    copy = parked_properties(original_properties(), hops=1)

    assert copy.headers == {
        "x-tenant": "t1",
        "x-trace": 7,
        "x-push-parked": 1,
        "x-push-original-message-id": "original-id",
    }
    assert copy.message_id not in (None, "original-id")
    assert (copy.content_type, copy.delivery_mode, copy.timestamp) == (
        "application/json",
        2,
        PUBLISHED,
    )
    assert (copy.priority, copy.correlation_id, copy.message_type, copy.app_id) == (
        4,
        "corr-1",
        "notification",
        "peer-app",
    )
    assert copy.expiration is None  # the step's TTL decides when it comes back


def test_each_copy_has_its_own_message_id_and_the_first_one_is_kept() -> None:
    first = parked_properties(original_properties(), hops=1)
    second = parked_properties(first, hops=2)
    assert second.headers["x-push-original-message-id"] == "original-id"
    assert second.headers["x-push-parked"] == 2
    assert len({first.message_id, second.message_id, "original-id"}) == 3


def test_a_message_without_id_or_headers_parks_too() -> None:
    copy = parked_properties(spec.Basic.Properties(), hops=1)
    assert copy.headers == {"x-push-parked": 1, "x-push-original-message-id": ""}
    assert copy.message_id


# --- round trips through the real broker -------------------------------------------------------


@dataclass
class Ladders:
    """A declared main queue with its DLQ and delay ladder, and a Parking that uses them."""

    rabbit: Rabbit
    topology: Topology
    parking: Parking
    metrics: Metrics

    @property
    def main(self) -> str:
        return self.topology.queue

    def delay(self, step: float) -> str:
        return LADDER.queue(self.main, step)

    async def take(self, queue: str, timeout: float = 10.0) -> DeliveredMessage:
        """Wait for a message on `queue` and take it off (acked)."""
        return await wait_until(
            lambda: self.rabbit.get(queue), timeout, interval=0.01, message=f"a message on {queue}"
        )


MakeLadders = Callable[[str], Awaitable[Ladders]]


@pytest.fixture
async def make_ladders(rabbit: Rabbit) -> AsyncIterator[MakeLadders]:
    made: list[Topology] = []

    async def make(queue_type: str) -> Ladders:
        base = Topology(unique("test.parking"), queue_type)
        topology = Topology(base.queue, queue_type, LADDER.queues(base))
        made.append(topology)
        assert await declare_topology(rabbit.connection, topology) == []
        metrics = Metrics()
        return Ladders(rabbit, topology, Parking(LADDER, topology, 10.0, metrics), metrics)

    yield make
    for topology in made:
        await rabbit.delete(topology.queue, topology.dead_letter_queue, *topology.extra)


def message_body(endpoints: list[str]) -> dict[str, Any]:
    return {
        "notification_id": unique("n"),
        "user_id": "user-1",
        "title": "Hello",
        "body": "World",
        "data": {"k": "v"},
        "devices": [{"endpoint": e, "keys": {"p256dh": "P", "auth": "A"}} for e in endpoints],
    }


def retry(endpoint: str, due_in: float) -> DeviceRetry:
    return DeviceRetry(device_key(endpoint), endpoint, time.time() + due_in, 1, "backoff")


async def deliver(
    ladders: Ladders, body: dict[str, Any] | bytes, **properties: Any
) -> DeliveredMessage:
    """Publish to the main queue and take the message off it, as the consumer would get it."""
    await ladders.rabbit.publish(ladders.main, body, **properties)
    return await ladders.take(ladders.main)


def deaths(message: DeliveredMessage) -> list[dict[str, Any]]:
    """The broker's `x-death` records of a dead-lettered message."""
    value = message.header.properties.headers["x-death"]
    assert isinstance(value, list)
    return cast(list[dict[str, Any]], value)


def endpoints_of(message: DeliveredMessage) -> list[str]:
    return [d["endpoint"] for d in orjson.loads(message.body)["devices"]]


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_a_parked_copy_carries_only_the_devices_to_retry_and_comes_back_after_its_step(
    make_ladders: MakeLadders, queue_type: str
) -> None:
    ladders = await make_ladders(queue_type)
    endpoints = [f"https://push.example.net/p/{i}" for i in range(4)]
    body = message_body(endpoints)
    original = await deliver(ladders, body, **PUBLISHER)
    sent_at_once, soon, later, also_soon = endpoints

    started = time.monotonic()
    await ladders.parking.park(
        original, [retry(soon, 0.1), retry(later, 4.0), retry(also_soon, 0.15)], whole=False
    )
    parked_later = await ladders.take(ladders.delay(LONG))
    back = await ladders.take(ladders.main)
    elapsed = time.monotonic() - started

    assert elapsed >= SHORT * 0.9  # not before the step's TTL ran out
    assert ladders.metrics.parked.value() == 2  # one copy per step
    assert endpoints_of(back) == [soon, also_soon]  # in the original order
    assert endpoints_of(parked_later) == [later]
    assert sent_at_once not in endpoints_of(back) + endpoints_of(parked_later)
    assert {**orjson.loads(back.body), "devices": []} == {**body, "devices": []}

    headers = back.header.properties.headers
    assert (headers["x-tenant"], headers["x-trace"]) == ("t1", 7)
    assert headers["x-push-parked"] == 1
    assert headers["x-push-original-message-id"] == "original-id"
    assert headers.get("x-delivery-count", 0) == 0  # the stale count is gone
    # The broker's own record of this hop only, not the stale one of the original.
    [death] = deaths(back)
    assert (death["queue"], death["reason"], death["count"]) == (ladders.delay(SHORT), "expired", 1)
    properties = back.header.properties
    assert properties.message_id not in (None, "original-id")
    assert properties.message_id != parked_later.header.properties.message_id
    assert properties.timestamp == PUBLISHED
    assert (properties.delivery_mode, properties.correlation_id, properties.priority) == (
        2,
        "corr-1",
        4,
    )
    assert properties.expiration is None


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_a_copy_parked_again_counts_its_hops(
    make_ladders: MakeLadders, queue_type: str
) -> None:
    ladders = await make_ladders(queue_type)
    endpoint = "https://push.example.net/p/0"
    message = await deliver(ladders, message_body([endpoint]), message_id="first")

    for hop in (1, 2, 3):
        await ladders.parking.park(message, [retry(endpoint, 0.0)], whole=True)
        message = await ladders.take(ladders.main)
        headers = message.header.properties.headers
        assert headers["x-push-parked"] == hop
        assert headers["x-push-original-message-id"] == "first"
        assert len(deaths(message)) == 1


async def test_a_whole_message_to_one_step_is_parked_as_it_came(make_ladders: MakeLadders) -> None:
    ladders = await make_ladders("classic")
    endpoints = ["https://push.example.net/p/0", "https://push.example.net/p/1"]
    body = orjson.dumps(message_body(endpoints), option=orjson.OPT_INDENT_2)
    message = await deliver(ladders, body, message_id="first")

    await ladders.parking.park(message, [retry(e, 4.0) for e in endpoints], whole=True)

    parked = await ladders.take(ladders.delay(LONG))
    assert parked.body == body  # not parsed and written again
    assert parked.header.properties.headers["x-push-parked"] == 1


async def test_a_whole_message_due_at_different_times_is_split_per_step(
    make_ladders: MakeLadders,
) -> None:
    ladders = await make_ladders("classic")
    soon, later = "https://push.example.net/p/0", "https://push.example.net/p/1"
    message = await deliver(ladders, message_body([soon, later]))

    await ladders.parking.park(message, [retry(soon, 0.1), retry(later, 4.0)], whole=True)

    assert endpoints_of(await ladders.take(ladders.delay(LONG))) == [later]
    assert endpoints_of(await ladders.take(ladders.main)) == [soon]


async def test_a_deleted_delay_queue_is_declared_again(make_ladders: MakeLadders) -> None:
    ladders = await make_ladders("classic")
    endpoint = "https://push.example.net/p/0"
    message = await deliver(ladders, message_body([endpoint]))
    await ladders.rabbit.delete(ladders.delay(SHORT))

    await ladders.parking.park(message, [retry(endpoint, 0.0)], whole=True)

    back = await ladders.take(ladders.main)
    assert endpoints_of(back) == [endpoint]
    assert deaths(back)[0]["queue"] == ladders.delay(SHORT)


async def test_a_large_message_parks_only_its_failed_devices(make_ladders: MakeLadders) -> None:
    ladders = await make_ladders("classic")
    endpoints = [f"https://push.example.net/p/{i:05d}/{'x' * 100}" for i in range(2000)]
    body = message_body(endpoints)
    message = await deliver(ladders, body)
    assert len(message.body) > 256 * 1024  # parsed off the event loop
    failed = endpoints[::20]

    await ladders.parking.park(message, [retry(e, 4.0) for e in failed], whole=False)

    parked = await ladders.take(ladders.delay(LONG))
    assert endpoints_of(parked) == failed
    assert len(parked.body) < len(message.body) / 10
