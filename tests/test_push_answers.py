"""Push services' own rules: their error bodies, key mismatches, throttling, size limits.

Small aiohttp servers answer exactly as the push services do (statuses, bodies and
headers as their documentation and their source show them): Apple (`{"reason": ...}`),
Mozilla autopush (`{"code", "errno", "error", "message", "more_info"}`), FCM (plain
text) and Microsoft WNS (`X-WNS-*` headers). A "bound" endpoint accepts only pushes
signed with the VAPID key it was subscribed with, as every real push service does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiohttp import web

from push_service.answers import MOZILLA_CONSTRAINED_LIMIT, classify, explain, payload_limit
from push_service.circuits import CircuitPolicy, Circuits, State
from push_service.deadline import Deadline
from push_service.endpoints import EndpointPolicy
from push_service.errors import (
    PayloadTooLarge,
    PermanentPushError,
    SubscriptionGone,
    Throttled,
    UnknownVapidKey,
    VapidKeyMismatch,
    VapidRejected,
)
from push_service.metrics import Metrics
from push_service.models import Notification, parse_notification
from push_service.pusher import PushContext, Pusher
from push_service.retry import PushRetryPolicy
from push_service.status import DeviceOutcome
from push_service.vapid import VapidSigner, generate_private_key
from push_service.vapid_keys import VapidKeys
from push_service.webpush import PushOptions, WebPushSender, make_session
from tests.support import GoneLog, device_keys, serve_app, unique

POLICY = EndpointPolicy(("127.0.0.1",), allow_http=True)
JSON = {"Content-Type": "application/json"}
MORE_INFO = "http://autopush.readthedocs.io/en/latest/http.html#error-codes"


def mozilla(code: int, errno: int, error: str, message: str) -> str:
    body = {"code": code, "errno": errno, "error": error, "message": message}
    return orjson.dumps({**body, "more_info": MORE_INFO}).decode()


APPLE_BAD_JWT = (403, JSON, '{"reason":"BadJwtToken"}')
APPLE_MISMATCH = (400, JSON, '{"reason":"VapidPkHashMismatch"}')
APPLE_GONE = (410, JSON, '{"reason":"Unregistered"}')
FCM_MISMATCH = (
    403,
    {"Content-Type": "text/plain; charset=utf-8"},
    "the VAPID credentials in the authorization header do not correspond to the"
    " credentials used to create the subscriptions.\n",
)
FCM_NOT_FOUND_HTML = (404, {"Content-Type": "text/html"}, "<!DOCTYPE html><html>404</html>")
MOZILLA_GONE = (
    410,
    JSON,
    mozilla(410, 103, "Gone", "Request did not validate Subscription has expired"),
)
MOZILLA_VAPID = (401, JSON, mozilla(401, 109, "Unauthorized", "Invalid Authentication"))
MOZILLA_TOO_LARGE = (
    413,
    JSON,
    mozilla(
        413,
        104,
        "Payload Too Large",
        "This message is intended for a constrained device and is limited in size."
        " Converted buffer is too long by 1441 bytes",
    ),
)
WNS_THROTTLED = (
    406,
    {
        "X-WNS-Status": "appthrottled",
        "X-WNS-Msg-ID": "1ACBC5E8BB2E7F19",
        "X-WNS-Debug-Trace": "DB5SCH101110826",
    },
    "",
)
WNS_GONE = (410, {"X-WNS-Error-Description": "Channel expired"}, "")

Script = tuple[int, dict[str, str], str]


@dataclass
class FakePushService:
    """Endpoints that answer a script, or only the key they were subscribed with."""

    base_url: str = ""
    scripts: dict[str, list[Script]] = field(default_factory=dict)
    bound: dict[str, tuple[str, Script]] = field(default_factory=dict)  # name -> (key, refusal)
    keys_seen: dict[str, list[str]] = field(default_factory=dict)  # name -> `k=` of each request

    def scripted(self, *answers: Script) -> str:
        name = unique("d")
        self.scripts[name] = list(answers)
        return f"{self.base_url}/push/{name}"

    def bound_to(self, public_key: str, refusal: Script) -> str:
        name = unique("b")
        self.bound[name] = (public_key, refusal)
        return f"{self.base_url}/push/{name}"

    def seen(self, endpoint: str) -> list[str]:
        return self.keys_seen.get(endpoint.rsplit("/", 1)[1], [])

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        name = request.match_info["name"]
        key = request.headers.get("Authorization", "").rpartition("k=")[2]
        self.keys_seen.setdefault(name, []).append(key)
        status, headers, body = 201, dict[str, str](), ""
        if name in self.bound:
            expected, refusal = self.bound[name]
            if key != expected:
                status, headers, body = refusal
        elif self.scripts.get(name):
            status, headers, body = self.scripts[name].pop(0)
        return web.Response(status=status, headers=headers, text=body)


@pytest.fixture
async def fake() -> AsyncIterator[FakePushService]:
    service = FakePushService()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    async with serve_app(app) as url:
        service.base_url = url
        yield service


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(POLICY, 16, 5.0) as client:
        yield client


def signer() -> VapidSigner:
    return VapidSigner(generate_private_key(), "mailto:ops@example.com")


def notification(*devices: dict[str, object], keys: VapidKeys | None = None) -> Notification:
    message = {"notification_id": unique("n"), "user_id": "u1", "title": "t", "devices": devices}
    return parse_notification(orjson.dumps(message), POLICY, key_ids=keys.ids if keys else None)


def device_at(endpoint: str, **extra: object) -> dict[str, object]:
    return {"endpoint": endpoint, "keys": device_keys(), **extra}


async def send(
    session: aiohttp.ClientSession, keys: VapidKeys | VapidSigner, endpoint: str, **extra: object
) -> int:
    [device] = notification(device_at(endpoint, **extra)).devices
    return await WebPushSender(session, keys, POLICY).send(
        device, b'{"title":"t"}', PushOptions(60)
    )


# --- each push service's words reach the detail ------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (APPLE_BAD_JWT, VapidRejected, "HTTP 403: BadJwtToken"),
        (APPLE_GONE, SubscriptionGone, "HTTP 410: Unregistered"),
        (MOZILLA_GONE, SubscriptionGone, "errno 103: Request did not validate Subscription"),
        (MOZILLA_VAPID, VapidRejected, "HTTP 401: errno 109: Invalid Authentication"),
        (FCM_NOT_FOUND_HTML, SubscriptionGone, "HTTP 404"),
        (WNS_GONE, SubscriptionGone, "X-WNS-Error-Description: Channel expired"),
    ],
)
async def test_a_push_services_own_words_reach_the_detail(
    fake: FakePushService,
    session: aiohttp.ClientSession,
    answer: Script,
    kind: type[Exception],
    words: str,
) -> None:
    with pytest.raises(kind) as info:
        await send(session, signer(), fake.scripted(answer))
    detail = info.value.detail  # type: ignore[attr-defined]
    assert detail.startswith(f"HTTP {answer[0]}") and words in detail
    assert "<" not in detail and "more_info" not in detail


@pytest.mark.parametrize("answer", [APPLE_MISMATCH, (403, *APPLE_MISMATCH[1:]), FCM_MISMATCH])
async def test_a_key_mismatch_is_vapid_key_mismatch_a_gone_subscription(
    fake: FakePushService, session: aiohttp.ClientSession, answer: Script
) -> None:
    endpoint = fake.scripted(answer)
    with pytest.raises(VapidKeyMismatch) as info:
        await send(session, signer(), endpoint)
    assert isinstance(info.value, SubscriptionGone)
    assert info.value.reason == "vapid_key_mismatch"
    assert info.value.status_code == answer[0]
    assert len(fake.seen(endpoint)) == 1  # one key, one request


def test_explain_is_one_bounded_line() -> None:
    long = {"X-WNS-Debug-Trace": "x\r\n" * 500, "X-Other": "ignored"}
    text = explain(long, '{"reason": "BadJwtToken", "errno": true}')
    assert text.startswith("BadJwtToken; X-WNS-Debug-Trace: x x")
    assert "\n" not in text and "ignored" not in text and len(text) <= 400
    assert explain({}, '{"unrelated": 1}') == ""  # JSON saying nothing we know
    assert explain({}, "{not json") == "{not json"
    assert explain({}, "  plain words\n") == "plain words"


# --- throttling, size limits --------------------------------------------------------------------


def test_microsofts_406_is_throttling_and_anyone_elses_a_refusal() -> None:
    status, headers, body = WNS_THROTTLED
    with pytest.raises(Throttled) as info:
        classify(status, headers, body)
    assert "X-WNS-Status: appthrottled" in info.value.detail
    with pytest.raises(PermanentPushError) as refused:
        classify(406, {}, "")
    assert not isinstance(refused.value, Throttled)


def test_a_413_names_the_push_services_limit() -> None:
    status, headers, body = MOZILLA_TOO_LARGE
    with pytest.raises(PayloadTooLarge) as info:
        classify(status, headers, body, payload_bytes=3800)
    # 1441 base64 characters too many carry 1081 bytes: 3800 - 1081.
    assert "at most about 2719 payload bytes (this payload: 3800)" in info.value.detail
    assert payload_limit("errno 104: too large", None) == MOZILLA_CONSTRAINED_LIMIT
    assert payload_limit("body limited to 2744 bytes", 4000) == 2744
    assert payload_limit("HTTP 413", 4000) is None


# --- the pusher: reported like a gone subscription, retried, never retried ---------------------


@dataclass
class Rig:
    pusher: Pusher
    metrics: Metrics
    gone: GoneLog

    async def push(self, n: Notification) -> DeviceOutcome:
        context = PushContext(Deadline(time.time() + 3600, 3600))
        outcome = await self.pusher.push(n, n.devices[0], context)
        assert isinstance(outcome, DeviceOutcome)
        return outcome


@pytest.fixture
async def rig(session: aiohttp.ClientSession) -> AsyncIterator[Rig]:
    async with contextlib.AsyncExitStack():
        gone = GoneLog()
        metrics = Metrics()
        retry = PushRetryPolicy(
            max_tries=5, in_process_seconds=5.0, base_delay=0.01, max_delay=0.05
        )
        circuits = Circuits(CircuitPolicy(failures=1, open_seconds=30), lambda _: None)
        sender = WebPushSender(session, signer(), POLICY)
        yield Rig(Pusher(sender, circuits, gone, metrics, retry, 16), metrics, gone)


async def test_a_key_mismatch_is_reported_like_a_gone_subscription(
    rig: Rig, fake: FakePushService
) -> None:
    endpoint = fake.scripted(APPLE_MISMATCH)
    outcome = await rig.push(notification(device_at(endpoint)))
    assert (outcome.status, outcome.reason, outcome.http_status) == (
        "failed",
        "vapid_key_mismatch",
        400,
    )
    assert (outcome.attempts, outcome.deactivation) == (1, "queued")
    [(_, told_endpoint, reason, status, _)] = rig.gone.calls
    assert (told_endpoint, reason, status) == (endpoint, "vapid_key_mismatch", 400)


async def test_microsofts_throttling_is_retried_and_keeps_the_circuit_closed(
    rig: Rig, fake: FakePushService
) -> None:
    endpoint = fake.scripted(WNS_THROTTLED, WNS_THROTTLED)
    outcome = await rig.push(notification(device_at(endpoint)))
    assert (outcome.status, outcome.attempts) == ("sent", 3)
    assert rig.pusher.circuits.get(fake.base_url).state == State.CLOSED  # opens on 1 failure


async def test_a_push_services_size_limit_fails_at_once_with_the_limit(
    rig: Rig, fake: FakePushService
) -> None:
    endpoint = fake.scripted(MOZILLA_TOO_LARGE, MOZILLA_TOO_LARGE)
    outcome = await rig.push(notification(device_at(endpoint)))
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "payload_too_large", 1)
    assert outcome.detail is not None and "at most about" in outcome.detail
    assert len(fake.seen(endpoint)) == 1
    assert rig.gone.calls == []


# --- several keys: each subscription signed with its own ------------------------------------------


@pytest.fixture
def two_keys() -> VapidKeys:
    return VapidKeys({"old": signer(), "new": signer()}, "new")


async def test_a_device_naming_its_key_is_signed_with_it(
    fake: FakePushService, session: aiohttp.ClientSession, two_keys: VapidKeys
) -> None:
    endpoint = fake.bound_to(two_keys.public_key("old"), APPLE_MISMATCH)
    assert await send(session, two_keys, endpoint, vapid_key_id="old") == 201
    assert fake.seen(endpoint) == [two_keys.public_key("old")]
    # Named wrongly: no other key is tried, the device is unreachable as named.
    with pytest.raises(VapidKeyMismatch):
        await send(session, two_keys, endpoint, vapid_key_id="new")


@pytest.mark.parametrize("refusal", [APPLE_MISMATCH, FCM_MISMATCH])
async def test_a_device_naming_no_key_gets_the_current_one_then_the_others(
    fake: FakePushService,
    session: aiohttp.ClientSession,
    two_keys: VapidKeys,
    refusal: Script,
) -> None:
    current = fake.bound_to(two_keys.public_key("new"), refusal)
    assert await send(session, two_keys, current) == 201
    assert fake.seen(current) == [two_keys.public_key("new")]

    older = fake.bound_to(two_keys.public_key("old"), refusal)
    assert await send(session, two_keys, older) == 201
    assert fake.seen(older) == [two_keys.public_key("new"), two_keys.public_key("old")]

    nobody = fake.bound_to(signer().public_key, refusal)
    with pytest.raises(VapidKeyMismatch):
        await send(session, two_keys, nobody)
    assert len(fake.seen(nobody)) == 2  # each key once


async def test_an_unknown_key_id_fails_the_device_without_a_request(
    fake: FakePushService, session: aiohttp.ClientSession, two_keys: VapidKeys
) -> None:
    endpoint = fake.scripted()
    n = notification(device_at(endpoint, vapid_key_id="gone"), keys=two_keys)
    assert n.devices == ()
    [rejected] = n.rejected
    assert rejected.reason == "unknown_vapid_key"
    assert "'gone'" in rejected.detail and "new, old" in rejected.detail
    # Unchecked at parse time (a sender's own test): the sender refuses it the same way.
    with pytest.raises(UnknownVapidKey):
        await send(session, two_keys, endpoint, vapid_key_id="gone")
    assert fake.seen(endpoint) == []


def test_a_parked_device_keeps_its_key_id(two_keys: VapidKeys) -> None:
    n = notification(device_at("http://127.0.0.1:1/p", vapid_key_id="old"), keys=two_keys)
    [device] = n.devices
    assert device.key_id == "old"
    assert device.subscription()["vapid_key_id"] == "old"
    again = notification(device.subscription(), keys=two_keys)
    assert again.devices[0].key_id == "old"
    plain = notification(device_at("http://127.0.0.1:1/q"))
    assert "vapid_key_id" not in plain.devices[0].subscription()
