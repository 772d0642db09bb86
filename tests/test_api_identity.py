"""Subscriber identity (push_service.api.identity): JWT verification at /subscribe, and
the attack it closes: an anonymous caller naming a victim's user_id must never make
the service report that user to the User Service."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from push_service.api.identity import SubscriberVerifier
from push_service.config import Settings
from push_service.errors import AuthenticationFailed, ConfigError
from tests.conftest import ServiceFactory
from tests.support import (
    PushServer,
    Rabbit,
    Service,
    VapidPair,
    assert_error,
    call,
    final_record,
    stub_server,
    unique,
    wait_until,
)

SECRET = "s" * 40
VICTIM = "victim-admin-42"


def token(
    claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256", **headers: Any
) -> str:
    return jwt.encode({"exp": int(time.time()) + 300, **claims}, key, algorithm, headers=headers)


def hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed with any bytes (PyJWT refuses a PEM key as a secret)."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    claims = {"exp": int(time.time()) + 300, **claims}
    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(orjson.dumps(claims))
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + part(signature)).decode()


def verifier(**settings: Any) -> SubscriberVerifier:
    return SubscriberVerifier(dataclasses.replace(Settings(), **settings))


def pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --- the verifier -------------------------------------------------------------------------


def test_hs256_token_gives_its_user_and_a_mismatching_body_is_refused() -> None:
    v = verifier(subscribe_jwt_secret=SECRET)

    user = v.verify(token({"sub": "alice"}))

    assert user == "alice"
    assert v.identity(user, None) == v.identity(user, "alice")
    assert v.identity(user, None).verified
    with pytest.raises(AuthenticationFailed) as refused:
        v.identity(user, VICTIM)
    assert refused.value.code == "user_id_mismatch"


@pytest.mark.parametrize(
    ("what", "bad"),
    [
        ("expired", lambda: token({"sub": "a", "exp": int(time.time()) - 3600})),
        ("no exp", lambda: jwt.encode({"sub": "a"}, SECRET, "HS256")),
        ("other secret", lambda: token({"sub": "a"}, "t" * 40)),
        ("alg none", lambda: jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, "", "none")),
        ("no sub", lambda: token({"user": "a"})),
        ("sub not a string", lambda: token({"sub": {"id": 1}})),
        ("garbage", lambda: "not.a.jwt"),
    ],
)
def test_bad_tokens_are_refused(what: str, bad: Any) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        verifier(subscribe_jwt_secret=SECRET).verify(bad())
    assert refused.value.code == "invalid_token", what


def test_public_key_audience_issuer_and_claim() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    v = verifier(
        subscribe_jwt_public_key=pem(key),
        subscribe_jwt_audience=("push",),
        subscribe_jwt_issuer="https://id.example.com",
        subscribe_jwt_user_claim="uid",
    )
    good = {"uid": 42, "aud": "push", "iss": "https://id.example.com"}

    assert v.verify(token(good, key, "ES256")) == "42"
    for claims in ({**good, "aud": "other"}, {**good, "iss": "https://evil"}, {"uid": 1}):
        with pytest.raises(AuthenticationFailed):
            v.verify(token(claims, key, "ES256"))
    # Algorithm confusion: the public key used as an HMAC secret.
    with pytest.raises(AuthenticationFailed):
        v.verify(hs256_by_hand(good, pem(key).encode()))


def test_jwks_file_selects_the_key_by_kid(tmp_path: Path) -> None:
    keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in "ab"}
    jwks: dict[str, list[dict[str, Any]]] = {"keys": []}
    for kid, key in keys.items():
        jwk = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwks["keys"].append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    path = tmp_path / "jwks.json"
    path.write_bytes(orjson.dumps(jwks))
    v = verifier(subscribe_jwt_jwks_file=str(path))

    assert v.verify(token({"sub": "bob"}, keys["b"], "RS256", kid="b")) == "bob"
    with pytest.raises(AuthenticationFailed):
        v.verify(token({"sub": "bob"}, keys["a"], "RS256", kid="b"))
    with pytest.raises(AuthenticationFailed):
        v.verify(token({"sub": "bob"}, keys["a"], "RS256", kid="unknown"))


def test_without_a_key_or_a_token_the_body_user_id_is_unverified() -> None:
    v = verifier()
    assert not v.enabled
    assert v.verify(token({"sub": "x"})) is None  # a token nobody can check is ignored
    assert v.identity(None, VICTIM) == v.identity(None, VICTIM)
    assert not v.identity(None, VICTIM).verified
    required = verifier(subscribe_jwt_secret=SECRET, subscribe_jwt_required=True)
    with pytest.raises(AuthenticationFailed):
        required.verify(None)


def test_bad_key_settings_fail_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"keys": [{"kty": "oct"}]}')
    for settings in (
        {"subscribe_jwt_public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"},
        {"subscribe_jwt_public_key": str(tmp_path / "missing.pem")},
        {"subscribe_jwt_jwks_file": str(tmp_path / "missing.json")},
        {"subscribe_jwt_jwks_file": str(tmp_path / "bad.json")},
    ):
        with pytest.raises(ConfigError, match="SUBSCRIBE_JWT_"):
            verifier(**settings)


# --- the attack, end to end ----------------------------------------------------------------


async def subscribe(
    http: aiohttp.ClientSession, service: Service, body: dict[str, Any], bearer: str | None = None
) -> Any:
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    return await call(http, "POST", f"{service.base_url}/subscribe", json=body, headers=headers)


async def device_outcome(
    http: aiohttp.ClientSession, service: Service, notification_id: str
) -> dict[str, Any]:
    return await final_record(service.base_url, notification_id)


@pytest.mark.e2e
async def test_anonymous_subscribe_never_reports_the_claimed_user(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
    rabbit: Rabbit,
) -> None:
    async with stub_server() as users:
        service = await service_factory(USER_SERVICE_URL=users.base_url)
        subscription, client_hash = await pushserver.subscribe(vapid.public)
        await pushserver.expire(client_hash)

        answer = await subscribe(http, service, {**subscription, "user_id": VICTIM})
        assert answer.status == 202, answer.text
        record = await device_outcome(http, service, answer.json["notification_id"])

        assert record["status"] == "failed"
        assert record["user_id"] == VICTIM
        assert record["user_verified"] is False
        [device] = record["devices"]
        assert device["reason"] == "subscription_gone"
        assert device["deactivation"] == "skipped: unverified user_id"
        # A peer that publishes with the header as text is taken at its word too.
        peer_id = unique("peer-unverified")
        await rabbit.publish(
            service.queue,
            {
                "notification_id": peer_id,
                "user_id": VICTIM,
                "devices": [subscription],
                "title": "t",
            },
            headers={"x-push-user-verified": "false"},
        )
        assert (await device_outcome(http, service, peer_id))["user_verified"] is False
    assert users.requests == []


@pytest.mark.e2e
async def test_a_verified_subscriber_is_reported_and_impostors_are_refused(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    async with stub_server() as users:
        service = await service_factory(
            USER_SERVICE_URL=users.base_url, SUBSCRIBE_JWT_SECRET=SECRET, SUBSCRIBE_RATE_LIMIT="0"
        )
        subscription, client_hash = await pushserver.subscribe(vapid.public)
        await pushserver.expire(client_hash)

        mismatch = await subscribe(
            http, service, {**subscription, "user_id": VICTIM}, token({"sub": "alice"})
        )
        assert_error(mismatch, 403, "user_id_mismatch")
        forged = await subscribe(http, service, subscription, token({"sub": VICTIM}, "x" * 40))
        assert_error(forged, 401, "invalid_token")
        assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]
        answer = await subscribe(http, service, subscription, token({"sub": "alice"}))
        assert answer.status == 202, answer.text
        notification_id = answer.json["notification_id"]
        record = await device_outcome(http, service, notification_id)
        assert record["user_id"] == "alice"
        assert record["user_verified"] is True

        async def answered() -> bool:  # the relay reports it off the delivery path
            record = await device_outcome(http, service, notification_id)
            return bool(record["devices"][0]["deactivation"] == "ok")

        await wait_until(answered, message="the deactivation to be answered")
    told = [(r["path"], r["json"]["user_id"]) for r in users.requests]
    assert told == [
        ("/api/v1/push-subscriptions", "alice"),  # registered, then found gone
        ("/api/v1/push-subscriptions/deactivate", "alice"),
    ]


@pytest.mark.e2e
async def test_required_jwt_refuses_anonymous_subscriptions(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    service = await service_factory(SUBSCRIBE_JWT_SECRET=SECRET, SUBSCRIBE_JWT_REQUIRED="true")
    subscription, _ = await pushserver.subscribe(vapid.public)

    answer = await subscribe(http, service, subscription)

    assert_error(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
