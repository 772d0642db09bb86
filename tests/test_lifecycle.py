"""A subscription's life through the real service: registered, re-synced, replaced,
unsubscribed and gone; each reported to a stand-in User Service and announced as an event.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import jsonschema
import jwt
import orjson
import pytest
import redis.asyncio as redis

from push_service.api.event_schemas import event_schemas
from push_service.models import device_key
from tests.conftest import ServiceFactory
from tests.event_listener import EventListener, event_listener
from tests.support import (
    Answer,
    PushServer,
    Service,
    VapidPair,
    assert_error,
    call,
    final_record,
    unique,
    wait_until,
)
from tests.user_service_fake import UserServiceFake, user_service_fake

pytestmark = pytest.mark.e2e

SECRET = "lifecycle-test-secret-" + "x" * 20
REGISTER = "/api/v1/push-subscriptions"
DEACTIVATE = "/api/v1/push-subscriptions/deactivate"


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 300}, SECRET, "HS256")


@dataclass
class World:
    service: Service
    users: UserServiceFake
    events: EventListener
    pushserver: PushServer
    vapid: VapidPair
    http: aiohttp.ClientSession
    redis: redis.Redis

    async def new_subscription(self) -> tuple[dict[str, Any], str]:
        return await self.pushserver.subscribe(self.vapid.public)

    async def subscribe(self, body: dict[str, Any], user: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["Authorization"] = f"Bearer {token(user)}"
        url = f"{self.service.base_url}/subscribe"
        return await call(self.http, "POST", url, data=orjson.dumps(body), headers=headers)

    async def unsubscribe(self, body: Any) -> Answer:
        url = f"{self.service.base_url}/subscribe"
        headers = {"Content-Type": "application/json"}
        return await call(self.http, "DELETE", url, data=orjson.dumps(body), headers=headers)

    async def registered(self, endpoint: str) -> dict[str, str]:
        key = f"{self.service.prefix}sub:{device_key(endpoint)}"
        found: dict[str, str] = await self.redis.hgetall(key)  # type: ignore[assignment]
        return found

    def reports(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.users.accepted if p == path]

    async def wait_reports(self, path: str, count: int) -> list[dict[str, Any]]:
        await wait_until(lambda: len(self.reports(path)) >= count, message=f"{count} at {path}")
        return self.reports(path)


@pytest.fixture
async def world(
    service_factory: ServiceFactory,
    pushserver: PushServer,
    vapid: VapidPair,
    http: aiohttp.ClientSession,
    redis_client: redis.Redis,
) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        users = await stack.enter_async_context(user_service_fake())
        exchange = unique("test.events")
        events = await stack.enter_async_context(event_listener(exchange))
        service = await service_factory(
            USER_SERVICE_URL=users.base_url,
            USER_SERVICE_REPORT_RETRY_SECONDS="0.2,0.5",
            SUBSCRIBE_JWT_SECRET=SECRET,
            SUBSCRIBE_RATE_LIMIT="0",
            EVENTS_EXCHANGE=exchange,
        )
        yield World(service, users, events, pushserver, vapid, http, redis_client)
    # Every event any test saw is what /asyncapi.json promises.
    schemas = event_schemas()
    for event in events.events:
        document = {k: v for k, v in event.items() if not k.startswith("_")}
        jsonschema.Draft202012Validator(schemas[event["event"]]).validate(document)


async def test_a_verified_subscription_is_registered_once_and_a_resync_is_quiet(
    world: World,
) -> None:
    subscription, client_hash = await world.new_subscription()

    first = await world.subscribe(subscription, user="alice")
    again = await world.subscribe(subscription, user="alice")

    assert first.status == 202, first.text
    assert (first.json["created"], first.json["replaced"]) == (True, None)
    assert again.status == 200, again.text
    assert again.json["notification_id"] is None
    assert again.json["message"] == "Subscription already registered; nothing queued."
    assert again.json["device"] == first.json["device"] == device_key(subscription["endpoint"])
    [registration] = await world.wait_reports(REGISTER, 1)
    assert registration["user_id"] == "alice"
    assert registration["endpoint"] == subscription["endpoint"]
    assert registration["keys"] == subscription["keys"]
    assert registration["replaces"] is None
    assert registration["report_id"]
    welcome = await final_record(world.service.base_url, first.json["notification_id"])
    assert welcome["status"] == "sent"
    assert len(await world.pushserver.messages(client_hash)) == 1
    [created] = await world.events.wait_for("subscription.created")
    assert created["device"] == first.json["device"] and created["user_id"] == "alice"
    assert created["_routing_key"] == "subscription.created" and created["_persistent"]
    assert "endpoint" not in created
    stored = await world.registered(subscription["endpoint"])
    assert (stored["user_id"], stored["key_id"]) == ("alice", "default")
    assert len(world.reports(REGISTER)) == 1  # the re-sync taught the User Service nothing


async def test_a_replacement_proven_by_the_old_secret_inherits_its_user(world: World) -> None:
    old, _ = await world.new_subscription()
    new, new_hash = await world.new_subscription()
    assert (await world.subscribe({**old, "topics": ["news"]}, user="alice")).status == 202

    # pushsubscriptionchange: the worker has no session, only the old subscription.
    body = {**new, "old_endpoint": old["endpoint"], "old_keys": {"auth": old["keys"]["auth"]}}
    answer = await world.subscribe(body)

    assert answer.status == 200, answer.text
    assert answer.json["notification_id"] is None  # the browser was welcomed already
    assert answer.json["replaced"] == device_key(old["endpoint"])
    assert answer.json["message"] == "Subscription replaced; nothing queued."
    assert await world.registered(old["endpoint"]) == {}
    stored = await world.registered(new["endpoint"])
    assert (stored["user_id"], stored["topics"]) == ("alice", '["news"]')
    registrations = await world.wait_reports(REGISTER, 2)
    assert (registrations[1]["endpoint"], registrations[1]["replaces"]) == (
        new["endpoint"],
        old["endpoint"],
    )
    assert registrations[1]["user_id"] == "alice"
    [replaced] = await world.events.wait_for("subscription.replaced")
    assert replaced["replaces_device"] == device_key(old["endpoint"])
    assert len(await world.pushserver.messages(new_hash)) == 0


async def test_a_replacement_without_proof_leaves_the_old_subscription(world: World) -> None:
    victim, _ = await world.new_subscription()
    other, _ = await world.new_subscription()
    assert (await world.subscribe(victim, user="alice")).status == 202

    forged = {**other, "old_endpoint": victim["endpoint"], "old_keys": {"auth": "AAAA"}}
    answer = await world.subscribe(forged)

    assert answer.status == 202, answer.text  # a new subscription, replacing nothing
    assert answer.json["replaced"] is None
    assert (await world.registered(victim["endpoint"]))["user_id"] == "alice"
    assert (await world.registered(other["endpoint"]))["user_id"] == ""


async def test_unsubscribe_needs_the_subscriptions_own_secret(world: World) -> None:
    subscription, _ = await world.new_subscription()
    assert (await world.subscribe(subscription, user="alice")).status == 202
    endpoint, auth = subscription["endpoint"], subscription["keys"]["auth"]

    wrong = await world.unsubscribe({"endpoint": endpoint, "keys": {"auth": "bm90LWl0"}})
    unknown = await world.unsubscribe({"endpoint": endpoint + "x", "keys": {"auth": auth}})
    missing = await world.unsubscribe({"endpoint": endpoint})
    right = await world.unsubscribe({"endpoint": endpoint, "keys": {"auth": auth}})
    twice = await world.unsubscribe({"endpoint": endpoint, "keys": {"auth": auth}})

    assert_error(wrong, 404, "not_found")
    assert_error(unknown, 404, "not_found")
    assert wrong.json == unknown.json  # nothing to learn by probing
    assert_error(missing, 422, "missing_field")
    assert right.status == 200, right.text
    assert right.json == {
        "status": "ok",
        "message": "Subscription removed.",
        "device": device_key(endpoint),
    }
    assert_error(twice, 404, "not_found")
    assert await world.registered(endpoint) == {}
    [report] = await world.wait_reports(DEACTIVATE, 1)
    assert (report["user_id"], report["endpoint"], report["reason"]) == (
        "alice",
        endpoint,
        "unsubscribed",
    )
    [removed] = await world.events.wait_for("subscription.removed")
    assert (removed["device"], removed["reason"]) == (device_key(endpoint), "unsubscribed")


async def test_a_gone_subscription_is_reported_forgotten_and_announced(world: World) -> None:
    subscription, client_hash = await world.new_subscription()
    assert (await world.subscribe(subscription, user="alice")).status == 202
    await world.events.wait_for("notification.completed")  # the welcome
    await world.pushserver.expire(client_hash)
    notification_id = unique("gone")
    message: dict[str, Any] = {
        "notification_id": notification_id,
        "user_id": "alice",
        "devices": [subscription],
        "title": "t",
        "body": "b",
    }

    answer = await call(
        world.http,
        "POST",
        f"{world.service.base_url}/notifications",
        data=orjson.dumps(message),
        headers={"Content-Type": "application/json"},
    )

    assert answer.status == 202, answer.text
    record = await final_record(world.service.base_url, notification_id)
    assert record["status"] == "failed"
    [report] = await world.wait_reports(DEACTIVATE, 1)
    assert (report["user_id"], report["reason"], report["status_code"]) == (
        "alice",
        "subscription_gone",
        410,
    )

    async def answered() -> bool:
        record = await final_record(world.service.base_url, notification_id)
        return bool(record["devices"][0]["deactivation"] == "ok")

    await wait_until(answered, message="the report's answer on record")
    assert await world.registered(subscription["endpoint"]) == {}
    [gone] = await world.events.wait_for("subscription.gone")
    assert (gone["device"], gone["status_code"], gone["user_id"]) == (
        device_key(subscription["endpoint"]),
        410,
        "alice",
    )
    completed = [
        e
        for e in await world.events.wait_for("notification.completed", 2)
        if e["notification_id"] == notification_id
    ]
    assert [(e["status"], e["counts"]) for e in completed] == [
        ("failed", {"devices_total": 1, "sent": 0, "failed": 1, "cancelled": 0})
    ]
    [device] = completed[0]["devices"]
    assert device["reason"] == "subscription_gone" and device["origin"].startswith("http://")
    assert subscription["endpoint"] not in orjson.dumps(completed[0]).decode()


async def test_a_claimed_user_is_never_kept_or_reported(world: World) -> None:
    subscription, _ = await world.new_subscription()

    answer = await world.subscribe({**subscription, "user_id": "victim-admin-42"})

    assert answer.status == 202, answer.text
    assert (await world.registered(subscription["endpoint"]))["user_id"] == ""
    [created] = await world.events.wait_for("subscription.created")
    assert created["user_id"] is None
    await world.events.wait_for("notification.completed")
    assert world.users.accepted == []


async def test_a_resync_without_a_session_keeps_the_verified_user(world: World) -> None:
    subscription, _ = await world.new_subscription()
    assert (await world.subscribe(subscription, user="alice")).status == 202

    again = await world.subscribe(subscription)  # the page reloaded, no token this time

    assert again.status == 200, again.text
    assert (await world.registered(subscription["endpoint"]))["user_id"] == "alice"
    [registration] = await world.wait_reports(REGISTER, 1)
    assert registration["user_id"] == "alice"
    assert len(world.reports(REGISTER)) == 1  # nothing new to tell the User Service
