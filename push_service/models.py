"""Parsing and validation of subscriptions and queue messages.

Everything from outside (an HTTP body, a queue message) passes through here and
comes out either as a typed object or as a `ValidationError` naming the problem.
A device that is unacceptable inside an otherwise valid message does not sink the
message: it comes out as a `RejectedDevice` and is recorded as failed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from push_service.config import URGENCIES
from push_service.endpoints import EndpointPolicy
from push_service.errors import EndpointNotAllowed, ValidationError
from push_service.vapid import b64url_decode

MAX_PLAINTEXT_BYTES = 3993  # 4096-byte record - 86-byte header - delimiter - 16-byte tag
MAX_TTL_SECONDS = 28 * 24 * 3600
# \Z, not $: `$` also matches before a trailing newline ("id\n", a Topic header injection).
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}\Z")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
_TEXT_LIMITS = {"title": 256, "body": 2048, "tag": 128}
_URL_FIELDS = ("icon", "badge")


@dataclass(frozen=True, slots=True)
class Device:
    endpoint: str
    origin: str
    host: str
    p256dh: ec.EllipticCurvePublicKey
    auth: bytes
    key: str = ""  # the device id in Redis; derived from the endpoint once, at parse time

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", device_key(self.endpoint))


@dataclass(frozen=True, slots=True)
class RejectedDevice:
    endpoint: str
    reason: str
    detail: str

    @property
    def key(self) -> str:
        return device_key(self.endpoint)


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: str
    user_id: str | None
    devices: tuple[Device, ...]
    rejected: tuple[RejectedDevice, ...]
    payload: bytes
    ttl: int | None = None
    urgency: str | None = None
    topic: str | None = None
    # False only for a user_id nobody vouched for (AMQP header x-push-user-verified).
    user_verified: bool = True


def device_key(endpoint: str) -> str:
    """Stable short id of a device in Redis (the endpoint may be long and is not a key)."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:24]


def _require(condition: bool, code: str, detail: str) -> None:
    if not condition:
        raise ValidationError(code, detail)


def _decode_key(value: object, name: str, length: int) -> bytes:
    _require(
        isinstance(value, str) and 0 < len(value) <= 200,
        "invalid_keys",
        f"keys.{name} must be a base64url string",
    )
    try:
        raw = b64url_decode(str(value))
    except ValueError:
        raise ValidationError("invalid_keys", f"keys.{name} is not valid base64url") from None
    _require(
        len(raw) == length,
        "invalid_keys",
        f"keys.{name} must decode to {length} bytes, got {len(raw)}",
    )
    return raw


def parse_device(obj: object, policy: EndpointPolicy) -> Device:
    """Validate one PushSubscription; raises ValidationError."""
    _require(isinstance(obj, Mapping), "invalid_subscription", "subscription must be an object")
    assert isinstance(obj, Mapping)
    endpoint = obj.get("endpoint")
    _require(
        isinstance(endpoint, str) and bool(endpoint),
        "invalid_endpoint",
        "endpoint must be a non-empty string",
    )
    assert isinstance(endpoint, str)
    try:
        checked = policy.check(endpoint)
    except EndpointNotAllowed as exc:
        raise ValidationError("endpoint_not_allowed", exc.detail) from None
    keys = obj.get("keys")
    _require(
        isinstance(keys, Mapping), "invalid_keys", "keys must be an object with p256dh and auth"
    )
    assert isinstance(keys, Mapping)
    point = _decode_key(keys.get("p256dh"), "p256dh", 65)
    _require(point[0] == 4, "invalid_keys", "keys.p256dh must be an uncompressed P-256 point")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ValidationError("invalid_keys", "keys.p256dh is not a point on P-256") from None
    auth = _decode_key(keys.get("auth"), "auth", 16)
    return Device(endpoint, checked.origin, checked.host, public, auth)


def parse_subscription(body: bytes, policy: EndpointPolicy) -> tuple[Device, str | None]:
    """A `/subscribe` body: a PushSubscription, optionally with `user_id`."""
    obj = _load_json_object(body)
    expiration = obj.get("expirationTime")
    _require(
        expiration is None
        or (isinstance(expiration, int | float) and not isinstance(expiration, bool)),
        "invalid_subscription",
        "expirationTime must be null or a number",
    )
    return parse_device(obj, policy), _user_id(obj)


def _load_json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("invalid_json", f"body is not valid JSON: {exc}") from None
    _require(isinstance(obj, dict), "invalid_json", "body must be a JSON object")
    assert isinstance(obj, dict)
    return obj


def _user_id(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("user_id")
    if value is None:
        return None
    _require(
        isinstance(value, str | int) and not isinstance(value, bool),
        "invalid_user_id",
        "user_id must be a string or an integer",
    )
    text = str(value)
    _require(0 < len(text) <= 256, "invalid_user_id", "user_id must be 1 to 256 characters")
    return text


def _text(obj: Mapping[str, Any], name: str, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        _require(not required, "missing_field", f"{name} is required")
        return None
    _require(isinstance(value, str), "invalid_field", f"{name} must be a string")
    _require(
        len(value) <= _TEXT_LIMITS[name],
        "field_too_long",
        f"{name} must be at most {_TEXT_LIMITS[name]} characters",
    )
    return str(value)


def _url(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    _require(
        isinstance(value, str) and 0 < len(value) <= 2048,
        "invalid_field",
        f"{name} must be a URL of at most 2048 characters",
    )
    try:
        scheme = urlsplit(str(value)).scheme
    except ValueError:
        scheme = "?"
    allowed = ("http", "https") if name == "action_url" else ("http", "https", "")
    _require(scheme in allowed, "invalid_field", f"{name} must be an http(s) URL")
    return str(value)


def _delivery_options(obj: Mapping[str, Any]) -> tuple[int | None, str | None, str | None]:
    ttl, urgency, topic = obj.get("ttl"), obj.get("urgency"), obj.get("topic")
    if ttl is not None:
        _require(
            isinstance(ttl, int) and not isinstance(ttl, bool) and 0 <= ttl <= MAX_TTL_SECONDS,
            "invalid_ttl",
            f"ttl must be an integer from 0 to {MAX_TTL_SECONDS} seconds",
        )
    if urgency is not None:
        _require(
            urgency in URGENCIES,
            "invalid_urgency",
            f"urgency must be one of {', '.join(URGENCIES)}",
        )
    if topic is not None:
        _require(
            isinstance(topic, str) and bool(_TOPIC.match(topic)),
            "invalid_topic",
            "topic must be 1 to 32 base64url characters",
        )
    return ttl, urgency, topic


def build_payload(obj: Mapping[str, Any], notification_id: str) -> bytes:
    """The JSON the service worker decrypts: the display fields of the message."""
    payload: dict[str, Any] = {
        "notification_id": notification_id,
        "title": _text(obj, "title", required=True),
        "body": _text(obj, "body", required=False) or "",
        "action_url": _url(obj, "action_url"),
    }
    for name in _URL_FIELDS:
        if (value := _url(obj, name)) is not None:
            payload[name] = value
    if (tag := _text(obj, "tag", required=False)) is not None:
        payload["tag"] = tag
    data = obj.get("data")
    if data is not None:
        _require(isinstance(data, dict), "invalid_field", "data must be an object")
        payload["data"] = data
    return orjson.dumps(payload)


def parse_notification_id(obj: Mapping[str, Any]) -> str:
    value = obj.get("notification_id")
    _require(
        isinstance(value, str) and bool(ID_PATTERN.match(value)),
        "invalid_notification_id",
        "notification_id must be 1 to 128 characters of letters, digits and ._:@/+=-",
    )
    return str(value)


def _devices(
    raw: object, policy: EndpointPolicy, limit: int
) -> tuple[tuple[Device, ...], tuple[RejectedDevice, ...]]:
    _require(
        isinstance(raw, list) and len(raw) > 0,
        "invalid_devices",
        "devices must be a non-empty list",
    )
    assert isinstance(raw, list)
    _require(len(raw) <= limit, "too_many_devices", f"at most {limit} devices per message")
    devices: dict[str, Device] = {}
    rejected: dict[str, RejectedDevice] = {}
    for index, item in enumerate(raw):
        endpoint = item.get("endpoint") if isinstance(item, Mapping) else None
        name = endpoint if isinstance(endpoint, str) and endpoint else f"devices[{index}]"
        if name in devices or name in rejected:
            continue  # the same endpoint twice would be pushed twice
        try:
            devices[name] = parse_device(item, policy)
        except ValidationError as exc:
            rejected[name] = RejectedDevice(name[:2048], exc.code, exc.detail)
    return tuple(devices.values()), tuple(rejected.values())


def parse_notification(
    body: bytes, policy: EndpointPolicy, max_devices: int = 10_000
) -> Notification:
    """A queue message; raises ValidationError (which dead-letters it)."""
    obj = _load_json_object(body)
    notification_id = parse_notification_id(obj)
    ttl, urgency, topic = _delivery_options(obj)
    devices, rejected = _devices(obj.get("devices"), policy, max_devices)
    return Notification(
        notification_id=notification_id,
        user_id=_user_id(obj),
        devices=devices,
        rejected=rejected,
        payload=build_payload(obj, notification_id),
        ttl=ttl,
        urgency=urgency,
        topic=topic,
    )


def peek_notification_id(body: bytes) -> str | None:
    """Best effort: the id of a message that failed validation, to record its failure."""
    try:
        obj = orjson.loads(body)
        return parse_notification_id(obj) if isinstance(obj, dict) else None
    except (orjson.JSONDecodeError, ValidationError):
        return None
