"""Sending one web push: RFC 8291 encryption, RFC 8292 VAPID, RFC 8030 request.

The sender knows nothing of queues or status: it turns a device and a payload
into one HTTP request and maps the answer onto the exceptions of `errors`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass

import aiohttp
import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from push_service.answers import classify as classify
from push_service.answers import parse_retry_after as parse_retry_after
from push_service.endpoints import EndpointPolicy, PolicyResolver
from push_service.errors import PayloadTooLarge, TransientPushError, VapidKeyMismatch
from push_service.models import MAX_PLAINTEXT_BYTES, Device
from push_service.vapid import VapidSigner
from push_service.vapid_keys import VapidKeys

# http_ece asks cryptography for its backend four times per push; the backend is one
# process-wide object, so hand http_ece a lookup that costs nothing.
http_ece.default_backend = functools.cache(http_ece.default_backend)

RECORD_SIZE = 4096
CONNECTIONS_PER_HOST = 64
_REASON_BYTES = 2048
_PLAIN_TOPIC = re.compile(r"[A-Za-z0-9]{1,32}")


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


def topic_header(topic: str) -> str:
    """The `Topic` header for a message's topic, one that every push service takes.

    Mozilla takes only `[A-Za-z0-9]`, Apple decodes it as base64url (a length of 1 mod 4
    is no base64) and RFC 8030 allows at most 32 characters. A topic that is all that
    already is sent as it is; any other becomes the first 32 hex digits of its SHA-256,
    so the same topic always gives the same header (and replaces the same push).
    """
    if _PLAIN_TOPIC.fullmatch(topic) and len(topic) % 4 != 1:
        return topic
    return hashlib.sha256(topic.encode()).hexdigest()[:32]


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
        self,
        session: aiohttp.ClientSession,
        keys: VapidKeys | VapidSigner,
        policy: EndpointPolicy,
    ) -> None:
        self.session = session
        self.keys = keys if isinstance(keys, VapidKeys) else VapidKeys.single(keys)
        self.policy = policy

    def headers(
        self, device: Device, options: PushOptions, signer: VapidSigner | None = None
    ) -> dict[str, str]:
        signer = signer or self.keys.signer(device.key_id)
        headers = {
            "TTL": str(options.ttl),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": signer.authorization(device.origin),
        }
        if options.urgency:
            headers["Urgency"] = options.urgency
        if options.topic:
            headers["Topic"] = topic_header(options.topic)
        return headers

    async def send(self, device: Device, payload: bytes, options: PushOptions) -> int:
        """Push once; returns the 2xx status or raises a PushError subclass.

        A device that names its VAPID key is signed with that key (UnknownVapidKey if
        the service has none by that id). One that does not is signed with the current
        key, and on a key mismatch with each other key in turn: a peer that does not
        say which key a subscription was made with does not lose it to a rotation.
        `device` passed the endpoint policy when it was parsed; the session's resolver
        checks the address again when it connects.
        """
        body = encrypt(payload, device.p256dh, device.auth)
        mismatch: VapidKeyMismatch | None = None
        for _, signer in self.keys.candidates(device.key_id):
            try:
                return await self._post(
                    device, body, self.headers(device, options, signer), len(payload)
                )
            except VapidKeyMismatch as exc:
                mismatch = exc
        assert mismatch is not None  # candidates() is never empty
        raise mismatch

    async def _post(
        self, device: Device, body: bytes, headers: dict[str, str], payload_bytes: int
    ) -> int:
        try:
            async with self.session.post(
                device.endpoint, data=body, headers=headers, allow_redirects=False
            ) as response:
                reason = ""
                if response.status >= 300:
                    raw = await response.content.read(_REASON_BYTES)
                    reason = raw.decode("utf-8", "replace")
                classify(response.status, response.headers, reason, payload_bytes)
                return response.status
        except TimeoutError:
            raise TransientPushError("timed out") from None
        except aiohttp.ClientError as exc:
            raise TransientPushError(f"connection error: {type(exc).__name__}") from None
