"""Scheduled sends under real faults: the service SIGKILLed and the broker restarted while
notifications wait for their `send_at`. Each must be pushed exactly once, not before its
time and within 5 s after it."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from push_service.deadline import from_iso
from tests.conftest import ServiceFactory
from tests.rabbit_cluster import RabbitCluster, broker_stopped
from tests.support import (
    device_keys,
    final_record,
    push_sink,
    rabbit_client,
    unique,
    wait_until,
)

pytestmark = pytest.mark.faults

COUNT = 50
WAIT = 20.0  # seconds until send_at: long enough for a kill, a restart and a broker restart


async def test_scheduled_sends_survive_a_sigkill_and_a_broker_restart_exactly_once(
    service_factory: ServiceFactory, private_broker: RabbitCluster
) -> None:
    node = private_broker.nodes[0]
    async with push_sink() as sink, rabbit_client(node.url) as rabbit:
        first = await service_factory(RABBITMQ_URL=node.url)
        send_at = time.time() + WAIT
        keys = device_keys()
        ids = [unique("at") for _ in range(COUNT)]
        for notification_id in ids:
            body: dict[str, Any] = {
                "notification_id": notification_id,
                "devices": [{"endpoint": sink.endpoint(notification_id), "keys": keys}],
                "title": "later",
                "send_at": send_at,
            }
            await rabbit.publish(first.queue, body)

        async def all_waiting() -> bool:  # every message parked in a delay queue
            return await rabbit.count(first.queue) == 0 and sink.total == 0

        await wait_until(all_waiting, 15, message="every scheduled message parked")
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
        async with broker_stopped(private_broker):
            pass  # the parked copies are persistent, in durable queues
        second = await service_factory(
            RABBITMQ_URL=node.url, RABBITMQ_QUEUE_NAME=first.queue, REDIS_KEY_PREFIX=first.prefix
        )
        assert time.time() < send_at, "the faults took longer than the wait: make WAIT longer"
        assert sink.total == 0

        records = [await final_record(second.base_url, i, WAIT + 15) for i in ids]
        await second.stop()
        left = await rabbit.count(first.queue)

    lateness = sorted(from_iso(r["devices"][0]["at"]) - send_at for r in records)
    print(
        f"\n{COUNT} scheduled across a SIGKILL and a broker restart: pushed "
        f"{len(sink.hits)}/{COUNT}, twice {sink.total - len(sink.hits)}, lateness "
        f"p50 {lateness[COUNT // 2]:.2f}s max {lateness[-1]:.2f}s"
    )
    assert sink.hits == dict.fromkeys(ids, 1)  # each exactly once
    assert all(r["status"] == "sent" for r in records)
    assert lateness[0] >= 0 and lateness[-1] < 5.0
    assert left == 0
