"""VAPID (RFC 8292): the application server key pair and the signed JWT per origin.

Signing is done once per push-service origin and reused until shortly before it
expires, so a large fan-out costs one ECDSA signature per origin, not per message.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException

from push_service.config import Settings
from push_service.errors import ConfigError, PermanentPushError

log = logging.getLogger(__name__)

JWT_LIFETIME_SECONDS = 12 * 3600  # RFC 8292 allows up to 24 h; Apple rejects more.
JWT_RENEW_BEFORE_SECONDS = 3600
_MAX_CACHED_ORIGINS = 1024
# Standard base64 (DER) may contain "/": such a value is a key, not a path.
_BASE64_KEY = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")
_EMAIL = re.compile(r"^[^@\s:/]+@([^@\s:/]+\.[^@\s:/]+|localhost)$")


_BASE64 = re.compile(r"[A-Za-z0-9_\-+/]*=*")
_TO_STANDARD_BASE64 = bytes.maketrans(b"-_", b"+/")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raises ValueError on bad input.

    Standard base64 (`+/`) is accepted too. Runs for two keys of every device of
    every message, so it calls binascii directly.
    """
    if not _BASE64.fullmatch(text):
        raise ValueError("not base64url")
    stripped = text.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    return binascii.a2b_base64(padded.encode("ascii").translate(_TO_STANDARD_BASE64))


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url_encode(point)


def private_key_raw_b64(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def parse_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """Accept raw base64url (32 bytes), base64 DER, PEM text, or a path to a PEM/raw file."""
    text = value.strip()
    if "-----BEGIN" not in text and ("/" in text or text.endswith(".pem")):
        path = Path(text)
        if path.is_file():
            text = path.read_text(encoding="utf-8").strip()
        elif not _BASE64_KEY.fullmatch(text):
            # Never repeat the value: it may be a mistyped key, and this message is printed.
            raise ValueError("neither a key nor the path of a readable key file")
    if "-----BEGIN" in text:
        key = serialization.load_pem_private_key(text.replace("\\n", "\n").encode(), None)
    else:
        raw = b64url_decode(text)
        if len(raw) == 32:
            return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
        key = serialization.load_der_private_key(raw, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("not a P-256 (prime256v1) EC private key")
    return key


def _load_or_create_dev_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.is_file():
        try:
            return parse_private_key(str(path.resolve()))
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(f"VAPID_KEY_FILE {path}: {exc}") from None
    key = generate_private_key()
    # O_EXCL + 0600: never clobber an existing key, never make it world-readable.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key))
    except OSError as exc:
        raise ConfigError(f"VAPID_KEY_FILE {path}: cannot create the key file: {exc}") from None
    log.warning("generated a development VAPID key pair in %s (mode 0600)", path)
    return key


def load_private_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """The configured key; in development a kept, generated one; never generated in production."""
    if settings.vapid_private_key:
        try:
            key = parse_private_key(settings.vapid_private_key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"VAPID_PRIVATE_KEY is not a usable P-256 key: {exc}") from None
    elif settings.production:
        raise ConfigError("VAPID_PRIVATE_KEY is required when NODE_ENV=production")
    elif settings.vapid_public_key:
        raise ConfigError("VAPID_PUBLIC_KEY is set but VAPID_PRIVATE_KEY is not")
    else:
        key = _load_or_create_dev_key(Path(settings.vapid_key_file))
    if settings.vapid_public_key and _decoded(settings.vapid_public_key) != b64url_decode(
        public_key_b64(key)
    ):
        raise ConfigError("VAPID_PUBLIC_KEY does not match VAPID_PRIVATE_KEY")
    return key


def _decoded(text: str) -> bytes | None:
    try:
        return b64url_decode(text)
    except ValueError:
        return None


# Top-level domains that never reach anyone (RFC 2606, RFC 6761, RFC 6762, ICANN .internal).
_RESERVED_TLDS = frozenset({"localhost", "local", "test", "invalid", "example", "internal"})
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")  # never digits: an IP address is no domain


def public_domain(host: str) -> bool:
    """Whether `host` is a domain name someone could be reached at (not localhost, not an IP)."""
    try:
        ascii_host = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        return False
    labels = ascii_host.split(".")
    return (
        len(labels) >= 2
        and labels[-1] not in _RESERVED_TLDS
        and _TLD.fullmatch(labels[-1]) is not None
        and all(_LABEL.fullmatch(label) for label in labels)
    )


def _check_domain(host: str, contact: str, production: bool) -> None:
    """Apple's push service answers 403 BadJwtToken to a `sub` it cannot reach (PITFALLS)."""
    if public_domain(host):
        return
    problem = (
        f"VAPID_EMAIL {contact.strip()!r} is not a public contact (an e-mail address at a real"
        " domain or an https URL): Apple's push service rejects it with 403 BadJwtToken"
    )
    if production:
        raise ConfigError(problem)
    log.warning("%s", problem)


def normalise_subject(contact: str, production: bool) -> str:
    """The JWT `sub`: `mailto:` + address, or an https URL; fixed and checked at start-up.

    A contact Apple would refuse (localhost, an IP address, a reserved domain) is a
    ConfigError in production and a warning in development.
    """
    text = "".join(contact.split())
    if not text:
        if production:
            raise ConfigError("VAPID_EMAIL is required when NODE_ENV=production")
        text = "push-service@example.com"
    if text.lower().startswith("https://"):
        try:
            host = urlsplit(text).hostname or ""
        except ValueError:
            host = ""
        if not host:
            raise ConfigError(f"VAPID_EMAIL is not a valid https URL, got {contact!r}")
        _check_domain(host, contact, production)
        return text
    while text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    if not _EMAIL.match(text):
        raise ConfigError(f"VAPID_EMAIL must be an e-mail address or https URL, got {contact!r}")
    _check_domain(text.rsplit("@", 1)[1], contact, production)
    return f"mailto:{text}"


@dataclass
class _Token:
    header: str
    renew_at: float


class VapidSigner:
    """Builds `Authorization: vapid t=..., k=...` per origin, cached until near expiry."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        subject: str,
        lifetime: int = JWT_LIFETIME_SECONDS,
    ) -> None:
        self._vapid = Vapid02(private_key)
        self.private_key = private_key
        self.public_key = public_key_b64(private_key)
        self.subject = subject
        self.lifetime = lifetime
        self._cache: OrderedDict[str, _Token] = OrderedDict()

    def authorization(self, origin: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        token = self._cache.get(origin)
        if token is None or now >= token.renew_at:
            token = self._sign(origin, now)
            self._cache[origin] = token
            if len(self._cache) > _MAX_CACHED_ORIGINS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(origin)  # least recently used origins are evicted first
        return token.header

    def _sign(self, origin: str, now: float) -> _Token:
        exp = int(now) + self.lifetime
        # A fresh claims dict per origin: a shared one leaks a stale `aud` (PITFALLS).
        claims = {"aud": origin, "exp": exp, "sub": self.subject}
        try:
            signed = self._vapid.sign(claims)["Authorization"]
        except VapidException as exc:
            # py-vapid refuses some origins (e.g. IPv6 literals): fail that push, not the loop.
            raise PermanentPushError(f"cannot sign VAPID for {origin}: {exc}") from None
        jwt = signed.split("t=", 1)[1].split(",", 1)[0]
        renew_at = exp - min(JWT_RENEW_BEFORE_SECONDS, self.lifetime / 2)
        return _Token(f"vapid t={jwt}, k={self.public_key}", renew_at)
