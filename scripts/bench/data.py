"""Test data shared by every contender: keys, subscriptions, payloads, queue messages.

Standard library at import time (the pywebpush client imports it in the bench venv);
`cryptography` and `py_vapid` only inside the functions that need them.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

PAYLOAD_SIZE = 300
TTL = 60
SUBJECT = "mailto:bench@example.com"
SUBSCRIPTIONS = 64


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def origin(url: str) -> str:
    """`https://host:port` of any URL on it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def make_vapid(subject: str = SUBJECT) -> dict[str, str]:
    """A fresh VAPID key as web-push tools print it: raw base64url private (32 bytes)
    and public (65-byte uncompressed point) keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {"subject": subject, "private_key": b64u(private), "public_key": b64u(public)}


def make_subscriptions(base_url: str, count: int = SUBSCRIPTIONS) -> list[dict[str, Any]]:
    """PushSubscription dicts with real P-256 keys, endpoints `{origin}/push/<i>`.
    The private halves are dropped: the sink does not decrypt."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    base = origin(base_url)
    subscriptions = []
    for i in range(count):
        public = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
        keys = {"p256dh": b64u(public), "auth": b64u(os.urandom(16))}
        subscriptions.append({"endpoint": f"{base}/push/{i}", "expirationTime": None, "keys": keys})
    return subscriptions


def make_payload(i: int, size: int = PAYLOAD_SIZE) -> bytes:
    """The plaintext of push i: the service's notification JSON padded to `size` bytes
    (makePayload() in node/baseline.js builds the same)."""
    message = {
        "notification_id": f"bench-{i:08d}",
        "title": "Benchmark",
        "body": "",
        "action_url": "https://example.com/bench",
    }
    pad = size - len(json.dumps(message, separators=(",", ":")))
    message["body"] = "x" * max(0, pad)
    return json.dumps(message, separators=(",", ":")).encode()


def queue_message(
    notification_id: str, devices: list[dict[str, Any]], payload_size: int = PAYLOAD_SIZE
) -> bytes:
    """A queue message of the contract, its push payload about `payload_size` bytes."""
    body: dict[str, Any] = {
        "notification_id": notification_id,
        "user_id": "bench",
        "devices": [{"endpoint": d["endpoint"], "keys": d["keys"]} for d in devices],
        "title": "Benchmark",
        "body": "",
        "action_url": "https://example.com/bench",
    }
    shown = {k: body[k] for k in ("title", "body", "action_url")}
    pad = payload_size - len(json.dumps(shown, separators=(",", ":")))
    body["body"] = "x" * max(0, pad - 40)
    return json.dumps(body, separators=(",", ":")).encode()


def push_headers(private_key: str, subject: str, url: str, ttl: int = TTL) -> dict[str, str]:
    """The headers of every push to `url`'s origin, with one VAPID JWT for the run."""
    from py_vapid import Vapid

    vapid = Vapid.from_raw(private_key.encode())
    claims = {"sub": subject, "aud": origin(url), "exp": int(time.time()) + 12 * 3600}
    return {
        "TTL": str(ttl),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        **vapid.sign(claims),
    }
