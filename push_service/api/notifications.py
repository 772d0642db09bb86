"""The internal notification endpoints: read a status record, publish a queue message.

Both need a peer token (`auth.PeerAuth`). The status answer is the record the
status store keeps, less what only the service needs: each device's endpoint URL
(a capability: with the keys it is all a sender needs) becomes its push-service
origin. Fields this module does not know pass through unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from push_service.api.cancel import cancel
from push_service.api.responses import error, json_response
from push_service.api.services import ApiServices
from push_service.api.subscribe import broker_unavailable, json_content_type, unsupported_media_type
from push_service.endpoints import format_origin
from push_service.errors import BrokerUnavailable, ValidationError
from push_service.models import ID_PATTERN, Notification, off_loop
from push_service.models.send_at import check_send_at
from push_service.status import RedisUnavailable

log = logging.getLogger(__name__)


def endpoint_origin(url: str) -> str | None:
    """scheme://host[:port] of an endpoint URL (no path, no user information).

    None when the text is no http(s) URL with a host: a refused device's "endpoint"
    is whatever a peer sent.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return None
    return format_origin(parts.scheme, host, port)


def public_device(device: dict[str, Any]) -> dict[str, Any]:
    """One device of a status record as peers see it: `origin` instead of `endpoint`."""
    shown = {name: value for name, value in device.items() if name != "endpoint"}
    endpoint = device.get("endpoint")
    shown["origin"] = endpoint_origin(endpoint) if isinstance(endpoint, str) else None
    return shown


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    devices = record.get("devices")
    if not isinstance(devices, list):
        return record
    return {**record, "devices": [public_device(d) for d in devices]}


def status_path(notification_id: str) -> str:
    return "/notifications/" + quote(notification_id, safe="/:@+=")


class NotificationRoutes:
    def __init__(self, services: ApiServices) -> None:
        self.s = services

    def routes(self) -> list[Route]:
        internal = self.s.peers.internal
        return [
            Route("/notifications", internal(self.publish), methods=["POST"]),
            Route(
                "/notifications/{notification_id:path}",
                internal(self.record),
                methods=["GET", "DELETE"],
            ),
        ]

    async def record(self, request: Request) -> Response:
        if request.method == "DELETE" and self.s.control is not None:
            return await cancel(self.s.control, request)
        return await self.status(request)

    async def status(self, request: Request) -> Response:
        notification_id = request.path_params["notification_id"]
        if not ID_PATTERN.match(notification_id):
            return error(404, "not_found", "no such notification")
        try:
            record = await self.s.store.get(notification_id)
        except RedisUnavailable:
            return error(503, "redis_unavailable", "the status store is unavailable")
        if record is None:
            return error(404, "not_found", "no such notification (unknown or expired)")
        return json_response(public_record(record))

    async def publish(self, request: Request) -> Response:
        if not json_content_type(request):
            return unsupported_media_type()
        body = await request.body()
        try:
            notification = await self._parse(body)
        except ValidationError as exc:
            return error(400 if exc.code == "invalid_json" else 422, exc.code, exc.detail)
        unknown_key = next(
            (r for r in notification.rejected if r.reason == "unknown_vapid_key"), None
        )
        if unknown_key is not None:
            # The caller can fix this now; from the queue the device would only fail.
            return error(422, unknown_key.reason, unknown_key.detail)
        if notification.send_at is not None:
            try:
                check_send_at(notification.send_at, time.time(), self.s.schedule_max_days)
            except ValidationError as exc:
                return error(422, exc.code, exc.detail)
        notification_id = notification.notification_id
        try:
            # The message as the peer sent it: the consumer validates it again, as it
            # does every message, so the queue holds what a peer would have published.
            await self.s.publish(body, notification_id, {})
        except BrokerUnavailable as exc:
            log.warning("POST /notifications: could not publish: %s", exc)
            return broker_unavailable()
        location = status_path(notification_id)
        return json_response(
            {"notification_id": notification_id, "status_url": location},
            202,
            headers={"Location": location},
        )

    async def _parse(self, body: bytes) -> Notification:
        return await off_loop(self.s.parse_message, body)
