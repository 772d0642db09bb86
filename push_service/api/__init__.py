"""The HTTP API: one module per concern, put together here for the app module.

- `health`: liveness, readiness, VAPID key; `subscribe`: browsers' subscriptions;
- `notifications`: status and publishing for peer services (token: `auth`);
- `metrics`: Prometheus text, on the API port and on `METRICS_PORT`;
- `docs`, `openapi` (`openapi_schemas`, `openapi_subscribe`), `schemas`: the API and the
  queue message described; `asyncapi` (`asyncapi_messages`, `event_schemas`): the queue
  and the events exchange described;
- `pages`: the browser test page; `headers`, `responses`: what every answer carries.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from push_service.api.docs import DocumentRoutes
from push_service.api.health import HealthRoutes
from push_service.api.metrics import MetricsRoute
from push_service.api.notifications import NotificationRoutes
from push_service.api.pages import TestPageRoutes
from push_service.api.receipts import ReceiptRoutes
from push_service.api.responses import error
from push_service.api.services import ApiServices
from push_service.api.subscribe import SubscribeRoute
from push_service.api.subscriptions import SubscriptionRoutes

__all__ = ["ApiServices", "http_error", "routes", "server_error"]
log = logging.getLogger(__name__)


def routes(services: ApiServices) -> list[Route]:
    metrics = services.peers.internal(MetricsRoute(services.metrics).metrics_text)
    served = [
        *HealthRoutes(services).routes(),
        *SubscribeRoute(services).routes(),
        *NotificationRoutes(services).routes(),
        *receipt_routes(services),
        *SubscriptionRoutes(services).routes(),
        Route("/metrics", metrics, methods=["GET"]),
        *TestPageRoutes().routes(),
    ]
    return [*served, *DocumentRoutes(services.addresses, served).routes()]


def receipt_routes(services: ApiServices) -> list[Route]:
    s = services
    if s.receipts is None or s.control is None or s.emit is None:
        return []  # RECEIPTS_ENABLED=false: no receipt URL is handed out, none is taken
    return ReceiptRoutes(s.receipts, s.control, s.emit).routes()


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal_error", "internal error")
