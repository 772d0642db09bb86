"""Receipt URLs: how a browser tells the service a push was shown, clicked or closed.

Every payload carries `receipt`, the URL `<PUBLIC_BASE_URL>/receipts/<token>` (relative,
`/receipts/<token>`, when PUBLIC_BASE_URL is unset: the test page's service worker
resolves it against its own origin, which serves the API). The token names the
notification and the device and is signed with HMAC-SHA256 under RECEIPTS_SECRET:

    base64url(notification_id) "." device id "." base64url(HMAC(secret, id NUL device)[:16])

so the service checks it with no lookup, and nobody can make one for another device
or notification (128-bit tag). The secret must be the same on every replica: it is
required in production; in development it is derived (HKDF-SHA256) from the current
VAPID private key, which the replicas of a development setup share.

A token is per device, so each device's plaintext differs by its `receipt`: spliced
into the notification's JSON as its last member (a copy of the bytes, no re-encoding),
and each push is encrypted per device anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from push_service.config import Settings
from push_service.models import ID_PATTERN, Device, Notification
from push_service.vapid import private_key_raw_b64
from push_service.vapid_keys import VapidKeys

TAG_BYTES = 16
_DEVICE = re.compile(r"[0-9a-f]{24}")  # models.device.device_key
_HKDF_INFO = b"push_service receipts v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Receipts:
    def __init__(self, secret: bytes, base_url: str = "") -> None:
        self._secret = secret
        self.prefix = f"{base_url.rstrip('/')}/receipts/"

    @classmethod
    def from_settings(cls, settings: Settings, keys: VapidKeys) -> Receipts | None:
        """None when RECEIPTS_ENABLED is false."""
        if not settings.receipts_enabled:
            return None
        if settings.receipts_secret:
            secret = settings.receipts_secret.encode()
        else:
            raw = private_key_raw_b64(keys.current.private_key).encode()
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
            secret = hkdf.derive(raw)
        return cls(secret, settings.public_base_url)

    def _tag(self, notification_id: str, device: str) -> bytes:
        message = f"{notification_id}\0{device}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:TAG_BYTES]

    def token(self, notification_id: str, device: str) -> str:
        tag = self._tag(notification_id, device)
        return f"{_b64(notification_id.encode())}.{device}.{_b64(tag)}"

    def url(self, notification_id: str, device: str) -> str:
        return self.prefix + self.token(notification_id, device)

    def verify(self, token: str) -> tuple[str, str] | None:
        """(notification id, device id) of a genuine token; None for anything else."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 400 or not _DEVICE.fullmatch(parts[1]):
            return None
        try:
            notification_id = _unb64(parts[0]).decode()
            tag = _unb64(parts[2])
        except (binascii.Error, ValueError):
            return None
        if not ID_PATTERN.match(notification_id):
            return None
        if not hmac.compare_digest(tag, self._tag(notification_id, parts[1])):
            return None
        return notification_id, parts[1]

    def payload(self, n: Notification, device: Device) -> bytes:
        """The notification's plaintext with this device's `receipt` as its last member."""
        url = orjson.dumps(self.url(n.notification_id, device.key))
        return b"".join((n.payload[:-1], b',"receipt":', url, b"}"))
