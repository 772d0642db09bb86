"""A push service on cue for outage tests: it answers, goes dark (accepts connections and
never answers), or plays a script of statuses per endpoint, and records what it saw.

Nothing here stands in for a real push service's crypto (web-push-testing does that);
it stands in for one that is down, throttling or slow, which has no real stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.support import serve_app

Answer = tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Seen:
    """One request as the push service saw it (wall-clock time, its TTL header)."""

    name: str
    at: float
    ttl: int


@dataclass
class PushService:
    base_url: str = ""
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    accepted_at: list[tuple[str, float]] = field(default_factory=list)  # (name, monotonic)
    _up: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._up.set()

    def endpoint(self, name: str) -> str:
        return f"{self.base_url}/push/{name}"

    def script(self, name: str, *answers: Answer) -> str:
        """Answer `name`'s requests in this order, then 201 from then on."""
        self.scripts[name] = list(answers)
        return self.endpoint(name)

    def go_dark(self) -> None:
        self._up.clear()

    def come_back(self) -> None:
        self._up.set()

    def seen(self, name: str) -> list[Seen]:
        return [s for s in self.requests if s.name == name]

    def pace(self, prefix: str = "") -> float:
        """Pushes accepted per second for names starting with `prefix`, first to last."""
        times = sorted(at for name, at in self.accepted_at if name.startswith(prefix))
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        name = request.match_info["name"]
        self.requests.append(Seen(name, time.time(), int(request.headers.get("TTL", "-1"))))
        # Dark: hold the request open without a byte of answer until the client gives up
        # (the handler is then cancelled) or the service comes back.
        await self._up.wait()
        script = self.scripts.get(name)
        status, headers = script.pop(0) if script else (201, {})
        if status < 300:
            self.accepted[name] += 1
            self.accepted_at.append((name, time.monotonic()))
        return web.Response(status=status, headers=headers)


@contextlib.asynccontextmanager
async def push_service(dark: bool = False) -> AsyncIterator[PushService]:
    service = PushService()
    if dark:
        service.go_dark()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    # A client that gives up cancels its handler; shutting down does not wait for hung ones.
    async with serve_app(app, handler_cancellation=True, shutdown_timeout=0.5) as url:
        service.base_url = url
        yield service
