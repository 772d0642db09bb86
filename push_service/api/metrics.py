"""`GET /metrics`: on the API port for peers with a token, and alone on `METRICS_PORT`.

With `METRICS_PORT` set, hypercorn binds a second socket and this module's
middleware sends every request that arrived on it (the ASGI scope's `server`
port is the socket's own, not the Host header) to a one-route app: `/metrics`
without a token, for in-cluster Prometheus scraping; anything else is 404.
One server, one lifespan, one event loop: no second process or server to own.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from push_service.api.responses import NO_STORE
from push_service.metrics import Metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsRoute:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def metrics_text(self, request: Request) -> Response:
        return Response(
            self.metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": NO_STORE}
        )


class MetricsPortMiddleware:
    """Routes requests that came in on `port` to the metrics-only app."""

    def __init__(self, app: ASGIApp, port: int, metrics: Metrics) -> None:
        self.app = app
        self.port = port
        route = MetricsRoute(metrics).metrics_text
        self.metrics_app = Router(routes=[Route("/metrics", route, methods=["GET"])])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self.port:
            await self.metrics_app(scope, receive, send)
            return
        await self.app(scope, receive, send)
