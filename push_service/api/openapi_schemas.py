"""The OpenAPI components: schemas of bodies and answers, reusable responses, security.

Answer schemas list the fields clients rely on and admit more (new fields are not
a breaking change); request schemas state the limits the service enforces.
"""

from __future__ import annotations

from typing import Any

from push_service.endpoints import MAX_ENDPOINT_LENGTH

# ECMA-262 spelling of models.ID_PATTERN (`\Z` is Python's end of text).
ID_REGEX = "^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"
NOTIFICATION_SCHEMA_URL = "/schemas/notification.json"
B64URL = "^[A-Za-z0-9_-]+={0,2}$"
Schema = dict[str, Any]


def _object(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _service_schemas() -> dict[str, Schema]:
    redis = _object(
        {
            "connected": {"type": "boolean"},
            "primary": {
                "type": "string",
                "description": "host:port of the primary Sentinel named (REDIS_SENTINELS only)",
            },
        },
        ("connected",),
    )
    rabbitmq = _object(
        {
            "connected": {"type": "boolean"},
            "consuming": {"type": "boolean"},
            "node": _nullable("string", description="the broker URL in use, credentials masked"),
        },
        ("connected", "consuming"),
    )
    return {
        "Error": _object(
            {
                "error": {"type": "string", "description": "machine-readable code"},
                "detail": {"type": "string", "description": "what is wrong"},
            },
            ("error", "detail"),
        ),
        "Health": _object(
            {
                "status": {"const": "healthy"},
                "service": {"const": "push_service"},
                "version": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "dependencies": _object(
                    {"rabbitmq": rabbitmq, "redis": redis}, ("rabbitmq", "redis")
                ),
                "in_flight_messages": {"type": "integer", "minimum": 0},
            },
            ("status", "service", "timestamp", "dependencies"),
        ),
        "Ready": _object(
            {
                "status": {"enum": ["ready", "not_ready"]},
                "rabbitmq": {"type": "boolean"},
                "redis": {"type": "boolean"},
            },
            ("status", "rabbitmq", "redis"),
        ),
        "VapidPublicKey": _object(
            {
                "public_key": {"type": "string", "pattern": B64URL, "minLength": 87},
                "key_id": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_.-]{1,32}$",
                    "description": "The id of this key (VAPID_CURRENT_KEY_ID; `default`"
                    " for VAPID_PRIVATE_KEY).",
                },
            },
            ("public_key", "key_id"),
        ),
    }


def _subscription_schemas() -> dict[str, Schema]:
    keys = _object(
        {
            "p256dh": {
                "type": "string",
                "maxLength": 200,
                "description": "base64url of the browser's uncompressed P-256 point (65 bytes)",
            },
            "auth": {
                "type": "string",
                "maxLength": 200,
                "description": "base64url of the 16-byte authentication secret",
            },
        },
        ("p256dh", "auth"),
    )
    return {
        "PushSubscription": _object(
            {
                "endpoint": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ENDPOINT_LENGTH,
                    "description": "push service URL; must be allowed by PUSH_ENDPOINT_ALLOWLIST",
                },
                "expirationTime": _nullable("number"),
                "keys": keys,
                "user_id": {
                    "type": ["string", "integer", "null"],
                    "description": "1-256 characters. Verified against the bearer JWT when "
                    "SUBSCRIBE_JWT_* is configured; otherwise recorded as unverified",
                },
            },
            ("endpoint", "keys"),
        ),
        "SubscribeAccepted": _object(
            {
                "status": {"const": "ok"},
                "message": {"type": "string"},
                "notification_id": {"type": "string"},
            },
            ("status", "message", "notification_id"),
        ),
        "PublishAccepted": _object(
            {
                "notification_id": {"type": "string"},
                "status_url": {
                    "type": "string",
                    "description": "path of the status record (GET, with the same token)",
                },
            },
            ("notification_id", "status_url"),
        ),
    }


def _status_schemas() -> dict[str, Schema]:
    device = _object(
        {
            "device": {"type": "string", "description": "stable device id (hash of the endpoint)"},
            "origin": _nullable("string", description="push service origin of the endpoint"),
            "status": {"enum": ["sent", "failed", "retrying"]},
            "http_status": _nullable("integer"),
            "reason": _nullable("string"),
            "detail": _nullable("string"),
            "attempts": {"type": "integer", "minimum": 0},
            "deactivation": _nullable("string"),
            "at": {"type": "string"},
        },
        ("device", "origin", "status"),
        description="One device's outcome; the endpoint URL itself is never shown.",
    )
    return {
        "DeviceOutcome": device,
        "StatusRecord": _object(
            {
                "notification_id": {"type": "string"},
                "user_id": _nullable("string"),
                "user_verified": {"type": "boolean"},
                "status": {"enum": ["processing", "sent", "failed"]},
                "devices_total": {"type": "integer", "minimum": 0},
                "sent": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
                "reason": _nullable("string"),
                "created_at": _nullable("string"),
                "updated_at": _nullable("string"),
                "completed_at": _nullable("string"),
                "devices": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/DeviceOutcome"},
                },
            },
            ("status", "devices"),
        ),
        "Notification": {
            "$ref": NOTIFICATION_SCHEMA_URL,
            "description": "The queue message, validated by the same code as the consumer.",
        },
    }


def schemas() -> dict[str, Schema]:
    return {**_service_schemas(), **_subscription_schemas(), **_status_schemas()}


def security_schemes() -> dict[str, Schema]:
    return {
        "peerToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "One of API_TOKENS. Without API_TOKENS the internal endpoints "
            "are open in development and closed in production.",
        },
        "subscriberJwt": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The subscriber's JWT, verified when SUBSCRIBE_JWT_* is configured; "
            "its user claim becomes the subscription's user_id.",
        },
    }
