"""The OpenAPI components: schemas of bodies and answers, reusable responses, security,
and the small builders the paths use to point at them.

Answer schemas list the fields clients rely on and admit more (new fields are not
a breaking change); request schemas state the limits the service enforces.
"""

from __future__ import annotations

from typing import Any

# ECMA-262 spelling of models.ID_PATTERN (`\Z` is Python's end of text).
ID_REGEX = "^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"
# The `{notification_id}` of a path (status and cancel).
NOTIFICATION_ID_PARAMETER = {
    "name": "notification_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": ID_REGEX},
}
NOTIFICATION_SCHEMA_URL = "/schemas/notification.json"
B64URL = "^[A-Za-z0-9_-]+={0,2}$"
JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def answer(description: str, schema: str, headers: tuple[str, ...] = ()) -> Schema:
    result: Schema = {"description": description, "content": {JSON: {"schema": ref(schema)}}}
    if headers:
        result["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    return result


def errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{code}"} for code in codes}


def json_body(schema: Schema, description: str) -> Schema:
    return {"required": True, "description": description, "content": {JSON: {"schema": schema}}}


def reusable_responses() -> dict[str, Any]:
    def err(description: str, *headers: str) -> Schema:
        return answer(description, "Error", headers)

    return {
        "400": err("Malformed JSON (`invalid_json`)."),
        "401": err(
            "Missing or wrong credentials (`unauthorized`, `invalid_token`).", "WWW-Authenticate"
        ),
        "403": err("The body's user_id is not the token's (`user_id_mismatch`)."),
        "404": err("Unknown, expired or not served (`not_found`)."),
        "408": err("The request body did not arrive within HTTP_READ_TIMEOUT_SECONDS."),
        "413": err("The request body is too large (`request_too_large`)."),
        "415": err("Content-Type is not application/json (`unsupported_media_type`)."),
        "422": err("Valid JSON that is not acceptable; `error` names the problem."),
        "429": err("Too many requests from this client (`rate_limited`).", "Retry-After"),
        "503": err("RabbitMQ or Redis is unavailable; nothing was published.", "Retry-After"),
    }


def headers() -> dict[str, Any]:
    def header(description: str, kind: str = "string") -> Schema:
        return {"description": description, "required": True, "schema": {"type": kind}}

    return {
        "Retry-After": header("Seconds to wait before trying again.", "integer"),
        "WWW-Authenticate": header('`Bearer realm="push_service"` (RFC 6750).'),
        "Location": header("The status record's path."),
    }


def object_schema(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _service_schemas() -> dict[str, Schema]:
    redis = object_schema(
        {
            "connected": {"type": "boolean"},
            "primary": {
                "type": "string",
                "description": "host:port of the primary Sentinel named (REDIS_SENTINELS only)",
            },
        },
        ("connected",),
    )
    rabbitmq = object_schema(
        {
            "connected": {"type": "boolean"},
            "consuming": {"type": "boolean"},
            "node": nullable("string", description="the broker URL in use, credentials masked"),
        },
        ("connected", "consuming"),
    )
    return {
        "Error": object_schema(
            {
                "error": {"type": "string", "description": "machine-readable code"},
                "detail": {"type": "string", "description": "what is wrong"},
            },
            ("error", "detail"),
        ),
        "Health": object_schema(
            {
                "status": {"const": "healthy"},
                "service": {"const": "push_service"},
                "version": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "dependencies": object_schema(
                    {"rabbitmq": rabbitmq, "redis": redis}, ("rabbitmq", "redis")
                ),
                "in_flight_messages": {"type": "integer", "minimum": 0},
            },
            ("status", "service", "timestamp", "dependencies"),
        ),
        "Ready": object_schema(
            {
                "status": {"enum": ["ready", "not_ready"]},
                "rabbitmq": {"type": "boolean"},
                "redis": {"type": "boolean"},
            },
            ("status", "rabbitmq", "redis"),
        ),
        "VapidPublicKey": object_schema(
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


def _publish_schemas() -> dict[str, Schema]:
    return {
        "PublishAccepted": object_schema(
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
    device = object_schema(
        {
            "device": {"type": "string", "description": "stable device id (hash of the endpoint)"},
            "origin": nullable("string", description="push service origin of the endpoint"),
            "status": {"enum": ["sent", "failed", "retrying", "cancelled"]},
            "http_status": nullable("integer"),
            "reason": nullable("string"),
            "detail": nullable("string"),
            "attempts": {"type": "integer", "minimum": 0},
            "deactivation": nullable("string"),
            "at": {"type": "string"},
        },
        ("device", "origin", "status"),
        description="One device's outcome; the endpoint URL itself is never shown.",
    )
    return {
        "DeviceOutcome": device,
        "StatusRecord": object_schema(
            {
                "notification_id": {"type": "string"},
                "user_id": nullable("string"),
                "user_verified": {"type": "boolean"},
                "status": {"enum": ["scheduled", "processing", "sent", "failed", "cancelled"]},
                "devices_total": {"type": "integer", "minimum": 0},
                "sent": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
                "reason": nullable("string"),
                "created_at": nullable("string"),
                "updated_at": nullable("string"),
                "completed_at": nullable("string"),
                "devices": {"type": "array", "items": ref("DeviceOutcome")},
            },
            ("status", "devices"),
        ),
    }


def schemas() -> dict[str, Schema]:
    """The schemas of the service's own answers; /subscribe's are in `openapi_subscribe`."""
    return {**_service_schemas(), **_publish_schemas(), **_status_schemas()}


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
