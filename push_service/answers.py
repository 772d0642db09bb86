"""What a push service's answer means: its status, its error body, its headers.

Each push service explains a refusal its own way: Apple in a JSON `reason`, Mozilla
(autopush) in JSON with an `errno` and a `message`, FCM in plain text, Microsoft (WNS)
in `X-WNS-*` headers. `explain` turns any of them into one line for the device's
`detail`; `classify` maps the answer onto the exceptions of `errors`.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping

from push_service.errors import (
    PayloadTooLarge,
    PermanentPushError,
    SubscriptionGone,
    Throttled,
    TransientPushError,
    VapidKeyMismatch,
    VapidRejected,
)

MAX_DETAIL = 400
_HEADER_VALUE = 160
# The subscription was made with another applicationServerKey: Apple's reason, FCM's
# text ("... do not correspond to the credentials used to create the subscriptions"),
# autopush's message.
_KEY_MISMATCH = re.compile(
    r"VapidPkHashMismatch|do(?:es)? not correspond|public key mismatch", re.I
)
# autopush, for a subscription bridged to a constrained device (Firefox on Android):
# "Converted buffer is too long by 1441 bytes" (the buffer is the base64 of the body).
_OVERAGE = re.compile(r"too long by (\d+) bytes", re.I)
_LIMITED_TO = re.compile(r"limited to (\d+) bytes", re.I)
# When autopush does not say by how much: its documented limit for Firefox on Android.
MOZILLA_CONSTRAINED_LIMIT = 3070
_WHITESPACE = re.compile(r"\s+")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone admits "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _one_line(text: str, limit: int) -> str:
    return _WHITESPACE.sub(" ", text).strip()[:limit]


def _from_json(body: str) -> list[str] | None:
    """Apple's `reason`, autopush's `errno` and `message`; None when the body is not JSON."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    parts = []
    if isinstance(data.get("reason"), str):
        parts.append(data["reason"])
    message = data.get("message") or data.get("error")
    errno = data.get("errno")
    if isinstance(errno, int) and not isinstance(errno, bool):
        message = f"errno {errno}: {message}" if isinstance(message, str) else f"errno {errno}"
    if isinstance(message, str):
        parts.append(message)
    return parts


def explain(headers: Mapping[str, str], body: str) -> str:
    """The push service's own words about a refusal, on one bounded line."""
    text = body.strip()
    parts = _from_json(text) if text.startswith("{") else None
    if parts is None:
        # An HTML error page says nothing a log line could use.
        parts = [] if not text or text.startswith("<") else [text]
    for name, value in headers.items():
        if name.lower().startswith("x-wns-"):
            parts.append(f"{name}: {_one_line(value, _HEADER_VALUE)}")
    return _one_line("; ".join(parts), MAX_DETAIL)


def _wns_throttled(headers: Mapping[str, str]) -> bool:
    """Microsoft throttles with 406 and `X-WNS-Status: appthrottled`, not with 429; a
    406 from anyone else is a plain refusal."""
    return any(name.lower().startswith("x-wns-") for name in headers)


def payload_limit(reason: str, payload_bytes: int | None) -> int | None:
    """The payload bytes this subscription takes, when the push service lets us tell."""
    limited = _LIMITED_TO.search(reason)
    if limited:
        return int(limited.group(1))
    over = _OVERAGE.search(reason)
    if over and payload_bytes is not None:
        # The overage counts base64 characters of the body: 4 of them carry 3 bytes.
        return max(0, payload_bytes - math.ceil(int(over.group(1)) * 3 / 4))
    if "errno 104" in reason:
        return MOZILLA_CONSTRAINED_LIMIT
    return None


def _too_large(detail: str, reason: str, payload_bytes: int | None) -> PayloadTooLarge:
    limit = payload_limit(reason, payload_bytes)
    if limit is not None:
        detail += f"; this subscription takes at most about {limit} payload bytes"
    if payload_bytes is not None:
        detail += f" (this payload: {payload_bytes})"
    return PayloadTooLarge(detail, 413)


def classify(
    status: int,
    headers: Mapping[str, str],
    body: str,
    payload_bytes: int | None = None,
) -> None:
    """Raise the exception that an answer of the push service means; 2xx returns.

    `payload_bytes` (the plaintext pushed) lets a 413 say the push service's limit.
    """
    if 200 <= status < 300:
        return
    reason = explain(headers, body)
    detail = f"HTTP {status}" + (f": {reason}" if reason else "")
    if status in (400, 401, 403) and _KEY_MISMATCH.search(reason):
        raise VapidKeyMismatch(detail, status)
    if status in (404, 410):
        raise SubscriptionGone(detail, status)
    if status in (401, 403):
        raise VapidRejected(detail, status)
    if status == 429 or (status == 406 and _wns_throttled(headers)):
        raise Throttled(detail, status, parse_retry_after(headers.get("Retry-After")))
    if status == 503:
        raise TransientPushError(detail, status, parse_retry_after(headers.get("Retry-After")))
    if status >= 500:
        raise TransientPushError(detail, status)
    if status == 413:
        raise _too_large(detail, reason, payload_bytes)
    raise PermanentPushError(detail, status)
