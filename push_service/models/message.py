"""The queue message: from the published bytes to a `Notification` ready to deliver.

A message that is not acceptable raises `ValidationError` (the consumer dead-letters
it). A device that is not acceptable inside an otherwise valid message does not sink
the message: it comes out as a `RejectedDevice` and is recorded as failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from push_service.endpoints import EndpointPolicy
from push_service.errors import ValidationError
from push_service.models import constraints, messages, wire
from push_service.models.device import Device, RejectedDevice, device_from, endpoint_of
from push_service.models.diagnose import decode
from push_service.models.payload import build_payload
from push_service.models.rules import MAX_URL, PayloadFormat
from push_service.models.send_at import send_at_seconds


@dataclass(frozen=True, slots=True)
class AudienceRef:
    """A message's audience: exactly one of a user and a topic (the registry resolves it)."""

    user_id: str | None = None
    topic: str | None = None

    def describe(self) -> str:
        return f"user:{self.user_id}" if self.topic is None else f"topic:{self.topic}"


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
    payload_format: PayloadFormat = "classic"
    # False only for a user_id nobody vouched for (AMQP header x-push-user-verified).
    user_verified: bool = True
    send_at: float | None = None  # epoch seconds: not pushed before (push_service.schedule)
    # Devices still to be looked up in the registry (a message with `audience`).
    audience: AudienceRef | None = None
    # One chunk of a resolved audience (header x-push-fanout): its devices are counted in
    # the record's total by the resolver, not by the chunk.
    chunk: bool = False


def decode_message(body: bytes) -> wire.NotificationMessage:
    """The message's fields, each checked on its own; raises ValidationError."""
    return decode(body, wire.MESSAGE, messages.MESSAGE, messages.NOT_AN_OBJECT)


def parse_notification(
    body: bytes,
    policy: EndpointPolicy,
    max_devices: int = 10_000,
    *,
    payload_format: PayloadFormat = "classic",
    key_ids: frozenset[str] | None = None,
) -> Notification:
    """A queue message; raises ValidationError (which dead-letters it).

    `payload_format` is the service's default (PUSH_PAYLOAD_FORMAT), for messages
    that do not say. `key_ids`: the VAPID key ids a device may name (None: any); a
    device naming another fails alone with reason `unknown_vapid_key`.
    """
    message = decode_message(body)
    if message.payload_format is None:
        message.payload_format = payload_format
    constraints.check(message)
    audience = _audience(message)
    raws = [] if isinstance(message.devices, msgspec.UnsetType) else message.devices
    if len(raws) > max_devices:
        raise ValidationError("too_many_devices", f"at most {max_devices} devices per message")
    notification_id = str(message.notification_id)  # a JSON integer becomes its digits
    devices, rejected = _devices(raws, policy, key_ids)
    return Notification(
        audience=audience,
        notification_id=notification_id,
        user_id=None if message.user_id is None else str(message.user_id),
        devices=devices,
        rejected=rejected,
        payload=build_payload(message, notification_id),
        ttl=message.ttl,
        urgency=message.urgency,
        topic=message.topic,
        payload_format=message.payload_format,
        send_at=None if message.send_at is None else send_at_seconds(message.send_at),
    )


def _audience(message: wire.NotificationMessage) -> AudienceRef | None:
    """The message's audience, or None when it names devices; exactly one of the two."""
    audience = message.audience
    if isinstance(audience, msgspec.UnsetType):
        if isinstance(message.devices, msgspec.UnsetType):
            raise ValidationError(
                "invalid_devices", "devices (a non-empty list) or audience is required"
            )
        return None
    if not isinstance(message.devices, msgspec.UnsetType):
        raise ValidationError(
            "devices_and_audience", "a message names either devices or an audience, not both"
        )
    user_id, topic = audience.user_id, audience.topic
    if isinstance(user_id, msgspec.UnsetType) == isinstance(topic, msgspec.UnsetType):
        raise ValidationError(
            "invalid_audience", "audience must name exactly one of user_id and topic"
        )
    if isinstance(topic, msgspec.UnsetType):
        return AudienceRef(user_id=str(user_id))
    return AudienceRef(topic=topic)


def _devices(
    raws: list[msgspec.Raw], policy: EndpointPolicy, key_ids: frozenset[str] | None
) -> tuple[tuple[Device, ...], tuple[RejectedDevice, ...]]:
    """Each device on its own; the same endpoint twice is taken once (the first)."""
    devices: dict[str, Device] = {}
    rejected: dict[str, RejectedDevice] = {}
    for index, raw in enumerate(raws):
        try:
            subscription = decode(raw, wire.DEVICE, messages.DEVICE, messages.DEVICE_ROOT)
        except ValidationError as exc:
            name = endpoint_of(raw) or f"devices[{index}]"
            if name not in devices and name not in rejected:
                rejected[name] = RejectedDevice(name[:MAX_URL], exc.code, exc.detail)
            continue
        name = subscription.endpoint
        if name in devices or name in rejected:
            continue  # the same endpoint twice would be pushed twice
        try:
            devices[name] = device_from(subscription, policy, key_ids)
        except ValidationError as exc:
            rejected[name] = RejectedDevice(name[:MAX_URL], exc.code, exc.detail)
    return tuple(devices.values()), tuple(rejected.values())


def peek_notification_id(body: bytes) -> str | None:
    """Best effort: the id of a message that failed validation, to record its failure."""
    try:
        found = decode(body, wire.PEEK, {}, messages.NOT_AN_OBJECT)
    except ValidationError:
        return None
    return str(found.notification_id)
