"""The API described: `/openapi.json`, `/asyncapi.json`, `/docs` (Swagger UI) and the
queue message's schema.

Swagger UI's files come from the `swagger-ui-py` package (no CDN). The page loads
them and a small initialiser from this service only; its CSP admits nothing else.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from push_service.api.asyncapi import Addresses, asyncapi_document
from push_service.api.openapi import openapi_document
from push_service.api.responses import REVALIDATE, error, json_response
from push_service.api.schemas import notification_schema

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>push_service API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""
# Relative URLs throughout: the page keeps working behind a proxy's path prefix.
INIT = b"""'use strict';
window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: 'openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout'
  });
});
"""
ASSETS = {"swagger-ui.css": "text/css; charset=utf-8", "swagger-ui-bundle.js": "text/javascript"}
ASSET_CACHE = "public, max-age=3600"


def swagger_ui_directory() -> Path:
    """The package's static files, found without importing it (its handlers need Jinja2)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def page_headers(media_type: str, cache: str = REVALIDATE) -> dict[str, str]:
    return {
        "Content-Type": media_type,
        "Content-Security-Policy": DOCS_CSP,
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": cache,
    }


class DocumentRoutes:
    """`served`: the app's other routes; the OpenAPI document describes only what is routed."""

    def __init__(self, addresses: Addresses, served: Sequence[Route]) -> None:
        routed = {
            (method, route.path_format)
            for route in [*served, *self.routes()]
            for method in route.methods or ()
        }
        self.openapi = orjson.dumps(openapi_document(routed))
        self.asyncapi = orjson.dumps(asyncapi_document(addresses))
        self.assets = swagger_ui_directory()

    def routes(self) -> list[Route]:
        return [
            Route("/openapi.json", self.openapi_json, methods=["GET"]),
            Route("/asyncapi.json", self.asyncapi_json, methods=["GET"]),
            Route("/schemas/notification.json", self.notification_schema, methods=["GET"]),
            Route("/docs", self.docs, methods=["GET"]),
            Route("/docs/{name}", self.docs_asset, methods=["GET"]),
        ]

    async def openapi_json(self, request: Request) -> Response:
        return Response(
            self.openapi, headers={"Content-Type": "application/json", "Cache-Control": REVALIDATE}
        )

    async def asyncapi_json(self, request: Request) -> Response:
        return Response(
            self.asyncapi, headers={"Content-Type": "application/json", "Cache-Control": REVALIDATE}
        )

    async def notification_schema(self, request: Request) -> Response:
        schema = notification_schema()
        if schema is None:
            return error(503, "schema_unavailable", "this build has no message schema")
        return json_response(
            schema, cache=REVALIDATE, headers={"Content-Type": "application/schema+json"}
        )

    async def docs(self, request: Request) -> Response:
        return Response(PAGE, headers=page_headers("text/html; charset=utf-8"))

    async def docs_asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "init.js":
            return Response(INIT, headers=page_headers("text/javascript", ASSET_CACHE))
        if name not in ASSETS:
            raise HTTPException(404)
        return FileResponse(self.assets / name, headers=page_headers(ASSETS[name], ASSET_CACHE))
