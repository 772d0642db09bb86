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
from starlette.types import ASGIApp, Receive, Scope, Send

from push_service.api.responses import NO_STORE, error
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
        self.route = MetricsRoute(metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "http" or server is None or server[1] != self.port:
            await self.app(scope, receive, send)
            return
        if scope["path"] != "/metrics":
            response = error(404, "not_found", "this listener serves only /metrics")
        elif scope["method"] not in ("GET", "HEAD"):
            response = error(405, "method_not_allowed", "only GET", {"Allow": "GET, HEAD"})
        else:
            response = await self.route.metrics_text(Request(scope, receive))
        await response(scope, receive, send)
