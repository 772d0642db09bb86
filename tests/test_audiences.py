"""Audiences through the real service: a topic or a user resolved from the registry in
chunks, each its own queue message; the record counts every device; peers page through
and remove subscriptions; bad audiences are refused or recorded, never silently lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis

from push_service.delivery import fingerprint
from push_service.endpoints import EndpointPolicy
from push_service.models import parse_notification
from push_service.registry import Registry, Subscription
from push_service.status import StatusStore
from push_service.status.fanout import FanoutLedger
from tests.conftest import ServiceFactory
from tests.support import (
    Answer,
    PushSink,
    Rabbit,
    Service,
    assert_error,
    call,
    device_keys,
    final_record,
    push_sink,
    stored_record,
    stub_server,
    unique,
    wait_until,
)
from tests.user_service_fake import user_service_fake

pytestmark = pytest.mark.e2e
CHUNK = 7


@dataclass
class World:
    service: Service
    sink: PushSink
    registry: Registry
    http: aiohttp.ClientSession
    redis: redis.Redis
    rabbit: Rabbit

    async def register(self, count: int, name: str, **fields: Any) -> list[Subscription]:
        made = []
        for number in range(count):
            keys = device_keys()
            sub = Subscription(
                endpoint=self.sink.endpoint(f"{name}-{number}"),
                p256dh=keys["p256dh"],
                auth=keys["auth"],
                **fields,
            )
            made.append((await self.registry.upsert(sub)).subscription)
        return made

    async def publish(self, message: dict[str, Any]) -> Answer:
        url = f"{self.service.base_url}/notifications"
        headers = {"Content-Type": "application/json"}
        return await call(self.http, "POST", url, data=orjson.dumps(message), headers=headers)

    async def get(self, path: str) -> Answer:
        return await call(self.http, "GET", f"{self.service.base_url}{path}")


@pytest.fixture
async def world(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    redis_client: redis.Redis,
    rabbit: Rabbit,
) -> AsyncIterator[World]:
    async with push_sink() as sink:
        service = await service_factory(FANOUT_CHUNK_SIZE=str(CHUNK), EVENTS_EXCHANGE="")
        registry = Registry(redis_client, service.prefix)
        yield World(service, sink, registry, http, redis_client, rabbit)


def message(notification_id: str, **fields: Any) -> dict[str, Any]:
    return {"notification_id": notification_id, "title": "Hello", "body": "all", **fields}


async def test_a_topic_is_pushed_to_every_subscriber_once_in_chunks(world: World) -> None:
    subscribers = await world.register(20, "news", topics=("news", "sport"))
    await world.register(3, "other", topics=("weather",))
    nid = unique("topic")

    answer = await world.publish(message(nid, audience={"topic": "news"}))
    assert answer.status == 202, answer.text
    record = await final_record(world.service.base_url, nid)

    assert (record["status"], record["devices_total"], record["sent"]) == ("sent", 20, 20)
    assert world.sink.hits == {s.endpoint.rsplit("/", 1)[1]: 1 for s in subscribers}
    raw = await world.redis.hgetall(f"{world.service.prefix}notification:{nid}")
    assert raw["audience"] == "topic:news" and raw["fanout"] == "done"
    assert raw["fanout_chunks"] == "3"  # 7 + 7 + 6


async def test_a_user_audience_reaches_that_users_devices_only(world: World) -> None:
    mine = await world.register(3, "mine", user_id="u-1")
    await world.register(2, "theirs", user_id="u-2")
    nid = unique("user")

    answer = await world.publish(message(nid, audience={"user_id": "u-1"}))
    assert answer.status == 202, answer.text
    record = await final_record(world.service.base_url, nid)

    assert (record["status"], record["devices_total"], record["sent"]) == ("sent", 3, 3)
    assert sorted(world.sink.hits) == sorted(s.endpoint.rsplit("/", 1)[1] for s in mine)


async def test_an_unknown_topic_is_an_empty_audience_on_record(world: World) -> None:
    nid = unique("empty")

    await world.rabbit.publish(world.service.queue, message(nid, audience={"topic": "nobody"}))
    record = await final_record(world.service.base_url, nid)

    assert (record["status"], record["devices_total"]) == ("failed", 0)
    assert record["reason"] == "empty_audience"
    assert await world.rabbit.count(f"{world.service.queue}.dlq") == 0


async def test_devices_and_audience_together_are_refused_with_a_reason(world: World) -> None:
    nid = unique("both")
    device = {"endpoint": world.sink.endpoint("x"), "keys": device_keys()}
    both = message(nid, devices=[device], audience={"topic": "news"})

    assert_error(await world.publish(both), 422, "devices_and_audience")
    assert_error(await world.publish(message(nid)), 422, "invalid_devices")
    two = message(nid, audience={"topic": "news", "user_id": "u"})
    assert_error(await world.publish(two), 422, "invalid_audience")

    await world.rabbit.publish(world.service.queue, both)
    dlq = f"{world.service.queue}.dlq"

    async def dead() -> Any:
        return await world.rabbit.get(dlq)

    dead_letter = await wait_until(dead, 20, message="the message to be dead-lettered")
    headers = dead_letter.header.properties.headers or {}
    assert str(headers["x-death-reason"]).startswith("devices_and_audience")

    # The dead letter is published first, then its reason recorded.
    async def recorded() -> dict[str, Any] | None:
        found = await stored_record(world.redis, world.service.prefix, nid)
        return found if found.get("status") else None

    record = await wait_until(recorded, message="the refusal on record")
    assert record["status"] == "failed" and record["reason"].startswith("devices_and_audience")
    assert world.sink.total == 0


async def test_a_resolver_resumes_after_the_last_counted_chunk(world: World) -> None:
    """As after a crash: the record says the first chunk was published and counted."""
    subscribers = sorted(await world.register(10, "resume", topics=("r",)), key=lambda s: s.device)
    second = unique("resume")
    store = StatusStore(world.redis, world.service.prefix)
    ledger = FanoutLedger(store)
    audience = message(second, audience={"topic": "r"})
    parsed = parse_notification(orjson.dumps(audience), EndpointPolicy(("127.0.0.1",), True))
    # What the resolver had written before it "crashed": begun, one chunk of 4 counted.
    await store.begin(second, None, 0, fingerprint=fingerprint(parsed), deadline=2e9)
    await ledger.start(second, "topic:r")
    assert (await ledger.step(second, "", subscribers[3].device, 4)).taken

    await world.rabbit.publish(world.service.queue, audience)

    async def rest_pushed() -> bool:
        return world.sink.total >= 6

    await wait_until(rest_pushed, 30, message="the rest of the audience")
    record = await stored_record(world.redis, world.service.prefix, second)
    assert record["devices_total"] == 10
    assert sorted(world.sink.hits) == sorted(s.endpoint.rsplit("/", 1)[1] for s in subscribers[4:])


async def test_peers_page_through_subscriptions_without_endpoints_and_delete_one(
    world: World,
) -> None:
    made = sorted(
        await world.register(5, "page", topics=("p",), user_id="u-9"), key=lambda s: s.device
    )

    first = await world.get("/subscriptions?topic=p&limit=3")
    assert first.status == 200, first.text
    page = first.json
    assert [s["device"] for s in page["subscriptions"]] == [s.device for s in made[:3]]
    assert page["next_cursor"] == made[2].device
    shown = page["subscriptions"][0]
    assert (
        "endpoint" not in shown
        and "keys" not in shown
        and "auth" not in orjson.dumps(page).decode()
    )
    assert shown["origin"] == world.sink.base_url and shown["topics"] == ["p"]
    second = (await world.get(f"/subscriptions?topic=p&limit=3&cursor={page['next_cursor']}")).json
    assert [s["device"] for s in second["subscriptions"]] == [s.device for s in made[3:]]
    assert second["next_cursor"] is None
    by_user = (await world.get("/subscriptions?user_id=u-9")).json
    assert len(by_user["subscriptions"]) == 5

    url = f"{world.service.base_url}/subscriptions/{made[0].device}"
    assert (await call(world.http, "DELETE", url)).status == 200
    assert_error(await call(world.http, "DELETE", url), 404, "not_found")
    after = (await world.get("/subscriptions?topic=p")).json
    assert made[0].device not in [s["device"] for s in after["subscriptions"]]
    assert await world.registry.get(made[0].device) is None

    assert_error(await world.get("/subscriptions?topic=p&user_id=u"), 422, "invalid_query")
    assert_error(await world.get("/subscriptions"), 422, "invalid_query")
    assert_error(await world.get("/subscriptions?topic=p&cursor=zz"), 422, "invalid_cursor")
    assert_error(await world.get("/subscriptions?topic=p&limit=0"), 422, "invalid_limit")


async def test_a_gone_subscriber_of_a_topic_is_reported_for_its_own_user(
    service_factory: ServiceFactory, redis_client: redis.Redis
) -> None:
    """A topic reaches many users: a gone device is reported for the registry's user."""
    async with user_service_fake() as users, stub_server([(410, {})]) as gone_push:
        service = await service_factory(
            USER_SERVICE_URL=users.base_url, FANOUT_CHUNK_SIZE="2", EVENTS_EXCHANGE=""
        )
        registry = Registry(redis_client, service.prefix)
        keys = device_keys()
        sub = Subscription(f"{gone_push.base_url}/gone", keys["p256dh"], keys["auth"],
                           user_id="owner-7", topics=("t",))  # fmt: skip
        await registry.upsert(sub)
        nid = unique("gone")
        async with aiohttp.ClientSession() as http:
            body = orjson.dumps(message(nid, user_id="sender", audience={"topic": "t"}))
            headers = {"Content-Type": "application/json"}
            url = f"{service.base_url}/notifications"
            assert (await call(http, "POST", url, data=body, headers=headers)).status == 202

        record = await final_record(service.base_url, nid)
        assert record["status"] == "failed" and record["devices"][0]["http_status"] == 410

        async def reported() -> list[dict[str, Any]]:
            return [b for p, b in users.accepted if p.endswith("/deactivate")]

        (report,) = await wait_until(reported, 20, message="the deactivation report")
        assert report["user_id"] == "owner-7"
        assert await registry.get(sub.device) is None
