"""One push subscription, validated: the endpoint vetted and the keys decoded once.

A `Device` carries both forms of its keys: the decoded P-256 public key and auth
secret that encryption needs, and the base64url text it came with, so that a
message for some of a notification's devices can be rebuilt (`subscription()`).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from msgspec.structs import force_setattr

from push_service.endpoints import EndpointPolicy
from push_service.errors import EndpointNotAllowed, ValidationError
from push_service.models import messages, wire
from push_service.models.diagnose import decode
from push_service.vapid import b64url_decode, b64url_encode

_P256 = ec.SECP256R1()


def device_key(endpoint: str) -> str:
    """Stable short id of a device in Redis (the endpoint may be long and is not a key)."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:24]


class Device(msgspec.Struct, frozen=True):
    """A device to push to. A Struct, not a dataclass: a 10,000-device message makes 10,000."""

    endpoint: str
    origin: str
    host: str
    p256dh: ec.EllipticCurvePublicKey
    auth: bytes
    key: str = ""  # the device id in Redis; derived from the endpoint once, at parse time
    p256dh_b64: str = ""  # the keys as the subscription gave them (base64url)
    auth_b64: str = ""
    key_id: str | None = None  # the VAPID key it was made with, when the message says

    def __post_init__(self) -> None:
        if not self.key:
            force_setattr(self, "key", device_key(self.endpoint))
        if not self.p256dh_b64:
            point = self.p256dh.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            force_setattr(self, "p256dh_b64", b64url_encode(point))
        if not self.auth_b64:
            force_setattr(self, "auth_b64", b64url_encode(self.auth))

    def subscription(self) -> dict[str, Any]:
        """The PushSubscription JSON of this device, as a queue message lists it."""
        subscription: dict[str, Any] = {
            "endpoint": self.endpoint,
            "keys": {"p256dh": self.p256dh_b64, "auth": self.auth_b64},
        }
        if self.key_id is not None:
            subscription["vapid_key_id"] = self.key_id
        return subscription


class RejectedDevice(msgspec.Struct, frozen=True):
    endpoint: str
    reason: str
    detail: str

    @property
    def key(self) -> str:
        return device_key(self.endpoint)


def _decode_key(text: str, name: str, length: int) -> bytes:
    try:
        raw = b64url_decode(text)
    except ValueError:
        raise ValidationError("invalid_keys", f"keys.{name} is not valid base64url") from None
    if len(raw) != length:
        raise ValidationError(
            "invalid_keys", f"keys.{name} must decode to {length} bytes, got {len(raw)}"
        )
    return raw


# Checking that a point is on the curve is most of a device's parse cost, and a device
# receives many pushes: the last few thousand browser keys are kept, decoded. Only valid
# keys are cached (lru_cache keeps no exceptions); it is thread-safe. About 2 KB a key
# (OpenSSL's key object): 8 MB when full.
KEY_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _public_key(text: str) -> ec.EllipticCurvePublicKey:
    point = _decode_key(text, "p256dh", 65)
    if point[0] != 4:
        raise ValidationError("invalid_keys", "keys.p256dh must be an uncompressed P-256 point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_P256, point)
    except ValueError:
        raise ValidationError("invalid_keys", "keys.p256dh is not a point on P-256") from None


def device_from(
    subscription: wire.DeviceSubscription,
    policy: EndpointPolicy,
    key_ids: frozenset[str] | None = None,
) -> Device:
    """Vet the endpoint and decode the keys of a decoded subscription; raises ValidationError.

    `key_ids`: the VAPID key ids a device may name (None: not checked here).
    """
    key_id = subscription.vapid_key_id
    if key_id is not None and key_ids is not None and key_id not in key_ids:
        raise ValidationError(
            "unknown_vapid_key",
            f"vapid_key_id {key_id!r} is not a key of this service"
            f" (known: {', '.join(sorted(key_ids))})",
        )
    try:
        checked = policy.check(subscription.endpoint)
    except EndpointNotAllowed as exc:
        raise ValidationError("endpoint_not_allowed", exc.detail) from None
    keys = subscription.keys
    return Device(
        subscription.endpoint,
        checked.origin,
        checked.host,
        _public_key(keys.p256dh),
        _decode_key(keys.auth, "auth", 16),
        device_key(subscription.endpoint),
        keys.p256dh,
        keys.auth,
        key_id,
    )


def parse_device(raw: msgspec.Raw | bytes, policy: EndpointPolicy) -> Device:
    """One PushSubscription as JSON (a device of a queue message); raises ValidationError."""
    decoded = decode(raw, wire.DEVICE, messages.DEVICE, messages.DEVICE_ROOT)
    return device_from(decoded, policy)


def endpoint_of(raw: msgspec.Raw) -> str | None:
    """The endpoint of a device that failed validation, if it has one, to name it by."""
    value = wire.ANY.decode(raw)
    endpoint = value.get("endpoint") if isinstance(value, dict) else None
    return endpoint if isinstance(endpoint, str) and endpoint else None


class SubscribeForm(msgspec.Struct, frozen=True):
    """A `POST /subscribe` body, validated."""

    device: Device
    user_id: str | None  # as claimed; an integer becomes its digits
    expiration_time: float | None = None
    topics: tuple[str, ...] | None = None  # None: keep the registered ones
    old_endpoint: str | None = None
    old_auth: str | None = None


def parse_subscribe(body: bytes, policy: EndpointPolicy) -> SubscribeForm:
    """A `POST /subscribe` body; raises ValidationError."""
    form = decode(body, wire.SUBSCRIBE, messages.SUBSCRIBE, messages.NOT_AN_OBJECT)
    expires = form.expiration_time
    return SubscribeForm(
        device_from(form, policy),
        None if form.user_id is None else str(form.user_id),
        None if expires is None else float(expires),
        None if form.topics is None else tuple(dict.fromkeys(form.topics)),
        form.old_endpoint or None,
        form.old_keys.auth if form.old_keys is not None else None,
    )


def parse_subscription(body: bytes, policy: EndpointPolicy) -> tuple[Device, str | None]:
    """A `POST /subscribe` body: the device, and the user id (an integer becomes its digits)."""
    form = parse_subscribe(body, policy)
    return form.device, form.user_id


def parse_unsubscribe(body: bytes) -> tuple[str, str]:
    """A `DELETE /subscribe` body: the endpoint and its auth secret; raises ValidationError."""
    form = decode(body, wire.UNSUBSCRIBE, messages.UNSUBSCRIBE, messages.NOT_AN_OBJECT)
    return form.endpoint, form.keys.auth
