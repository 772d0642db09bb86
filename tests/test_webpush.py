"""The sender: RFC 8291 encryption, response classification, and real HTTP to a stub."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import http_ece
import jwt
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from push_service import webpush
from push_service.endpoints import EndpointPolicy, PolicyResolver
from push_service.errors import (
    EndpointNotAllowed,
    PayloadTooLarge,
    PermanentPushError,
    SubscriptionGone,
    TransientPushError,
    VapidRejected,
)
from push_service.models import MAX_PLAINTEXT_BYTES, Device
from push_service.vapid import (
    VapidSigner,
    b64url_decode,
    b64url_encode,
    generate_private_key,
    public_key_b64,
)
from push_service.webpush import (
    PushOptions,
    WebPushSender,
    classify,
    encrypt,
    make_session,
    parse_retry_after,
)
from tests.support import free_port, stub_server

VECTOR = json.loads(
    (Path(__file__).parent / "data/rfc8291-appendix-a.json").read_text(encoding="utf-8")
)
HEADER_BYTES = 16 + 4 + 1 + 65


def private_from_raw(raw_b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(raw_b64), "big"), ec.SECP256R1())


class UserAgent:
    """The browser side: a key pair and an auth secret; decrypts what it receives."""

    def __init__(self) -> None:
        self.private = generate_private_key()
        self.public = self.private.public_key()
        self.point = self.public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.auth = os.urandom(16)

    def device(self, endpoint: str, policy: EndpointPolicy) -> Device:
        checked = policy.check(endpoint)
        return Device(endpoint, checked.origin, checked.host, self.public, self.auth)

    def decrypt(self, body: bytes) -> bytes:
        plaintext: bytes = http_ece.decrypt(
            body, private_key=self.private, auth_secret=self.auth, version="aes128gcm"
        )
        return plaintext


# --- RFC 8291 -----------------------------------------------------------------------------


def test_rfc8291_appendix_a_vector_is_reproduced_exactly() -> None:
    as_private = private_from_raw(VECTOR["as_private"])
    assert public_key_b64(as_private) == VECTOR["as_public"]
    body = encrypt(
        VECTOR["plaintext_utf8"].encode(),
        b64url_decode(VECTOR["ua_public"]),
        b64url_decode(VECTOR["auth_secret"]),
        salt=b64url_decode(VECTOR["salt"]),
        private_key=as_private,
    )
    assert b64url_encode(body) == VECTOR["body"]


def test_rfc8291_vector_with_a_public_key_object() -> None:
    ua_public = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b64url_decode(VECTOR["ua_public"])
    )
    body = encrypt(
        VECTOR["plaintext_utf8"].encode(),
        ua_public,
        b64url_decode(VECTOR["auth_secret"]),
        salt=b64url_decode(VECTOR["salt"]),
        private_key=private_from_raw(VECTOR["as_private"]),
    )
    assert b64url_encode(body) == VECTOR["body"]


def test_rfc8291_vector_decrypts_with_the_ua_private_key() -> None:
    plaintext = http_ece.decrypt(
        b64url_decode(VECTOR["body"]),
        private_key=private_from_raw(VECTOR["ua_private"]),
        auth_secret=b64url_decode(VECTOR["auth_secret"]),
        version="aes128gcm",
    )
    assert plaintext == VECTOR["plaintext_utf8"].encode()


def test_round_trip_and_fresh_key_and_salt_per_message() -> None:
    ua = UserAgent()
    plaintext = b'{"title":"hello"}'
    first = encrypt(plaintext, ua.point, ua.auth)
    second = encrypt(plaintext, ua.public, ua.auth)
    assert ua.decrypt(first) == plaintext
    assert ua.decrypt(second) == plaintext
    assert first != second
    assert first[:16] != second[:16]  # salt
    assert int.from_bytes(first[16:20], "big") == 4096  # record size
    for body in (first, second):
        assert body[20] == 65  # keyid length: an uncompressed P-256 point
        keyid = body[21:86]
        assert keyid[0] == 0x04
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), keyid)  # on the curve
    assert first[21:86] != second[21:86]  # fresh ephemeral key


def test_largest_plaintext_fits_exactly_4096_bytes() -> None:
    ua = UserAgent()
    assert MAX_PLAINTEXT_BYTES == 3993
    body = encrypt(b"x" * 3993, ua.point, ua.auth)
    assert len(body) == 4096
    assert ua.decrypt(body) == b"x" * 3993
    with pytest.raises(PayloadTooLarge):
        encrypt(b"x" * 3994, ua.point, ua.auth)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=MAX_PLAINTEXT_BYTES))
def test_any_plaintext_round_trips_in_one_record(plaintext: bytes) -> None:
    ua = UserAgent()
    body = encrypt(plaintext, ua.point, ua.auth)
    assert len(body) == HEADER_BYTES + len(plaintext) + 1 + 16
    assert ua.decrypt(body) == plaintext


# --- classification -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_accepted(status: int) -> None:
    classify(status, {}, "")  # returns: no exception means accepted


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, SubscriptionGone),
        (410, SubscriptionGone),
        (400, PermanentPushError),
        (413, PermanentPushError),
        (401, VapidRejected),
        (403, VapidRejected),
        (301, PermanentPushError),
        (302, PermanentPushError),
        (405, PermanentPushError),
        (422, PermanentPushError),
    ],
)
def test_permanent_statuses(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as info:
        classify(status, {}, "reason text")
    assert not isinstance(info.value, TransientPushError)
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert "reason text" in str(info.value)


def test_gone_and_vapid_are_distinct() -> None:
    with pytest.raises(SubscriptionGone) as gone:
        classify(410, {}, "")
    assert not isinstance(gone.value, VapidRejected)
    with pytest.raises(VapidRejected) as vapid:
        classify(403, {}, '{"reason": "BadJwtToken"}')
    assert not isinstance(vapid.value, SubscriptionGone)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_and_http_date(status: int) -> None:
    with pytest.raises(TransientPushError) as info:
        classify(status, {"Retry-After": "120"}, "")
    assert info.value.retry_after == 120.0
    past = email.utils.formatdate(0, usegmt=True)
    future = email.utils.formatdate(time.time() + 90, usegmt=True)
    with pytest.raises(TransientPushError) as info:
        classify(status, {"Retry-After": future}, "")
    assert info.value.retry_after is not None and 80 <= info.value.retry_after <= 91
    with pytest.raises(TransientPushError) as info:
        classify(status, {"Retry-After": past}, "")
    assert info.value.retry_after == 0.0  # a date in the past: retry now
    with pytest.raises(TransientPushError) as info:
        classify(status, {}, "")
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 504, 599])
def test_other_5xx_are_transient_without_retry_after(status: int) -> None:
    with pytest.raises(TransientPushError) as info:
        classify(status, {"Retry-After": "5"}, "")
    assert info.value.retry_after is None
    assert info.value.status_code == status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("-1", None),
        ("1.5", None),
        ("abc", None),
        ("²", None),  # str.isdigit() says yes; float() says no
        ("١٢", None),  # Arabic-Indic digits
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone
        ("Wed, 21 Oct 2015 07:28:00 -0000", None),  # unknown zone
        ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),  # in the past
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),  # relative to now=40
        ("Mon, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=40.0) == expected


# --- real HTTP ----------------------------------------------------------------------------


@pytest.fixture
def signer() -> VapidSigner:
    return VapidSigner(generate_private_key(), "mailto:ops@example.com")


@pytest.fixture
async def loopback_session() -> AsyncIterator[tuple[aiohttp.ClientSession, EndpointPolicy]]:
    policy = EndpointPolicy(("127.0.0.1",), allow_http=True)
    session = make_session(policy, concurrency=10, timeout=5.0)
    yield session, policy
    await session.close()


async def test_send_posts_encrypted_body_with_the_rfc_headers(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy], signer: VapidSigner
) -> None:
    session, policy = loopback_session
    ua = UserAgent()
    async with stub_server([(201, {})]) as stub:
        device = ua.device(f"{stub.base_url}/push/abc", policy)
        sender = WebPushSender(session, signer, policy)
        status = await sender.send(device, b'{"title":"hi"}', PushOptions(ttl=3600))
        assert status == 201
        assert len(stub.requests) == 1
        request = stub.requests[0]
    headers = request["headers"]
    assert request["path"] == "/push/abc"
    assert headers["TTL"] == "3600"
    assert headers["Content-Encoding"] == "aes128gcm"
    assert headers["Content-Type"] == "application/octet-stream"
    assert "Urgency" not in headers and "Topic" not in headers
    scheme, _, rest = headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    token_part, key_part = rest.split(", ")
    assert key_part == f"k={signer.public_key}"
    claims = jwt.decode(token_part[2:], options={"verify_signature": False})
    assert claims["aud"] == stub.base_url  # scheme, host and the non-default port
    assert ua.decrypt(request["body"]) == b'{"title":"hi"}'


async def test_send_includes_urgency_and_topic_when_given(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy], signer: VapidSigner
) -> None:
    session, policy = loopback_session
    ua = UserAgent()
    async with stub_server() as stub:
        sender = WebPushSender(session, signer, policy)
        options = PushOptions(ttl=0, urgency="high", topic="news12")
        await sender.send(ua.device(f"{stub.base_url}/p", policy), b"{}", options)
        headers = stub.requests[0]["headers"]
    assert headers["TTL"] == "0"
    assert headers["Urgency"] == "high"
    assert headers["Topic"] == "news12"


async def test_redirect_is_not_followed(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy], signer: VapidSigner
) -> None:
    session, policy = loopback_session
    ua = UserAgent()
    async with stub_server() as target:
        async with stub_server([(301, {"Location": f"{target.base_url}/stolen"})]) as stub:
            sender = WebPushSender(session, signer, policy)
            with pytest.raises(PermanentPushError) as info:
                await sender.send(ua.device(f"{stub.base_url}/p", policy), b"{}", PushOptions(60))
            assert info.value.status_code == 301
            assert len(stub.requests) == 1
        assert target.requests == []


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ((410, {}), SubscriptionGone),
        ((404, {}), SubscriptionGone),
        ((403, {}), VapidRejected),
        ((413, {}), PermanentPushError),
        ((500, {}), TransientPushError),
    ],
)
async def test_send_maps_answers_to_errors(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy],
    signer: VapidSigner,
    answer: tuple[int, dict[str, str]],
    kind: type[Exception],
) -> None:
    session, policy = loopback_session
    async with stub_server([answer]) as stub:
        sender = WebPushSender(session, signer, policy)
        with pytest.raises(kind) as info:
            await sender.send(UserAgent().device(stub.base_url, policy), b"{}", PushOptions(60))
    assert info.value.status_code == answer[0]  # type: ignore[attr-defined]


async def test_stub_push_service_takes_a_body_that_starts_like_json(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy],
) -> None:
    # An aes128gcm body starts with a random salt; 1 in 256 begins with "{". The stub
    # once tried to read such a body as JSON, answered 500 and failed the test above.
    session, _ = loopback_session
    async with stub_server([(201, {})]) as stub:
        body = b"{" + os.urandom(100)
        headers = {"Content-Type": "application/octet-stream"}
        async with session.post(f"{stub.base_url}/p", data=body, headers=headers) as response:
            assert response.status == 201
    assert stub.requests[0]["body"] == body
    assert stub.requests[0]["json"] is None


async def test_send_429_carries_retry_after(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy], signer: VapidSigner
) -> None:
    session, policy = loopback_session
    async with stub_server([(429, {"Retry-After": "17"})]) as stub:
        sender = WebPushSender(session, signer, policy)
        with pytest.raises(TransientPushError) as info:
            await sender.send(UserAgent().device(stub.base_url, policy), b"{}", PushOptions(60))
    assert info.value.retry_after == 17.0


async def test_connection_refused_is_transient(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy], signer: VapidSigner
) -> None:
    session, policy = loopback_session
    device = UserAgent().device(f"http://127.0.0.1:{free_port()}/p", policy)
    with pytest.raises(TransientPushError, match="connection error"):
        await WebPushSender(session, signer, policy).send(device, b"{}", PushOptions(60))


async def test_timeout_is_transient(signer: VapidSigner) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/p", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    policy = EndpointPolicy(("127.0.0.1",), allow_http=True)
    session = make_session(policy, concurrency=2, timeout=0.3)
    try:
        device = UserAgent().device(f"http://127.0.0.1:{port}/p", policy)
        with pytest.raises(TransientPushError, match="timed out"):
            await WebPushSender(session, signer, policy).send(device, b"{}", PushOptions(60))
    finally:
        release.set()
        await session.close()
        await runner.cleanup()


class RebindingResolver(AbstractResolver):
    """Answers every name with 127.0.0.1: a name that passed the URL check, rebound."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


async def test_refused_address_never_leaves_the_process(
    signer: VapidSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make_session dials through the policy: a public-looking name rebound to loopback fails."""
    rebinding = RebindingResolver()
    monkeypatch.setattr(webpush, "PolicyResolver", lambda policy: PolicyResolver(policy, rebinding))
    strict = EndpointPolicy(("*",), allow_http=True)  # a wildcard never admits loopback
    listed = EndpointPolicy(("push.test",), allow_http=True)  # an exactly listed name may
    ua = UserAgent()
    async with stub_server() as stub:
        port = stub.base_url.rsplit(":", 1)[1]
        session = make_session(strict, concurrency=2, timeout=5.0)
        try:
            device = ua.device(f"http://evil.example.com:{port}/p", strict)  # URL check passes
            with pytest.raises(EndpointNotAllowed):
                await WebPushSender(session, signer, strict).send(device, b"{}", PushOptions(60))
        finally:
            await session.close()
        assert rebinding.asked == ["evil.example.com"]
        assert stub.requests == []
        # Control: the same answer for an exactly listed name connects, so the refusal
        # above came from the policy and not from a broken resolver.
        session = make_session(listed, concurrency=2, timeout=5.0)
        try:
            device = ua.device(f"http://push.test:{port}/p", listed)
            await WebPushSender(session, signer, listed).send(device, b"{}", PushOptions(60))
        finally:
            await session.close()
        assert [r["path"] for r in stub.requests] == ["/p"]


async def test_oversized_payload_is_not_sent(
    loopback_session: tuple[aiohttp.ClientSession, EndpointPolicy], signer: VapidSigner
) -> None:
    session, policy = loopback_session
    async with stub_server() as stub:
        device = UserAgent().device(stub.base_url, policy)
        with pytest.raises(PayloadTooLarge):
            await WebPushSender(session, signer, policy).send(device, b"x" * 3994, PushOptions(1))
        assert stub.requests == []


# --- the Topic header ---------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["ab", "abc", "abcd", "news12", "A1b2C3d4" * 4])
def test_a_topic_every_push_service_takes_is_sent_as_it_is(topic: str) -> None:
    assert webpush.topic_header(topic) == topic


@pytest.mark.parametrize(
    "topic",
    ["a", "abcde", "news_1", "order:7", "x.y", "a" * 33, "A1b2C3d4" * 8, "ä", "a-b"],
)
def test_any_other_topic_is_mapped_to_hex(topic: str) -> None:
    header = webpush.topic_header(topic)
    assert header != topic and len(header) == 32
    assert header == webpush.topic_header(topic)  # the same topic replaces the same push


@given(st.text(min_size=1, max_size=80))
@settings(max_examples=300)
def test_every_topic_header_is_one_mozilla_and_apple_take(topic: str) -> None:
    header = webpush.topic_header(topic)
    assert header.isascii() and header.isalnum()  # Mozilla: [A-Za-z0-9] only
    assert 1 <= len(header) <= 32 and len(header) % 4 != 1  # Apple: valid base64url
    b64url_decode(header)
