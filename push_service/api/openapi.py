"""The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`.

Written out rather than derived from the routes: Starlette knows paths and
methods, not bodies, answers or limits. `tests/test_api_openapi.py` checks it
with openapi-spec-validator and runs schemathesis against the live service, so
the document and the code cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from push_service import __version__
from push_service.api.openapi_schemas import ID_REGEX, schemas, security_schemes

Operation = dict[str, Any]
PEER: list[dict[str, list[str]]] = [{"peerToken": []}]
JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str, headers: tuple[str, ...] = ()) -> Operation:
    answer: Operation = {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        answer["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    return answer


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{code}"} for code in codes}


def _reusable_responses() -> dict[str, Any]:
    def err(description: str, *headers: str) -> Operation:
        return _answer(description, "Error", headers)

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


def _headers() -> dict[str, Any]:
    def header(description: str, kind: str = "string") -> Operation:
        return {"description": description, "required": True, "schema": {"type": kind}}

    return {
        "Retry-After": header("Seconds to wait before trying again.", "integer"),
        "WWW-Authenticate": header('`Bearer realm="push_service"` (RFC 6750).'),
        "Location": header("The status record's path."),
    }


def _json_body(schema: Operation, description: str) -> Operation:
    return {"required": True, "description": description, "content": {JSON: {"schema": schema}}}


def _service_paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "summary": "Liveness, with the state of RabbitMQ and Redis",
                "operationId": "health",
                "tags": ["service"],
                "responses": {"200": _answer("The process is alive.", "Health")},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: consuming from RabbitMQ and Redis answering",
                "operationId": "ready",
                "tags": ["service"],
                "responses": {
                    "200": _answer("Ready.", "Ready"),
                    "503": _answer("Not ready; see which dependency.", "Ready"),
                },
            }
        },
        "/vapid_public_key": {
            "get": {
                "summary": "The VAPID public key browsers subscribe with (applicationServerKey)",
                "operationId": "vapidPublicKey",
                "tags": ["browser"],
                "responses": {"200": _answer("The key.", "VapidPublicKey")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (also without a token on METRICS_PORT when set)",
                "operationId": "metrics",
                "tags": ["internal"],
                "security": PEER,
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401),
                },
            }
        },
    }


def _subscribe_path() -> dict[str, Any]:
    return {
        "/subscribe": {
            "post": {
                "summary": "Register a browser's PushSubscription; queues a welcome notification",
                "operationId": "subscribe",
                "tags": ["browser"],
                "security": [{}, {"subscriberJwt": []}],
                "requestBody": _json_body(
                    _ref("PushSubscription"), "A PushSubscription, optionally with user_id."
                ),
                "responses": {
                    "202": _answer(
                        "Valid; the welcome notification is confirmed by the broker.",
                        "SubscribeAccepted",
                    ),
                    **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503),
                },
            }
        }
    }


def _notification_paths() -> dict[str, Any]:
    publish = {
        "summary": "Publish a notification (the queue message) with a publisher confirm",
        "operationId": "publishNotification",
        "tags": ["internal"],
        "security": PEER,
        "requestBody": _json_body(
            _ref("Notification"),
            "The queue message; its JSON Schema is at /schemas/notification.json.",
        ),
        "responses": {
            "202": _answer(
                "Confirmed by the broker; poll status_url.", "PublishAccepted", ("Location",)
            ),
            **_errors(400, 401, 408, 413, 415, 422, 503),
        },
    }
    status = {
        "summary": "The status record of a notification",
        "operationId": "notificationStatus",
        "tags": ["internal"],
        "security": PEER,
        "parameters": [
            {
                "name": "notification_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": ID_REGEX},
            }
        ],
        "responses": {
            "200": _answer("The record; devices by id and push-service origin.", "StatusRecord"),
            **_errors(401, 404, 503),
        },
    }
    return {
        "/notifications": {"post": publish},
        "/notifications/{notification_id}": {"get": status},
    }


def _document_paths() -> dict[str, Any]:
    def get(operation_id: str, summary: str, ok: Operation, *errors: int) -> dict[str, Any]:
        operation = {"summary": summary, "operationId": operation_id, "tags": ["documents"]}
        return {"get": {**operation, "responses": {"200": ok, **_errors(*errors)}}}

    def content(media_type: str, description: str) -> Operation:
        return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}

    asset = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    page = get(
        "testPageFile", "The browser test page and its files", content("text/html", "A file."), 404
    )
    page["get"]["parameters"] = [asset]
    docs_asset = get(
        "docsAsset", "Script and style of /docs", content("text/javascript", "A file."), 404
    )
    docs_asset["get"]["parameters"] = [asset]
    return {
        "/openapi.json": get(
            "openapi",
            "This document",
            {"description": "OpenAPI 3.1.", "content": {JSON: {"schema": {"type": "object"}}}},
        ),
        "/schemas/notification.json": get(
            "notificationSchema",
            "JSON Schema of the queue message",
            {
                "description": "JSON Schema 2020-12.",
                "content": {"application/schema+json": {"schema": {"type": "object"}}},
            },
        ),
        "/docs": get("docs", "Human-readable API documentation", content("text/html", "The page.")),
        "/docs/{name}": docs_asset,
        "/web_push_test/": {
            "get": {
                "summary": "Redirect to the test page",
                "operationId": "testPageIndex",
                "tags": ["browser"],
                "responses": {
                    "308": {
                        "description": "To /web_push_test/web_push_test.html.",
                        "headers": {"Location": {"$ref": "#/components/headers/Location"}},
                    }
                },
            }
        },
        "/web_push_test/{name}": page,
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "push_service",
            "version": __version__,
            "description": "Web push notifications: browsers subscribe here; peer services "
            "publish notifications (over HTTP with a token, or to the RabbitMQ queue) and read "
            'their status. Errors are JSON `{"error", "detail"}`.',
        },
        "tags": [
            {"name": "browser", "description": "Public: used by web pages."},
            {"name": "internal", "description": "Peer services, with a token (API_TOKENS)."},
            {"name": "service", "description": "Probes."},
            {"name": "documents", "description": "Descriptions of the API and the message."},
        ],
        "paths": {
            **_service_paths(),
            **_subscribe_path(),
            **_notification_paths(),
            **_document_paths(),
        },
        "components": {
            "schemas": schemas(),
            "responses": _reusable_responses(),
            "headers": _headers(),
            "securitySchemes": security_schemes(),
        },
    }
