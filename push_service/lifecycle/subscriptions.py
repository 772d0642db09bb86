"""A subscription's life: registered, re-synced, replaced, unsubscribed, gone.

What each step changes, in the order that loses nothing: the report to the User
Service and the event are made durable in RabbitMQ *before* the registry changes, so
a step that fails part-way (503 to the browser, a requeued push) is done again in
full next time, and the stable `report_id` and `event_id` make the repeat harmless.
The registry is the memory that tells a re-sync (no second welcome, no second
report) from a new subscription.

Only a verified user is ever reported or kept under a user id: anyone can claim any
`user_id` at an anonymous `/subscribe`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from push_service.endpoints import origin_of
from push_service.errors import BrokerUnavailable, PushError
from push_service.models import Device, Notification, device_key
from push_service.registry import Registry, Subscription
from push_service.reports import Report, deactivation, registration
from push_service.retry import RetryPolicy, call_with_retries
from push_service.status import RedisUnavailable

log = logging.getLogger(__name__)

PutReport = Callable[[Report], Awaitable[None]]  # confirmed, or BrokerUnavailable
Emit = Callable[..., Awaitable[None]]  # Events.emit(event, body, event_id=...)
# A gone device's report waits out a broker or Redis outage with its message held, as the
# status store does: the device's outcome is written only once the report is durable.
OUTAGE_RETRY = RetryPolicy(max_tries=10_000, max_seconds=600.0, base_delay=0.05, max_delay=5.0)


@dataclass(frozen=True)
class SubscribeRequest:
    device: Device  # validated endpoint and keys
    user_id: str | None  # verified only
    expiration_time: float | None = None
    topics: tuple[str, ...] | None = None  # None keeps the registered ones
    old_endpoint: str | None = None
    old_auth: str | None = None
    key_id: str = "default"


@dataclass(frozen=True)
class Subscribed:
    subscription: Subscription
    created: bool  # the endpoint was not registered before
    replaced: str | None  # the device id of the subscription this one replaces

    @property
    def welcome(self) -> bool:
        """Only a new subscription of a new browser: never a re-sync or a replacement."""
        return self.created and self.replaced is None


class Subscriptions:
    def __init__(self, registry: Registry, put_report: PutReport, emit: Emit) -> None:
        self.registry = registry
        self.put_report = put_report
        self.emit = emit

    async def subscribe(self, request: SubscribeRequest) -> Subscribed:
        """Register (or re-sync, or replace); BrokerUnavailable or RedisUnavailable on outages."""
        device = request.device
        previous = await self.registry.find(device.endpoint)
        replaced, replaces = await self._replacement(request)
        user_id, topics = request.user_id, request.topics
        if replaced is not None:
            # A worker's pushsubscriptionchange comes without the page's session: the new
            # subscription inherits what the one it proved it replaces was registered with.
            user_id = user_id or replaced.user_id
            topics = replaced.topics if topics is None else topics
        elif previous is not None and hmac.compare_digest(previous.auth, device.auth_b64):
            # The same subscription re-sent without a session keeps its verified user: its
            # own secret proves it is the browser that registered it.
            user_id = user_id or previous.user_id
        wanted = Subscription(
            device.endpoint,
            device.p256dh_b64,
            device.auth_b64,
            user_id=user_id,
            topics=topics or (),
            key_id=request.key_id,
            expiration_time=request.expiration_time,
        )
        if user_id is not None and (replaces or _news(previous, wanted)):
            await self.put_report(_registration(wanted, user_id, replaces))
        if previous is None or replaced is not None:
            await self._announce(wanted, replaced)
        upserted = await self.registry.upsert(wanted, topics=topics)
        if replaced is not None:
            await self.registry.remove(replaced.device)
        old = device_key(replaces) if replaces else None
        return Subscribed(upserted.subscription, previous is None, old)

    async def unsubscribe(self, endpoint: str, auth: str) -> Subscription | None:
        """Remove a subscription proven by its own auth secret; None if unknown or wrong."""
        found = await self.registry.find(endpoint)
        if found is None or not hmac.compare_digest(found.auth.encode(), auth.encode()):
            return None
        if found.user_id is not None:
            report = deactivation(
                user_id=found.user_id, endpoint=endpoint, reason="unsubscribed", status_code=None
            )
            await self.put_report(report)
        await self._removed(found, "unsubscribed")
        await self.registry.remove(found.device)
        return found

    async def remove(self, device: str) -> Subscription | None:
        """A peer's removal (`DELETE /subscriptions/{device}`): no report, an event."""
        found = await self.registry.get(device)
        if found is not None:
            await self._removed(found, "deleted")
            await self.registry.remove(device)
        return found

    async def gone(self, n: Notification, device: Device, error: PushError) -> str:
        """A push service said the subscription is gone: report it, forget it, announce it.

        Returns the device's `deactivation` as it reads until the User Service answers.
        Waits out a broker or Redis outage (its message stays unacked meanwhile): the
        device's outcome is recorded only once the report is durable.
        """

        async def once() -> str:
            return await self._gone(n, device, error)

        return await call_with_retries(once, OUTAGE_RETRY, (BrokerUnavailable, *RedisUnavailable))

    async def _gone(self, n: Notification, device: Device, error: PushError) -> str:
        claimed, verified = n.user_id, n.user_verified
        if n.chunk:
            # A chunk of an audience: the device's user is the registry's (verified), not
            # the message's (a topic reaches many users).
            found = await self.registry.get(device.key)
            claimed, verified = (found.user_id if found else None), True
        user_id = claimed if verified else None
        outcome = "skipped: unverified user_id"
        if verified:
            report = deactivation(
                user_id=claimed,
                endpoint=device.endpoint,
                reason=error.reason,
                status_code=error.status_code,
                notification_id=n.notification_id,
                device=device.key,
            )
            await self.put_report(report)
            outcome = "queued"
        event = {
            "device": device.key,
            "origin": device.origin,
            "user_id": user_id,
            "reason": error.reason,
            "status_code": error.status_code,
            "notification_id": n.notification_id,
        }
        await self.emit("subscription.gone", event, event_id=_event_id("gone", device.key))
        await self.registry.remove(device.key)
        return outcome

    async def _replacement(
        self, request: SubscribeRequest
    ) -> tuple[Subscription | None, str | None]:
        """What `old_endpoint` names: the registered subscription to retire, if this request
        may (proven by its auth secret, or the same verified user), and the endpoint to
        report as `replaces` (also one the registry never knew: the User Service may)."""
        old = request.old_endpoint
        if not old or old == request.device.endpoint:
            return None, None
        found = await self.registry.find(old)
        if found is None:
            return None, old
        proven = request.old_auth is not None and hmac.compare_digest(
            found.auth.encode(), request.old_auth.encode()
        )
        if proven or (found.user_id is not None and found.user_id == request.user_id):
            return found, old
        log.info("subscribe: old_endpoint given without proof of ownership; it is kept")
        return None, None

    async def _announce(self, wanted: Subscription, replaced: Subscription | None) -> None:
        body: dict[str, Any] = {
            "device": wanted.device,
            "origin": origin_of(wanted.endpoint),
            "user_id": wanted.user_id,
            "topics": list(wanted.topics),
            "key_id": wanted.key_id,
        }
        if replaced is None:
            await self.emit("subscription.created", body, event_id=_event_id("created", wanted))
            return
        body["replaces_device"] = replaced.device
        await self.emit("subscription.replaced", body, event_id=_event_id("replaced", wanted))

    async def _removed(self, found: Subscription, reason: str) -> None:
        body = {
            "device": found.device,
            "origin": origin_of(found.endpoint),
            "user_id": found.user_id,
            "reason": reason,
        }
        await self.emit("subscription.removed", body, event_id=_event_id("removed", found))


def _news(previous: Subscription | None, wanted: Subscription) -> bool:
    """Whether the User Service has something to learn: a new or changed subscription."""
    if previous is None:
        return True
    before = (previous.p256dh, previous.auth, previous.user_id)
    return before != (wanted.p256dh, wanted.auth, wanted.user_id)


def _registration(wanted: Subscription, user_id: str, replaces: str | None) -> Report:
    keys = {"p256dh": wanted.p256dh, "auth": wanted.auth}
    return registration(
        user_id=user_id,
        endpoint=wanted.endpoint,
        keys=keys,
        expiration_time=wanted.expiration_time,
        replaces=replaces,
    )


def _event_id(what: str, about: Subscription | str) -> str:
    """Events a retry can repeat get an id derived from what they are about (hashed: the
    auth secret that tells one subscription of an endpoint from another is no id)."""
    if isinstance(about, Subscription):
        about = f"{about.device}:{about.auth}"
    return hashlib.sha256(f"subscription.{what}:{about}".encode()).hexdigest()[:32]
