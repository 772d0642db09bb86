"""HTTP abuse limits: body size (declared and streamed), rate limiting, client address."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from push_service import limits
from push_service.limits import BodyLimitMiddleware, ClientAddress, RateLimiter

LIMIT = 1024


class Echo:
    """A route that reads the whole body; records whether it finished."""

    def __init__(self) -> None:
        self.completed = 0

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.completed += 1
        return JSONResponse({"length": len(body)})


async def server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "internal"}, 500)


def make_app(echo: Echo) -> ASGIApp:
    """Wired like the service: the limit as user middleware, a catch-all 500 handler."""
    return Starlette(
        routes=[Route("/echo", echo.endpoint, methods=["POST"])],
        middleware=[Middleware(BodyLimitMiddleware, limit=LIMIT)],
        exception_handlers={Exception: server_error},
    )


async def call(
    app: ASGIApp, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes, list[Message]]:
    """Drive the ASGI app directly (httpx is not installed): returns status, body, messages."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.9", 50000),
        "server": ("127.0.0.1", 3004),
    }
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    received = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal received
        if received < len(pending):
            received += 1
            return pending[received - 1]
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, sent


JSON = (b"content-type", b"application/json")


async def test_body_within_limit_passes() -> None:
    echo = Echo()
    body = b"x" * LIMIT
    status, content, _ = await call(
        make_app(echo), [body], [JSON, (b"content-length", str(len(body)).encode())]
    )
    assert status == 200 and content == b'{"length":1024}'
    assert echo.completed == 1


@pytest.mark.parametrize("declared", [b"1025", b"99999999999999999999", b"abc", b"-1", b""])
async def test_declared_length_over_limit_or_invalid_is_413(declared: bytes) -> None:
    echo = Echo()
    status, content, sent = await call(
        make_app(echo), [b"x"], [JSON, (b"content-length", declared)]
    )
    assert status == 413
    assert b"request_too_large" in content
    assert echo.completed == 0
    start = sent[0]
    assert (b"connection", b"close") in start["headers"]


async def test_streamed_body_over_limit_is_413() -> None:
    echo = Echo()
    chunks = [b"x" * 300] * 5  # 1500 bytes, no Content-Length (chunked)
    status, content, sent = await call(make_app(echo), chunks, [JSON])
    assert status == 413
    assert b"request_too_large" in content
    assert echo.completed == 0
    assert sum(1 for m in sent if m["type"] == "http.response.start") == 1


async def test_streamed_body_at_the_limit_passes() -> None:
    echo = Echo()
    status, content, _ = await call(make_app(echo), [b"x" * 512, b"y" * 512], [JSON])
    assert status == 200 and content == b'{"length":1024}'


async def test_lying_content_length_is_caught_while_streaming() -> None:
    echo = Echo()
    chunks = [b"x" * 1000, b"x" * 1000]
    status, _, _ = await call(make_app(echo), chunks, [JSON, (b"content-length", b"10")])
    assert status == 413
    assert echo.completed == 0


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = BodyLimitMiddleware(inner, limit=1)
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


# --- rate limiting ------------------------------------------------------------------------


def test_rate_limit_window_and_retry_after() -> None:
    limiter = RateLimiter(limit=3, window=10.0)
    assert [limiter.hit("a", now=100.0 + i)[0] for i in range(3)] == [True, True, True]
    allowed, retry_after = limiter.hit("a", now=103.5)
    assert not allowed
    assert retry_after == 7  # the oldest hit (100) leaves the window at 110
    assert limiter.hit("b", now=103.5) == (True, 0)  # keys are independent
    assert limiter.hit("a", now=109.9)[0] is False
    assert limiter.hit("a", now=110.0) == (True, 0)
    assert limiter.hit("a", now=110.0)[0] is False  # 101 and 102 are still inside


def test_denied_requests_do_not_extend_the_window() -> None:
    limiter = RateLimiter(limit=1, window=5.0)
    assert limiter.hit("a", now=0.0)[0]
    for t in (1.0, 2.0, 3.0, 4.0):
        assert not limiter.hit("a", now=t)[0]
    assert limiter.hit("a", now=5.0)[0]


def test_retry_after_is_at_least_one_second() -> None:
    limiter = RateLimiter(limit=1, window=1.0)
    limiter.hit("a", now=0.0)
    assert limiter.hit("a", now=0.999) == (False, 1)


def test_zero_limit_disables() -> None:
    limiter = RateLimiter(limit=0, window=60.0)
    assert all(limiter.hit("a", now=0.0) == (True, 0) for _ in range(1000))


def test_rate_limiter_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "_MAX_TRACKED_CLIENTS", 100)
    limiter = RateLimiter(limit=1, window=3600.0)
    limiter.hit("regular", now=0.0)
    for i in range(1000):
        limiter.hit(f"client-{i}", now=float(i))
        if i % 50 == 0:
            assert not limiter.hit("regular", now=float(i))[0]  # recently seen: kept
    assert len(limiter._hits) <= 101
    assert "client-0" not in limiter._hits and "client-999" in limiter._hits
    assert "regular" in limiter._hits


# --- client address -----------------------------------------------------------------------


def request(peer: str | None, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/subscribe",
        "headers": headers,
        "client": (peer, 1234) if peer else None,
    }
    return Request(scope)


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    address = ClientAddress(())
    assert address(request("203.0.113.5", "1.1.1.1")) == "203.0.113.5"
    assert address(request(None)) == "unknown"


def test_untrusted_peer_cannot_spoof_with_x_forwarded_for() -> None:
    address = ClientAddress(("10.0.0.0/8",))
    assert address(request("203.0.113.5", "10.0.0.1")) == "203.0.113.5"
    assert address(request("203.0.113.5", "1.1.1.1")) == "203.0.113.5"


def test_trusted_proxy_takes_the_nearest_untrusted_hop() -> None:
    address = ClientAddress(("10.0.0.0/8", "192.168.1.1"))
    # The client claims 1.1.1.1; the proxy appended the real address.
    assert address(request("10.0.0.2", "1.1.1.1, 203.0.113.5")) == "203.0.113.5"
    assert address(request("10.0.0.2", "203.0.113.5, 10.0.0.9, 192.168.1.1")) == "203.0.113.5"
    assert address(request("10.0.0.2", "10.0.0.7, 10.0.0.8")) == "10.0.0.7"
    assert address(request("10.0.0.2", "")) == "10.0.0.2"
    assert address(request("10.0.0.2")) == "10.0.0.2"


def test_a_proxy_that_adds_its_own_header_line_is_not_spoofable() -> None:
    address = ClientAddress(("10.0.0.0/8",))
    # Client sent "X-Forwarded-For: 9.9.9.9"; the proxy added a second line with the truth.
    assert address(request("10.0.0.2", "9.9.9.9", "203.0.113.5")) == "203.0.113.5"


def test_garbage_hops_are_never_trusted() -> None:
    address = ClientAddress(("10.0.0.0/8",))
    assert address(request("10.0.0.2", "203.0.113.5, not-an-ip")) == "not-an-ip"
    assert address(request("10.0.0.2", "[::1]:80")) == "[::1]:80"
