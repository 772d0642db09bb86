"""The messages of the AsyncAPI document: the queue message, a dead letter, the events.

Payloads point at `components/schemas` (`#/components/schemas/...`): the queue
message's schema generated from the model, the events' from `event_schemas`.
"""

from __future__ import annotations

from typing import Any

from push_service.api.event_schemas import event_examples, event_schemas, schema_name
from push_service.api.schemas import MESSAGE_COMPONENT
from push_service.broker import USER_VERIFIED_HEADER

Message = dict[str, Any]
JSON = "application/json"
AMQP_BINDING = "0.3.0"
NOTIFICATION_EXAMPLE: dict[str, Any] = {
    "notification_id": "order-7-shipped",
    "user_id": "user-42",
    "devices": [
        {
            "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
            "keys": {
                "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1Xb"
                "jhazAkj7I99e8QcYP7DkM",
                "auth": "tBHItJI5svbpez7KI4CCXg",
            },
        }
    ],
    "title": "Your order shipped",
    "body": "It arrives on Tuesday.",
    "action_url": "https://example.com/orders/7",
}


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def message_key(event: str) -> str:
    """`subscription.created` -> `subscriptionCreated`, its name among the messages."""
    name = schema_name(event)
    return name[0].lower() + name[1:]


def _notification() -> Message:
    headers = {
        USER_VERIFIED_HEADER: {
            "type": "boolean",
            "description": "false: the user_id was not verified (push_service's own "
            "/subscribe sets it for an anonymous caller); such a user_id is never reported "
            "to the User Service. Absent or true for peers' messages.",
        },
        "x-replay-count": {
            "type": "integer",
            "description": "Set by scripts/replay_dead_letters.py on a dead letter it moved "
            "back to the queue: how often it was replayed. The dead-letter headers are "
            "removed then.",
        },
    }
    return {
        "name": "notification",
        "title": "Notification request",
        "summary": "Push this notification to these devices.",
        "contentType": JSON,
        "headers": {"type": "object", "properties": headers},
        "payload": schema_ref(MESSAGE_COMPONENT),
        "correlationId": {"location": "$message.payload#/notification_id"},
        "examples": [{"name": "minimal", "payload": NOTIFICATION_EXAMPLE}],
    }


def _dead_letter() -> Message:
    headers = {
        "x-death-reason": {
            "type": "string",
            "description": "<code>: <detail>, e.g. invalid_devices: devices must be a "
            "non-empty list",
        },
        "x-original-queue": {"type": "string"},
        "x-notification-id": {
            "type": "string",
            "description": "present when the body had a readable notification_id",
        },
    }
    return {
        "name": "deadLetter",
        "title": "Dead-lettered message",
        "description": "The original body, properties and headers, plus these headers.",
        "headers": {"type": "object", "properties": headers},
        "payload": {"description": "The original message body, unchanged."},
    }


def _event(event: str, schema: dict[str, Any], example: dict[str, Any]) -> Message:
    return {
        "name": event,
        "title": event,
        "summary": schema["description"],
        "contentType": JSON,
        "payload": schema_ref(schema_name(event)),
        "bindings": {"amqp": {"messageType": event, "bindingVersion": AMQP_BINDING}},
        "examples": [{"name": event, "payload": example}],
    }


def event_messages() -> dict[str, Message]:
    """One message per event, keyed as in `components/messages` (`subscriptionCreated`)."""
    examples = event_examples()
    return {
        message_key(event): _event(event, schema, examples[event])
        for event, schema in event_schemas().items()
    }


def messages(events: bool) -> dict[str, Message]:
    queue = {"notification": _notification(), "deadLetter": _dead_letter()}
    return {**queue, **event_messages()} if events else queue
