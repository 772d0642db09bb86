"""Abuse limits of the HTTP side: request body size, per-client rate, client address."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_MAX_TRACKED_CLIENTS = 100_000


class BodyLimitMiddleware:
    """Refuses request bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._reject(send)
            return
        received = 0
        responded = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
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
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = b'{"error":"request_too_large","detail":"request body exceeds %d bytes"}' % (
            self.limit
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
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
