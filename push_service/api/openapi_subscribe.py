"""`/subscribe` in the OpenAPI document: a browser registers, replaces and removes its
PushSubscription. Its schemas live here with its operations, one concept per module.

A registration answers 202 when it is new (a welcome notification is queued) and 200
when the endpoint was known or replaces another (nothing is queued). Removal proves
ownership with the subscription's own auth secret; an unknown endpoint and a wrong
secret answer the same 404, so the answer says nothing about other people's devices.
"""

from __future__ import annotations

from typing import Any

from push_service.api.openapi_schemas import (
    Schema,
    answer,
    errors,
    json_body,
    nullable,
    object_schema,
    ref,
)
from push_service.endpoints import MAX_ENDPOINT_LENGTH

DEVICE_REGEX = "^[0-9a-f]{24}$"  # models.device_key: sha256 of the endpoint, 24 hex digits
TOPIC_REGEX = "^[A-Za-z0-9_.:-]{1,64}$"
MAX_TOPICS = 100
KEY_LENGTH = 200


def _endpoint(description: str) -> Schema:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ENDPOINT_LENGTH,
        "description": description,
    }


def _secret(description: str) -> Schema:
    return {"type": "string", "maxLength": KEY_LENGTH, "description": description}


def _device(description: str) -> Schema:
    return {"type": "string", "pattern": DEVICE_REGEX, "description": description}


def _subscription() -> Schema:
    keys = object_schema(
        {
            "p256dh": _secret("base64url of the browser's uncompressed P-256 point (65 bytes)"),
            "auth": _secret("base64url of the 16-byte authentication secret"),
        },
        ("p256dh", "auth"),
    )
    old_keys = object_schema(
        {"auth": _secret("the replaced subscription's auth secret")},
        ("auth",),
        description="Proof that the caller owned the replaced subscription.",
    )
    topics = {
        "type": "array",
        "maxItems": MAX_TOPICS,
        "items": {"type": "string", "pattern": TOPIC_REGEX},
        "description": "Topics to reach this device by; sent again, they replace the stored "
        "ones. Absent: kept as they are (none for a new subscription).",
    }
    return object_schema(
        {
            "endpoint": _endpoint("push service URL; must be allowed by PUSH_ENDPOINT_ALLOWLIST"),
            "expirationTime": nullable("number"),
            "keys": keys,
            "user_id": {
                "type": ["string", "integer", "null"],
                "description": "1-256 characters. Verified against the bearer JWT when "
                "SUBSCRIBE_JWT_* is configured; otherwise recorded as unverified",
            },
            "old_endpoint": {
                **_endpoint("the subscription this one replaces (pushsubscriptionchange)"),
                "type": ["string", "null"],
            },
            "old_keys": {**old_keys, "type": ["object", "null"]},
            "topics": topics,
        },
        ("endpoint", "keys"),
    )


def subscription_schemas() -> dict[str, Schema]:
    status = {"status": {"const": "ok"}, "message": {"type": "string"}}
    outcome = ("status", "message", "notification_id", "device", "created", "replaced")
    return {
        "PushSubscription": _subscription(),
        "SubscribeAccepted": object_schema(
            {
                **status,
                "notification_id": {"type": "string"},
                "device": _device("the new subscription's device id"),
                "created": {"const": True},
                "replaced": {"type": "null"},
            },
            outcome,
        ),
        "SubscribeRegistered": object_schema(
            {
                **status,
                "notification_id": {"type": "null"},
                "device": _device("the subscription's device id"),
                "created": {"const": False},
                "replaced": {
                    "type": ["string", "null"],
                    "pattern": DEVICE_REGEX,
                    "description": "the replaced subscription's device id",
                },
            },
            outcome,
        ),
        "Unsubscribe": object_schema(
            {
                "endpoint": _endpoint("the subscription to remove"),
                "keys": object_schema(
                    {"auth": {**_secret("its auth secret: the proof"), "minLength": 1}},
                    ("auth",),
                ),
            },
            ("endpoint", "keys"),
        ),
        "Unsubscribed": object_schema(
            {**status, "device": _device("the removed subscription's device id")},
            ("status", "message", "device"),
        ),
    }


def _register() -> dict[str, Any]:
    return {
        "summary": "Register, re-sync or replace a browser's PushSubscription",
        "description": "A new endpoint is registered and a welcome notification queued "
        "(202). A known endpoint, or one that replaces `old_endpoint`, is updated and "
        "nothing is queued (200).",
        "operationId": "subscribe",
        "tags": ["browser"],
        "security": [{}, {"subscriberJwt": []}],
        "requestBody": json_body(
            ref("PushSubscription"),
            "A PushSubscription, optionally with user_id, topics and the one it replaces.",
        ),
        "responses": {
            "200": answer(
                "Already registered, or a replacement: updated, nothing queued.",
                "SubscribeRegistered",
            ),
            "202": answer(
                "New; the welcome notification is confirmed by the broker.",
                "SubscribeAccepted",
            ),
            **errors(400, 401, 403, 408, 413, 415, 422, 429, 503),
        },
    }


def _unregister() -> dict[str, Any]:
    return {
        "summary": "Remove a subscription; its own auth secret is the proof",
        "operationId": "unsubscribe",
        "tags": ["browser"],
        "requestBody": json_body(ref("Unsubscribe"), "The endpoint and its auth secret."),
        "responses": {
            "200": answer("Removed.", "Unsubscribed"),
            "404": answer(
                "No such subscription, or a wrong auth secret (`not_found`; the two are "
                "indistinguishable on purpose).",
                "Error",
            ),
            **errors(400, 408, 413, 415, 422, 503),
        },
    }


def subscribe_paths() -> dict[str, Any]:
    return {"/subscribe": {"post": _register(), "delete": _unregister()}}
