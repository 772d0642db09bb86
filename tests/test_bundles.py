"""Held copies in bundles, against the real broker: gathered, unpacked, moved back; and
the hold queue of an origin declared once for the copies held together."""

from __future__ import annotations

import asyncio
import datetime
import time

import orjson
import pytest
import redis.asyncio as redis
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec

from push_service.broker import publish_confirmed
from push_service.bundles import BUNDLE_HEADER, Bundler, Copy, is_bundle, pack, republish, unpack
from push_service.endpoints import EndpointPolicy
from push_service.hold import Hold, hold_queue
from push_service.metrics import Metrics
from push_service.topology import Topology, declare_topology
from tests.conftest import ServiceFactory
from tests.push_fakes import push_service
from tests.support import Rabbit, unique, wait_until
from tests.test_outage import message


def properties(number: int) -> spec.Basic.Properties:
    return spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=f"m{number}",
        timestamp=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
        headers={"x-push-parked": number, "x-push-original-message-id": f"o{number}"},
    )


def test_a_bundle_gives_back_each_copy_as_it_was() -> None:
    now = time.time()
    copies = [Copy(properties(i), f'{{"n": {i}}}'.encode(), now + 60 + i) for i in range(3)]
    copies.append(Copy(properties(3), b"", None))  # no deadline, empty body

    body, bundle = pack(copies)

    assert (bundle.headers or {})[BUNDLE_HEADER] == 4
    # The bundle expires with its earliest copy, back to the main queue.
    assert bundle.expiration is not None and 59_000 <= int(bundle.expiration) <= 60_000
    back = unpack(body)
    assert [c.body for c in back] == [c.body for c in copies]
    assert [c.deadline for c in back] == [c.deadline for c in copies]
    assert [c.properties.message_id for c in back] == ["m0", "m1", "m2", "m3"]
    assert [(c.properties.headers or {})["x-push-parked"] for c in back] == [0, 1, 2, 3]
    assert back[0].properties.timestamp == copies[0].properties.timestamp


async def test_copies_held_at_once_go_in_one_publish_and_come_back_one_by_one(
    rabbit: Rabbit,
) -> None:
    hold, main = unique("bundle-hold"), unique("bundle-main")
    await rabbit.declare(hold)
    await rabbit.declare(main)
    channel = await rabbit._channel()
    publishes: list[int] = []

    async def publish(
        channel: AbstractChannel, origin: str, body: bytes, props: spec.Basic.Properties
    ) -> None:
        publishes.append(len(body))
        await publish_confirmed(channel, hold, body, timeout=5, properties=props)

    bundler = Bundler(publish)
    deadline = time.time() + 600
    try:
        await asyncio.gather(
            *(
                bundler.add(
                    channel, "https://push.example", Copy(properties(i), b"x%d" % i, deadline)
                )
                for i in range(50)
            )
        )
        await bundler.add(channel, "https://push.example", Copy(properties(50), b"alone", None))

        # The first copy's publish takes the others held meanwhile; a later lone one
        # goes as it is.
        assert len(publishes) <= 3 and await rabbit.count(hold) == len(publishes)
        held = [m for _ in publishes if (m := await rabbit.get(hold)) is not None]
        assert len(held) == len(publishes) and is_bundle(held[0])
        assert not is_bundle(held[-1]) and held[-1].body == b"alone"
        moved = 0
        for message in held:
            moved += await republish(channel, main, message, timeout=5)
        assert moved == 51
        bodies = []
        for _ in range(51):
            back = await rabbit.get(main)
            assert back is not None and back.header.properties.expiration is None
            assert not is_bundle(back)
            bodies.append(back.body)
        assert sorted(bodies) == sorted([b"x%d" % i for i in range(50)] + [b"alone"])
    finally:
        await rabbit.delete(hold, main)


async def test_a_bundle_back_in_the_main_queue_is_delivered_copy_by_copy(
    service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    """A bundle expires (at its earliest copy's deadline) back to the main queue."""
    async with push_service() as pushes:
        queue = unique("bundle-main")
        await declare_topology(rabbit.connection, Topology(queue))
        names = [unique("n") for _ in range(3)]
        copies = [
            Copy(properties(i), orjson.dumps(message(name, pushes.endpoint(name))), None)
            for i, name in enumerate(names)
        ]
        body, props = pack(copies)
        channel = await rabbit._channel()
        await publish_confirmed(channel, queue, body, timeout=5, properties=props)
        await service_factory(RABBITMQ_QUEUE_NAME=queue, REDIS_KEY_PREFIX=queue + ":")

        await wait_until(lambda: len(pushes.accepted) == 3, 20, message="each copy pushed")
        assert set(pushes.accepted) == set(names)
        assert set(pushes.accepted.values()) == {1}


async def test_copies_held_together_for_a_new_origin_declare_its_queue_once(
    rabbit: Rabbit, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage's first seconds hold a few hundred copies at once: the origin goes on
    record and its queue is declared once, not once per copy."""
    main, prefix, origin = unique("hold-main"), unique("hold") + ":", "https://push.example"
    await declare_topology(rabbit.connection, Topology(main))
    hold = Hold(
        Topology(main), EndpointPolicy(("push.example",)), redis_client, prefix, 5, Metrics()
    )
    declared: list[str] = []
    declare = hold.declare

    async def counted(connection: AbstractConnection, held_for: str) -> None:
        declared.append(held_for)
        await declare(connection, held_for)

    monkeypatch.setattr(hold, "declare", counted)
    channel = await rabbit._channel()
    deadline = time.time() + 600
    try:
        await asyncio.gather(
            *(hold.hold(channel, origin, b"x%d" % i, properties(i), deadline) for i in range(100))
        )
        assert declared == [origin]
        assert await redis_client.smembers(f"{prefix}held-origins") == {origin}
        held = 0
        while (m := await rabbit.get(hold_queue(main, origin))) is not None:
            held += len(unpack(m.body)) if is_bundle(m) else 1
        assert held == 100
    finally:
        await rabbit.delete(main, hold_queue(main, origin))
        await redis_client.delete(f"{prefix}held-origins")
