"""The User Service's HTTP side: one attempt to hand over one report.

The relay decides about retries; this module only says what one POST came to.
A 2xx is an answer, and so is a 4xx other than 408 and 429 (the User Service has
read the report and refuses it: sending it again changes nothing). Anything else
(5xx, 408, 429, a timeout, a refused connection) is worth another try later.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from push_service.reports.report import Kind, Report

RETRYABLE_4XX = (408, 429)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: `answered` (final, `outcome` says how) or worth a retry."""

    answered: bool
    outcome: str  # `ok`, `failed: HTTP 400` when answered; the error otherwise

    @classmethod
    def ok(cls) -> Attempt:
        return cls(True, "ok")


class UserServiceClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        paths: dict[Kind, str],
        *,
        timeout: float,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.paths = paths
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    def url(self, kind: Kind) -> str:
        return f"{self.base_url}/{self.paths[kind].lstrip('/')}"

    async def send(self, report: Report) -> Attempt:
        try:
            # A redirect would turn the POST into a GET (303) or resend it elsewhere: refuse.
            async with self.session.post(
                self.url(report.kind),
                json=report.body,
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
        except TimeoutError:
            return Attempt(False, "timed out")
        except aiohttp.ClientError as exc:
            return Attempt(False, f"connection error: {type(exc).__name__}")
        if 200 <= status < 300:
            return Attempt.ok()
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            return Attempt(True, f"failed: HTTP {status}")
        return Attempt(False, f"HTTP {status}")
