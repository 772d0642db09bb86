"""`POST /receipts/{token}`: a browser's service worker says a push was delivered,
clicked or closed (`push_service.receipts` makes the tokens).

Public and cookie-free: the token is the only credential, so any content type is
taken (a `text/plain` body needs no CORS preflight from a worker on another origin)
and nothing of the caller is read. A forged token, one for an expired record, or an
event already recorded for that device changes nothing and answers 404; the first
`delivered` and `clicked` of a device go out as `notification.delivered` /
`notification.clicked` events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from push_service.api.responses import error, json_response
from push_service.errors import BrokerUnavailable
from push_service.receipts import Receipts
from push_service.status import RedisUnavailable
from push_service.status.control import RECEIPT_EVENTS, RecordControl

log = logging.getLogger(__name__)
Emit = Callable[..., Awaitable[None]]
EVENTS = {"delivered": "notification.delivered", "clicked": "notification.clicked"}
MAX_BODY = 1024


class ReceiptRoutes:
    def __init__(self, receipts: Receipts, control: RecordControl, emit: Emit) -> None:
        self.receipts = receipts
        self.control = control
        self.emit = emit

    def routes(self) -> list[Route]:
        return [Route("/receipts/{token}", self.receipt, methods=["POST"])]

    async def receipt(self, request: Request) -> Response:
        body = await request.body()
        event = _event(body)
        if event is None:
            return error(
                422,
                "invalid_event",
                'the body must be {"event": "delivered" | "clicked" | "closed"}',
            )
        found = self.receipts.verify(request.path_params["token"])
        if found is None:
            return error(404, "not_found", "no such receipt")
        notification_id, device = found
        try:
            recorded = await self.control.receipt(notification_id, device, event)
        except RedisUnavailable:
            return error(503, "redis_unavailable", "the status store is unavailable")
        if recorded != 1:
            return error(404, "not_found", "no such receipt, or this event is on record already")
        if event in EVENTS:
            await self._announce(EVENTS[event], notification_id, device)
        return json_response({"notification_id": notification_id, "event": event, "recorded": True})

    async def _announce(self, name: str, notification_id: str, device: str) -> None:
        body = {"notification_id": notification_id, "device": device}
        try:
            await self.emit(name, body, event_id=f"{name}:{notification_id}:{device}")
        except BrokerUnavailable as exc:
            # On record already; the event is the lesser copy of it.
            log.warning("could not announce %s: %s", name, exc)


def _event(body: bytes) -> str | None:
    if len(body) > MAX_BODY:
        return None
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    event = parsed.get("event") if isinstance(parsed, dict) else None
    return event if event in RECEIPT_EVENTS else None
