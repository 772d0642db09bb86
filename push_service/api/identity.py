"""Who a subscriber is: optional verification of the caller's bearer JWT at /subscribe.

Configured with one key (`SUBSCRIBE_JWT_SECRET` for HS256, `SUBSCRIBE_JWT_PUBLIC_KEY`
as PEM text or file, or a `SUBSCRIBE_JWT_JWKS_FILE`), the verifier turns a token into
the user id it vouches for. Without a key, or without a token, a `user_id` in the body
is only a claim: the API marks it unverified and the service never reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from push_service.config import Settings
from push_service.errors import AuthenticationFailed, ConfigError

LEEWAY_SECONDS = 30  # clock skew between the identity provider and this service
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True)
class Identity:
    """The outcome for one request: the user id to record, and whether it is vouched for."""

    user_id: str | None
    verified: bool


def _pem_text(value: str) -> bytes:
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ConfigError(f"SUBSCRIBE_JWT_PUBLIC_KEY: cannot read {value!r}: {exc}") from None


def _public_key(value: str) -> tuple[Any, tuple[str, ...]]:
    """A PEM public key and the signature algorithms that key type admits."""
    try:
        key = load_pem_public_key(_pem_text(value))
    except ValueError:
        raise ConfigError("SUBSCRIBE_JWT_PUBLIC_KEY is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, _RSA
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return key, (_CURVES[key.curve.name],)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, ("EdDSA",)
    raise ConfigError("SUBSCRIBE_JWT_PUBLIC_KEY must be an RSA, P-256/384/521 or Ed25519 key")


def _jwks(path: str) -> dict[str | None, jwt.PyJWK]:
    try:
        keys = jwt.PyJWKSet.from_json(Path(path).read_text(encoding="utf-8")).keys
    except OSError as exc:
        raise ConfigError(f"SUBSCRIBE_JWT_JWKS_FILE: cannot read {path!r}: {exc}") from None
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        # The library's message may quote key material: name only its kind.
        raise ConfigError(
            f"SUBSCRIBE_JWT_JWKS_FILE: not a usable JWK set ({type(exc).__name__})"
        ) from None
    return {key.key_id: key for key in keys}


class SubscriberVerifier:
    """Verifies subscriber tokens; `enabled` is False when no key is configured."""

    def __init__(self, settings: Settings) -> None:
        self.claim = settings.subscribe_jwt_user_claim
        self.audience = list(settings.subscribe_jwt_audience) or None
        self.issuer = settings.subscribe_jwt_issuer or None
        self.required = settings.subscribe_jwt_required
        self._key: Any = None
        self._algorithms: tuple[str, ...] = ()
        self._jwks: dict[str | None, jwt.PyJWK] = {}
        if settings.subscribe_jwt_secret:
            self._key, self._algorithms = settings.subscribe_jwt_secret.encode(), ("HS256",)
        elif settings.subscribe_jwt_public_key:
            self._key, self._algorithms = _public_key(settings.subscribe_jwt_public_key)
        elif settings.subscribe_jwt_jwks_file:
            self._jwks = _jwks(settings.subscribe_jwt_jwks_file)

    @property
    def enabled(self) -> bool:
        return self._key is not None or bool(self._jwks)

    def verify(self, token: str | None) -> str | None:
        """The user id a token vouches for; None without a token (or without a key).

        Raises AuthenticationFailed for a token that does not verify, or for a
        missing one when `SUBSCRIBE_JWT_REQUIRED` is set.
        """
        if token is not None and self.enabled:
            return self._verified_user_id(token)
        if self.required:
            raise AuthenticationFailed(
                "unauthorized", "this endpoint needs Authorization: Bearer <JWT>"
            )
        return None

    def identity(self, verified_user_id: str | None, claimed_user_id: str | None) -> Identity:
        """Combine the token's user id with the body's; a body naming someone else is refused."""
        if verified_user_id is None:
            return Identity(claimed_user_id, verified=False)
        if claimed_user_id is not None and claimed_user_id != verified_user_id:
            raise AuthenticationFailed(
                "user_id_mismatch", f"user_id does not match the token's {self.claim!r} claim"
            )
        return Identity(verified_user_id, verified=True)

    def _verified_user_id(self, token: str) -> str:
        key, algorithms = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("invalid_token", f"the token was refused: {exc}") from None
        value = claims.get(self.claim)
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value):
            raise AuthenticationFailed(
                "invalid_token", f"the token has no usable {self.claim!r} claim"
            )
        if len(str(value)) > 256:
            raise AuthenticationFailed("invalid_token", f"the {self.claim!r} claim is too long")
        return str(value)

    def _key_for(self, token: str) -> tuple[Any, tuple[str, ...]]:
        if not self._jwks:
            return self._key, self._algorithms
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("invalid_token", f"the token was refused: {exc}") from None
        key = self._jwks.get(kid)
        if key is None and kid is None and len(self._jwks) == 1:
            key = next(iter(self._jwks.values()))
        if key is None:
            raise AuthenticationFailed("invalid_token", "the token's key id is not known")
        return key, (key.algorithm_name,)
