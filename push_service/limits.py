"""Abuse limits of the HTTP side: request body size and time, per-client rate, client address."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_MAX_TRACKED_CLIENTS = 100_000


class BodyLimitMiddleware:
    """Bounds request bodies in size (413) and in time (408), declared or streamed.

    `limit` applies to every path except those in `path_limits` (exact paths).
    `timeout` bounds the time from the first read of the body to its last byte, so
    a client that trickles a body in (announces 100 bytes, sends one) cannot hold a
    connection and a request slot: the answer is 408 and the connection closes.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        *,
        path_limits: Mapping[str, int] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.path_limits = dict(path_limits or {})
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reject(send, 413, "request_too_large", f"request body exceeds {limit} bytes")
            return
        received = 0
        deadline: float | None = None
        responded = False

        async def limited_receive() -> Message:
            nonlocal received, deadline
            if deadline is None and self.timeout is not None:
                deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _TooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not responded:
                await _reject(send, 413, "request_too_large", f"request body exceeds {limit} bytes")
        except _TooSlow:
            if not responded:
                detail = f"request body not received within {self.timeout:g} seconds"
                await _reject(send, 408, "request_timeout", detail)


async def _reject(send: Send, status: int, code: str, detail: str) -> None:
    body = orjson.dumps({"error": code, "detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class RateLimiter:
    """Sliding-window limit of events per key, in memory (per replica).

    `limit` 0 disables it. Memory is bounded: the least recently seen keys go first.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str, now: float | None = None) -> tuple[bool, int]:
        """Record one event; returns (allowed, seconds until the next one is allowed)."""
        if self.limit <= 0:
            return True, 0
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(key, None) or deque()
        self._hits[key] = hits
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(self._hits) > _MAX_TRACKED_CLIENTS:
            self._hits.popitem(last=False)
        if len(hits) >= self.limit:
            return False, max(1, math.ceil(hits[0] + self.window - now))
        hits.append(now)
        return True, 0


class ClientAddress:
    """The client's address; X-Forwarded-For counts only when the peer is a trusted proxy."""

    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self.trusted = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def __call__(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if not self.trusted or not self._is_trusted(peer):
            return peer
        # All header lines, in order: a proxy may add its own line after the client's.
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        # Walk from the nearest hop outwards; the first untrusted one is the client.
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer
