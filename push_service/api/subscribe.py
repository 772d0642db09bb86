"""`/subscribe`: a browser's PushSubscription registered, re-synced, replaced or removed.

`POST` registers it (`lifecycle.Subscriptions`) and queues a welcome notification for
a new one only: a page that re-sends its subscription on every load, or a worker that
replaces one on `pushsubscriptionchange`, gets 200 and no second welcome. `DELETE`
removes it, proven by the subscription's own auth secret (no cookies needed).

The caller's identity is checked when it can be (a bearer JWT, see `identity`);
a `user_id` that is only claimed in the body travels with the AMQP header
`x-push-user-verified: false`, is never kept in the registry and never reported to
the User Service.
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
from push_service.lifecycle import Subscribed, SubscribeRequest
from push_service.models import Device, SubscribeForm, parse_subscribe, parse_unsubscribe
from push_service.status import RedisUnavailable

log = logging.getLogger(__name__)

# /subscribe's DNS check is advisory (the connect-time resolver is the guard): never
# let a slow resolver hold the request.
RESOLVE_TIMEOUT_SECONDS = 2.0
ACCEPTED = "Subscription received and queued."
# Welcome notification ids: a UUID derived from the subscription (uuid5 in this namespace).
WELCOME_IDS = uuid.UUID("6f1f3c1e-8a51-4d0f-9d43-0b6c1f5e2a77")


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
        # One route for both methods, so that a 405 names both in `Allow`.
        return [Route("/subscribe", self.dispatch, methods=["POST", "DELETE"])]

    async def dispatch(self, request: Request) -> Response:
        if request.method == "DELETE":
            return await self.unsubscribe(request)
        return await self.subscribe(request)

    async def subscribe(self, request: Request) -> Response:
        refusal = self._refuse(request)
        if refusal is not None:
            return refusal
        try:
            verified = self.s.subscribers.verify(bearer_token(request.headers.get("authorization")))
            form = await self._validated(await request.body())
            identity = self.s.subscribers.identity(verified, form.user_id)
        except AuthenticationFailed as exc:
            return auth_failure(exc)
        except ValidationError as exc:
            return invalid(exc)
        except EndpointNotAllowed as exc:
            return error(422, "endpoint_not_allowed", exc.detail)
        try:
            key_id = self.s.vapid_keys.current_id
            subscribed = await self.s.subscribe(_request(form, identity, key_id))
            notification_id = None
            if subscribed.welcome:
                notification_id = await self._welcome(request, identity, form.device)
        except BrokerUnavailable as exc:
            log.warning("subscribe: could not queue what the subscription needs: %s", exc)
            return broker_unavailable()
        except RedisUnavailable as exc:
            log.warning("subscribe: the registry is unavailable: %s", exc)
            return registry_unavailable()
        return json_response(_answer(subscribed, notification_id), 202 if notification_id else 200)

    async def unsubscribe(self, request: Request) -> Response:
        refusal = self._refuse(request)
        if refusal is not None:
            return refusal
        try:
            endpoint, auth = parse_unsubscribe(await request.body())
            removed = await self.s.unsubscribe(endpoint, auth)
        except ValidationError as exc:
            return invalid(exc)
        except BrokerUnavailable as exc:
            log.warning("unsubscribe: could not queue the report: %s", exc)
            return broker_unavailable()
        except RedisUnavailable as exc:
            log.warning("unsubscribe: the registry is unavailable: %s", exc)
            return registry_unavailable()
        if removed is None:
            # An unknown endpoint and a wrong secret look alike: nothing to learn by probing.
            return error(404, "not_found", "no such subscription")
        body = {"status": "ok", "message": "Subscription removed.", "device": removed.device}
        return json_response(body, 200)

    def _refuse(self, request: Request) -> Response | None:
        """The rate limit and the content type, checked before the body is read."""
        allowed, retry_after = self.s.rate_limiter.hit(self.s.client_address(request))
        if not allowed:
            return error(
                429,
                "rate_limited",
                "too many subscription requests from this address",
                {"Retry-After": str(retry_after)},
            )
        return None if json_content_type(request) else unsupported_media_type()

    async def _validated(self, body: bytes) -> SubscribeForm:
        """Parse the subscription (body size is bounded by BodyLimitMiddleware) and vet DNS."""
        form = parse_subscribe(body, self.s.policy)
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                await self.s.policy.check_resolved(form.device.host)
        except TimeoutError:
            log.info("subscribe: DNS check of %s timed out; left to send time", form.device.host)
        return form

    async def _welcome(self, request: Request, identity: Identity, device: Device) -> str:
        """Queue the welcome push (confirmed); its id is derived from the subscription, so
        a browser that retries after a failed answer gets one welcome, not two."""
        notification_id = str(uuid.uuid5(WELCOME_IDS, f"{device.endpoint}\0{device.auth_b64}"))
        action_url = self.s.welcome["action_url"]
        if action_url.startswith("/"):
            action_url = str(request.base_url).rstrip("/") + action_url
        body = orjson.dumps(
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
        headers = (
            {} if identity.verified or identity.user_id is None else {USER_VERIFIED_HEADER: False}
        )
        await self.s.publish(body, notification_id, headers)
        return notification_id


def invalid(exc: ValidationError) -> Response:
    return error(400 if exc.code == "invalid_json" else 422, exc.code, exc.detail)


def registry_unavailable() -> Response:
    return error(
        503,
        "registry_unavailable",
        "the subscription registry is unavailable; try again shortly",
        {"Retry-After": "5"},
    )


def _request(form: SubscribeForm, identity: Identity, key_id: str) -> SubscribeRequest:
    return SubscribeRequest(
        form.device,
        identity.user_id if identity.verified else None,
        expiration_time=form.expiration_time,
        topics=form.topics,
        old_endpoint=form.old_endpoint,
        old_auth=form.old_auth,
        # Browsers subscribe with the key /vapid_public_key names: the current one.
        key_id=key_id,
    )


def _answer(subscribed: Subscribed, notification_id: str | None) -> dict[str, object]:
    if notification_id is not None:
        message = ACCEPTED
    elif subscribed.replaced is not None:
        message = "Subscription replaced; nothing queued."
    else:
        message = "Subscription already registered; nothing queued."
    return {
        "status": "ok",
        "message": message,
        "notification_id": notification_id,
        "device": subscribed.subscription.device,
        "created": subscribed.created,
        "replaced": subscribed.replaced,
    }
