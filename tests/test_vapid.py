"""VAPID (RFC 8292): claims checked with PyJWT, subject normalisation, caching, key loading."""

from __future__ import annotations

import base64
import logging
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from push_service import vapid
from push_service.config import Settings
from push_service.errors import ConfigError, PermanentPushError, UnknownVapidKey
from push_service.vapid import (
    VapidSigner,
    b64url_decode,
    b64url_encode,
    generate_private_key,
    load_private_key,
    normalise_subject,
    parse_private_key,
    private_key_pem,
    private_key_raw_b64,
    public_key_b64,
)
from push_service.vapid_keys import load_vapid_keys


def settings(**env: str) -> Settings:
    return Settings.from_env(env, env_file=None)


def split_header(header: str) -> tuple[str, str]:
    assert header.startswith("vapid t=")
    token_part, key_part = header[len("vapid ") :].split(", ")
    assert token_part.startswith("t=") and key_part.startswith("k=")
    return token_part[2:], key_part[2:]


def verify(header: str, key: ec.EllipticCurvePrivateKey, audience: str) -> dict[str, object]:
    """Verify with PyJWT (an independent implementation) against the public key."""
    token, k = split_header(header)
    assert k == public_key_b64(key)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims: dict[str, object] = jwt.decode(
        token,
        public_pem,
        algorithms=["ES256"],
        audience=audience,
        options={"require": ["aud", "exp", "sub"]},
    )
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    return claims


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


# --- the JWT ------------------------------------------------------------------------------


def test_an_origin_py_vapid_refuses_is_a_permanent_push_error(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """py-vapid's `aud` check refuses IPv6 literals: that push fails, the consumer goes on."""
    signer = VapidSigner(key, "mailto:ops@example.com")
    with pytest.raises(PermanentPushError, match="cannot sign VAPID"):
        signer.authorization("https://[2001:db8::1]:8443")


@pytest.mark.parametrize(
    "origin",
    [
        "https://fcm.googleapis.com",
        "http://localhost:8080",
        "https://updates.push.services.mozilla.com",
    ],
)
def test_jwt_claims_verify_with_pyjwt(key: ec.EllipticCurvePrivateKey, origin: str) -> None:
    signer = VapidSigner(key, "mailto:ops@example.com")
    before = time.time()
    claims = verify(signer.authorization(origin), key, origin)
    assert claims["aud"] == origin
    assert claims["sub"] == "mailto:ops@example.com"
    exp = claims["exp"]
    assert isinstance(exp, int)
    assert before < exp <= before + 24 * 3600


def test_jwt_signed_by_another_key_fails_verification(key: ec.EllipticCurvePrivateKey) -> None:
    other = VapidSigner(generate_private_key(), "mailto:ops@example.com")
    token, _ = split_header(other.authorization("https://fcm.googleapis.com"))
    forged = f"vapid t={token}, k={public_key_b64(key)}"
    with pytest.raises(jwt.InvalidSignatureError):
        verify(forged, key, "https://fcm.googleapis.com")


def test_jwt_is_cached_per_origin_and_renewed(key: ec.EllipticCurvePrivateKey) -> None:
    signer = VapidSigner(key, "mailto:ops@example.com", lifetime=12 * 3600)
    now = 1_700_000_000.0
    first = signer.authorization("https://fcm.googleapis.com", now=now)
    assert signer.authorization("https://fcm.googleapis.com", now=now + 60) == first
    other = signer.authorization("https://web.push.apple.com", now=now)
    assert other != first
    token, _ = split_header(other)
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == (
        "https://web.push.apple.com"
    )
    # Eleven hours later (one before expiry) a fresh token is signed.
    renewed = signer.authorization("https://fcm.googleapis.com", now=now + 11 * 3600)
    assert renewed != first
    claims = jwt.decode(split_header(renewed)[0], options={"verify_signature": False})
    assert claims["exp"] == int(now + 11 * 3600) + 12 * 3600


def test_cached_token_is_never_served_past_expiry(key: ec.EllipticCurvePrivateKey) -> None:
    signer = VapidSigner(key, "mailto:ops@example.com", lifetime=600)
    now = 1_700_000_000.0
    for step in range(0, 3000, 50):
        header = signer.authorization("https://fcm.googleapis.com", now=now + step)
        exp = jwt.decode(split_header(header)[0], options={"verify_signature": False})["exp"]
        assert exp > now + step


# --- subject ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        ("ops@example.com", "mailto:ops@example.com"),
        ("mailto:ops@example.com", "mailto:ops@example.com"),
        ("mailto: ops@example.com", "mailto:ops@example.com"),
        ("mailto: mailto:a@b.com", "mailto:a@b.com"),
        ("MAILTO:a@b.com", "mailto:a@b.com"),
        ("  a@b.com  ", "mailto:a@b.com"),
        ("https://example.com/contact", "https://example.com/contact"),
    ],
)
def test_subject_is_normalised_once(contact: str, expected: str) -> None:
    assert normalise_subject(contact, production=True) == expected


@pytest.mark.parametrize("contact", ["not an email", "http://example.com", "mailto:", "a@b"])
def test_bad_subject_is_a_config_error(contact: str) -> None:
    with pytest.raises(ConfigError, match="VAPID_EMAIL"):
        normalise_subject(contact, production=False)


def test_localhost_contact_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="push_service.vapid"):
        assert normalise_subject("dev@localhost", production=False) == "mailto:dev@localhost"
    assert any("Apple" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="push_service.vapid"):
        normalise_subject("ops@example.com", production=False)
    assert not caplog.records


def test_empty_contact() -> None:
    with pytest.raises(ConfigError, match="VAPID_EMAIL"):
        normalise_subject("", production=True)
    assert normalise_subject("", production=False).startswith("mailto:")


# --- key loading --------------------------------------------------------------------------


def test_raw_base64url_key(key: ec.EllipticCurvePrivateKey) -> None:
    loaded = load_private_key(settings(VAPID_PRIVATE_KEY=private_key_raw_b64(key)))
    assert public_key_b64(loaded) == public_key_b64(key)


def test_pem_inline_with_literal_newlines_and_file(
    key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    pem = private_key_pem(key).decode()
    escaped = pem.strip().replace("\n", "\\n")
    path = tmp_path / "vapid.pem"
    path.write_text(pem, encoding="utf-8")
    for value in (pem, escaped, str(path)):
        loaded = load_private_key(
            settings(VAPID_PRIVATE_KEY=value, VAPID_PUBLIC_KEY=public_key_b64(key))
        )
        assert public_key_b64(loaded) == public_key_b64(key)


def test_base64_der_key(key: ec.EllipticCurvePrivateKey) -> None:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    loaded = parse_private_key(b64url_encode(der))
    assert public_key_b64(loaded) == public_key_b64(key)


def test_public_key_given_with_padding_or_standard_alphabet(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    point = b64url_decode(public_key_b64(key))
    for form in (public_key_b64(key) + "=", base64.b64encode(point).decode()):
        loaded = load_private_key(
            settings(VAPID_PRIVATE_KEY=private_key_raw_b64(key), VAPID_PUBLIC_KEY=form)
        )
        assert public_key_b64(loaded) == public_key_b64(key)


@pytest.mark.parametrize(
    "value",
    [
        "not-a-key!",
        "AAAA",  # decodes, but is neither 32 raw bytes nor DER
        b64url_encode(b"\x00" * 32),  # zero is not a valid scalar
        b64url_encode(b"\xff" * 32),  # above the group order
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        "/nonexistent/vapid.pem",
    ],
)
def test_bad_private_key_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY"):
        load_private_key(settings(VAPID_PRIVATE_KEY=value))


def test_non_p256_key_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    pem = private_key_pem(other).decode()
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY"):
        load_private_key(settings(VAPID_PRIVATE_KEY=pem))


def test_mismatched_public_key_names_it(key: ec.EllipticCurvePrivateKey) -> None:
    other = public_key_b64(generate_private_key())
    for public in (other, "garbage!"):
        with pytest.raises(ConfigError, match="VAPID_PUBLIC_KEY"):
            load_private_key(
                settings(VAPID_PRIVATE_KEY=private_key_raw_b64(key), VAPID_PUBLIC_KEY=public)
            )


def test_production_never_generates_a_key(tmp_path: Path) -> None:
    key_file = tmp_path / "dev.pem"
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY"):
        load_private_key(settings(NODE_ENV="production", VAPID_KEY_FILE=str(key_file)))
    assert not key_file.exists()


def test_public_key_without_private_key_is_an_error(tmp_path: Path) -> None:
    key_file = tmp_path / "dev.pem"
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY"):
        load_private_key(
            settings(
                VAPID_PUBLIC_KEY=public_key_b64(generate_private_key()),
                VAPID_KEY_FILE=str(key_file),
            )
        )
    assert not key_file.exists()


def test_development_generates_a_private_key_file_once(tmp_path: Path) -> None:
    key_file = tmp_path / "dev-key.pem"
    first = load_private_key(settings(VAPID_KEY_FILE=str(key_file)))
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key_file.read_text(encoding="utf-8")
    second = load_private_key(settings(VAPID_KEY_FILE=str(key_file)))
    assert public_key_b64(second) == public_key_b64(first)


def test_development_key_file_that_is_corrupt_or_uncreatable(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pem"
    corrupt.write_text("garbage", encoding="utf-8")
    with pytest.raises(ConfigError, match="VAPID_KEY_FILE"):
        load_private_key(settings(VAPID_KEY_FILE=str(corrupt)))
    missing_dir = tmp_path / "no" / "such" / "dir" / "key.pem"
    with pytest.raises(ConfigError, match="VAPID_KEY_FILE"):
        load_private_key(settings(VAPID_KEY_FILE=str(missing_dir)))


def test_origin_cache_is_bounded_and_keeps_recently_used(
    key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vapid, "_MAX_CACHED_ORIGINS", 3)
    signer = VapidSigner(key, "mailto:ops@example.com")
    now = 1_700_000_000.0
    hot = signer.authorization("https://hot.example", now=now)
    for i in range(10):
        signer.authorization(f"https://cold{i}.example", now=now)
        assert signer.authorization("https://hot.example", now=now) == hot  # still cached
    assert len(signer._cache) == 3


# --- several keys (VAPID_KEYS, VAPID_CURRENT_KEY_ID) ----------------------------------------


def test_several_keys_load_by_id_with_the_current_one_named() -> None:
    old, new = generate_private_key(), generate_private_key()
    keys = load_vapid_keys(
        settings(
            VAPID_PRIVATE_KEY=private_key_raw_b64(old),
            VAPID_KEYS=f" new = {private_key_raw_b64(new)} ",
            VAPID_CURRENT_KEY_ID="new",
            VAPID_EMAIL="ops@example.com",
        )
    )
    assert keys.ids == {"default", "new"} and keys.current_id == "new"
    assert keys.public_key() == public_key_b64(new)
    assert keys.public_key("default") == public_key_b64(old)
    assert keys.key_id_of(public_key_b64(old) + "=") == "default"
    assert keys.key_id_of(public_key_b64(generate_private_key())) is None
    assert [k for k, _ in keys.candidates(None)] == ["new", "default"]
    assert [k for k, _ in keys.candidates("default")] == ["default"]
    assert private_key_raw_b64(old) in keys.secrets()
    with pytest.raises(UnknownVapidKey, match=r"'gone'.*default, new"):
        keys.signer("gone")
    # One key, named by VAPID_KEYS only: it is the current one, VAPID_PRIVATE_KEY unneeded.
    only = load_vapid_keys(
        settings(NODE_ENV="production", VAPID_KEYS=f"k1={private_key_raw_b64(new)}",
                 VAPID_EMAIL="ops@example.com")
    )  # fmt: skip
    assert (only.ids, only.current_id) == (frozenset({"k1"}), "k1")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VAPID_KEYS": "new"}, "VAPID_KEYS: entry 1 is not id=private_key"),
        ({"VAPID_KEYS": "a b=xyz"}, "VAPID_KEYS: entry 1: a key id"),
        ({"VAPID_KEYS": "a=x1,a=x2"}, "key id 'a' is given twice"),
        ({"VAPID_CURRENT_KEY_ID": "no way"}, "VAPID_CURRENT_KEY_ID must be"),
    ],
)
def test_malformed_key_settings_name_the_variable_not_the_key(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        settings(**env)
    assert "xyz" not in str(info.value) and "x2" not in str(info.value)


def test_key_set_errors_name_the_variable(tmp_path: Path) -> None:
    one, two = (
        private_key_raw_b64(generate_private_key()),
        private_key_raw_b64(generate_private_key()),
    )
    cases = [
        (
            {"VAPID_PRIVATE_KEY": one, "VAPID_KEYS": f"default={two}"},
            "'default' is VAPID_PRIVATE_KEY",
        ),
        ({"VAPID_PRIVATE_KEY": one, "VAPID_KEYS": f"b={one}"}, "'default' and 'b' are the same"),
        ({"VAPID_PRIVATE_KEY": one, "VAPID_KEYS": f"b={two}"}, "VAPID_CURRENT_KEY_ID is required"),
        ({"VAPID_KEYS": f"b={two}", "VAPID_CURRENT_KEY_ID": "c"}, "VAPID_CURRENT_KEY_ID 'c'"),
        ({"VAPID_KEYS": "b=not-a-key-at-all"}, "VAPID_KEYS: key 'b' is not a usable"),
        ({"VAPID_KEYS": f"b={two}", "VAPID_PUBLIC_KEY": "x"}, "VAPID_PUBLIC_KEY is set but"),
        ({"NODE_ENV": "production", "VAPID_EMAIL": "ops@example.com"}, "VAPID_PRIVATE_KEY"),
    ]
    for env, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_vapid_keys(settings(VAPID_KEY_FILE=str(tmp_path / "dev.pem"), **env))
        assert not (tmp_path / "dev.pem").exists() or "VAPID_KEYS" not in env


def test_without_keys_development_keeps_its_generated_default(tmp_path: Path) -> None:
    key_file = str(tmp_path / "dev.pem")
    first = load_vapid_keys(settings(VAPID_KEY_FILE=key_file))
    second = load_vapid_keys(settings(VAPID_KEY_FILE=key_file))
    assert first.ids == {"default"} and first.public_key() == second.public_key()


def test_key_settings_are_never_shown() -> None:
    private = private_key_raw_b64(generate_private_key())
    shown = repr(settings(VAPID_KEYS=f"k={private}"))
    assert private not in shown and "vapid_keys='***'" in shown


# --- the subject, checked as Apple needs it ----------------------------------------------------


@pytest.mark.parametrize(
    "contact",
    [
        "dev@localhost",
        "mailto:ops@push.localhost",
        "ops@printer.local",
        "ops@10.0.0.1",
        "ops@site.test",
        "ops@site.example",
        "https://localhost:8443/contact",
        "https://127.0.0.1/",
        "https://intranet/",
    ],
)
def test_a_contact_apple_refuses_stops_production_and_warns_in_development(
    contact: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match=r"VAPID_EMAIL.*BadJwtToken"):
        normalise_subject(contact, production=True)
    with caplog.at_level(logging.WARNING, logger="push_service.vapid"):
        assert normalise_subject(contact, production=False)
    assert any("BadJwtToken" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "contact", ["ops@example.com", "ops@mail.example.co.uk", "ops@xn--bcher-kva.example.org",
                "ops@bücher.de", "https://push.example.com/contact"],
)  # fmt: skip
def test_a_public_contact_passes_in_production(contact: str) -> None:
    assert normalise_subject(contact, production=True).endswith(contact.split(":")[-1])


def test_the_service_refuses_to_start_with_a_localhost_contact_in_production() -> None:
    env = {"NODE_ENV": "production", "VAPID_EMAIL": "mailto:push@localhost"}
    with pytest.raises(ConfigError, match="VAPID_EMAIL"):
        load_vapid_keys(
            settings(VAPID_PRIVATE_KEY=private_key_raw_b64(generate_private_key()), **env)
        )
