"""Delivery on its own: real Redis status store, real HTTP to small local push services.

No RabbitMQ here: the consumer hands `Delivery.deliver` a parsed notification and
acks when it returns, so this is the unit that decides what is pushed and recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from aiohttp import web

from push_service.circuits import CircuitPolicy, Circuits
from push_service.delivery import Delivery, fingerprint
from push_service.endpoints import EndpointPolicy, host_label
from push_service.metrics import Metrics
from push_service.models import MAX_PLAINTEXT_BYTES, Notification, device_key, parse_notification
from push_service.pusher import Pusher
from push_service.retry import PushRetryPolicy
from push_service.status import DeviceOutcome, StatusStore
from push_service.vapid import VapidSigner, generate_private_key
from push_service.webpush import WebPushSender, make_session
from tests.support import (
    GoneLog,
    device_keys,
    serve_app,
    status_store,
    unique,
)

# The stubs listen on loopback: only an exactly listed host may be private.
POLICY = EndpointPolicy(("127.0.0.1",), allow_http=True)
QUICK_PUSH = PushRetryPolicy(max_tries=3, in_process_seconds=5.0, base_delay=0.01, max_delay=0.05)


# --- a push service that answers per endpoint path ----------------------------------------


@dataclass
class PathPushService:
    """Answers each path from its own script (the last answer repeats); 201 by default."""

    base_url: str = ""
    answers: dict[str, list[int]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def endpoint(self, name: str) -> str:
        return f"{self.base_url}/push/{name}"

    def answer(self, name: str, *statuses: int) -> str:
        self.answers[f"/push/{name}"] = list(statuses)
        return self.endpoint(name)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.hits[request.path] += 1
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        script = self.answers.get(request.path, [201])
        status = script[min(self.hits[request.path], len(script)) - 1]
        return web.Response(status=status, text="" if status < 300 else "no")


@contextlib.asynccontextmanager
async def path_push_service() -> AsyncIterator[PathPushService]:
    service = PathPushService()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    async with serve_app(app) as service.base_url:
        yield service


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def store() -> AsyncIterator[StatusStore]:
    async with status_store("test-delivery", ttl=600) as store:
        yield store


@pytest.fixture
async def pushes() -> AsyncIterator[PathPushService]:
    async with path_push_service() as service:
        yield service


@dataclass
class Rig:
    delivery: Delivery
    store: StatusStore
    metrics: Metrics
    gone: GoneLog

    async def deliver(self, n: Notification) -> str:
        return (await self.delivery.deliver(n)).status

    async def record(self, notification_id: str) -> dict[str, Any]:
        record = await self.store.get(notification_id)
        assert record is not None, f"no status record for {notification_id}"
        return record

    async def device(self, notification_id: str, endpoint: str) -> dict[str, Any]:
        devices = (await self.record(notification_id))["devices"]
        found = [d for d in devices if d["endpoint"] == endpoint]
        assert len(found) == 1, devices
        return found[0]


@pytest.fixture
async def rig(store: StatusStore) -> AsyncIterator[Rig]:
    """A Delivery wired as the Runtime wires it, with quick retries."""
    metrics = Metrics()
    signer = VapidSigner(generate_private_key(), "mailto:ops@example.com")
    async with (
        make_session(POLICY, 64, 5.0) as push_session,
    ):
        sender = WebPushSender(push_session, signer, POLICY)
        circuits = Circuits(CircuitPolicy())
        gone = GoneLog()
        pusher = Pusher(sender, circuits, gone, metrics, QUICK_PUSH, 64)
        delivery = Delivery(
            pusher, store, metrics, default_ttl=3600, retry_window=86400, concurrency=64
        )
        yield Rig(delivery, store, metrics, gone)


def notification(
    endpoints: list[str],
    notification_id: str | None = None,
    keys: dict[str, dict[str, str]] | None = None,
    **fields: Any,
) -> Notification:
    """Parse a queue message the way the consumer does; `keys` reuses a device's keys."""
    keys = keys if keys is not None else {}
    message = {
        "notification_id": notification_id or unique("n"),
        "user_id": "user-1",
        "devices": [{"endpoint": e, "keys": keys.setdefault(e, device_keys())} for e in endpoints],
        "title": "Hello",
        "body": "World",
        "action_url": "https://example.com/path",
        **fields,
    }
    return parse_notification(orjson.dumps(message), POLICY)


# --- tests ---------------------------------------------------------------------------------


async def test_mixed_answers_record_each_device_and_report_the_gone_one(
    rig: Rig, pushes: PathPushService
) -> None:
    ok = pushes.answer("ok", 201)
    gone = pushes.answer("gone", 410)
    n = notification([ok, gone])

    assert await rig.deliver(n) == "sent"

    record = await rig.record(n.notification_id)
    assert record["status"] == "sent"
    assert (record["sent"], record["failed"], record["devices_total"]) == (1, 1, 2)
    assert record["user_id"] == "user-1"
    assert record["completed_at"] is not None
    sent = await rig.device(n.notification_id, ok)
    assert (sent["status"], sent["http_status"], sent["reason"], sent["attempts"]) == (
        "sent",
        201,
        None,
        1,
    )
    failed = await rig.device(n.notification_id, gone)
    assert (failed["status"], failed["http_status"], failed["reason"]) == (
        "failed",
        410,
        "subscription_gone",
    )
    assert failed["attempts"] == 1  # a 410 is not retried
    assert failed["deactivation"] == "queued"
    assert pushes.hits == {"/push/ok": 1, "/push/gone": 1}
    for request in pushes.requests:
        assert request["headers"]["Content-Encoding"] == "aes128gcm"
        # The TTL that is left: all of it, unless this machine took seconds to send.
        assert 3590 <= int(request["headers"]["TTL"]) <= 3600
        assert request["headers"]["Authorization"].startswith("vapid t=")

    assert rig.gone.calls == [("user-1", gone, "subscription_gone", 410, True)]


async def test_delivering_twice_pushes_each_device_once(rig: Rig, pushes: PathPushService) -> None:
    endpoints = [pushes.endpoint("a"), pushes.endpoint("b"), pushes.answer("c", 404)]
    n = notification(endpoints)

    first = await rig.deliver(n)
    before = await rig.record(n.notification_id)
    second = await rig.deliver(n)

    assert first == second == "sent"
    assert pushes.hits == {"/push/a": 1, "/push/b": 1, "/push/c": 1}
    assert len(rig.gone.calls) == 1  # the gone device is not reported again
    after = await rig.record(n.notification_id)
    assert (after["sent"], after["failed"]) == (2, 1)
    assert after["devices"] == before["devices"]  # first outcomes kept, nothing rewritten


async def test_redelivery_after_a_partial_run_pushes_only_the_missing_device(
    rig: Rig, pushes: PathPushService
) -> None:
    done, missing = pushes.endpoint("done"), pushes.endpoint("missing")
    n = notification([done, missing])
    # A crash after one device's outcome was stored: begun, one outcome recorded.
    deadline = time.time() + 3600
    await rig.store.begin(
        n.notification_id, n.user_id, 2, fingerprint=fingerprint(n), deadline=deadline
    )
    earlier = DeviceOutcome(device_key(done), done, "sent", 201, None, 1)
    assert await rig.store.record(n.notification_id, [earlier]) == "processing"

    assert await rig.deliver(n) == "sent"

    assert pushes.hits == {"/push/missing": 1}
    record = await rig.record(n.notification_id)
    assert (record["sent"], record["failed"], record["devices_total"]) == (2, 0, 2)
    assert (await rig.device(n.notification_id, missing))["status"] == "sent"


async def test_same_id_with_an_extra_device_pushes_only_the_new_device(
    rig: Rig, pushes: PathPushService
) -> None:
    old, new = pushes.endpoint("old"), pushes.endpoint("new")
    keys: dict[str, dict[str, str]] = {}
    first = notification([old], keys=keys)
    assert await rig.deliver(first) == "sent"

    again = notification([old, new], first.notification_id, keys=keys)
    assert await rig.deliver(again) == "sent"

    assert pushes.hits == {"/push/old": 1, "/push/new": 1}
    record = await rig.record(first.notification_id)
    assert (record["sent"], record["failed"], record["devices_total"]) == (2, 0, 2)
    assert {d["endpoint"] for d in record["devices"]} == {old, new}


async def test_payload_over_the_limit_fails_every_device_without_a_request(
    rig: Rig, pushes: PathPushService
) -> None:
    endpoints = [pushes.endpoint("a"), pushes.endpoint("b")]
    n = notification(endpoints, data={"blob": "x" * MAX_PLAINTEXT_BYTES})
    assert len(n.payload) > MAX_PLAINTEXT_BYTES

    assert await rig.deliver(n) == "failed"

    assert pushes.hits == {}
    record = await rig.record(n.notification_id)
    assert (record["sent"], record["failed"]) == (0, 2)
    for endpoint in endpoints:
        device = await rig.device(n.notification_id, endpoint)
        assert (device["status"], device["reason"], device["attempts"]) == (
            "failed",
            "payload_too_large",
            0,
        )
        assert device["http_status"] is None


@pytest.mark.parametrize(
    ("size", "status"), [(MAX_PLAINTEXT_BYTES, "sent"), (MAX_PLAINTEXT_BYTES + 1, "failed")]
)
async def test_payload_limit_boundary(
    rig: Rig, pushes: PathPushService, size: int, status: str
) -> None:
    endpoint = pushes.endpoint("edge")
    sized = notification([endpoint], data={"pad": ""})
    pad = size - len(sized.payload)
    n = notification([endpoint], sized.notification_id, data={"pad": "x" * pad})
    assert len(n.payload) == size

    assert await rig.deliver(n) == status

    if status == "sent":
        assert pushes.hits == {"/push/edge": 1}
        assert len(pushes.requests[0]["body"]) == 4096  # one full aes128gcm record
    else:
        assert pushes.hits == {}
        device = await rig.device(n.notification_id, endpoint)
        assert (device["reason"], device["attempts"]) == ("payload_too_large", 0)


async def test_a_refused_endpoint_is_recorded_and_the_other_device_pushed(
    rig: Rig, pushes: PathPushService
) -> None:
    allowed = pushes.endpoint("fine")
    refused = "http://169.254.169.254/latest/meta-data"  # not listed, not public
    n = notification([allowed, refused])
    assert [r.endpoint for r in n.rejected] == [refused]

    assert await rig.deliver(n) == "sent"

    assert pushes.hits == {"/push/fine": 1}
    record = await rig.record(n.notification_id)
    assert (record["sent"], record["failed"], record["devices_total"]) == (1, 1, 2)
    device = await rig.device(n.notification_id, refused)
    assert (device["status"], device["reason"], device["attempts"]) == (
        "failed",
        "endpoint_not_allowed",
        0,
    )
    assert device["http_status"] is None
    assert device["detail"]
    assert rig.gone.calls == []


@pytest.mark.parametrize("status", [401, 403])
async def test_vapid_rejection_fails_without_deactivation(
    rig: Rig, pushes: PathPushService, status: int
) -> None:
    endpoint = pushes.answer("auth", status)
    n = notification([endpoint])

    assert await rig.deliver(n) == "failed"

    device = await rig.device(n.notification_id, endpoint)
    assert (device["status"], device["http_status"], device["reason"]) == (
        "failed",
        status,
        "vapid_rejected",
    )
    assert device["attempts"] == 1
    assert device["deactivation"] is None
    assert rig.gone.calls == []
    assert pushes.hits == {"/push/auth": 1}


async def test_transient_answers_are_retried_and_permanent_ones_are_not(
    rig: Rig, pushes: PathPushService
) -> None:
    flaky = pushes.answer("flaky", 500, 503, 201)
    bad = pushes.answer("bad", 400, 201)
    n = notification([flaky, bad])

    assert await rig.deliver(n) == "sent"

    assert pushes.hits == {"/push/flaky": 3, "/push/bad": 1}
    assert (await rig.device(n.notification_id, flaky))["attempts"] == 3
    rejected = await rig.device(n.notification_id, bad)
    assert (rejected["reason"], rejected["http_status"], rejected["attempts"]) == (
        "rejected",
        400,
        1,
    )
    assert rig.metrics.retries.value() == 2


async def test_fan_out_to_300_devices_pushes_each_exactly_once(
    rig: Rig, pushes: PathPushService, redis_client: redis.Redis
) -> None:
    endpoints = [pushes.endpoint(f"d{i}") for i in range(300)]
    n = notification(endpoints)
    started = time.monotonic()

    assert await rig.deliver(n) == "sent"

    assert time.monotonic() - started < 10
    assert pushes.hits == Counter({f"/push/d{i}": 1 for i in range(300)})
    record = await rig.record(n.notification_id)
    assert (record["status"], record["sent"], record["failed"]) == ("sent", 300, 0)
    assert record["devices_total"] == 300
    assert {d["endpoint"] for d in record["devices"]} == set(endpoints)
    assert all(d["status"] == "sent" and d["attempts"] == 1 for d in record["devices"])
    # The record carries the TTL it was given.
    ttl = await redis_client.ttl(rig.store.key(n.notification_id))
    assert 0 < ttl <= 600


async def test_a_notification_every_push_service_refuses_is_recorded_in_its_begin(
    rig: Rig, pushes: PathPushService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: when every device's circuit refuses requests now, the new record is written
    with its devices retrying in the one `begin` call: no request, no second status call,
    each deferral counted once. A redelivery goes the usual way (and is counted again)."""
    endpoint = pushes.endpoint("dark")
    n = notification([endpoint])
    origin = n.devices[0].origin
    rig.delivery.pusher.circuits.get(origin).force_open(60, "down for the test")
    recorded: list[str] = []
    record = rig.store.record

    async def counting(notification_id: str, outcomes: Any) -> str:
        recorded.append(notification_id)
        return await record(notification_id, outcomes)

    monkeypatch.setattr(rig.store, "record", counting)
    first = await rig.delivery.deliver(n)
    assert first.status == "processing" and [r.reason for r in first.retries] == ["circuit_open"]
    assert recorded == [] and not pushes.hits
    device = await rig.device(n.notification_id, endpoint)
    assert (device["status"], device["reason"], device["attempts"]) == (
        "retrying",
        "circuit_open",
        0,
    )
    deferred = rig.metrics.deferred
    assert deferred.value(host=host_label(origin), reason="circuit_open") == 1

    again = await rig.delivery.deliver(n)
    assert [r.reason for r in again.retries] == ["circuit_open"]
    assert recorded == [n.notification_id] and not pushes.hits
    assert deferred.value(host=host_label(origin), reason="circuit_open") == 2
