"""Validation of subscriptions and queue messages: a table, and properties with hypothesis."""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import os
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from push_service.endpoints import EndpointPolicy
from push_service.errors import ValidationError
from push_service.models import (
    ID_PATTERN,
    MAX_TTL_SECONDS,
    Notification,
    device_key,
    parse_notification,
    parse_subscription,
    peek_notification_id,
)
from push_service.models import device as device_module
from push_service.vapid import b64url_encode

POLICY = EndpointPolicy(
    ("fcm.googleapis.com", "*.push.services.mozilla.com", "*.push.apple.com"), allow_http=False
)
FCM = "https://fcm.googleapis.com/fcm/send/"
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


KEYS = [point(ec.generate_private_key(ec.SECP256R1())) for _ in range(4)]
P256DH = b64url_encode(KEYS[0])
AUTH = b64url_encode(os.urandom(16))


def off_curve() -> bytes:
    raw = bytearray(KEYS[0])
    raw[-1] ^= 0x01  # same x, wrong y
    return bytes(raw)


def subscription(**overrides: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "endpoint": FCM + "abc",
        "expirationTime": None,
        "keys": {"p256dh": P256DH, "auth": AUTH},
    }
    sub.update(overrides)
    return sub


def message(**overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "notification_id": "n-1",
        "user_id": "user-1",
        "devices": [subscription()],
        "title": "Title",
        "body": "Text",
        "action_url": "https://example.com/path",
    }
    msg.update(overrides)
    return msg


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


# --- subscriptions ------------------------------------------------------------------------


def test_valid_subscription() -> None:
    device, user_id = parse_subscription(dumps(subscription(user_id="u-7")), POLICY)
    assert device.endpoint == FCM + "abc"
    assert device.origin == "https://fcm.googleapis.com"
    assert device.host == "fcm.googleapis.com"
    assert device.auth == base64.urlsafe_b64decode(AUTH + "==")
    assert point_of(device.p256dh) == KEYS[0]
    assert device.key == device_key(FCM + "abc") and len(device.key) == 24
    assert user_id == "u-7"


def point_of(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def test_padded_base64_and_integer_user_id_are_accepted() -> None:
    body = subscription(keys={"p256dh": P256DH + "=", "auth": AUTH + "=="}, user_id=42)
    device, user_id = parse_subscription(dumps(body), POLICY)
    assert point_of(device.p256dh) == KEYS[0]
    assert user_id == "42"


def with_keys(**keys: Any) -> dict[str, Any]:
    return subscription(keys={"p256dh": P256DH, "auth": AUTH, **keys})


SUBSCRIPTION_ERRORS: list[tuple[str, bytes, str]] = [
    ("bad json", b'{"endpoint": ', "invalid_json"),
    ("empty body", b"", "invalid_json"),
    ("not an object", b"[1, 2]", "invalid_json"),
    ("a string", b'"https://fcm.googleapis.com/x"', "invalid_json"),
    ("no endpoint", dumps({"keys": {"p256dh": P256DH, "auth": AUTH}}), "invalid_endpoint"),
    ("endpoint not str", dumps(subscription(endpoint=5)), "invalid_endpoint"),
    ("empty endpoint", dumps(subscription(endpoint="")), "invalid_endpoint"),
    (
        "disallowed host",
        dumps(subscription(endpoint="https://evil.example/x")),
        "endpoint_not_allowed",
    ),
    (
        "metadata endpoint",
        dumps(subscription(endpoint="https://169.254.169.254/")),
        "endpoint_not_allowed",
    ),
    ("no keys", dumps({"endpoint": FCM + "x"}), "invalid_keys"),
    ("keys not object", dumps(subscription(keys=[P256DH, AUTH])), "invalid_keys"),
    ("no p256dh", dumps(subscription(keys={"auth": AUTH})), "invalid_keys"),
    ("no auth", dumps(subscription(keys={"p256dh": P256DH})), "invalid_keys"),
    ("p256dh short", dumps(with_keys(p256dh=b64url_encode(KEYS[0][:64]))), "invalid_keys"),
    ("p256dh long", dumps(with_keys(p256dh=b64url_encode(KEYS[0] + b"\0"))), "invalid_keys"),
    ("p256dh off curve", dumps(with_keys(p256dh=b64url_encode(off_curve()))), "invalid_keys"),
    (
        "p256dh compressed",
        dumps(with_keys(p256dh=b64url_encode(b"\x02" + KEYS[0][1:33]))),
        "invalid_keys",
    ),
    (
        "p256dh 65 bytes not 0x04",
        dumps(with_keys(p256dh=b64url_encode(b"\x02" + KEYS[0][1:]))),
        "invalid_keys",
    ),
    ("p256dh bad base64", dumps(with_keys(p256dh="not base64!" * 8)), "invalid_keys"),
    ("p256dh number", dumps(with_keys(p256dh=12345)), "invalid_keys"),
    ("p256dh huge", dumps(with_keys(p256dh="A" * 5000)), "invalid_keys"),
    ("auth short", dumps(with_keys(auth=b64url_encode(os.urandom(15)))), "invalid_keys"),
    ("auth long", dumps(with_keys(auth=b64url_encode(os.urandom(17)))), "invalid_keys"),
    ("auth bad base64", dumps(with_keys(auth="%%%%%%%%%%%%%%%%%%%%%%")), "invalid_keys"),
    ("auth empty", dumps(with_keys(auth="")), "invalid_keys"),
    ("expiration bool", dumps(subscription(expirationTime=True)), "invalid_subscription"),
    ("expiration text", dumps(subscription(expirationTime="soon")), "invalid_subscription"),
    ("user_id bool", dumps(subscription(user_id=False)), "invalid_user_id"),
    ("user_id list", dumps(subscription(user_id=["a"])), "invalid_user_id"),
    ("user_id empty", dumps(subscription(user_id="")), "invalid_user_id"),
    ("user_id too long", dumps(subscription(user_id="u" * 257)), "invalid_user_id"),
]


@pytest.mark.parametrize(
    ("body", "code"),
    [pytest.param(body, code, id=name) for name, body, code in SUBSCRIPTION_ERRORS],
)
def test_subscription_errors(body: bytes, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_subscription(body, POLICY)
    assert info.value.code == code
    assert info.value.detail


# --- notifications ------------------------------------------------------------------------


def test_valid_notification_and_payload() -> None:
    msg = message(
        ttl=600,
        urgency="high",
        topic="news_1-A",
        icon="/icon.png",
        badge="https://example.com/b.png",
        tag="t1",
        data={"k": [1, 2, {"x": None}]},
    )
    n = parse_notification(dumps(msg), POLICY)
    assert isinstance(n, Notification)
    assert n.notification_id == "n-1" and n.user_id == "user-1"
    assert (n.ttl, n.urgency, n.topic) == (600, "high", "news_1-A")
    assert len(n.devices) == 1 and n.rejected == ()
    payload = orjson.loads(n.payload)
    assert payload == {
        "notification_id": "n-1",
        "title": "Title",
        "body": "Text",
        "action_url": "https://example.com/path",
        "icon": "/icon.png",
        "badge": "https://example.com/b.png",
        "tag": "t1",
        "data": {"k": [1, 2, {"x": None}]},
    }


def test_optional_fields_default() -> None:
    msg = message()
    del msg["body"], msg["user_id"]
    n = parse_notification(dumps(msg), POLICY)
    assert n.user_id is None and n.ttl is None and n.urgency is None and n.topic is None
    assert orjson.loads(n.payload)["body"] == ""


def devices_list(count: int) -> list[dict[str, Any]]:
    return [subscription(endpoint=f"{FCM}{i}") for i in range(count)]


NOTIFICATION_ERRORS: list[tuple[str, Any, str]] = [
    ("bad json", b"{nope", "invalid_json"),
    ("not an object", b"[]", "invalid_json"),
    ("null", b"null", "invalid_json"),
    (
        "no id",
        {k: v for k, v in message().items() if k != "notification_id"},
        "invalid_notification_id",
    ),
    ("id fraction", message(notification_id=5.5), "invalid_notification_id"),
    ("id float", message(notification_id=5.0), "invalid_notification_id"),
    ("id bool", message(notification_id=True), "invalid_notification_id"),
    ("id negative", message(notification_id=-5), "invalid_notification_id"),
    ("id empty", message(notification_id=""), "invalid_notification_id"),
    ("id space", message(notification_id="a b"), "invalid_notification_id"),
    ("id newline", message(notification_id="abc\n"), "invalid_notification_id"),
    ("id slash first", message(notification_id="/etc"), "invalid_notification_id"),
    ("id star", message(notification_id="a*"), "invalid_notification_id"),
    ("id too long", message(notification_id="a" * 129), "invalid_notification_id"),
    ("id unicode", message(notification_id="é"), "invalid_notification_id"),
    ("ttl negative", message(ttl=-1), "invalid_ttl"),
    ("ttl too big", message(ttl=MAX_TTL_SECONDS + 1), "invalid_ttl"),
    ("ttl bool", message(ttl=True), "invalid_ttl"),
    ("ttl float", message(ttl=1.5), "invalid_ttl"),
    ("ttl string", message(ttl="60"), "invalid_ttl"),
    ("urgency bad", message(urgency="urgent"), "invalid_urgency"),
    ("urgency case", message(urgency="HIGH"), "invalid_urgency"),
    ("urgency list", message(urgency=["high"]), "invalid_urgency"),
    ("topic 65", message(topic="a" * 65), "invalid_topic"),
    ("topic empty", message(topic=""), "invalid_topic"),
    ("topic not base64url", message(topic="a+b"), "invalid_topic"),
    ("topic space", message(topic="a b"), "invalid_topic"),
    ("topic newline", message(topic="abc\n"), "invalid_topic"),
    ("topic header injection", message(topic="a\r\nX-Evil: 1"), "invalid_topic"),
    ("topic number", message(topic=5), "invalid_topic"),
    ("action javascript", message(action_url="javascript:alert(1)"), "invalid_field"),
    ("action JAVASCRIPT", message(action_url=" JavaScript:alert(1)"), "invalid_field"),
    ("action data", message(action_url="data:text/html,x"), "invalid_field"),
    ("action relative", message(action_url="/path"), "invalid_field"),
    ("action empty", message(action_url=""), "invalid_field"),
    ("action too long", message(action_url="https://e.com/" + "a" * 2048), "invalid_field"),
    ("icon javascript", message(icon="javascript:alert(1)"), "invalid_field"),
    ("icon number", message(icon=1), "invalid_field"),
    ("no devices", {k: v for k, v in message().items() if k != "devices"}, "invalid_devices"),
    ("devices empty", message(devices=[]), "invalid_devices"),
    ("devices object", message(devices={"endpoint": FCM}), "invalid_devices"),
    ("devices string", message(devices="x"), "invalid_devices"),
    ("too many devices", message(devices=devices_list(11)), "too_many_devices"),
    ("no title", {k: v for k, v in message().items() if k != "title"}, "missing_field"),
    ("title null", message(title=None), "missing_field"),
    ("title number", message(title=1), "invalid_field"),
    ("title too long", message(title="t" * 257), "field_too_long"),
    ("body too long", message(body="b" * 2049), "field_too_long"),
    ("tag too long", message(tag="t" * 129), "field_too_long"),
    ("body list", message(body=["x"]), "invalid_field"),
    ("data list", message(data=[1]), "invalid_field"),
    ("user_id bool", message(user_id=True), "invalid_user_id"),
]


@pytest.mark.parametrize(
    ("body", "code"),
    [pytest.param(body, code, id=name) for name, body, code in NOTIFICATION_ERRORS],
)
def test_notification_errors(body: Any, code: str) -> None:
    raw = body if isinstance(body, bytes) else dumps(body)
    with pytest.raises(ValidationError) as info:
        parse_notification(raw, POLICY, max_devices=10)
    assert info.value.code == code


def test_limits_are_inclusive() -> None:
    msg = message(
        notification_id="a" * 128,
        title="t" * 256,
        body="b" * 2048,
        tag="g" * 128,
        topic="a" * 32,
        ttl=MAX_TTL_SECONDS,
        devices=devices_list(10),
    )
    n = parse_notification(dumps(msg), POLICY, max_devices=10)
    assert len(n.devices) == 10
    assert parse_notification(dumps(message(ttl=0)), POLICY).ttl == 0


def test_duplicate_endpoints_are_deduplicated() -> None:
    first = subscription(endpoint=FCM + "same")
    second = subscription(
        endpoint=FCM + "same", keys={"p256dh": b64url_encode(KEYS[1]), "auth": AUTH}
    )
    n = parse_notification(dumps(message(devices=[first, second, subscription()])), POLICY)
    assert [d.endpoint for d in n.devices] == [FCM + "same", FCM + "abc"]
    assert point_of(n.devices[0].p256dh) == KEYS[0]  # the first one wins


def test_bad_devices_become_rejected_devices_not_message_errors() -> None:
    good = subscription(endpoint=FCM + "good")
    bad_keys = subscription(endpoint=FCM + "bad", keys={"p256dh": "AAAA", "auth": AUTH})
    off = subscription(
        endpoint=FCM + "off", keys={"p256dh": b64url_encode(off_curve()), "auth": AUTH}
    )
    evil = subscription(endpoint="https://127.0.0.1/push")
    not_object = "just a string"
    no_endpoint = {"keys": {"p256dh": P256DH, "auth": AUTH}}
    n = parse_notification(
        dumps(message(devices=[good, bad_keys, off, evil, not_object, no_endpoint, bad_keys])),
        POLICY,
    )
    assert [d.endpoint for d in n.devices] == [FCM + "good"]
    rejected = {r.endpoint: r.reason for r in n.rejected}
    assert rejected == {
        FCM + "bad": "invalid_keys",
        FCM + "off": "invalid_keys",
        "https://127.0.0.1/push": "endpoint_not_allowed",
        "devices[4]": "invalid_subscription",
        "devices[5]": "invalid_endpoint",
    }
    assert all(r.detail for r in n.rejected)
    assert len({r.key for r in n.rejected} | {d.key for d in n.devices}) == 6


def test_message_with_only_bad_devices_still_parses() -> None:
    n = parse_notification(dumps(message(devices=[subscription(endpoint="ftp://x")])), POLICY)
    assert n.devices == () and len(n.rejected) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (dumps(message(notification_id="abc-1", devices=[])), "abc-1"),
        (dumps({"notification_id": "x1"}), "x1"),
        (dumps({"notification_id": "bad id"}), None),
        (dumps({"notification_id": 7}), "7"),
        (dumps({"notification_id": True}), None),
        (b"\xef\xbb\xbf" + dumps({"notification_id": "bom"}), "bom"),
        (b"[]", None),
        (b"\xff\xfe", None),
        (b"", None),
    ],
)
def test_peek_notification_id(body: bytes, expected: str | None) -> None:
    assert peek_notification_id(body) == expected


def test_id_pattern_rejects_trailing_newline() -> None:
    assert ID_PATTERN.match("abc")
    assert not ID_PATTERN.match("abc\n")


# --- properties ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=15,
)
key_strings = st.sampled_from([P256DH, AUTH, b64url_encode(off_curve()), "", "AAAA", "=="])
endpoints = st.sampled_from(
    [
        FCM + "x",
        "https://updates.push.services.mozilla.com/wpush/v2/x",
        "https://127.0.0.1/",
        "https://[::1]/",
        "http://fcm.googleapis.com/",
        "javascript:alert(1)",
        "https://user@fcm.googleapis.com/",
        "https://fcm.googleapis.com:99999/",
        "https://[::1",
        "",
    ]
)
hostish = st.text(max_size=20)
endpoints = (
    endpoints
    | st.text(max_size=60)
    | hostish.map(lambda h: f"https://{h}/")
    | hostish.map(lambda h: f"https://{h}.1/")
    | hostish.map(lambda h: f"https://[{h}]/")
)
device_like = st.fixed_dictionaries(
    {},
    optional={
        "endpoint": endpoints | json_values,
        "keys": st.fixed_dictionaries(
            {}, optional={"p256dh": key_strings | json_values, "auth": key_strings | json_values}
        )
        | json_values,
        "expirationTime": json_values,
        "user_id": json_values,
    },
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "notification_id": st.from_regex(ID_PATTERN, fullmatch=True) | json_values,
        "user_id": json_values,
        "devices": st.lists(device_like | json_values, max_size=4) | json_values,
        "title": st.text(max_size=300) | json_values,
        "body": json_values,
        "action_url": st.sampled_from(["https://e.com/", "javascript:x", "/p", ""]) | json_values,
        "ttl": json_values,
        "urgency": st.sampled_from(["high", "low", "HIGH"]) | json_values,
        "topic": st.text(max_size=40) | json_values,
        "icon": json_values,
        "badge": json_values,
        "tag": json_values,
        "data": json_values,
    },
)


def parses_or_validation_error(body: bytes) -> None:
    """Anything but a ValidationError propagates and fails the property."""
    errors: list[ValidationError] = []
    try:
        n = parse_notification(body, POLICY, max_devices=3)
    except ValidationError as exc:
        errors.append(exc)
    else:
        assert ID_PATTERN.match(n.notification_id)
        assert len(n.devices) + len(n.rejected) >= 1
        orjson.loads(n.payload)
    try:
        device, _ = parse_subscription(body, POLICY)
    except ValidationError as exc:
        errors.append(exc)
    else:
        assert len(device.auth) == 16
    assert all(e.code and e.detail for e in errors)
    peek_notification_id(body)  # never raises


@PROPERTY
@given(json_values | message_like | device_like)
def test_any_json_parses_or_raises_validation_error(value: Any) -> None:
    parses_or_validation_error(orjson.dumps(value))


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_validation_error(body: bytes) -> None:
    parses_or_validation_error(body)


printable = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
valid_devices = st.lists(
    st.tuples(
        st.sampled_from([FCM, "https://updates.push.services.mozilla.com/wpush/v2/"]),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-_:", min_size=1, max_size=40),
        st.sampled_from(KEYS),
        st.binary(min_size=16, max_size=16),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda t: t[0] + t[1],
)
valid_messages = st.fixed_dictionaries(
    {
        "notification_id": st.from_regex(ID_PATTERN, fullmatch=True),
        "devices": valid_devices.map(
            lambda items: [
                {
                    "endpoint": base + tail,
                    "keys": {"p256dh": b64url_encode(key), "auth": b64url_encode(auth)},
                }
                for base, tail, key, auth in items
            ]
        ),
        "title": st.text(max_size=256),
        "action_url": st.sampled_from(["https://example.com/a?b=c", "http://e.com/"]),
    },
    optional={
        "user_id": st.text(min_size=1, max_size=256) | st.integers(0, 2**53),
        "body": st.text(max_size=2048),
        "icon": st.sampled_from(["/i.png", "https://cdn.example/i.png"]),
        "badge": st.sampled_from(["/b.png", "https://cdn.example/b.png"]),
        "tag": st.text(max_size=128),
        "data": st.dictionaries(st.text(max_size=10), json_values, max_size=4),
        "ttl": st.integers(0, MAX_TTL_SECONDS),
        "urgency": st.sampled_from(["very-low", "low", "normal", "high"]),
        "topic": st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
    },
)


@PROPERTY
@given(valid_messages)
def test_valid_messages_parse_and_round_trip_display_fields(msg: dict[str, Any]) -> None:
    original = copy.deepcopy(msg)
    n = parse_notification(orjson.dumps(msg), POLICY)
    assert n.rejected == ()
    assert [d.endpoint for d in n.devices] == [d["endpoint"] for d in msg["devices"]]
    assert [point_of(d.p256dh) for d in n.devices] == [
        base64.urlsafe_b64decode(d["keys"]["p256dh"] + "=") for d in msg["devices"]
    ]
    assert n.notification_id == msg["notification_id"]
    assert n.ttl == msg.get("ttl") and n.urgency == msg.get("urgency")
    assert n.topic == msg.get("topic")
    assert n.user_id == (None if "user_id" not in msg else str(msg["user_id"]))
    payload = orjson.loads(n.payload)
    assert payload["notification_id"] == msg["notification_id"]
    assert payload["title"] == msg["title"]
    assert payload["body"] == msg.get("body", "")
    assert payload["action_url"] == msg["action_url"]
    for name in ("icon", "badge", "tag", "data"):
        assert payload.get(name) == msg.get(name)
    assert msg == original  # parsing does not mutate its input


def test_parsing_in_threads_gives_the_same_result_as_on_the_loop() -> None:
    """The consumer parses large messages in a worker thread, alongside small ones."""
    body = dumps(message(devices=devices_list(300)))
    expected = parse_notification(body, POLICY)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: parse_notification(body, POLICY), range(8)))
    for n in results:
        assert n.payload == expected.payload
        assert [d.key for d in n.devices] == [d.key for d in expected.devices]
        assert [point_of(d.p256dh) for d in n.devices] == [
            point_of(d.p256dh) for d in expected.devices
        ]


def test_decoded_keys_are_kept_across_messages_bounded_and_only_when_valid() -> None:
    cache = device_module._public_key
    cache.cache_clear()
    body = dumps(message())
    first, second = parse_notification(body, POLICY), parse_notification(body, POLICY)
    assert first.devices[0].p256dh is second.devices[0].p256dh  # decoded once
    bad = dumps(message(devices=[with_keys(p256dh=b64url_encode(off_curve()))]))
    for _ in range(2):
        assert parse_notification(bad, POLICY).rejected[0].reason == "invalid_keys"
    info = cache.cache_info()
    assert (info.hits, info.currsize, info.maxsize) == (1, 1, device_module.KEY_CACHE_SIZE)
