"""The exceptions that carry meaning across modules.

Callers decide by type, never by status code: the sender maps every push-service
answer to one of these, and the retry policy and consumer only look at the class.
"""

from __future__ import annotations

import time


class PushServiceError(Exception):
    """Base class of everything this package raises on purpose."""


class ConfigError(PushServiceError):
    """A configuration value is missing or invalid; the message names the variable."""


class ValidationError(PushServiceError):
    """Input (an HTTP body or a queue message) is not acceptable.

    `code` is a stable machine-readable reason; `detail` says what is wrong.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class PushError(PushServiceError):
    """A push to one device did not succeed."""

    reason: str = "push_failed"

    def __init__(self, detail: str = "", status_code: int | None = None) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason
        self.status_code = status_code


class PermanentPushError(PushError):
    """Sending again will not help (400, 413, a refused endpoint, a payload too large)."""

    reason = "rejected"


class PayloadTooLarge(PermanentPushError):
    reason = "payload_too_large"


class EndpointNotAllowed(PermanentPushError):
    reason = "endpoint_not_allowed"


class VapidRejected(PermanentPushError):
    """401/403: our VAPID configuration is wrong; the subscription itself is fine."""

    reason = "vapid_rejected"


class SubscriptionGone(PermanentPushError):
    """404/410: the browser unsubscribed or the subscription expired."""

    reason = "subscription_gone"


class VapidKeyMismatch(SubscriptionGone):
    """The subscription was made with another VAPID key (Apple's `VapidPkHashMismatch`,
    FCM's "do not correspond"): no key of ours reaches it, so it is as good as gone."""

    reason = "vapid_key_mismatch"


class UnknownVapidKey(PermanentPushError):
    """A device names a VAPID key id this service does not have."""

    reason = "unknown_vapid_key"


class TransientPushError(PushError):
    """Worth retrying: 5xx, timeouts, connection errors; counts against the push service."""

    reason = "transient"

    def __init__(
        self,
        detail: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, status_code)
        self.retry_after = retry_after


class Throttled(TransientPushError):
    """429 (or Microsoft's 406 `appthrottled`): retry after Retry-After; the push service
    is up, so its circuit stays closed."""

    reason = "throttled"


class PushServiceUnavailable(PushServiceError):
    """No request now: the push service's circuit is open or it stopped answering.

    `until` is the `time.monotonic()` before which no request should be tried.
    """

    def __init__(self, detail: str, until: float, reason: str = "circuit_open") -> None:
        super().__init__(detail)
        self.detail = detail
        self.until = until
        self.reason = reason

    def wait(self) -> float:
        """Seconds from now until a request may be tried."""
        return max(0.0, self.until - time.monotonic())


class DuplicateNotification(ValidationError):
    """A different message under a `notification_id` that is still on record."""

    def __init__(self, detail: str) -> None:
        super().__init__("duplicate_notification_id", detail)


class BrokerUnavailable(PushServiceError):
    """RabbitMQ is not connected, or did not confirm a publish in time."""


class Unroutable(BrokerUnavailable):
    """The broker returned a message no queue took: its queue does not exist (any more)."""


class NoRoute(Unroutable):
    """A mandatory publish came back: no queue is bound for its routing key."""


class AuthenticationFailed(PushServiceError):
    """A caller's credentials are missing or not acceptable.

    `code` is the machine-readable error (`unauthorized`, `invalid_token`,
    `user_id_mismatch`); `detail` says what is wrong, never echoing a secret.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
