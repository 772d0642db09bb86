"""`POST /subscribe`: a browser's PushSubscription in, a welcome notification queued.

The caller's identity is checked when it can be (a bearer JWT, see `identity`);
a `user_id` that is only claimed in the body travels with the AMQP header
`x-push-user-verified: false`, so the service never reports it to the User Service.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from push_service.api.auth import bearer_token
from push_service.api.identity import Identity
from push_service.api.responses import error, json_response
from push_service.api.services import ApiServices
from push_service.broker import USER_VERIFIED_HEADER
from push_service.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    EndpointNotAllowed,
    ValidationError,
)
from push_service.models import Device, parse_subscription

log = logging.getLogger(__name__)

# /subscribe's DNS check is advisory (the connect-time resolver is the guard): never
# let a slow resolver hold the request.
RESOLVE_TIMEOUT_SECONDS = 2.0
ACCEPTED = {"status": "ok", "message": "Subscription received and queued."}


def json_content_type(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json"


def unsupported_media_type() -> Response:
    return error(415, "unsupported_media_type", "Content-Type must be application/json")


def broker_unavailable() -> Response:
    return error(
        503,
        "broker_unavailable",
        "the notification queue is unavailable; try again shortly",
        {"Retry-After": "5"},
    )


def auth_failure(exc: AuthenticationFailed) -> Response:
    if exc.code == "user_id_mismatch":
        return error(403, exc.code, exc.detail)
    challenge = 'Bearer realm="push_service"'
    if exc.code == "invalid_token":
        challenge += ', error="invalid_token"'
    return error(401, exc.code, exc.detail, {"WWW-Authenticate": challenge})


class SubscribeRoute:
    def __init__(self, services: ApiServices) -> None:
        self.s = services

    def routes(self) -> list[Route]:
        return [Route("/subscribe", self.subscribe, methods=["POST"])]

    async def subscribe(self, request: Request) -> Response:
        refusal = self._refuse(request)
        if refusal is not None:
            return refusal
        try:
            verified = self.s.subscribers.verify(bearer_token(request.headers.get("authorization")))
            device, claimed = await self._validated(await request.body())
            identity = self.s.subscribers.identity(verified, claimed)
        except AuthenticationFailed as exc:
            return auth_failure(exc)
        except ValidationError as exc:
            return error(400 if exc.code == "invalid_json" else 422, exc.code, exc.detail)
        except EndpointNotAllowed as exc:
            return error(422, "endpoint_not_allowed", exc.detail)
        notification_id = str(uuid.uuid4())
        headers = (
            {} if identity.verified or identity.user_id is None else {USER_VERIFIED_HEADER: False}
        )
        try:
            body = self._welcome(request, notification_id, identity, device)
            await self.s.publish(body, notification_id, headers)
        except BrokerUnavailable as exc:
            log.warning("subscribe: could not queue the welcome notification: %s", exc)
            return broker_unavailable()
        return json_response({**ACCEPTED, "notification_id": notification_id}, 202)

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
        return None if json_content_type(request) else unsupported_media_type()

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
        self, request: Request, notification_id: str, identity: Identity, device: Device
    ) -> bytes:
        action_url = self.s.welcome["action_url"]
        if action_url.startswith("/"):
            action_url = str(request.base_url).rstrip("/") + action_url
        return orjson.dumps(
            {
                "notification_id": notification_id,
                "user_id": identity.user_id,
                # The validated device: nothing else from the body reaches the queue.
                "devices": [device.subscription()],
                "title": self.s.welcome["title"],
                "body": self.s.welcome["body"],
                "action_url": action_url,
                "tag": "welcome",
            }
        )
