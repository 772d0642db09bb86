"""Parsing and validation of subscriptions and queue messages.

Everything from outside (an HTTP body, a queue message) passes through here and
comes out either as a typed object or as a `ValidationError` naming the problem.

    bodies       a BOM, and large bodies read off the event loop
    wire         the msgspec Structs: the one definition of the JSON that arrives
    rules        limits and patterns        messages     error codes and words
    diagnose     msgspec errors -> ValidationError
    device       Device, RejectedDevice, parse_subscription (keys decoded once)
    message      Notification, parse_notification, peek_notification_id
    constraints  rules across fields        payload      classic / declarative JSON
    schema       notification_json_schema(), generated from `wire` and `constraints`
"""

from __future__ import annotations

from push_service.models.bodies import off_loop, without_bom
from push_service.models.device import (
    Device,
    RejectedDevice,
    SubscribeForm,
    device_key,
    parse_device,
    parse_subscribe,
    parse_subscription,
    parse_unsubscribe,
)
from push_service.models.message import (
    AudienceRef,
    Notification,
    parse_notification,
    peek_notification_id,
)
from push_service.models.payload import DECLARATIVE_PUSH
from push_service.models.rules import (
    ID_PATTERN,
    MAX_ACTIONS,
    MAX_PLAINTEXT_BYTES,
    MAX_TTL_SECONDS,
    PAYLOAD_FORMATS,
    PayloadFormat,
)
from push_service.models.schema import notification_json_schema

__all__ = [
    "DECLARATIVE_PUSH",
    "ID_PATTERN",
    "MAX_ACTIONS",
    "MAX_PLAINTEXT_BYTES",
    "MAX_TTL_SECONDS",
    "PAYLOAD_FORMATS",
    "AudienceRef",
    "Device",
    "Notification",
    "PayloadFormat",
    "RejectedDevice",
    "SubscribeForm",
    "device_key",
    "notification_json_schema",
    "off_loop",
    "parse_device",
    "parse_notification",
    "parse_subscribe",
    "parse_subscription",
    "parse_unsubscribe",
    "peek_notification_id",
    "without_bom",
]
