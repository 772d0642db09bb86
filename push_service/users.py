"""Client of the User Service: report subscriptions that the push service says are gone."""

from __future__ import annotations

import logging

import aiohttp

from push_service.retry import RetryPolicy, call_with_retries

log = logging.getLogger(__name__)


class _Retryable(Exception):
    """A network error or 5xx from the User Service: worth another try."""


class UserServiceClient:
    """POSTs deactivations; bounded retries; never raises, returns the outcome instead."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        path: str,
        policy: RetryPolicy,
        timeout: float = 5.0,
    ) -> None:
        self.session = session
        self.url = f"{base_url.rstrip('/')}/{path.lstrip('/')}" if base_url else ""
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def deactivate(
        self, user_id: str | None, endpoint: str, reason: str, status_code: int | None
    ) -> str:
        """Report a gone subscription; returns `ok`, `skipped: …` or `failed: …`."""
        if not self.url:
            return "skipped: USER_SERVICE_URL not configured"
        body: dict[str, object] = {
            "user_id": user_id,
            "endpoint": endpoint,
            "reason": reason,
            "status_code": status_code,
        }
        try:
            status = await call_with_retries(lambda: self._post(body), self.policy, _Retryable)
        except _Retryable as exc:
            log.warning("user service deactivation failed after retries: %s", exc)
            return f"failed: {exc}"
        if 200 <= status < 300:
            return "ok"
        log.warning("user service refused deactivation with HTTP %s", status)
        return f"failed: HTTP {status}"

    async def _post(self, body: dict[str, object]) -> int:
        try:
            # A redirect would turn the POST into a GET (303) or resend it elsewhere: refuse.
            async with self.session.post(
                self.url, json=body, timeout=self.timeout, allow_redirects=False
            ) as response:
                if response.status >= 500:
                    raise _Retryable(f"HTTP {response.status}")
                return response.status
        except TimeoutError:
            raise _Retryable("timed out") from None
        except aiohttp.ClientError as exc:
            raise _Retryable(f"connection error: {type(exc).__name__}") from None
