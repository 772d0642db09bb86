"""What the API needs from the running service; the app module builds and wires it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from push_service.api.asyncapi import Addresses
from push_service.api.auth import PeerAuth
from push_service.api.identity import SubscriberVerifier
from push_service.endpoints import EndpointPolicy
from push_service.limits import ClientAddress, RateLimiter
from push_service.metrics import Metrics
from push_service.models import Notification
from push_service.status import StatusStore

# publish(body, message_id, headers): confirmed by the broker, or BrokerUnavailable.
Publish = Callable[[bytes, str, Mapping[str, str | int | bool]], Awaitable[None]]


@dataclass
class ApiServices:
    store: StatusStore
    publish: Publish
    policy: EndpointPolicy
    metrics: Metrics
    vapid_public_key: str
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
