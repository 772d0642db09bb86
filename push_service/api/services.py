"""What the API needs from the running service; the app module builds and wires it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from push_service.api.asyncapi import Addresses
from push_service.api.auth import PeerAuth
from push_service.api.identity import SubscriberVerifier
from push_service.endpoints import EndpointPolicy
from push_service.lifecycle import Subscribed, SubscribeRequest
from push_service.limits import ClientAddress, RateLimiter
from push_service.metrics import Metrics
from push_service.models import Notification
from push_service.receipts import Receipts
from push_service.registry import Registry, Subscription
from push_service.status import StatusStore
from push_service.status.control import RecordControl
from push_service.vapid_keys import VapidKeys

# publish(body, message_id, headers): confirmed by the broker, or BrokerUnavailable.
Publish = Callable[[bytes, str, Mapping[str, str | int | bool]], Awaitable[None]]


@dataclass
class ApiServices:
    store: StatusStore
    publish: Publish
    # Register, re-sync or replace a subscription (reported and announced durably first).
    subscribe: Callable[[SubscribeRequest], Awaitable[Subscribed]]
    # (endpoint, auth secret): the removed subscription, or None if unknown or not proven.
    unsubscribe: Callable[[str, str], Awaitable[Subscription | None]]
    # The registry (pages by user or topic) and a peer's removal of one device.
    registry: Registry
    remove_subscription: Callable[[str], Awaitable[Subscription | None]]
    policy: EndpointPolicy
    metrics: Metrics
    vapid_keys: VapidKeys  # current_id for new subscriptions; public_key(id), signer(id)
    readiness: Callable[[], Awaitable[dict[str, Any]]]
    rate_limiter: RateLimiter
    client_address: ClientAddress
    welcome: dict[str, str]
    peers: PeerAuth
    subscribers: SubscriberVerifier
    # The consumer's own validation of a queue message (same limits): raises ValidationError.
    parse_message: Callable[[bytes], Notification]
    # The queue and exchange names the AsyncAPI document gives.
    addresses: Addresses
    # Scheduled sends, cancelling, receipts (issue 24).
    control: RecordControl | None = None
    receipts: Receipts | None = None  # None: RECEIPTS_ENABLED=false
    emit: Callable[..., Awaitable[None]] | None = None  # an event to the events exchange
    schedule_max_days: float = 30.0
