"""`/subscriptions` in the OpenAPI document: peers page through the registry by user or
topic and remove a device. Subscriptions are shown without endpoint or keys."""

from __future__ import annotations

from typing import Any

from push_service.api.openapi_schemas import Schema, answer, errors, object_schema
from push_service.api.openapi_subscribe import DEVICE_REGEX, TOPIC_REGEX
from push_service.registry import MAX_PAGE

PEER: list[dict[str, list[str]]] = [{"peerToken": []}]


def _device() -> Schema:
    return {"type": "string", "pattern": DEVICE_REGEX, "description": "the device id"}


def subscriptions_schemas() -> dict[str, Schema]:
    nullable_text = {"type": ["string", "null"]}
    item = object_schema(
        {
            "device": _device(),
            "origin": {
                "type": ["string", "null"],
                "description": "the push service's origin (scheme://host[:port])",
            },
            "user_id": {**nullable_text, "description": "the verified user, if any"},
            "topics": {"type": "array", "items": {"type": "string", "pattern": TOPIC_REGEX}},
            "vapid_key_id": {"type": "string", "description": "the VAPID key it was made with"},
            "created_at": {**nullable_text, "description": "ISO-8601"},
            "last_seen": {**nullable_text, "description": "ISO-8601: last /subscribe"},
            "expiration_time": {"type": ["number", "null"], "description": "epoch ms"},
        },
        ("device", "origin", "user_id", "topics", "vapid_key_id", "created_at", "last_seen"),
    )
    return {
        "SubscriptionPage": object_schema(
            {
                "subscriptions": {"type": "array", "items": item},
                "next_cursor": {
                    "type": ["string", "null"],
                    "pattern": DEVICE_REGEX,
                    "description": "pass as `cursor` for the next page; null: the last page",
                },
            },
            ("subscriptions", "next_cursor"),
        ),
        "SubscriptionRemoved": object_schema(
            {"status": {"const": "removed"}, "device": _device()}, ("status", "device")
        ),
    }


def _query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _list() -> dict[str, Any]:
    return {
        "summary": "Subscriptions of a user or a topic, a page at a time (no endpoints or keys)",
        "description": "Give exactly one of `user_id` and `topic` (422 otherwise). Pages "
        "run in device-id order; a subscription added or removed meanwhile is seen or not, "
        "none is repeated.",
        "operationId": "listSubscriptions",
        "tags": ["internal"],
        "security": PEER,
        "parameters": [
            _query("user_id", {"type": "string", "minLength": 1, "maxLength": 256}, "a user"),
            _query("topic", {"type": "string", "pattern": TOPIC_REGEX}, "a topic"),
            _query("cursor", {"type": "string", "pattern": DEVICE_REGEX}, "next_cursor"),
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
                "page size",
            ),
        ],
        "responses": {
            "200": answer("A page.", "SubscriptionPage"),
            **errors(401, 422, 503),
        },
    }


def _delete() -> dict[str, Any]:
    return {
        "summary": "Remove a subscription from the registry (event subscription.removed)",
        "operationId": "deleteSubscription",
        "tags": ["internal"],
        "security": PEER,
        "parameters": [
            {"name": "device", "in": "path", "required": True, "schema": _device()},
        ],
        "responses": {
            "200": answer("Removed.", "SubscriptionRemoved"),
            **errors(401, 404, 503),
        },
    }


def subscriptions_paths() -> dict[str, Any]:
    return {"/subscriptions": {"get": _list()}, "/subscriptions/{device}": {"delete": _delete()}}
