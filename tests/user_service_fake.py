"""A stand-in User Service that can go down, hang or refuse on cue (no real one exists here).

It records every report it accepted (path and JSON) so a test can count what arrived,
what arrived twice, and under which `report_id`. `down()` stops listening (connections
are refused, as during a deploy); `up()` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.support import free_port


class UserServiceFake:
    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"  # ok | hang | <HTTP status as text>
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        self.site: web.TCPSite | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()

    async def down(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None

    def hang(self) -> None:
        self.mode = "hang"
        self._release.clear()

    def answer(self, mode: str = "ok") -> None:
        self.mode = mode
        self._release.set()

    def report_ids(self, path: str | None = None) -> Counter[str]:
        return Counter(body["report_id"] for p, body in self.accepted if path in (None, p))

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        if self.mode == "hang":
            await self._release.wait()
            return web.Response(status=503)  # the client gave up long ago; count nothing
        if self.mode != "ok":
            return web.json_response({"error": "refused"}, status=int(self.mode))
        self.accepted.append((request.path, body))
        return web.json_response({"ok": True})


@contextlib.asynccontextmanager
async def user_service_fake() -> AsyncIterator[UserServiceFake]:
    fake = UserServiceFake()
    await fake.runner.setup()
    await fake.up()
    try:
        yield fake
    finally:
        fake.answer()  # release hanging handlers so the runner can close
        await fake.runner.cleanup()
