"""The JSON Schemas of the events on EVENTS_EXCHANGE, one per event name, with an example
of each: what orchestrators bind to and what the AsyncAPI document shows them.

Each schema is whole (no `$ref`) and means the same under JSON Schema draft-07 and
2020-12, so it can be given to any validator as it is. Each is closed
(`additionalProperties: false`): an event never carries more than is written here, in
particular never an endpoint URL, which is a bearer capability to push to a browser;
devices are named by id (hash of the endpoint) and push-service origin only.
"""

from __future__ import annotations

from typing import Any

from push_service.api.openapi_subscribe import DEVICE_REGEX, MAX_TOPICS, TOPIC_REGEX

Schema = dict[str, Any]
# utc_now(): ISO-8601 in UTC to the millisecond, with a Z.
OCCURRED_AT_REGEX = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
SUBSCRIPTION_CREATED = "subscription.created"
SUBSCRIPTION_REPLACED = "subscription.replaced"
SUBSCRIPTION_REMOVED = "subscription.removed"
SUBSCRIPTION_GONE = "subscription.gone"
NOTIFICATION_COMPLETED = "notification.completed"
NOTIFICATION_DELIVERED = "notification.delivered"
NOTIFICATION_CLICKED = "notification.clicked"
EVENT_NAMES = (
    SUBSCRIPTION_CREATED,
    SUBSCRIPTION_REPLACED,
    SUBSCRIPTION_REMOVED,
    SUBSCRIPTION_GONE,
    NOTIFICATION_COMPLETED,
    NOTIFICATION_DELIVERED,
    NOTIFICATION_CLICKED,
)
OUTCOMES = ["sent", "failed", "cancelled"]


def _closed(properties: Schema, description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _envelope(event: str) -> Schema:
    return {
        "event": {"const": event, "description": "the event's name, also its routing key"},
        "event_id": {
            "type": "string",
            "minLength": 1,
            "description": "also the AMQP message_id; the same for a repeated event",
        },
        "occurred_at": {"type": "string", "pattern": OCCURRED_AT_REGEX},
    }


def _subscription(event: str) -> Schema:
    return {
        **_envelope(event),
        "device": {"type": "string", "pattern": DEVICE_REGEX, "description": "device id"},
        "origin": {"type": "string", "description": "push service origin of the endpoint"},
        "user_id": {"type": ["string", "null"], "description": "a verified user, or null"},
    }


def _registered(event: str) -> Schema:
    return {
        **_subscription(event),
        "topics": {
            "type": "array",
            "maxItems": MAX_TOPICS,
            "items": {"type": "string", "pattern": TOPIC_REGEX},
        },
        "key_id": {"type": "string", "minLength": 1, "description": "its VAPID key's id"},
    }


def _completed() -> Schema:
    count = {"type": "integer", "minimum": 0}
    device = _closed(
        {
            "device": {"type": "string", "pattern": DEVICE_REGEX},
            "origin": {"type": ["string", "null"]},
            "status": {"enum": OUTCOMES},
            "reason": {"type": ["string", "null"]},
        },
        "One device's outcome, named by id and origin, never by its endpoint URL.",
    )
    schema = _closed(
        {
            **_envelope(NOTIFICATION_COMPLETED),
            "notification_id": {"type": "string", "minLength": 1},
            "user_id": {"type": ["string", "null"]},
            "status": {
                "enum": OUTCOMES,
                "description": "sent if any device accepted it, else failed if any failed,"
                " else cancelled",
            },
            "counts": _closed(
                {"devices_total": count, "sent": count, "failed": count, "cancelled": count},
                "Devices by outcome.",
            ),
            "devices": {"type": "array", "items": device},
        },
        "Every device of a notification has its final outcome.",
    )
    # Optional: a notification of more than 1,000 devices (an audience) lists none.
    schema["properties"]["devices_omitted"] = {
        "type": "integer",
        "minimum": 1,
        "description": "set when `devices` is left empty for size: how many were not listed",
    }
    return schema


def _receipt(event: str) -> Schema:
    return {
        **_envelope(event),
        "notification_id": {"type": "string", "minLength": 1},
        "device": {"type": "string", "pattern": DEVICE_REGEX, "description": "device id"},
    }


def event_schemas() -> dict[str, Schema]:
    """The JSON Schema of each event, keyed by event name (a fresh copy on each call)."""
    created = _registered(SUBSCRIPTION_CREATED)
    replaced = {
        **_registered(SUBSCRIPTION_REPLACED),
        "replaces_device": {"type": "string", "pattern": DEVICE_REGEX},
    }
    removed = {
        **_subscription(SUBSCRIPTION_REMOVED),
        "reason": {"enum": ["unsubscribed", "deleted"]},
    }
    gone = {
        **_subscription(SUBSCRIPTION_GONE),
        "reason": {"enum": ["subscription_gone", "vapid_key_mismatch"]},
        "status_code": {"type": "integer", "minimum": 100, "maximum": 599},
        "notification_id": {"type": "string", "minLength": 1},
    }
    return {
        SUBSCRIPTION_CREATED: _closed(created, "A new subscription was registered."),
        SUBSCRIPTION_REPLACED: _closed(
            replaced, "A subscription replaced another (pushsubscriptionchange)."
        ),
        SUBSCRIPTION_REMOVED: _closed(
            removed, "A subscription was removed by its browser or an operator."
        ),
        SUBSCRIPTION_GONE: _closed(
            gone, "The push service said the subscription no longer exists; it was removed."
        ),
        NOTIFICATION_COMPLETED: _completed(),
        NOTIFICATION_DELIVERED: _closed(
            _receipt(NOTIFICATION_DELIVERED),
            "A device's service worker showed the notification (its receipt, once).",
        ),
        NOTIFICATION_CLICKED: _closed(
            _receipt(NOTIFICATION_CLICKED), "The notification was clicked on a device (once)."
        ),
    }


def schema_name(event: str) -> str:
    """`subscription.created` -> `SubscriptionCreated`, its name among the components."""
    return "".join(part.capitalize() for part in event.split("."))


def event_examples() -> dict[str, dict[str, Any]]:
    """One valid event of each name, for the documents and the tests."""
    device, old = "3f1c9a7be02d45c8a1e6f0b2", "9b2e4d6f8a0c1e3f5a7b9c1d"
    subscription = {"device": device, "origin": "https://fcm.googleapis.com", "user_id": "u-42"}
    registered = {**subscription, "topics": ["news", "orders.shipped"], "key_id": "default"}

    def example(event: str, body: dict[str, Any]) -> dict[str, Any]:
        envelope = {"event_id": f"ev-{event}-1", "occurred_at": "2025-01-31T12:00:00.000Z"}
        return {"event": event, **envelope, **body}

    return {
        SUBSCRIPTION_CREATED: example(SUBSCRIPTION_CREATED, registered),
        SUBSCRIPTION_REPLACED: example(
            SUBSCRIPTION_REPLACED, {**registered, "replaces_device": old}
        ),
        SUBSCRIPTION_REMOVED: example(
            SUBSCRIPTION_REMOVED, {**subscription, "reason": "unsubscribed"}
        ),
        SUBSCRIPTION_GONE: example(
            SUBSCRIPTION_GONE,
            {
                **subscription,
                "reason": "subscription_gone",
                "status_code": 410,
                "notification_id": "n-7",
            },
        ),
        NOTIFICATION_COMPLETED: example(
            NOTIFICATION_COMPLETED,
            {
                "notification_id": "n-7",
                "user_id": "u-42",
                "status": "sent",
                "counts": {"devices_total": 2, "sent": 1, "failed": 1, "cancelled": 0},
                "devices": [
                    {
                        "device": device,
                        "origin": subscription["origin"],
                        "status": "sent",
                        "reason": None,
                    },
                    {
                        "device": old,
                        "origin": "https://updates.push.services.mozilla.com",
                        "status": "failed",
                        "reason": "subscription_gone",
                    },
                ],
            },
        ),
        NOTIFICATION_DELIVERED: example(
            NOTIFICATION_DELIVERED, {"notification_id": "n-7", "device": device}
        ),
        NOTIFICATION_CLICKED: example(
            NOTIFICATION_CLICKED, {"notification_id": "n-7", "device": device}
        ),
    }
