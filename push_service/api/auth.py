"""Peer-service credentials: bearer tokens (`API_TOKENS`) for the internal endpoints.

Tokens are compared in constant time, against every configured token (no early
exit that would tell which one nearly matched), and never logged.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from push_service.api.responses import error

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
REALM = 'Bearer realm="push_service"'


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class PeerAuth:
    """Decides whether a request may use an internal endpoint."""

    def __init__(self, tokens: tuple[str, ...], production: bool) -> None:
        self._tokens = tuple(t.encode() for t in tokens)
        self.production = production
        self.open = not tokens and not production

    def log_mode(self) -> None:
        """Say at start-up how the internal endpoints are protected."""
        if self._tokens:
            log.info("internal endpoints need one of %d API token(s)", len(self._tokens))
        elif self.open:
            log.warning(
                "API_TOKENS is not set: internal endpoints (GET/POST /notifications, /metrics) "
                "are open to anyone; this is refused in production"
            )
        else:
            log.warning("API_TOKENS is not set: internal endpoints refuse every request")

    def _accepts(self, token: str) -> bool:
        presented = token.encode()
        matches = [hmac.compare_digest(presented, known) for known in self._tokens]
        return any(matches)

    def refusal(self, request: Request) -> Response | None:
        """None when the request may pass; else the 401 to answer."""
        if self.open:
            return None
        if not self._tokens:
            return _unauthorized(
                "no API tokens are configured (API_TOKENS); internal endpoints are closed"
            )
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return _unauthorized("this endpoint needs Authorization: Bearer <API token>")
        if not self._accepts(token):
            return _unauthorized("the bearer token is not valid", 'error="invalid_token"')
        return None

    def internal(self, handler: Handler) -> Handler:
        """Wrap a route handler so that it runs only for an authorised peer."""

        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            refusal = self.refusal(request)
            return refusal if refusal is not None else await handler(request)

        return guarded


def _unauthorized(detail: str, parameters: str = "") -> Response:
    challenge = f"{REALM}, {parameters}" if parameters else REALM
    return error(401, "unauthorized", detail, {"WWW-Authenticate": challenge})
