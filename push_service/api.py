"""The HTTP API: health, readiness, VAPID key, subscribe, status, metrics, test page."""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from push_service import SERVICE_NAME, __version__
from push_service.endpoints import EndpointPolicy
from push_service.errors import BrokerUnavailable, EndpointNotAllowed, ValidationError
from push_service.limits import ClientAddress, RateLimiter
from push_service.metrics import Metrics
from push_service.models import ID_PATTERN, Device, parse_subscription
from push_service.status import RedisUnavailable, StatusStore
from push_service.vapid import b64url_encode

log = logging.getLogger(__name__)

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
# /subscribe's DNS check is advisory (the connect-time resolver is the guard): never
# let a slow resolver hold the request.
RESOLVE_TIMEOUT_SECONDS = 2.0
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return ORJSONResponse({"error": code, "detail": detail}, status, headers=headers)


@dataclass
class ApiServices:
    """What the API needs from the running service; wired by the app module."""

    store: StatusStore
    publish: Callable[[bytes, str], Awaitable[None]]
    policy: EndpointPolicy
    metrics: Metrics
    vapid_public_key: str
    readiness: Callable[[], Awaitable[dict[str, Any]]]
    rate_limiter: RateLimiter
    client_address: ClientAddress
    welcome: dict[str, str]


def utc_timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _redis_health(state: dict[str, Any]) -> dict[str, Any]:
    health: dict[str, Any] = {"connected": state["redis"]}
    if state.get("redis_primary"):
        health["primary"] = state["redis_primary"]  # through Sentinel: the one in use
    return health


def web_directory() -> Path:
    return Path(str(resources.files("push_service.web")))


class Api:
    def __init__(self, services: ApiServices) -> None:
        self.s = services
        directory = web_directory()
        self.web_files = {p.name: p for p in directory.iterdir() if p.suffix in MEDIA_TYPES}

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health),
            Route("/ready", self.ready),
            Route("/vapid_public_key", self.vapid_public_key),
            Route("/subscribe", self.subscribe, methods=["POST"]),
            Route("/notifications/{notification_id:path}", self.notification),
            Route("/metrics", self.metrics),
            Route("/web_push_test/", self.page_index),
            Route("/web_push_test/{name}", self.page_file),
        ]

    async def health(self, request: Request) -> Response:
        state = await self.s.readiness()
        return ORJSONResponse(
            {
                "status": "healthy",
                "service": SERVICE_NAME,
                "version": __version__,
                "timestamp": utc_timestamp(),
                "dependencies": {
                    "rabbitmq": {
                        "connected": state["rabbitmq"],
                        "consuming": state["consuming"],
                        "node": state.get("rabbitmq_node"),
                    },
                    "redis": _redis_health(state),
                },
                "in_flight_messages": state["in_flight"],
            }
        )

    async def ready(self, request: Request) -> Response:
        state = await self.s.readiness()
        ready = state["consuming"] and state["redis"]
        body = {
            "status": "ready" if ready else "not_ready",
            "rabbitmq": state["consuming"],
            "redis": state["redis"],
        }
        return ORJSONResponse(body, 200 if ready else 503)

    async def vapid_public_key(self, request: Request) -> Response:
        return ORJSONResponse({"public_key": self.s.vapid_public_key})

    async def subscribe(self, request: Request) -> Response:
        refusal = self._refuse(request)
        if refusal is not None:
            return refusal
        try:
            device, user_id = await self._validated(await request.body())
        except ValidationError as exc:
            return error(400 if exc.code == "invalid_json" else 422, exc.code, exc.detail)
        except EndpointNotAllowed as exc:
            return error(422, "endpoint_not_allowed", exc.detail)
        notification_id = str(uuid.uuid4())
        try:
            await self.s.publish(
                self._welcome(request, notification_id, user_id, device), notification_id
            )
        except BrokerUnavailable as exc:
            log.warning("subscribe: could not queue the welcome notification: %s", exc)
            return error(
                503,
                "broker_unavailable",
                "the notification queue is unavailable; try again shortly",
                {"Retry-After": "5"},
            )
        return ORJSONResponse(
            {
                "status": "ok",
                "message": "Subscription received and queued.",
                "notification_id": notification_id,
            },
            202,
        )

    def _refuse(self, request: Request) -> Response | None:
        """The rate limit and the content type, checked before the body is read."""
        allowed, retry_after = self.s.rate_limiter.hit(self.s.client_address(request))
        if not allowed:
            return error(
                429,
                "rate_limited",
                "too many subscriptions from this address",
                {"Retry-After": str(retry_after)},
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return error(415, "unsupported_media_type", "Content-Type must be application/json")
        return None

    async def _validated(self, body: bytes) -> tuple[Device, str | None]:
        """Parse the subscription (body size is bounded by BodyLimitMiddleware) and vet DNS."""
        device, user_id = parse_subscription(body, self.s.policy)
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                await self.s.policy.check_resolved(device.host)
        except TimeoutError:
            log.info("subscribe: DNS check of %s timed out; left to send time", device.host)
        return device, user_id

    def _welcome(
        self, request: Request, notification_id: str, user_id: str | None, device: Device
    ) -> bytes:
        action_url = self.s.welcome["action_url"]
        if action_url.startswith("/"):
            action_url = str(request.base_url).rstrip("/") + action_url
        point = device.p256dh.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        # Built from the validated device: nothing else from the body reaches the queue.
        keys = {"p256dh": b64url_encode(point), "auth": b64url_encode(device.auth)}
        return orjson.dumps(
            {
                "notification_id": notification_id,
                "user_id": user_id,
                "devices": [{"endpoint": device.endpoint, "keys": keys}],
                "title": self.s.welcome["title"],
                "body": self.s.welcome["body"],
                "action_url": action_url,
                "tag": "welcome",
            }
        )

    async def notification(self, request: Request) -> Response:
        notification_id = request.path_params["notification_id"]
        if not ID_PATTERN.match(notification_id):
            return error(404, "not_found", "no such notification")
        try:
            record = await self.s.store.get(notification_id)
        except RedisUnavailable:
            return error(503, "redis_unavailable", "the status store is unavailable")
        if record is None:
            return error(404, "not_found", "no such notification (unknown or expired)")
        return ORJSONResponse(record)

    async def metrics(self, request: Request) -> Response:
        return Response(
            self.s.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def page_index(self, request: Request) -> Response:
        return RedirectResponse("/web_push_test/web_push_test.html", 308)

    async def page_file(self, request: Request) -> Response:
        path = self.web_files.get(request.path_params["name"])
        if path is None:
            raise HTTPException(404)
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=PAGE_HEADERS)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal_error", "internal error")
