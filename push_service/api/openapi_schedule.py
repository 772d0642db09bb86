"""OpenAPI of `DELETE /notifications/{id}` and `POST /receipts/{token}` (issue 24)."""

from __future__ import annotations

from typing import Any

from push_service.api.openapi_schemas import JSON, NOTIFICATION_ID_PARAMETER, errors

_COUNTS = {
    "type": "object",
    "properties": {
        "notification_id": {"type": "string"},
        "status": {"enum": ["scheduled", "processing", "sent", "failed", "cancelled"]},
        "devices_total": {"type": "integer", "minimum": 0},
        "sent": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0},
        "cancelled": {"type": "integer", "minimum": 0},
    },
    "required": ["notification_id", "status", "devices_total", "sent", "failed", "cancelled"],
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def schedule_paths(peer: list[dict[str, list[str]]]) -> dict[str, Any]:
    cancel = {
        "summary": "Cancel what has not been pushed (scheduled, parked, or not reached yet)",
        "operationId": "cancelNotification",
        "tags": ["internal"],
        "security": peer,
        "parameters": [NOTIFICATION_ID_PARAMETER],
        "responses": {
            "200": _json("Cancelled; the counts after it.", _COUNTS),
            "409": _json("Every device already had an outcome; nothing changed.", _COUNTS),
            **errors(401, 404, 503),
        },
    }
    receipt = {
        "summary": "A service worker's receipt: the push was delivered, clicked or closed",
        "operationId": "postReceipt",
        "tags": ["browser"],
        "parameters": [
            {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {
            "required": True,
            "content": {
                media: {
                    "schema": {
                        "type": "object",
                        "properties": {"event": {"enum": ["delivered", "clicked", "closed"]}},
                        "required": ["event"],
                    }
                }
                for media in (JSON, "text/plain")
            },
        },
        "responses": {
            "200": _json(
                "Recorded.",
                {
                    "type": "object",
                    "properties": {
                        "notification_id": {"type": "string"},
                        "event": {"type": "string"},
                        "recorded": {"const": True},
                    },
                },
            ),
            **errors(404, 413, 422, 503),
        },
    }
    return {
        "/notifications/{notification_id}": {"delete": cancel},
        "/receipts/{token}": {"post": receipt},
    }
