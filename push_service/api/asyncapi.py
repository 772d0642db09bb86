"""The AsyncAPI 3.0 document of the service's messaging, served at `/asyncapi.json`.

Written from push_service's side: it receives notification requests from its queue
(a peer publishing one does the opposite), dead-letters what it cannot deliver, and
sends events to a topic exchange, one message per event, routed by its name. The
addresses are the deployment's (RABBITMQ_QUEUE_NAME, EVENTS_EXCHANGE); without an
events exchange there is no events channel. Self-contained like the OpenAPI
document: every `$ref` points into it. docs/asyncapi.yaml is this document for the
default settings (`scripts/write_asyncapi.py` writes it; a test keeps them equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from push_service import __version__
from push_service.api.asyncapi_messages import AMQP_BINDING, message_key, messages
from push_service.api.event_schemas import EVENT_NAMES, event_schemas, schema_name
from push_service.api.schemas import notification_components
from push_service.config import Settings

Document = dict[str, Any]
PERSISTENT = 2
DESCRIPTION = """\
Peer services publish notification requests to a durable RabbitMQ queue; push_service
pushes each to every device listed and records the outcome in Redis (read it with
GET /notifications/{id} and an API token). Publish persistently (delivery_mode 2), with
publisher confirms, to the default exchange with the queue name as routing key; a plain
durable declaration of the queue is enough.

push_service also sends events to a durable topic exchange, routed by the event's name:
bind a queue of your own with the patterns you want (`subscription.*`, `#`). Events name
devices by id and push-service origin, never by endpoint URL. This document is written
from push_service's side (it receives from the queue, sends dead letters and events)."""


@dataclass(frozen=True)
class Addresses:
    """Where the messages go in this deployment."""

    queue: str
    dead_letters: str
    events_exchange: str  # "" when events are off

    @classmethod
    def of(cls, settings: Settings) -> Addresses:
        return cls(
            settings.rabbitmq_queue_name, settings.dead_letter_queue, settings.events_exchange
        )


def _queue_channel(address: str, title: str, message: str) -> Document:
    queue = {"name": address, "durable": True, "exclusive": False, "autoDelete": False}
    return {
        "address": address,
        "title": title,
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "bindings": {"amqp": {"is": "queue", "queue": queue, "bindingVersion": AMQP_BINDING}},
    }


def _events_channel(exchange: str) -> Document:
    keys = [message_key(event) for event in EVENT_NAMES]
    binding = {"name": exchange, "type": "topic", "durable": True, "autoDelete": False}
    return {
        # An AMQP channel bound to an exchange is addressed by its routing key.
        "address": "{event}",
        "title": f"Events: exchange {exchange} (EVENTS_EXCHANGE), routing key = event name",
        "parameters": {
            "event": {
                "description": "The event's name, its routing key.",
                "enum": list(EVENT_NAMES),
                "location": "$message.payload#/event",
            }
        },
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in keys},
        "bindings": {
            "amqp": {"is": "routingKey", "exchange": binding, "bindingVersion": AMQP_BINDING}
        },
    }


def _channels(addresses: Addresses) -> Document:
    channels = {
        "notifications": _queue_channel(
            addresses.queue, "The notification queue (RABBITMQ_QUEUE_NAME)", "notification"
        ),
        "deadLetters": _queue_channel(
            addresses.dead_letters, "Dead letters (<RABBITMQ_QUEUE_NAME>.dlq)", "deadLetter"
        ),
    }
    if addresses.events_exchange:
        channels["events"] = _events_channel(addresses.events_exchange)
    return channels


def _operation(action: str, channel: str, title: str, keys: list[str]) -> Document:
    return {
        "action": action,
        "title": title,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"} for key in keys],
    }


def _operations(events: bool) -> Document:
    receive = _operation(
        "receive",
        "notifications",
        "push_service consumes, pushes and acknowledges",
        ["notification"],
    )
    receive["bindings"] = {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}}
    dead = _operation(
        "send", "deadLetters", "push_service dead-letters what it cannot deliver", ["deadLetter"]
    )
    operations = {"receiveNotification": receive, "deadLetter": dead}
    if events:
        keys = [message_key(event) for event in EVENT_NAMES]
        send = _operation("send", "events", "push_service emits an event", keys)
        send["bindings"] = {
            "amqp": {"deliveryMode": PERSISTENT, "mandatory": False, "bindingVersion": AMQP_BINDING}
        }
        operations["sendEvent"] = send
    return operations


def _schemas(events: bool) -> Document:
    own = {schema_name(event): schema for event, schema in event_schemas().items() if events}
    return {**notification_components(frozenset(own)), **own}


def asyncapi_document(addresses: Addresses) -> Document:
    events = bool(addresses.events_exchange)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "push_service messaging",
            "version": __version__,
            "description": DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "{node}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "A node of the deployment's RABBITMQ_URL.",
                "variables": {"node": {"default": "localhost:5672", "description": "host:port"}},
            }
        },
        "channels": _channels(addresses),
        "operations": _operations(events),
        "components": {
            "schemas": _schemas(events),
            "messages": messages(events),
        },
    }
