"""Sending one web push: RFC 8291 encryption, RFC 8292 VAPID, RFC 8030 request.

The sender knows nothing of queues or status: it turns a device and a payload
into one HTTP request and maps the answer onto the exceptions of `errors`.
"""

from __future__ import annotations

import email.utils
import functools
import os
import time
from dataclasses import dataclass

import aiohttp
import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDictProxy

from push_service.endpoints import EndpointPolicy, PolicyResolver
from push_service.errors import (
    PayloadTooLarge,
    PermanentPushError,
    SubscriptionGone,
    Throttled,
    TransientPushError,
    VapidRejected,
)
from push_service.models import MAX_PLAINTEXT_BYTES, Device
from push_service.vapid import VapidSigner

# http_ece asks cryptography for its backend four times per push; the backend is one
# process-wide object, so hand http_ece a lookup that costs nothing.
http_ece.default_backend = functools.cache(http_ece.default_backend)

RECORD_SIZE = 4096
CONNECTIONS_PER_HOST = 64
_REASON_BYTES = 512


def encrypt(
    plaintext: bytes,
    ua_public: ec.EllipticCurvePublicKey | bytes,
    auth_secret: bytes,
    *,
    salt: bytes | None = None,
    private_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """RFC 8291 `aes128gcm` body; a fresh ephemeral key and salt unless given (tests)."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise PayloadTooLarge(
            f"payload is {len(plaintext)} bytes; at most {MAX_PLAINTEXT_BYTES} fit one record"
        )
    body: bytes = http_ece.encrypt(
        plaintext,
        salt=salt if salt is not None else os.urandom(16),
        private_key=private_key or ec.generate_private_key(ec.SECP256R1()),
        dh=ua_public,
        auth_secret=auth_secret,
        version="aes128gcm",
        rs=RECORD_SIZE,
    )
    return body


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


def classify(status: int, headers: CIMultiDictProxy[str] | dict[str, str], reason: str) -> None:
    """Raise the exception that an answer of the push service means; 2xx returns."""
    if 200 <= status < 300:
        return
    detail = f"HTTP {status}" + (f": {reason}" if reason else "")
    if status in (404, 410):
        raise SubscriptionGone(detail, status)
    if status in (401, 403):
        raise VapidRejected(detail, status)
    if status == 429:
        raise Throttled(detail, status, parse_retry_after(headers.get("Retry-After")))
    if status == 503:
        raise TransientPushError(detail, status, parse_retry_after(headers.get("Retry-After")))
    if status >= 500:
        raise TransientPushError(detail, status)
    if status == 413:
        raise PayloadTooLarge(detail, status)
    raise PermanentPushError(detail, status)


@dataclass(frozen=True)
class PushOptions:
    """RFC 8030 delivery headers of one message."""

    ttl: int
    urgency: str | None = None
    topic: str | None = None


def make_session(policy: EndpointPolicy, concurrency: int, timeout: float) -> aiohttp.ClientSession:
    """One keep-alive pool for all push services, dialling only policy-approved addresses."""
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        # Keep-alive connections to one push service are reused; opening hundreds of
        # TLS connections at once would only stall the loop with handshakes.
        limit_per_host=min(concurrency, CONNECTIONS_PER_HOST),
        resolver=PolicyResolver(policy),
        ttl_dns_cache=60,
        keepalive_timeout=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0)),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "push_service"},
    )


class WebPushSender:
    def __init__(
        self, session: aiohttp.ClientSession, signer: VapidSigner, policy: EndpointPolicy
    ) -> None:
        self.session = session
        self.signer = signer
        self.policy = policy

    def headers(self, device: Device, options: PushOptions) -> dict[str, str]:
        headers = {
            "TTL": str(options.ttl),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self.signer.authorization(device.origin),
        }
        if options.urgency:
            headers["Urgency"] = options.urgency
        if options.topic:
            headers["Topic"] = options.topic
        return headers

    async def send(self, device: Device, payload: bytes, options: PushOptions) -> int:
        """Push once; returns the 2xx status or raises a PushError subclass.

        `device` passed the endpoint policy when it was parsed; the session's
        resolver checks the address again when it connects.
        """
        body = encrypt(payload, device.p256dh, device.auth)
        try:
            async with self.session.post(
                device.endpoint,
                data=body,
                headers=self.headers(device, options),
                allow_redirects=False,
            ) as response:
                reason = ""
                if response.status >= 300:
                    raw = await response.content.read(_REASON_BYTES)
                    reason = raw.decode("utf-8", "replace").strip()
                classify(response.status, response.headers, reason)
                return response.status
        except TimeoutError:
            raise TransientPushError("timed out") from None
        except aiohttp.ClientError as exc:
            raise TransientPushError(f"connection error: {type(exc).__name__}") from None
