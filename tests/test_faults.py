"""Delivery guarantees under real faults: broker connections closed, broker stopped,
Redis paused, push services failing, the process terminated or killed.

These tests stop and start the shared local RabbitMQ application; they always
restart it, even when they fail.
"""

from __future__ import annotations

import contextlib
import signal
import time

import aiohttp
import pytest
import redis.asyncio as redis

from push_service.topology import Topology, declare_topology
from tests.conftest import ServiceFactory
from tests.rabbit_cluster import RabbitCluster, broker_stopped
from tests.support import (
    Rabbit,
    Service,
    StubServer,
    device_keys,
    push_sink,
    rabbit_client,
    stored_record,
    stub_server,
    unique,
    wait_until,
)

pytestmark = pytest.mark.faults


def notification(notification_id: str, endpoint: str, keys: dict[str, str]) -> dict:
    return {
        "notification_id": notification_id,
        "user_id": "u1",
        "devices": [{"endpoint": endpoint, "keys": keys}],
        "title": "t",
        "body": "b",
    }


async def statuses(client: redis.Redis, service: Service, ids: list[str]) -> list[str | None]:
    async with client.pipeline(transaction=False) as pipe:
        for notification_id in ids:
            pipe.hget(f"{service.prefix}notification:{notification_id}", "status")
        return await pipe.execute()


async def http_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_nothing_lost_across_broker_and_redis_faults(
    service_factory: ServiceFactory, private_broker: RabbitCluster, redis_client: redis.Redis
) -> None:
    total = 3000
    node = private_broker.nodes[0]
    async with push_sink(delay=0.005) as sink, rabbit_client(node.url) as rabbit:
        service = await service_factory(
            RABBITMQ_URL=node.url, CONSUMER_PREFETCH="50", PUSH_CONCURRENCY="64"
        )
        keys = device_keys()
        ids = [unique("f") for _ in range(total)]
        for notification_id in ids:
            await rabbit.publish(
                service.queue, notification(notification_id, sink.endpoint(notification_id), keys)
            )

        async def delivered(n: int) -> bool:
            return len(sink.hits) >= n

        await wait_until(lambda: delivered(total // 5), 60, message="20% delivered")
        await private_broker.rabbitmqctl(node, "close_all_connections", "fault test")
        await wait_until(lambda: delivered(total * 2 // 5), 60, message="40% delivered")

        async with broker_stopped(private_broker):

            async def not_ready() -> bool:
                return await http_status(f"{service.base_url}/ready") == 503

            await wait_until(not_ready, 30, message="/ready to report the outage")
        await service.wait_ready(60)
        await wait_until(lambda: delivered(total * 3 // 5), 60, message="60% delivered")

        await redis_client.execute_command("CLIENT", "PAUSE", "3000", "WRITE")  # type: ignore[no-untyped-call]

        async def all_sent() -> bool:
            return all(s == "sent" for s in await statuses(redis_client, service, ids))

        await wait_until(all_sent, 120, interval=0.5, message="every notification sent")
        await service.stop()
        remaining = await rabbit.count(service.queue)

    lost = [i for i in ids if sink.hits.get(i, 0) == 0]
    duplicates = sink.total - len(sink.hits)
    print(
        f"\nfault run: sent={len(sink.hits)} duplicates={duplicates} lost={len(lost)} "
        f"queue_left={remaining}"
    )
    assert lost == []
    assert remaining == 0
    assert set(sink.hits) == set(ids)


async def _push_through(
    service_factory: ServiceFactory,
    rabbit: Rabbit,
    redis_client: redis.Redis,
    answers: list[tuple[int, dict[str, str]]],
    **overrides: str,
) -> tuple[dict, StubServer, float]:
    """One notification to a push service answering `answers` in turn.

    Returns the final status record, the stub (its requests) and the seconds taken.
    """
    async with stub_server(answers) as push:
        service = await service_factory(**overrides)
        notification_id = unique("r")
        started = time.monotonic()
        await rabbit.publish(
            service.queue, notification(notification_id, f"{push.base_url}/push/1", device_keys())
        )
        done = await wait_until(
            lambda: _final(redis_client, service, notification_id), 30, message="outcome"
        )
        return done, push, time.monotonic() - started


async def test_500_twice_then_201_is_sent_with_three_attempts(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    done, push, _ = await _push_through(
        service_factory, rabbit, redis_client, [(500, {}), (500, {}), (201, {})]
    )
    assert done["status"] == "sent"
    assert len(push.requests) == 3
    # A keep-alive connection dropped in between is one more (connection-level) attempt.
    assert done["devices"][0]["attempts"] >= 3


async def test_429_retry_after_is_honoured(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    done, push, _ = await _push_through(
        service_factory, rabbit, redis_client, [(429, {"Retry-After": "1"}), (201, {})]
    )
    assert done["status"] == "sent"
    assert len(push.requests) == 2
    # A keep-alive connection dropped in between is one more (connection-level) attempt.
    assert done["devices"][0]["attempts"] >= 2
    assert push.request_times[1] - push.request_times[0] >= 1.0


async def test_503_forever_fails_within_the_bound(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    done, _, elapsed = await _push_through(
        service_factory,
        rabbit,
        redis_client,
        [(503, {})],
        PUSH_RETRY_MAX_TRIES="4",
    )
    assert done["status"] == "failed"
    assert done["devices"][0]["reason"] == "transient"
    assert done["devices"][0]["http_status"] == 503
    assert 1 <= done["devices"][0]["attempts"] <= 4
    assert elapsed < 10


async def _final(client: redis.Redis, service: Service, notification_id: str) -> dict | None:
    found = await stored_record(client, service.prefix, notification_id)
    return found if found.get("status") in ("sent", "failed") else None


async def test_poison_messages_are_dead_lettered_with_reason(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    async with push_sink() as sink:
        service = await service_factory(MAX_MESSAGE_BYTES="2048")
        keys = device_keys()
        poison = {
            b"\xff\xfe not json": "invalid_json",
            b"[1, 2]": "invalid_json",
            b'{"notification_id": "p1", "title": "x"}': "invalid_devices",
            b'{"notification_id": "p2", "title": "x", "ttl": -1, "devices": []}': "invalid_ttl",
            b'{"notification_id": "p3", "body": "' + b"x" * 3000 + b'"}': "message_too_large",
        }
        for body in poison:
            await rabbit.publish(service.queue, body)
        good = unique("g")
        await rabbit.publish(service.queue, notification(good, sink.endpoint(good), keys))
        await wait_until(lambda: sink.hits.get(good), 20, message="the good message")

        dlq = f"{service.queue}.dlq"

        async def all_dead() -> bool:
            return await rabbit.count(dlq) == len(poison)

        await wait_until(all_dead, 20, message="poison in the DLQ")
        reasons = {}
        for _ in poison:
            message = await rabbit.get(dlq)
            assert message is not None
            reasons[message.body] = str(message.header.properties.headers["x-death-reason"])
    for body, code in poison.items():
        assert reasons[body].startswith(code), (body[:40], reasons[body])
    failed = await stored_record(redis_client, service.prefix, "p1")
    assert failed["status"] == "failed"
    assert failed["reason"].startswith("invalid_devices")


async def test_sigterm_drains_then_requeues_what_did_not_finish(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    async with push_sink(delay=3.0) as sink:
        overrides = {"SHUTDOWN_GRACE_SECONDS": "1", "CONSUMER_PREFETCH": "20"}
        service = await service_factory(**overrides)
        keys = device_keys()
        ids = [unique("s") for _ in range(40)]
        for notification_id in ids:
            await rabbit.publish(
                service.queue, notification(notification_id, sink.endpoint(notification_id), keys)
            )
        await wait_until(lambda: service.logs().count('"consuming') >= 1, 10, message="consume")
        await wait_until(lambda: _in_flight(service), 20, message="messages in flight")

        started = time.monotonic()
        service.signal(signal.SIGTERM)
        code = await service.wait_exit(30)
        assert code == 0, service.logs()
        assert time.monotonic() - started < 1 + 10  # grace + closing time
        assert "will be redelivered" in service.logs()

        sink.delay = 0.0
        restarted = await service_factory(
            RABBITMQ_QUEUE_NAME=service.queue, REDIS_KEY_PREFIX=service.prefix
        )

        async def all_sent() -> bool:
            return all(s == "sent" for s in await statuses(redis_client, restarted, ids))

        await wait_until(all_sent, 60, interval=0.2, message="every message sent after restart")
    assert set(sink.hits) == set(ids)


async def _in_flight(service: Service) -> bool:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{service.base_url}/health") as response:
            return (await response.json())["in_flight_messages"] > 0


async def test_killed_mid_stream_loses_nothing(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    async with push_sink(delay=0.02) as sink:
        service = await service_factory(CONSUMER_PREFETCH="20")
        keys = device_keys()
        ids = [unique("k") for _ in range(300)]
        for notification_id in ids:
            await rabbit.publish(
                service.queue, notification(notification_id, sink.endpoint(notification_id), keys)
            )
        await wait_until(lambda: len(sink.hits) >= 50, 30, message="some delivered")
        service.signal(signal.SIGKILL)
        await service.wait_exit(10)

        restarted = await service_factory(
            RABBITMQ_QUEUE_NAME=service.queue, REDIS_KEY_PREFIX=service.prefix
        )

        async def all_sent() -> bool:
            return all(s == "sent" for s in await statuses(redis_client, restarted, ids))

        await wait_until(all_sent, 60, interval=0.2, message="every message sent after restart")
        await restarted.stop()
        assert await rabbit.count(service.queue) == 0
    assert set(sink.hits) == set(ids)
    duplicates = sink.total - len(ids)
    assert duplicates <= 20 + 64  # at most what was in flight when the process died


async def test_consumer_resumes_after_a_broker_side_cancel(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    """Deleting the queue makes the broker cancel our consumer without closing the
    connection; the supervisor must notice, redeclare and consume again."""
    async with push_sink() as sink:
        service = await service_factory()
        await rabbit.delete(service.queue)
        await wait_until(
            lambda: "cancelled our consumer" in service.logs(),
            20,
            message="the cancel to be noticed",
        )
        await service.wait_ready(30)
        notification_id = unique("c")

        async def delivered() -> bool:
            with contextlib.suppress(Exception):
                await rabbit.publish(
                    service.queue,
                    notification(notification_id, sink.endpoint(notification_id), device_keys()),
                )
            return bool(sink.hits.get(notification_id))

        await wait_until(delivered, 30, interval=1.0, message="delivery after redeclare")
    done = await wait_until(
        lambda: _final(redis_client, service, notification_id), 20, message="outcome"
    )
    assert done["status"] == "sent"


async def _return_to_queue(rabbit: Rabbit, queue: str, times: int) -> None:
    """Take the message without acking and give it back: a real redelivery, `times` times."""
    channel = await rabbit._channel()
    for _ in range(times):
        got = await channel.basic_get(queue, no_ack=False)
        assert got.delivery.delivery_tag is not None, "message not in the queue"
        await channel.basic_nack(got.delivery.delivery_tag, requeue=True)


@pytest.mark.parametrize(
    ("queue_type", "limit", "returns"),
    [("classic", 1, 1), ("quorum", 3, 3)],
)
async def test_a_message_redelivered_too_often_is_dead_lettered(
    service_factory: ServiceFactory,
    rabbit: Rabbit,
    redis_client: redis.Redis,
    queue_type: str,
    limit: int,
    returns: int,
) -> None:
    """A message whose handling keeps failing (here: returned to the queue unacked by a
    consumer that 'crashed') is dead-lettered once over MAX_DELIVERY_ATTEMPTS, with a reason,
    instead of being pushed or looping forever."""
    async with push_sink() as sink:
        queue = unique("redeliver")
        await declare_topology(rabbit.connection, Topology(queue, queue_type))
        notification_id = unique("r")
        await rabbit.publish(
            queue, notification(notification_id, sink.endpoint(notification_id), device_keys())
        )
        await _return_to_queue(rabbit, queue, returns)

        service = await service_factory(
            RABBITMQ_QUEUE_NAME=queue,
            RABBITMQ_QUEUE_TYPE=queue_type,
            MAX_DELIVERY_ATTEMPTS=str(limit),
        )

        async def dead_lettered() -> bool:
            return await rabbit.count(f"{queue}.dlq") == 1

        await wait_until(dead_lettered, 20, message="the message in the DLQ")
        dead = await rabbit.get(f"{queue}.dlq")
        done = await wait_until(
            lambda: _final(redis_client, service, notification_id), 10, message="outcome"
        )
    assert dead is not None
    assert str(dead.header.properties.headers["x-death-reason"]).startswith("too_many_deliveries")
    assert done["status"] == "failed"
    assert sink.total == 0


async def test_a_redis_outage_longer_than_a_call_timeout_loses_nothing(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    """Writes blocked for 8 s (calls time out after 5 s): messages are held, not
    dead-lettered or pushed twice, and all finish once Redis answers again."""
    async with push_sink() as sink:
        service = await service_factory(CONSUMER_PREFETCH="20")
        keys = device_keys()
        await redis_client.execute_command("CLIENT", "PAUSE", "8000", "WRITE")  # type: ignore[no-untyped-call]
        ids = [unique("o") for _ in range(50)]
        for notification_id in ids:
            await rabbit.publish(
                service.queue, notification(notification_id, sink.endpoint(notification_id), keys)
            )

        async def all_sent() -> bool:
            return all(s == "sent" for s in await statuses(redis_client, service, ids))

        await wait_until(all_sent, 60, interval=0.2, message="every message sent after the outage")
        await service.stop()
        dead = await rabbit.count(f"{service.queue}.dlq")
        left = await rabbit.count(service.queue)
    assert dead == 0
    assert left == 0
    assert set(sink.hits) == set(ids)
    assert sink.total == len(ids)  # held, not requeued: nothing pushed twice


async def test_a_deleted_dlq_is_declared_again_and_nothing_is_lost(
    service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    """Dead-lettering publishes with `mandatory`: with the DLQ deleted under a running
    service, the broker returns the message instead of dropping it, and the consumer
    declares the queues again and dead-letters it there."""
    service = await service_factory()
    dlq = f"{service.queue}.dlq"
    await rabbit.delete(dlq)
    await rabbit.publish(service.queue, b"{not json")

    async def dead_lettered() -> bool:
        try:
            return await rabbit.count(dlq) == 1
        except Exception:  # the DLQ does not exist yet (passive declare fails)
            return False

    await wait_until(dead_lettered, 20, interval=0.2, message="the DLQ back, with the message")
    dead = await rabbit.get(dlq)
    assert dead is not None
    assert dead.body == b"{not json"
    assert "is missing; declaring the queues again" in service.logs()
