"""The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`.

Written out rather than derived from the routes: Starlette knows paths and
methods, not bodies, answers or limits. The served copy keeps only the operations
the app routes, so an operation described ahead of its code is not advertised.
Self-contained: the queue message's schema is a component, not a link to
/schemas/notification.json, so a generator given this file alone resolves every
`$ref`. `tests/test_api_openapi.py` checks it with openapi-spec-validator and runs
schemathesis against the live service, so the document and the code cannot drift
apart unnoticed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from push_service import __version__
from push_service.api.openapi_schedule import schedule_paths
from push_service.api.openapi_schemas import (
    JSON,
    NOTIFICATION_ID_PARAMETER,
    answer,
    errors,
    headers,
    json_body,
    ref,
    reusable_responses,
    schemas,
    security_schemes,
)
from push_service.api.openapi_subscribe import subscribe_paths, subscription_schemas
from push_service.api.openapi_subscriptions import subscriptions_paths, subscriptions_schemas
from push_service.api.schemas import notification_components

Operation = dict[str, Any]
PEER: list[dict[str, list[str]]] = [{"peerToken": []}]
# (method, path) pairs, as Starlette routes them: "GET", "/notifications/{notification_id}".
Operations = Collection[tuple[str, str]]


def _service_paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "summary": "Liveness, with the state of RabbitMQ and Redis",
                "operationId": "health",
                "tags": ["service"],
                "responses": {"200": answer("The process is alive.", "Health")},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: consuming from RabbitMQ and Redis answering",
                "operationId": "ready",
                "tags": ["service"],
                "responses": {
                    "200": answer("Ready.", "Ready"),
                    "503": answer("Not ready; see which dependency.", "Ready"),
                },
            }
        },
        "/vapid_public_key": {
            "get": {
                "summary": "The VAPID public key browsers subscribe with (applicationServerKey)",
                "operationId": "vapidPublicKey",
                "tags": ["browser"],
                "responses": {"200": answer("The key.", "VapidPublicKey")},
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
                    **errors(401),
                },
            }
        },
    }


def _notification_paths() -> dict[str, Any]:
    publish = {
        "summary": "Publish a notification (the queue message) with a publisher confirm",
        "operationId": "publishNotification",
        "tags": ["internal"],
        "security": PEER,
        "requestBody": json_body(
            ref("Notification"),
            "The queue message (its JSON Schema is also served at /schemas/notification.json).",
        ),
        "responses": {
            "202": answer(
                "Confirmed by the broker; poll status_url.", "PublishAccepted", ("Location",)
            ),
            **errors(400, 401, 408, 413, 415, 422, 503),
        },
    }
    status = {
        "summary": "The status record of a notification",
        "operationId": "notificationStatus",
        "tags": ["internal"],
        "security": PEER,
        "parameters": [NOTIFICATION_ID_PARAMETER],
        "responses": {
            "200": answer("The record; devices by id and push-service origin.", "StatusRecord"),
            **errors(401, 404, 503),
        },
    }
    return {
        "/notifications": {"post": publish},
        "/notifications/{notification_id}": {"get": status},
    }


def _document_paths() -> dict[str, Any]:
    def get(operation_id: str, summary: str, ok: Operation, *codes: int) -> dict[str, Any]:
        operation = {"summary": summary, "operationId": operation_id, "tags": ["documents"]}
        return {"get": {**operation, "responses": {"200": ok, **errors(*codes)}}}

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
        "/asyncapi.json": get(
            "asyncapi",
            "AsyncAPI 3.0 of the notification queue and the events exchange",
            {"description": "AsyncAPI 3.0.", "content": {JSON: {"schema": {"type": "object"}}}},
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


def _component_schemas() -> dict[str, Any]:
    own = {**schemas(), **subscription_schemas(), **subscriptions_schemas()}
    return {**own, **notification_components(frozenset(own))}


def _routed_only(paths: dict[str, Any], routed: Operations) -> dict[str, Any]:
    """The operations the app routes: one described ahead of its code is left out."""
    served = {(method.lower(), path) for method, path in routed}
    kept = {
        path: {method: op for method, op in item.items() if (method, path) in served}
        for path, item in paths.items()
    }
    return {path: item for path, item in kept.items() if item}


def openapi_document(routed: Operations | None = None) -> dict[str, Any]:
    """The whole document; with `routed`, only the operations among those (method, path)."""
    paths = {
        **_service_paths(),
        **subscribe_paths(),
        **_notification_paths(),
        **subscriptions_paths(),
        **_document_paths(),
    }
    for path, item in schedule_paths(PEER).items():
        paths[path] = {**paths.get(path, {}), **item}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "push_service",
            "version": __version__,
            "description": "Web push notifications: browsers subscribe here; peer services "
            "publish notifications (over HTTP with a token, or to the RabbitMQ queue) and read "
            'their status. Errors are JSON `{"error", "detail"}`. Self-contained: every '
            "`$ref` points into this document.",
        },
        "tags": [
            {"name": "browser", "description": "Public: used by web pages."},
            {"name": "internal", "description": "Peer services, with a token (API_TOKENS)."},
            {"name": "service", "description": "Probes."},
            {"name": "documents", "description": "Descriptions of the API and the messages."},
        ],
        "paths": paths if routed is None else _routed_only(paths, routed),
        "components": {
            "schemas": _component_schemas(),
            "responses": reusable_responses(),
            "headers": headers(),
            "securitySchemes": security_schemes(),
        },
    }
