"""Peers' view of the subscription registry: list a user's or a topic's, remove one.

`GET /subscriptions?user_id=...` or `?topic=...` pages through the registry in
device-id order (`cursor` is the last device id of the previous page). A subscription
is shown by its device id and push-service origin, never its endpoint or keys: with
those, anyone could push to the browser. `DELETE /subscriptions/{device}` forgets one
(the event `subscription.removed`, reason `deleted`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from push_service.api.notifications import endpoint_origin
from push_service.api.responses import error, json_response
from push_service.api.services import ApiServices
from push_service.api.subscribe import broker_unavailable
from push_service.errors import BrokerUnavailable
from push_service.registry import MAX_PAGE, Subscription
from push_service.status import RedisUnavailable

log = logging.getLogger(__name__)

DEVICE = re.compile(r"[0-9a-f]{24}")  # models.device_key: 24 hex digits of a sha256
TOPIC = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_USER_ID = 256
DEFAULT_LIMIT = 100


def public_subscription(subscription: Subscription) -> dict[str, Any]:
    return {
        "device": subscription.device,
        "origin": endpoint_origin(subscription.endpoint),
        "user_id": subscription.user_id,
        "topics": list(subscription.topics),
        "vapid_key_id": subscription.key_id,
        "created_at": subscription.created_at or None,
        "last_seen": subscription.last_seen or None,
        "expiration_time": subscription.expiration_time,
    }


class _Refused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        self.code, self.detail = code, detail


def _query(request: Request) -> dict[str, Any]:
    """The page asked for: exactly one of user_id and topic, a cursor, a limit."""
    params = request.query_params
    user_id, topic = params.get("user_id"), params.get("topic")
    if (user_id is None) == (topic is None):
        raise _Refused("invalid_query", "give exactly one of user_id and topic")
    if user_id is not None and not 0 < len(user_id) <= MAX_USER_ID:
        raise _Refused("invalid_user_id", f"user_id must be 1 to {MAX_USER_ID} characters")
    if topic is not None and not TOPIC.fullmatch(topic):
        raise _Refused("invalid_topic", "topic must be 1 to 64 letters, digits and _.:-")
    cursor = params.get("cursor", "")
    if cursor and not DEVICE.fullmatch(cursor):
        raise _Refused("invalid_cursor", "cursor must be the next_cursor of a previous page")
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise _Refused("invalid_limit", f"limit must be an integer from 1 to {MAX_PAGE}")
    return {"user_id": user_id, "topic": topic, "after": cursor, "limit": int(raw_limit)}


class SubscriptionRoutes:
    def __init__(self, services: ApiServices) -> None:
        self.s = services

    def routes(self) -> list[Route]:
        internal = self.s.peers.internal
        return [
            Route("/subscriptions", internal(self.list), methods=["GET"]),
            Route("/subscriptions/{device}", internal(self.delete), methods=["DELETE"]),
        ]

    async def list(self, request: Request) -> Response:
        try:
            query = _query(request)
        except _Refused as refused:
            return error(422, refused.code, refused.detail)
        try:
            found, cursor = await self.s.registry.page(**query)
        except RedisUnavailable:
            return error(503, "redis_unavailable", "the subscription registry is unavailable")
        return json_response(
            {
                "subscriptions": [public_subscription(s) for s in found],
                "next_cursor": cursor,
            }
        )

    async def delete(self, request: Request) -> Response:
        device = request.path_params["device"]
        if not DEVICE.fullmatch(device):
            return error(404, "not_found", "no such subscription")
        try:
            removed = await self.s.remove_subscription(device)
        except RedisUnavailable:
            return error(503, "redis_unavailable", "the subscription registry is unavailable")
        except BrokerUnavailable as exc:
            log.warning("DELETE /subscriptions: could not announce the removal: %s", exc)
            return broker_unavailable()
        if removed is None:
            return error(404, "not_found", "no such subscription")
        return json_response({"status": "removed", "device": device})
