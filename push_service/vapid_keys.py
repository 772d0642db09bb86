"""The service's VAPID keys by id: new subscriptions get the current one, and every
subscription is signed with the key it was made with.

A push service binds a subscription to the `applicationServerKey` it was made with and
refuses a push signed with any other (PITFALLS): changing the key in place would
silently break every subscriber. So keys are kept side by side under ids
(`VAPID_PRIVATE_KEY` is `default`, `VAPID_KEYS` adds more) and `VAPID_CURRENT_KEY_ID`
names the one `/vapid_public_key` hands out.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import ec

from push_service.config import Settings
from push_service.errors import ConfigError, UnknownVapidKey
from push_service.vapid import (
    VapidSigner,
    load_private_key,
    normalise_subject,
    parse_private_key,
    private_key_raw_b64,
    public_key_b64,
)

DEFAULT_KEY_ID = "default"


class VapidKeys:
    """Signers by key id; `current_id` is the key new subscriptions are made with."""

    def __init__(self, signers: Mapping[str, VapidSigner], current_id: str) -> None:
        if current_id not in signers:
            raise ConfigError(f"VAPID_CURRENT_KEY_ID {current_id!r} names no configured key")
        self._signers = dict(signers)
        self.current_id = current_id

    @classmethod
    def single(cls, signer: VapidSigner, key_id: str = DEFAULT_KEY_ID) -> VapidKeys:
        return cls({key_id: signer}, key_id)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._signers)

    @property
    def current(self) -> VapidSigner:
        return self._signers[self.current_id]

    def signer(self, key_id: str | None = None) -> VapidSigner:
        """The signer of `key_id` (None: the current key); UnknownVapidKey if there is none."""
        if key_id is None:
            return self.current
        try:
            return self._signers[key_id]
        except KeyError:
            raise UnknownVapidKey(
                f"vapid_key_id {key_id!r} is not a key of this service "
                f"(known: {', '.join(sorted(self._signers))})"
            ) from None

    def public_key(self, key_id: str | None = None) -> str:
        """The base64url public key of `key_id` (None: the current key)."""
        return self.signer(key_id).public_key

    def key_id_of(self, public_key: str) -> str | None:
        """The id of the key whose public key this is (as a page's applicationServerKey)."""
        for key_id, signer in self._signers.items():
            if signer.public_key == public_key.rstrip("="):
                return key_id
        return None

    def secrets(self) -> list[str]:
        """The private keys as raw base64url, for the log scrubber (never to be logged)."""
        return [private_key_raw_b64(signer.private_key) for signer in self._signers.values()]

    def candidates(self, key_id: str | None) -> list[tuple[str, VapidSigner]]:
        """The keys to try for a device: the one it names, or, when it names none, the
        current key first and then the others (a peer that does not say which key a
        subscription was made with must not lose it to a rotation)."""
        if key_id is not None:
            return [(key_id, self.signer(key_id))]
        rest = [(k, s) for k, s in self._signers.items() if k != self.current_id]
        return [(self.current_id, self.current), *rest]


def _private_keys(settings: Settings) -> dict[str, ec.EllipticCurvePrivateKey]:
    keys: dict[str, ec.EllipticCurvePrivateKey] = {}
    if settings.vapid_public_key and not settings.vapid_private_key:
        raise ConfigError("VAPID_PUBLIC_KEY is set but VAPID_PRIVATE_KEY is not")
    if settings.vapid_private_key or not settings.vapid_keys:
        # VAPID_PRIVATE_KEY, or in development without any key the kept generated one.
        keys[DEFAULT_KEY_ID] = load_private_key(settings)
    for key_id, value in settings.vapid_keys:
        if key_id in keys:
            raise ConfigError(f"VAPID_KEYS: key id {key_id!r} is VAPID_PRIVATE_KEY's")
        try:
            keys[key_id] = parse_private_key(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"VAPID_KEYS: key {key_id!r} is not a usable P-256 key: {exc}"
            ) from None
    publics: dict[str, str] = {}
    for key_id, key in keys.items():
        public = public_key_b64(key)
        if public in publics:
            raise ConfigError(f"VAPID_KEYS: keys {publics[public]!r} and {key_id!r} are the same")
        publics[public] = key_id
    return keys


def _current_id(settings: Settings, ids: list[str]) -> str:
    if settings.vapid_current_key_id:
        if settings.vapid_current_key_id not in ids:
            raise ConfigError(
                f"VAPID_CURRENT_KEY_ID {settings.vapid_current_key_id!r} names no key "
                f"(configured: {', '.join(ids)})"
            )
        return settings.vapid_current_key_id
    if len(ids) == 1:
        return ids[0]
    raise ConfigError(f"VAPID_CURRENT_KEY_ID is required with several keys ({', '.join(ids)})")


def load_vapid_keys(settings: Settings) -> VapidKeys:
    """Every configured key, the current one named, the subject checked; ConfigError if not."""
    if settings.production and not (settings.vapid_private_key or settings.vapid_keys):
        raise ConfigError("VAPID_PRIVATE_KEY (or VAPID_KEYS) is required when NODE_ENV=production")
    keys = _private_keys(settings)
    current = _current_id(settings, list(keys))
    subject = normalise_subject(settings.vapid_email, settings.production)
    return VapidKeys({k: VapidSigner(key, subject) for k, key in keys.items()}, current)
